"""Service benchmark: the whole worker under Immich's traffic, against the device-bound limit.

`python -m ml_target bench [--workload clip-image,clip-text,faces,ocr] [--concurrency 1,2,4,8,16,32]
[--seconds 5] [--url URL] [--out DIR [--overwrite]] [--quick]` starts the worker in a subprocess on the
emulated device ("hailo8" timing profile, emulated models in a temporary directory) or targets a
running worker, drives each workload at each concurrency with pre-encoded Immich requests built
from real photographs, then runs "Immich default" (smart search 2, faces 2, OCR 1 concurrent jobs,
plus a user's text search every `--text-interval` s) to compare a text query's latency under that
load with its idle latency: each latency ratio with its sample counts and a bootstrap confidence
interval, and a verdict against the 1.5x target only when each side has at least `MIN_SEARCHES`
searches. It writes `bench.json`, `bench.md` and `bench.png` to `--out`, by default a new
`bench-out/<UTC time>` directory; it never replaces an earlier report without `--overwrite`.

`python -m ml_target bench device [...]` runs the runtime-only device benchmark instead.

Why a subprocess: the server's CPU time is read from /proc per thread, so the load generator's
own work is not counted as the worker's, and the emulated device's compute (its own thread) is
reported apart from the worker's host work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

from ml_target.benchmarks import photos
from ml_target.benchmarks.decoding import reduced_decode_effect
from ml_target.benchmarks.http import HttpError, Pool, request_bytes
from ml_target.benchmarks.load import (
    Body,
    Stream,
    count_faces,
    drive,
    multipart,
    predict_requests,
)
from ml_target.benchmarks.options import (
    MIN_SEARCHES,
    WORKLOAD_NAMES,
    Options,
    add_arguments,
    command_line,
    numbers,
    options_from,
)
from ml_target.benchmarks.procstat import RECOGNISER_GROUP, cpu_by_group, process_cpu, thread_cpu
from ml_target.benchmarks.summary import (
    arrival_wait_quantile,
    bound_and_ratio,
    cpu_per_request,
    device_delta,
    latency_ratio,
    measured_frames,
    percentiles,
    verdict,
)
from ml_target.benchmarks.workloads import Workload, workloads
from ml_target.config import Settings

IMMICH_DEFAULT_JOBS = {"clip-image": 2, "faces": 2, "ocr": 1}
TARGET_RATIO = 1.5  # a search's p95 under Immich's default load, over its idle p50
STARTUP_TIMEOUT_S = 180.0
SERVER_ENV = {
    "HAILO_DEVICE": "emulator",
    "CLIP_BACKEND": "vit-b-32",
    "LOG_LEVEL": "warning",
}


@dataclass
class Target:
    """A worker to drive: its URL, and its pid when it runs here (for CPU accounting)."""

    url: str
    pid: int | None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen | None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the benchmark worker exited with status {process.returncode}")
        try:
            if httpx.get(f"{url}/ping", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the benchmark worker did not answer /ping within {STARTUP_TIMEOUT_S:g} s")


@contextmanager
def local_worker(options: Options, cache_frames: int | None = None) -> Iterator[Target]:
    """The worker in a subprocess on the emulated device, with emulated models in a temporary directory;
    `cache_frames` sizes the emulated-compute cache (`benchmarks.server`) when set."""
    from ml_target.testing.emulated_models import write_emulated_models_dir
    from ml_target.testing.face_models import iresnet_model, write_recogniser

    with tempfile.TemporaryDirectory(prefix="ml_target-bench-") as models:
        write_emulated_models_dir(Path(models), arch="hailo8")
        if options.faces == "immich" and "faces" in options.workloads:
            # What buffalo_l's w600k_r50 costs the CPU: its architecture, random weights (no weights ship).
            write_recogniser(Path(models), "buffalo_l", iresnet_model())
        port = _free_port()
        env = {
            **os.environ,
            **SERVER_ENV,
            "FACE_SERVE_ANY_MODEL_NAME": "true" if options.faces == "hailo-arcface" else "false",
            "HAILO_EMULATOR_PROFILE": options.profile,
            "MODELS_DIR": models,
            "IMMICH_HOST": "127.0.0.1",
            "IMMICH_PORT": str(port),
            "BENCH_CACHE_COMPUTES": "true" if options.cache_computes else "false",
        }
        if cache_frames is not None:
            env["BENCH_CACHE_FRAMES"] = str(cache_frames)
        process = subprocess.Popen([sys.executable, "-m", "ml_target.benchmarks.server"], env=env)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(url, process)
            yield Target(url, process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def request_bodies(workload: Workload) -> list[Body]:
    """Pre-encoded requests for a workload, from the photographs in `ml_target.benchmarks.photos`."""
    if workload.payload == "text":
        return [multipart(workload.entries, text=query) for query in photos.SEARCH_QUERIES]
    images = {"faces": photos.group_jpegs, "ocr": photos.text_jpegs}.get(workload.name, photos.preview_jpegs)()
    return [multipart(workload.entries, image=image) for image in images]


class Sampler:
    """Brackets a measured window: server CPU per thread, emulated device counters, client CPU."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.control = Pool(target.url)
        self.snapshots: dict[str, dict[str, Any]] = {}

    async def __call__(self, label: str) -> None:
        snapshot: dict[str, Any] = {"client_cpu": time.process_time(), "device": await self._device()}
        if self.target.pid is not None:
            snapshot["threads"] = thread_cpu(self.target.pid)
            snapshot["process"] = process_cpu(self.target.pid)
        self.snapshots[label] = snapshot

    async def _device(self) -> dict[str, Any]:
        try:
            status, body = await self.control.send(request_bytes("GET", "/_bench/device", self.control.authority))
        except HttpError:
            return {}
        return orjson.loads(body) if status == 200 else {}

    def cpu(self) -> tuple[dict[str, float], float | None, float]:
        """(CPU s per server thread group, server process CPU s or None, client CPU s) over the window."""
        start, end = self.snapshots["start"], self.snapshots["end"]
        client = end["client_cpu"] - start["client_cpu"]
        if "threads" not in start:
            return {}, None, client
        names = {int(tid): name for tid, name in end["device"].get("threads", {}).items()}
        return cpu_by_group(start["threads"], end["threads"], names), end["process"] - start["process"], client


