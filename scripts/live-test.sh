#!/usr/bin/env bash
# Start the worker on the emulated device on a free loopback port, run tests/test.sh against it,
# and stop it again, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."

workdir="$(mktemp -d)"
port="$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
.venv/bin/python -m ml_target emulate-models "$workdir/models" >/dev/null

HAILO_DEVICE=emulator MODELS_DIR="$workdir/models" IMMICH_HOST=127.0.0.1 IMMICH_PORT="$port" \
  .venv/bin/python -m ml_target serve >"$workdir/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT

for _ in $(seq 1 120); do
  if curl -fsS "http://127.0.0.1:$port/ping" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "The emulated worker exited during start-up:" >&2
    cat "$workdir/server.log" >&2
    exit 1
  fi
  sleep 0.5
done

if ! BASE_URL="http://127.0.0.1:$port" PYTHON=.venv/bin/python bash tests/test.sh; then
  echo "--- worker log ---" >&2
  tail -n 50 "$workdir/server.log" >&2
  exit 1
fi
