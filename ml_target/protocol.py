"""Immich's wire format: parsing `entries`, normalising model names, serialising responses.

Everything here is pure and follows immich-protocol.md §3-§4 (Immich v3.1.0). `entries` is
`{task: {type: {"modelName": str, "options": {...}}}}`; anything else is the 422 Immich answers,
`{"detail": "Invalid request format."}`, with the reason appended after Immich's message (Immich
only logs it), e.g. `Invalid request format. entries["clip"]["visual"] has no modelName string`.
Responses hold each task's wire result,
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
SHAPE = '{task: {type: {"modelName": ..., "options": {...}}}}'
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


def invalid_format(reason: str) -> InvalidEntries:
    """Immich's 422 message, then why (Immich's clients match the prefix, people read the rest)."""
    return InvalidEntries(f"{INVALID_FORMAT} {reason}")


def parse_entries(raw: str | bytes) -> list[Entry]:
    """Parse the `entries` form field, in request order; `InvalidEntries` (422) on any shape error.

    Stricter than Immich where Immich would fail later with a 500 (a non-object entry, a
    non-string model name, non-object options): those are the caller's mistakes, so 422 too.
    """
    try:
        request = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise invalid_format(f"entries is not JSON ({exc})") from None
    if not isinstance(request, dict):
        raise invalid_format(f"entries must be a JSON object {SHAPE}, not {_kind(request)}")
    entries = []
    for task, types in request.items():
        if not isinstance(types, dict):
            raise invalid_format(f"entries[{_quote(task)}] must be an object of types, not {_kind(types)}")
        for type_, entry in types.items():
            entries.append(_parse_entry(task, type_, entry))
    return entries


def _parse_entry(task: str, type_: str, entry: object) -> Entry:
    where = f"entries[{_quote(task)}][{_quote(type_)}]"
    if not isinstance(entry, dict):
        raise invalid_format(f'{where} must be an object with "modelName", not {_kind(entry)}')
    if not isinstance(entry.get("modelName"), str):
        found = "none" if "modelName" not in entry else _kind(entry["modelName"])
        raise invalid_format(f'{where} needs a "modelName" string (found {found})')
    options = entry.get("options", {})
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise invalid_format(f'{where}["options"] must be an object, not {_kind(options)}')
    return Entry(task=task, type=type_, model_name=normalise_model_name(entry["modelName"]), options=options)


def _quote(key: str) -> str:
    """A key as it appears in the request, shortened: reasons must stay one readable line."""
    text = orjson.dumps(key).decode()
    return text if len(text) <= 40 else text[:37] + '..."'


def _kind(value: object) -> str:
    """The JSON type of `value`, as a reason names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


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
