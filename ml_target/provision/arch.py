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
from ml_target.provision.checks import ProvisionError

FETCH_ARCHES = ("hailo8", "hailo8l")


def detect_arch_with_hailortcli(run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> str:
    """Ask the device which chip it is (`hailortcli fw-control identify`, as Frigate does)."""
    if shutil.which("hailortcli") is None:
        raise ProvisionError("cannot detect the Hailo architecture: hailortcli is not installed; pass --arch hailo8|hailo8l")
    proc = run(["hailortcli", "fw-control", "identify"], capture_output=True, text=True, timeout=30, check=False)
    return arch_from_identify(proc.stdout + proc.stderr)


def arch_from_identify(output: str) -> str:
    """Map the `Device Architecture:` line of `hailortcli fw-control identify` to a fetch arch."""
    match = re.search(r"Device Architecture:\s*(\S+)", output)
    if not match:
        raise ProvisionError(
            "cannot detect the Hailo architecture (is /dev/hailo0 present and free?); pass --arch hailo8|hailo8l. "
            f"hailortcli said: {output.strip()[:300]!r}"
        )
    chip = match.group(1).upper()
    if chip == "HAILO8L":
        return "hailo8l"
    if chip in ("HAILO8", "HAILO8R", "HAILO8P"):
        return "hailo8"
    if chip == "HAILO8_A0":
        raise ProvisionError("device architecture HAILO8_A0 (a pre-production Hailo-8) runs no Model Zoo HEF under HailoRT 4.23")
    raise ProvisionError(f"device architecture {chip} is not driven by HailoRT 4.x; this worker supports hailo8 and hailo8l")


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
