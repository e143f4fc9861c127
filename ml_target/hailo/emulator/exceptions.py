"""HailoRT's exception classes and the status-code to exception mapping of pyhailort 4.23.

The device layers raise `StatusError(code, detail)`; `to_hailort(...)` turns it into the exception
class and generic message HailoRT's Python wrapper would raise, with the `StatusError` chained as
`__cause__` (HailoRT writes the detail to hailort.log; we also log it on the `hailort` logger).
Callers above the emulator see exactly the classes and messages of the real library, so the
runtime's code for parsing status codes out of messages is exercised.
"""

from __future__ import annotations

import logging
from enum import IntEnum

LOG = logging.getLogger("hailort")

STATUS_NAMES: dict[int, str] = {
    0: "HAILO_SUCCESS",
    1: "HAILO_UNINITIALIZED",
    2: "HAILO_INVALID_ARGUMENT",
    3: "HAILO_OUT_OF_HOST_MEMORY",
    4: "HAILO_TIMEOUT",
    5: "HAILO_INSUFFICIENT_BUFFER",
    6: "HAILO_INVALID_OPERATION",
    7: "HAILO_NOT_IMPLEMENTED",
    8: "HAILO_INTERNAL_FAILURE",
    9: "HAILO_DATA_ALIGNMENT_FAILURE",
    10: "HAILO_CHUNK_TOO_LARGE",
    11: "HAILO_INVALID_LOGGER_LEVEL",
    12: "HAILO_CLOSE_FAILURE",
    13: "HAILO_OPEN_FILE_FAILURE",
    14: "HAILO_FILE_OPERATION_FAILURE",
    15: "HAILO_UNSUPPORTED_CONTROL_PROTOCOL_VERSION",
    16: "HAILO_UNSUPPORTED_FW_VERSION",
    17: "HAILO_INVALID_CONTROL_RESPONSE",
    18: "HAILO_FW_CONTROL_FAILURE",
    19: "HAILO_ETH_FAILURE",
    20: "HAILO_ETH_INTERFACE_NOT_FOUND",
    21: "HAILO_ETH_RECV_FAILURE",
    22: "HAILO_ETH_SEND_FAILURE",
    23: "HAILO_INVALID_FIRMWARE",
    24: "HAILO_INVALID_CONTEXT_COUNT",
    25: "HAILO_INVALID_FRAME",
    26: "HAILO_INVALID_HEF",
    27: "HAILO_PCIE_NOT_SUPPORTED_ON_PLATFORM",
    28: "HAILO_INTERRUPTED_BY_SIGNAL",
    29: "HAILO_START_VDMA_CHANNEL_FAIL",
    30: "HAILO_SYNC_VDMA_BUFFER_FAIL",
    31: "HAILO_STOP_VDMA_CHANNEL_FAIL",
    32: "HAILO_CLOSE_VDMA_CHANNEL_FAIL",
    33: "HAILO_ATR_TABLES_CONF_VALIDATION_FAIL",
    34: "HAILO_EVENT_CREATE_FAIL",
    35: "HAILO_READ_EVENT_FAIL",
    36: "HAILO_DRIVER_OPERATION_FAILED",
    37: "HAILO_INVALID_FIRMWARE_MAGIC",
    38: "HAILO_INVALID_FIRMWARE_CODE_SIZE",
    39: "HAILO_INVALID_KEY_CERTIFICATE_SIZE",
    40: "HAILO_INVALID_CONTENT_CERTIFICATE_SIZE",
    41: "HAILO_MISMATCHING_FIRMWARE_BUFFER_SIZES",
    42: "HAILO_INVALID_FIRMWARE_CPU_ID",
    43: "HAILO_CONTROL_RESPONSE_MD5_MISMATCH",
    44: "HAILO_GET_CONTROL_RESPONSE_FAIL",
    45: "HAILO_GET_D2H_EVENT_MESSAGE_FAIL",
    46: "HAILO_MUTEX_INIT_FAIL",
    47: "HAILO_OUT_OF_DESCRIPTORS",
    48: "HAILO_UNSUPPORTED_OPCODE",
    49: "HAILO_USER_MODE_RATE_LIMITER_NOT_SUPPORTED",
    50: "HAILO_RATE_LIMIT_MAXIMUM_BANDWIDTH_EXCEEDED",
    51: "HAILO_ANSI_TO_UTF16_CONVERSION_FAILED",
    52: "HAILO_UTF16_TO_ANSI_CONVERSION_FAILED",
    53: "HAILO_UNEXPECTED_INTERFACE_INFO_FAILURE",
    54: "HAILO_UNEXPECTED_ARP_TABLE_FAILURE",
    55: "HAILO_MAC_ADDRESS_NOT_FOUND",
    56: "HAILO_NO_IPV4_INTERFACES_FOUND",
    57: "HAILO_SHUTDOWN_EVENT_SIGNALED",
    58: "HAILO_THREAD_ALREADY_ACTIVATED",
    59: "HAILO_THREAD_NOT_ACTIVATED",
    60: "HAILO_THREAD_NOT_JOINABLE",
    61: "HAILO_NOT_FOUND",
    62: "HAILO_COMMUNICATION_CLOSED",
    63: "HAILO_STREAM_ABORT",
    64: "HAILO_DRIVER_NOT_INSTALLED",
    65: "HAILO_NOT_AVAILABLE",
    66: "HAILO_TRAFFIC_CONTROL_FAILURE",
    67: "HAILO_INVALID_SECOND_STAGE",
    68: "HAILO_INVALID_PIPELINE",
    69: "HAILO_NETWORK_GROUP_NOT_ACTIVATED",
    70: "HAILO_VSTREAM_PIPELINE_NOT_ACTIVATED",
    71: "HAILO_OUT_OF_FW_MEMORY",
    72: "HAILO_STREAM_NOT_ACTIVATED",
    73: "HAILO_DEVICE_IN_USE",
    74: "HAILO_OUT_OF_PHYSICAL_DEVICES",
    75: "HAILO_INVALID_DEVICE_ARCHITECTURE",
    76: "HAILO_INVALID_DRIVER_VERSION",
    77: "HAILO_RPC_FAILED",
    78: "HAILO_INVALID_SERVICE_VERSION",
    79: "HAILO_NOT_SUPPORTED",
    80: "HAILO_NMS_BURST_INVALID_DATA",
    81: "HAILO_OUT_OF_HOST_CMA_MEMORY",
    82: "HAILO_QUEUE_IS_FULL",
    83: "HAILO_DMA_MAPPING_ALREADY_EXISTS",
    84: "HAILO_CANT_MEET_BUFFER_REQUIREMENTS",
    85: "HAILO_DRIVER_INVALID_RESPONSE",
    86: "HAILO_DRIVER_INVALID_IOCTL",
    87: "HAILO_DRIVER_TIMEOUT",
    88: "HAILO_DRIVER_INTERRUPTED",
    89: "HAILO_CONNECTION_REFUSED",
    90: "HAILO_DRIVER_WAIT_CANCELED",
    91: "HAILO_HEF_FILE_CORRUPTED",
    92: "HAILO_HEF_NOT_SUPPORTED",
    93: "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE",
}
# HailoRT 5.x adds four codes (include/hailo/hailort.h @ v5.2.0): 94 since 5.0.0, 95-97 since 5.1.0.
STATUS_NAMES_5: dict[int, str] = {
    **STATUS_NAMES,
    94: "HAILO_INVALID_HEF_USE",
    95: "HAILO_OPERATION_ABORTED",
    96: "HAILO_DEVICE_NOT_CONNECTED",
    97: "HAILO_DEVICE_TEMPORARILY_UNAVAILABLE",
}

