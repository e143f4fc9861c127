"""Command line: `python -m ml_target {serve,inspect,emulate-models,fetch-models,verify,bench}`.

Each command imports what it needs when it runs, so that `serve` on a production image never
loads the emulator or benchmark code, and `inspect` works without a device. A command whose
optional extra is not installed says so in one line, with the install command (ml_target.extras).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from ml_target.config import Settings
from ml_target.errors import ConfigurationError
from ml_target.extras import missing_module_message, require


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from ml_target.heap import configure_heap
    from ml_target.http_server import server_options
    from ml_target.service import build_app

    settings = Settings.from_env()
    if settings.hailo_device == "emulator":
        require("emulator", "serve with HAILO_DEVICE=emulator")
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configure_heap()
    app = build_app(settings)
    uvicorn.run(app, **server_options(settings), timeout_graceful_shutdown=args.grace_seconds)
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from ml_target.hailo.runtime import describe_hef

    for edge in describe_hef(Path(args.hef)):
        print(json.dumps(edge) if args.json else "  ".join(f"{k}={v}" for k, v in edge.items()))
    return 0


def _emulate_models(args: argparse.Namespace) -> int:
    require("emulator", "emulate-models")
    from ml_target.testing.emulated_models import write_emulated_models_dir

    written = write_emulated_models_dir(Path(args.directory), arch=args.arch)
    print(f"wrote {len(written)} emulated files to {args.directory} (stand-in numbers: demo and tests only)")
    return 0


def _fetch_models(args: argparse.Namespace) -> int:
    from ml_target.provision import run

    return run(args, Settings.from_env())


def _verify(args: argparse.Namespace) -> int:
    require("verify", "verify")
    from ml_target.verify.command import run

    return run(args)


def _doctor(args: argparse.Namespace) -> int:
    from ml_target.doctor.command import run

    return run(args)


def _bench(args: argparse.Namespace) -> int:
    require("bench", "bench")
    if args.soak is not None:
        from ml_target.benchmarks.soak import main as soak

        return soak(args.soak)
    from ml_target.benchmarks.service import command

    return command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml_target", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve Immich's ML protocol (settings from the environment)")
    serve.add_argument("--grace-seconds", type=float, default=20.0, help="finish in-flight requests on SIGTERM")
    serve.set_defaults(run=_serve)

    inspect = commands.add_parser("inspect", help="print a HEF's inputs and outputs")
    inspect.add_argument("hef")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(run=_inspect)

    emulate = commands.add_parser("emulate-models", help="write an emulated models directory (demo, tests)")
    emulate.add_argument("directory")
    emulate.add_argument("--arch", choices=("hailo8", "hailo8l", "hailo10h"), default="hailo8")
    emulate.set_defaults(run=_emulate_models, extra="emulator")

    fetch = commands.add_parser("fetch-models", help="download and verify the HEFs the settings need")
    from ml_target.provision import add_arguments as add_fetch_arguments

    add_fetch_arguments(fetch)
    fetch.set_defaults(run=_fetch_models)

    from ml_target.verify.command import DESCRIPTION, add_arguments as add_verify_arguments

    verify = commands.add_parser("verify", help=DESCRIPTION)
    add_verify_arguments(verify)
    verify.set_defaults(run=_verify, extra="verify")

    from ml_target.doctor.command import DESCRIPTION as DOCTOR, add_arguments as add_doctor_arguments

    doctor = commands.add_parser("doctor", help=DOCTOR)
    add_doctor_arguments(doctor)
    doctor.set_defaults(run=_doctor)

    from ml_target.benchmarks.options import add_arguments as add_bench_arguments

    bench = commands.add_parser(
        "bench", help="benchmark the worker under Immich traffic on the emulated device (`bench device`: the runtime alone)"
    )
    add_bench_arguments(bench)
    bench.add_argument(
        "--soak",
        nargs=argparse.REMAINDER,
        default=None,
        help="soak benchmark with injected faults; the options after it are the soak's (bench --soak --help)",
    )
    bench.set_defaults(run=_bench, extra="bench")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # an optional package needed beyond what the command checked first
        message = missing_module_message(exc, args.command, getattr(args, "extra", None))
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return 2
