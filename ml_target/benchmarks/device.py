"""Device benchmark: how close the runtime gets to the device-bound frame rate of one network.

The emulated device models a burst of B frames as `a + b*B` ms, so the best any host code can do is
`B / (a + b*B)` frames per ms: full bursts, back to back, no idle gaps. N concurrent callers drive
one network through the real `Runtime` (the production code path, emulator selected) for a warm-up
and then a measured window; the report compares the achieved rate with that bound and adds the
emulator's own utilisation counters, the burst sizes that formed, latency percentiles and the host
CPU time per frame (which includes the emulator's compute, so it is an upper bound for the host).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ml_target.config import Settings
from ml_target.hailo import emulator
from ml_target.hailo.emulator.models_dir import write_hef
from ml_target.hailo.runtime import Runtime
from ml_target.hailo.types import Network
from ml_target.networks import NETWORKS

WARMUP_S = 1.0


def device_bound_fps(a_ms: float, b_ms: float, batch: int) -> float:
    """Frames per second of back-to-back full bursts: B / (a + b*B) ms."""
    return 1000.0 * batch / (a_ms + b_ms * batch)


def percentiles_ms(latencies_s: list[float]) -> dict[str, float]:
    """p50/p95/p99 of latencies given in seconds, in milliseconds."""
    if not latencies_s:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    p50, p95, p99 = np.percentile(np.asarray(latencies_s) * 1000.0, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


async def drive(
    network: Network, callers: int, seconds: float, on_open: Callable[[], None], on_close: Callable[[], None]
) -> tuple[list[float], float, float, float]:
    """Closed loops of `callers` callers: warm up, call `on_open`, measure `seconds`, call `on_close`.

    Only requests that start inside the window count, and their rate is taken until the last of
    them completes: counting every completion after the window opens would credit it with up to
    `callers` frames the warm-up already had on the device, which for a short window reads as more
    than the device can do. `on_close` runs when the window closes, before the callers drain: the
    last frames, queued as callers stop one by one, form a partial burst that is the benchmark's
    own ending, not the runtime's batching. Returns the measured latencies (s), the wall time
    until the last of them completed, the window's length and the process CPU time until then.
    """
    rng = np.random.default_rng(0)
    edge = network.inputs[0]
    frames = [rng.integers(0, 256, size=edge.shape, dtype=np.uint8) for _ in range(callers)]
    latencies: list[float] = []
    window_start = end = float("inf")
    last_done = 0.0

    async def caller(frame: np.ndarray) -> None:
        nonlocal last_done
        while (started := time.perf_counter()) < end:
            await network.infer(frame)
            if started >= window_start:
                last_done = time.perf_counter()
                latencies.append(last_done - started)

    tasks = [asyncio.create_task(caller(f)) for f in frames]
    await asyncio.sleep(WARMUP_S)
    on_open()
    window_start, cpu0 = time.perf_counter(), time.process_time()
    end = window_start + seconds
    await asyncio.sleep(seconds)
    on_close()
    window_s = time.perf_counter() - window_start
    await asyncio.gather(*tasks)
    return latencies, max(last_done - window_start, 1e-9), window_s, time.process_time() - cpu0


def _delta(after: dict[str, Any], before: dict[str, Any], key: str) -> float:
    return float(after.get(key, 0)) - float(before.get(key, 0))


def run_device_benchmark(
    network: str = "clip_vit_b_32_image_encoder", callers: int = 16, seconds: float = 10.0, profile: str = "hailo8"
) -> dict[str, Any]:
    """Drive `network` with `callers` concurrent callers on the emulated device; report the rates."""
    spec = NETWORKS[network]
    if len(spec.inputs) != 1 or spec.inputs[0].type != "UINT8":
        raise ValueError(f"{network}: the benchmark drives single-input uint8 image networks")
    a_ms, b_ms = spec.timing_ms[profile]
    device = emulator.device()
    device.reset()
    snapshots: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as models:
        path = Path(models) / f"{spec.hef}.hef"
        write_hef(path, spec=spec, compute={"kind": "synthetic", "seed": 0}, hw_arch=profile)
        settings = Settings(hailo_device="emulator", hailo_emulator_profile=profile, models_dir=Path(models))
        runtime = Runtime(settings)
        try:
            net = runtime.load(path, batch_size=spec.batch_size, priority=spec.priority)

            def snapshot(label: str) -> None:
                snapshots[f"{label}_device"] = dict(device.counters()["networks"].get(spec.group, {}))
                snapshots[f"{label}_host"] = runtime.stats()["networks"][net.name]

            latencies, wall_s, window_s, cpu_s = asyncio.run(
                drive(net, callers, seconds, lambda: snapshot("start"), lambda: snapshot("end"))
            )
        finally:
            runtime.close()
    frames = len(latencies)
    start_d, end_d = snapshots["start_device"], snapshots["end_device"]
    start_h, end_h = snapshots["start_host"], snapshots["end_host"]
    device_frames, device_bursts = _delta(end_d, start_d, "frames"), _delta(end_d, start_d, "bursts")
    host_frames, host_bursts = _delta(end_h, start_h, "frames"), _delta(end_h, start_h, "bursts")
    bound = device_bound_fps(a_ms, b_ms, spec.batch_size)
    fps = frames / wall_s
    return {
        "network": network,
        "profile": profile,
        "callers": callers,
        "seconds": wall_s,
        "batch_size": spec.batch_size,
        "burst_cost_ms": {"a": a_ms, "b": b_ms},
        "frames": frames,
        "frames_per_s": fps,
        "device_bound_fps": bound,
        "ratio": fps / bound,
        "device_utilisation": _delta(end_d, start_d, "busy_ms") / (1000.0 * window_s),
        "mean_device_burst": device_frames / device_bursts if device_bursts else 0.0,
        "mean_submitted_burst": host_frames / host_bursts if host_bursts else 0.0,
        "host_cpu_ms_per_frame": 1000.0 * cpu_s / frames if frames else float("nan"),
        **percentiles_ms(latencies),
    }
