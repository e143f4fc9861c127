#!/usr/bin/env bash
# Build, provision and start the Hailo machine-learning worker for Immich, then check and test it.
#
# Safe to re-run: image builds are cached, fetch-models skips verified models, and an existing
# container of the same name is replaced. Every path and name can be overridden from the
# environment (see usage) so the script can be tested against a temporary directory.
set -euo pipefail

REPO_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SYSFS_MODULE_DIR=${SYSFS_MODULE_DIR:-/sys/module}
HAILO_DEV_DIR=${HAILO_DEV_DIR:-/dev}
# The HailoRT line: 4 drives Hailo-8/8L (driver hailo_pci, nodes /dev/hailoN), 5 the Hailo-10H
# (driver hailo1x_pci, nodes /dev/h1x-N from driver 5.3.0, /dev/hailoN before). Default: the
# loaded driver's line (detect_line), else HAILORT_VERSION's major.
HAILORT_LINE=${HAILORT_LINE:-}
MODELS_DIR=${MODELS_DIR:-$REPO_DIR/models}
BASE_IMAGE_NAME=${BASE_IMAGE_NAME:-ml-target-hailo-base}
APP_IMAGE=${APP_IMAGE:-ml-target-hailo:latest}
CONTAINER_NAME=${CONTAINER_NAME:-immich-machine-learning-hailo}
ML_PORT=${ML_PORT:-3003}
ML_PUBLISH=${ML_PUBLISH:-127.0.0.1:$ML_PORT}
CLIP_BACKEND=${CLIP_BACKEND:-vit-b-32}
READY_TIMEOUT_S=${READY_TIMEOUT_S:-180}
DOCTOR_REPORT=${DOCTOR_REPORT:-$REPO_DIR/doctor.json}
MACHINE=${SETUP_MACHINE:-$(uname -m)}
FORWARDED_SETTINGS=(CLIP_BACKEND HAILO_ARCH HAILO_DEVICE_IDS TASKS FACE_DETECTOR FACE_RECOGNISER FACE_MODEL
  CLIP_SERVE_ANY_MODEL_NAME FACE_SERVE_ANY_MODEL_NAME FACE_RECOGNITION_THREADS HAILO_GROUP_ID HAILO_MULTI_PROCESS_SERVICE
  REQUEST_TIMEOUT_S LOG_LEVEL)
IMMICH_CACHE_DIR=${IMMICH_CACHE_DIR:-}

DRY_RUN=0
SKIP_MODELS=0
SKIP_TESTS=0
SKIP_DOCTOR=0
DOCTOR_FAILED=0
OFFLINE=0
FAILURES=()

usage() {
  cat <<EOF
Usage: ./setup.sh [--dry-run] [--offline] [--skip-models] [--skip-doctor] [--skip-tests]

Checks the host (Docker, the Hailo device nodes, driver = HailoRT files in hailo-rt-4/ for a
Hailo-8/8L or hailo-rt-5/ for a Hailo-10H), builds the images, fetches the models into models/ (the
HEFs from the Hailo Model Zoo; Immich's face recogniser and CLIP text files from Immich's own
published models), starts the container (with every card's node), runs 'python -m ml_target doctor'
inside it (the first run on a card, checked end to end; report in $DOCTOR_REPORT) and tests/test.sh
against it.

  --dry-run      check prerequisites, then print the commands instead of running them
  --offline      air-gapped install: use the loaded image instead of building, and verify
                 the models already in models/ instead of downloading
  --skip-models  leave models/ alone
  --skip-doctor  do not run doctor in the started container
  --skip-tests   do not run tests/test.sh against the started container

Environment (defaults): HAILORT_LINE (4 or 5: the loaded driver's), HAILO_DEVICE_PATH (every
/dev/hailoN, or /dev/h1x-N for a Hailo-10H; several separated by commas), HAILO_DRIVER_VERSION_FILE
(/sys/module/hailo_pci/version, hailo1x_pci for line 5), HAILO_RT_DIR (hailo-rt-<line>),
HAILORT_VERSION (= driver version), MODELS_DIR, DOCTOR_REPORT, BASE_IMAGE_NAME, APP_IMAGE,
CONTAINER_NAME ($CONTAINER_NAME), ML_PORT ($ML_PORT), ML_PUBLISH ($ML_PUBLISH),
READY_TIMEOUT_S ($READY_TIMEOUT_S), IMMICH_CACHE_DIR (a copy of Immich's model cache, e.g. the
host path of its model-cache volume: Immich's files are copied from it instead of downloaded),
and the worker settings ${FORWARDED_SETTINGS[*]}.
EOF
}

say() { printf '==> %s\n' "$*"; }
fail() { FAILURES+=("$*"); printf 'ERROR: %s\n' "$*" >&2; }

# Run a command, or only show it under --dry-run.
run() {
  if ((DRY_RUN)); then
    printf '[dry-run]'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}

parse_args() {
  while (($#)); do
    case $1 in
      --dry-run) DRY_RUN=1 ;;
      --offline) OFFLINE=1 ;;
      --skip-models) SKIP_MODELS=1 ;;
      --skip-doctor) SKIP_DOCTOR=1 ;;
      --skip-tests) SKIP_TESTS=1 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; printf 'unknown option: %s\n' "$1" >&2; exit 2 ;;
    esac
    shift
  done
}

