"""Card benchmark: does a second card double the device-bound rate, and what does losing one cost?

`python -m ml_target bench cards [--workload clip-image,faces] [--concurrency 16,32] [--devices 1,2]
[--profile hailo8|hailo8l|hailo10h] [--seconds 5] [--repeats 3] [--no-fault] [--out DIR]`

What it drives, and why it is device-bound: the real `Runtime` (production code path, emulator
selected) with N emulated cards of the profile's chip, each its own VDevice, and C callers in
closed loops calling the networks directly — no HTTP, no JPEG decode, no pre- or post-processing.
Each caller's request is the device traffic of one Immich request: `clip-image` one frame of the
CLIP image encoder; `faces` one SCRFD frame, then `FACES_PER_PHOTO` ArcFace frames at once (what
the faces task sends for a photo with three faces). Frames are fixed random pixels and the
emulated networks have `constant` compute (outputs at the zero point, inputs unread), because the
emulator's own per-frame work is host CPU a real card does not spend: a synthetic SCRFD frame
(dequantise 640x640x3, CRC, random outputs) costs it several ms, more than the 0.95 ms a Hailo-8
takes. So the host work per frame is the runtime's own (queue, bindings, callbacks, output
buffers) and the emulated cards' modelled burst time `a + b*B` is the limit. On a small machine
the full service cannot be device-bound with two cards (decode, HTTP and post-processing cost more
CPU than two emulated Hailo-8s leave); `bench service` measures that.

Each point runs `--repeats` times (samples); the report gives the mean and the range. The fault
scenario (two cards, each workload at the highest concurrency) makes card 2 vanish under load,
keeps it away for `--seconds`, brings it back and waits for its rebuild: it counts failed requests
against the frames card 2 had in flight when it vanished, and the rate before, during and after.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml_target.benchmarks.workloads import FACES_PER_PHOTO, device_bound_rps
from ml_target.config import Settings
from ml_target.hailo import emulator
from ml_target.hailo.emulator.models_dir import write_hef
from ml_target.hailo.runtime import Runtime
from ml_target.hailo.types import Network
from ml_target.networks import NETWORKS

WARMUP_S = 1.0
REJOIN_LIMIT_S = 30.0
CHIP_OF_PROFILE = {"hailo8": "hailo8", "hailo8l": "hailo8l", "hailo10h": "hailo10h"}
# Device frames of one request by workload (what the runtime is driven with).
WORKLOAD_FRAMES = {
    "clip-image": {"clip_vit_b_32_image_encoder": 1.0},
    "faces": {"scrfd_2.5g": 1.0, "arcface_r50": float(FACES_PER_PHOTO)},
}


@dataclass(frozen=True)
class CardOptions:
    workloads: tuple[str, ...] = ("clip-image", "faces")
    concurrency: tuple[int, ...] = (16, 32)
    devices: tuple[int, ...] = (1, 2)
    profile: str = "hailo8"
    seconds: float = 5.0
    repeats: int = 3
    fault: bool = True
    out: Path = Path("/tmp/ml_target-bench-cards")

    def command_line(self) -> str:
        parts = [
            "python -m ml_target bench cards",
            f"--workload {','.join(self.workloads)}",
            f"--concurrency {','.join(map(str, self.concurrency))}",
            f"--devices {','.join(map(str, self.devices))}",
            f"--profile {self.profile}",
            f"--seconds {self.seconds:g}",
            f"--repeats {self.repeats}",
        ]
        if not self.fault:
            parts.append("--no-fault")
        return " ".join(parts + [f"--out {self.out}"])


@dataclass
class Calls:
    """Every request of a run: (start, end, ok) in perf_counter seconds."""

    done: list[tuple[float, float, bool]] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[tuple[float, float, bool]]:
        """Requests that started in [start, end) (so warm-up work in flight does not count)."""
        return [c for c in self.done if start <= c[0] < end]


class Rig:
    """A runtime over N emulated cards with the workload's networks loaded, and its callers' frames."""

    def __init__(self, models: Path, workload: str, cards: int, profile: str) -> None:
        chip = CHIP_OF_PROFILE[profile]
        settings = Settings(
            hailo_device="emulator",
            hailo_emulator_profile=profile,
            hailo_emulator_devices=(chip,) * cards,
            hailo_device_ids=("all",) if cards > 1 else (),
            models_dir=models,
            request_timeout_s=10.0,
            queue_wait_s=10.0,
        )
        self.runtime = Runtime(settings)  # the production rebuild backoff: rejoin times are real ones
        self.networks: dict[str, Network] = {}
        for hef in WORKLOAD_FRAMES[workload]:
            spec = NETWORKS[hef]
            self.networks[hef] = self.runtime.load(models / f"{hef}.hef", batch_size=spec.batch_size,
                                                   priority=spec.priority)
        rng = np.random.default_rng(0)
        self.frames = {hef: rng.integers(0, 256, size=net.inputs[0].shape, dtype=np.uint8)
                       for hef, net in self.networks.items()}
        self.workload = workload

    async def request(self) -> None:
        """One request's device traffic (module docstring)."""
        if self.workload == "clip-image":
            await self.networks["clip_vit_b_32_image_encoder"].infer(self.frames["clip_vit_b_32_image_encoder"])
            return
        await self.networks["scrfd_2.5g"].infer(self.frames["scrfd_2.5g"])
        face = self.frames["arcface_r50"]
        await asyncio.gather(*(self.networks["arcface_r50"].infer(face) for _ in range(FACES_PER_PHOTO)))

    def inflight_on(self, device_id: str) -> int:
        return sum(net.stats()["devices"][device_id]["inflight_frames"] for net in self.networks.values())

    def busy_ms(self) -> list[float]:
        return [card.counters()["busy_ms"] + card.counters()["switch_ms"] for card in emulator.devices()]

    def close(self) -> None:
        self.runtime.close()


