"""Device utilisation counters: what the emulated device did, for tests and benchmarks.

`busy_ms` is *modelled* device time (a + b*B per burst under the active timing profile, 0 under
"none"); `compute_ms` is the wall time the emulator really spent computing a burst and copying
its results out (the part of the modelled time it does not need to sleep); `switch_ms` is the
modelled cost of changing the active network.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class NetworkCounters:
    busy_ms: float = 0.0
    compute_ms: float = 0.0
    bursts: int = 0
    frames: int = 0
    failed_bursts: int = 0
    burst_sizes: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {
            "busy_ms": self.busy_ms,
            "compute_ms": self.compute_ms,
            "bursts": self.bursts,
            "frames": self.frames,
            "failed_bursts": self.failed_bursts,
            "burst_sizes": dict(self.burst_sizes),
        }


class Counters:
    """Accumulates per-burst records; the log keeps the most recent bursts in order."""

    def __init__(self, log_size: int = 4096) -> None:
        self.networks: dict[str, NetworkCounters] = {}
        self.switches = 0
        self.switch_ms = 0.0
        self.stall_s = 0.0
        self.log: deque[tuple[str, int]] = deque(maxlen=log_size)

    def record(self, network: str, frames: int, busy_ms: float, compute_ms: float, switch_ms: float | None,
               stall_s: float, failed: bool) -> None:
        net = self.networks.setdefault(network, NetworkCounters())
        net.busy_ms += busy_ms
        net.compute_ms += compute_ms
        net.bursts += 1
        net.frames += frames
        net.failed_bursts += int(failed)
        net.burst_sizes[frames] += 1
        if switch_ms is not None:
            self.switches += 1
            self.switch_ms += switch_ms
        self.stall_s += stall_s
        self.log.append((network, frames))

    def snapshot(self) -> dict[str, Any]:
        return {
            "networks": {name: c.snapshot() for name, c in self.networks.items()},
            "busy_ms": sum(c.busy_ms for c in self.networks.values()),
            "switches": self.switches,
            "switch_ms": self.switch_ms,
            "stall_s": self.stall_s,
        }
