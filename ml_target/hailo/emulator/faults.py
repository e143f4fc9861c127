"""Armed faults, consumed by the simulated device at the moment they apply.

A fault names a network group (`scrfd_2_5g`) or `None` for "whichever network comes next"; a
network-specific fault wins over a wildcard. The device consults these under its own lock.
"""

from __future__ import annotations


class Faults:
    def __init__(self) -> None:
        self._run_async: dict[str | None, int] = {}
        self._bursts: dict[str | None, list[int]] = {}
        self._stalls: dict[str | None, float] = {}

    def clear(self) -> None:
        self._run_async.clear()
        self._bursts.clear()
        self._stalls.clear()

    def arm_run_async(self, network: str | None, status: int) -> None:
        self._run_async[network] = status

    def arm_bursts(self, network: str | None, count: int, status: int) -> None:
        if count > 0:
            self._bursts[network] = [count, status]

    def arm_stall(self, network: str | None, seconds: float) -> None:
        self._stalls[network] = self._stalls.get(network, 0.0) + max(0.0, seconds)

    def take_run_async(self, network: str) -> int | None:
        for key in (network, None):
            if key in self._run_async:
                return self._run_async.pop(key)
        return None

    def take_burst(self, network: str) -> int | None:
        for key in (network, None):
            armed = self._bursts.get(key)
            if armed:
                armed[0] -= 1
                if armed[0] <= 0:
                    del self._bursts[key]
                return armed[1]
        return None

    def take_stall(self, network: str) -> float:
        return self._stalls.pop(network, 0.0) + self._stalls.pop(None, 0.0)
