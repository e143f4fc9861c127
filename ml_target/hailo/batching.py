"""One network on one or more cards: a bounded queue shared by the cards, a submitter per card.

Callers `await infer(frame)` on the event loop. Frames go into the network's queue; each card that
holds a configured copy of the network has a *lane*: one submitter thread that takes up to
`batch_size` frames, binds them and submits them to that card's configured model as ONE
`run_async` (N bindings = N frames), after `wait_for_async_ready(frames_count=N)`. Only that thread
submits to its configured model, so the ready/submit pair is never raced (hailort.md §7) and there
is no global device lock. HailoRT's callback thread resolves each caller's future with that
caller's own output arrays.

Several cards (`ml_target.hailo.dispatch`): lanes pull bursts from the one queue, so a faster card
takes more of them, and a lane takes a burst only when no other ready lane has fewer bursts in
flight, which spreads the load at burst granularity as HailoRT's own multi-device scheduler does
(one queue per model, the burst goes to an idle device). A lane whose card fails stops pulling:
queued frames stay for the healthy lanes, and the frames it had in flight are queued again (once)
when another lane is ready, instead of failing.

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
burst's callers get `DeviceError` (or, with another lane ready, their frames move there); the lane
asks its host (the card in the runtime) for a freshly configured model and carries on.
Device-level failures and repeated model failures are escalated to the card, which detaches its
lane of every network, rebuilds its VDevice and attaches them again; the other cards go on.
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
from ml_target.hailo import dispatch, faults
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
    """What a lane needs from the card that owns its VDevice."""

    def configure(self, network: DeviceNetwork) -> Any:
        """A newly configured model (ConfiguredInferModel) for `network` on the card's current VDevice."""

    def release_configured(self, configured: Any) -> None:
        """Shut down and drop a configured model; never raises."""

    def device_failed(self, reason: str) -> None:
        """Start rebuilding the card's VDevice in the background (idempotent while a rebuild runs)."""


class Availability(Protocol):
    """What a network asks its runtime before queueing a frame."""

    def check_available(self) -> None:
        """Raise ServiceUnavailable while no card can serve (closed, or every card down)."""


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
    retried: bool = False  # queued again once after a failure caught it in flight


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
    """One lane's counters (queue waits, timeouts and refusals are the network's)."""

    frames: int = 0
    bursts: int = 0
    burst_sizes: Counter = field(default_factory=Counter)
    busy_s: float = 0.0
    errors: int = 0
    reconfigures: int = 0
    retried: int = 0
    moved: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


@dataclass
class _QueueStats:
    queue_wait_s: float = 0.0
    max_queue_wait_s: float = 0.0
    timeouts: int = 0
    overloaded: int = 0


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


class Lane:
    """One card's configured copy of a network and its submitter thread. All state is guarded by
    the network's condition; the submit lock orders this lane's ready/submit pairs."""

    def __init__(self, network: DeviceNetwork, host: Host, device_id: str) -> None:
        self.network = network
        self.host = host
        self.device_id = device_id
        self.configured: Any = None
        self.generation = 0
        self.detached = True
        self.needs_reconfigure = False
        self.streak = 0
        self.retry_at = 0.0
        self.inflight: dict[int, _Burst] = {}
        self.idle_since = 0.0
        self.stats = _Stats()
        self.submit_lock = threading.Lock()
        self.thread = threading.Thread(target=network._serve, args=(self,), name=f"hailo-submit-{network.name}-{device_id}",
                                       daemon=True)

    @property
    def ready(self) -> bool:
        """Under the lock: attached with a working configured model."""
        return not self.detached and self.configured is not None and not self.needs_reconfigure

    def state(self) -> str:
        if self.detached:
            return "down"
        if self.configured is None or self.needs_reconfigure:
            return "recovering"
        return "failing" if self.streak else "ready"

    def inflight_frames(self) -> int:
        return sum(len(b.requests) for b in self.inflight.values())


