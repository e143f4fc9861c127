"""`python -m ml_target doctor` on the emulator: the right configuration passes, each broken one is named.

The emulated models directory has stand-ins with meaning where the probes need it (faces found by
a cascade, the real PP-OCRv5 weights, the colour-aware CLIP stand-in). Each broken variant is what
a real card could present: image channels swapped, a text HEF with or without its position table
against the catalog, SCRFD heads in another channel order, a dictionary one class short, HEFs for
the other chip.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ml_target import catalog
from ml_target.doctor.command import examine_in_process
from ml_target.doctor.report import Verdict, passed, render
from ml_target.hailo import emulator
from ml_target.testing import clip_stand_in, faces_emulation
from ml_target.testing.emulated_models import write_emulated_models_dir
from ml_target.text.ocr_dictionary import DICTIONARY_FILE
from tests.emulated_service import emulated_settings

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good_models(tmp_path_factory):
    return write_models(tmp_path_factory.mktemp("doctor-models"))


def write_models(directory: Path) -> Path:
    write_emulated_models_dir(directory)
    return directory


@pytest.fixture
def models(good_models, tmp_path):
    """A copy of the good directory for one test to break."""
    return Path(shutil.copytree(good_models, tmp_path / "models"))


def doctor(models_dir: Path, **settings) -> dict[str, object]:
    emulator.device().reset()
    checks = asyncio.run(examine_in_process(emulated_settings(models_dir, **settings)))
    print(render(checks))
    return {check.name: check for check in checks}


def failures(checks) -> dict[str, object]:
    return {name: check for name, check in checks.items() if check.verdict is Verdict.FAIL}


def test_the_right_configuration_passes(good_models):
    checks = doctor(good_models)
    assert failures(checks) == {}
    for name in ("faces: detection", "faces: recognition", "ocr: page", "ocr: colour order", "smart search: colours",
                 "text cut clip_vit_b_32", "edges scrfd_10g", "file scrfd_10g.hef", "task ocr"):
        assert checks[name].verdict is Verdict.PASS, name
    assert checks["device"].verdict is Verdict.WARN and "EMULATED" in checks["device"].detail
    assert checks["smart search: photos"].verdict is Verdict.SKIP
    assert checks["faces: recognition"].data["same_person"][0] > max(checks["faces: recognition"].data["different_people"])


@pytest.mark.parametrize("setting", ["siglip", "tinyclip", "siglip2"])
def test_other_backends_pass_too(good_models, setting):
    checks = doctor(good_models, clip_backend=setting, tasks=("clip",))
    assert failures(checks) == {}
    assert checks["smart search: colours"].verdict is Verdict.PASS


def test_swapped_colour_order_is_named(models):
    clip_stand_in.write_stand_in_models(models, "clip_vit_b_32", channels="bgr")
    failed = failures(doctor(models, tasks=("clip",)))
    assert list(failed) == ["smart search: colours"]
    assert "red and blue swapped" in failed["smart search: colours"].detail
    assert "expects BGR" in failed["smart search: colours"].fix


def test_positions_added_twice_are_named(models, monkeypatch):
    backend = catalog.BACKENDS["clip_vit_b_32"]
    declared = dataclasses.replace(backend, text_cut=dataclasses.replace(backend.text_cut, positions="host"))
    monkeypatch.setitem(catalog.BACKENDS, backend.id, declared)
    checks = doctor(models, tasks=("clip",))
    assert list(failures(checks)) == ["text cut clip_vit_b_32"]
    assert "added twice" in checks["text cut clip_vit_b_32"].detail
    assert checks["smart search: colours"].verdict is Verdict.PASS  # the worker followed the HEF


def test_a_text_hef_without_positions_is_named(models):
    clip_stand_in.write_stand_in_models(models, "clip_vit_b_32", positions=False)
    checks = doctor(models, tasks=("clip",))
    assert list(failures(checks)) == ["text cut clip_vit_b_32"]
    assert "would have been missing" in checks["text cut clip_vit_b_32"].detail


def test_scrfd_heads_in_the_wrong_order_are_named(models):
    faces_emulation.write_face_models(models, layout="channel-major")
    failed = failures(doctor(models, tasks=("faces",)))
    assert "faces: detection" in failed
    assert "decode wrongly" in failed["faces: detection"].fix


def test_a_dictionary_one_class_short_is_named(models):
    dictionary = models / DICTIONARY_FILE
    lines = dictionary.read_text(encoding="utf-8").splitlines()
    dictionary.write_text("\n".join(lines[:-1]) + "\n", encoding="utf-8")
    checks = doctor(models, tasks=("ocr",))
    assert list(failures(checks)) == ["task ocr"]
    assert "18385" in checks["task ocr"].detail
    assert "ocr: page" not in checks


def test_hefs_for_the_other_chip_are_named(models):
    emulator.device().reset()
    emulator.device().set_architecture("hailo8l")
    try:
        checks = asyncio.run(examine_in_process(emulated_settings(models, tasks=("faces",))))
    finally:
        emulator.device().reset()
    failed = failures({c.name: c for c in checks})
    assert "compiled for hailo8p; a hailo8l does not run it" in failed["file scrfd_10g.hef"].detail
    assert "--arch hailo8l" in failed["file scrfd_10g.hef"].fix
    assert "task faces" in failed


def test_the_command_writes_json_and_exits_non_zero_on_failure(models, tmp_path):
    clip_stand_in.write_stand_in_models(models, "clip_vit_b_32", channels="bgr")
    env = {"HAILO_DEVICE": "emulator", "HAILO_EMULATOR_PROFILE": "none", "MODELS_DIR": str(models), "TASKS": "clip",
           "PATH": "/usr/bin:/bin"}
    report = tmp_path / "doctor.json"
    proc = subprocess.run([sys.executable, "-m", "ml_target", "doctor", "--json", str(report)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "FAIL  smart search: colours" in proc.stdout and "doctor: FAILED" in proc.stdout
    document = json.loads(report.read_text())
    assert document["passed"] is False and document["mode"] == "in-process"
    by_name = {c["name"]: c for c in document["checks"]}
    assert by_name["smart search: colours"]["verdict"] == "FAIL"
    assert len(by_name["smart search: colours"]["data"]["similarity"]) == 5


@contextlib.contextmanager
def running_worker(models_dir: Path, log: Path):
    """`python -m ml_target serve` on the emulated device, on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "HAILO_DEVICE": "emulator", "HAILO_EMULATOR_PROFILE": "none", "MODELS_DIR": str(models_dir),
           "IMMICH_HOST": "127.0.0.1", "IMMICH_PORT": str(port), "FACE_SERVE_ANY_MODEL_NAME": "true"}
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "ml_target", "serve"], cwd=ROOT, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"{url}/ping", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_doctor_examines_a_running_worker_over_http(good_models, tmp_path):
    """--url: the device belongs to the running worker; doctor only speaks HTTP to it."""
    with running_worker(good_models, tmp_path / "server.log") as url:
        env = {"HAILO_DEVICE": "emulator", "MODELS_DIR": str(good_models), "PATH": "/usr/bin:/bin"}
        proc = subprocess.run([sys.executable, "-m", "ml_target", "doctor", "--url", url, "--json", "-"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    document = json.loads(proc.stdout[proc.stdout.index("{"):])
    assert document["passed"] is True and document["mode"] == "url"
    names = {c["name"]: c["verdict"] for c in document["checks"]}
    assert names["ocr: page"] == names["smart search: colours"] == names["faces: detection"] == "PASS"


def test_passed_counts_only_failures():
    from ml_target.doctor.report import Check

    assert passed([Check("a", Verdict.WARN, ""), Check("b", Verdict.SKIP, "")])
    assert not passed([Check("a", Verdict.PASS, ""), Check("b", Verdict.FAIL, "")])


def test_device_checks_name_each_card_and_fail_a_card_that_is_down():
    from ml_target.doctor.checks import device_checks

    info = {"library_version": "5.3.0", "driver_version": "5.3.0", "firmware_version": "5.3.0", "pcie": None,
            "architecture": "HAILO10H", "product_name": "HAILO-10H M.2", "serial_number": "S1"}
    health = {"arch": "hailo10h", "device": "hailort", "devices": [
        {"device_id": "0000:01:00.0", "state": "ready", "temperature_c": 50.0,
         "device_info": {**info, "device_id": "0000:01:00.0"}},
        {"device_id": "0000:02:00.0", "state": "down", "reason": "rebuild attempt 2 failed", "temperature_c": None,
         "device_info": {**info, "device_id": "0000:02:00.0", "driver_version": "5.2.0"}},
    ]}
    checks = {c.name: c for c in device_checks(health)}
    assert checks["device 0000:01:00.0"].verdict == Verdict.PASS
    assert checks["versions 0000:01:00.0"].verdict == Verdict.PASS
    assert checks["device 0000:02:00.0"].verdict == Verdict.FAIL
    assert "rebuild attempt 2" in checks["device 0000:02:00.0"].detail
    mismatch = checks["versions 0000:02:00.0"]
    assert mismatch.verdict == Verdict.FAIL and "hailo1x_pci 5.3.0" in mismatch.fix
    assert checks["temperature 0000:02:00.0"].verdict == Verdict.SKIP
