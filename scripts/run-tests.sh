#!/usr/bin/env bash
# Install everything the tests need and run the whole suite:
#   1. pytest (unit, fidelity, service and emulator tests), with Immich's own model libraries in a
#      separate environment for tests/test_immich_libraries.py (IMMICH_LIBS=0 leaves them out: those
#      tests then skip, saying so), then its runtime and service tests on an emulated Hailo-10H;
#   2. tests/test.sh against a freshly started worker on the emulated device.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh test
if [ "${IMMICH_LIBS:-1}" != 0 ]; then
  if libs=$(scripts/install-immich-libs.sh); then
    export IMMICH_LIBS_PYTHON="$libs"
  else
    echo "warning: the environment with Immich's insightface and RapidOCR could not be built; tests/test_immich_libraries.py will skip" >&2
  fi
fi

status=0
.venv/bin/python -m pytest -q -p no:cacheprovider "$@" || status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure here." >&2
  exit 1
fi
[ "$status" -eq 0 ] || exit "$status"

# The runtime, service and fault tests again on an emulated Hailo-10H under the emulated HailoRT 5.x
# module (tests/conftest.py); the emulator's own API tests are of 4.23 and cover 5.x in test_emulator_devices.
if [ "$#" -eq 0 ]; then
  .venv/bin/python -m pytest -q -p no:cacheprovider --emulated-arch hailo10h \
    tests/test_runtime.py tests/test_runtime_faults.py tests/test_runtime_devices.py tests/test_app_emulator.py \
    tests/test_service_faults.py tests/test_cut_probe.py tests/test_faces_emulation.py tests/test_ocr_emulator.py \
    tests/test_shutdown.py tests/test_overload.py tests/test_search_sessions.py tests/test_emulator_devices.py
fi

scripts/live-test.sh
