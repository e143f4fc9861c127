#!/usr/bin/env bash
# Install the worker and run it on the EMULATED Hailo device (no hardware needed).
# The emulator computes stand-in numbers: never point a real Immich library at this demo.
# Production on /dev/hailo0: see README.md (HAILO_DEVICE=hailort is the default).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install.sh emulator
models="${MODELS_DIR:-.cache/emulated-models}"
.venv/bin/python -m ml_target emulate-models "$models"
# Faces run the default compatible mode: a recogniser-shaped stand-in ONNX on the CPU.
export HAILO_DEVICE=emulator MODELS_DIR="$models"
export IMMICH_HOST="${IMMICH_HOST:-127.0.0.1}" IMMICH_PORT="${IMMICH_PORT:-3003}"
echo "Serving the emulated worker on http://${IMMICH_HOST}:${IMMICH_PORT} (Ctrl-C to stop)" >&2
exec .venv/bin/python -m ml_target serve
