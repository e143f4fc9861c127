"""Async jobs and the per-model callback thread.

HailoRT runs the Python callbacks of one configured model on one dedicated thread, in completion
order, and `AsyncInferJob.wait()` returns only after the callback has run. A job of N bindings is
N frames; it completes (once) when its last frame does, with the first failing status.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_target.hailo.emulator.exceptions import exception_from_status

LOG = logging.getLogger("hailort")


class AsyncInferCompletionInfo:
    """What the callback receives as `completion_info`: `.exception` is None or the mapped exception."""

    def __init__(self, exception: Exception | None) -> None:
        self._exception = exception

    @property
    def exception(self) -> Exception | None:
        return self._exception


class Job:
    """One `run_async` call: its frames, its callback, and two completion events."""

    def __init__(self, frames: int, callback: Callable[..., Any] | None, guards: list[Any]) -> None:
        self.remaining = frames
        self.status = 0
        self.callback = callback
        self.guards = guards
        self.done = threading.Event()
        self.callback_done = threading.Event()

    def frame_done(self, status: int) -> bool:
        """Count one finished frame (call under the device lock); True when the job is complete."""
        if status and not self.status:
            self.status = status
        self.remaining -= 1
        return self.remaining == 0


@dataclass
class Frame:
    """One binding of a job: the user's buffers, read and written by the device thread."""

    job: Job
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]


_STOP = object()


class CallbackWorker:
    """The single callback thread of one configured model."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"hailort-callbacks-{name}", daemon=True)
        self._thread.start()

    def post(self, job: Job, status: int) -> None:
        job.done.set()
        self._queue.put((job, status))

    def close(self) -> None:
        """Stop after the callbacks already posted have run."""
        self._queue.put(_STOP)

    def _loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            job, status = item
            try:
                if job.callback is not None:
                    exc = exception_from_status(status, line=5) if status else None
                    job.callback(completion_info=AsyncInferCompletionInfo(exc))
            except Exception:
                LOG.exception("Exception in an async inference callback (ignored)")
            finally:
                job.guards = []
                job.callback_done.set()
