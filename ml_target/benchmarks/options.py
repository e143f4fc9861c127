"""Command-line options of `python -m ml_target bench`, importable without the benchmark's dependencies.

`ml_target.cli` builds its parser at start-up for every command, so this module imports nothing
heavier than argparse; the benchmark itself (`ml_target.benchmarks.service`) loads when it runs.

    bench [service] [--workload clip-image,clip-text,faces,ocr] [--concurrency 1,2,4,8,16,32]
          [--seconds 5] [--url URL] [--out docs/bench] [--quick] ...
    bench device [--network NET] [--callers 16] [--seconds 10]
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

WORKLOAD_NAMES = ("clip-image", "clip-text", "faces", "ocr")
DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32)
QUICK_CONCURRENCY = (1, 4, 16)
DEVICE_NETWORK = "clip_vit_b_32_image_encoder"


@dataclass(frozen=True)
class Options:
    """What the service benchmark runs; see `add_arguments` for the meaning of each field."""

    workloads: tuple[str, ...] = WORKLOAD_NAMES
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    seconds: float = 5.0
    warmup_s: float = 1.5
    immich_default: bool = True
    default_seconds: float = 30.0
    text_interval_s: float = 1.0
    idle_seconds: float = 6.0
    profile: str = "hailo8"
    url: str | None = None
    out: Path = Path("docs/bench")
    cache_computes: bool = True
    quick: bool = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of both modes: `service` (default, the whole worker) and `device` (the runtime alone)."""
    parser.add_argument("mode", nargs="?", choices=("service", "device"), default="service")
    parser.add_argument(
        "--workload", default=",".join(WORKLOAD_NAMES), help="comma-separated: " + ", ".join(WORKLOAD_NAMES)
    )
    parser.add_argument("--concurrency", help="comma-separated caller counts (default 1,2,4,8,16,32)")
    parser.add_argument("--seconds", type=float, help="measured seconds per point (default 5; device mode 10)")
    parser.add_argument("--default-seconds", type=float, default=Options.default_seconds, help="Immich-default window")
    parser.add_argument("--text-interval", type=float, default=Options.text_interval_s, help="s between user searches")
    parser.add_argument("--no-immich-default", action="store_true", help="skip the Immich-default mixed load")
    parser.add_argument("--profile", default="hailo8", choices=("hailo8", "hailo8l"), help="emulator timing profile")
    parser.add_argument("--url", help="drive a running worker instead of starting one (no CPU accounting)")
    parser.add_argument("--out", type=Path, default=Options.out, help="directory for bench.json/.md/.png")
    parser.add_argument(
        "--no-compute-cache", action="store_true", help="run the emulated SCRFD/OCR computes for every frame"
    )
    parser.add_argument("--quick", action="store_true", help="concurrency 1,4,16, 2 s points, 12 s mixed load")
    parser.add_argument("--network", default=DEVICE_NETWORK, help="device mode: the network to drive")
    parser.add_argument("--callers", type=int, default=16, help="device mode: concurrent callers")
    add_library_arguments(parser)


def _numbers(raw: str) -> tuple[int, ...]:
    return tuple(int(part) for part in raw.split(",") if part.strip())


def command_line(options: Options) -> str:
    """The explicit command that runs `options` again (recorded in the report)."""
    parts = [
        "python -m ml_target bench",
        f"--workload {','.join(options.workloads)}",
        f"--concurrency {','.join(map(str, options.concurrency))}",
        "--quick" if options.quick else f"--seconds {options.seconds:g}",
        f"--profile {options.profile}",
    ]
    if options.immich_default and not options.quick:
        parts += [f"--default-seconds {options.default_seconds:g}", f"--text-interval {options.text_interval_s:g}"]
    elif not options.immich_default:
        parts.append("--no-immich-default")
    if options.url:
        parts.append(f"--url {options.url}")
    if not options.cache_computes:
        parts.append("--no-compute-cache")
    parts.append(f"--out {options.out}")
    return " ".join(parts)


