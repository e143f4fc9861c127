"""The test/benchmark handle on the emulated cards: profiles, architecture, faults, counters.

Nothing here exists in HailoRT; it is how CI makes an emulated card slow, fast, broken or gone.
One controller steers one card; `reset()` acts on the whole emulated host (see `machine()`).
"""

from __future__ import annotations

from typing import Any

from ml_target.hailo.emulator.device import (
    ARCHITECTURES,
    LIBRARY_VERSIONS,
    PROFILES,
    SimulatedDevice,
    machine,
)
from ml_target.hailo.emulator.exceptions import Status


class DeviceController:
    def __init__(self, device: SimulatedDevice) -> None:
        self._device = device

    @property
    def device_id(self) -> str:
        return self._device.device_id

    def set_profile(self, name: str) -> None:
        """"hailo8" / "hailo8l" / "hailo10h": bursts take their modelled time; "none": no sleeping."""
        if name not in PROFILES:
            raise ValueError(f"unknown emulator profile {name!r}; use one of {PROFILES}")
        with self._device.cond:
            self._device.profile = name

    def set_architecture(self, arch: str) -> None:
        """What `identify()` reports, which HEFs `configure()` accepts and which HailoRT line may open
        the card (a Hailo-10H needs the 5.x module); the driver follows the chip's line."""
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; use one of {ARCHITECTURES}")
        with self._device.cond:
            self._device.architecture = arch
            self._device.driver_version = LIBRARY_VERSIONS[self._device.line]

    def set_idle_optimisation(self, enabled: bool) -> None:
        """Like `HAILO_DISABLE_IDLE_OPT`: when off, below-threshold models wait for their timeout."""
        with self._device.cond:
            self._device.idle_optimisation = enabled
            self._device.cond.notify_all()

    def set_driver_version_mismatch(self, mismatch: bool = True) -> None:
        """VDevice() then fails with 76 HAILO_INVALID_DRIVER_VERSION, as on a host whose driver
        (hailo_pci / hailo1x_pci) differs from libhailort."""
        with self._device.cond:
            library = LIBRARY_VERSIONS[self._device.line]
            self._device.driver_version = "4.22.0" if mismatch and library != "4.22.0" else library

    def fail_next_run_async(self, network: str | None = None, status: int = Status.HAILO_DRIVER_OPERATION_FAILED) -> None:
        """The next `run_async` on `network` raises the exception for `status` and shuts the model down."""
        with self._device.cond:
            self._device.faults.arm_run_async(network, status)

    def fail_bursts(self, network: str | None = None, count: int = 1, status: int = Status.HAILO_DRIVER_OPERATION_FAILED) -> None:
        """The next `count` bursts of `network` complete with `status` (in `completion_info.exception`)."""
        with self._device.cond:
            self._device.faults.arm_bursts(network, count, status)

    def stall(self, network: str | None = None, seconds: float = 1.0) -> None:
        """The next burst of `network` holds the card `seconds` longer (every network on it waits)."""
        with self._device.cond:
            self._device.faults.arm_stall(network, seconds)

    def vanish(self) -> None:
        """The card disappears: queued and running frames fail (36 under 4.x, 96 under 5.x), every
        call on existing handles fails, `Device.scan()` no longer lists it and `VDevice()` fails
        (74 without ids, 2 with its id) until `restore()`."""
        self._device.vanish()

    def restore(self) -> None:
        """The card is back (as after a reset): new VDevices work; old handles stay dead (62, or 77
        on a Hailo-10H)."""
        self._device.restore()

    def counters(self) -> dict[str, Any]:
        return self._device.snapshot()

    def burst_log(self) -> list[tuple[str, int]]:
        """The most recent bursts in card order, as (network group, frames)."""
        return self._device.burst_log()

    def reset(self) -> None:
        """The whole emulated host back to its defaults: the default cards (one Hailo-8 unless
        `set_defaults` said otherwise), profile of the chip, no faults, counters cleared. Cards that
        stay keep their open VDevices and configured models; use vanish() + restore() to drop them."""
        machine().reset()
