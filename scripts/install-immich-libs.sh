#!/usr/bin/env bash
# A separate environment with the libraries Immich's ML service loads its models with (insightface,
# RapidOCR, onnxruntime), for tests/test_immich_libraries.py. Separate because this project must
# not depend on them (insightface pulls scikit-learn, albumentations, matplotlib: ~850 MB).
# Versions: insightface 0.7.3 (Immich: >=0.7.3,<1.0, the last release), onnxruntime 1.23.2
# (Immich's lower bound, so the oldest runtime Immich accepts must read our models), RapidOCR 3.10.0.
# Prints the environment's python on success; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv-immich-libs
python="${PYTHON:-python3}"
pins=("onnxruntime==1.23.2" "rapidocr==3.10.0" "insightface==0.7.3")
if ! { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import insightface, rapidocr" 2>/dev/null; }; then
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip --disable-pip-version-check -q install "${pins[@]}" >&2
fi
echo "$PWD/$venv/bin/python"