check_docker() {
  if ! command -v docker >/dev/null 2>&1; then
    fail "docker is not installed: install Docker Engine with the compose plugin (https://docs.docker.com/engine/install/), then re-run"
    return
  fi
  local out
  if ! out=$(docker info 2>&1); then
    if [[ $out == *"permission denied"* ]]; then
      fail "no permission to use Docker: run 'sudo usermod -aG docker ${USER:-$(id -un)}', log out and in again, then re-run"
    else
      fail "the Docker daemon is not reachable: start it ('sudo systemctl enable --now docker') and re-run"
    fi
  fi
}

# HAILORT_LINE from HAILORT_VERSION, else from the loaded driver (hailo1x_pci: 5; hailo_pci: 4).
detect_line() {
  if [[ -z $HAILORT_LINE && -n ${HAILORT_VERSION:-} ]]; then
    HAILORT_LINE=${HAILORT_VERSION%%.*}
  fi
  if [[ -z $HAILORT_LINE ]]; then
    if [[ -e $SYSFS_MODULE_DIR/hailo1x_pci && -e $SYSFS_MODULE_DIR/hailo_pci ]]; then
      fail "both Hailo drivers are loaded (hailo_pci for Hailo-8/8L, hailo1x_pci for Hailo-10H): one worker drives one HailoRT line; set HAILORT_LINE=4 or HAILORT_LINE=5 (and HAILO_DEVICE_IDS for its cards)"
    fi
    if [[ -e $SYSFS_MODULE_DIR/hailo1x_pci ]]; then HAILORT_LINE=5; else HAILORT_LINE=4; fi
  fi
  case $HAILORT_LINE in
    4) DRIVER_MODULE=hailo_pci ;;
    5) DRIVER_MODULE=hailo1x_pci ;;
    *) fail "HAILORT_LINE=$HAILORT_LINE: give 4 (Hailo-8/8L) or 5 (Hailo-10H)"; HAILORT_LINE=4; DRIVER_MODULE=hailo_pci ;;
  esac
  HAILO_DRIVER_VERSION_FILE=${HAILO_DRIVER_VERSION_FILE:-$SYSFS_MODULE_DIR/$DRIVER_MODULE/version}
  HAILO_RT_DIR=${HAILO_RT_DIR:-$REPO_DIR/hailo-rt-$HAILORT_LINE}
}

