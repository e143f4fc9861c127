#!/usr/bin/env bash
# Create ./.venv and install ml_target into it with the given extras (default: emulator).
# Safe to re-run. Versions are pinned by constraints.txt so a fresh machine gets what CI tested.
set -euo pipefail
cd "$(dirname "$0")/.."

extras="${1:-emulator}"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(not ((3, 10) <= sys.version_info[:2] <= (3, 13)))'; then
  echo "ml_target needs Python 3.10-3.13; $python is $("$python" --version 2>&1)." >&2
  echo "Set PYTHON=/path/to/python3.11 and re-run." >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
    echo "$python cannot create virtual environments: install python3-venv (Debian/Ubuntu: sudo apt install python3-venv) and re-run." >&2
    exit 1
  fi
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)
constraints=()
[ -f constraints.txt ] && constraints=(-c constraints.txt)

"${pip[@]}" install --upgrade pip
if [[ "$extras" == *test* ]]; then
  # ShellCheck lints setup.sh and tests/test.sh; its tests skip (saying so) where it cannot be installed.
  if ! command -v shellcheck >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && apt-get install -y -qq shellcheck >/dev/null) || echo "shellcheck not installed" >&2
  fi
fi
"${pip[@]}" install "${constraints[@]}" -e ".[$extras]"
if [[ "$extras" == *test* ]]; then
  # Real pages of text for tests/test_ocr_real.py (Debian's opencv-doc); those tests skip, saying so, without them.
  scripts/fetch-real-text.sh >/dev/null || echo "warning: OpenCV's sample pages could not be fetched; their OCR comparison will skip" >&2
fi