Status = IntEnum("Status", {name: code for code, name in STATUS_NAMES_5.items()})
"""libhailort's status codes by name (`Status.HAILO_QUEUE_IS_FULL == 82`), of both lines."""


class HailoRTException(Exception):
    """Base of every exception pyhailort raises."""


class UdpRecvError(HailoRTException):
    pass


class InvalidProtocolVersionException(HailoRTException):
    pass


class HailoRTFirmwareControlFailedException(HailoRTException):
    pass


class HailoRTInvalidFrameException(HailoRTException):
    pass


class HailoRTUnsupportedOpcodeException(HailoRTException):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class HailoRTStreamAborted(HailoRTException):
    pass


class HailoRTStreamAbortedByUser(HailoRTException):
    pass


class HailoRTInvalidOperationException(HailoRTException):
    pass


class HailoRTInvalidArgumentException(HailoRTException):
    pass


class HailoRTNotFoundException(HailoRTException):
    pass


class HailoRTInvalidHEFException(HailoRTException):
    pass


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


class HailoRTEthException(HailoRTException):
    pass


class HailoRTDriverOperationFailedException(HailoRTException):
    pass


HailoRTPCIeDriverException = HailoRTDriverOperationFailedException


class HailoRTNetworkGroupNotActivatedException(HailoRTException):
    pass


class HailoCommunicationClosedException(HailoRTException):
    pass


class HailoStatusInvalidValueException(Exception):
    pass


class HailoRTStatusException(Exception):
    """The raw pybind status exception. In 4.23 it is NOT a `HailoRTException` subclass; a few
    unwrapped calls (the `HEF.get_*_vstream_infos()` family, `VStreamInfo.nms_shape`) leak it."""


