#!/usr/bin/env bash
# Install everything the tests need and run the whole suite:
#   1. pytest (unit, fidelity, service and emulator tests);
#   2. tests/test.sh against a freshly started worker on the emulated device.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh test

status=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here." >&2
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

scripts/live-test.sh
