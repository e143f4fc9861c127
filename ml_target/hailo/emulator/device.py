"""The simulated Hailo devices: one emulated host with N cards, each running one network burst at a
time on its own thread.

Configured models queue frames on their card. The card's thread picks the next model with
HailoRT's ROUND_ROBIN decision (`scheduler.py`), or the manually activated model when there is no
scheduler, takes up to a batch of its frames, computes them, and holds the card for the modelled
burst time `a + b*B` (+ a switch penalty when the network changes), minus the CPU time compute
already took. Results are quantised into the callers' buffers and jobs complete on each model's
callback thread. The cards of the host (`Machine`) have their own chip, timing profile, faults,
counters and driver; they are steered through `controller.DeviceController`.

Which HailoRT line may open a card follows HailoRT itself: 4.x drives Hailo-8/8L only ("Hailo1X
Devices are only supported in versions 5.0.0 and above", vdevice.cpp @ v4.23.0) and 5.x the
Hailo-10H only ("Hailo8 devices are only supported in versions 4.x.x and earlier", pcie_device.cpp
@ v5.2.0); the emulated `hailo_platform` module of each line passes its line to every call here.
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

PROFILES = ("hailo8", "hailo8l", "hailo10h", "none")
ARCHITECTURES = ("hailo8", "hailo8l", "hailo8_a0", "hailo10h")  # A0: a pre-production Hailo-8 that runs no HEF
SWITCH_PENALTY_MS = 0.5
DEVICE_ID = "0000:01:00.0"
# The emulated library of each HailoRT line; its driver (hailo_pci 4.x, hailo1x_pci 5.x) must match.
LIBRARY_VERSIONS = {4: "4.23.0", 5: "5.3.0"}
LIBRARY_VERSION = LIBRARY_VERSIONS[4]
LINE_OF_ARCH = {"hailo8": 4, "hailo8l": 4, "hailo8_a0": 4, "hailo10h": 5}
SHUTDOWN_WAIT_S = 10.0


def device_id(index: int) -> str:
    """PCIe BDF of the `index`-th emulated card: 0000:01:00.0, 0000:02:00.0, ..."""
    return f"0000:{index + 1:02x}:00.0"


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
    constant: dict | None = None  # outputs of a compute that reads no input, in the user formats

    @property
    def network(self) -> str:
        return self.desc.network_group

    @property
    def occupied(self) -> int:
        return len(self.pending) + self.in_flight


class SimulatedDevice:
    """One emulated card. All mutable state is guarded by `self.cond`."""

    def __init__(self, device_id: str = DEVICE_ID, architecture: str = "hailo8") -> None:
        self.device_id = device_id
        self.cond = threading.Condition()
        self.faults = Faults()
        self.counters = Counters()
        self.profile = "hailo8"
        self.architecture = architecture
        self.idle_optimisation = _idle_optimisation_default()
        self.driver_version = LIBRARY_VERSIONS[self.line]
        self.sessions_opened = 0  # control sessions (a Device per call on a Hailo-10H opens an RPC session)
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

    @property
    def line(self) -> int:
        """The HailoRT major version that drives this chip (4 for Hailo-8/8L, 5 for Hailo-10H)."""
        return LINE_OF_ARCH[self.architecture]

    def check_line(self, line: int) -> None:
        """Refuse a library of the other HailoRT line, with HailoRT's own message."""
        if line == self.line:
            return
        if line == 4:
            raise StatusError(Status.HAILO_NOT_SUPPORTED,
                              "Hailo1X Devices are only supported in versions 5.0.0 and above. ")
        raise StatusError(Status.HAILO_NOT_SUPPORTED, "Hailo8 devices are only supported in versions 4.x.x and earlier")

    def acquire(self, group_id: str, line: int = 4) -> int:
        """Take (or share, for the same non-UNIQUE group) this card; returns its generation."""
        with self.cond:
            if self.vanished:
                raise StatusError(Status.HAILO_OUT_OF_PHYSICAL_DEVICES,
                                  "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0")
            self.check_line(line)
            library = LIBRARY_VERSIONS[line]
            if self.driver_version != library:
                raise StatusError(Status.HAILO_INVALID_DRIVER_VERSION,
                                  f"Driver version ({self.driver_version}) is different from library version "
                                  f"({library})")
            if self._holder is None:
                self._holder = [group_id, 1]
            elif group_id != "UNIQUE" and self._holder[0] == group_id:
                self._holder[1] += 1
            else:
                raise StatusError(Status.HAILO_OUT_OF_PHYSICAL_DEVICES,
                                  "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0")
            return self.generation

    def held_by(self, group_id: str) -> bool:
        """Whether a VDevice of this (non-UNIQUE) group holds the card."""
        with self.cond:
            return group_id != "UNIQUE" and self._holder is not None and self._holder[0] == group_id

    def release(self, generation: int) -> None:
        with self.cond:
            if generation == self.generation and self._holder is not None:
                self._holder[1] -= 1
                if self._holder[1] <= 0:
                    self._holder = None

    @property
    def lost_status(self) -> int:
        """What calls on a vanished card fail with: the driver ioctl error of a lost PCIe device
        (36) under 4.x; under 5.x the driver maps ENXIO to 96 HAILO_DEVICE_NOT_CONNECTED
        (driver_os_specific.cpp @ v5.2.0)."""
        return Status.HAILO_DRIVER_OPERATION_FAILED if self.line == 4 else Status.HAILO_DEVICE_NOT_CONNECTED

    def check_alive(self, generation: int) -> None:
        """Calls on a vanished card fail like a lost PCIe device; stale handles after a restore
        find their connection closed (4.x), or their RPC session gone (a Hailo-10H: 77)."""
        if self.vanished:
            raise StatusError(self.lost_status, "Device is not responding (emulated device vanished)")
        if generation != self.generation:
            if self.line == 5:
                raise StatusError(Status.HAILO_RPC_FAILED, "RPC session belongs to a device that was reset")
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
                self._thread = threading.Thread(target=self._run, name=f"hailo-emulated-device-{self.device_id}",
                                                daemon=True)
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
            self._invalidate(self.lost_status)

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
            lost = self.lost_status if self.vanished else model.aborted
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
        host work, so that the modelled device time can be slept net of it). A compute that reads
        no input (`ConstantCompute`) is converted once per configured model."""
        if not getattr(model.compute, "reads_inputs", True):
            if model.constant is None:
                blank = {edge.name: np.zeros((1, *edge.shape), np.float32) for edge in model.desc.inputs}
                model.constant = self._convert(model, model.compute(blank), 1)
            return {name: np.broadcast_to(v, (len(frames), *v.shape[1:])) for name, v in model.constant.items()}
        inputs = {
            edge.name: np.stack([read_input(f.inputs[edge.name], edge, model.user_types[edge.name]) for f in frames])
            for edge in model.desc.inputs
        }
        return self._convert(model, model.compute(inputs), len(frames))

    def _convert(self, model: ModelState, outputs: dict[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
        converted = {}
        for edge in model.desc.outputs:
            got = outputs.get(edge.name)
            expected = (batch, *edge.shape)
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
            snap.update(device_id=self.device_id, profile=self.profile, architecture=self.architecture,
                        vanished=self.vanished, configured_models=len(self._models),
                        sessions_opened=self.sessions_opened)
            return snap

    def burst_log(self) -> list[tuple[str, int]]:
        with self.cond:
            return list(self.counters.log)

    def reset(self, architecture: str = "hailo8") -> None:
        """Defaults again (faults, counters, timing, driver); open handles keep working."""
        with self.cond:
            self.faults.clear()
            self.counters = Counters()
            self.architecture = architecture
            self.profile = architecture if architecture in PROFILES else "hailo8"
            self.driver_version = LIBRARY_VERSIONS[self.line]
            self.idle_optimisation = _idle_optimisation_default()
            self.sessions_opened = 0
            self._current = None

    def retire(self) -> None:
        """Taken out of the host: handles die as on a lost card and `scan()` no longer lists it."""
        with self.cond:
            self._invalidate(self.lost_status)
            self._interrupt.clear()


class Machine:
    """The emulated host: its cards in `scan()` order (HailoRT lists them in directory order, not
    sorted), and the defaults `reset()` returns to. Cards taken out are kept for reuse, so their
    threads do not pile up over a test session."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.default_chips: tuple[str, ...] = ("hailo8",)
        self.devices: list[SimulatedDevice] = [SimulatedDevice(device_id(0), "hailo8")]
        self._spare: list[SimulatedDevice] = []

    def set_devices(self, chips: list[str] | tuple[str, ...], ids: list[str] | tuple[str, ...] | None = None) -> None:
        """Cards of these chips (ids 0000:01:00.0, ... unless given). A card whose id and chip stay
        the same is left as it is (open handles keep working); any other is reset."""
        for chip in chips:
            if chip not in ARCHITECTURES:
                raise ValueError(f"unknown architecture {chip!r}; use one of {ARCHITECTURES}")
        ids = list(ids) if ids is not None else [device_id(i) for i in range(len(chips))]
        if not chips or len(ids) != len(chips) or len(set(ids)) != len(ids):
            raise ValueError("give at least one chip and one distinct id per chip")
        with self.lock:
            old = {d.device_id: d for d in self.devices}
            cards: list[SimulatedDevice | None] = []
            for chip, identity in zip(chips, ids):
                current = old.pop(identity, None)
                if current is not None and current.architecture != chip:
                    current.retire()
                    self._spare.append(current)
                    current = None
                cards.append(current)
            for gone in old.values():
                gone.retire()
                self._spare.append(gone)
            for position, (chip, identity) in enumerate(zip(chips, ids)):
                if cards[position] is not None:
                    continue
                card = self._spare.pop() if self._spare else SimulatedDevice(identity, chip)
                with card.cond:
                    card.device_id = identity
                    card.vanished = False
                card.reset(chip)
                cards[position] = card
            self.devices = [card for card in cards if card is not None]

    def get(self, identity: str) -> SimulatedDevice | None:
        with self.lock:
            return next((d for d in self.devices if d.device_id == identity), None)

    def scan(self) -> list[str]:
        with self.lock:
            return [d.device_id for d in self.devices if not d.vanished]

    def cards(self) -> list[SimulatedDevice]:
        with self.lock:
            return list(self.devices)

    def reset(self) -> None:
        """The default cards again, each with default settings."""
        self.set_devices(list(self.default_chips))
        for card in self.cards():
            card.reset(card.architecture)


_machine: Machine | None = None
_machine_lock = threading.Lock()


def machine() -> Machine:
    """The process-global emulated host, created on first use."""
    global _machine
    with _machine_lock:
        if _machine is None:
            _machine = Machine()
        return _machine


def simulated_device() -> SimulatedDevice:
    """The first card of the emulated host."""
    return machine().cards()[0]
