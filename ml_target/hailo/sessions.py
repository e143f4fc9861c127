"""Search sessions: keep the device mostly idle for background work while a user is searching.

The device runs one burst at a time and cannot pre-empt it: a multi-context burst reloads every
context of its network, so even a one-frame background burst holds the device for 21-27 ms on a
Hailo-8 (151 ms for SigLIP). Scheduler priority only decides which burst goes *next*; a search
that arrives while the library scan keeps the device 90 % busy still waits, at p95, for most of a
burst. The only way to give a search an idle device is to leave the device idle before the search
arrives: anticipatory scheduling, as disk schedulers idle briefly after a read because another
read from the same process is likely.

Searches come in sessions (a user refines a query several times). After an interactive frame (a
network above HailoRT's default priority, i.e. a text encoder), for `session_s` seconds background
networks together get at most `background_share` of the device: one background burst at a time,
granted to the network holding the oldest frame, and after a burst of duration d an idle gap of
d * (1 / share - 1). A random search then finds the device busy with probability about `share`;
a search that arrives while a background burst waits to be submitted still goes first, by
scheduler priority, so the gate does not hold background work while searches queue (under a
continuous stream of searches the scan keeps its share instead of waiting for a lull).
The scan is slowed only during sessions and never starves: a background frame that has waited
`starvation_s` goes regardless, so the gate alone never makes Immich's requests fail on
QUEUE_WAIT_S. And sessions draw on a budget of `budget_s` seconds that refills at `refill`
seconds per second: a person's five minutes of searching are fully served, while a client that searches
without pause (a script, many users at once) cannot hold the scan back for more than that share
of the time; once the budget is spent, searches have scheduler priority only until it has
refilled by one session.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ml_target.config import Settings

HAILORT_DEFAULT_PRIORITY = 16
TURN_S = 0.005  # how soon a background network not holding the oldest frame asks again
BUDGET_SESSIONS = 30.0  # budget: thirty sessions' worth of holding (five minutes at the default 10 s)
BUDGET_REFILL = 0.1  # refilled at a tenth of real time: sessions hold the scan <= 10 % of a long run


@dataclass(frozen=True)
class SessionPolicy:
    """The operator's choice: session length after a search and the background share inside one."""

    session_s: float
    background_share: float
    starvation_s: float
    budget_s: float = float("inf")
    refill: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.session_s > 0 and self.background_share < 1


def session_policy(settings: Settings) -> SessionPolicy:
    """The policy from SEARCH_SESSION_S / SEARCH_BACKGROUND_SHARE; starvation bound from the deadlines.

    Half the shorter of the queue-wait limit and the request deadline leaves a held frame time to
    run before the runtime would refuse it or its caller would give up.
    """
    bound = min(settings.queue_wait_s or settings.request_timeout_s, settings.request_timeout_s)
    return SessionPolicy(
        settings.search_session_s,
        settings.search_background_share,
        bound / 2,
        budget_s=BUDGET_SESSIONS * settings.search_session_s,
        refill=BUDGET_REFILL,
    )


def is_interactive(priority: int) -> bool:
    """Networks given priority above HailoRT's default serve a waiting user (text encoders)."""
    return priority > HAILORT_DEFAULT_PRIORITY


class SearchSessions:
    """Device-wide gate shared by every network of one VDevice.

    Networks call it under their own lock; it never calls back into a network, so the lock order
    is always network -> gate.
    """

    def __init__(self, policy: SessionPolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._session_until = float("-inf")
        self._budget = policy.budget_s
        self._budget_at: float | None = None
        self._exhausted = False
        self._background_oldest: dict[str, float] = {}
        self._background_inflight = 0
        self._next_background = float("-inf")
        self._sessions = 0
        self._held_s = 0.0
        self._starved = 0

    # ---- interactive networks ----

    def interactive_arrived(self, now: float) -> None:
        """An interactive frame was queued: start or extend the session."""
        if not self.policy.enabled:
            return
        with self._lock:
            self._account(now)
            if self._exhausted:
                return
            if now >= self._session_until:
                self._sessions += 1
            self._session_until = now + self.policy.session_s

    def _account(self, now: float) -> None:
        """Under the lock: spend the budget on session time since the last call, refill the rest."""
        if self._budget_at is None or now <= self._budget_at:
            self._budget_at = now if self._budget_at is None else self._budget_at
            return
        held = max(0.0, min(now, self._session_until) - self._budget_at)
        refilled = self._budget + self.policy.refill * (now - self._budget_at) - held
        self._budget = min(self.policy.budget_s, refilled)
        self._budget_at = now
        if self._budget <= 0:
            self._exhausted = True
            self._session_until = min(self._session_until, now)
        elif self._exhausted and self._budget >= self.policy.session_s:
            self._exhausted = False

    # ---- background networks ----

    def background_waiting(self, network: str, oldest_enqueued: float | None) -> None:
        """When `network`'s oldest queued frame arrived (None: nothing queued), for oldest-first grants."""
        with self._lock:
            if oldest_enqueued is None:
                self._background_oldest.pop(network, None)
            else:
                self._background_oldest[network] = oldest_enqueued

    def background_wait(self, now: float, oldest_enqueued: float) -> float:
        """Seconds before a background burst may start; 0 grants it (call `background_done` after).

        In a session the grant goes to the network holding the oldest frame, so a request that
        needs several networks in turn (OCR: detection, then recognition) is not overtaken at
        every step.
        """
        with self._lock:
            wait = self._wait_locked(now)
            if wait == 0 and now < self._session_until and self.policy.enabled:
                if oldest_enqueued > min(self._background_oldest.values(), default=oldest_enqueued):
                    wait = TURN_S
            if wait > 0 and now - oldest_enqueued >= self.policy.starvation_s:
                self._starved += 1
                wait = 0.0
            if wait > 0:
                return wait
            self._background_inflight += 1
            return 0.0

    def _wait_locked(self, now: float) -> float:
        if not self.policy.enabled or now >= self._session_until:
            return 0.0
        self._account(now)
        if self._exhausted:
            return 0.0
        if self._background_inflight:
            return float("inf")
        return max(0.0, self._next_background - now)

    def background_done(self, started: float, now: float) -> None:
        """A granted burst finished (or never reached the device): schedule the next idle gap."""
        share = self.policy.background_share
        with self._lock:
            self._background_inflight = max(0, self._background_inflight - 1)
            if self.policy.enabled:
                until = now + (now - started) * (1 / share - 1)
                if now < self._session_until:
                    self._held_s += max(0.0, until - max(self._next_background, now))
                self._next_background = max(self._next_background, until)

    def set_policy(self, policy: SessionPolicy) -> None:
        """Change the policy while serving (the benchmark compares policies on one worker); a session
        in progress ends and the budget is full again, so the new policy starts from a clean state."""
        with self._lock:
            self.policy = policy
            self._budget, self._budget_at, self._exhausted = policy.budget_s, None, False
            self._session_until = min(self._session_until, time.monotonic())

    def in_session(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            return now < self._session_until

    def stats(self) -> dict[str, float | int | bool]:
        """For /health and /metrics: how often sessions slowed the scan, and by how much."""
        now = time.monotonic()
        with self._lock:
            return {
                "enabled": self.policy.enabled,
                "session_s": self.policy.session_s,
                "background_share": self.policy.background_share,
                "active": now < self._session_until and not self._exhausted,
                "budget_s": self._budget,
                "budget_exhausted": self._exhausted,
                "sessions": self._sessions,
                "background_held_s": self._held_s,
                "starvation_grants": self._starved,
            }
