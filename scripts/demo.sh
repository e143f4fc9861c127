#!/usr/bin/env bash
# Install the worker and run it on the EMULATED Hailo device (no hardware needed).
# The emulator computes stand-in numbers: never point a real Immich library at this demo.
# Production on /dev/hailo0: see README.md (HAILO_DEVICE=hailort is the default).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'USAGE'
Usage: scripts/demo.sh [--help]

Installs ml_target into ./.venv (extras: emulator and bench), writes an emulated models directory
and serves Immich's ML protocol on the EMULATED Hailo device until Ctrl-C. The numbers it returns
are stand-ins: never point a real Immich library at it.

Environment:
  IMMICH_HOST   listen address (default 127.0.0.1)
  IMMICH_PORT   listen port (default 3003); checked before anything is installed
  MODELS_DIR    emulated models directory (default .cache/emulated-models)
  PYTHON        the Python 3.10-3.12 to build .venv with (default python3)

Needs python3 with venv (Debian/Ubuntu: apt install python3-venv) and about 1 GB of disk.
Afterwards, in another shell: .venv/bin/python -m ml_target bench --quick
USAGE
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "demo.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
esac

host="${IMMICH_HOST:-127.0.0.1}"
port="${IMMICH_PORT:-3003}"
# Bind the port as uvicorn will (SO_REUSEADDR), before spending minutes installing and loading models.
if ! "${PYTHON:-python3}" - "$host" "$port" <<'PY'
import socket
import sys

host, port = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as exc:
        print(f"demo.sh: cannot listen on {host}:{port} ({exc.strerror}); "
              f"is another worker running? Pick another port: IMMICH_PORT={port + 1} scripts/demo.sh",
              file=sys.stderr)
        sys.exit(1)
PY
then
  exit 1
fi

scripts/install.sh emulator,bench
models="${MODELS_DIR:-.cache/emulated-models}"
.venv/bin/python -m ml_target emulate-models "$models"
# Faces run the default compatible mode: a recogniser-shaped stand-in ONNX on the CPU.
export HAILO_DEVICE=emulator MODELS_DIR="$models"
export IMMICH_HOST="$host" IMMICH_PORT="$port"
echo "Serving the emulated worker on http://${IMMICH_HOST}:${IMMICH_PORT} (Ctrl-C to stop)" >&2
exec .venv/bin/python -m ml_target serve
