"""Stand-in for `hailo_platform.pyhailort.pyhailort` of HailoRT 5.x: the 4.23 names with the 5.x classes."""

from functools import partial

from ml_target.hailo.emulator.exceptions import HailoRTStatusException5 as HailoRTStatusException
from ml_target.hailo.emulator.exceptions import exception_from_status as _exception_from_status
from ml_target.hailo.emulator.hailo_platform.pyhailort import pyhailort as _v4
from ml_target.hailo.emulator.vdevice import HEF5 as HEF
from ml_target.hailo.emulator.vdevice import Device5 as Device
from ml_target.hailo.emulator.vdevice import VDevice5 as VDevice

exception_from_status = partial(_exception_from_status, line=5)

_REPLACED = {"HEF", "Device", "VDevice", "HailoRTStatusException", "exception_from_status"}
_REMOVED = {"UdpRecvError"}  # with the Ethernet devices (ExceptionWrapper @ v5.2.0)
globals().update({name: getattr(_v4, name) for name in _v4.__all__ if name not in _REPLACED | _REMOVED})

__all__ = sorted((set(_v4.__all__) - _REMOVED) | _REPLACED)
