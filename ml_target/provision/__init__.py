"""`fetch-models`: put the files the configured backends need into the models directory, verified.

Why this exists: a HEF that is missing, truncated, an error page, or compiled for the other chip
otherwise surfaces only at start-up as a HailoRT status code; and the host-side files (Immich's
face recogniser, the CLIP text files) would otherwise need tools a NAS or a Raspberry Pi does not
have. The package: `assets` (what is needed and from where), `arch` (which chip), `download`
(retries, resume, progress), `checks` (header, dictionary, checksums), `directory` (fetch /
verify), `immich` (Immich's published models, from its cache or its repositories), `clip_host`
(the CLIP text files extracted from Immich's textual model), and the command line here.

Downloads are retried with exponential backoff and resumed with HTTP Range from `<name>.part`;
every file's content is checked (HEF header, ONNX interface, dictionary size); a `SHA256SUMS` file
(the `sha256sum -c` format) is written on first download and verified on every later run, so a
silently changed file is caught. Neither the Model Zoo nor Immich publishes checksums this tool
can read, so the first download is trusted; copy a known-good `SHA256SUMS` into the directory
beforehand to pin the files instead. `--offline` checks an existing directory (presence, content,
checksums) without touching the network, for air-gapped installs; with `--immich-cache` it may
still copy Immich's files from that local copy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TextIO

from ml_target.catalog import backend_for_setting
from ml_target.config import Settings
from ml_target.errors import ConfigurationError
from ml_target.immich_models import HUB_URL
from ml_target.networks import NETWORKS
from ml_target.provision.arch import FETCH_ARCHES, arch_from_identify, detect_arch_with_hailortcli, resolve_arch
from ml_target.provision.assets import (
    Asset,
    dictionary_asset,
    hef_asset,
    hef_url,
    plan,
    recogniser_asset,
    required_networks,
)
from ml_target.provision.checks import SUMS_FILE, ProvisionError
from ml_target.provision.clip_host import provision_clip_host
from ml_target.provision.directory import fetch, verify_directory
from ml_target.provision.download import Progress, RetryPolicy
from ml_target.provision.immich import ImmichSource

__all__ = [
    "Asset",
    "FETCH_ARCHES",
    "ImmichSource",
    "Progress",
    "ProvisionError",
    "RetryPolicy",
    "SUMS_FILE",
    "add_arguments",
    "arch_from_identify",
    "detect_arch_with_hailortcli",
    "dictionary_asset",
    "fetch",
    "hef_asset",
    "hef_url",
    "main",
    "plan",
    "provision_clip_host",
    "recogniser_asset",
    "required_networks",
    "resolve_arch",
    "run",
    "verify_directory",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `fetch-models`; the defaults come from the environment (Settings)."""
    parser.add_argument("--arch", choices=FETCH_ARCHES, help="chip to fetch HEFs for (default: HAILO_ARCH, else ask the device)")
    parser.add_argument("--models-dir", type=Path, help="target directory (default: MODELS_DIR)")
    parser.add_argument("--base-url", help="mirror laid out as <base>/<arch>/<name>.hef and <base>/ppocrv5_dict.txt")
    parser.add_argument("--immich-cache", type=Path, metavar="DIR",
                        help="a copy of Immich's model cache (its /cache): Immich's files are taken from it when present")
    parser.add_argument("--immich-url", default=HUB_URL,
                        help="where Immich's models are downloaded from: <url>/<model>/resolve/main/<file> (default %(default)s)")
    parser.add_argument("--offline", action="store_true",
                        help="no network: verify the directory (presence, content, checksums); copy from --immich-cache")
    parser.add_argument("--network", action="append", dest="networks", choices=sorted(NETWORKS), metavar="NAME",
                        help="fetch this HEF instead of those the settings need (repeatable)")
    parser.add_argument("--retries", type=int, default=RetryPolicy.attempts, help="attempts per file")
    parser.add_argument("--timeout", type=float, default=RetryPolicy.timeout_s, help="socket timeout in seconds")


def run(
    args: argparse.Namespace,
    settings: Settings,
    *,
    detector: Callable[[], str] | None = None,
    stderr: TextIO = sys.stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Execute `fetch-models`; prints a summary and returns the process exit code."""
    models_dir = args.models_dir or settings.models_dir
    if args.immich_cache is not None and not args.immich_cache.is_dir():
        stderr.write(f"error: --immich-cache {args.immich_cache} is not a directory (a copy of Immich's /cache)\n")
        return 1
    immich = ImmichSource(cache=args.immich_cache, base_url=args.immich_url)
    policy = RetryPolicy(attempts=max(1, args.retries), timeout_s=args.timeout)
    try:
        if args.offline:
            assets = plan(settings, _known_arch(args, settings), networks=args.networks, immich=immich)
            copies = [a for a in assets if a.local is not None and not (models_dir / a.filename).exists()]
            _print(fetch(models_dir, copies, policy=policy, stderr=stderr, sleep=sleep) if copies else {}, stderr)
            ok = _verify(models_dir, assets, stderr)
        else:
            arch = resolve_arch(args.arch, settings, detector)
            assets = plan(settings, arch, args.base_url, networks=args.networks, immich=immich)
            outcome = fetch(models_dir, assets, policy=policy, stderr=stderr, sleep=sleep)
            _print(outcome, stderr)
            stderr.write(f"{len(outcome)} files for {arch} ready in {models_dir}\n")
            ok = True
        if "clip" in settings.tasks and not args.networks:  # offline, report this side's problems too
            backend = backend_for_setting(settings.clip_backend)
            try:
                outcome = provision_clip_host(
                    models_dir, backend, immich, offline=args.offline, policy=policy, stderr=stderr, sleep=sleep
                )
                _print(outcome, stderr)
            except ProvisionError as exc:
                summary = "the CLIP text side is not ready: the worker will not start"
                ok = _report([str(exc)], stderr, f"the models are ready, but {summary}" if ok else summary) and ok
    except (ProvisionError, ConfigurationError) as exc:
        stderr.write(f"error: {exc}\n")
        return 1
    return 0 if ok else 1


def _print(outcome: Mapping[str, str], stderr: TextIO) -> None:
    for filename, what in outcome.items():
        stderr.write(f"{filename}: {what}\n")


def _known_arch(args: argparse.Namespace, settings: Settings) -> str | None:
    """Offline there is no device to ask: check the chip only when told which one."""
    if args.arch:
        return args.arch
    return settings.hailo_arch if settings.hailo_arch != "auto" else None


def _verify(models_dir: Path, assets: list[Asset], stderr: TextIO) -> bool:
    problems = verify_directory(models_dir, assets)
    if _report(problems, stderr, f"{len(problems)} of {len(assets)} files in {models_dir} failed verification"):
        stderr.write(f"all {len(assets)} files in {models_dir} verified\n")
        return True
    return False


def _report(problems: list[str], stderr: TextIO, summary: str) -> bool:
    """Print each problem and, if there were any, the summary; True when there were none."""
    for problem in problems:
        stderr.write(f"error: {problem}\n")
    if problems:
        stderr.write(summary + "\n")
    return not problems


def main(
    argv: list[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    detector: Callable[[], str] | None = None,
    stderr: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """`python -m ml_target.provision [options]` (also wired as `python -m ml_target fetch-models`)."""
    parser = argparse.ArgumentParser(prog="fetch-models", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    out = stderr or sys.stderr
    try:
        settings = Settings.from_env(env)
    except ConfigurationError as exc:
        out.write(f"error: {exc}\n")
        return 1
    return run(args, settings, detector=detector, stderr=out, sleep=sleep)
