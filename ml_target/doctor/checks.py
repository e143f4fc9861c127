"""`doctor`'s static checks: the device, the model files, each HEF's edges, each text cut.

They read the worker's /health report (the device as HailoRT and sysfs describe it, every loaded
HEF's edges as read from the HEF, the text-cut probe's measurements) and the models directory,
and compare them with what the catalog (`ml_target.networks`, `ml_target.catalog`) expects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ml_target.doctor.report import Check, Verdict
from ml_target.hef_header import HefFormatError, accepted_by, target_arch
from ml_target.networks import NETWORKS, NetworkSpec

HOT_C = 85.0  # Hailo-8 throttles towards 100 C; a card this hot in a probe run lacks cooling
FETCH = "python -m ml_target fetch-models"
# Orders that are the same [H, W, C] buffer on the host (hailort.h: FCR/F8CR "Host side: [N, H, W, C]").
HOST_NHWC = frozenset({"NHWC", "FCR", "F8CR"})


def device_checks(health: Mapping[str, Any]) -> list[Check]:
    """The chip, its firmware, driver and library versions, PCIe link and temperature of each card
    (the check names carry the card's id when the worker drives several)."""
    cards = health.get("devices") or [
        {"device_info": health.get("device_info") or {}, "temperature_c": health.get("temperature_c")}
    ]
    emulated = bool(health.get("emulated")) or health.get("device") == "emulator"
    checks = []
    for card in cards:
        suffix = f" {card.get('device_id')}" if len(cards) > 1 else ""
        checks += _card_checks(card, health.get("arch"), emulated, suffix)
    return checks


def _card_checks(card: Mapping[str, Any], arch: str | None, emulated: bool, suffix: str) -> list[Check]:
    info = card.get("device_info") or {}
    checks = []
    if card.get("state") == "down":
        checks.append(Check(f"device{suffix}", Verdict.FAIL, f"down: {card.get('reason')}",
                            "the worker rebuilds it by itself; if it stays down check `hailortcli scan` and dmesg"))
    elif emulated:
        checks.append(Check(f"device{suffix}", Verdict.WARN,
                            f"EMULATED device ({arch}): every result below comes from stand-ins",
                            "on a card, run with HAILO_DEVICE=hailort (the default)"))
    elif "identify_error" in info:
        checks.append(Check(f"device{suffix}", Verdict.WARN,
                            f"{arch} (from HAILO_ARCH); identify failed: {info['identify_error']}",
                            "check `hailortcli fw-control identify`"))
    else:
        checks.append(Check(f"device{suffix}", Verdict.PASS,
                            f"{info.get('product_name') or info.get('board_name')} ({info.get('architecture')}, used as {arch}), "
                            f"serial {info.get('serial_number') or '?'}, id {info.get('device_id')}", data=info))
    checks.append(_versions(info, emulated, suffix))
    checks.append(_pcie(info, emulated, suffix))
    temperature = card.get("temperature_c")
    if temperature is None:
        checks.append(Check(f"temperature{suffix}", Verdict.SKIP, "not readable through this VDevice"))
    elif temperature > HOT_C:
        checks.append(Check(f"temperature{suffix}", Verdict.WARN, f"{temperature:.1f} C",
                            "improve the card's cooling (heatsink, airflow)"))
    else:
        checks.append(Check(f"temperature{suffix}", Verdict.PASS, f"{temperature:.1f} C"))
    return checks


def _versions(info: Mapping[str, Any], emulated: bool, suffix: str = "") -> Check:
    library, driver, firmware = info.get("library_version"), info.get("driver_version"), info.get("firmware_version")
    detail = f"library {library}, driver {driver or '?'}, firmware {firmware or '?'}"
    module = "hailo1x_pci" if str(library).startswith("5.") else "hailo_pci"  # HailoRT 5.x drives the 10H
    name = f"versions{suffix}"
    if emulated:
        return Check(name, Verdict.SKIP, f"emulated: {detail}")
    if driver is None:
        return Check(name, Verdict.WARN, detail + ": the driver version is unreadable",
                     f"check `cat /sys/module/{module}/version` on the host")
    if driver != library:
        return Check(name, Verdict.FAIL, detail + ": driver and library differ (HailoRT refuses this: error 76)",
                     f"install {module} {library}, or rebuild the image with HailoRT {driver} (README, Upgrade)")
    if firmware and firmware != library:
        return Check(name, Verdict.WARN, detail + ": the firmware is another version than the library",
                     "update the firmware with the driver package of the library's version")
    return Check(name, Verdict.PASS, detail + ": they match")


def _pcie(info: Mapping[str, Any], emulated: bool, suffix: str = "") -> Check:
    link = info.get("pcie")
    name = f"pcie link{suffix}"
    if emulated or not link:
        return Check(name, Verdict.SKIP, "emulated" if emulated else "not readable from /sys")
    detail = (f"{link['current_link_speed']} x{link['current_link_width']} "
              f"(the card can do {link['max_link_speed']} x{link['max_link_width']})")
    if link.get("degraded"):
        return Check(name, Verdict.WARN, detail + ": below the card's maximum; multi-context networks slow down",
                     "on a Raspberry Pi 5 add dtparam=pciex1_gen=3 to /boot/firmware/config.txt; otherwise check the slot")
    return Check(name, Verdict.PASS, detail)


def file_checks(models_dir: Path, networks: Iterable[str], device_arch: str | None) -> list[Check]:
    """Each needed HEF is there, is a HEF, and is compiled for a chip this device accepts."""
    checks = []
    for name in networks:
        path = Path(models_dir) / f"{name}.hef"
        label = f"file {name}.hef"
        if not path.is_file():
            checks.append(Check(label, Verdict.FAIL, f"missing from {models_dir}", f"{FETCH} (MODELS_DIR={models_dir})"))
            continue
        try:
            arch = target_arch(path)
        except (HefFormatError, OSError) as exc:
            checks.append(Check(label, Verdict.FAIL, str(exc), f"delete it and its line in SHA256SUMS, then {FETCH}"))
            continue
        if arch is not None and device_arch is not None and not accepted_by(device_arch, arch):
            checks.append(Check(label, Verdict.FAIL, f"compiled for {arch}; a {device_arch} does not run it (error 93)",
                                f"delete it and its line in SHA256SUMS, then {FETCH} --arch {device_arch}"))
            continue
        checks.append(Check(label, Verdict.PASS, f"compiled for {arch or 'an unstated chip'}"))
    return checks


def edge_checks(hefs: Mapping[str, Mapping[str, Any]], arch: str | None = None) -> list[Check]:
    """Each loaded HEF's edges as read from it, against the catalog's declaration for the `arch` build."""
    checks = []
    for name, described in hefs.items():
        spec = NETWORKS.get(name)
        if spec is not None and arch is not None:
            spec = spec.for_arch(arch)
        if spec is None:
            checks.append(Check(f"edges {name}", Verdict.WARN, "not a network of the catalog", "", data=dict(described)))
            continue
        differences = _edge_differences(spec, described)
        detail = "; ".join(differences) if differences else (
            f"{len(spec.inputs)} input(s), {len(spec.outputs)} output(s) as the catalog declares "
            f"({'multi' if described.get('multi_context') else 'single'}-context)")
        verdict = Verdict.WARN if differences else Verdict.PASS
        fix = ("the worker reads edges from the HEF and matches outputs by shape and role, so this works if "
               "the probes below pass; record it in docs/hardware-evidence.md") if differences else ""
        checks.append(Check(f"edges {name}", verdict, detail, fix, data=dict(described)))
    return checks


def _edge_differences(spec: NetworkSpec, described: Mapping[str, Any]) -> list[str]:
    found = []
    for direction, edges in (("inputs", spec.inputs), ("outputs", spec.outputs)):
        actual = {edge["name"]: edge for edge in described.get(direction, [])}
        if len(actual) != len(edges):
            found.append(f"{len(actual)} {direction}, the catalog declares {len(edges)}")
        for edge in edges:
            vstream = spec.vstream(edge)
            got = actual.get(vstream)
            if got is None:
                same_shape = [n for n, e in actual.items() if tuple(e["shape"]) == edge.shape]
                found.append(f"no {direction[:-1]} named {vstream}" + (f" (same shape: {', '.join(same_shape)})" if same_shape else ""))
                continue
            if tuple(got["shape"]) != edge.shape:
                found.append(f"{vstream} is {tuple(got['shape'])}, the catalog says {edge.shape}")
            if got.get("native_type") not in (None, edge.type):
                found.append(f"{vstream} is {got['native_type']}, the catalog says {edge.type}")
            order = got.get("order")
            if order is not None and order != edge.order and not {order, edge.order} <= HOST_NHWC:
                found.append(f"{vstream} is in {got['order']} order, the catalog says {edge.order}")
    if bool(described.get("multi_context", spec.multi_context)) != spec.multi_context:
        found.append(f"{'multi' if described.get('multi_context') else 'single'}-context, the catalog says otherwise")
    return found


def text_cut_checks(handlers: Iterable[Mapping[str, Any]]) -> list[Check]:
    """What the start-up probe measured on the text HEF, against the catalog's declared cut."""
    checks = []
    for handler in handlers:
        if (handler.get("task"), handler.get("type")) != ("clip", "textual"):
            continue
        probe = handler.get("text_cut_probe")
        label = f"text cut {handler.get('backend')}"
        if not probe:
            checks.append(Check(label, Verdict.SKIP, "the start-up probe did not run"))
            continue
        measured = (f"positions {probe['positions']} (spread {probe['positions_spread']}), output stage "
                    f"{probe['output_stage']}, {'per-token' if probe['per_token_output'] else 'pooled'} output")
        if probe["contradictions"]:
            checks.append(Check(
                label, Verdict.FAIL, f"{measured}. Catalog contradicted: {'; '.join(probe['contradictions'])}",
                "the worker follows the HEF, so its vectors are right if the smart-search probes pass; report this "
                "doctor JSON so the catalog and docs/hardware-evidence.md are corrected", data=probe))
        elif probe["notes"]:
            checks.append(Check(label, Verdict.WARN, f"{measured}. {'; '.join(probe['notes'])}",
                                "the catalog's declaration is used unverified; the smart-search probes decide", data=probe))
        else:
            checks.append(Check(label, Verdict.PASS, f"{measured}: as the catalog declares", data=probe))
    return checks
