"""Read the fixed header of a HEF file without HailoRT.

Provisioning must reject a download that is not a HEF (an S3 error page saved as `.hef`, a
truncated file, a HEF for the wrong chip) before the worker tries to load it on the device, where
the same mistakes surface as opaque HailoRT codes (26, 91, 92, 93). The layout is documented in
`hailort.md` §16: a big-endian header, then the `ProtoHEFHef` protobuf whose field 1 is
`ProtoHEFHeader{hw_arch=1, ...}`. Only that one enum is decoded here; a hand-written varint reader
avoids a protobuf dependency for two fields.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"\x01HEF"
HEADER_SIZES = {0: 32, 1: 28, 2: 44, 3: 56}
# ProtoHEFHwArch (hef.proto @ v5.2.0). 103 is HAILO15H in 4.23's proto and HAILO1XH in 5.x's, the
# value Zoo v5.x Hailo-10H builds carry (their HAILO10H pages linked hailo15h/ builds at v5.0.0);
# 5 is the 4.x-era HAILO10H, "Deprecated" in 5.x, which HailoRT 5 configures on no device.
HW_ARCHES = {
    0: "hailo8",
    1: "hailo8p",
    2: "hailo8r",
    3: "hailo8l",
    4: "hailo15m",
    5: "hailo10h_legacy",
    6: "hailo15l",
    103: "hailo1xh",
    104: "ginger",
    105: "lavender",
}
# What each device accepts at configure time; anything else fails with 93. HailoRT 4.23
# `DeviceBase::is_hef_compatible` (device_internal.cpp): a Hailo-8 takes HAILO8P, HAILO8R and
# HAILO8L HEFs but not HAILO8 (0); a Hailo-8L only HAILO8L (docs/hardware-evidence.md §1.17).
# HailoRT 5.2 `hef_arch_to_device_compatible_archs`: a Hailo-10H takes HAILO1XH, GINGER, LAVENDER
# and HAILO15M (docs/hardware-evidence.md §B.4).
ACCEPTED_BY_DEVICE = {
    "hailo8": frozenset({"hailo8p", "hailo8r", "hailo8l"}),
    "hailo8l": frozenset({"hailo8l"}),
    "hailo10h": frozenset({"hailo1xh", "ginger", "lavender", "hailo15m"}),
}
# The emulator's `hw_arch` names the Model Zoo's build folder; a Zoo "hailo8" build runs on a
# Hailo-8, so its header must say HAILO8P or HAILO8R: it is reported as what such a header says.
EMULATED_BUILD_ARCH = {"hailo8": "hailo8p", "hailo8l": "hailo8l", "hailo10h": "hailo1xh"}
# The HailoRT line that loads each build folder's HEFs (its v3 size rule differs: HefHeader).
HAILORT_MAJOR_OF_BUILD = {"hailo8": 4, "hailo8l": 4, "hailo10h": 5}
# Enough of the protobuf to reach `header`, which serialisers write first (field order).
PROTO_PREFIX_BYTES = 64 * 1024


class HefFormatError(ValueError):
    """The bytes are not a HEF this worker can use; the message says what they look like instead."""


@dataclass(frozen=True)
class HefHeader:
    """What the header tells: format version, sizes of its sections, and the target chip.

    `file_size` is the size the header promises. HailoRT 4.x requires exactly that size (else error
    91, "HEF file length does not match"). HailoRT 5.x relaxes it for v3 files carrying a protobuf
    checksum (`proto_xxh3`, a field 4.23 reads as reserved), checking only the protobuf;
    `exact_size` says which applies to the runtime the caller names.
    `hw_arch` is None when the protobuf prefix did not contain the header message (an unusual
    field order); the device's own check (93) still applies at load time.
    """

    version: int
    header_size: int
    proto_size: int
    file_size: int
    exact_size: bool
    hw_arch: str | None


def parse_header(data: bytes, file_size: int | None = None, *, hailort_major: int = 4) -> HefHeader:
    """Parse the start of a HEF (`data` = at least the fixed header, ideally the protobuf prefix).

    `file_size` is the size of the whole file (default: `len(data)`); `hailort_major` the HailoRT
    line that will load it (its size rule differs, see HefHeader). Raises HefFormatError naming
    what the bytes are instead (HTML, JSON, empty) or how the HEF is damaged (truncated, padded).
    """
    if data[:4] != MAGIC:
        raise HefFormatError(f"not a HEF file: {describe_bytes(data)}")
    if len(data) < 12:
        raise HefFormatError("truncated HEF: the file ends inside its header")
    version, proto_size = struct.unpack(">II", data[4:12])
    if version not in HEADER_SIZES:
        raise HefFormatError(
            f"unsupported HEF format version {version} (HailoRT 4.x and 5.x read 0..3); "
            "the file is corrupt or from a newer compiler"
        )
    header_size = HEADER_SIZES[version]
    if len(data) < header_size:
        raise HefFormatError(f"truncated HEF: {len(data)} bytes, the v{version} header alone is {header_size}")
    if proto_size == 0:
        raise HefFormatError("corrupt HEF: the header declares an empty network description")
    body, checksummed = _body_size(version, data)
    exact = hailort_major < 5 or not checksummed
    expected = header_size + proto_size + body
    size = len(data) if file_size is None else file_size
    if size < expected:
        raise HefFormatError(f"truncated HEF: {size} bytes, but its header promises {expected}")
    if exact and size > expected:
        raise HefFormatError(
            f"corrupt HEF: {size} bytes, but its header promises {expected} (HailoRT refuses it: error 91)"
        )
    proto = data[header_size : header_size + proto_size]
    return HefHeader(version, header_size, proto_size, expected, exact, _hw_arch(proto))


def _body_size(version: int, data: bytes) -> tuple[int, bool]:
    """Bytes after the protobuf (config/weight words, padding, additional info), and whether the
    header carries a protobuf checksum.

    Offsets follow HailoRT's packed big-endian `hef__header_t` (v1 ccws_size at 16; v2 at 20; v3
    ccws_size_with_padding at 20, additional_info_size at 32, and at 40 `reserved1` in 4.23,
    `proto_xxh3_64bits` in 5.x).
    """
    if version == 0:
        return 0, False
    if version == 1:
        return struct.unpack(">Q", data[16:24])[0], False
    if version == 2:
        return struct.unpack(">Q", data[20:28])[0], False
    ccws_with_padding = struct.unpack(">Q", data[20:28])[0]
    additional_info, proto_xxh3 = struct.unpack(">QQ", data[32:48])
    return ccws_with_padding + additional_info, proto_xxh3 != 0


def read_header(path: Path, *, hailort_major: int = 4) -> HefHeader:
    """Parse the header of the file at `path`, reading only its first bytes (see `parse_header`)."""
    size = path.stat().st_size
    with path.open("rb") as f:
        data = f.read(HEADER_SIZES[3] + PROTO_PREFIX_BYTES)
    return parse_header(data, file_size=size, hailort_major=hailort_major)


EMULATED_MARKER = b"ml_target-emulated-hef"


def target_arch(path: Path) -> str | None:
    """The chip `path` is compiled for: from a real HEF's header, or an emulated HEF's `hw_arch`.

    Raises HefFormatError for anything else. None when a real header does not say (see HefHeader).
    """
    with Path(path).open("rb") as f:
        head = f.read(4096)
    if EMULATED_MARKER in head:
        try:
            build = str(json.loads(Path(path).read_text(encoding="utf-8"))["hw_arch"])
        except (ValueError, KeyError) as exc:
            raise HefFormatError(f"corrupt emulated HEF: {exc}") from exc
        return EMULATED_BUILD_ARCH.get(build, build)
    return read_header(Path(path)).hw_arch


def describe_bytes(data: bytes) -> str:
    """Say what a non-HEF file most likely is, so the error points at the real cause."""
    head = data[:512].lstrip()
    lowered = head.lower()
    if not data:
        return "the file is empty"
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<html" in lowered:
        return "it is an HTML page (a proxy, captive portal or error page was saved instead of the file)"
    if lowered.startswith(b"<?xml") or lowered.startswith(b"<error"):
        return "it is an XML error document (the server refused the download, e.g. S3 AccessDenied/NoSuchKey)"
    if EMULATED_MARKER in data[:4096]:
        return "it is an emulated HEF (JSON for HAILO_DEVICE=emulator), not a file for a real device"
    if head.startswith((b"{", b"[")):
        return "it is a JSON document"
    return f"it starts with bytes {data[:4].hex(' ')} instead of 01 48 45 46"


def accepted_by(device_arch: str, hef_arch: str) -> bool:
    """Whether a device of `device_arch` configures a HEF compiled for `hef_arch` (else error 93)."""
    return hef_arch in ACCEPTED_BY_DEVICE.get(device_arch, frozenset({device_arch}))


def _hw_arch(proto: bytes) -> str | None:
    header = _first_field(proto, 1)
    if header is None:
        return None
    raw = _first_varint_field(header, 1)
    code = 0 if raw is None else raw  # proto3 omits a zero enum: absent means HAILO8
    return HW_ARCHES.get(code, f"unknown({code})")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise IndexError("varint runs past the buffer")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) over a protobuf message; stop at the buffer's end."""
    pos = 0
    try:
        while pos < len(buf):
            key, pos = _varint(buf, pos)
            number, wire = key >> 3, key & 7
            if wire == 0:
                value, pos = _varint(buf, pos)
            elif wire == 1:
                value, pos = buf[pos : pos + 8], pos + 8
            elif wire == 2:
                length, pos = _varint(buf, pos)
                value, pos = buf[pos : pos + length], pos + length
            elif wire == 5:
                value, pos = buf[pos : pos + 4], pos + 4
            else:
                return
            if pos > len(buf):
                return
            yield number, wire, value
    except (IndexError, ValueError):
        return


def _first_field(buf: bytes, number: int) -> bytes | None:
    for n, wire, value in _fields(buf):
        if n == number and wire == 2:
            return value
    return None


def _first_varint_field(buf: bytes, number: int) -> int | None:
    for n, wire, value in _fields(buf):
        if n == number and wire == 0:
            return value
    return None
