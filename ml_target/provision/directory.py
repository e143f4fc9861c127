"""Bring a models directory to the planned state, or verify it without a network.

A file is only ever published under its final name after it passed its check, via an atomic
rename from `<name>.part`, so a crash leaves either the old state or a resumable partial file,
never a half-written model that the worker would try to load.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TextIO

from ml_target.provision.assets import Asset
from ml_target.provision.checks import SUMS_FILE, ProvisionError, check_checksum, read_sums, sha256_file, write_sums
from ml_target.provision.download import Progress, RetryPolicy, download


def verify_directory(models_dir: Path, assets: Iterable[Asset]) -> list[str]:
    """Offline check (presence, content, checksums); returns one problem per bad file, empty = good."""
    problems: list[str] = []
    try:
        sums = read_sums(models_dir / SUMS_FILE)
    except ProvisionError as exc:
        return [str(exc)]
    for asset in assets:
        path = models_dir / asset.filename
        if not path.is_file():
            problems.append(f"{path} is missing: run fetch-models on a machine with network access and copy it here")
            continue
        try:
            asset.check(path)
            if asset.filename not in sums:
                raise ProvisionError(f"{path} has no line in {models_dir / SUMS_FILE}: copy the SHA256SUMS that came with it")
            check_checksum(path, sums[asset.filename])
        except ProvisionError as exc:
            problems.append(str(exc))
    return problems


def fetch(
    models_dir: Path,
    assets: Iterable[Asset],
    *,
    policy: RetryPolicy = RetryPolicy(),
    stderr: TextIO = sys.stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Obtain what is missing, verify what is present.

    Returns {filename: "downloaded" | "copied" | "verified" | "recorded"}; "recorded" means a file
    that was present without a checksum line and now has one.
    """
    models_dir.mkdir(parents=True, exist_ok=True)
    sums_path = models_dir / SUMS_FILE
    sums = read_sums(sums_path)
    outcome: dict[str, str] = {}
    for asset in assets:
        path = models_dir / asset.filename
        if path.exists():
            asset.check(path)
            if asset.filename in sums:
                check_checksum(path, sums[asset.filename])
                outcome[asset.filename] = "verified"
            else:
                sums[asset.filename] = sha256_file(path)
                write_sums(sums_path, sums)
                outcome[asset.filename] = "recorded"
            continue
        part = path.with_name(path.name + ".part")
        path.parent.mkdir(parents=True, exist_ok=True)
        if asset.local is not None:
            shutil.copyfile(asset.local, part)
            outcome[asset.filename] = "copied"
        else:
            progress = Progress(stderr, asset.filename)
            download(asset.url, part, policy=policy, progress=progress, sleep=sleep)
            outcome[asset.filename] = "downloaded"
        sums[asset.filename] = _accept(part, asset, sums.get(asset.filename), sums_path)
        os.replace(part, path)
        write_sums(sums_path, sums)
    return outcome


def _accept(part: Path, asset: Asset, pinned: str | None, sums_path: Path) -> str:
    """Check a fresh `.part` file; delete it and raise if it is unusable. Returns its SHA-256."""
    try:
        asset.check(part)
    except ProvisionError as exc:
        part.unlink()
        raise ProvisionError(f"downloaded {asset.filename} is unusable and was deleted: {exc}") from None
    digest = sha256_file(part)
    if pinned is not None and pinned != digest:
        part.unlink()
        raise ProvisionError(
            f"downloaded {asset.filename} does not match the SHA-256 pinned in {sums_path}: the server sent a "
            f"different file (a newer Model Zoo build or a bad mirror). Check --base-url, or delete its "
            f"line from {SUMS_FILE} to accept the new file"
        )
    return digest
