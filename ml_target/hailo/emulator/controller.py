"""The test/benchmark handle on the simulated device: profiles, architecture, faults, counters.

Nothing here exists in HailoRT; it is how CI makes the emulated device slow, fast, broken or gone.
"""

from __future__ import annotations

from typing import Any

from ml_target.hailo.emulator.device import (
    ARCHITECTURES,
    LIBRARY_VERSION,
    PROFILES,
    SimulatedDevice,
)
from ml_target.hailo.emulator.exceptions import Status


class DeviceController:
    def __init__(self, device: SimulatedDevice) -> None:
        self._device = device

    def set_profile(self, name: str) -> None:
        """"hailo8" / "hailo8l": bursts take their modelled time; "none": no sleeping."""
        if name not in PROFILES:
            raise ValueError(f"unknown emulator profile {name!r}; use one of {PROFILES}")
        with self._device.cond:
            self._device.profile = name

    def set_architecture(self, arch: str) -> None:
        """What `identify()` reports and which HEFs `configure()` accepts."""
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown architecture {arch!r}; use one of {ARCHITECTURES}")
        with self._device.cond:
            self._device.architecture = arch

    def set_idle_optimisation(self, enabled: bool) -> None:
        """Like `HAILO_DISABLE_IDLE_OPT`: when off, below-threshold models wait for their timeout."""
        with self._device.cond:
            self._device.idle_optimisation = enabled
            self._device.cond.notify_all()

    def set_driver_version_mismatch(self, mismatch: bool = True) -> None:
        """VDevice()/Device() then fail with 76 HAILO_INVALID_DRIVER_VERSION, as on a host whose
        hailo_pci driver differs from libhailort."""
        with self._device.cond:
            self._device.driver_version = "4.22.0" if mismatch else LIBRARY_VERSION

    def fail_next_run_async(self, network: str | None = None, status: int = Status.HAILO_DRIVER_OPERATION_FAILED) -> None:
        """The next `run_async` on `network` raises the exception for `status` and shuts the model down."""
        with self._device.cond:
            self._device.faults.arm_run_async(network, status)

    def fail_bursts(self, network: str | None = None, count: int = 1, status: int = Status.HAILO_DRIVER_OPERATION_FAILED) -> None:
        """The next `count` bursts of `network` complete with `status` (in `completion_info.exception`)."""
        with self._device.cond:
            self._device.faults.arm_bursts(network, count, status)

    def stall(self, network: str | None = None, seconds: float = 1.0) -> None:
        """The next burst of `network` holds the device `seconds` longer (every network waits)."""
        with self._device.cond:
            self._device.faults.arm_stall(network, seconds)

    def vanish(self) -> None:
        """The device disappears: queued and running frames fail with 36, every call on existing
        handles fails, `Device.scan()` is empty and `VDevice()` fails with 74 until `restore()`."""
        self._device.vanish()

    def restore(self) -> None:
        """The device is back (as after a reset): new VDevices work; old handles stay dead (62)."""
        self._device.restore()

    def counters(self) -> dict[str, Any]:
        return self._device.snapshot()

    def burst_log(self) -> list[tuple[str, int]]:
        """The most recent bursts in device order, as (network group, frames)."""
        return self._device.burst_log()

    def reset(self) -> None:
        """Defaults again (profile hailo8, arch hailo8, no faults, counters cleared). Open VDevices
        and configured models keep working; use vanish() + restore() to drop them all."""
        self._device.reset()
