"""Which chip to fetch HEFs for: `--arch`, else `HAILO_ARCH`, else ask the device.

The HEF set differs per chip (a Hailo-8L refuses Hailo-8 HEFs with error 93), so guessing is not
an option: when the device cannot be asked, the error says to pass `--arch`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable

from ml_target.config import Settings
from ml_target.networks import build_arch
from ml_target.provision.checks import ProvisionError

FETCH_ARCHES = ("hailo8", "hailo8l", "hailo10h")
# `hailortcli fw-control identify` names; a Hailo-10H may say HAILO15H (hailo-apps installation_utils.py).
CHIP_NAMES = {"HAILO8L": "hailo8l", "HAILO8": "hailo8", "HAILO8R": "hailo8", "HAILO8P": "hailo8",
              "HAILO10H": "hailo10h", "HAILO15H": "hailo10h"}


def detect_arch_with_hailortcli(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """Ask the cards which chips they are (`hailortcli scan`, then `fw-control identify -s` per card,
    as Frigate asks one) and return the build folder all of them run."""
    if shutil.which("hailortcli") is None:
        raise ProvisionError(
            "cannot detect the Hailo architecture: hailortcli is not installed; pass --arch hailo8|hailo8l|hailo10h"
        )
    scan = run(["hailortcli", "scan"], capture_output=True, text=True, timeout=30, check=False)
    ids = re.findall(r"\b((?:[0-9a-f]{4}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7])\b", scan.stdout)
    outputs = []
    for device_id in ids or [None]:
        command = ["hailortcli", "fw-control", "identify"] + (["--device-id", device_id] if device_id else [])
        proc = run(command, capture_output=True, text=True, timeout=30, check=False)
        outputs.append(proc.stdout + proc.stderr)
    return arch_for_cards([arch_from_identify(output) for output in outputs])


def arch_for_cards(chips: list[str]) -> str:
    """The one build folder for the cards found (8L HEFs when a Hailo-8 sits beside a Hailo-8L)."""
    try:
        return build_arch(chips)
    except ValueError as exc:
        raise ProvisionError(f"{exc}; pass --arch for the cards this worker drives (HAILO_DEVICE_IDS)") from None


def arch_from_identify(output: str) -> str:
    """Map the `Device Architecture:` line of `hailortcli fw-control identify` to a fetch arch."""
    match = re.search(r"Device Architecture:\s*(\S+)", output)
    if not match:
        raise ProvisionError(
            "cannot detect the Hailo architecture (is the device node, /dev/hailo0 or /dev/h1x-0, present and "
            f"free?); pass --arch hailo8|hailo8l|hailo10h. hailortcli said: {output.strip()[:300]!r}"
        )
    chip = match.group(1).upper()
    if chip in CHIP_NAMES:
        return CHIP_NAMES[chip]
    if chip == "HAILO8_A0":
        raise ProvisionError("device architecture HAILO8_A0 (a pre-production Hailo-8) runs no Model Zoo HEF under HailoRT 4.23")
    raise ProvisionError(f"device architecture {chip} is not supported; this worker supports hailo8, hailo8l and hailo10h")


def resolve_arch(requested: str | None, settings: Settings, detector: Callable[[], str] | None) -> str:
    """--arch, else HAILO_ARCH, else ask the device (`detector`, default hailortcli)."""
    if requested:
        return requested
    if settings.hailo_arch != "auto":
        return settings.hailo_arch
    arch = (detector or detect_arch_with_hailortcli)()
    if arch not in FETCH_ARCHES:
        raise ProvisionError(f"detected architecture {arch!r} is not one of {', '.join(FETCH_ARCHES)}")
    return arch
