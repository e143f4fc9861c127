"""HailoRT's enums with pybind11-style behaviour.

pybind enums print as `FormatType.UINT8` and compare/hash like their integer value. Python 3.11's
`IntEnum.__str__` prints the bare number instead, so code that logs or maps formats by `str()`
would behave differently against the emulator; `_PybindEnum` restores the pybind form.
"""

from __future__ import annotations

from enum import IntEnum


class _PybindEnum(IntEnum):
    """An IntEnum whose `str()` is `<pybind class name>.<member>` like pybind11's `py::enum_`."""

    def __str__(self) -> str:
        return f"{getattr(type(self), '_pybind_name', type(self).__name__)}.{self.name}"

    def __repr__(self) -> str:
        return f"<{self}: {int(self)}>"


FormatType = _PybindEnum("FormatType", [("AUTO", 0), ("UINT8", 1), ("UINT16", 2), ("FLOAT32", 3)])

FormatOrder = _PybindEnum(
    "FormatOrder",
    [
        ("AUTO", 0), ("NHWC", 1), ("NHCW", 2), ("FCR", 3), ("F8CR", 4), ("NHW", 5), ("NC", 6),
        ("BAYER_RGB", 7), ("12_BIT_BAYER_RGB", 8), ("RGB888", 10), ("NCHW", 11), ("YUY2", 12),
        ("NV12", 13), ("NV21", 14), ("YYUV", 15), ("YYVU", 16), ("RGB4", 17), ("I420", 18),
        ("YYYYUV", 19), ("HAILO_NMS_WITH_BYTE_MASK", 20), ("HAILO_NMS_ON_CHIP", 21),
        ("HAILO_NMS_BY_CLASS", 22), ("HAILO_NMS_BY_SCORE", 23),
    ],
)

HailoFormatFlags = _PybindEnum("HailoFormatFlags", [("NONE", 0), ("TRANSPOSED", 2)])
HailoFormatFlags._pybind_name = "FormatFlags"

HailoSchedulingAlgorithm = _PybindEnum("HailoSchedulingAlgorithm", [("NONE", 0), ("ROUND_ROBIN", 1)])
HailoSchedulingAlgorithm._pybind_name = "SchedulingAlgorithm"

HailoStreamInterface = _PybindEnum(
    "HailoStreamInterface", [("PCIe", 0), ("ETH", 1), ("MIPI", 2), ("INTEGRATED", 3)]
)
HailoStreamInterface._pybind_name = "StreamInterface"

HailoStreamDirection = _PybindEnum("HailoStreamDirection", [("H2D", 0), ("D2H", 1)])
HailoStreamDirection._pybind_name = "StreamDirection"

HailoPowerMode = _PybindEnum("HailoPowerMode", [("PERFORMANCE", 0), ("ULTRA_PERFORMANCE", 1)])
HailoPowerMode._pybind_name = "PowerMode"


class DeviceArchitectureTypes(IntEnum):
    """`control.identify().device_architecture`; a plain Python IntEnum in pyhailort, printing its name."""

    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2
    HAILO15H = 3
    HAILO15L = 4
    HAILO15M = 5
    HAILO10H = 6

    def __str__(self) -> str:
        return self.name


TYPE_NAMES = ("UINT8", "UINT16", "FLOAT32")
ORDER_NAMES = ("NHWC", "NC", "NHW")
