"""What the host's sysfs says about a Hailo card: driver version and PCIe link.

HailoRT's Python API reports the chip and its firmware but neither the kernel driver's version
(libhailort refuses to open the device unless it equals its own: error 76) nor how the card is
attached (a Raspberry Pi 5 runs PCIe Gen2 x1 unless told otherwise, a quarter of a Gen3 x2 M.2
slot's bandwidth, which bounds multi-context networks). Both are plain files under /sys, also
visible inside a container. Pure functions over a sysfs root, so tests point them at a fake tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SYSFS = Path("/sys")
# The kernel module of each HailoRT line, the line's own first: `hailo_pci` drives the Hailo-8 family
# (4.x); the Hailo-10H driver is `hailo1x_pci` from 5.0.1 on and was still `hailo_pci` in 5.0.0
# (hailort-drivers linux/pcie/Kbuild). Both may be loaded on a host with both kinds of card.
DRIVER_MODULES = {4: ("hailo_pci", "hailo1x_pci"), 5: ("hailo1x_pci", "hailo_pci")}
LINK_FILES = ("current_link_speed", "current_link_width", "max_link_speed", "max_link_width")


def driver_version(sysfs: Path = SYSFS, *, line: int = 4) -> str | None:
    """The loaded Hailo PCIe driver's version (`/sys/module/hailo_pci/version`, or
    `hailo1x_pci` for HailoRT 5.x), or None."""
    for module in DRIVER_MODULES[line]:
        path = Path(sysfs) / "module" / module / "version"
        try:
            return path.read_text(encoding="ascii").strip() or None
        except OSError:
            continue
    return None


def pcie_link(device_id: str | None, sysfs: Path = SYSFS) -> dict[str, Any] | None:
    """Current and maximum link speed and width of the PCIe device `device_id` (e.g. 0000:01:00.0).

    Speeds are sysfs's strings ("8.0 GT/s PCIe"); widths integers. None when the device is not a
    PCIe function sysfs knows (the emulator, an unreadable /sys).
    """
    if not device_id:
        return None
    directory = Path(sysfs) / "bus" / "pci" / "devices" / device_id
    values: dict[str, Any] = {}
    for name in LINK_FILES:
        try:
            raw = (directory / name).read_text(encoding="ascii").strip()
        except OSError:
            return None
        values[name] = int(raw) if name.endswith("width") and raw.isdigit() else raw
    values["degraded"] = (values["current_link_speed"], values["current_link_width"]) != (
        values["max_link_speed"], values["max_link_width"]
    )
    return values
