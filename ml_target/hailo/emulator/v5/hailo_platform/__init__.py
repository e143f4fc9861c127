"""Stand-in for HailoRT 5.x's `hailo_platform`, backed by the same emulated host as the 4.23 one.

The names the worker uses are those of 4.23 (the Python classes are textually the same in 5.2.0
apart from comments, docs/hardware-evidence.md §B); what differs lives in `VDevice5`, `Device5`,
`HEF5` and the raw `HailoRTStatusException`, which derives from `HailoRTException` in 5.x.
Ethernet, UDP and MIPI names are gone in 5.x, as here.
"""

from ml_target.hailo.emulator.device import LIBRARY_VERSIONS
from ml_target.hailo.emulator.v5.hailo_platform.pyhailort.pyhailort import (
    HEF,
    AsyncInferJob,
    Device,
    FormatOrder,
    FormatType,
    HailoCommunicationClosedException,
    HailoFormatFlags,
    HailoPowerMode,
    HailoRTException,
    HailoRTStreamAbortedByUser,
    HailoSchedulingAlgorithm,
    HailoStreamDirection,
    HailoStreamInterface,
    VDevice,
)

__version__ = LIBRARY_VERSIONS[5]

__all__ = [
    "HEF", "AsyncInferJob", "Device", "FormatOrder", "FormatType", "HailoCommunicationClosedException",
    "HailoFormatFlags", "HailoPowerMode", "HailoRTException", "HailoRTStreamAbortedByUser",
    "HailoSchedulingAlgorithm", "HailoStreamDirection", "HailoStreamInterface", "VDevice", "__version__",
]
