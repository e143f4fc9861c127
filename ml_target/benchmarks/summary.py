"""Turning a measured window into numbers: rates, latency percentiles, CPU per request, device use.

Device figures come from the emulated device's own counters (deltas over the window): `busy_ms`
per network is modelled device time (a + b*B per burst), so `busy / wall` is the utilisation a
real Hailo would show for the same bursts; frames and bursts give frames per request and the
burst sizes that actually formed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ml_target.benchmarks.procstat import EMULATOR_GROUP
from ml_target.benchmarks.workloads import device_bound_rps, hef_for_group


def percentiles(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99 in milliseconds (NaN without samples); linear interpolation between samples."""
    if not latencies_s:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    p50, p95, p99 = np.percentile(np.asarray(latencies_s, dtype=np.float64) * 1000.0, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


def device_delta(before: Mapping[str, Any], after: Mapping[str, Any], wall_s: float) -> dict[str, Any]:
    """Per-network busy time, utilisation, frames and mean burst over a window, keyed by HEF name."""
    networks: dict[str, Any] = {}
    for group, end in after.get("networks", {}).items():
        start = before.get("networks", {}).get(group, {})
        frames = end.get("frames", 0) - start.get("frames", 0)
        bursts = end.get("bursts", 0) - start.get("bursts", 0)
        busy_ms = end.get("busy_ms", 0.0) - start.get("busy_ms", 0.0)
        if frames <= 0:
            continue
        networks[hef_for_group(group)] = {
            "frames": frames,
            "bursts": bursts,
            "mean_burst": frames / bursts if bursts else 0.0,
            "busy_ms": busy_ms,
            "utilisation": busy_ms / (1000.0 * wall_s),
        }
    switch_ms = after.get("switch_ms", 0.0) - before.get("switch_ms", 0.0)
    busy = sum(n["busy_ms"] for n in networks.values()) + switch_ms
    return {"networks": networks, "switch_ms": switch_ms, "utilisation": busy / (1000.0 * wall_s)}


def measured_frames(device: Mapping[str, Any], requests: int) -> dict[str, float]:
    """Device frames per request by HEF over a window in which `requests` requests completed."""
    if requests <= 0:
        return {}
    return {hef: n["frames"] / requests for hef, n in device["networks"].items()}


def cpu_per_request(cpu_s: Mapping[str, float], requests: int) -> dict[str, float]:
    """CPU milliseconds per request per thread group, plus worker (host) and emulator totals."""
    if requests <= 0:
        return {}
    per = {group: 1000.0 * seconds / requests for group, seconds in cpu_s.items()}
    emulator = per.get(EMULATOR_GROUP, 0.0)
    return {"by_thread": per, "worker_ms": sum(per.values()) - emulator, "emulator_ms": emulator}


def bound_and_ratio(frames: Mapping[str, float], profile: str, rps: float) -> dict[str, float]:
    """The device-bound request rate for these frames per request, and the measured fraction of it."""
    bound = device_bound_rps(frames, profile) if frames else float("nan")
    return {"device_bound_rps": bound, "ratio_to_bound": rps / bound if bound and np.isfinite(bound) else float("nan")}


def arrival_wait_quantile(device: Mapping[str, Any], quantile: float, exclude: Sequence[str] = ()) -> float:
    """Quantile (ms) of the wait a request arriving at a random moment has for the burst in progress.

    A Hailo does not pre-empt a burst, so however high a query's priority, it waits for the rest
    of the burst running when it arrives. With network N busy a fraction p_N of the time in bursts
    of mean length d_N (networks in `exclude` left out), that wait is 0 with probability 1 - sum p_N
    and uniform on [0, d_N] with probability p_N; this is the floor any scheduler above the device
    can reach for such a query at that load.
    """
    bursts = [
        (n["utilisation"], n["busy_ms"] / n["bursts"])
        for hef, n in device.get("networks", {}).items()
        if hef not in exclude and n["bursts"] > 0 and n["busy_ms"] > 0
    ]
    tail = 1.0 - quantile

    def exceeds(wait: float) -> float:
        return sum(share * max(0.0, 1.0 - wait / length) for share, length in bursts)

    low, high = 0.0, max((length for _, length in bursts), default=0.0)
    if exceeds(0.0) <= tail:
        return 0.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if exceeds(middle) > tail else (low, middle)
    return high


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20261203  # the same resamples every run, so a report can be recomputed exactly


def latency_ratio(
    numerator_ms: Sequence[float],
    numerator_q: float,
    denominator_ms: Sequence[float],
    denominator_q: float,
    *,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The ratio of two latency percentiles (e.g. p95 under load / p50 idle) with its sample counts
    and a percentile-bootstrap confidence interval: both sample sets resampled independently.

    `numerator_q` / `denominator_q` are quantiles in 0..1. Without samples on either side every
    number is NaN.
    """
    a = np.asarray(numerator_ms, dtype=np.float64)
    b = np.asarray(denominator_ms, dtype=np.float64)
    result: dict[str, Any] = {"n": int(a.size), "n_reference": int(b.size), "confidence": confidence}
    if a.size == 0 or b.size == 0:
        return {**result, "value": float("nan"), "low": float("nan"), "high": float("nan")}
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    top = np.quantile(a[rng.integers(0, a.size, (BOOTSTRAP_RESAMPLES, a.size))], numerator_q, axis=1)
    bottom = np.quantile(b[rng.integers(0, b.size, (BOOTSTRAP_RESAMPLES, b.size))], denominator_q, axis=1)
    tail = (1.0 - confidence) / 2
    low, high = np.quantile(top / bottom, [tail, 1.0 - tail])
    value = float(np.quantile(a, numerator_q) / np.quantile(b, denominator_q))
    return {**result, "value": value, "low": float(low), "high": float(high)}


def verdict(ratio: Mapping[str, Any], target: float, min_samples: int) -> str:
    """`meets` / `misses` the target (ratio at most `target`) when the whole interval is on one side,
    `inconclusive` when it straddles it, `too few samples` below `min_samples` on either side."""
    if min(ratio["n"], ratio["n_reference"]) < min_samples:
        return "too few samples"
    if ratio["high"] <= target:
        return "meets"
    if ratio["low"] > target:
        return "misses"
    return "inconclusive"