def stream_summary(stream: Stream, window: tuple[float, float], *, keep_samples: bool = False) -> dict[str, Any]:
    """Rate, latency percentiles and errors of one stream's answers inside the window (and, with
    `keep_samples`, every latency in ms, for confidence intervals)."""
    wall = window[1] - window[0]
    done = stream.completed(*window)
    ok = [s for s in done if s[2] == 200]
    summary: dict[str, Any] = {
        "requests": len(ok),
        "errors": len(done) - len(ok),
        "error_statuses": sorted({s[2] for s in done if s[2] != 200}),
        "rps": len(ok) / wall,
        **percentiles([end - start for start, end, _, _ in ok]),
    }
    if stream.check is not None and ok:
        summary["items_per_request"] = sum(s[3] for s in ok) / len(ok)
    if keep_samples:
        summary["latencies_ms"] = [1000.0 * (end - start) for start, end, _, _ in ok]
    return summary


def window_row(
    sampler: Sampler, window: tuple[float, float], requests: int, frames: dict[str, float], profile: str
) -> dict[str, Any]:
    """Device use, CPU per request and the device-bound comparison for a window with `requests` answers."""
    wall = window[1] - window[0]
    start, end = sampler.snapshots["start"], sampler.snapshots["end"]
    row: dict[str, Any] = {"wall_s": wall}
    if start["device"] and end["device"]:
        row["device"] = device_delta(start["device"], end["device"], wall)
        row["frames_per_request"] = measured_frames(row["device"], requests)
    groups, process_s, client_s = sampler.cpu()
    if process_s is not None and requests:
        row["cpu_ms"] = {
            **cpu_per_request(groups, requests),
            "server_ms": 1000.0 * process_s / requests,
            "client_ms": 1000.0 * client_s / requests,
        }
    used = frames or row.get("frames_per_request", {})
    row.update(bound_and_ratio(used, profile, requests / wall))
    return row


async def run_workload(
    target: Target,
    workload: Workload,
    bodies: list[Body],
    concurrency: int,
    options: Options,
    frames: dict[str, float],
) -> dict[str, Any]:
    """One workload at one concurrency: closed loops for warm-up plus the measured window.

    `frames` (device frames per request by HEF) set the device-bound limit; empty means this
    window's own measurement.
    """
    await _end_search_session(target)
    pool = Pool(target.url)
    requests = predict_requests(bodies, pool)
    stream = Stream(workload.name, requests, concurrency, check=count_faces if workload.name == "faces" else None)
    sampler = Sampler(target)
    # At least one answer per caller in the window (OCR at concurrency 16 answers every few seconds).
    window = await drive(
        pool, [stream], warmup_s=options.warmup_s, seconds=options.seconds, on_window=sampler,
        min_answers=(stream, concurrency), max_seconds=max(3 * options.seconds, 15.0),
    )
    pool.close()
    sampler.control.close()
    result = stream_summary(stream, window)
    row = window_row(sampler, window, result["requests"], frames, options.profile)
    recogniser_ms = row.get("cpu_ms", {}).get("by_thread", {}).get(RECOGNISER_GROUP)
    faces = result.get("items_per_request")
    if recogniser_ms and faces:
        row["recogniser_cpu_ms_per_face"] = recogniser_ms / faces
    return {"workload": workload.name, "concurrency": concurrency, **result, **row}


