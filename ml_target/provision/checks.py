"""What makes a provisioned file acceptable: HEF header, OCR dictionary shape, pinned SHA-256.

Every check raises ProvisionError with a message that names the file and says what to do, because
the person reading it is an operator at a terminal, not a developer.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path

from ml_target import hef_header
from ml_target.errors import ConfigurationError
from ml_target.networks import NETWORKS
from ml_target.text.ocr_dictionary import check_class_count, load_dictionary

SUMS_FILE = "SHA256SUMS"
OCR_RECOGNISER = "paddle_ocr_v5_mobile_recognition"


class ProvisionError(Exception):
    """Provisioning cannot complete; the message names the file and what to do about it."""


def check_header(path: Path, arch: str | None) -> hef_header.HefHeader:
    """Raise unless `path` is a complete HEF that a device of `arch` accepts (any chip if None),
    by the size rule of the HailoRT line that drives `arch`."""
    try:
        header = hef_header.read_header(path, hailort_major=hef_header.HAILORT_MAJOR_OF_BUILD.get(arch or "", 4))
    except hef_header.HefFormatError as exc:
        raise ProvisionError(f"{path}: {exc}") from None
    if arch and header.hw_arch and not hef_header.accepted_by(arch, header.hw_arch):
        raise ProvisionError(
            f"{path} is compiled for {header.hw_arch}, which a {arch} device refuses (HailoRT error 93); "
            f"delete it and run fetch-models --arch {arch}"
        )
    return header


def check_dictionary(path: Path) -> None:
    """Raise unless `path` is a PP-OCRv5 character table with one class per recogniser channel."""
    channels = NETWORKS[OCR_RECOGNISER].outputs[0].shape[-1]
    try:
        check_class_count(load_dictionary(path), channels, source=str(path))
    except ConfigurationError as exc:
        raise ProvisionError(f"{exc}; delete {path.name} and run fetch-models again") from None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_checksum(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ProvisionError(
            f"{path} does not match its SHA-256 in {path.parent / SUMS_FILE} (expected {expected[:16]}..., "
            f"got {actual[:16]}...): the file changed or is corrupt. Delete {path.name} and run fetch-models "
            f"again to re-download it; if you replaced it on purpose, delete its line from {SUMS_FILE}"
        )


def read_sums(path: Path) -> dict[str, str]:
    """Parse a `sha256sum` file (`<hex>  <name>` or `<hex> *<name>`); a malformed line is an error."""
    if not path.exists():
        return {}
    sums: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([0-9a-fA-F]{64}) [ *](.+)", line)
        if not match:
            raise ProvisionError(f"{path}:{number} is not a sha256sum line; fix or delete {path}")
        sums[match.group(2)] = match.group(1).lower()
    return sums


def write_sums(path: Path, sums: Mapping[str, str]) -> None:
    """Write atomically and sorted, so re-runs produce the same file (`sha256sum -c` reads it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{sums[name]}  {name}\n" for name in sorted(sums)))
    os.replace(tmp, path)
