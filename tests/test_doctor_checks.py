"""doctor's static checks on /health reports a real card would give, and the sysfs readers behind them."""

from __future__ import annotations

from pathlib import Path

from ml_target.doctor.checks import device_checks, edge_checks, text_cut_checks
from ml_target.doctor.report import Verdict
from ml_target.hailo import host_info
from ml_target.networks import NETWORKS


def sysfs(tmp_path: Path, speed: str = "8.0 GT/s PCIe", width: str = "2") -> Path:
    root = tmp_path / "sys"
    (root / "module" / "hailo_pci").mkdir(parents=True)
    (root / "module" / "hailo_pci" / "version").write_text("4.23.0\n")
    device = root / "bus" / "pci" / "devices" / "0000:01:00.0"
    device.mkdir(parents=True)
    for name, value in (("current_link_speed", speed), ("current_link_width", width),
                        ("max_link_speed", "8.0 GT/s PCIe"), ("max_link_width", "2")):
        (device / name).write_text(value + "\n")
    return root


def test_sysfs_readers(tmp_path):
    root = sysfs(tmp_path, speed="5.0 GT/s PCIe", width="1")
    assert host_info.driver_version(root) == "4.23.0"
    link = host_info.pcie_link("0000:01:00.0", root)
    assert link == {"current_link_speed": "5.0 GT/s PCIe", "current_link_width": 1, "max_link_speed": "8.0 GT/s PCIe",
                    "max_link_width": 2, "degraded": True}
    assert host_info.pcie_link("0000:02:00.0", root) is None and host_info.pcie_link(None, root) is None
    assert host_info.driver_version(tmp_path / "nothing") is None


def health(**device_info) -> dict:
    info = {"device_id": "0000:01:00.0", "library_version": "4.23.0", "driver_version": "4.23.0",
            "firmware_version": "4.23.0", "architecture": "HAILO8", "board_name": "Hailo-8", "product_name": "M.2 card",
            "serial_number": "HLLWM2A", "pcie": {"current_link_speed": "8.0 GT/s PCIe", "current_link_width": 2,
                                               "max_link_speed": "8.0 GT/s PCIe", "max_link_width": 2, "degraded": False}}
    info.update(device_info)
    return {"device": "hailort", "arch": "hailo8", "emulated": False, "temperature_c": 51.0, "device_info": info}


def verdicts(checks) -> dict[str, Verdict]:
    return {c.name: c.verdict for c in checks}


def test_a_healthy_card_passes():
    assert set(verdicts(device_checks(health())).values()) == {Verdict.PASS}


def test_driver_library_mismatch_fails_and_firmware_mismatch_warns():
    checks = {c.name: c for c in device_checks(health(driver_version="4.22.0"))}
    assert checks["versions"].verdict is Verdict.FAIL and "error 76" in checks["versions"].detail
    assert "install hailo_pci 4.23.0" in checks["versions"].fix
    assert verdicts(device_checks(health(firmware_version="4.20.0")))["versions"] is Verdict.WARN
    assert verdicts(device_checks(health(driver_version=None)))["versions"] is Verdict.WARN


def test_a_slow_link_and_a_hot_chip_warn():
    slow = {"current_link_speed": "5.0 GT/s PCIe", "current_link_width": 1, "max_link_speed": "8.0 GT/s PCIe",
            "max_link_width": 1, "degraded": True}
    checks = {c.name: c for c in device_checks(health(pcie=slow))}
    assert checks["pcie link"].verdict is Verdict.WARN and "pciex1_gen=3" in checks["pcie link"].fix
    hot = health()
    hot["temperature_c"] = 91.0
    assert verdicts(device_checks(hot))["temperature"] is Verdict.WARN


def edges(spec, **changes):
    def one(edge):
        return {"name": spec.vstream(edge), "shape": list(edge.shape), "native_type": edge.type, "order": edge.order}

    described = {"multi_context": spec.multi_context, "inputs": [one(e) for e in spec.inputs],
                 "outputs": [one(e) for e in spec.outputs]}
    for key, value in changes.items():
        described["outputs"][0][key] = value
    return {spec.hef: described}


def test_edges_as_declared_pass_and_fcr_counts_as_nhwc():
    spec = NETWORKS["scrfd_2.5g"]
    assert verdicts(edge_checks(edges(spec))) == {"edges scrfd_2.5g": Verdict.PASS}
    assert verdicts(edge_checks(edges(spec, order="FCR"))) == {"edges scrfd_2.5g": Verdict.PASS}


def test_renamed_or_retyped_edges_warn_with_the_difference():
    spec = NETWORKS["siglip2_b_32_256_text_encoder"]
    (check,) = edge_checks(edges(spec, name="siglip2_b_32_256_text_encoder/ew_add24", shape=[1, 64, 768]))
    assert check.verdict is Verdict.WARN
    assert "no output named siglip2_b_32_256_text_encoder/output_layer1" in check.detail
    (check,) = edge_checks(edges(NETWORKS["arcface_r50"], native_type="UINT16"))
    assert "fc1 is UINT16, the catalog says UINT8" in check.detail


def test_text_cut_contradictions_fail_and_unsettled_measurements_warn():
    probe = {"positions": "hef", "positions_spread": 0.8, "output_stage": "normalised", "per_token_output": True,
             "contradictions": [], "notes": []}
    handler = {"task": "clip", "type": "textual", "backend": "clip_vit_b_32", "text_cut_probe": probe}
    assert verdicts(text_cut_checks([handler])) == {"text cut clip_vit_b_32": Verdict.PASS}
    handler["text_cut_probe"] = {**probe, "contradictions": ["positions: ... added twice"]}
    assert verdicts(text_cut_checks([handler])) == {"text cut clip_vit_b_32": Verdict.FAIL}
    handler["text_cut_probe"] = {**probe, "notes": ["output stage: not definitive"]}
    assert verdicts(text_cut_checks([handler])) == {"text cut clip_vit_b_32": Verdict.WARN}
