"""One configured network on the device: a bounded queue, a submitter thread and completions.

Callers `await infer(frame)` on the event loop. Frames go into a per-network queue; one submitter
thread per network takes up to `batch_size` of them, binds them and submits them as ONE
`run_async` (N bindings = N frames), after `wait_for_async_ready(frames_count=N)`. Only that thread
submits to its configured model, so the ready/submit pair is never raced (hailort.md §7) and there
is no global device lock. HailoRT's callback thread resolves each caller's future with that
caller's own output arrays.

Batching policy. At most `MAX_BURSTS_IN_FLIGHT` bursts are outstanding: one running, one queued
behind it, so the device never waits for the host, and frames that do not fit stay in our queue
where they can still join a fuller burst. A burst of B frames costs `a + b*B` on the device:
- multi-context networks (large `a`: contexts reloaded per burst) fill bursts. A partial burst is
  submitted only when nothing of this network is in flight, `IDLE_GATHER_S` after the later of
  its oldest frame's arrival and the last completion, so callers whose burst just completed can
  join; while a burst is in flight the queue fills up instead. FIFO order bounds every frame's
  wait to the bursts ahead of it. Callers announce themselves before their host work (decoding)
  through `announce()`; while an announced caller has not yet queued its frame, an idle network
  waits up to `ANNOUNCED_GATHER_S` for it, so two requests in flight (Immich's default job
  concurrency) share one burst instead of paying the context reload once each.
- single-context networks (`a` about 0) gain nothing from full bursts, so frames go as soon as
  the in-flight limit allows, keeping the device busy.
- during a search session (`ml_target.hailo.sessions`) background networks also ask the shared
  gate before each burst, which leaves the device idle for the next search.

Recovery: a failed submit or completion shuts the configured model down (HailoRT semantics). The
burst's callers get `DeviceError`; the submitter asks its host (the runtime) for a freshly
configured model and carries on. Device-level failures and repeated model failures are escalated
to the host, which detaches every network, rebuilds the VDevice and attaches them again.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ml_target.errors import (
    DeviceError,
    DeviceTimeout,
    Overloaded,
    ServiceUnavailable,
    WorkerError,
)
from ml_target.hailo import faults
from ml_target.hailo.frames import check_frame, output_buffers
from ml_target.hailo.sessions import SearchSessions, is_interactive
from ml_target.hailo.types import EdgeInfo

log = logging.getLogger(__name__)

MAX_BURSTS_IN_FLIGHT = 2
IDLE_GATHER_S = 0.003
ANNOUNCED_GATHER_S = 0.010  # about one CLIP request's host work (decode + crop) on a small CPU
READY_POLL_MS = 100
TICK_S = 0.05
ESCALATE_AFTER = 3
RECONFIGURE_BACKOFF_S = (0.05, 0.2, 1.0, 5.0)


class Host(Protocol):
    """What a network needs from the runtime that owns the VDevice."""

    def configure(self, network: DeviceNetwork) -> Any:
        """A newly configured model (ConfiguredInferModel) for `network` on the current VDevice."""

    def release_configured(self, configured: Any) -> None:
        """Shut down and drop a configured model; never raises."""

    def device_failed(self, reason: str) -> None:
        """Start rebuilding the VDevice in the background (idempotent while a rebuild runs)."""

    def check_available(self) -> None:
        """Raise ServiceUnavailable while the device is down."""


@dataclass(frozen=True)
class Limits:
    """Per-network bounds taken from the settings."""

    request_timeout_s: float
    max_queued_frames: int
    queue_wait_s: float


@dataclass(eq=False)
class _Request:
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop
    enqueued: float
    abandoned: bool = False
    retried: bool = False  # resubmitted once after a re-configure caught it in flight


@dataclass(eq=False)
class _Announcement:
    """One caller that said it will queue frames soon; `arrived` once it has."""

    arrived: bool = False


@dataclass(eq=False)
class _Burst:
    id: int
    requests: list[_Request]
    bindings: list[Any]
    generation: int
    submitted: float = 0.0
    granted_at: float | None = None  # set while the burst holds a background grant of the sessions gate


@dataclass
class _Stats:
    frames: int = 0
    bursts: int = 0
    burst_sizes: Counter = field(default_factory=Counter)
    busy_s: float = 0.0
    queue_wait_s: float = 0.0
    max_queue_wait_s: float = 0.0
    errors: int = 0
    timeouts: int = 0
    overloaded: int = 0
    reconfigures: int = 0
    retried: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


def _settle(request: _Request, result: dict[str, np.ndarray] | None = None, error: BaseException | None = None) -> None:
    """Resolve a caller's future from any thread; a caller that gave up is simply skipped."""

    def apply() -> None:
        if request.future.done():
            return
        if error is not None:
            request.future.set_exception(error)
        else:
            request.future.set_result(result)

    try:
        request.loop.call_soon_threadsafe(apply)
    except RuntimeError:
        pass  # the caller's event loop is closed: nobody is waiting any more


