"""fetch-models against a loopback HTTP server serving generated HEF-like files.

The fake HEFs have a real header (magic, version, protobuf with `header.hw_arch`) and random
bytes after it, so the same parser that guards real downloads is exercised.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import struct
import subprocess
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from ml_target import hef_header, provision
from ml_target.config import Settings
from ml_target.networks import NETWORKS
from tests.fixture_server import Zoo, serve_zoo

ARCH_CODES = {"hailo8": 0, "hailo8p": 1, "hailo8r": 2, "hailo8l": 3, "hailo10h_legacy": 5, "hailo1xh": 103}


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def fake_hef(
    arch: str = "hailo8l", version: int = 3, payload_size: int = 200_000, seed: int = 0, proto_hash: int = 0
) -> bytes:
    """A HEF-shaped file: HailoRT's header, `ProtoHEFHef{header{hw_arch}, ...}`, random "weights".

    The header's size fields describe the payload as HailoRT expects (v0 has none; v3 splits it
    into config words and additional info), so a correct file passes the length check.
    """
    code = ARCH_CODES[arch]
    header_msg = b"" if code == 0 else b"\x08" + _varint(code)  # proto3 omits a zero enum
    group = b"\x52\x0ascrfd_2_5g"  # field 10 network_group_name, only to have a second field
    proto = b"\x0a" + _varint(len(header_msg)) + header_msg + b"\x12" + _varint(len(group)) + group
    if version == 0:
        payload_size = 0
    common = struct.pack(">III", 0x01484546, version, len(proto))
    if version == 0:
        distinct = b"\0" * 20  # reserved + md5 (not checked here)
    elif version == 1:
        distinct = struct.pack(">IQI", 0, payload_size, 0)
    elif version == 2:
        distinct = struct.pack(">QQQQ", 0, payload_size, 0, 0)
    else:  # the last 100 bytes count as additional info
        distinct = struct.pack(">QQIQQQ", 0, payload_size - 100, 0, 100, proto_hash, 0)
    payload = np.random.default_rng(seed).integers(0, 256, payload_size, dtype=np.uint8).tobytes()
    return common + distinct + proto + payload


# --------------------------------------------------------------------------- header parsing


@pytest.mark.parametrize("version", [0, 1, 2, 3])
@pytest.mark.parametrize("arch", ["hailo8", "hailo8l", "hailo8r", "hailo10h_legacy", "hailo1xh"])
def test_header_parses_version_and_arch(version: int, arch: str) -> None:
    data = fake_hef(arch, version, payload_size=1000)
    header = hef_header.parse_header(data)
    assert header.version == version
    assert header.header_size == hef_header.HEADER_SIZES[version] == len(struct.pack(">III", 0, 0, 0)) + {
        0: 20, 1: 16, 2: 32, 3: 44}[version]
    assert header.hw_arch == arch
    assert header.file_size == len(data) and header.exact_size


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_header_length_is_checked_like_hailort(version: int) -> None:
    data = fake_hef("hailo8l", version, payload_size=1000)
    with pytest.raises(hef_header.HefFormatError, match=f"truncated HEF: {len(data) - 1} bytes.*promises {len(data)}"):
        hef_header.parse_header(data[:-1])
    with pytest.raises(hef_header.HefFormatError, match="error 91"):
        hef_header.parse_header(data + b"\0")
    # read_header sees only the start of a large file but checks the real size on disk.
    with pytest.raises(hef_header.HefFormatError, match="truncated"):
        hef_header.parse_header(data[:200], file_size=len(data) - 5)


def test_v3_size_rule_follows_the_hailort_line() -> None:
    """4.23 reads the v3 checksum field as reserved and always wants the exact size; 5.x relaxes it."""
    data = fake_hef("hailo8p", 3, payload_size=1000, proto_hash=12345) + b"\0" * 8
    with pytest.raises(hef_header.HefFormatError, match="error 91"):
        hef_header.parse_header(data)
    header = hef_header.parse_header(data, hailort_major=5)
    assert not header.exact_size and header.file_size == len(data) - 8


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"<!DOCTYPE html><html><body>Access denied</body></html>", "HTML page"),
        (b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code></Error>", "XML error"),
        (b'{"format": "ml_target-emulated-hef", "version": 1}', "emulated HEF"),
        (b"", "empty"),
        (b"\x7fELF\x02\x01", "7f 45 4c 46"),
    ],
)
def test_header_rejects_non_hef_saying_what_it_is(data: bytes, words: str) -> None:
    with pytest.raises(hef_header.HefFormatError, match=words):
        hef_header.parse_header(data)


def test_header_rejects_unknown_version_and_truncation() -> None:
    good = fake_hef("hailo8l", 3, payload_size=100)
    with pytest.raises(hef_header.HefFormatError, match="version 4"):
        hef_header.parse_header(good[:4] + struct.pack(">I", 4) + good[8:])
    with pytest.raises(hef_header.HefFormatError, match="ends inside its header"):
        hef_header.parse_header(good[:10])
    with pytest.raises(hef_header.HefFormatError, match="header alone is 56"):
        hef_header.parse_header(good[:20])


def test_accepted_by_follows_hailort_rules() -> None:
    """HailoRT 4.23 `is_hef_compatible`: a Hailo-8 refuses a HAILO8 (0) header, takes 8P, 8R and 8L."""
    assert hef_header.accepted_by("hailo8", "hailo8l")
    assert hef_header.accepted_by("hailo8", "hailo8r")
    assert hef_header.accepted_by("hailo8", "hailo8p")
    assert not hef_header.accepted_by("hailo8", "hailo8")
    assert hef_header.accepted_by("hailo8l", "hailo8l")
    assert not hef_header.accepted_by("hailo8l", "hailo8p")
    assert not hef_header.accepted_by("hailo8", "hailo1xh")


def test_a_hailo10h_takes_the_5x_builds_only() -> None:
    """HailoRT 5.2 `hef_arch_to_device_compatible_archs`: HAILO1XH (103), GINGER, LAVENDER, HAILO15M;
    the 4.x-era HAILO10H (5) and every Hailo-8 build are refused (93)."""
    assert hef_header.accepted_by("hailo10h", "hailo1xh")
    assert hef_header.accepted_by("hailo10h", "hailo15m")
    assert not hef_header.accepted_by("hailo10h", "hailo10h_legacy")
    assert not hef_header.accepted_by("hailo10h", "hailo8l")
    assert not hef_header.accepted_by("hailo8l", "hailo1xh")


def test_an_emulated_hef_reports_its_build_as_a_real_header_would(tmp_path) -> None:
    from ml_target.hailo.emulator.models_dir import write_hef
    from ml_target.networks import NETWORKS

    path = write_hef(tmp_path / "scrfd_2.5g.hef", spec=NETWORKS["scrfd_2.5g"], hw_arch="hailo8")
    assert hef_header.target_arch(path) == "hailo8p"
    path = write_hef(tmp_path / "scrfd_10g.hef", spec=NETWORKS["scrfd_10g"], hw_arch="hailo8l")
    assert hef_header.target_arch(path) == "hailo8l"


# --------------------------------------------------------------------------- what to fetch


def test_required_networks_follow_settings() -> None:
    default = provision.required_networks(Settings())
    assert default == [  # faces: only the detector on the device; Immich's recogniser runs on the CPU
        "clip_vit_b_32_image_encoder",
        "clip_vit_b_32_text_encoder",
        "scrfd_10g",
        "paddle_ocr_v5_mobile_detection",
        "paddle_ocr_v5_mobile_recognition",
    ]
    tiny = provision.required_networks(Settings.from_env({"CLIP_BACKEND": "tinyclip", "TASKS": "clip"}))
    assert tiny == [
        "tinyclip_vit_39m_16_text_19m_yfcc15m_image_encoder",
        "tinyclip_vit_39m_16_text_19m_yfcc15m_text_encoder",
    ]
    faces = provision.required_networks(
        Settings.from_env({"TASKS": "faces", "FACE_DETECTOR": "scrfd_2.5g", "FACE_RECOGNISER": "arcface_mobilefacenet"})
    )
    assert faces == ["scrfd_2.5g"]
    hailo = Settings.from_env({"TASKS": "faces", "FACE_SERVE_ANY_MODEL_NAME": "true", "FACE_RECOGNISER": "arcface_mobilefacenet"})
    assert provision.required_networks(hailo) == ["scrfd_10g", "arcface_mobilefacenet"]


def test_every_clip_backend_needs_two_known_hefs() -> None:
    from ml_target.config import CLIP_BACKENDS

    for setting in CLIP_BACKENDS:
        image, text = provision.required_networks(Settings(clip_backend=setting, tasks=("clip",)))
        assert image in NETWORKS and image.endswith("_image_encoder")
        assert text in NETWORKS and text.endswith("_text_encoder")


def test_urls_point_at_the_zoo_or_a_mirror() -> None:
    assert provision.hef_url("scrfd_2.5g", "hailo8l") == (
        "https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled/v2.18.0/hailo8l/scrfd_2.5g.hef"
    )
    assert provision.hef_url("siglip2_b_32_256_text_encoder", "hailo10h") == (
        "https://hailo-model-zoo.s3.eu-west-2.amazonaws.com/ModelZoo/Compiled/v5.3.0/hailo10h/"
        "siglip2_b_32_256_text_encoder.hef"
    )
    assert provision.hef_url("scrfd_2.5g", "hailo8", "http://m/zoo/") == "http://m/zoo/hailo8/scrfd_2.5g.hef"


@pytest.mark.parametrize(
    ("text", "arch"),
    [
        ("Board Name: Hailo-8\nDevice Architecture: HAILO8\n", "hailo8"),
        ("Device Architecture: HAILO8L\nSerial Number: X\n", "hailo8l"),
        ("Board Name: Hailo-10H\nDevice Architecture: HAILO10H\n", "hailo10h"),
        ("Device Architecture: HAILO15H\n", "hailo10h"),  # what some 10H firmware says (hailo-apps maps both)
    ],
)
def test_arch_from_identify(text: str, arch: str) -> None:
    assert provision.arch_from_identify(text) == arch


def test_detection_asks_every_card_and_picks_the_build_all_of_them_run() -> None:
    from subprocess import CompletedProcess

    from ml_target.provision.arch import detect_arch_with_hailortcli

    answers = {
        ("hailortcli", "scan"): "Hailo Devices:\n[-] Device: 0000:01:00.0\n[-] Device: 0000:02:00.0\n",
        ("hailortcli", "fw-control", "identify", "--device-id", "0000:01:00.0"): "Device Architecture: HAILO8\n",
        ("hailortcli", "fw-control", "identify", "--device-id", "0000:02:00.0"): "Device Architecture: HAILO8L\n",
    }
    asked = []

    def run(command, **_):
        asked.append(tuple(command))
        return CompletedProcess(command, 0, answers[tuple(command)], "")

    with mock.patch("ml_target.provision.arch.shutil.which", return_value="/usr/bin/hailortcli"):
        assert detect_arch_with_hailortcli(run) == "hailo8l"  # 8L HEFs run on the Hailo-8 too
        answers[("hailortcli", "fw-control", "identify", "--device-id", "0000:02:00.0")] = "Device Architecture: HAILO10H"
        with pytest.raises(provision.ProvisionError, match="own worker"):
            detect_arch_with_hailortcli(run)
    assert len(asked) == 6


def test_arch_from_identify_refuses_other_chips_and_garbage() -> None:
    with pytest.raises(provision.ProvisionError, match="HAILO15M"):
        provision.arch_from_identify("Device Architecture: HAILO15M")
    with pytest.raises(provision.ProvisionError, match="--arch"):
        provision.arch_from_identify("[HailoRT] [error] CHECK failed - Failed to open device file /dev/hailo0")


def test_resolve_arch_prefers_flag_then_setting_then_device() -> None:
    auto = Settings()
    assert provision.resolve_arch("hailo8", auto, lambda: "hailo8l") == "hailo8"
    assert provision.resolve_arch(None, Settings(hailo_arch="hailo8l"), lambda: "hailo8") == "hailo8l"
    assert provision.resolve_arch(None, auto, lambda: "hailo8l") == "hailo8l"


# --------------------------------------------------------------------------- loopback server


@pytest.fixture
def zoo():
    with serve_zoo() as state:
        yield state


NAMES = ["scrfd_2.5g", "arcface_mobilefacenet"]


def _publish(zoo: Zoo, arch: str = "hailo8l", hef_arch: str | None = None) -> dict[str, bytes]:
    files = {name: fake_hef(hef_arch or arch, seed=i) for i, name in enumerate(NAMES)}
    for name, data in files.items():
        zoo.files[f"/zoo/{arch}/{name}.hef"] = data
    return files


def _assets(arch: str | None, base_url: str | None = None) -> list[provision.Asset]:
    return [provision.hef_asset(name, arch, base_url) for name in NAMES]


def _fetch(zoo: Zoo, models: Path, sleeps: list[float] | None = None, attempts: int = 4, arch: str = "hailo8l"):
    stderr = io.StringIO()
    policy = provision.RetryPolicy(attempts=attempts, base_delay_s=1.0, timeout_s=5.0)
    outcome = provision.fetch(
        models, _assets(arch, zoo.base_url), policy=policy, stderr=stderr,
        sleep=(sleeps if sleeps is not None else []).append,
    )
    return {name.removesuffix(".hef"): what for name, what in outcome.items()}, stderr.getvalue()


def test_fresh_download_writes_files_and_sha256sums(zoo: Zoo, tmp_path: Path) -> None:
    files = _publish(zoo)
    outcome, log = _fetch(zoo, tmp_path)
    assert outcome == {name: "downloaded" for name in NAMES}
    for name, data in files.items():
        assert (tmp_path / f"{name}.hef").read_bytes() == data
    sums = (tmp_path / "SHA256SUMS").read_text().splitlines()
    assert sums == [f"{hashlib.sha256(d).hexdigest()}  {n}.hef" for n, d in sorted(files.items())]
    assert not list(tmp_path.glob("*.part"))
    assert "scrfd_2.5g.hef [" in log and "100%" in log
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_second_run_verifies_without_downloading(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    _fetch(zoo, tmp_path)
    before = len(zoo.requests)
    outcome, _ = _fetch(zoo, tmp_path)
    assert outcome == {name: "verified" for name in NAMES}
    assert len(zoo.requests) == before


def test_interrupted_download_resumes_with_range(zoo: Zoo, tmp_path: Path) -> None:
    files = _publish(zoo)
    path = f"/zoo/hailo8l/{NAMES[0]}.hef"
    zoo.faults[path] = ["drop"]
    sleeps: list[float] = []
    outcome, log = _fetch(zoo, tmp_path, sleeps)
    assert outcome[NAMES[0]] == "downloaded"
    assert (tmp_path / f"{NAMES[0]}.hef").read_bytes() == files[NAMES[0]]
    ranges = [rng for p, rng in zoo.requests if p == path]
    assert ranges[0] is None
    resumed_at = len(files[NAMES[0]]) // 3
    assert ranges[1] == f"bytes={resumed_at}-"
    assert sleeps == [1.0]
    assert "connection closed after" in log


def test_part_file_from_an_earlier_run_is_resumed(zoo: Zoo, tmp_path: Path) -> None:
    files = _publish(zoo)
    data = files[NAMES[1]]
    (tmp_path / f"{NAMES[1]}.hef.part").write_bytes(data[:12345])
    _fetch(zoo, tmp_path)
    assert (tmp_path / f"{NAMES[1]}.hef").read_bytes() == data
    assert (f"/zoo/hailo8l/{NAMES[1]}.hef", "bytes=12345-") in zoo.requests


def test_html_page_instead_of_hef_is_rejected(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    zoo.faults[f"/zoo/hailo8l/{NAMES[0]}.hef"] = ["html"]
    with pytest.raises(provision.ProvisionError, match=r"scrfd_2\.5g\.hef is unusable.*HTML page"):
        _fetch(zoo, tmp_path)
    assert not (tmp_path / f"{NAMES[0]}.hef").exists()
    assert not (tmp_path / f"{NAMES[0]}.hef.part").exists()


def test_a_hef_truncated_at_the_source_is_rejected(zoo: Zoo, tmp_path: Path) -> None:
    files = _publish(zoo)
    zoo.files[f"/zoo/hailo8l/{NAMES[1]}.hef"] = files[NAMES[1]][:-4096]
    with pytest.raises(provision.ProvisionError, match=r"arcface_mobilefacenet\.hef is unusable.*truncated HEF"):
        _fetch(zoo, tmp_path)
    assert not (tmp_path / f"{NAMES[1]}.hef").exists()


def test_checksum_mismatch_names_the_file_and_the_fix(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    _fetch(zoo, tmp_path)
    target = tmp_path / f"{NAMES[1]}.hef"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(provision.ProvisionError) as info:
        _fetch(zoo, tmp_path)
    message = str(info.value)
    assert str(target) in message and "SHA-256" in message and f"Delete {NAMES[1]}.hef" in message


def test_404_is_a_clear_error_and_not_retried(zoo: Zoo, tmp_path: Path) -> None:
    sleeps: list[float] = []
    with pytest.raises(provision.ProvisionError, match=r"HTTP 404.*--arch and --base-url"):
        _fetch(zoo, tmp_path, sleeps)
    assert len(zoo.requests) == 1 and sleeps == []


def test_transient_500s_are_retried_with_exponential_backoff(zoo: Zoo, tmp_path: Path) -> None:
    files = _publish(zoo)
    path = f"/zoo/hailo8l/{NAMES[0]}.hef"
    zoo.faults[path] = ["500", "500", "500"]
    sleeps: list[float] = []
    outcome, log = _fetch(zoo, tmp_path, sleeps)
    assert outcome[NAMES[0]] == "downloaded"
    assert (tmp_path / f"{NAMES[0]}.hef").read_bytes() == files[NAMES[0]]
    assert sleeps == [1.0, 2.0, 4.0]
    assert sum(1 for p, _ in zoo.requests if p == path) == 4
    assert "HTTP 500" in log


def test_retries_give_up_and_keep_the_partial_file(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    zoo.faults[f"/zoo/hailo8l/{NAMES[0]}.hef"] = ["drop", "500", "500"]
    sleeps: list[float] = []
    with pytest.raises(provision.ProvisionError, match=r"after 3 attempts.*next run resumes"):
        _fetch(zoo, tmp_path, sleeps, attempts=3)
    assert sleeps == [1.0, 2.0]
    assert (tmp_path / f"{NAMES[0]}.hef.part").stat().st_size > 0


def test_hef_for_the_wrong_chip_is_refused(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo, arch="hailo8l", hef_arch="hailo8p")
    with pytest.raises(provision.ProvisionError, match=r"compiled for hailo8p, which a hailo8l device refuses.*93"):
        _fetch(zoo, tmp_path)


def test_pinned_checksum_rejects_a_different_download(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  {NAMES[0]}.hef\n")
    with pytest.raises(provision.ProvisionError, match=r"does not match the SHA-256 pinned"):
        _fetch(zoo, tmp_path)
    assert not (tmp_path / f"{NAMES[0]}.hef").exists()


def test_offline_passes_on_a_complete_directory_without_network(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    _fetch(zoo, tmp_path)
    before = len(zoo.requests)
    assert provision.verify_directory(tmp_path, _assets("hailo8l")) == []
    assert provision.verify_directory(tmp_path, _assets("hailo8")) == []  # a Hailo-8 runs 8L HEFs
    assert len(zoo.requests) == before


def test_offline_on_a_broken_directory_names_each_bad_file(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    _fetch(zoo, tmp_path)
    (tmp_path / f"{NAMES[0]}.hef").unlink()
    (tmp_path / f"{NAMES[1]}.hef").write_bytes(b"<html>gateway timeout</html>")
    problems = provision.verify_directory(tmp_path, _assets(None))
    assert len(problems) == 2
    assert f"{NAMES[0]}.hef is missing" in problems[0]
    assert f"{NAMES[1]}.hef" in problems[1] and "HTML page" in problems[1]


def test_main_offline_and_online_exit_codes(zoo: Zoo, tmp_path: Path) -> None:
    _publish(zoo)
    env = {"MODELS_DIR": str(tmp_path)}
    networks = [arg for name in NAMES for arg in ("--network", name)]
    err = io.StringIO()
    assert provision.main(["--offline", *networks], env=env, stderr=err) == 1
    assert "2 of 2 files" in err.getvalue()
    err = io.StringIO()
    code = provision.main(["--base-url", zoo.base_url, *networks], env=env, detector=lambda: "hailo8l", stderr=err)
    assert code == 0, err.getvalue()
    assert "2 files for hailo8l ready" in err.getvalue()
    err = io.StringIO()
    assert provision.main(["--offline", "--arch", "hailo8l", *networks], env=env, stderr=err) == 0
    assert "all 2 files" in err.getvalue()


def test_main_offline_names_missing_clip_hefs_and_bad_settings(tmp_path: Path) -> None:
    err = io.StringIO()
    code = provision.main(["--offline"], env={"MODELS_DIR": str(tmp_path), "TASKS": "clip"}, stderr=err)
    assert code == 1
    assert "clip_vit_b_32_image_encoder.hef is missing" in err.getvalue()
    err = io.StringIO()
    assert provision.main(["--offline"], env={"TASKS": "sideways"}, stderr=err) == 1
    assert "TASKS='sideways'" in err.getvalue()


def _dictionary_text() -> str:
    """A PaddleOCR-layout table: 18383 characters, one per line (blank and space implicit)."""
    return "".join(chr(0x4E00 + i) + "\n" for i in range(18383))


def test_ocr_dictionary_is_downloaded_and_checked(zoo: Zoo, tmp_path: Path) -> None:
    zoo.files["/zoo/ppocrv5_dict.txt"] = _dictionary_text().encode()
    asset = dataclasses.replace(provision.dictionary_asset(zoo.base_url), local=None)
    assert asset.url == f"{zoo.base_url}/ppocrv5_dict.txt"
    outcome = provision.fetch(tmp_path, [asset], stderr=io.StringIO(), sleep=[].append)
    assert outcome == {"ppocrv5_dict.txt": "downloaded"}
    assert (tmp_path / "ppocrv5_dict.txt").read_text() == _dictionary_text()
    assert provision.verify_directory(tmp_path, [asset]) == []


def test_ocr_dictionary_of_the_wrong_size_is_rejected(zoo: Zoo, tmp_path: Path) -> None:
    zoo.files["/zoo/ppocrv5_dict.txt"] = b"<html><body>rate limited</body></html>"
    asset = dataclasses.replace(provision.dictionary_asset(zoo.base_url), local=None)
    with pytest.raises(provision.ProvisionError, match=r"ppocrv5_dict.txt is unusable.*3 CTC classes.*outputs 18385"):
        provision.fetch(tmp_path, [asset], stderr=io.StringIO(), sleep=[].append)
    assert list(tmp_path.iterdir()) == []


def test_ocr_dictionary_is_copied_from_an_installed_package(tmp_path: Path) -> None:
    source = tmp_path / "keys.txt"
    source.write_text("blank\n" + _dictionary_text() + " \n")
    asset = dataclasses.replace(provision.dictionary_asset(), local=source)
    assert asset.url.startswith("https://raw.githubusercontent.com/PaddlePaddle/PaddleOCR/")
    models = tmp_path / "models"
    assert provision.fetch(models, [asset], stderr=io.StringIO()) == {"ppocrv5_dict.txt": "copied"}
    assert provision.fetch(models, [asset], stderr=io.StringIO()) == {"ppocrv5_dict.txt": "verified"}


def test_default_plan_covers_every_task() -> None:
    assets = provision.plan(Settings(), "hailo8")
    assert [a.filename for a in assets] == [
        "clip_vit_b_32_image_encoder.hef",
        "clip_vit_b_32_text_encoder.hef",
        "scrfd_10g.hef",
        "paddle_ocr_v5_mobile_detection.hef",
        "paddle_ocr_v5_mobile_recognition.hef",
        "facial-recognition/buffalo_l/recognition/model.onnx",
        "ppocrv5_dict.txt",
    ]
    assert assets[2].url.endswith("/v2.18.0/hailo8/scrfd_10g.hef")
    assert assets[5].url == "https://huggingface.co/immich-app/buffalo_l/resolve/main/recognition/model.onnx"


def test_progress_bar_redraws_in_place_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = provision.Progress(stream, "x.hef")
    for done in (0, 500_000, 1_000_000):
        bar.update(done, 1_000_000)
    bar.finish()
    frames = stream.getvalue().split("\r")[1:]
    assert len(frames) == 3
    assert frames[1].startswith("x.hef [###############...............]  50% 0.5/1.0 MB")
    assert frames[2].endswith("100% 1.0/1.0 MB\n")