class DeviceNetwork:
    """A configured HEF on one or more cards: implements the `Network` protocol of `ml_target.hailo.types`."""

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
        host: Availability,
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
        self._pending: deque[_Request] = deque()
        self._lanes: dict[str, Lane] = {}
        self._burst_ids = itertools.count()
        self._closing = False
        self._stats = _QueueStats()
        self._coming = 0  # announced callers whose first frame is not queued yet
        self._announcement: contextvars.ContextVar[_Announcement | None] = contextvars.ContextVar(
            f"announcement-{name}", default=None
        )

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
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
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
            if self._closing or all(lane.detached for lane in self._lanes.values()):
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

    def add_lane(self, host: Host, device_id: str) -> Lane:
        """A (detached) lane for the card `device_id`; `attach` starts it serving."""
        lane = Lane(self, host, device_id)
        with self._cond:
            if device_id in self._lanes:
                raise ValueError(f"{self.name} already has a lane on {device_id}")
            self._lanes[device_id] = lane
        lane.thread.start()
        return lane

    def lane(self, device_id: str) -> Lane:
        return self._lanes[device_id]

    @property
    def device_ids(self) -> tuple[str, ...]:
        return tuple(self._lanes)

    def attach(self, configured: Any, device_id: str | None = None) -> None:
        """Start serving on a card with a configured model (after load or the card's rebuild)."""
        with self._cond:
            lane = self._lane_for(device_id)
            lane.configured = configured
            lane.generation += 1
            lane.detached = False
            lane.needs_reconfigure = False
            lane.streak = 0
            lane.retry_at = 0.0
            self._cond.notify_all()

    def _lane_for(self, device_id: str | None) -> Lane:
        if device_id is None:
            (only,) = self._lanes.values()
            return only
        return self._lanes[device_id]

    def detach(self, error: WorkerError, device_id: str | None = None) -> Any:
        """Stop serving on a card (lost or closing) and return its configured model. Its in-flight
        frames move to another ready lane, else fail with `error`; when no lane is left, queued
        frames fail too.

        The generation changes first, without the submit lock, so a submitter blocked in
        `wait_for_async_ready` gives up within one poll instead of holding the lock until its deadline.
        """
        with self._cond:
            lane = self._lane_for(device_id)
            lane.detached = True
            lane.generation += 1
            self._cond.notify_all()
        with lane.submit_lock, self._cond:
            old, lane.configured = lane.configured, None
            caught = [r for b in lane.inflight.values() for r in b.requests]
            self._release_grants(list(lane.inflight.values()))
            lane.inflight.clear()
            failed = self._move_or_keep(lane, caught)
            if all(other.detached for other in self._lanes.values()):
                failed += list(self._pending)
                self._pending.clear()
            self._report_waiting()
            self._cond.notify_all()
        for request in failed:
            _settle(request, error=error)
        return old

    def close(self) -> list[tuple[str, Any]]:
        """Stop every submitter and fail outstanding frames; return each card's configured model to release."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            lanes = list(self._lanes.values())
        closing = ServiceUnavailable(f"{self.name}: the runtime is closing")
        old = [(lane.device_id, self.detach(closing, lane.device_id)) for lane in lanes]
        for lane in lanes:
            if lane.thread is not threading.current_thread():
                lane.thread.join(timeout=5)
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

        Lane counters are summed over the cards and given per card under `devices`. `batch_sizes`
        counts completed bursts by size; `errors` counts model failures (each one re-configures the
        model); `busy_s` sums submit-to-completion time of bursts; `moved` counts frames that a
        failing card handed to another one.
        """
        with self._cond:
            lanes = {device_id: dispatch.lane_stats(lane) for device_id, lane in self._lanes.items()}
            q = self._stats
            return {
                "name": self.name,
                "network_group": self.group,
                "hef": str(self.path),
                "batch_size": self.batch_size,
                "priority": self.priority,
                **dispatch.combine_lanes(lanes),
                "queue_depth": len(self._pending),
                "queue_wait_s": q.queue_wait_s,
                "max_queue_wait_s": q.max_queue_wait_s,
                "timeouts": q.timeouts,
                "overloaded": q.overloaded,
                "devices": lanes,
            }

    def lane_stats(self, device_id: str) -> dict[str, Any]:
        """One card's counters of this network (for the card's part of /health)."""
        with self._cond:
            return dispatch.lane_stats(self._lanes[device_id])

    # ---- submitter threads (one per lane) ----

    def _serve(self, lane: Lane) -> None:
        while True:
            with self._cond:
                action = self._next_action(lane)
            if action is None:
                return
            if action == "reconfigure":
                self._reconfigure(lane)
            else:
                self._submit(lane, *action)

    def _next_action(self, lane: Lane) -> Any:
        """Under the lock: wait until this lane has something to do; None means stop."""
        while not self._closing:
            now = time.monotonic()
            self._expire(lane, now)
            if lane.detached:
                self._cond.wait(self._tick(lane))
                continue
            if lane.configured is None or lane.needs_reconfigure:
                if now >= lane.retry_at:
                    return "reconfigure"
                self._cond.wait(lane.retry_at - now)
                continue
            if self._pending and len(lane.inflight) < MAX_BURSTS_IN_FLIGHT and self._my_turn(lane):
                left = self._gather_left(lane, now)
                if left <= 0 and self._gated:
                    left = self._sessions.background_wait(now, self._pending[0].enqueued)
                if left <= 0:
                    return self._take(lane, now, granted_at=now if self._gated else None)
                self._cond.wait(min(left, TICK_S))
                continue
            self._cond.wait(self._tick(lane))
        return None

    def _my_turn(self, lane: Lane) -> bool:
        """Under the lock: whether this lane takes the next burst (see `dispatch.takes_next_burst`)."""
        return dispatch.takes_next_burst(
            len(lane.inflight), [len(o.inflight) for o in self._lanes.values() if o is not lane and o.ready]
        )

    def _tick(self, lane: Lane) -> float | None:
        """Poll for expiry and stalls only while frames are queued or in flight; else sleep until notified."""
        return TICK_S if self._pending or lane.inflight else None

    def _expire(self, lane: Lane, now: float) -> None:
        """Drop abandoned frames, refuse frames queued too long, and notice this lane's stalled bursts."""
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
        stalled = [b for b in lane.inflight.values() if now - b.submitted > stall_limit]
        self._release_grants(stalled, now)
        for burst in stalled:
            del lane.inflight[burst.id]
            self._fail_requests(burst.requests, DeviceTimeout(f"{self.name}: no completion within {stall_limit:g} s"))
        if stalled:
            self._fail_locked(lane, stalled[0].generation, f"a burst has not completed in {stall_limit:g} s")

    def _gather_left(self, lane: Lane, now: float) -> float:
        """Seconds to keep gathering before submitting a partial burst (0 = submit now, inf = wait)."""
        if not self.fill_bursts or len(self._pending) >= self.batch_size:
            return 0.0
        if lane.inflight:
            return float("inf")
        left = max(self._pending[0].enqueued, lane.idle_since) + IDLE_GATHER_S - now
        if self._coming > 0:
            left = max(left, self._pending[0].enqueued + ANNOUNCED_GATHER_S - now)
        return left

    def _take(self, lane: Lane, now: float, granted_at: float | None) -> tuple[list[_Request], Any, int, float | None]:
        requests = [self._pending.popleft() for _ in range(min(self.batch_size, len(self._pending)))]
        for request in requests:
            self._stats.queue_wait_s += now - request.enqueued
            self._stats.max_queue_wait_s = max(self._stats.max_queue_wait_s, now - request.enqueued)
        self._report_waiting()
        return requests, lane.configured, lane.generation, granted_at

    def _submit(
        self, lane: Lane, requests: list[_Request], configured: Any, generation: int, granted_at: float | None
    ) -> None:
        burst = _Burst(next(self._burst_ids), requests, [], generation, granted_at=granted_at)
        with lane.submit_lock:
            if generation != lane.generation:
                with self._cond:
                    self._release_grants([burst])
                    failed = self._move_or_keep(lane, requests)
                self._fail_requests(failed, ServiceUnavailable(f"{self.name}: the device is recovering"))
                return
            try:
                burst.bindings = [
                    configured.create_bindings(input_buffers=r.inputs, output_buffers=r.outputs) for r in requests
                ]
                if not self._wait_ready(lane, configured, burst):
                    self._release_grants([burst])
                    return
                with self._cond:
                    burst.submitted = time.monotonic()
                    lane.inflight[burst.id] = burst
                    self._cond.notify_all()  # other lanes' turn depends on this lane's bursts in flight
                configured.run_async(burst.bindings, lambda completion_info: self._completed(lane, burst, completion_info))
            except Exception as exc:
                with self._cond:
                    lane.inflight.pop(burst.id, None)
                    self._release_grants([burst])
                    self._fail_locked(lane, generation, faults.describe(exc), exc)
                    failed = self._move_or_keep(lane, requests)
                self._fail_requests(failed, DeviceError(f"{self.name}: inference failed ({faults.describe(exc)})"))

    def _wait_ready(self, lane: Lane, configured: Any, burst: _Burst) -> bool:
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
                if self._closing or burst.generation != lane.generation:
                    error: WorkerError = ServiceUnavailable(f"{self.name}: the device is recovering")
                    failed = self._move_or_keep(lane, burst.requests)
                elif all(r.abandoned for r in burst.requests):
                    return False
                elif time.monotonic() - started > self._limits.request_timeout_s:
                    self._fail_locked(lane, burst.generation, "the model did not accept frames within the deadline")
                    error = DeviceTimeout(f"{self.name}: the device did not accept the frame in time")
                    failed = burst.requests
                else:
                    continue
            self._fail_requests(failed, error)
            return False

    def _completed(self, lane: Lane, burst: _Burst, completion_info: Any) -> None:
        """HailoRT's callback thread: keep it short, hand results to the callers' event loops."""
        error = getattr(completion_info, "exception", None)
        now = time.monotonic()
        failed: list[_Request] = []
        with self._cond:
            live = lane.inflight.pop(burst.id, None) is not None
            self._release_grants([burst], now)
            if not lane.inflight:
                lane.idle_since = now
            if live and error is None:
                elapsed = now - burst.submitted
                s = lane.stats
                s.frames += len(burst.requests)
                s.bursts += 1
                s.burst_sizes[len(burst.requests)] += 1
                s.busy_s += elapsed
                if burst.generation == lane.generation:
                    lane.streak = 0
            elif live:
                self._fail_locked(lane, burst.generation, faults.describe(error), error)
                failed = self._move_or_keep(lane, burst.requests)
            self._cond.notify_all()
        if not live:
            return
        if error is None:
            for request in burst.requests:
                _settle(request, result=request.outputs)
        else:
            self._fail_requests(failed, DeviceError(f"{self.name}: inference failed ({faults.describe(error)})"))

    def _move_or_keep(self, lane: Lane, requests: list[_Request]) -> list[_Request]:
        """Under the lock: queue a failing lane's frames again, first in line, when another lane is
        ready (each frame once, with fresh output buffers since an aborted job may still write the
        old ones); return those that must fail instead."""
        if not any(other.ready for other in self._lanes.values() if other is not lane):
            return list(requests)
        movable, failed = dispatch.split_movable(requests)
        self._queue_again(movable)
        lane.stats.moved += len(movable)
        if movable:
            self._report_waiting()
            self._cond.notify_all()
        return failed

    def _queue_again(self, requests: list[_Request]) -> None:
        """Under the lock: put frames caught by a failure back at the head of the queue, once each,
        with fresh output buffers since the aborted job may still write the old ones."""
        for request in requests:
            request.retried = True
            request.outputs = output_buffers(self.outputs)
        self._pending.extendleft(reversed(requests))

    def _fail_locked(self, lane: Lane, generation: int, reason: str, exc: BaseException | None = None) -> None:
        """Under the lock: the lane's configured model of `generation` failed; schedule a re-configure."""
        if generation != lane.generation or lane.needs_reconfigure:
            return
        lane.needs_reconfigure = True
        lane.streak += 1
        lane.stats.errors += 1
        lane.stats.last_error = reason
        lane.stats.last_error_at = time.monotonic()
        log.warning("%s on %s: configured model failed (%s); re-configuring", self.name, lane.device_id, reason)
        if (exc is not None and faults.is_device_fatal(exc)) or lane.streak >= ESCALATE_AFTER:
            lane.host.device_failed(f"{self.name}: {reason}")
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

    def _reconfigure(self, lane: Lane) -> None:
        """Replace a lane's shut-down configured model; later callers succeed.

        The failed burst's callers have had their error (or moved) already. Frames of the lane's
        other bursts still in flight are collateral (a late deadline can fire after the network
        looked healthy again), so each is queued again, first in line and with fresh output
        buffers since the aborted job may still write the old ones; a frame caught a second time fails.
        """
        with lane.submit_lock:
            with self._cond:
                if lane.detached or self._closing:
                    return
                old, lane.configured = lane.configured, None
                lane.generation += 1
                caught = [r for b in lane.inflight.values() for r in b.requests if not r.abandoned]
                self._release_grants(list(lane.inflight.values()))
                lane.inflight.clear()
                again, dead = dispatch.split_movable(caught)
                self._queue_again(again)
                lane.stats.retried += len(again)
                self._report_waiting()
            self._fail_requests(dead, DeviceError(f"{self.name}: the model was re-configured after a failure"))
            if old is not None:
                lane.host.release_configured(old)
            try:
                configured = lane.host.configure(self)
            except Exception as exc:
                self._configure_failed(lane, exc)
                return
            with self._cond:
                if lane.detached or self._closing:
                    stale = configured
                else:
                    stale = None
                    lane.configured = configured
                    lane.needs_reconfigure = False
                    lane.stats.reconfigures += 1
                    self._cond.notify_all()
            if stale is not None:
                lane.host.release_configured(stale)
            else:
                log.info("%s on %s: re-configured", self.name, lane.device_id)

    def _configure_failed(self, lane: Lane, exc: Exception) -> None:
        with self._cond:
            lane.streak += 1
            lane.stats.errors += 1
            lane.stats.last_error = f"re-configure failed: {faults.describe(exc)}"
            lane.stats.last_error_at = time.monotonic()
            delay = RECONFIGURE_BACKOFF_S[min(lane.streak, len(RECONFIGURE_BACKOFF_S)) - 1]
            lane.retry_at = time.monotonic() + delay
            escalate = faults.is_device_fatal(exc) or lane.streak >= ESCALATE_AFTER
        log.warning("%s on %s: re-configure failed (%s); retrying in %.2f s", self.name, lane.device_id,
                    faults.describe(exc), delay)
        if escalate:
            lane.host.device_failed(f"{self.name}: re-configure failed: {faults.describe(exc)}")
