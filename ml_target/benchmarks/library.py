"""`python -m ml_target bench --library`: Immich's whole library scan against the worker.

Every photo of a mixed library (`library_photos.Mix`: stated shares of faces and text) goes
through Smart Search, Face Detection (with recognition) and OCR, each job a closed loop with
Immich's default concurrency (2 / 2 / 1, or `--library-jobs`). The benchmark measures:

1. each job alone at its concurrency: photos per second, device ms per photo per network (the
   emulated device's counters), host CPU ms per photo per thread group, worker and emulator apart
   (the emulator computes its stand-ins on the same cores, which a Hailo would not);
2. the scan as it runs: all jobs together, then the jobs still running once the fastest is done
   (`scan_projection`), each set measured with exactly those jobs running;

and projects the time for `--library-size` photos (300,000 by default), next to the floors of a
device that never idles and a host busy on every core, and says what limits the rate.
Results go to `library.json`, `library.md` and `library.png` in `--out`.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ml_target.benchmarks.http import Pool
from ml_target.benchmarks.library_photos import LibraryPhoto, Mix, library_photos
from ml_target.benchmarks.load import Stream, count_faces, drive, multipart, predict_requests
from ml_target.benchmarks.options import LibraryOptions, Options
from ml_target.benchmarks.procstat import EMULATOR_GROUP
from ml_target.benchmarks.scan_projection import Jobs, device_floor_s, host_floor_s, next_phase, project
from ml_target.benchmarks.service import SERVER_ENV, Sampler, Target, local_worker, stream_summary, window_row
from ml_target.benchmarks.workloads import Workload, workloads
from ml_target.catalog import backend_for_setting
from ml_target.config import Settings
from ml_target.tasks.ocr import DETECTOR_HEF, RECOGNISER_HEF

JOB_NAMES = {"clip-image": "Smart Search", "faces": "Face Detection", "ocr": "OCR"}
DEVICE_LIMITED = 0.9  # device utilisation from which the device is the limit
PRIME_CONCURRENCY = 4
HOST_LIMITED = 0.9  # share of the cores the server process uses from which the host is the limit


def job_networks(settings: Settings) -> dict[str, tuple[str, ...]]:
    """The HEFs each job drives, so device time in a mixed window is attributed to its job."""
    backend = backend_for_setting(settings.clip_backend)
    return {
        "clip-image": (backend.image_network.hef,),
        "faces": (settings.face_detector, settings.face_recogniser),
        "ocr": (DETECTOR_HEF, RECOGNISER_HEF),
    }


def per_photo(window: Mapping[str, Any], jobs: Mapping[str, Any], networks: Mapping[str, Sequence[str]]) -> dict:
    """Device ms per photo of each job (by network) in a window where `jobs` ran (their summaries)."""
    device = (window.get("device") or {}).get("networks", {})
    result = {}
    for job, summary in jobs.items():
        photos = summary["requests"]
        by_network = {hef: device[hef]["busy_ms"] / photos for hef in networks[job] if hef in device and photos}
        result[job] = {"device_ms": by_network, "device_ms_total": sum(by_network.values())}
    return result


def limit_of(window: Mapping[str, Any], cores: int) -> dict[str, Any]:
    """What bounds a window's rate: the device, the host CPU, or neither (the jobs' concurrency)."""
    utilisation = (window.get("device") or {}).get("utilisation", float("nan"))
    cpu = window.get("cpu_cores") or {}
    server = cpu.get("server", float("nan"))
    if utilisation >= DEVICE_LIMITED:
        verdict = "device"
    elif server >= HOST_LIMITED * cores:
        verdict = "host CPU"
    else:
        verdict = "job concurrency (device and host both have time left)"
    return {"verdict": verdict, "device_utilisation": utilisation, "server_cores": server, **cpu}


async def _phase(
    target: Target,
    running: Jobs,
    requests: Mapping[str, list[bytes]],
    concurrency: Mapping[str, int],
    pool: Pool,
    seconds: float,
    warmup_s: float,
    profile: str,
) -> dict[str, Any]:
    """The jobs of `running` together for `seconds`: per-job rates and the window's device and CPU use."""
    streams = [
        Stream(job, requests[job], concurrency[job], check=count_faces if job == "faces" else None)
        for job in sorted(running)
    ]
    sampler = Sampler(target)
    window = await drive(pool, streams, warmup_s=warmup_s, seconds=seconds, on_window=sampler)
    sampler.control.close()
    jobs = {s.label: stream_summary(s, window) for s in streams}
    photos = sum(j["requests"] for j in jobs.values())
    row = window_row(sampler, window, photos, {}, profile)
    groups, process_s, _ = sampler.cpu()
    if process_s is not None:
        emulator = groups.get(EMULATOR_GROUP, 0.0)
        row["cpu_cores"] = {
            "server": process_s / row["wall_s"],
            "worker": (process_s - emulator) / row["wall_s"],
            "emulator": emulator / row["wall_s"],
        }
    return {"running": sorted(running), "jobs": jobs, **row}


async def _prime(pool: Pool, requests: Mapping[str, list[bytes]]) -> None:
    """Send every photo once to every job, unmeasured: the emulator's compute cache then holds each
    photo's frames, so the measured windows do not count its first, uncached ONNX runs."""
    slots = asyncio.Semaphore(PRIME_CONCURRENCY)

    async def send(request: bytes) -> None:
        async with slots:
            await pool.send(request)

    for job_requests in requests.values():
        await asyncio.gather(*(send(request) for request in job_requests))


