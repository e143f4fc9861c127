"""HailoRT's ROUND_ROBIN core-op scheduler decision, as a pure object without threads or time.

Mirrors libhailort 4.23 (`scheduler_oracle.cpp`): when the device is idle, walk the priority
groups from the highest down; inside a group, start at the group's round-robin pointer and take
the first model that is *ready*: it has frames and (its pending count reached its threshold, or
its timeout has elapsed since it last ran). If none is ready and idle optimisation is on, repeat
without the threshold test. The chosen model advances its group's pointer past itself.

Note that HailoRT's default timeout of 0 counts as always elapsed, so a threshold only holds frames
back once a non-zero timeout is set too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Candidate:
    """The scheduler's view of one configured model."""

    key: int
    priority: int
    pending: int
    threshold: int = 0
    timeout_s: float = 0.0
    last_run: float = 0.0

    def over_threshold(self, now: float) -> bool:
        return self.pending >= self.threshold or (now - self.last_run) >= self.timeout_s


class RoundRobin:
    """Priority groups with one round-robin pointer each."""

    def __init__(self) -> None:
        self._groups: dict[int, list[int]] = {}
        self._next: dict[int, int] = {}

    def add(self, key: int, priority: int) -> None:
        self._groups.setdefault(priority, []).append(key)
        self._next.setdefault(priority, 0)

    def remove(self, key: int) -> None:
        for priority, keys in list(self._groups.items()):
            if key in keys:
                keys.remove(key)
                if not keys:
                    del self._groups[priority]
                    del self._next[priority]
                else:
                    self._next[priority] %= len(keys)

    def set_priority(self, key: int, priority: int) -> None:
        self.remove(key)
        self.add(key, priority)

    def choose(self, candidates: dict[int, Candidate], now: float, idle_optimisation: bool = True) -> int | None:
        """The key of the model to run next, or None when no model may run now."""
        chosen = self._walk(candidates, now, check_threshold=True)
        if chosen is None and idle_optimisation:
            chosen = self._walk(candidates, now, check_threshold=False)
        return chosen

    def _walk(self, candidates: dict[int, Candidate], now: float, check_threshold: bool) -> int | None:
        for priority in sorted(self._groups, reverse=True):
            keys = self._groups[priority]
            start = self._next[priority]
            for i in range(len(keys)):
                index = (start + i) % len(keys)
                cand = candidates.get(keys[index])
                if cand is None or cand.pending <= 0:
                    continue
                if check_threshold and not cand.over_threshold(now):
                    continue
                self._next[priority] = (index + 1) % len(keys)
                return cand.key
        return None

    @staticmethod
    def next_timeout(candidates: dict[int, Candidate]) -> float | None:
        """The earliest moment a waiting, below-threshold model becomes ready by its timeout."""
        times = [c.last_run + c.timeout_s for c in candidates.values() if c.pending > 0 and c.pending < c.threshold]
        return min(times) if times else None
