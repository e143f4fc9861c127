"""Immich's wire format: parsing `entries`, normalising model names, serialising responses.

Everything here is pure and follows immich-protocol.md §3-§4 (Immich v3.1.0). `entries` is
`{task: {type: {"modelName": str, "options": {...}}}}`; anything else is the 422
`{"detail": "Invalid request format."}` Immich answers. Responses hold each task's wire result,
then `imageHeight`/`imageWidth` for image requests, with float32 values in their shortest form
and no NaN or infinity ever (Immich would store them in pgvector).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ml_target.errors import InvalidEntries

INVALID_FORMAT = "Invalid request format."
_NAME_TRANSLATION = str.maketrans(":\\/", "___", ".")


@dataclass(frozen=True)
class Entry:
    """One requested (task, type) with its normalised model name and raw options."""

    task: str
    type: str
    model_name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """`task.type`, the name used in logs, metrics and messages."""
        return f"{self.task}.{self.type}"


def normalise_model_name(name: str) -> str:
    """Immich's `clean_name`: keep what follows the last `/`, map `:` and `\\` to `_`, drop `.`.

    `ViT-B-32::openai` and `immich-app/ViT-B-32__openai` both become `ViT-B-32__openai`.
    """
    return name.split("/")[-1].translate(_NAME_TRANSLATION)


def parse_entries(raw: str | bytes) -> list[Entry]:
    """Parse the `entries` form field, in request order; `InvalidEntries` (422) on any shape error.

    Stricter than Immich where Immich would fail later with a 500 (a non-object entry, a
    non-string model name, non-object options): those are the caller's mistakes, so 422 too.
    """
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidEntries(INVALID_FORMAT) from None
    if not isinstance(request, dict):
        raise InvalidEntries(INVALID_FORMAT)
    entries = []
    for task, types in request.items():
        if not isinstance(types, dict):
            raise InvalidEntries(INVALID_FORMAT)
        for type_, entry in types.items():
            entries.append(_parse_entry(task, type_, entry))
    return entries


def _parse_entry(task: str, type_: str, entry: object) -> Entry:
    if not isinstance(entry, dict) or not isinstance(entry.get("modelName"), str):
        raise InvalidEntries(INVALID_FORMAT)
    options = entry.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise InvalidEntries(INVALID_FORMAT)
    return Entry(task=task, type=type_, model_name=normalise_model_name(entry["modelName"]), options=options)


def response_body(results: Mapping[str, Any], image_size: tuple[int, int] | None) -> bytes:
    """JSON bytes of a /predict response.

    `results` maps task name -> result (an object with `to_wire()`, see `ml_target.results`), in
    the order the keys must appear;
    `image_size` is (height, width) for image requests, None for text. Raises `ValueError` on a
    non-finite number: a 500 is better than a NaN in a user's database.
    """
    body: dict[str, Any] = {task: _wire_value(result.to_wire()) for task, result in results.items()}
    if image_size is not None:
        body["imageHeight"], body["imageWidth"] = int(image_size[0]), int(image_size[1])
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _wire_value(value: Any) -> Any:
    """Copy of `value` with every float as float32 (shortest float32 form, as Immich emits) and checked finite."""
    if isinstance(value, str | bool | int | None):
        return value
    if isinstance(value, float | np.floating):
        return _finite_float32(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":
            value = value.astype(np.float32)
            if not np.all(np.isfinite(value)):
                raise ValueError("a result contains NaN or infinity")
            return np.ascontiguousarray(value)
        return [_wire_value(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire_value(v) for v in value]
    raise TypeError(f"cannot serialise {type(value).__name__} in a response")


def _finite_float32(value: float | np.floating) -> np.float32:
    single = np.float32(value)
    if not np.isfinite(single):
        raise ValueError("a result contains NaN or infinity")
    return single


def error_body(detail: Any) -> bytes:
    """`{"detail": ...}`, the error shape FastAPI and Immich use."""
    return orjson.dumps({"detail": detail})