# DEVICE_NODES: HAILO_DEVICE_PATH (comma-separated), else every node of the line's cards.
check_device() {
  local node
  DEVICE_NODES=()
  if [[ -n ${HAILO_DEVICE_PATH:-} ]]; then
    IFS=', ' read -r -a DEVICE_NODES <<<"$HAILO_DEVICE_PATH"
    for node in "${DEVICE_NODES[@]}"; do
      [[ -e $node ]] || fail "$node does not exist: the Hailo card is not detected or its driver ($DRIVER_MODULE) is not loaded. Check 'lspci | grep -i hailo'; on x86 install hailort-pcie-driver_<version>_all.deb and reboot; on a Raspberry Pi 5 run 'sudo apt install hailo-all' (Hailo-8/8L) or 'sudo apt install hailo-h10-all' (Hailo-10H) and reboot (README.md, Deployment in detail)"
    done
    return 0
  fi
  shopt -s nullglob
  if ((HAILORT_LINE == 5)); then
    DEVICE_NODES=("$HAILO_DEV_DIR"/h1x-[0-9]*)
  fi
  ((${#DEVICE_NODES[@]})) || DEVICE_NODES=("$HAILO_DEV_DIR"/hailo[0-9]*)
  shopt -u nullglob
  if ((${#DEVICE_NODES[@]} == 0)); then
    fail "no Hailo device node in $HAILO_DEV_DIR (hailo0, or h1x-0 for a Hailo-10H with driver 5.3+): the card is not detected or its driver ($DRIVER_MODULE) is not loaded. Check 'lspci | grep -i hailo'; on x86 install hailort-pcie-driver_<version>_all.deb and reboot; on a Raspberry Pi 5 run 'sudo apt install hailo-all' (Hailo-8/8L) or 'sudo apt install hailo-h10-all' (Hailo-10H) and reboot (README.md, Deployment in detail)"
  fi
}

# --device arguments for docker: every node under its own name (HailoRT looks for it there).
device_args() {
  local node
  DEVICE_ARGS=()
  for node in "${DEVICE_NODES[@]}"; do
    DEVICE_ARGS+=(--device "$node:/dev/${node##*/}")
  done
}

# Prints the loaded driver's version, or nothing.
driver_version() {
  if [[ -r $HAILO_DRIVER_VERSION_FILE ]]; then
    tr -d '[:space:]' <"$HAILO_DRIVER_VERSION_FILE"
  elif command -v modinfo >/dev/null 2>&1; then
    modinfo -F version "$DRIVER_MODULE" 2>/dev/null | tr -d '[:space:]' || true
  fi
}

# Sets DEB_ARCH / WHL_ARCH for the host; HailoRT ships amd64 and arm64 packages.
host_arch() {
  case $MACHINE in
    x86_64 | amd64) DEB_ARCH=amd64; WHL_ARCH=x86_64 ;;
    aarch64 | arm64) DEB_ARCH=arm64; WHL_ARCH=aarch64 ;;
    *) fail "unsupported CPU architecture '$MACHINE': HailoRT packages exist for x86_64 and aarch64"; return 1 ;;
  esac
}

# Versions for which hailo-rt-4/ holds files of this host's architecture, one per line.
present_versions() {
  local file
  shopt -s nullglob
  for file in "$HAILO_RT_DIR"/hailort_*_"$DEB_ARCH".deb "$HAILO_RT_DIR"/hailort-*-cp312-cp312-linux_"$WHL_ARCH".whl; do
    file=${file##*/}
    file=${file#hailort[_-]}
    printf '%s\n' "${file%%[_-]*}"
  done | sort -u
  shopt -u nullglob
}

check_hailort() {
  host_arch || return 0
  local driver present
  driver=$(driver_version)
  present=$(present_versions | paste -sd ' ' -)
  if [[ -z $driver ]]; then
    fail "cannot read the $DRIVER_MODULE driver version ($HAILO_DRIVER_VERSION_FILE missing, 'modinfo $DRIVER_MODULE' failed): install and load the HailoRT PCIe driver (README.md, Deployment in detail)"
  fi
  HAILORT_VERSION=${HAILORT_VERSION:-${driver:-${present%% *}}}
  if [[ -z $HAILORT_VERSION ]]; then
    fail "no HailoRT files in $HAILO_RT_DIR: download hailort_<version>_$DEB_ARCH.deb and hailort-<version>-cp312-cp312-linux_$WHL_ARCH.whl (the same version as the driver) from the Hailo Developer Zone into it (hailo-rt-$HAILORT_LINE/README.md)"
    return 0
  fi
  if [[ ${HAILORT_VERSION%%.*} != "$HAILORT_LINE" ]]; then
    fail "HAILORT_VERSION $HAILORT_VERSION is not of the HailoRT $HAILORT_LINE.x line the $DRIVER_MODULE driver belongs to: a Hailo-8/8L needs HailoRT 4.x, a Hailo-10H HailoRT 5.x"
  fi
  if [[ -n $driver && $driver != "$HAILORT_VERSION" ]]; then
    fail "the $DRIVER_MODULE driver is $driver but HAILORT_VERSION is $HAILORT_VERSION: libhailort refuses any other driver version (HAILO_INVALID_DRIVER_VERSION, 76). Use HailoRT $driver files or install driver $HAILORT_VERSION"
  fi
  local deb="$HAILO_RT_DIR/hailort_${HAILORT_VERSION}_$DEB_ARCH.deb"
  local whl="$HAILO_RT_DIR/hailort-${HAILORT_VERSION}-cp312-cp312-linux_$WHL_ARCH.whl"
  local missing=() file
  for file in "$deb" "$whl"; do
    [[ -f $file ]] || missing+=("${file##*/}")
  done
  if ((${#missing[@]})) && [[ -n $present && " $present " != *" $HAILORT_VERSION "* ]]; then
    fail "driver/library version mismatch: HailoRT $HAILORT_VERSION is needed (the $DRIVER_MODULE driver version) but $HAILO_RT_DIR holds HailoRT $present. Download ${missing[*]} from the Hailo Developer Zone, or install $DRIVER_MODULE $present so both match (libhailort refuses any other driver version: error 76)"
  elif ((${#missing[@]})); then
    fail "missing in $HAILO_RT_DIR: ${missing[*]} (HailoRT $HAILORT_VERSION to match the driver; found versions: ${present:-none}). Download them from the Hailo Developer Zone (hailo-rt-$HAILORT_LINE/README.md)"
  fi
}

check_immich_cache() {
  if [[ -n $IMMICH_CACHE_DIR && ! -d $IMMICH_CACHE_DIR ]]; then
    fail "IMMICH_CACHE_DIR=$IMMICH_CACHE_DIR is not a directory: give the host path of Immich's model-cache volume (or a copy made with 'docker cp immich_machine_learning:/cache ./immich-cache'), or unset it to download Immich's models"
  fi
}

check_test_tools() {
  ((SKIP_TESTS)) && return 0
  local tool
  for tool in curl python3; do
    command -v "$tool" >/dev/null 2>&1 || fail "$tool is needed to test the container: install it, or pass --skip-tests"
  done
}

settings_args() {
  local name
  SETTINGS_ARGS=()
  for name in "${FORWARDED_SETTINGS[@]}"; do
    if [[ -n ${!name:-} ]]; then
      SETTINGS_ARGS+=(-e "$name=${!name}")
    fi
  done
}

build_images() {
  local base="$BASE_IMAGE_NAME:$HAILORT_VERSION"
  if ((OFFLINE)); then
    # Building needs Ubuntu and PyPI packages: an offline install brings the image (docker load).
    if docker image inspect "$APP_IMAGE" >/dev/null 2>&1; then
      say "--offline: using the existing image $APP_IMAGE"
      return 0
    fi
    printf 'ERROR: --offline needs the image %s: on a connected machine run ./setup.sh (or docker build) and docker save %s, then docker load it here (README.md, Offline install)\n' \
      "$APP_IMAGE" "$APP_IMAGE" >&2
    exit 1
  fi
  say "building $base and $APP_IMAGE"
  run docker build -f "$REPO_DIR/Dockerfile.hailo-base" --build-arg "HAILORT_VERSION=$HAILORT_VERSION" \
    --build-arg "HAILO_RT_DIR=hailo-rt-$HAILORT_LINE" -t "$base" "$REPO_DIR"
  run docker build -f "$REPO_DIR/Dockerfile.app" --build-arg "BASE_IMAGE=$base" -t "$APP_IMAGE" "$REPO_DIR"
}

fetch_models() {
  ((SKIP_MODELS)) && return 0
  local mode=() cache=()
  ((OFFLINE)) && mode=(--offline)
  if [[ -n $IMMICH_CACHE_DIR ]]; then
    cache=(-v "$IMMICH_CACHE_DIR:/immich-cache:ro")
    mode+=(--immich-cache /immich-cache)
  fi
  say "provisioning models in $MODELS_DIR"
  run mkdir -p "$MODELS_DIR"
  run docker run --rm "${DEVICE_ARGS[@]}" --user "$(id -u):$(id -g)" \
    -v "$MODELS_DIR:/models" "${cache[@]}" "${SETTINGS_ARGS[@]}" "$APP_IMAGE" fetch-models "${mode[@]}"
}

start_container() {
  if docker container inspect "$CONTAINER_NAME" >/dev/null 2>&1; then
    say "replacing the existing container $CONTAINER_NAME"
    run docker rm -f "$CONTAINER_NAME"
  fi
  say "starting $CONTAINER_NAME on $ML_PUBLISH"
  run docker run -d --name "$CONTAINER_NAME" --restart unless-stopped --stop-timeout 30 \
    "${DEVICE_ARGS[@]}" -v "$MODELS_DIR:/models:ro" \
    -p "$ML_PUBLISH:3003" "${SETTINGS_ARGS[@]}" "$APP_IMAGE"
}

wait_ready() {
  ((DRY_RUN)) && return 0
  local url="http://127.0.0.1:$ML_PORT/ping" waited=0
  say "waiting for $url"
  until [[ $(curl -fsS --max-time 2 "$url" 2>/dev/null || true) == pong ]]; do
    if ((waited >= READY_TIMEOUT_S)); then
      docker logs --tail 50 "$CONTAINER_NAME" >&2 || true
      printf 'ERROR: %s did not answer pong within %s s; its last log lines are above (README.md, Troubleshooting)\n' \
        "$CONTAINER_NAME" "$READY_TIMEOUT_S" >&2
      exit 1
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

# The Immich model name whose requests CLIP_BACKEND answers (TinyCLIP has no Immich twin).
clip_model() {
  case $CLIP_BACKEND in
    vit-b-16) echo ViT-B-16__openai ;;
    siglip) echo ViT-B-16-SigLIP__webli ;;
    siglip2) echo ViT-B-32-SigLIP2-256__webli ;;
    *) echo ViT-B-32__openai ;;
  esac
}

# doctor examines the running worker over loopback inside its own container (the device has one owner).
run_doctor() {
  ((SKIP_DOCTOR)) && return 0
  say "checking the device, the HEFs and every task end to end (doctor)"
  if ! run docker exec "$CONTAINER_NAME" python -m ml_target doctor --url http://127.0.0.1:3003 --json /tmp/doctor.json; then
    DOCTOR_FAILED=1
  fi
  run docker cp "$CONTAINER_NAME:/tmp/doctor.json" "$DOCTOR_REPORT" || true
}

run_tests() {
  ((SKIP_TESTS)) && return 0
  say "testing the running worker"
  run env BASE_URL="http://127.0.0.1:$ML_PORT" FACE_MODEL="${FACE_MODEL:-buffalo_l}" CLIP_MODEL="$(clip_model)" \
    bash "$REPO_DIR/tests/test.sh"
}

main() {
  parse_args "$@"
  say "checking prerequisites"
  check_docker
  detect_line
  check_device
  check_hailort
  check_immich_cache
  check_test_tools
  if ((${#FAILURES[@]})); then
    printf '%s prerequisite(s) failed; fix the above and re-run ./setup.sh\n' "${#FAILURES[@]}" >&2
    exit 1
  fi
  say "HailoRT $HAILORT_VERSION ($DEB_ARCH), device(s) ${DEVICE_NODES[*]}"
  settings_args
  device_args
  build_images
  fetch_models
  start_container
  wait_ready
  run_doctor
  run_tests
  if ((DOCTOR_FAILED)); then
    printf 'ERROR: doctor found problems (the table above; %s): the worker is running, but do not point Immich at it until they are fixed (README.md, First run on a card)\n' \
      "$DOCTOR_REPORT" >&2
    exit 1
  fi
  say "done. In Immich: Administration > Settings > Machine Learning > URL = http://<this host>:$ML_PORT" \
    "(or http://$CONTAINER_NAME:3003 from Immich's compose network)"
}

main "$@"
