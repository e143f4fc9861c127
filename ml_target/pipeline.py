"""Orchestration of one /predict request: which handlers run, in what order, on which payload.

Immich's rules (immich-protocol.md §3.3, §4.1): entries without a dependency run concurrently; a
recognition entry runs after its task's detection entry and receives its result; the response
holds one result per task, the dependent one replacing the one it depended on. Unlike Immich,
everything that can be refused is refused before any work starts (unknown task, unserved model,
bad options, missing dependency, wrong payload kind), and a recognition starts as soon as its own
detection is done rather than after every independent entry.

Decoding: an image is decoded once per request. When every entry's handler declares a
`decode_size` (width, height) it can work from, the pipeline asks for a reduced-scale JPEG decode
covering the largest of them, and those handlers receive a `ReducedImage`; otherwise everyone gets
the exact full-size pixels. Either way the reported image size is the upload's own.

Announcing: handlers that offer `announce()` (a context manager) are told before decoding that
their request is on its way, and the context closes when the request is done; the device runtime
uses it to let a partial burst wait for frames that are a few milliseconds away.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ml_target.errors import BadRequest, ModelNotServed
from ml_target.protocol import Entry
from ml_target.tasks.base import Handler
from ml_target.vision.decode import ReducedImage

IMMICH_TASK_TYPES = (
    "clip.visual",
    "clip.textual",
    "facial-recognition.detection",
    "facial-recognition.recognition",
    "ocr.detection",
    "ocr.recognition",
)
MISSING_PAYLOAD = "Either image or text must be provided"

Decoder = Callable[[bytes], Awaitable[np.ndarray]]
ReducedDecoder = Callable[[bytes, tuple[int, int]], Awaitable[ReducedImage]]


@dataclass(frozen=True)
class Step:
    """One entry bound to its handler, with options already validated by that handler."""

    entry: Entry
    handler: Handler
    options: Any
    position: int  # index of the entry in the request, which orders the response's task keys

    @property
    def dependency(self) -> tuple[str, str] | None:
        depends_on = self.handler.depends_on
        return None if depends_on is None else (self.entry.task, depends_on)


@dataclass
class Prediction:
    """What a request produced: per-task results in response order, image size, stage timings."""

    results: dict[str, Any]
    image_size: tuple[int, int] | None  # (height, width) of the decoded image, None for text
    timings_ms: dict[str, float] = field(default_factory=dict)


class Pipeline:
    """Validates and runs the entries of a request against the configured handlers."""

    def __init__(
        self, handlers: Sequence[Handler], decode: Decoder, decode_reduced: ReducedDecoder | None = None
    ) -> None:
        self._handlers: dict[tuple[str, str], Handler] = {}
        for handler in handlers:
            key = (handler.task, handler.type)
            if key in self._handlers:
                raise ValueError(f"two handlers for {handler.task}.{handler.type}")
            self._handlers[key] = handler
        self._decode = decode
        self._decode_reduced = decode_reduced

    @property
    def handlers(self) -> tuple[Handler, ...]:
        return tuple(self._handlers.values())

    def served(self) -> list[str]:
        """`task.type` pairs this worker answers, for messages and /health."""
        return [f"{task}.{type_}" for task, type_ in self._handlers]

    async def predict(
        self, entries: Sequence[Entry], image: bytes | None, text: str | None, timings: dict[str, float] | None = None
    ) -> Prediction:
        """Run `entries` on the image (preferred, as in Immich) or the text.

        Raises `BadRequest`/`ModelNotServed`/`PayloadTooLarge` before any work for refusable
        requests; handler and device errors propagate unchanged. Stage timings (ms) go into
        `timings` as they complete, so a caller's dict keeps them when a later stage fails.
        """
        if image is None and not text:
            raise BadRequest(MISSING_PAYLOAD)
        modality = "image" if image is not None else "text"
        steps = self.plan(entries, modality)
        timings = {} if timings is None else timings
        payload: np.ndarray | ReducedImage | str
        with ExitStack() as announced:
            for step in steps:
                announce = getattr(step.handler, "announce", None)
                if announce is not None:
                    announced.enter_context(announce())
            if image is not None:
                started = time.perf_counter()
                payload, image_size = await self._decode_for(steps, image)
                timings["decode"] = _ms_since(started)
            else:
                payload, image_size = text or "", None
            outputs = await self._execute(steps, payload, timings)
        return Prediction(results=_final_results(steps, outputs), image_size=image_size, timings_ms=timings)

    async def _decode_for(
        self, steps: list[Step], image: bytes
    ) -> tuple[np.ndarray | ReducedImage, tuple[int, int]]:
        """Exact pixels, or a reduced-scale decode when every step can use one (module docstring)."""
        sizes = [getattr(step.handler, "decode_size", None) for step in steps]
        if self._decode_reduced is not None and sizes and all(size is not None for size in sizes):
            minimum = (max(size[0] for size in sizes), max(size[1] for size in sizes))
            reduced = await self._decode_reduced(image, minimum)
            return reduced, reduced.full_size
        pixels = await self._decode(image)
        return pixels, (int(pixels.shape[0]), int(pixels.shape[1]))

    def plan(self, entries: Sequence[Entry], modality: str) -> list[Step]:
        """Bind entries to handlers, dependencies first; refuse anything that cannot run."""
        steps = [self._step(entry, modality, position) for position, entry in enumerate(entries)]
        present = {(s.entry.task, s.entry.type) for s in steps}
        for step in steps:
            if step.dependency is not None and step.dependency not in present:
                raise BadRequest(_dependency_message(step))
        return _dependencies_first(steps)

    def _step(self, entry: Entry, modality: str, position: int) -> Step:
        handler = self._handlers.get((entry.task, entry.type))
        if handler is None:
            raise ModelNotServed(self._unknown_message(entry))
        if handler.modality != modality:
            raise BadRequest(
                f"{entry.key} needs {'an image' if handler.modality == 'image' else 'text'}, "
                f"but the request sent {'an image' if modality == 'image' else 'text'}"
            )
        handler.check_model(entry.model_name)
        options = handler.parse_options(entry.options)
        return Step(entry=entry, handler=handler, options=options, position=position)

    def _unknown_message(self, entry: Entry) -> str:
        served = ", ".join(self.served()) or "nothing"
        if entry.key in IMMICH_TASK_TYPES:
            return (
                f"This worker does not serve {entry.key} (model {entry.model_name!r}); it serves {served}. "
                "Enable the task with the TASKS setting (clip, faces, ocr) or turn it off in Immich."
            )
        return (
            f"Unknown task/type {entry.key!r}; Immich's are {', '.join(IMMICH_TASK_TYPES)} "
            f"and this worker serves {served}."
        )

    async def _execute(
        self, steps: list[Step], payload: np.ndarray | ReducedImage | str, timings: dict[str, float]
    ) -> dict[tuple[str, str], Any]:
        """Run every step as soon as its dependency (if any) has produced a result."""
        running: dict[tuple[str, str], asyncio.Task[Any]] = {}
        for step in steps:
            upstream = running[step.dependency] if step.dependency is not None else None
            running[(step.entry.task, step.entry.type)] = asyncio.ensure_future(
                _run_step(step, payload, upstream, timings)
            )
        try:
            await asyncio.gather(*running.values())
        except BaseException:
            # The first failure (or our own cancellation) ends the request: stop the other entries
            # rather than let them occupy the device for a response nobody will read.
            for task in running.values():
                task.cancel()
            await asyncio.gather(*running.values(), return_exceptions=True)
            raise
        return {key: task.result() for key, task in running.items()}


async def _run_step(
    step: Step,
    payload: np.ndarray | ReducedImage | str,
    upstream: asyncio.Task[Any] | None,
    timings: dict[str, float],
) -> Any:
    upstream_result = await upstream if upstream is not None else None
    started = time.perf_counter()
    result = await step.handler.run(payload, step.options, upstream_result)
    timings[step.entry.key] = _ms_since(started)
    return result


def _dependencies_first(steps: list[Step]) -> list[Step]:
    """Order steps so each follows the step it depends on; request order otherwise kept."""
    ordered: list[Step] = []
    placed: set[tuple[str, str]] = set()
    pending = list(steps)
    while pending:
        ready = [s for s in pending if s.dependency is None or s.dependency in placed]
        if not ready:
            raise BadRequest(f"Circular dependency between {', '.join(s.entry.key for s in pending)}")
        ordered.extend(ready)
        placed.update((s.entry.task, s.entry.type) for s in ready)
        pending = [s for s in pending if s not in ready]
    return ordered


def _final_results(steps: list[Step], outputs: dict[tuple[str, str], Any]) -> dict[str, Any]:
    """One result per task, keys in request order; a step others depend on is replaced by its dependent."""
    depended_on = {s.dependency for s in steps if s.dependency is not None}
    in_request_order = sorted(steps, key=lambda s: s.position)
    final = {
        s.entry.task: outputs[(s.entry.task, s.entry.type)]
        for s in in_request_order
        if (s.entry.task, s.entry.type) not in depended_on
    }
    tasks = dict.fromkeys(s.entry.task for s in in_request_order)
    return {task: final[task] for task in tasks}


def _dependency_message(step: Step) -> str:
    """Immich's wording (it prints its enum tuple), plus what to send instead."""
    task, depends_on = step.dependency or ("", "")
    return (
        f"Task {step.entry.task} of type {step.entry.type} depends on output of "
        f"(<ModelType.{depends_on.upper()}: '{depends_on}'>, <ModelTask.{_enum_name(task)}: '{task}'>); "
        f"add a {task}.{depends_on} entry to the same request"
    )


def _enum_name(task: str) -> str:
    return task.upper().replace("-", "_")


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