class HailoRTStatusException5(HailoRTException):
    """HailoRT 5.x's raw status exception: pybind registers it with `HailoRTException` as its base
    (`py::register_exception<HailoRTStatusException>(m, "HailoRTStatusException", hailo_rt_exception)`,
    pyhailort.cpp @ v5.2.0), so the same leaks are `HailoRTException`s there."""


HailoRTStatusException5.__name__ = HailoRTStatusException5.__qualname__ = "HailoRTStatusException"
STATUS_EXCEPTIONS: dict[int, type[Exception]] = {4: HailoRTStatusException, 5: HailoRTStatusException5}


class StatusError(Exception):
    """Internal: a libhailort status with the detail HailoRT would write to hailort.log."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(f"{status_name(code)}: {detail}" if detail else status_name(code))
        self.code = code
        self.detail = detail


_SPECIFIC: dict[str, tuple[type[HailoRTException], str]] = {
    "HAILO_ETH_RECV_FAILURE": (UdpRecvError, "Failed to receive data"),
    "HAILO_UNSUPPORTED_CONTROL_PROTOCOL_VERSION": (
        InvalidProtocolVersionException,
        "HailoRT has failed because an invalid protocol version was received from device",
    ),
    "HAILO_FW_CONTROL_FAILURE": (HailoRTFirmwareControlFailedException, "libhailort control operation failed"),
    "HAILO_UNSUPPORTED_OPCODE": (
        HailoRTUnsupportedOpcodeException,
        "HailoRT has failed because an unsupported opcode was sent to device",
    ),
    "HAILO_INVALID_FRAME": (HailoRTInvalidFrameException, "An invalid frame was received"),
    "HAILO_TIMEOUT": (HailoRTTimeout, "Received a timeout - hailort has failed because a timeout had occurred"),
    "HAILO_STREAM_ABORT": (HailoRTStreamAborted, "Stream was aborted"),
    "HAILO_INVALID_OPERATION": (
        HailoRTInvalidOperationException,
        "Invalid operation. See hailort.log for more information",
    ),
    "HAILO_INVALID_ARGUMENT": (HailoRTInvalidArgumentException, "Invalid argument. See hailort.log for more information"),
    "HAILO_NOT_FOUND": (HailoRTNotFoundException, "Item not found. See hailort.log for more information"),
    "HAILO_INVALID_HEF": (HailoRTInvalidHEFException, "Invalid HEF. See hailort.log for more information"),
    "HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE": (
        HailoRTHEFNotCompatibleWithDevice,
        "HEF file is not compatible with device. See hailort.log for more information",
    ),
    "HAILO_ETH_FAILURE": (HailoRTEthException, "Ethernet failure. See hailort.log for more information"),
    "HAILO_DRIVER_OPERATION_FAILED": (
        HailoRTDriverOperationFailedException,
        "Failure in hailort driver ioctl. run 'dmesg | grep hailo' for more information",
    ),
    "HAILO_COMMUNICATION_CLOSED": (
        HailoCommunicationClosedException,
        "Communication closed failure. Check server-client connection",
    ),
    "HAILO_NETWORK_GROUP_NOT_ACTIVATED": (HailoRTNetworkGroupNotActivatedException, "Network group is not activated"),
}


def status_name(code: int, line: int = 5) -> str:
    """HailoRT's name for a status code (`HAILO_QUEUE_IS_FULL` for 82) in the given line's table."""
    try:
        return (STATUS_NAMES if line == 4 else STATUS_NAMES_5)[code]
    except KeyError:
        raise HailoStatusInvalidValueException(f"Value {code} is not a valid status") from None


def exception_from_status(code: int, line: int = 4) -> HailoRTException:
    """The exception pyhailort's `ExceptionWrapper.create_exception_from_status` builds for `code`
    (4.23's table by default, as the 4.23 module exports it; the 5.x codes only with `line=5`)."""
    name = status_name(code, line)
    if name in _SPECIFIC:
        cls, message = _SPECIFIC[name]
        return cls(message)
    return HailoRTException(f"libhailort failed with error: {code} ({name})")


def to_hailort(error: StatusError) -> HailoRTException:
    """Map an internal status error to the public exception, logging the detail like hailort.log."""
    if error.detail:
        LOG.error("%s (status %d %s)", error.detail, error.code, status_name(error.code))
    exc = exception_from_status(error.code, line=5)  # the emulated cards raise 94-97 only under 5.x
    exc.__cause__ = error
    return exc


class ExceptionWrapper:
    """Context manager converting `StatusError` into HailoRT's Python exceptions, as pyhailort does."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, value, traceback) -> bool:
        if isinstance(value, StatusError):
            raise to_hailort(value) from value
        return False
