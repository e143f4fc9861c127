"""The emulated HEF file format: parsing and validation (see README.md for the schema).

An emulated HEF is a JSON document standing where the real `.hef` would be. Parsing is strict:
a malformed file fails with `Status.HAILO_INVALID_HEF` and a reason, rather than surfacing later as a
confusing inference error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_target.hailo.emulator.exceptions import Status, StatusError

FORMAT = "ml_target-emulated-hef"
VERSION = 1
REAL_HEF_MAGIC = b"\x01HEF"
ARCHES = ("hailo8", "hailo8l", "hailo10h")
TYPES = ("UINT8", "UINT16")
ORDERS = ("NHWC", "NC", "NHW")
COMPUTE_KINDS = ("onnx", "synthetic", "callable", "constant")
DEFAULT_QUEUE_SIZE = 16


class RealHefError(Exception):
    """The file is a compiled HEF, which only real HailoRT on real hardware can run."""


@dataclass(frozen=True)
class EdgeDesc:
    """One vstream of the emulated HEF."""

    name: str
    shape: tuple[int, ...]
    type: str
    order: str
    scale: float
    zp: float
    min: float
    max: float

    @property
    def layer(self) -> str:
        """The layer name without the network-group prefix (`conv42` of `scrfd_2_5g/conv42`)."""
        return self.name.split("/", 1)[-1]


@dataclass(frozen=True)
class HefDesc:
    """A parsed emulated HEF."""

    hw_arch: str
    network_group: str
    multi_context: bool
    timing_ms: dict[str, tuple[float, float]]
    inputs: tuple[EdgeDesc, ...]
    outputs: tuple[EdgeDesc, ...]
    compute: dict[str, Any]
    max_queue_size: int
    directory: Path | None

    @property
    def edges(self) -> tuple[EdgeDesc, ...]:
        return self.inputs + self.outputs

    def timing(self, profile: str) -> tuple[float, float]:
        """(a, b) ms for a timing profile; falls back to the HEF's own architecture, then to zero."""
        return self.timing_ms.get(profile) or self.timing_ms.get(self.hw_arch) or (0.0, 0.0)


def _fail(reason: str) -> StatusError:
    return StatusError(Status.HAILO_INVALID_HEF, f"Invalid emulated HEF: {reason}")


def _edge(raw: Any, where: str) -> EdgeDesc:
    if not isinstance(raw, dict):
        raise _fail(f"{where} must be an object")
    try:
        name = str(raw["name"])
        shape = tuple(int(d) for d in raw["shape"])
        quant = raw.get("quant", {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": 255.0})
        edge = EdgeDesc(
            name=name,
            shape=shape,
            type=str(raw.get("type", "UINT8")),
            order=str(raw.get("order", "NHWC" if len(shape) == 3 else "NC")),
            scale=float(quant["scale"]),
            zp=float(quant["zp"]),
            min=float(quant["min"]),
            max=float(quant["max"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(f"{where}: {exc!r}") from None
    if edge.type not in TYPES:
        raise _fail(f"{where} ({name}): type {edge.type!r} is not one of {TYPES}")
    if edge.order not in ORDERS:
        raise _fail(f"{where} ({name}): order {edge.order!r} is not one of {ORDERS}")
    expected_rank = {"NHWC": 3, "NC": 1, "NHW": 2}[edge.order]
    if len(shape) != expected_rank or min(shape) < 1:
        raise _fail(f"{where} ({name}): shape {list(shape)} does not fit order {edge.order}")
    return edge


def parse(data: bytes, directory: Path | None) -> HefDesc:
    """Parse an emulated HEF's bytes; `directory` resolves relative ONNX paths."""
    if data[:4] == REAL_HEF_MAGIC:
        raise RealHefError(
            "This is a real compiled HEF (magic 01 48 45 46). The emulated Hailo device "
            "(HAILO_DEVICE=emulator) cannot run real HEFs; it needs emulated HEF files "
            "(write them with ml_target.hailo.emulator.models_dir.write_emulated_models), "
            "or run with HAILO_DEVICE=hailort on a machine with a Hailo device."
        )
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _fail(f"not JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise _fail(f"'format' must be {FORMAT!r}")
    if doc.get("version") != VERSION:
        raise _fail(f"unsupported version {doc.get('version')!r} (expected {VERSION})")
    if doc.get("hw_arch") not in ARCHES:
        raise _fail(f"hw_arch {doc.get('hw_arch')!r} is not one of {ARCHES}")
    group = doc.get("network_group")
    if not isinstance(group, str) or not group:
        raise _fail("network_group must be a non-empty string")
    inputs = tuple(_edge(e, f"inputs[{i}]") for i, e in enumerate(doc.get("inputs") or []))
    outputs = tuple(_edge(e, f"outputs[{i}]") for i, e in enumerate(doc.get("outputs") or []))
    if not inputs or not outputs:
        raise _fail("a network needs at least one input and one output")
    names = [e.name for e in inputs + outputs]
    if len(set(names)) != len(names):
        raise _fail(f"duplicate edge names in {names}")
    try:
        timing = {str(k): (float(v[0]), float(v[1])) for k, v in (doc.get("timing_ms") or {}).items()}
    except (TypeError, ValueError, IndexError) as exc:
        raise _fail(f"timing_ms: {exc!r}") from None
    compute = doc.get("compute")
    if not isinstance(compute, dict) or compute.get("kind") not in COMPUTE_KINDS:
        raise _fail(f"compute.kind must be one of {COMPUTE_KINDS}")
    queue = doc.get("max_queue_size", DEFAULT_QUEUE_SIZE)
    if not isinstance(queue, int) or queue < 1:
        raise _fail("max_queue_size must be a positive integer")
    return HefDesc(
        hw_arch=doc["hw_arch"],
        network_group=group,
        multi_context=bool(doc.get("multi_context", False)),
        timing_ms=timing,
        inputs=inputs,
        outputs=outputs,
        compute=compute,
        max_queue_size=queue,
        directory=directory,
    )


def load(source: str | bytes) -> HefDesc:
    """Read an emulated HEF from a path or from bytes (relative ONNX paths then resolve to the cwd)."""
    if isinstance(source, bytes):
        return parse(source, None)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StatusError(Status.HAILO_OPEN_FILE_FAILURE, f"Failed to open HEF file {source!r}: {exc}") from None
    return parse(data, path.resolve().parent)
