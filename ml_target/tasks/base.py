"""The contract between the pipeline and the task modules.

A handler serves one Immich (task, type) pair, e.g. ("clip", "visual"). It says which Immich model
names it serves faithfully, validates its options, and runs pre-process -> device -> post-process.
The pipeline knows nothing about HEFs; handlers know nothing about HTTP.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, Protocol

import numpy as np

Modality = Literal["image", "text"]


class Handler(Protocol):
    """One Immich (task, type) pair.

    `task`: "clip" | "facial-recognition" | "ocr"; `type`: "visual" | "textual" | "detection" |
    "recognition". `modality` says whether `run` receives the decoded image (RGB uint8, HxWx3) or
    the query text. `depends_on` names the type in the same task whose result `run` receives as
    `upstream` (recognition depends on detection), or None.

    A handler may also declare `decode_size = (width, height)`: the smallest image it can work
    from. When every entry of a request declares one, the pipeline decodes the JPEG at reduced
    scale and `run` receives a `ml_target.vision.decode.ReducedImage` (FAST_JPEG_DECODE).

    A handler may also offer `announce()`, a context manager the pipeline enters before decoding
    and leaves when the request is done (see `ml_target.hailo.types.Network.announce`), and
    `close()`, which the app calls at shutdown to release what the handler owns (thread pools).
    """

    task: str
    type: str
    modality: Modality
    depends_on: str | None

    def check_model(self, model_name: str) -> None:
        """Raise `ModelNotServed` (naming the configured model and the fix) unless served faithfully."""

    def parse_options(self, options: Mapping[str, Any]) -> Any:
        """Validate Immich's `options` for this entry; raise `BadRequest` on wrong types or ranges."""

    async def run(self, payload: np.ndarray | str, options: Any, upstream: Any | None) -> Any:
        """Compute the result (an object with `to_wire()`, see `ml_target.results`)."""

    def describe(self) -> dict[str, Any]:
        """For /health: the networks in use and the Immich model names served."""