async def _closed_loops(rig: Rig, callers: int, until: Callable[[], bool], calls: Calls) -> None:
    async def caller() -> None:
        while not until():
            started = time.perf_counter()
            try:
                await rig.request()
                calls.done.append((started, time.perf_counter(), True))
            except Exception:  # noqa: BLE001 - every failure counts as a failed request
                calls.done.append((started, time.perf_counter(), False))

    await asyncio.gather(*(caller() for _ in range(callers)))


def _rate(calls: list[tuple[float, float, bool]], seconds: float) -> float:
    return sum(1 for c in calls if c[2]) / seconds if seconds > 0 else float("nan")


async def _measure(rig: Rig, callers: int, seconds: float) -> dict[str, Any]:
    calls = Calls()
    stop_at = time.perf_counter() + WARMUP_S + seconds
    loops = asyncio.ensure_future(_closed_loops(rig, callers, lambda: time.perf_counter() >= stop_at, calls))
    await asyncio.sleep(WARMUP_S)
    start, busy0 = time.perf_counter(), rig.busy_ms()
    await asyncio.sleep(seconds)
    end, busy1 = time.perf_counter(), rig.busy_ms()
    await loops
    window = calls.between(start, end)
    return {
        "rps": _rate(window, end - start),
        "failed": sum(1 for c in window if not c[2]),
        "utilisation": [(b - a) / (1000.0 * (end - start)) for a, b in zip(busy0, busy1)],
        "p50_ms": float(np.percentile([1000 * (c[1] - c[0]) for c in window], 50)) if window else float("nan"),
    }


async def _fault(rig: Rig, callers: int, seconds: float) -> dict[str, Any]:
    """Card 2 vanishes under load for `seconds`, then comes back; see the module docstring."""
    second = emulator.devices()[1]
    calls = Calls()
    stop = asyncio.Event()
    loops = asyncio.ensure_future(_closed_loops(rig, callers, stop.is_set, calls))
    await asyncio.sleep(WARMUP_S)
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    inflight = rig.inflight_on(second.device_id)
    t_fault = time.perf_counter()
    second.vanish()
    await asyncio.sleep(seconds)
    t_restore = time.perf_counter()
    second.restore()
    deadline = t_restore + REJOIN_LIMIT_S
    while rig.runtime.health()["state"] != "healthy" and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    t_rejoined = time.perf_counter()
    await asyncio.sleep(seconds)
    t_end = time.perf_counter()
    stop.set()
    await loops
    measured = calls.between(t0, t_end)
    return {
        "inflight_on_lost_card": inflight,
        "failed": sum(1 for c in measured if not c[2]),
        "requests": len(measured),
        "rps_before": _rate(calls.between(t0, t_fault), t_fault - t0),
        "rps_lost": _rate(calls.between(t_fault, t_restore), t_restore - t_fault),
        "rps_after": _rate(calls.between(t_rejoined, t_end), t_end - t_rejoined),
        "rejoin_s": t_rejoined - t_restore,
        "rejoined": rig.runtime.health()["state"] == "healthy",
        "moved_frames": sum(net.stats()["devices"][second.device_id]["moved"] for net in rig.networks.values()),
    }


def write_models(directory: Path, profile: str) -> None:
    """Emulated HEFs of every benchmarked network for the profile's chip, constant compute."""
    chip = CHIP_OF_PROFILE[profile]
    for hef in {h for frames in WORKLOAD_FRAMES.values() for h in frames}:
        write_hef(directory / f"{hef}.hef", spec=NETWORKS[hef].for_arch(chip), hw_arch=chip,
                  compute={"kind": "constant"})


def _summary(samples: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(samples), "min": min(samples), "max": max(samples), "n": len(samples)}


