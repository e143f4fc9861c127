"""Command-line options of `python -m ml_target bench`, importable without the benchmark's dependencies.

`ml_target.cli` builds its parser at start-up for every command, so this module imports nothing
heavier than argparse; the benchmark itself (`ml_target.benchmarks.service`) loads when it runs.

    bench [service] [--workload clip-image,clip-text,faces,ocr] [--concurrency 1,2,4,8,16,32]
          [--seconds 5] [--url URL] [--out DIR [--overwrite]] [--quick] ...
    bench device [--network NET] [--callers 16] [--seconds 10]
    bench decode-fidelity --visual-onnx PATH [--out DIR]
    bench cards [--workload clip-image,faces] [--concurrency 16,32] [--devices 1,2] [--repeats 3] [--no-fault]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

WORKLOAD_NAMES = ("clip-image", "clip-text", "faces", "ocr")
FACE_MODES = ("immich", "hailo-arcface")
DEFAULT_CONCURRENCY = (1, 2, 4, 8, 16, 32)
QUICK_CONCURRENCY = (1, 16)
DEVICE_NETWORK = "clip_vit_b_32_image_encoder"
REPORT_FILES = ("bench.json", "bench.md", "bench.png")
MIN_SEARCHES = 50  # per phase and idle: fewer, and the search-session verdict is withheld


@dataclass(frozen=True)
class Options:
    """What the service benchmark runs; see `add_arguments` for the meaning of each field."""

    workloads: tuple[str, ...] = WORKLOAD_NAMES
    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    seconds: float = 5.0
    warmup_s: float = 1.5
    immich_default: bool = True
    default_seconds: float = 60.0
    text_interval_s: float = 1.0
    searches: int = 120  # each mixed phase (and the idle one) lasts until this many searches answered
    idle_seconds: float = 12.0
    mixed_warmup_s: float = 12.0
    phase_warmup_s: float = 2.0
    profile: str = "hailo8"
    url: str | None = None
    out: Path = Path("bench-out")
    overwrite: bool = False
    cache_computes: bool = True
    quick: bool = False
    faces: str = "immich"  # "immich": Immich's recogniser on the host CPU (default); "hailo-arcface": the opt-in


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the modes: `service` (default, the whole worker), `device` (the runtime alone),
    `cards` (the runtime over 1..N emulated cards, `ml_target.benchmarks.cards`) and
    `decode-fidelity` (`ml_target.benchmarks.decode_fidelity`)."""
    parser.add_argument("mode", nargs="?", choices=("service", "device", "cards", "decode-fidelity"), default="service")
    parser.add_argument(
        "--workload",
        default=",".join(WORKLOAD_NAMES),
        help="comma-separated: " + ", ".join(WORKLOAD_NAMES) + "; none: only the Immich-default load",
    )
    parser.add_argument("--concurrency", help="comma-separated caller counts (default 1,2,4,8,16,32)")
    parser.add_argument("--seconds", type=float, help="measured seconds per point (default 5; device mode 10)")
    parser.add_argument(
        "--default-seconds", type=float, default=Options.default_seconds, help="Immich-default window (at least)"
    )
    parser.add_argument("--text-interval", type=float, default=Options.text_interval_s, help="s between user searches")
    parser.add_argument(
        "--searches",
        type=int,
        default=Options.searches,
        help=f"Immich-default phases last until this many searches answered (verdicts need {MIN_SEARCHES})",
    )
    parser.add_argument("--no-immich-default", action="store_true", help="skip the Immich-default mixed load")
    parser.add_argument(
        "--profile", default="hailo8", choices=("hailo8", "hailo8l", "hailo10h"), help="emulator timing profile"
    )
    parser.add_argument("--url", help="drive a running worker instead of starting one (no CPU accounting)")
    parser.add_argument(
        "--out", type=Path, help="directory for bench.json/.md/.png (default: a new bench-out/<UTC time>)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace bench.* files already in --out")
    parser.add_argument(
        "--no-compute-cache", action="store_true", help="run the emulated SCRFD/OCR computes for every frame"
    )
    parser.add_argument(
        "--quick", action="store_true", help="about a minute: concurrency 1,16, 1 s points, 5 s mixed phases (too short for a verdict)"
    )
    parser.add_argument(
        "--faces", choices=FACE_MODES, default=Options.faces,
        help="face recognition mode of the local worker: Immich's recogniser on the CPU (an IResNet-50 of "
        "buffalo_l's cost, random weights) or the Hailo ArcFace opt-in",
    )
    parser.add_argument("--network", default=DEVICE_NETWORK, help="device mode: the network to drive")
    parser.add_argument(
        "--visual-onnx", type=Path,
        help="decode-fidelity mode: an Immich-style CLIP visual ONNX (Immich's cache: clip/<model>/visual/model.onnx)",
    )
    parser.add_argument("--callers", type=int, default=16, help="device mode: concurrent callers")
    parser.add_argument("--devices", default="1,2", help="cards mode: comma-separated numbers of emulated cards")
    parser.add_argument("--repeats", type=int, default=3, help="cards mode: samples per point")
    parser.add_argument("--no-fault", action="store_true", help="cards mode: skip the lost-card scenario")
    add_library_arguments(parser)