def _progress(label: str, phase: Mapping[str, Any]) -> None:
    rates = ", ".join(f"{JOB_NAMES[j]} {s['rps']:.2f}/s" for j, s in phase["jobs"].items())
    util = (phase.get("device") or {}).get("utilisation", float("nan"))
    print(f"library {label}: {rates}; device {100 * util:.0f}% busy", file=sys.stderr)


async def run_library_scan(target: Target, options: Options, library: LibraryOptions, settings: Settings) -> dict:
    """Each job alone, then the scan's phases; the report's numbers (see the module docstring)."""
    photos = library_photos(Mix())
    entries: dict[str, Workload] = workloads(settings)
    concurrency = dict(zip(JOB_NAMES, library.jobs))
    pool = Pool(target.url)
    requests = {
        job: predict_requests([multipart(entries[job].entries, image=p.jpeg) for p in photos], pool) for job in JOB_NAMES
    }
    networks = job_networks(settings)
    cores = os.cpu_count() or 1
    started = time.time()

    async def measure(running: Jobs, label: str) -> dict[str, Any]:
        phase = await _phase(
            target, running, requests, concurrency, pool, library.seconds, library.warmup_s, options.profile
        )
        phase["limit"] = limit_of(phase, cores)
        phase["per_photo"] = per_photo(phase, phase["jobs"], networks)
        _progress(label, phase)
        return phase

    await _prime(pool, requests)
    alone = {job: await measure(frozenset([job]), f"{JOB_NAMES[job]} alone") for job in JOB_NAMES}
    for job, phase in alone.items():
        cpu = phase.get("cpu_ms") or {}
        phase["per_photo"][job]["cpu_ms"] = cpu.get("by_thread", {})
        phase["per_photo"][job]["worker_cpu_ms"] = cpu.get("worker_ms")
        phase["per_photo"][job]["emulator_cpu_ms"] = cpu.get("emulator_ms")
    measured: dict[Jobs, dict[str, Any]] = {frozenset([job]): phase for job, phase in alone.items()}
    while (running := next_phase(library.size, JOB_NAMES, _rates(measured))) is not None:
        measured[running] = await measure(running, " + ".join(JOB_NAMES[j] for j in sorted(running)))
    pool.close()
    projection = project(library.size, JOB_NAMES, lambda running: _rates(measured)[running])
    device_ms = {job: alone[job]["per_photo"][job]["device_ms_total"] for job in JOB_NAMES}
    worker_ms = {job: alone[job]["per_photo"][job]["worker_cpu_ms"] or 0.0 for job in JOB_NAMES}
    together = measured[frozenset(JOB_NAMES)]
    return {
        "library_size": library.size,
        "jobs_concurrency": concurrency,
        "mix": Mix().shares(),
        "photos": [_describe(p) for p in photos],
        "alone": alone,
        "phases": [
            {
                "running": sorted(phase.running),
                "rates_per_hour": {job: 3600.0 * r for job, r in phase.rates.items()},
                "hours": phase.seconds / 3600.0,
                "finished": sorted(phase.finished),
                "limit": measured[phase.running]["limit"],
                "device": measured[phase.running].get("device"),
            }
            for phase in projection.phases
        ],
        "together": together,
        "done_hours": {job: s / 3600.0 for job, s in projection.done_s.items()},
        "total_hours": projection.total_s / 3600.0,
        "photos_per_hour": projection.photos_per_hour(),
        "device_floor_hours": device_floor_s(library.size, device_ms) / 3600.0,
        "worker_cpu_floor_hours": host_floor_s(library.size, worker_ms, cores) / 3600.0,
        "device_ms_per_photo": device_ms,
        "worker_cpu_ms_per_photo": worker_ms,
        "cores": cores,
        "duration_s": time.time() - started,
    }


def _rates(measured: Mapping[Jobs, Mapping[str, Any]]) -> dict[Jobs, dict[str, float]]:
    return {running: {job: s["rps"] for job, s in phase["jobs"].items()} for running, phase in measured.items()}


def _describe(photo: LibraryPhoto) -> dict[str, Any]:
    return {"name": photo.name, "faces": photo.face_count, "text": photo.text, "bytes": len(photo.jpeg)}


def run_library(options: Options, library: LibraryOptions) -> dict[str, Any]:
    """Start the worker (or use `--url`), run the scan, write library.{json,md,png} to `options.out`."""
    from ml_target.benchmarks.library_report import write_library_reports

    settings = Settings(clip_backend=SERVER_ENV["CLIP_BACKEND"], face_serve_any_model_name=True)
    if options.url is not None:
        report = asyncio.run(run_library_scan(Target(options.url.rstrip("/"), None), options, library, settings))
    else:
        with local_worker(options, cache_frames=library.cache_frames) as target:
            report = asyncio.run(run_library_scan(target, options, library, settings))
    report["meta"] = {
        "profile": options.profile,
        "command": library.command_line(options),
        "target": options.url or "local worker subprocess on the emulated device",
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - report["duration_s"])),
        "load_before": library.load_before,
        "load_after": os.getloadavg(),
    }
    write_library_reports(report, options.out)
    return report