def options_from(args: argparse.Namespace) -> Options:
    """Service-mode options from parsed arguments (`--quick` fills in short windows)."""
    names = tuple(name.strip() for name in args.workload.split(",") if name.strip())
    unknown = [name for name in names if name not in WORKLOAD_NAMES]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOAD_NAMES)}")
    quick = args.quick
    if args.concurrency:
        concurrency = _numbers(args.concurrency)
    else:
        concurrency = QUICK_CONCURRENCY if quick else DEFAULT_CONCURRENCY
    seconds = args.seconds if args.seconds is not None else (2.0 if quick else Options.seconds)
    return Options(
        workloads=names,
        concurrency=concurrency,
        seconds=seconds,
        warmup_s=1.0 if quick else Options.warmup_s,
        immich_default=not args.no_immich_default,
        default_seconds=12.0 if quick else args.default_seconds,
        text_interval_s=args.text_interval,
        idle_seconds=3.0 if quick else Options.idle_seconds,
        profile=args.profile,
        url=args.url,
        out=args.out,
        cache_computes=not args.no_compute_cache,
        quick=quick,
    )


LIBRARY_JOBS = (2, 2, 1)  # Immich's default concurrency of Smart Search, Face Detection, OCR
LIBRARY_SIZE = 300_000
# Emulated frames memoised per network during a library scan: every detector frame and text window
# of one pass through the mix, so repeated photos cost the emulator nothing (`benchmarks.server`).
LIBRARY_CACHE_FRAMES = 400


@dataclass(frozen=True)
class LibraryOptions:
    """`bench --library`: job concurrencies, measured seconds per phase, library size to project."""

    jobs: tuple[int, int, int] = LIBRARY_JOBS
    seconds: float = 40.0
    warmup_s: float = 4.0
    size: int = LIBRARY_SIZE
    cache_frames: int = LIBRARY_CACHE_FRAMES
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def command_line(self, options: Options) -> str:
        """The explicit command that runs this scan again (recorded in the report)."""
        parts = [
            "python -m ml_target bench --library",
            f"--library-jobs {','.join(map(str, self.jobs))}",
            f"--library-seconds {self.seconds:g}",
            f"--library-size {self.size}",
            f"--profile {options.profile}",
        ]
        if options.url:
            parts.append(f"--url {options.url}")
        return " ".join([*parts, f"--out {options.out}"])


def add_library_arguments(parser: argparse.ArgumentParser) -> None:
    """`--library` and its options (a whole library scan; `ml_target.benchmarks.library`)."""
    parser.add_argument(
        "--library", action="store_true", help="simulate Immich's library scan (all three jobs) and project its time"
    )
    parser.add_argument(
        "--library-jobs", default=",".join(map(str, LIBRARY_JOBS)),
        help="concurrency of Smart Search, Face Detection and OCR (default 2,2,1 as Immich)",
    )
    parser.add_argument(
        "--library-seconds", type=float, default=LibraryOptions.seconds, help="measured seconds per scan phase"
    )
    parser.add_argument("--library-size", type=int, default=LIBRARY_SIZE, help="photos to project the scan for")


def library_options_from(args: argparse.Namespace) -> LibraryOptions:
    """Library-scan options from parsed arguments; three positive concurrencies are required."""
    import os

    jobs = _numbers(args.library_jobs)
    if len(jobs) != 3 or min(jobs) < 1:
        raise SystemExit(f"--library-jobs takes three positive concurrencies (smart search, faces, OCR), got {args.library_jobs!r}")
    if args.library_seconds <= 0 or args.library_size < 1:
        raise SystemExit("--library-seconds and --library-size must be positive")
    quick = args.quick
    return LibraryOptions(
        jobs=(jobs[0], jobs[1], jobs[2]),
        seconds=min(args.library_seconds, 8.0) if quick else args.library_seconds,
        warmup_s=2.0 if quick else LibraryOptions.warmup_s,
        size=args.library_size,
        load_before=os.getloadavg(),
    )