class DeviceNetwork:
    """A configured HEF: implements the `Network` protocol of `ml_target.hailo.types`."""

    def __init__(
        self,
        *,
        name: str,
        group: str,
        path: Path,
        inputs: tuple[EdgeInfo, ...],
        outputs: tuple[EdgeInfo, ...],
        batch_size: int,
        priority: int,
        limits: Limits,
        host: Host,
        fill_bursts: bool = True,
        raw_outputs: bool = False,
        sessions: SearchSessions | None = None,
    ) -> None:
        self.name = name
        self.group = group
        self.path = path
        self.inputs = inputs
        self.outputs = outputs
        self.batch_size = batch_size
        self.priority = priority
        self.fill_bursts = fill_bursts
        self.raw_outputs = raw_outputs
        self.interactive = is_interactive(priority)
        self._sessions = sessions
        self._gated = sessions is not None and not self.interactive  # asks the sessions gate per burst
        self._limits = limits
        self._host = host
        self._cond = threading.Condition()
        self._submit_lock = threading.Lock()
        self._pending: deque[_Request] = deque()
        self._inflight: dict[int, _Burst] = {}
        self._burst_ids = itertools.count()
        self._configured: Any = None
        self._generation = 0
        self._needs_reconfigure = False
        self._detached = True
        self._closing = False
        self._streak = 0
        self._retry_at = 0.0
        self._stats = _Stats()
        self._idle_since = 0.0
        self._coming = 0  # announced callers whose first frame is not queued yet
        self._announcement: contextvars.ContextVar[_Announcement | None] = contextvars.ContextVar(
            f"announcement-{name}", default=None
        )
        self._thread = threading.Thread(target=self._serve, name=f"hailo-submit-{name}", daemon=True)
        self._thread.start()

    # ---- caller side (event loop) ----

    async def infer(self, frame: np.ndarray | Mapping[str, np.ndarray], *, timeout: float | None = None) -> dict[str, np.ndarray]:
        """Run one frame; raises FrameError (ValueError), Overloaded, DeviceTimeout, DeviceError, ServiceUnavailable."""
        inputs = check_frame(frame, self.inputs, self.name)
        self._host.check_available()
        loop = asyncio.get_running_loop()
        request = _Request(inputs, output_buffers(self.outputs), loop.create_future(), loop, time.monotonic())
        self._enqueue(request)
        deadline = self._limits.request_timeout_s if timeout is None else timeout
        try:
            return await asyncio.wait_for(request.future, deadline)
        except TimeoutError:
            request.abandoned = True
            with self._cond:
                self._stats.timeouts += 1
            raise DeviceTimeout(f"{self.name}: no result within {deadline:g} s") from None
        except asyncio.CancelledError:
            request.abandoned = True
            raise

    @contextmanager
    def announce(self) -> Iterator[None]:
        """Say, before the host work, that this request will queue frames here (module docstring).

        Frames queued inside the block (in this task or tasks it starts) count as its arrival; a
        request that ends without queueing any (no faces found, an error) withdraws on exit.
        """
        announcement = _Announcement()
        with self._cond:
            self._coming += 1
        token = self._announcement.set(announcement)
        try:
            yield
        finally:
            self._announcement.reset(token)
            with self._cond:
                self._arrived(announcement)

    def _arrived(self, announcement: _Announcement | None) -> None:
        """Under the lock: an announced caller queued its frame or gave up."""
        if announcement is not None and not announcement.arrived:
            announcement.arrived = True
            self._coming -= 1
            self._cond.notify_all()

    def _enqueue(self, request: _Request) -> None:
        with self._cond:
            if self._closing or self._detached:
                raise ServiceUnavailable(f"{self.name}: the device is not available (closed or recovering)")
            if len(self._pending) >= self._limits.max_queued_frames:
                self._stats.overloaded += 1
                raise Overloaded(
                    f"{self.name}: {len(self._pending)} frames already queued (MAX_QUEUED_FRAMES); try again later"
                )
            self._pending.append(request)
            self._arrived(self._announcement.get())
            if self.interactive and self._sessions is not None:
                self._sessions.interactive_arrived(request.enqueued)
            self._report_waiting()
            self._cond.notify_all()

    def _report_waiting(self) -> None:
        """Under the lock: tell the sessions gate when this background network's oldest frame arrived."""
        if self._gated:
            self._sessions.background_waiting(self.name, self._pending[0].enqueued if self._pending else None)

    # ---- runtime side ----

    def attach(self, configured: Any) -> None:
        """Start serving with a configured model (after load or a device rebuild)."""
        with self._cond:
            self._configured = configured
            self._generation += 1
            self._detached = False
            self._needs_reconfigure = False
            self._streak = 0
            self._retry_at = 0.0
            self._cond.notify_all()

    def detach(self, error: WorkerError) -> Any:
        """Stop serving (device lost or closing): fail queued and in-flight frames, return the old model.

        The generation changes first, without the submit lock, so a submitter blocked in
        `wait_for_async_ready` gives up within one poll instead of holding the lock until its deadline.
        """
        with self._cond:
            self._detached = True
            self._generation += 1
            self._cond.notify_all()
        with self._submit_lock, self._cond:
            old, self._configured = self._configured, None
            failed = list(self._pending) + [r for b in self._inflight.values() for r in b.requests]
            self._pending.clear()
            self._report_waiting()
            self._release_grants(list(self._inflight.values()))
            self._inflight.clear()
            self._cond.notify_all()
        for request in failed:
            _settle(request, error=error)
        return old

    def close(self) -> Any:
        """Stop the submitter thread and fail outstanding frames; return the configured model to release."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        old = self.detach(ServiceUnavailable(f"{self.name}: the runtime is closing"))
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        return old

    def describe(self) -> dict[str, Any]:
        """What the HEF presents, as read from it at load: group, context mode, every edge."""
        return {
            "hef": str(self.path),
            "network_group": self.group,
            "multi_context": self.fill_bursts,
            "inputs": [edge.describe() for edge in self.inputs],
            "outputs": [edge.describe() for edge in self.outputs],
        }

    def stats(self) -> dict[str, Any]:
        """Counters for /health and /metrics, as a plain dict (keys as `ml_target.metrics` reads them).

        `batch_sizes` counts completed bursts by size; `errors` counts model failures (each one
        re-configures the model); `busy_s` sums submit-to-completion time of bursts.
        """
        with self._cond:
            s = self._stats
            return {
                "name": self.name,
                "network_group": self.group,
                "hef": str(self.path),
                "batch_size": self.batch_size,
                "priority": self.priority,
                "state": self._state(),
                "queue_depth": len(self._pending),
                "inflight_frames": sum(len(b.requests) for b in self._inflight.values()),
                "frames": s.frames,
                "bursts": s.bursts,
                "batch_sizes": dict(sorted(s.burst_sizes.items())),
                "mean_burst_size": s.frames / s.bursts if s.bursts else 0.0,
                "busy_s": s.busy_s,
                "queue_wait_s": s.queue_wait_s,
                "max_queue_wait_s": s.max_queue_wait_s,
                "errors": s.errors,
                "timeouts": s.timeouts,
                "overloaded": s.overloaded,
                "reconfigures": s.reconfigures,
                "retried": s.retried,
                "last_error": s.last_error,
                "last_error_age_s": None if s.last_error_at is None else time.monotonic() - s.last_error_at,
            }

    def _state(self) -> str:
        if self._detached:
            return "down"
        if self._configured is None or self._needs_reconfigure:
            return "recovering"
        return "failing" if self._streak else "ready"

    # ---- submitter thread ----

    def _serve(self) -> None:
        while True:
            with self._cond:
                action = self._next_action()
            if action is None:
                return
            if action == "reconfigure":
                self._reconfigure()
            else:
                self._submit(*action)

    def _next_action(self) -> Any:
        """Under the lock: wait until there is something to do; None means stop."""
        while not self._closing:
            now = time.monotonic()
            self._expire(now)
            if self._detached:
                self._cond.wait(self._tick())
                continue
            if self._configured is None or self._needs_reconfigure:
                if now >= self._retry_at:
                    return "reconfigure"
                self._cond.wait(self._retry_at - now)
                continue
            if self._pending and len(self._inflight) < MAX_BURSTS_IN_FLIGHT:
                left = self._gather_left(now)
                if left <= 0 and self._gated:
                    left = self._sessions.background_wait(now, self._pending[0].enqueued)
                if left <= 0:
                    return self._take(now, granted_at=now if self._gated else None)
                self._cond.wait(min(left, TICK_S))
                continue
            self._cond.wait(self._tick())
        return None

    def _tick(self) -> float | None:
        """Poll for expiry and stalls only while frames are queued or in flight; else sleep until notified."""
        return TICK_S if self._pending or self._inflight else None

    def _expire(self, now: float) -> None:
        """Drop abandoned frames, refuse frames queued too long, and notice stalled bursts."""
        wait_limit = self._limits.queue_wait_s
        kept: deque[_Request] = deque()
        for request in self._pending:
            if request.abandoned:
                continue
            if wait_limit and now - request.enqueued > wait_limit:
                self._stats.overloaded += 1
                _settle(request, error=Overloaded(f"{self.name}: frame waited over {wait_limit:g} s for the device"))
                continue
            kept.append(request)
        self._pending = kept
        self._report_waiting()
        stall_limit = self._limits.request_timeout_s
        stalled = [b for b in self._inflight.values() if now - b.submitted > stall_limit]
        self._release_grants(stalled, now)
        for burst in stalled:
            del self._inflight[burst.id]
            self._fail_requests(burst.requests, DeviceTimeout(f"{self.name}: no completion within {stall_limit:g} s"))
        if stalled:
            self._fail_locked(stalled[0].generation, f"a burst has not completed in {stall_limit:g} s")

    def _gather_left(self, now: float) -> float:
        """Seconds to keep gathering before submitting a partial burst (0 = submit now, inf = wait)."""
        if not self.fill_bursts or len(self._pending) >= self.batch_size:
            return 0.0
        if self._inflight:
            return float("inf")
        left = max(self._pending[0].enqueued, self._idle_since) + IDLE_GATHER_S - now
        if self._coming > 0:
            left = max(left, self._pending[0].enqueued + ANNOUNCED_GATHER_S - now)
        return left

    def _take(self, now: float, granted_at: float | None) -> tuple[list[_Request], Any, int, float | None]:
        requests = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
        for request in requests:
            self._stats.queue_wait_s += now - request.enqueued
            self._stats.max_queue_wait_s = max(self._stats.max_queue_wait_s, now - request.enqueued)
        self._report_waiting()
        return requests, self._configured, self._generation, granted_at

    def _submit(self, requests: list[_Request], configured: Any, generation: int, granted_at: float | None) -> None:
        burst = _Burst(next(self._burst_ids), requests, [], generation, granted_at=granted_at)
        with self._submit_lock:
            if generation != self._generation:
                self._release_grants([burst])
                self._fail_requests(requests, ServiceUnavailable(f"{self.name}: the device is recovering"))
                return
            try:
                burst.bindings = [
                    configured.create_bindings(input_buffers=r.inputs, output_buffers=r.outputs) for r in requests
                ]
                if not self._wait_ready(configured, burst):
                    self._release_grants([burst])
                    return
                with self._cond:
                    burst.submitted = time.monotonic()
                    self._inflight[burst.id] = burst
                configured.run_async(burst.bindings, lambda completion_info: self._completed(burst, completion_info))
            except Exception as exc:
                with self._cond:
                    self._inflight.pop(burst.id, None)
                    self._release_grants([burst])
                    self._fail_locked(generation, faults.describe(exc), exc)
                self._fail_requests(requests, DeviceError(f"{self.name}: inference failed ({faults.describe(exc)})"))

    def _wait_ready(self, configured: Any, burst: _Burst) -> bool:
        """Block (GIL released) until the model takes the burst; False if the burst was dropped."""
        started = time.monotonic()
        while True:
            try:
                configured.wait_for_async_ready(timeout_ms=READY_POLL_MS, frames_count=len(burst.requests))
                return True
            except Exception as exc:
                if not faults.is_timeout(exc):
                    raise
            with self._cond:
                if self._closing or burst.generation != self._generation:
                    error: WorkerError = ServiceUnavailable(f"{self.name}: the device is recovering")
                elif all(r.abandoned for r in burst.requests):
                    return False
                elif time.monotonic() - started > self._limits.request_timeout_s:
                    self._fail_locked(burst.generation, "the model did not accept frames within the deadline")
                    error = DeviceTimeout(f"{self.name}: the device did not accept the frame in time")
                else:
                    continue
            self._fail_requests(burst.requests, error)
            return False

    def _completed(self, burst: _Burst, completion_info: Any) -> None:
        """HailoRT's callback thread: keep it short, hand results to the callers' event loops."""
        error = getattr(completion_info, "exception", None)
        now = time.monotonic()
        with self._cond:
            live = self._inflight.pop(burst.id, None) is not None
            self._release_grants([burst], now)
            if not self._inflight:
                self._idle_since = now
            if live and error is None:
                elapsed = now - burst.submitted
                s = self._stats
                s.frames += len(burst.requests)
                s.bursts += 1
                s.burst_sizes[len(burst.requests)] += 1
                s.busy_s += elapsed
                if burst.generation == self._generation:
                    self._streak = 0
            elif live:
                self._fail_locked(burst.generation, faults.describe(error), error)
            self._cond.notify_all()
        if not live:
            return
        if error is None:
            for request in burst.requests:
                _settle(request, result=request.outputs)
        else:
            self._fail_requests(burst.requests, DeviceError(f"{self.name}: inference failed ({faults.describe(error)})"))

    def _fail_locked(self, generation: int, reason: str, exc: BaseException | None = None) -> None:
        """Under the lock: the configured model of `generation` failed; schedule a re-configure."""
        if generation != self._generation or self._needs_reconfigure:
            return
        self._needs_reconfigure = True
        self._streak += 1
        self._stats.errors += 1
        self._stats.last_error = reason
        self._stats.last_error_at = time.monotonic()
        log.warning("%s: configured model failed (%s); re-configuring", self.name, reason)
        if (exc is not None and faults.is_device_fatal(exc)) or self._streak >= ESCALATE_AFTER:
            self._host.device_failed(f"{self.name}: {reason}")
        self._cond.notify_all()

    def _release_grants(self, bursts: list[_Burst], now: float | None = None) -> None:
        """Return the sessions gate's grant of each burst exactly once, whichever path ends it."""
        with self._cond:
            for burst in bursts:
                if burst.granted_at is not None and self._sessions is not None:
                    self._sessions.background_done(burst.granted_at, time.monotonic() if now is None else now)
                burst.granted_at = None

    def _fail_requests(self, requests: list[_Request], error: WorkerError) -> None:
        for request in requests:
            _settle(request, error=error)

    def _reconfigure(self) -> None:
        """Replace a shut-down configured model; later callers succeed.

        The failed burst's callers have had their error already. Frames of other bursts still in
        flight are collateral (a late deadline can fire after the network looked healthy again),
        so each is queued again, first in line and with fresh output buffers since the aborted job
        may still write the old ones; a frame caught a second time fails.
        """
        with self._submit_lock:
            with self._cond:
                if self._detached or self._closing:
                    return
                old, self._configured = self._configured, None
                self._generation += 1
                caught = [r for b in self._inflight.values() for r in b.requests if not r.abandoned]
                self._release_grants(list(self._inflight.values()))
                self._inflight.clear()
                dead = [r for r in caught if r.retried]
                again = [r for r in caught if not r.retried]
                for request in again:
                    request.retried = True
                    request.outputs = output_buffers(self.outputs)
                self._pending.extendleft(reversed(again))
                self._stats.retried += len(again)
                self._report_waiting()
            self._fail_requests(dead, DeviceError(f"{self.name}: the model was re-configured after a failure"))
            if old is not None:
                self._host.release_configured(old)
            try:
                configured = self._host.configure(self)
            except Exception as exc:
                self._configure_failed(exc)
                return
            with self._cond:
                if self._detached or self._closing:
                    stale = configured
                else:
                    stale = None
                    self._configured = configured
                    self._needs_reconfigure = False
                    self._stats.reconfigures += 1
                    self._cond.notify_all()
            if stale is not None:
                self._host.release_configured(stale)
            else:
                log.info("%s: re-configured", self.name)

    def _configure_failed(self, exc: Exception) -> None:
        with self._cond:
            self._streak += 1
            self._stats.errors += 1
            self._stats.last_error = f"re-configure failed: {faults.describe(exc)}"
            self._stats.last_error_at = time.monotonic()
            delay = RECONFIGURE_BACKOFF_S[min(self._streak, len(RECONFIGURE_BACKOFF_S)) - 1]
            self._retry_at = time.monotonic() + delay
            escalate = faults.is_device_fatal(exc) or self._streak >= ESCALATE_AFTER
        log.warning("%s: re-configure failed (%s); retrying in %.2f s", self.name, faults.describe(exc), delay)
        if escalate:
            self._host.device_failed(f"{self.name}: re-configure failed: {faults.describe(exc)}")
