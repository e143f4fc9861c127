"""Classify HailoRT failures: which ones a re-configure fixes and which need a new VDevice.

HailoRT reports most failures as exception classes, but several status codes only appear inside a
plain `HailoRTException` message ("libhailort failed with error: 74 (...)"), and some calls leak raw
pybind exceptions that are not `HailoRTException` subclasses at all (hailort.md §2). So the
classification looks at the class names along the MRO and at a status code parsed from the text,
never at the exception's identity, which keeps it independent of the module that raised it.
"""

from __future__ import annotations

import re

from ml_target.errors import WorkerError

# Driver operation failed, communication closed, driver not installed, driver/library mismatch,
# out of physical devices, and in HailoRT 5.x a lost card (96 HAILO_DEVICE_NOT_CONNECTED, what the
# driver's ENXIO becomes) and a broken RPC link to a Hailo-10H (77 HAILO_RPC_FAILED): the VDevice is
# gone or unusable and must be rebuilt. 97 HAILO_DEVICE_TEMPORARILY_UNAVAILABLE ("try again later")
# is left to the model-level retry.
DEVICE_FATAL_CODES = frozenset({36, 62, 64, 74, 76, 77, 96})
# pyhailort raises these classes with generic messages that carry no status code (hailort.md §2).
CLASS_CODES = {
    "HailoRTTimeout": 4,
    "HailoRTInvalidHEFException": 26,
    "HailoRTDriverOperationFailedException": 36,
    "HailoRTPCIeDriverException": 36,
    "HailoCommunicationClosedException": 62,
    "HailoRTStreamAborted": 63,
    "HailoRTHEFNotCompatibleWithDevice": 93,
}
_CODE = re.compile(r"(?:error:?\s*|status[=:\s]+|\()(\d{1,3})\b")

STARTUP_ADVICE = {
    2: "A HAILO_DEVICE_IDS entry is not a card HailoRT sees: list them with `hailortcli scan`.",
    64: (
        "The Hailo PCIe driver is not installed: install the driver of your HailoRT version "
        "(hailo_pci 4.23 for a Hailo-8/8L, hailo1x_pci 5.x for a Hailo-10H)."
    ),
    73: "The Hailo device is in use by another process.",
    74: (
        "No free Hailo device: another process (Frigate, hailortcli, a second worker) holds it. "
        "Stop it, or run hailort_service on both sides and set HAILO_MULTI_PROCESS_SERVICE=true "
        "with the same HAILO_GROUP_ID."
    ),
    76: (
        "The Hailo driver and libhailort versions differ: install the same version of both "
        "(hailo_pci 4.23.0 with HailoRT 4.23.0; hailo1x_pci 5.x.y with HailoRT 5.x.y)."
    ),
    79: (
        "This HailoRT line does not drive this card: a Hailo-8/8L needs HailoRT 4.x, a Hailo-10H HailoRT 5.x "
        "(README, Hardware): build the image for the card's line."
    ),
    93: "This HEF was compiled for another Hailo architecture: fetch the HEFs for this device's arch.",
}


def _own_code(exc: BaseException) -> int | None:
    if isinstance(exc, WorkerError):  # its `status` is an HTTP status, not a HailoRT one
        return None
    for attr in ("status", "status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    for cls in type(exc).__mro__:
        if cls.__name__ in CLASS_CODES:
            return CLASS_CODES[cls.__name__]
    match = _CODE.search(str(exc))
    return int(match.group(1)) if match else None


def status_code(exc: BaseException) -> int | None:
    """The HailoRT status of `exc`: an attribute, the exception class, the message, or its cause's."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = _own_code(current)
        if code is not None:
            return code
        current = current.__cause__
    return None


def _class_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def is_device_fatal(exc: BaseException) -> bool:
    """True when `exc` means the device itself failed, not just one configured model."""
    return status_code(exc) in DEVICE_FATAL_CODES


def is_timeout(exc: BaseException) -> bool:
    """True for HailoRT's timeout (status 4), whichever module raised it."""
    return "HailoRTTimeout" in _class_names(exc)


def describe(exc: BaseException) -> str:
    """A one-line description for logs and /health: class, message and status code."""
    code = status_code(exc)
    text = str(exc) or type(exc).__name__
    suffix = f" (status {code})" if code is not None and str(code) not in text else ""
    return f"{type(exc).__name__}: {text}{suffix}"


def startup_advice(exc: BaseException) -> str:
    """What an operator should do about a failure while opening the device or configuring a HEF."""
    return STARTUP_ADVICE.get(status_code(exc) or -1, "See hailort.log for details.")
