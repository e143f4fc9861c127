"""Stand-in for HailoRT 4.23's `hailo_platform`, backed by the emulated device.

Exports the same top-level names as the real package; like 4.23 it does NOT export
`HailoRTTimeout`, `InferModel`, `ConfiguredInferModel` or `QuantInfo` here (import them from
`.pyhailort.pyhailort`).
"""

from ml_target.hailo.emulator.hailo_platform.pyhailort.pyhailort import (
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

__version__ = "4.23.0"

__all__ = [
    "HEF", "AsyncInferJob", "Device", "FormatOrder", "FormatType", "HailoCommunicationClosedException",
    "HailoFormatFlags", "HailoPowerMode", "HailoRTException", "HailoRTStreamAbortedByUser",
    "HailoSchedulingAlgorithm", "HailoStreamDirection", "HailoStreamInterface", "VDevice", "__version__",
]
