"""The simulated Hailo device: one per process, one network burst at a time, on its own thread.

Configured models queue frames here. The device thread picks the next model with HailoRT's
ROUND_ROBIN decision (`scheduler.py`), or the manually activated model when there is no scheduler,
takes up to a batch of its frames, computes them, and holds the device for the modelled burst
time `a + b*B` (+ a switch penalty when the network changes), minus the CPU time compute already
took. Results are quantised into the callers' buffers and jobs complete on each model's callback
thread. Faults, profiles and counters are steered through `controller.DeviceController`.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ml_target.hailo.emulator.buffers import read_input, to_user_format, write_output
from ml_target.hailo.emulator.compute import ComputeFn
from ml_target.hailo.emulator.counters import Counters
from ml_target.hailo.emulator.exceptions import Status, StatusError
from ml_target.hailo.emulator.faults import Faults
from ml_target.hailo.emulator.hef_format import HefDesc
from ml_target.hailo.emulator.jobs import CallbackWorker, Frame
from ml_target.hailo.emulator.scheduler import Candidate, RoundRobin

LOG = logging.getLogger("hailort")

PROFILES = ("hailo8", "hailo8l", "none")
ARCHITECTURES = ("hailo8", "hailo8l", "hailo8_a0")  # A0: a pre-production Hailo-8 that runs no HEF
SWITCH_PENALTY_MS = 0.5
DEVICE_ID = "0000:01:00.0"
LIBRARY_VERSION = "4.23.0"
SHUTDOWN_WAIT_S = 10.0


_keys = itertools.count(1)


def _idle_optimisation_default() -> bool:
    """HailoRT reads `HAILO_DISABLE_IDLE_OPT` from the environment; so does the emulator."""
    return os.environ.get("HAILO_DISABLE_IDLE_OPT", "").lower() not in ("1", "true", "yes", "on")


@dataclass(eq=False)
class ModelState:
    """One configured model as the device sees it."""

    desc: HefDesc
    compute: ComputeFn
    batch_size: int
    queue_size: int
    scheduled: bool
    generation: int
    user_types: dict[str, str]
    priority: int = 16
    threshold: int = 0
    timeout_s: float = 0.0
    key: int = field(default_factory=lambda: next(_keys))
    pending: deque = field(default_factory=deque)
    in_flight: int = 0
    last_run: float = field(default_factory=time.monotonic)
    aborted: int = 0
    callbacks: CallbackWorker | None = None

    @property
    def network(self) -> str:
        return self.desc.network_group

    @property
    def occupied(self) -> int:
        return len(self.pending) + self.in_flight


class SimulatedDevice:
    """Process-global device state. All mutable state is guarded by `self.cond`."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.faults = Faults()
        self.counters = Counters()
        self.profile = "hailo8"
        self.architecture = "hailo8"
        self.idle_optimisation = _idle_optimisation_default()
        self.driver_version = LIBRARY_VERSION
        self.vanished = False
        self.generation = 0
        self._holder: list | None = None  # [group_id, refcount]
        self._models: dict[int, ModelState] = {}
        self._rr = RoundRobin()
        self._active: int | None = None
        self._current: int | None = None
        self._interrupt = threading.Event()
        self._thread: threading.Thread | None = None

    # -- physical device ownership -------------------------------------------------------------

    def acquire(self, group_id: str) -> int:
        """Take (or share, for the same non-UNIQUE group) the one physical device; returns its generation."""
        with self.cond:
            if self.vanished:
                raise StatusError(Status.HAILO_OUT_OF_PHYSICAL_DEVICES,
                                  "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0")
            if self.driver_version != LIBRARY_VERSION:
                raise StatusError(Status.HAILO_INVALID_DRIVER_VERSION,
                                  f"Driver version ({self.driver_version}) is different from library version "
                                  f"({LIBRARY_VERSION})")
            if self._holder is None:
                self._holder = [group_id, 1]
            elif group_id != "UNIQUE" and self._holder[0] == group_id:
                self._holder[1] += 1
            else:
                raise StatusError(Status.HAILO_OUT_OF_PHYSICAL_DEVICES,
                                  "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0")
            return self.generation

    def release(self, generation: int) -> None:
        with self.cond:
            if generation == self.generation and self._holder is not None:
                self._holder[1] -= 1
                if self._holder[1] <= 0:
                    self._holder = None

    def check_alive(self, generation: int) -> None:
        """Calls on a vanished device fail like a lost PCIe device; stale handles after a restore
        find their connection closed."""
        if self.vanished:
            raise StatusError(Status.HAILO_DRIVER_OPERATION_FAILED, "Device is not responding (emulated device vanished)")
        if generation != self.generation:
            raise StatusError(Status.HAILO_COMMUNICATION_CLOSED, "Device handle belongs to a device that was reset")

    # -- configured models ---------------------------------------------------------------------

    def register(self, model: ModelState) -> None:
        with self.cond:
            self.check_alive(model.generation)
            model.callbacks = CallbackWorker(model.network)
            self._models[model.key] = model
            if model.scheduled:
                self._rr.add(model.key, model.priority)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hailo-emulated-device", daemon=True)
                self._thread.start()

    def set_scheduler_params(self, model: ModelState, *, priority: int | None = None, threshold: int | None = None,
                             timeout_s: float | None = None) -> None:
        with self.cond:
            self._check_usable(model)
            if priority is not None:
                model.priority = priority
                self._rr.set_priority(model.key, priority)
            if threshold is not None:
                model.threshold = threshold
            if timeout_s is not None:
                model.timeout_s = timeout_s
            self.cond.notify_all()

    def activate(self, model: ModelState) -> None:
        with self.cond:
            self._check_usable(model)
            if self._active is not None and self._active != model.key:
                raise StatusError(Status.HAILO_INVALID_OPERATION, "Failed to activate network group: a network is already activated")
            self._active = model.key
            self.cond.notify_all()

    def deactivate(self, model: ModelState) -> None:
        with self.cond:
            if self._active == model.key:
                self._active = None

    def _check_usable(self, model: ModelState) -> None:
        self.check_alive(model.generation)
        if model.aborted:
            raise StatusError(model.aborted, "The configured model was shut down")

    def submit(self, model: ModelState, frames: list[Frame]) -> None:
        """Queue a job's frames, or raise the status that makes the caller shut the model down."""
        with self.cond:
            self._check_usable(model)
            injected = self.faults.take_run_async(model.network)
            if injected:
                raise StatusError(injected, "Injected run_async failure")
            if not model.scheduled and self._active != model.key:
                raise StatusError(Status.HAILO_STREAM_NOT_ACTIVATED,
                                  "Stream is not activated: without a scheduler the model must be activated")
            if model.occupied + len(frames) > model.queue_size:
                raise StatusError(Status.HAILO_QUEUE_IS_FULL,
                                  f"Cannot push {len(frames)} requests: the queue of {model.network} is full "
                                  f"({model.occupied}/{model.queue_size}); call wait_for_async_ready first")
            model.pending.extend(frames)
            self.cond.notify_all()

    def wait_ready(self, model: ModelState, frames_count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while True:
                self._check_usable(model)
                if model.occupied + frames_count <= model.queue_size:
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise StatusError(Status.HAILO_TIMEOUT,
                                      f"Got timeout in `wait_for_async_ready` ({timeout_s * 1000:.0f}ms) - the edge "
                                      f"'{model.desc.inputs[0].name}' could not receive {frames_count} transfer-requests")
                self.cond.wait(remaining)

    def shutdown(self, model: ModelState, status: int = Status.HAILO_STREAM_ABORT) -> None:
        """Abort the model: queued frames fail, in-flight ones finish failed, callbacks drain."""
        with self.cond:
            if model.key not in self._models:
                return
            if not model.aborted:
                model.aborted = status
            self._abort_pending(model, model.aborted)
            self._rr.remove(model.key)
            if self._active == model.key:
                self._active = None
            self.cond.notify_all()
            if threading.current_thread() is not self._thread:  # a finalizer may run on the device thread
                self.cond.wait_for(lambda: model.in_flight == 0, SHUTDOWN_WAIT_S)
            del self._models[model.key]
            if model.in_flight == 0:
                model.callbacks.close()

    def _abort_pending(self, model: ModelState, status: int) -> None:
        while model.pending:
            self._finish_frame(model, model.pending.popleft(), status)

    def _finish_frame(self, model: ModelState, frame: Frame, status: int) -> None:
        if frame.job.frame_done(status):
            model.callbacks.post(frame.job, model.aborted or frame.job.status)

    # -- faults that act on the whole device -----------------------------------------------------

    def vanish(self) -> None:
        with self.cond:
            self.vanished = True
            self._invalidate(Status.HAILO_DRIVER_OPERATION_FAILED)

    def restore(self) -> None:
        with self.cond:
            self.vanished = False
            self._interrupt.clear()
            self.cond.notify_all()

    def _invalidate(self, status: int) -> None:
        self.generation += 1
        self._holder = None
        self._active = None
        for model in self._models.values():
            if not model.aborted:
                model.aborted = status
            self._abort_pending(model, status)
            self._rr.remove(model.key)
        self._interrupt.set()
        self.cond.notify_all()

    # -- the device thread -----------------------------------------------------------------------

    def _choose(self, now: float) -> tuple[ModelState | None, float | None]:
        """The model to run next (or None) and, if none, when a timeout may make one ready."""
        if self.vanished:
            return None, None
        if self._active is not None:
            active = self._models.get(self._active)
            if active is not None and active.pending and not active.aborted:
                return active, None
        candidates = {
            m.key: Candidate(m.key, m.priority, len(m.pending), m.threshold, m.timeout_s, m.last_run)
            for m in self._models.values()
            if m.scheduled and not m.aborted
        }
        key = self._rr.choose(candidates, now, self.idle_optimisation)
        if key is not None:
            return self._models[key], None
        return None, RoundRobin.next_timeout(candidates)

    def _run(self) -> None:
        while True:
            with self.cond:
                while True:
                    now = time.monotonic()
                    model, wake_at = self._choose(now)
                    if model is not None:
                        break
                    self.cond.wait(None if wake_at is None else max(0.0, wake_at - now))
                frames = [model.pending.popleft() for _ in range(min(model.batch_size, len(model.pending)))]
                model.in_flight += len(frames)
                model.last_run = now
                switched = self._current != model.key
                self._current = model.key
                injected = self.faults.take_burst(model.network)
                stall_s = self.faults.take_stall(model.network)
                profile = self.profile
            try:
                self._burst(model, frames, switched, injected, stall_s, profile)
            except Exception:
                LOG.exception("Emulated device failed a burst of %s", model.network)
                with self.cond:
                    self._complete(model, frames, [Status.HAILO_INTERNAL_FAILURE] * len(frames))

    def _burst(self, model: ModelState, frames: list[Frame], switched: bool, injected: int | None,
               stall_s: float, profile: str) -> None:
        """Compute and copy out first, then hold the device for what is left of the modelled time;
        frames complete (and callbacks fire) only once that time has passed."""
        started = time.perf_counter()
        statuses = [injected] * len(frames) if injected else self._compute_and_deliver(model, frames)
        host_s = time.perf_counter() - started
        a, b = model.desc.timing(profile) if profile != "none" else (0.0, 0.0)
        busy_ms = a + b * len(frames)
        switch_ms = SWITCH_PENALTY_MS if profile != "none" else 0.0
        device_s = (busy_ms + (switch_ms if switched else 0.0)) / 1000.0
        self._interrupt.wait(max(0.0, device_s - host_s) + stall_s)
        with self.cond:
            lost = Status.HAILO_DRIVER_OPERATION_FAILED if self.vanished else model.aborted
            if lost:
                statuses = [lost] * len(frames)
            self.counters.record(model.network, len(frames), busy_ms, host_s * 1000.0,
                                 switch_ms if switched else None, stall_s, any(statuses))
            self._complete(model, frames, statuses)

    def _complete(self, model: ModelState, frames: list[Frame], statuses: list[int]) -> None:
        """Finish a burst's frames (call under the lock)."""
        for frame, frame_status in zip(frames, statuses):
            self._finish_frame(model, frame, frame_status)
        model.in_flight -= len(frames)
        if model.in_flight == 0 and model.key not in self._models:
            model.callbacks.close()  # shut down while this burst ran: its callbacks were the last
        self.cond.notify_all()

    def _compute_and_deliver(self, model: ModelState, frames: list[Frame]) -> list[int]:
        """Per-frame statuses after computing the burst and copying results into the callers' buffers."""
        try:
            outputs = self._compute(model, frames)
        except StatusError as exc:
            LOG.error("Emulated burst of %s failed: %s", model.network, exc)
            return [exc.code] * len(frames)
        except Exception:
            LOG.exception("Emulated compute of %s failed", model.network)
            return [Status.HAILO_INTERNAL_FAILURE] * len(frames)
        statuses = []
        for i, frame in enumerate(frames):
            try:
                for edge in model.desc.outputs:
                    write_output(frame.outputs[edge.name], edge, model.user_types[edge.name], outputs[edge.name][i])
                statuses.append(0)
            except Exception:
                LOG.exception("Writing the output of %s failed", model.network)
                statuses.append(Status.HAILO_INTERNAL_FAILURE)
        return statuses

    def _compute(self, model: ModelState, frames: list[Frame]) -> dict[str, np.ndarray]:
        """Run the burst's compute and convert the outputs to each edge's user format (all of the
        host work, so that the modelled device time can be slept net of it)."""
        inputs = {
            edge.name: np.stack([read_input(f.inputs[edge.name], edge, model.user_types[edge.name]) for f in frames])
            for edge in model.desc.inputs
        }
        outputs = model.compute(inputs)
        converted = {}
        for edge in model.desc.outputs:
            got = outputs.get(edge.name)
            expected = (len(frames), *edge.shape)
            if got is None or tuple(np.shape(got)) != expected:
                raise StatusError(Status.HAILO_INTERNAL_FAILURE,
                                  f"compute returned {None if got is None else np.shape(got)} for {edge.name}, "
                                  f"expected {expected}")
            converted[edge.name] = to_user_format(np.asarray(got), edge, model.user_types[edge.name])
        return converted

    # -- controller support ------------------------------------------------------------------------

    def snapshot(self) -> dict:
        with self.cond:
            snap = self.counters.snapshot()
            snap.update(profile=self.profile, architecture=self.architecture, vanished=self.vanished,
                        configured_models=len(self._models))
            return snap

    def burst_log(self) -> list[tuple[str, int]]:
        with self.cond:
            return list(self.counters.log)

    def reset(self) -> None:
        with self.cond:
            self.faults.clear()
            self.counters = Counters()
            self.profile = "hailo8"
            self.architecture = "hailo8"
            self.driver_version = LIBRARY_VERSION
            self.idle_optimisation = _idle_optimisation_default()
            self._current = None


_device: SimulatedDevice | None = None
_device_lock = threading.Lock()


def simulated_device() -> SimulatedDevice:
    """The process-global device, created on first use."""
    global _device
    with _device_lock:
        if _device is None:
            _device = SimulatedDevice()
        return _device
