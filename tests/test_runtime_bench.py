"""The device benchmark: its bound arithmetic and one short run on the emulated hailo8 profile."""

from __future__ import annotations

import asyncio
import math
from types import SimpleNamespace

import numpy as np

from ml_target.benchmarks.device import (
    device_bound_fps,
    drive,
    percentiles_ms,
    run_device_benchmark,
)


def test_device_bound_is_full_bursts_back_to_back():
    assert math.isclose(device_bound_fps(27.2, 1.94, 8), 8000 / 42.72)
    assert math.isclose(device_bound_fps(0.0, 2.5, 1), 400.0)


def test_percentiles_are_in_milliseconds():
    result = percentiles_ms([0.001 * i for i in range(1, 101)])
    assert math.isclose(result["p50_ms"], 50.5) and math.isclose(result["p99_ms"], 99.01)


def test_short_benchmark_run_reports_full_bursts_near_the_bound():
    report = run_device_benchmark("arcface_r50", callers=16, seconds=0.4, profile="hailo8")
    assert report["frames"] > 0 and report["batch_size"] == 8
    assert report["mean_device_burst"] == 8.0
    assert 0.5 < report["ratio"] < 1.05
    assert report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]


def test_window_closes_before_the_callers_drain():
    """The counters' window ends while every caller still has a frame out: the frames queued as
    callers stop one by one (a partial burst, the benchmark's own ending) fall outside it."""
    in_flight = 0
    seen_at_close: list[int] = []

    async def infer(frame: np.ndarray) -> None:
        nonlocal in_flight
        in_flight += 1
        await asyncio.sleep(0.02)
        in_flight -= 1

    network = SimpleNamespace(inputs=[SimpleNamespace(shape=(2, 2, 3))], infer=infer)
    latencies, wall_s, window_s, _ = asyncio.run(
        drive(network, callers=4, seconds=0.2, on_open=lambda: None, on_close=lambda: seen_at_close.append(in_flight))
    )
    assert seen_at_close == [4]
    assert 0.19 < window_s < wall_s
    assert in_flight == 0 and len(latencies) >= 4
