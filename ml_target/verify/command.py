"""`python -m ml_target verify`: the command-line entry (`add_arguments`, `run`).

Settings (device, models directory, CLIP backend, enabled tasks, opt-ins) come from the
environment exactly as for `serve`, so `verify` judges the configuration that would serve Immich.
Heavy imports (onnxruntime, httpx, the service) happen in `run`, so that building the CLI parser
costs nothing; `ml_target.cli` checks the `verify` extra first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ml_target.config import Settings
from ml_target.errors import ConfigurationError

if TYPE_CHECKING:
    from ml_target.verify.compare import Plan
    from ml_target.verify.report import Report

DESCRIPTION = (
    "compare this worker's outputs with Immich's own models (from its model cache)"
)
TASKS = ("clip", "faces", "ocr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `verify` options."""
    parser.add_argument(
        "--immich-cache",
        type=Path,
        required=True,
        help="immich-machine-learning's /cache, copied or mounted",
    )
    parser.add_argument(
        "--images",
        type=Path,
        help="folder of JPEG/PNG/WebP images (default: the built-in set)",
    )
    parser.add_argument(
        "--queries",
        type=Path,
        help="text file, one search query per line (default: built-in)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("verify-report"),
        help="where report.json, report.txt, cosines.png go",
    )
    parser.add_argument(
        "--tasks",
        default=",".join(TASKS),
        help="comma-separated subset of clip,faces,ocr",
    )
    parser.add_argument(
        "--clip-model",
        help="Immich CLIP model to compare with (default: the one the backend serves)",
    )
    parser.add_argument(
        "--face-model",
        help="insightface pack to compare with (default: buffalo_l if cached)",
    )
    parser.add_argument(
        "--ocr-model", help="OCR model to compare with (default: PP-OCRv5_mobile)"
    )


def plan_from_args(args: argparse.Namespace) -> Plan:
    """Inputs and tasks from the command line; the built-in samples when none are given."""
    from ml_target.verify.compare import Plan
    from ml_target.verify.samples import (
        QUERIES,
        builtin_images,
        load_images,
        load_queries,
    )

    tasks = tuple(t.strip() for t in args.tasks.split(",") if t.strip())
    if not tasks or any(t not in TASKS for t in tasks):
        raise ConfigurationError(
            f"--tasks {args.tasks!r}: give a comma-separated subset of {','.join(TASKS)}"
        )
    overrides = (
        ("clip", args.clip_model),
        ("faces", args.face_model),
        ("ocr", args.ocr_model),
    )
    return Plan(
        images=load_images(args.images) if args.images else builtin_images(),
        queries=load_queries(args.queries) if args.queries else list(QUERIES),
        tasks=tasks,
        models={task: name for task, name in overrides if name},
    )


async def verify_configured(settings: Settings, cache_dir: Path, plan: Plan) -> Report:
    """Build the worker from `settings` (as `serve` does) and compare it with the cache's models."""
    from ml_target.verify.cache import ImmichCache
    from ml_target.verify.compare import run_verification
    from ml_target.verify.worker import (
        claimed_models,
        configured_worker,
        serve_in_process,
    )

    cache = ImmichCache(cache_dir)
    with configured_worker(settings) as (handlers, health):
        async with serve_in_process(settings, handlers, health) as worker:
            report = await run_verification(
                cache, worker, claimed_models(handlers), plan
            )
    report.meta["device"] = settings.hailo_device
    if settings.hailo_device == "emulator":
        report.meta["warning"] = (
            "EMULATED DEVICE: these numbers say nothing about Hailo hardware"
        )
    return report


def run(args: argparse.Namespace) -> int:
    """Run `verify`; 0 pass, 1 a faithfully served task falls short, 2 nothing verifiable / bad setup."""
    try:
        plan = plan_from_args(args)
        report = asyncio.run(
            verify_configured(Settings.from_env(), args.immich_cache, plan)
        )
    except (ConfigurationError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    for path in report.write(args.out):
        print(f"wrote {path}")
    return report.exit_code()


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (`python -m ml_target.verify`), the same command `cli.py` wires as `verify`."""
    parser = argparse.ArgumentParser(prog="ml_target verify", description=DESCRIPTION)
    add_arguments(parser)
    return run(parser.parse_args(argv))