async def run_immich_default(target: Target, all_workloads: dict[str, Workload], options: Options) -> dict[str, Any]:
    """A text query idle; the scan alone; then the scan plus searches, without and with search sessions.

    Immich's default job concurrency (smart search 2, faces 2, OCR 1) is the library scan; a user's
    searches arrive at random moments, `--text-interval` s apart on average, and each phase lasts
    until `--searches` of them have been answered. On the local worker the search-session policy is
    switched through the benchmark route, so both policies are measured on the same worker; a
    `--url` target is measured as it is configured.
    """
    text = all_workloads["clip-text"]
    pool = Pool(target.url)
    text_requests = predict_requests(request_bodies(text), pool)
    idle = Stream("clip-text", text_requests, interval_s=0.2)
    idle_sampler = Sampler(target)
    idle_window = await drive(
        pool, [idle], warmup_s=1.0, seconds=options.idle_seconds, on_window=idle_sampler,
        min_answers=(idle, options.searches),
    )
    idle_sampler.control.close()
    text_idle = stream_summary(idle, idle_window, keep_samples=True)
    await _end_search_session(target)
    # Unmeasured: the first pages and photos fill the worker's pools and the emulator's caches.
    await _mixed_phase(target, pool, all_workloads, options, searches=None, seconds=options.mixed_warmup_s)
    scan_only = await _mixed_phase(target, pool, all_workloads, options, searches=None)
    phases: dict[str, Any] = {}
    for label, change in (await _session_policies(target)).items():
        policy = await _set_search_sessions(target, change) if change is not None else None
        searches = Stream("clip-text", text_requests, interval_s=options.text_interval_s)
        phase = await _mixed_phase(target, pool, all_workloads, options, searches=searches)
        loaded, idle_ms = phase["text_loaded"]["latencies_ms"], text_idle["latencies_ms"]
        over_p50 = latency_ratio(loaded, 0.95, idle_ms, 0.5)
        phase.update(
            policy=policy,
            p95_loaded_over_p50_idle=over_p50,
            p95_loaded_over_p95_idle=latency_ratio(loaded, 0.95, idle_ms, 0.95),
            verdict=verdict(over_p50, TARGET_RATIO, MIN_SEARCHES),
            scan_rate_of_scan_only=phase["scan_rps"] / scan_only["scan_rps"] if scan_only["scan_rps"] else float("nan"),
        )
        phases[label] = phase
    pool.close()
    return {
        "jobs_concurrency": IMMICH_DEFAULT_JOBS,
        "text_interval_s": options.text_interval_s,
        "target_ratio": TARGET_RATIO,
        "min_searches": MIN_SEARCHES,
        "text_idle": text_idle,
        "scan_only": scan_only,
        "phases": phases,
        "headline": list(phases)[-1],
    }