def numbers(raw: str) -> tuple[int, ...]:
    return tuple(int(part) for part in raw.split(",") if part.strip())


def command_line(options: Options) -> str:
    """The explicit command that runs `options` again (recorded in the report)."""
    parts = [
        "python -m ml_target bench",
        f"--workload {','.join(options.workloads) or 'none'}",
        f"--concurrency {','.join(map(str, options.concurrency))}",
        "--quick" if options.quick else f"--seconds {options.seconds:g}",
        f"--profile {options.profile}",
    ]
    if options.immich_default and not options.quick:
        parts += [
            f"--default-seconds {options.default_seconds:g}",
            f"--text-interval {options.text_interval_s:g}",
            f"--searches {options.searches}",
        ]
    elif not options.immich_default:
        parts.append("--no-immich-default")
    if options.url:
        parts.append(f"--url {options.url}")
    if not options.cache_computes:
        parts.append("--no-compute-cache")
    if options.faces != Options.faces:
        parts.append(f"--faces {options.faces}")
    parts.append(f"--out {options.out}")
    if options.overwrite:
        parts.append("--overwrite")
    return " ".join(parts)


def fresh_out_dir(root: Path = Path("bench-out")) -> Path:
    """`root/<UTC time>`, with a suffix if that exists already: never an earlier run's directory."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    candidate, n = root / stamp, 1
    while candidate.exists():
        n += 1
        candidate = root / f"{stamp}-{n}"
    return candidate


def check_out_dir(out: Path, overwrite: bool) -> None:
    """Refuse, before running, to replace an earlier report (e.g. the committed docs/bench) unasked."""
    existing = [name for name in REPORT_FILES if (out / name).exists()]
    if existing and not overwrite:
        raise SystemExit(
            f"{out} already holds {', '.join(existing)}: pass --overwrite to replace them, "
            "or leave out --out for a new bench-out/<time> directory"
        )


def options_from(args: argparse.Namespace) -> Options:
    """Service-mode options from parsed arguments (`--quick` fills in short windows)."""
    names = tuple(name.strip() for name in args.workload.split(",") if name.strip() not in ("", "none"))
    unknown = [name for name in names if name not in WORKLOAD_NAMES]
    if unknown:
        raise SystemExit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOAD_NAMES)}")
    quick = args.quick
    if args.concurrency:
        concurrency = numbers(args.concurrency)
    else:
        concurrency = QUICK_CONCURRENCY if quick else DEFAULT_CONCURRENCY
    seconds = args.seconds if args.seconds is not None else (1.0 if quick else Options.seconds)
    out = args.out if args.out is not None else fresh_out_dir()
    check_out_dir(out, args.overwrite)
    return Options(
        workloads=names,
        concurrency=concurrency,
        seconds=seconds,
        warmup_s=0.5 if quick else Options.warmup_s,
        immich_default=not args.no_immich_default,
        default_seconds=5.0 if quick else args.default_seconds,
        text_interval_s=args.text_interval,
        searches=0 if quick else args.searches,
        idle_seconds=2.0 if quick else Options.idle_seconds,
        mixed_warmup_s=2.0 if quick else Options.mixed_warmup_s,
        phase_warmup_s=1.0 if quick else Options.phase_warmup_s,
        profile=args.profile,
        url=args.url,
        out=out,
        overwrite=args.overwrite,
        cache_computes=not args.no_compute_cache,
        quick=quick,
        faces=args.faces,
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
        if options.faces != Options.faces:
            parts.append(f"--faces {options.faces}")
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

    try:
        jobs = numbers(args.library_jobs)
    except ValueError:
        jobs = []
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