def run(options: CardOptions) -> dict[str, Any]:
    """Every point, then the fault scenarios; writes cards.json and cards.md to `options.out`."""
    emulator.device().reset()
    started = time.time()
    load_before = os.getloadavg()
    rows = []
    faults = []
    with tempfile.TemporaryDirectory(prefix="ml_target-cards-") as tmp:
        models = Path(tmp)
        write_models(models, options.profile)
        for workload in options.workloads:
            bound_one = device_bound_rps(WORKLOAD_FRAMES[workload], options.profile)
            for cards in options.devices:
                rig = Rig(models, workload, cards, options.profile)
                try:
                    for callers in options.concurrency:
                        samples = [asyncio.run(_measure(rig, callers, options.seconds)) for _ in range(options.repeats)]
                        row = {
                            "workload": workload,
                            "cards": cards,
                            "concurrency": callers,
                            "rps": _summary([s["rps"] for s in samples]),
                            "failed": sum(s["failed"] for s in samples),
                            "device_bound_rps": cards * bound_one,
                            "utilisation": [statistics.fmean(u) for u in zip(*(s["utilisation"] for s in samples))],
                            "p50_ms": statistics.fmean(s["p50_ms"] for s in samples),
                        }
                        rows.append(row)
                        print(f"{workload:>10} cards={cards} c={callers:<3} {row['rps']['mean']:7.1f} req/s "
                              f"[{row['rps']['min']:.1f}-{row['rps']['max']:.1f}] bound {row['device_bound_rps']:.1f}",
                              flush=True)
                finally:
                    rig.close()
            if options.fault and 2 in options.devices:
                rig = Rig(models, workload, 2, options.profile)
                try:
                    result = asyncio.run(_fault(rig, max(options.concurrency), options.seconds))
                finally:
                    rig.close()
                faults.append({"workload": workload, "concurrency": max(options.concurrency), **result})
                print(f"{workload:>10} fault: {result['failed']} failed of {result['requests']} "
                      f"({result['inflight_on_lost_card']} frames in flight on the lost card), "
                      f"rejoined after {result['rejoin_s']:.1f} s", flush=True)
    emulator.device().reset()
    report = {
        "meta": {
            "command": options.command_line(),
            "profile": options.profile,
            "seconds": options.seconds,
            "repeats": options.repeats,
            "cores": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        },
        "rows": rows,
        "scaling": scaling(rows),
        "faults": faults,
    }
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "cards.json").write_text(json.dumps(report, indent=2))
    (options.out / "cards.md").write_text(markdown(report))
    return report


def scaling(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean rate of the most cards over one card, per workload and concurrency."""
    out = []
    for row in rows:
        if row["cards"] == 1:
            continue
        one = next((r for r in rows if r["cards"] == 1 and r["workload"] == row["workload"]
                    and r["concurrency"] == row["concurrency"]), None)
        if one is not None:
            out.append({"workload": row["workload"], "concurrency": row["concurrency"], "cards": row["cards"],
                        "ratio": row["rps"]["mean"] / one["rps"]["mean"]})
    return out


def markdown(report: dict[str, Any]) -> str:
    meta = report["meta"]
    lines = [
        "# Card benchmark",
        "",
        f"`{meta['command']}` on {meta['cores']} cores, profile `{meta['profile']}`, {meta['repeats']} samples of "
        f"{meta['seconds']:g} s per point; load average before {', '.join(f'{x:.2f}' for x in meta['load_before'])}, "
        f"after {', '.join(f'{x:.2f}' for x in meta['load_after'])}; started {meta['started_utc']}.",
        "",
        "| workload | conc. | cards | req/s mean | min-max | device-bound req/s | of bound | utilisation per card "
        "| p50 ms | failed |",
        "|---|---:|---:|---:|---|---:|---:|---|---:|---:|",
    ]
    for row in report["rows"]:
        rps = row["rps"]
        lines.append(
            f"| {row['workload']} | {row['concurrency']} | {row['cards']} | {rps['mean']:.1f} | "
            f"{rps['min']:.1f}-{rps['max']:.1f} | {row['device_bound_rps']:.1f} | "
            f"{100 * rps['mean'] / row['device_bound_rps']:.0f}% | "
            f"{', '.join(f'{100 * u:.0f}%' for u in row['utilisation'])} | {row['p50_ms']:.1f} | {row['failed']} |"
        )
    if report["scaling"]:
        lines += ["", "| workload | conc. | cards | rate over one card |", "|---|---:|---:|---:|"]
        lines += [f"| {s['workload']} | {s['concurrency']} | {s['cards']} | {s['ratio']:.2f}x |" for s in report["scaling"]]
    if report["faults"]:
        lines += [
            "",
            "Fault: card 2 of 2 vanishes under load, comes back after the same time, rebuilds and rejoins.",
            "",
            "| workload | conc. | requests | failed | frames in flight on the lost card | frames moved | req/s before "
            "| req/s card lost | req/s after rejoin | rejoin after restore |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for f in report["faults"]:
            lines.append(
                f"| {f['workload']} | {f['concurrency']} | {f['requests']} | {f['failed']} | {f['inflight_on_lost_card']} "
                f"| {f['moved_frames']} | {f['rps_before']:.1f} | {f['rps_lost']:.1f} | {f['rps_after']:.1f} "
                f"| {f['rejoin_s']:.1f} s{'' if f['rejoined'] else ' (not rejoined)'} |"
            )
    return "\n".join(lines) + "\n"
