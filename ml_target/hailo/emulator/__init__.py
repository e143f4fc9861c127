"""An emulated Hailo device implementing the `hailo_platform` API subset the runtime uses.

Select it with `HAILO_DEVICE=emulator`; `hailo/runtime.py` then imports
`ml_target.hailo.emulator.hailo_platform` instead of `hailo_platform`. Tests and benchmarks steer
the device (timing profile, architecture, faults, counters) through `device()`. See README.md.
"""

from ml_target.hailo.emulator.compute import register_compute, unregister_compute
from ml_target.hailo.emulator.controller import DeviceController
from ml_target.hailo.emulator.device import simulated_device


def device() -> DeviceController:
    """The controller of the process-global emulated device."""
    return DeviceController(simulated_device())


__all__ = ["DeviceController", "device", "register_compute", "unregister_compute"]
