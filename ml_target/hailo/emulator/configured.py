"""`ConfiguredInferModel`, its `Bindings`, and `AsyncInferJob`.

Reproduces the 4.23 failure semantics the runtime must survive: buffers are checked for
C-contiguity at `set_buffer` but for size only at `run_async`, and ANY failed `run_async` (size,
missing buffer, full queue, device error) shuts the configured model down. `job.wait()` only
times out; a failed job reports through `completion_info.exception`. After `__exit__` the object
is gone: every method raises AttributeError.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ml_target.hailo.emulator.buffers import frame_size
from ml_target.hailo.emulator.device import ModelState, SimulatedDevice
from ml_target.hailo.emulator.exceptions import (
    ExceptionWrapper,
    HailoRTException,
    Status,
    StatusError,
)
from ml_target.hailo.emulator.infer_model import pick
from ml_target.hailo.emulator.jobs import Frame, Job

if TYPE_CHECKING:
    from typing import Self

HAILO_SCHEDULER_PRIORITY_MAX = 31


class AsyncInferJob:
    """Handle of one `run_async` call."""

    def __init__(self, job: Job) -> None:
        self._job = job

    def wait(self, timeout_ms: int) -> None:
        """Wait for the job, then for its callback, each up to `timeout_ms` (HailoRT's worst case 2x)."""
        seconds = timeout_ms / 1000.0
        with ExceptionWrapper():
            for event in (self._job.done, self._job.callback_done):
                if not event.wait(seconds):
                    raise StatusError(Status.HAILO_TIMEOUT,
                                      f"Waiting for async job to finish has failed with timeout ({timeout_ms}ms)")


class _Impl:
    """The C++ side of a configured model; the public wrapper drops it at `__exit__`."""

    def __init__(self, device: SimulatedDevice, model: ModelState) -> None:
        self.device = device
        self.model = model

    def require_scheduler(self, what: str) -> None:
        if not self.model.scheduled:
            raise StatusError(Status.HAILO_INVALID_OPERATION, f"Cannot {what}: the core-op scheduler is not enabled")


class ConfiguredInferModel:
    """A configured model: bindings, async inference, scheduler parameters."""

    class Bindings:
        """One frame's buffers."""

        class InferStream:
            def __init__(self, name: str) -> None:
                self._name = name
                self._buffer: np.ndarray | None = None

            def set_buffer(self, buffer: np.ndarray) -> None:
                if not isinstance(buffer, np.ndarray):
                    raise TypeError("set_buffer(): incompatible function arguments (numpy array expected)")
                if not buffer.flags.c_contiguous:
                    raise HailoRTException("Buffer must be C_CONTIGUOUS")
                self._buffer = buffer

            def get_buffer(self, tf_format: bool | None = False) -> np.ndarray | None:
                return self._buffer

        def __init__(self, input_names: list[str], output_names: list[str]) -> None:
            self._input_names = input_names
            self._output_names = output_names
            self._inputs: dict[str, ConfiguredInferModel.Bindings.InferStream] = {}
            self._outputs: dict[str, ConfiguredInferModel.Bindings.InferStream] = {}

        def input(self, name: str = "") -> InferStream:
            with ExceptionWrapper():
                name = pick(self._input_names, name, "input")
            return self._inputs.setdefault(name, self.InferStream(name))

        def output(self, name: str = "") -> InferStream:
            with ExceptionWrapper():
                name = pick(self._output_names, name, "output")
            return self._outputs.setdefault(name, self.InferStream(name))

        def get(self) -> ConfiguredInferModel.Bindings:
            return self

    def __init__(self, model: ModelState, infer_model) -> None:
        device = infer_model._vdevice.card
        self._configured_infer_model: _Impl | None = _Impl(device, model)
        self._input_names = infer_model.input_names
        self._output_names = infer_model.output_names
        self._edges = {e.name: e for e in model.desc.edges}
        self._infer_model = infer_model
        self._finalizer = weakref.finalize(self, device.shutdown, model)
        self._finalizer.atexit = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc_value, traceback) -> None:
        self._finalizer()
        self._configured_infer_model = None

    def _impl(self) -> _Impl:
        impl = self._configured_infer_model
        if impl is None:
            raise AttributeError("'NoneType' object has no attribute (the ConfiguredInferModel was exited)")
        return impl

    def activate(self) -> None:
        impl = self._impl()
        with ExceptionWrapper():
            if impl.model.scheduled:
                raise StatusError(Status.HAILO_INVALID_OPERATION,
                                  "Manually activate a core-op is not allowed when the core-op scheduler is active!")
            impl.device.activate(impl.model)

    def deactivate(self) -> None:
        impl = self._impl()
        with ExceptionWrapper():
            if impl.model.scheduled:
                raise StatusError(Status.HAILO_INVALID_OPERATION,
                                  "Manually deactivate a core-op is not allowed when the core-op scheduler is active!")
            impl.device.deactivate(impl.model)

    def create_bindings(self, input_buffers: dict[str, np.ndarray] | None = None,
                        output_buffers: dict[str, np.ndarray] | None = None) -> Bindings:
        self._impl()
        bindings = self.Bindings(self._input_names, self._output_names)
        for name, buffer in (input_buffers or {}).items():
            bindings.input(name).set_buffer(buffer)
        for name, buffer in (output_buffers or {}).items():
            bindings.output(name).set_buffer(buffer)
        return bindings

    def wait_for_async_ready(self, timeout_ms: int = 1000, frames_count: int = 1) -> None:
        impl = self._impl()
        with ExceptionWrapper():
            impl.device.wait_ready(impl.model, frames_count, timeout_ms / 1000.0)

    def run(self, bindings: list[Bindings], timeout: int) -> None:
        """As in 4.23 Python: `run_async` + `job.wait(timeout)`, without waiting for readiness."""
        self.run_async(bindings).wait(timeout)

    def run_async(self, bindings: list[Bindings], callback: Callable[..., Any] | None = None) -> AsyncInferJob:
        impl = self._impl()
        try:
            frames_data = [self._frame_buffers(b) for b in bindings]
            job = Job(len(frames_data), callback, frames_data)
            frames = [Frame(job, ins, outs) for ins, outs in frames_data]
            impl.device.submit(impl.model, frames)
        except StatusError as error:
            impl.device.shutdown(impl.model)
            with ExceptionWrapper():
                raise error from None
        return AsyncInferJob(job)

    def _frame_buffers(self, bindings: Bindings) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Validate one binding as libhailort does at submission: present, and the right byte count."""
        types = self._configured_infer_model.model.user_types
        result: list[dict[str, np.ndarray]] = []
        for kind, names, get in (("input", self._input_names, bindings.input),
                                 ("output", self._output_names, bindings.output)):
            buffers = {}
            for name in names:
                buffer = get(name).get_buffer()
                if buffer is None:
                    raise StatusError(Status.HAILO_NOT_FOUND, f"Couldnt find {kind} buffer for '{name}'")
                expected = frame_size(self._edges[name], types[name])
                if buffer.nbytes != expected:
                    raise StatusError(Status.HAILO_INVALID_OPERATION,
                                      f"{kind.capitalize()} buffer size {buffer.nbytes} is different than expected "
                                      f"{expected} for {kind} '{name}'")
                buffers[name] = buffer
            result.append(buffers)
        return result[0], result[1]

    def set_scheduler_timeout(self, timeout_ms: int) -> None:
        impl = self._impl()
        with ExceptionWrapper():
            impl.require_scheduler("set scheduler timeout")
            impl.device.set_scheduler_params(impl.model, timeout_s=max(0, timeout_ms) / 1000.0)

    def set_scheduler_threshold(self, threshold: int) -> None:
        impl = self._impl()
        with ExceptionWrapper():
            impl.require_scheduler("set scheduler threshold")
            if impl.model.desc.multi_context and threshold > impl.model.batch_size:
                raise StatusError(Status.HAILO_INVALID_ARGUMENT,
                                  f"Threshold {threshold} must not exceed the batch size {impl.model.batch_size} "
                                  "of a multi-context network")
            impl.device.set_scheduler_params(impl.model, threshold=max(0, threshold))

    def set_scheduler_priority(self, priority: int) -> None:
        impl = self._impl()
        with ExceptionWrapper():
            impl.require_scheduler("set scheduler priority")
            if not 0 <= priority <= HAILO_SCHEDULER_PRIORITY_MAX:
                raise StatusError(Status.HAILO_INVALID_ARGUMENT, f"Priority {priority} is outside 0..31")
            impl.device.set_scheduler_params(impl.model, priority=priority)

    def get_async_queue_size(self) -> int:
        return self._impl().model.queue_size

    def shutdown(self) -> None:
        impl = self._impl()
        impl.device.shutdown(impl.model)
