"""An emulated Hailo host implementing the `hailo_platform` API subset the runtime uses.

Select it with `HAILO_DEVICE=emulator`; `hailo/runtime.py` then imports
`ml_target.hailo.emulator.hailo_platform` (HailoRT 4.23) or `ml_target.hailo.emulator.v5.hailo_platform`
(HailoRT 5.x) instead of `hailo_platform`. Tests and benchmarks steer the cards (how many, which
chips, timing profile, faults, counters) through `set_devices()`, `device()` and `devices()`.
See README.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from ml_target.hailo.emulator.compute import register_compute, unregister_compute
from ml_target.hailo.emulator.controller import DeviceController
from ml_target.hailo.emulator.device import LINE_OF_ARCH, machine

MODULES = {4: "ml_target.hailo.emulator.hailo_platform", 5: "ml_target.hailo.emulator.v5.hailo_platform"}


def device(which: int | str = 0) -> DeviceController:
    """The controller of one emulated card: by position in `scan()` order or by PCIe id."""
    cards = machine().cards()
    if isinstance(which, int):
        return DeviceController(cards[which])
    card = machine().get(which)
    if card is None:
        raise KeyError(f"no emulated card {which!r}; cards: {[c.device_id for c in cards]}")
    return DeviceController(card)


def devices() -> list[DeviceController]:
    """Controllers of every emulated card, in `scan()` order."""
    return [DeviceController(card) for card in machine().cards()]


def set_devices(chips: Sequence[str], ids: Sequence[str] | None = None) -> list[DeviceController]:
    """Make the emulated host have these cards ("hailo8", "hailo8l", "hailo10h", "hailo8_a0"), with
    ids 0000:01:00.0, 0000:02:00.0, ... unless `ids` gives them (in the order `scan()` lists them)."""
    machine().set_devices(tuple(chips), None if ids is None else tuple(ids))
    return devices()


def set_defaults(chips: Sequence[str]) -> None:
    """The cards `reset()` returns to (the test suite's `--emulated-arch` sets them for a whole run)."""
    machine().default_chips = tuple(chips)


def default_chips() -> tuple[str, ...]:
    return machine().default_chips


def library_line(chips: Sequence[str] | None = None) -> int:
    """The HailoRT line that drives these chips (default: the host's cards): 5 for Hailo-10H, else 4;
    a host with both families needs the caller to choose (ValueError)."""
    lines = {LINE_OF_ARCH[c] for c in (chips if chips is not None else [c.architecture for c in machine().cards()])}
    if len(lines) != 1:
        raise ValueError("the emulated host has Hailo-8 family cards and Hailo-10H cards: choose the HailoRT line")
    return lines.pop()


__all__ = [
    "MODULES", "DeviceController", "default_chips", "device", "devices", "library_line", "register_compute",
    "set_defaults", "set_devices", "unregister_compute",
]
