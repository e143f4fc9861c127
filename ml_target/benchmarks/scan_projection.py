"""How long a whole library scan takes, from measured job rates: the arithmetic of `bench --library`.

Immich queues every photo for Smart Search, Face Detection and OCR, and the three job queues run at
the same time, each with its own concurrency. While all three run they share the device and the
host, so each job has a rate in photos per second; when the fastest job has worked through the
library it stops, and the others speed up. So the scan is a sequence of phases, each with the
jobs still running and their rates *measured with exactly those jobs running*:

    phase 1: all jobs at rates r1[j] until the first job is done, t1 = min_j N / r1[j];
    phase 2: the remaining jobs at rates r2[j] (measured without the finished one), ...

and the library is done when the last job is. `next_phase` says which set of jobs to measure next,
so a benchmark measures only the sets the scan actually goes through. The device-bound and
host-bound floors are what a device that never idles, or a host busy on every core, would take.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

Jobs = frozenset[str]
Rates = Mapping[str, float]  # photos per second of each running job


@dataclass(frozen=True)
class Phase:
    """One stretch of the scan: `running` jobs at `rates` for `seconds`, after which `finished` stop."""

    running: Jobs
    rates: dict[str, float]
    seconds: float
    finished: Jobs


@dataclass(frozen=True)
class Projection:
    """The whole scan of `photos` photos: its phases, when each job is done, and the total."""

    photos: int
    phases: tuple[Phase, ...]
    done_s: dict[str, float]

    @property
    def total_s(self) -> float:
        return max(self.done_s.values(), default=0.0)

    def photos_per_hour(self) -> float:
        """Photos per hour through all jobs (the library size over the time until the last job ends)."""
        return self.photos * 3600.0 / self.total_s if self.total_s > 0 else float("inf")


def _step(remaining: dict[str, float], running: Jobs, rates: Rates) -> Phase:
    """The phase `running` jobs spend at `rates` until the first of them has no photo left."""
    if not running:
        raise ValueError("no job is running")
    stalled = [job for job in running if not rates.get(job, 0.0) > 0.0]
    if stalled:
        raise ValueError(f"job(s) {', '.join(sorted(stalled))} made no progress: their rate was not measured above 0")
    times = {job: remaining[job] / rates[job] for job in running}
    seconds = min(times.values())
    # Jobs whose remainder lies within a millionth of the shortest phase end together with it.
    finished = frozenset(job for job, t in times.items() if t <= seconds * (1 + 1e-6))
    for job in running:
        remaining[job] = 0.0 if job in finished else remaining[job] - rates[job] * seconds
    return Phase(running, {job: float(rates[job]) for job in running}, seconds, finished)


def project(photos: int, jobs: Iterable[str], measure: Callable[[Jobs], Rates]) -> Projection:
    """Scan `photos` photos with every job of `jobs`; `measure(running)` gives the rates of a set of
    jobs running together (called once per phase, with the jobs still running)."""
    running = frozenset(jobs)
    remaining = {job: float(photos) for job in running}
    phases, done, clock = [], {}, 0.0
    while running:
        phase = _step(remaining, running, measure(running))
        clock += phase.seconds
        phases.append(phase)
        done.update({job: clock for job in phase.finished})
        running = running - phase.finished
    return Projection(photos, tuple(phases), done)


def next_phase(photos: int, jobs: Iterable[str], measured: Mapping[Jobs, Rates]) -> Jobs | None:
    """The next set of jobs whose rates `project` needs and `measured` lacks; None when all are known."""
    missing: list[Jobs] = []

    def lookup(running: Jobs) -> Rates:
        if running in measured:
            return measured[running]
        missing.append(running)
        raise LookupError

    try:
        project(photos, jobs, lookup)
    except LookupError:
        return missing[0]
    return None


def device_floor_s(photos: int, device_ms_per_photo: Mapping[str, float]) -> float:
    """Seconds for a device that never idles: each photo's device time summed over the jobs."""
    return photos * sum(device_ms_per_photo.values()) / 1000.0


def host_floor_s(photos: int, cpu_ms_per_photo: Mapping[str, float], cores: int) -> float:
    """Seconds for a host whose every core works on the scan: each photo's CPU time summed over jobs."""
    return photos * sum(cpu_ms_per_photo.values()) / 1000.0 / cores