async def _mixed_phase(
    target: Target,
    pool: Pool,
    all_workloads: dict[str, Workload],
    options: Options,
    *,
    searches: Stream | None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """Immich's default jobs (and `searches`, if any) for `seconds` (default `--default-seconds`)."""
    streams = [
        Stream(
            name,
            predict_requests(request_bodies(all_workloads[name]), pool),
            jobs,
            check=count_faces if name == "faces" else None,
        )
        for name, jobs in IMMICH_DEFAULT_JOBS.items()
    ]
    sampler = Sampler(target)
    driven = streams if searches is None else [*streams, searches]
    seconds = options.default_seconds if seconds is None else seconds
    wanted = (searches, options.searches) if searches is not None else None

    async def on_window(label: str) -> None:
        await sampler(label)
        if label == "end" and searches is not None:
            await _end_search_session(target)  # the scan's requests in flight finish at full speed

    # With searches, the window opens after the fixed warm-up: under search sessions the scan's
    # first answers can take half a minute, and the searches, not the scan's rate, are measured.
    window = await drive(
        pool, driven, warmup_s=options.phase_warmup_s, seconds=seconds, on_window=on_window, min_answers=wanted,
        await_callers=searches is None,
    )
    sampler.control.close()
    jobs = {s.label: stream_summary(s, window) for s in streams}
    requests = sum(j["requests"] for j in jobs.values())
    result: dict[str, Any] = {"jobs": jobs, "scan_rps": sum(j["rps"] for j in jobs.values())}
    if searches is not None:
        result["text_loaded"] = stream_summary(searches, window, keep_samples=True)
        requests += result["text_loaded"]["requests"]
    row = window_row(sampler, window, requests, {}, options.profile)
    text_network = next(iter(all_workloads["clip-text"].frames))
    if row.get("device"):
        result["burst_wait_p95_ms"] = arrival_wait_quantile(row["device"], 0.95, exclude=[text_network])
    result.update(device=row.get("device"), cpu_ms=row.get("cpu_ms"), search_sessions=_sessions_delta(sampler))
    return result


def _sessions_delta(sampler: Sampler) -> dict[str, float]:
    """What search sessions did during the window (empty when the worker does not report them)."""
    start, end = (sampler.snapshots[label]["device"].get("search_sessions") or {} for label in ("start", "end"))
    keys = ("sessions", "background_held_s", "starvation_grants")
    return {key: end[key] - start[key] for key in keys if key in start and key in end}


async def _end_search_session(target: Target, limit_s: float = 30.0) -> None:
    """End any search session before the next measurement, so that one workload's searches do not
    slow the next one's first point: through the benchmark route on the local worker (re-applying
    the policy ends the session), else by waiting for it to expire."""
    try:
        await _set_search_sessions(target, {})
        return
    except HttpError:
        pass
    control = Pool(target.url)
    deadline = time.monotonic() + limit_s
    try:
        while time.monotonic() < deadline:
            status, body = await control.send(request_bytes("GET", "/health", control.authority))
            if status != 200 or not (orjson.loads(body).get("search_sessions") or {}).get("active"):
                return
            await asyncio.sleep(0.25)
    finally:
        control.close()


async def _session_policies(target: Target) -> dict[str, dict[str, float] | None]:
    """The policies to compare: off and as configured, when the worker lets the benchmark switch them."""
    try:
        configured = await _set_search_sessions(target, {})
    except HttpError:
        return {"as configured": None}
    return {
        "without search sessions": {"session_s": 0.0},
        "with search sessions": {"session_s": configured["session_s"]},
    }


async def _set_search_sessions(target: Target, change: dict[str, float]) -> dict[str, Any]:
    """POST the change to the benchmark route; returns the policy now in force."""
    control = Pool(target.url)
    try:
        body = (orjson.dumps(change), {"content-type": "application/json"})
        status, content = await control.send(
            request_bytes("POST", "/_bench/search-sessions", control.authority, *body)
        )
    finally:
        control.close()
    if status != 200:
        raise HttpError(f"/_bench/search-sessions answered {status}")
    return orjson.loads(content)


async def run_all(target: Target, options: Options, settings: Settings) -> dict[str, Any]:
    """Every requested workload at every concurrency, then Immich default; progress on stderr."""
    all_workloads = workloads(settings)
    rows = []
    for name in options.workloads:
        workload = all_workloads[name]
        bodies = request_bodies(workload)
        # Workloads without declared frames (OCR: tiles and lines depend on the page) take them from
        # their first error-free point: refused requests would distort later windows' counts.
        frames = dict(workload.frames)
        for concurrency in options.concurrency:
            row = await run_workload(target, workload, bodies, concurrency, options, frames)
            if not frames and row["errors"] == 0 and row.get("frames_per_request"):
                frames = dict(row["frames_per_request"])
            recogniser = row.get("recogniser_cpu_ms_per_face")
            print(
                f"{name:>10} c={concurrency:<3} {row['rps']:8.1f} req/s  p95 {row['p95_ms']:8.1f} ms"
                f"  {100 * row.get('ratio_to_bound', float('nan')):5.1f}% of device bound"
                + (f"  recogniser {recogniser:.1f} CPU ms/face" if recogniser else ""),
                file=sys.stderr,
            )
            rows.append(row)
    report: dict[str, Any] = {"rows": rows}
    if options.immich_default:
        report["immich_default"] = mixed = await run_immich_default(target, all_workloads, options)
        for label, phase in mixed["phases"].items():
            ratio = phase["p95_loaded_over_p50_idle"]
            print(
                f"immich-default {label}: text p95 {phase['text_loaded']['p95_ms']:.1f} ms vs p50 "
                f"{mixed['text_idle']['p50_ms']:.1f} ms idle = {ratio['value']:.2f}x "
                f"(95% CI {ratio['low']:.2f}-{ratio['high']:.2f}, {ratio['n']} / {ratio['n_reference']} searches; "
                f"{phase['verdict']}); scan at {100 * phase['scan_rate_of_scan_only']:.0f}% of its rate without searches",
                file=sys.stderr,
            )
    return report


def run(options: Options) -> dict[str, Any]:
    """Run the benchmark and write bench.json, bench.md and bench.png to `options.out`."""
    from ml_target.benchmarks.report import write_reports

    settings = Settings(clip_backend=SERVER_ENV["CLIP_BACKEND"], face_serve_any_model_name=options.faces == "hailo-arcface")
    started, load_before = time.time(), os.getloadavg()
    if options.url is not None:
        target = Target(options.url.rstrip("/"), None)
        report = asyncio.run(run_all(target, options, settings))
    else:
        with local_worker(options) as target:
            report = asyncio.run(run_all(target, options, settings))
    report["meta"] = {
        "profile": options.profile,
        "cores": os.cpu_count(),
        "seconds_per_point": options.seconds,
        "warmup_s": options.warmup_s,
        "target": options.url or "local worker subprocess on the emulated device",
        "emulated_compute_cache": options.cache_computes and options.url is None,
        "faces": options.faces,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": time.time() - started,
        "load_average": {"start": list(load_before), "end": list(os.getloadavg())},  # 1, 5, 15 min
        "command": command_line(options),
    }
    if "clip-image" in options.workloads:
        report["decode"] = reduced_decode_effect()
    write_reports(report, options.out)
    return report


def command(args: argparse.Namespace) -> int:
    """Run what parsed `bench` arguments ask for (see `ml_target.benchmarks.options`)."""
    if args.mode == "cards":
        from ml_target.benchmarks import cards

        chosen = tuple(w.strip() for w in args.workload.split(",") if w.strip())
        if chosen == WORKLOAD_NAMES:  # the service default: the workloads this mode has
            chosen = tuple(cards.WORKLOAD_FRAMES)
        unknown = [w for w in chosen if w not in cards.WORKLOAD_FRAMES]
        if unknown:
            raise SystemExit(f"bench cards drives {', '.join(cards.WORKLOAD_FRAMES)}, not {', '.join(unknown)}")
        out = args.out if args.out != Options.out else cards.CardOptions.out
        report = cards.run(cards.CardOptions(
            workloads=chosen,
            concurrency=numbers(args.concurrency) if args.concurrency else cards.CardOptions.concurrency,
            devices=numbers(args.devices),
            profile=args.profile,
            seconds=5.0 if args.seconds is None else args.seconds,
            repeats=args.repeats,
            fault=not args.no_fault,
            out=out,
        ))
        print(f"wrote {out / 'cards.json'} and cards.md", file=sys.stderr)
        return 0 if report["rows"] else 1
    if args.mode == "device":
        from ml_target.benchmarks.device import run_device_benchmark

        seconds = 10.0 if args.seconds is None else args.seconds
        report = run_device_benchmark(network=args.network, callers=args.callers, seconds=seconds, profile=args.profile)
        print(json.dumps(report, indent=2))
        return 0
    if args.mode == "decode-fidelity":
        from ml_target.benchmarks.decode_fidelity import measure, write_report

        if args.visual_onnx is None:
            raise SystemExit("bench decode-fidelity needs --visual-onnx PATH (Immich's clip/<model>/visual/model.onnx, "
                             "or one written by scripts/make_random_clip_visual.py)")
        out = options_from(args).out
        report = measure(args.visual_onnx)
        write_report(report, out)
        print((out / "decode-fidelity.md").read_text())
        return 0
    if args.library:
        from ml_target.benchmarks.library import run_library
        from ml_target.benchmarks.options import library_options_from

        options = options_from(args)
        scan = run_library(options, library_options_from(args))
        print(f"wrote {options.out / 'library.json'}, library.md and library.png", file=sys.stderr)
        return 0 if scan["phases"] else 1
    options = options_from(args)
    report = run(options)
    print(f"wrote bench.json, bench.md{' and bench.png' if report['rows'] else ''} to {options.out}", file=sys.stderr)
    return 0 if report["rows"] or "immich_default" in report else 1


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m ml_target.benchmarks.service [service|device] [options]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="ml_target bench", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
