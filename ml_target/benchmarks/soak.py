"""Soak benchmark: Immich's mixed traffic for a long time, with device faults injected at intervals.

A worker on a NAS runs for months and a PCIe card can wedge, so the questions are not "how fast"
but "does it keep serving, does it recover by itself, does it grow". The whole service
(`build_app` on the emulated device, an emulated models directory, real uvicorn on a local socket)
runs in this process; `concurrency` closed-loop clients send the requests Immich's jobs send (smart
search image, faces, OCR, search text) while a fault loop injects, one after another, a failed
`run_async` (model-level), failed bursts (device-level status), a stall longer than the request
deadline, and a vanished-then-restored device, and waits for `/health` to report recovery.

A request that fails with 503 while a fault is active (from injection until recovery plus a short
grace) is an expected error; anything else that is not a 200 (a 5xx other than 503, a 4xx, a 503
outside a fault, a client timeout, a dropped connection) is unexpected. RSS, threads and open file
descriptors are sampled throughout; growth is measured from the end of the warm-up. RSS is judged
on samples taken with nothing in flight, before each fault (`_idle_sample`).

Client and server share the process (faults must reach the emulator), so RSS includes the client.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import logging
import os
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from ml_target.benchmarks.device import percentiles_ms
from ml_target.config import Settings
from ml_target.hailo import emulator
from ml_target.heap import configure_heap, release_free_heap

CLIP_IMAGE = '{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}'
CLIP_TEXT = '{"clip":{"textual":{"modelName":"ViT-B-32__openai","options":{"language":"en"}}}}'
FACES = (
    '{"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":0.7}},'
    '"recognition":{"modelName":"buffalo_l"}}}'
)
OCR = (
    '{"ocr":{"detection":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.5,"maxResolution":736}},'
    '"recognition":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.8}}}}'
)
# Relative frequency of each request kind: Immich runs smart search and face detection on every
# asset, OCR on every asset but is CPU-bound on the emulator, and users search now and then.
MIX = (("clip-image", 3), ("faces", 3), ("ocr", 1), ("search", 2))
SEARCHES = ("a dog on the beach", "birthday cake", "snow mountains at sunset", "Katze auf dem Sofa")
FAULT_KINDS = ("run_async", "bursts", "stall", "vanish")
RECOVERY_LIMIT_S = 60.0
ERROR_PAUSE_S = 0.5  # a client pauses after a failure, as a job queue would, instead of spinning on fast 503s
FAULT_GRACE_S = 1.0  # requests already failing when /health turns healthy again finish within this
RSS_GROWTH_LIMIT_PCT = 10.0
IDLE_WAIT_S = 30.0  # for the clients' requests to finish before an idle sample (a stall's deadline is 11 s)
# A failed run_async or burst is noticed only by the traffic that meets it, and clients stop at the
# run's end: no fault is injected later than this before it (the idle sample before a fault can take
# up to IDLE_WAIT_S, so the interval check alone let one land after the end and never recover).
LAST_FAULT_BEFORE_END_S = 10.0


@dataclass(frozen=True)
class SoakConfig:
    """What to run: duration, clients, device profile, fault cadence, sampling."""

    seconds: float = 120.0
    concurrency: int = 8
    profile: str = "hailo8"
    fault_interval_s: float = 15.0
    warmup_s: float | None = None  # default: a quarter of the run, at most 5 minutes
    sample_interval_s: float = 2.0
    request_timeout_s: float = 10.0  # the device deadline; a stall is made longer than this
    vanish_s: float = 2.0
    seed: int = 0
    search_session_s: float = Settings.search_session_s  # 0: searches do not hold the scan back

    @property
    def warmup(self) -> float:
        """RSS settles within about five minutes (a 30-minute run: 570 MB at 1 min, 661 at 5,
        670 at 30), by then every fault kind has happened a few times."""
        return min(300.0, self.seconds / 4) if self.warmup_s is None else self.warmup_s


@dataclass
class _Outcome:
    kind: str
    started: float
    ended: float
    status: int | None
    error: str | None = None  # exception class for requests without a response, else the detail

    @property
    def label(self) -> str:
        return f"http_{self.status}" if self.status is not None else f"no_response_{self.error}"


@dataclass
class _Fault:
    kind: str
    network: str | None
    injected: float
    recovered: float | None = None

    def covers(self, started: float, ended: float) -> bool:
        end = (self.recovered if self.recovered is not None else float("inf")) + FAULT_GRACE_S
        return started <= end and ended >= self.injected


@dataclass
class _Sample:
    t: float
    rss_mb: float
    threads: int
    fds: int
    requests: int


@dataclass
class _Run:
    """Everything the loops record; read after they finish."""

    started: float = field(default_factory=time.monotonic)
    outcomes: list[_Outcome] = field(default_factory=list)
    faults: list[_Fault] = field(default_factory=list)
    samples: list[_Sample] = field(default_factory=list)
    idle: list[_Sample] = field(default_factory=list)  # `_idle_sample`
    open: asyncio.Event = field(default_factory=asyncio.Event)  # clients may send while set
    in_flight: int = 0


def rss_mb() -> float:
    """Resident set size of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _jpeg(pixels: np.ndarray, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def preview_images() -> dict[str, bytes]:
    """Preview-sized JPEGs like the ones Immich sends: a portrait, a text page, a textured photo."""
    from skimage import data

    from ml_target.testing.ocr_pages import text_page

    portrait = np.asarray(Image.fromarray(data.astronaut()).resize((1440, 1440), Image.Resampling.BILINEAR))
    page, _ = text_page(1440, 1080, 36)
    rng = np.random.default_rng(7)
    texture = rng.integers(0, 255, (135, 180, 3), dtype=np.uint8)
    photo = np.asarray(Image.fromarray(texture).resize((1440, 1080), Image.Resampling.BICUBIC))
    return {"portrait": _jpeg(portrait), "page": _jpeg(page), "photo": _jpeg(photo)}


def _form(entries: str, *, image: bytes | None = None, text: str | None = None) -> tuple[bytes, dict[str, str]]:
    """A multipart body laid out like Immich's server sends it (undici FormData)."""
    boundary = "----formdata-undici-0" + "".join(random.choices("0123456789", k=11))
    body = bytearray(f'--{boundary}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n{entries}\r\n'.encode())
    if image is not None:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="blob"\r\n'.encode()
        body += b"Content-Type: application/octet-stream\r\n\r\n" + image + b"\r\n"
    if text is not None:
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n{text}\r\n'.encode()
    body += f"--{boundary}--\r\n".encode()
    return bytes(body), {"content-type": f"multipart/form-data; boundary={boundary}"}


def requests_by_kind(images: dict[str, bytes]) -> dict[str, Callable[[random.Random], tuple[bytes, dict[str, str]]]]:
    """For each request kind, a function building one request body from the shared images."""
    return {
        "clip-image": lambda rng: _form(CLIP_IMAGE, image=rng.choice(list(images.values()))),
        "faces": lambda rng: _form(FACES, image=rng.choice((images["portrait"], images["photo"]))),
        "ocr": lambda rng: _form(OCR, image=rng.choice((images["page"], images["photo"]))),
        "search": lambda rng: _form(CLIP_TEXT, text=rng.choice(SEARCHES)),
    }


@contextmanager
def serve_emulated(config: SoakConfig) -> Iterator[str]:
    """The full service on the emulated device, on a local uvicorn socket; yields its base URL."""
    import uvicorn

    from ml_target.http_server import server_options
    from ml_target.service import build_app
    from ml_target.testing.emulated_models import write_emulated_models_dir

    emulator.device().reset()
    with tempfile.TemporaryDirectory(prefix="soak-models-") as models:
        write_emulated_models_dir(Path(models))
        settings = Settings(
            hailo_device="emulator",
            hailo_emulator_profile=config.profile,
            models_dir=Path(models),
            face_serve_any_model_name=True,
            request_timeout_s=config.request_timeout_s,
            search_session_s=config.search_session_s,
        )
        app = build_app(settings)
        options = {**server_options(settings), "host": "127.0.0.1", "port": 0, "log_level": "warning", "lifespan": "on"}
        server = uvicorn.Server(uvicorn.Config(app, **options))
        thread = threading.Thread(target=server.run, name="soak-uvicorn", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the soak server did not start")
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            thread.join(timeout=30)
            emulator.device().reset()


async def _clients(base_url: str, config: SoakConfig, run: _Run, end: float) -> None:
    builders = requests_by_kind(preview_images())
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    # A request may wait for its device deadline plus the queue wait; beyond that it counts as a hang.
    timeout = httpx.Timeout(config.request_timeout_s + Settings().queue_wait_s + 10.0)
    limits = httpx.Limits(max_connections=config.concurrency, max_keepalive_connections=config.concurrency)

    async def client(index: int, http: httpx.AsyncClient) -> None:
        rng = random.Random(config.seed * 1000 + index)
        while time.monotonic() < end:
            kind = rng.choices(kinds, weights)[0]
            body, headers = builders[kind](rng)
            await run.open.wait()
            started = time.monotonic()
            run.in_flight += 1
            try:
                response = await http.post("/predict", content=body, headers=headers)
                detail = None if response.status_code == 200 else response.text[:200]
                outcome = _Outcome(kind, started, time.monotonic(), response.status_code, detail)
            except httpx.HTTPError as exc:
                outcome = _Outcome(kind, started, time.monotonic(), None, type(exc).__name__)
            finally:
                run.in_flight -= 1
            run.outcomes.append(outcome)
            if outcome.status != 200:
                await asyncio.sleep(ERROR_PAUSE_S)

    async with httpx.AsyncClient(base_url=base_url, timeout=timeout, limits=limits) as http:
        await asyncio.gather(*(client(i, http) for i in range(config.concurrency)))


async def _health(http: httpx.AsyncClient) -> dict[str, Any]:
    try:
        response = await http.get("/health")
        return response.json() if response.status_code == 200 else {}
    except httpx.HTTPError:
        return {}


def _trouble_count(health: dict[str, Any]) -> int:
    """Failures the runtime has noticed so far: model errors, timeouts and device rebuilds."""
    networks = health.get("networks", {}).values()
    return sum(int(n.get("errors", 0)) + int(n.get("timeouts", 0)) for n in networks)


def stall_seconds(config: SoakConfig) -> float:
    """A stall long enough to pass the device deadline, so the runtime must time out and recover."""
    return config.request_timeout_s + 1.0


def _inject(kind: str, network: str, config: SoakConfig) -> None:
    device = emulator.device()
    if kind == "run_async":
        device.fail_next_run_async(network, status=8)  # HAILO_INTERNAL_FAILURE: the model, not the device
    elif kind == "bursts":
        device.fail_bursts(network, count=1)  # default status 36: the driver, so the VDevice is rebuilt
    elif kind == "stall":
        device.stall(network, stall_seconds(config))
    else:
        device.vanish()


async def _faults(base_url: str, config: SoakConfig, run: _Run, end: float) -> None:
    """Inject one fault per interval (kinds in turn, networks in turn) and time each recovery."""
    rng = random.Random(config.seed)
    async with httpx.AsyncClient(base_url=base_url, timeout=5.0) as http:
        groups = sorted({n["network_group"] for n in (await _health(http)).get("networks", {}).values()})
        index = 0
        while time.monotonic() + config.fault_interval_s < end:
            await asyncio.sleep(config.fault_interval_s)
            await _idle_sample(run)
            if time.monotonic() + LAST_FAULT_BEFORE_END_S > end:
                break
            kind = FAULT_KINDS[index % len(FAULT_KINDS)]
            network = None if kind == "vanish" else rng.choice(groups)
            index += 1
            before = await _health(http)
            fault = _Fault(kind, network, time.monotonic())
            run.faults.append(fault)
            _inject(kind, network or "", config)
            if kind == "vanish":
                await asyncio.sleep(config.vanish_s)
                emulator.device().restore()
            elif kind == "stall":
                # The stalled burst holds the device this long; /health can look healthy before the
                # deadline expires, so the fault is not over until the stall is.
                await asyncio.sleep(stall_seconds(config))
            fault.recovered = await _await_recovery(http, fault, before)


async def _idle_sample(run: _Run) -> None:
    """Hold the clients back, let their requests finish, and sample the worker with nothing in
    flight, after a garbage collection and glibc's return of its free pages: the memory the worker
    keeps between requests, which a leak raises. Under traffic RSS is that plus the photos in flight
    plus the freed buffers glibc keeps, which rise with the machine's cores, not with time."""
    run.open.clear()
    deadline = time.monotonic() + IDLE_WAIT_S
    try:
        while run.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        if run.in_flight == 0:
            gc.collect()
            release_free_heap()
            t = round(time.monotonic() - run.started, 2)
            run.idle.append(_Sample(t, rss_mb(), threading.active_count(), open_fds(), len(run.outcomes)))
    finally:
        run.open.set()


async def _await_recovery(http: httpx.AsyncClient, fault: _Fault, before: dict[str, Any]) -> float | None:
    """When /health is healthy again after the runtime noticed the fault; None if not in time."""
    noticed = False
    deadline = fault.injected + RECOVERY_LIMIT_S
    while time.monotonic() < deadline:
        health = await _health(http)
        noticed = noticed or (
            health.get("status") != "healthy"
            or _trouble_count(health) > _trouble_count(before)
            or health.get("rebuilds", 0) != before.get("rebuilds", 0)
        )
        if noticed and health.get("status") == "healthy":
            return time.monotonic()
        await asyncio.sleep(0.1)
    return None


async def _monitor(config: SoakConfig, run: _Run, start: float, end: float) -> None:
    while True:
        run.samples.append(
            _Sample(
                round(time.monotonic() - start, 2), rss_mb(), threading.active_count(), open_fds(), len(run.outcomes)
            )
        )
        if time.monotonic() >= end:
            return
        await asyncio.sleep(min(config.sample_interval_s, max(0.0, end - time.monotonic())))


async def _soak(base_url: str, config: SoakConfig) -> _Run:
    run = _Run()
    run.open.set()
    start = run.started
    end = start + config.seconds
    await asyncio.gather(
        _clients(base_url, config, run, end), _faults(base_url, config, run, end), _monitor(config, run, start, end)
    )
    return run


def _series(samples: Sequence[_Sample], after: float, attr: str, held: bool = False) -> dict[str, float]:
    """Level right after the warm-up and at the end, each the lowest of a fifth of the settled
    samples, plus the maximum.

    RSS jumps by up to a third while a backlog drains (after a stall every client's images are
    alive at once) and falls back within seconds; a leak raises the quiet level between such
    bursts, which a window's lowest sample follows and its median, when it holds a burst, does not.

    With `held`, the level after the warm-up is the highest any window had held by then: a
    vanished device's rebuild frees the old sessions and RSS dips for half a minute before it
    climbs back to the level the traffic needs, and a window caught in that dip is not the level.
    """
    values = [getattr(s, attr) for s in samples]
    settled = [getattr(s, attr) for s in samples if s.t >= after] or values
    window = max(1, len(settled) // 5)
    level = min(settled[:window])
    if held:
        before = values[: len(values) - len(settled)]
        level = max([level] + [min(before[i : i + window]) for i in range(0, len(before) - window + 1, window)])
    return {
        "after_warmup": float(level),
        "end": float(min(settled[-window:])),
        "max": max(values),
    }


def settled_from(config: SoakConfig, run: _Run) -> float:
    """Seconds into the run from which growth is judged: the warm-up, or later if by then not every
    fault kind has been injected and recovered once.

    The first stall's backlog (every client's images alive at once) and the first device re-open
    set RSS's high-water mark, which glibc keeps; on a slow machine they fall after a fixed warm-up
    and would read as growth. A leak grows again with every later cycle, which this still measures.
    """
    first_recovery: dict[str, float] = {}
    for fault in run.faults:
        if fault.recovered is not None:
            first_recovery.setdefault(fault.kind, fault.recovered - run.started)
    if set(first_recovery) != set(FAULT_KINDS):
        return config.warmup
    return max(config.warmup, max(first_recovery.values()))


def report(config: SoakConfig, run: _Run, wall_s: float) -> dict[str, Any]:
    """The soak's findings as a JSON-able dict; `passed` applies the CI criteria."""
    expected: Counter[str] = Counter()
    unexpected: Counter[str] = Counter()
    unexpected_examples: list[dict[str, Any]] = []
    latencies: dict[str, list[float]] = {}
    for outcome in run.outcomes:
        if outcome.status == 200:
            latencies.setdefault(outcome.kind, []).append(outcome.ended - outcome.started)
        elif outcome.status == 503 and any(f.covers(outcome.started, outcome.ended) for f in run.faults):
            expected[outcome.kind] += 1
        else:
            unexpected[outcome.label] += 1
            if len(unexpected_examples) < 10:
                at = round(outcome.started - run.started, 2)
                unexpected_examples.append(
                    {"t": at, "kind": outcome.kind, "status": outcome.status, "error": outcome.error}
                )
    faults: dict[str, dict[str, Any]] = {}
    for fault in run.faults:
        entry = faults.setdefault(fault.kind, {"injected": 0, "recovered": 0, "max_recovery_s": 0.0})
        entry["injected"] += 1
        if fault.recovered is not None:
            entry["recovered"] += 1
            entry["max_recovery_s"] = round(max(entry["max_recovery_s"], fault.recovered - fault.injected), 2)
    settled = settled_from(config, run)
    # Growth needs two idle samples after `settled`; a soak too short for them is not judged (fails).
    judged = sum(s.t >= settled for s in run.idle) >= 2
    rss = _series(run.idle, settled, "rss_mb", held=True) if judged else None
    growth = 100.0 * (rss["end"] - rss["after_warmup"]) / rss["after_warmup"] if rss else None
    recovered = sum(f.recovered is not None for f in run.faults)
    ok = sum(o.status == 200 for o in run.outcomes)
    result = {
        "config": {**asdict(config), "warmup_s": config.warmup},
        "growth_measured_from_s": round(settled, 1),
        "wall_s": round(wall_s, 1),
        "requests": len(run.outcomes),
        "ok": ok,
        "requests_per_s": round(len(run.outcomes) / wall_s, 2),
        "requests_by_kind": dict(Counter(o.kind for o in run.outcomes)),
        "expected_errors": {"total": sum(expected.values()), "by_kind": dict(expected)},
        "unexpected_errors": {
            "total": sum(unexpected.values()),
            "by_kind": dict(unexpected),
            "examples": unexpected_examples,
        },
        "faults": {
            "injected": len(run.faults),
            "recovered": recovered,
            "by_kind": faults,
            "timeline": [
                {
                    "t": round(f.injected - run.started, 2),
                    "kind": f.kind,
                    "network": f.network,
                    "recovery_s": None if f.recovered is None else round(f.recovered - f.injected, 2),
                }
                for f in run.faults
            ],
        },
        "latency_ok_ms": {k: {n: round(v, 1) for n, v in percentiles_ms(l).items()} for k, l in latencies.items()},
        "rss_mb": None if rss is None else {**{k: round(v, 1) for k, v in rss.items()}, "growth_after_warmup_pct": round(growth, 2)},
        "busy_rss_mb": _series(run.samples, settled, "rss_mb"),
        "threads": _series(run.samples, settled, "threads"),
        "open_fds": _series(run.samples, settled, "fds"),
        "samples": [asdict(s) for s in run.samples],
        "idle_samples": [asdict(s) for s in run.idle],
    }
    result["passed"] = (
        result["unexpected_errors"]["total"] == 0
        and recovered == len(run.faults)
        and growth is not None
        and growth <= RSS_GROWTH_LIMIT_PCT
        and ok > 0
    )
    return result


def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Serve (with the C heap set up as `serve` sets it), soak, shut down; returns `report(...)`
    and the heap settings applied."""
    heap = configure_heap()
    started = time.monotonic()
    with serve_emulated(config) as base_url:
        run = asyncio.run(_soak(base_url, config))
    return {**report(config, run, time.monotonic() - started), "heap": heap}


def main(argv: Sequence[str] | None = None) -> int:
    """`ml_target bench --soak [options]`: run the soak, print the report (without the samples),
    return 0 if it passed the CI criteria, 1 if not."""
    defaults = SoakConfig()
    parser = argparse.ArgumentParser(prog="ml_target bench --soak", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=defaults.seconds, help="duration of the soak")
    parser.add_argument("--concurrency", type=int, default=defaults.concurrency, help="concurrent clients")
    parser.add_argument("--profile", default=defaults.profile, choices=("hailo8", "hailo8l"))
    parser.add_argument(
        "--fault-interval", type=float, default=defaults.fault_interval_s, help="seconds between injected faults"
    )
    parser.add_argument("--warmup", type=float, default=None, help="seconds before RSS growth is measured")
    parser.add_argument(
        "--search-session",
        type=float,
        default=defaults.search_session_s,
        help="SEARCH_SESSION_S of the soaked worker (0: searches do not hold the scan back)",
    )
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON report, with samples, here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = SoakConfig(
        seconds=args.seconds,
        concurrency=args.concurrency,
        profile=args.profile,
        fault_interval_s=args.fault_interval,
        warmup_s=args.warmup,
        search_session_s=args.search_session,
    )
    result = run_soak(config)
    if args.output is not None:
        args.output.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "samples"}, indent=2))
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
