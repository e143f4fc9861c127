"""The host-side text files of the CLIP backend, extracted from Immich's own textual model.

A Hailo text encoder needs `<models_dir>/<backend id>/` (format in `ml_target.text.host_weights`):
token table, position table, final LayerNorm, projection, tokenizer. They come from the Immich
model the backend serves (`clip/<model>/textual/{model.onnx,tokenizer.json,tokenizer_config.json}`,
from `--immich-cache` or downloaded, see `ml_target.provision.immich`): the tokenizer files as
they are, the arrays read out of the ONNX (`ml_target.text.onnx_host`). The ONNX (hundreds of MB)
is only a source: it is deleted once the extracted directory is in place, and the extracted files
get the `SHA256SUMS` lines, so later runs and `--offline` verify them without it.

The directory is built in a staging folder and renamed into place only when complete and checked
(tokenizer against the table), so the worker never sees a half-written one. A directory the
operator exported with `scripts/export_clip_host_weights.py` is valid too and kept. TinyCLIP has no
Immich model: its files can only come from that script.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from ml_target.catalog import ClipBackend
from ml_target.errors import ConfigurationError
from ml_target.immich_models import TEXTUAL_FILE, TOKENIZER_FILES, clip_path
from ml_target.provision.checks import SUMS_FILE, ProvisionError, check_checksum, read_sums, sha256_file, write_sums
from ml_target.provision.download import Progress, RetryPolicy, download
from ml_target.provision.immich import ImmichSource
from ml_target.text.host_export import verify_export
from ml_target.text.host_weights import EXPORT_HINT, load_host_weights, save_host_weights

DOWNLOADS_DIR = ".immich-downloads"


def _relative(models_dir: Path, path: Path) -> str:
    return path.relative_to(models_dir).as_posix()


def check_host_dir(models_dir: Path, backend: ClipBackend, sums: dict[str, str], *, require_sums: bool) -> list[str]:
    """Problems of `<models_dir>/<id>/` (empty = usable): loadable, not a stand-in, tokenizer present, checksums.

    Files without a `SHA256SUMS` line are problems only when `require_sums` (offline verification).
    """
    directory = backend.host_dir(models_dir)
    try:
        weights = load_host_weights(directory, backend=backend.id)
    except ConfigurationError as exc:
        return [str(exc)]
    problems = []
    if weights.stand_in:
        problems.append(f"{directory} holds stand-in text weights (demo and tests only)")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not (directory / name).is_file():
            problems.append(f"{directory / name} is missing")
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        relative = _relative(models_dir, path)
        try:
            if relative in sums:
                check_checksum(path, sums[relative])
            elif require_sums:
                problems.append(f"{path} has no line in {models_dir / SUMS_FILE}: copy the SHA256SUMS that came with it")
        except ProvisionError as exc:
            problems.append(str(exc))
    return problems


def _obtain(
    source: ImmichSource,
    model: str,
    file: str,
    downloads: Path,
    *,
    policy: RetryPolicy,
    stderr: TextIO,
    sleep: Callable[[float], None],
    offline: bool,
) -> tuple[Path, str]:
    """One of Immich's files for `model`: the cache copy, else a download (resumable); (path, how)."""
    local = source.local(str(clip_path(model, file)))
    if local is not None:
        return local, "copied from the Immich cache"
    url = source.url(model, file)
    if offline:
        raise ProvisionError(
            f"{clip_path(model, file)} is needed to build the CLIP text files and --offline forbids downloading "
            f"{url}: pass --immich-cache with a copy of Immich's /cache that holds it, or run without --offline"
        )
    target = downloads / file
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        part = target.with_name(target.name + ".part")
        download(url, part, policy=policy, progress=Progress(stderr, f"{model}/{file}"), sleep=sleep)
        part.replace(target)
    return target, f"downloaded from {source.url(model, '')}"


def _extract(textual: Path, backend: ClipBackend, model: str, staging: Path, tokenizers: list[Path]) -> str:
    """Write the host directory into `staging` from Immich's textual ONNX; returns its SHA-256."""
    import onnx

    from ml_target.text.onnx_host import host_weights_from_textual_onnx

    digest = sha256_file(textual)
    try:
        graph = onnx.load(str(textual))
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have no common public base
        raise ProvisionError(f"{textual} is not an ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    source = f"immich-app/{model} {TEXTUAL_FILE} sha256:{digest}"
    try:
        weights = host_weights_from_textual_onnx(graph, source=source)
    except ConfigurationError as exc:
        raise ProvisionError(f"{textual} is not the text encoder this backend needs: {exc}") from None
    del graph
    save_host_weights(staging, weights, backend=backend.id)
    for path in tokenizers:
        shutil.copyfile(path, staging / Path(path).name)
    try:
        verify_export(staging, backend, weights)
    except (ConfigurationError, ValueError, OSError) as exc:
        raise ProvisionError(f"the tokenizer files of {model} do not fit its text encoder: {exc}") from None
    return digest


def _remove_downloads(downloads: Path) -> None:
    """Delete one model's downloaded sources, and their parent folder once it is empty."""
    shutil.rmtree(downloads, ignore_errors=True)
    try:
        downloads.parent.rmdir()
    except OSError:
        pass


def provision_clip_host(
    models_dir: Path,
    backend: ClipBackend,
    source: ImmichSource,
    *,
    offline: bool = False,
    policy: RetryPolicy = RetryPolicy(),
    stderr: TextIO = sys.stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Make `<models_dir>/<id>/` complete and verified; returns {directory: what was done}.

    Raises ProvisionError with the fix when it cannot: no Immich twin (TinyCLIP), nothing to copy
    offline, a download that fails for good, a file that is not what it should be, or extracted
    files that differ from checksums pinned in `SHA256SUMS`.
    """
    models_dir = Path(models_dir)
    directory = backend.host_dir(models_dir)
    label = f"{directory.name}/"
    sums_path = models_dir / SUMS_FILE
    sums = read_sums(sums_path)
    problems = check_host_dir(models_dir, backend, sums, require_sums=offline)
    if not problems:
        present = {_relative(models_dir, p): p for p in directory.iterdir() if p.is_file()}
        missing = {name: sha256_file(path) for name, path in present.items() if name not in sums}
        if missing:
            write_sums(sums_path, {**sums, **missing})
        return {label: "recorded" if missing else "verified"}
    found = "; ".join(problems)
    if not backend.immich_names:
        raise ProvisionError(f"{found}. {backend.id} has no Immich model to take these files from: {EXPORT_HINT}")
    model = backend.immich_names[0]
    if offline and source.local(str(clip_path(model, TEXTUAL_FILE))) is None:
        raise ProvisionError(
            f"{found}. Offline, these files can only be rebuilt from a copy of Immich's cache that holds "
            f"{clip_path(model, TEXTUAL_FILE)} (--immich-cache), or copied with their SHA256SUMS lines"
        )
    downloads = models_dir / DOWNLOADS_DIR / model
    obtained = {
        file: _obtain(source, model, file, downloads, policy=policy, stderr=stderr, sleep=sleep, offline=offline)
        for file in (*TOKENIZER_FILES, TEXTUAL_FILE)
    }
    staging = models_dir / f".{backend.id}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _extract(obtained[TEXTUAL_FILE][0], backend, model, staging, [obtained[f][0] for f in TOKENIZER_FILES])
    except ProvisionError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        _remove_downloads(downloads)  # a bad download must not be reused by the next run
        raise ProvisionError(f"{exc}; the downloaded files were deleted, run fetch-models again") from None
    fresh = {f"{directory.name}/{p.name}": sha256_file(p) for p in staging.iterdir()}
    pinned = {name: digest for name, digest in fresh.items() if sums.get(name, digest) != digest}
    if pinned:
        shutil.rmtree(staging, ignore_errors=True)
        raise ProvisionError(
            f"the text files extracted from {model} differ from the SHA-256 pinned in {sums_path} for "
            f"{', '.join(sorted(pinned))}: Immich's published model changed or the source is wrong. Check "
            f"--immich-url / --immich-cache, or delete those lines from {SUMS_FILE} to accept the new files"
        )
    shutil.rmtree(directory, ignore_errors=True)
    staging.replace(directory)
    stale = {name for name in sums if name.startswith(label) and name not in fresh}
    write_sums(sums_path, {**{k: v for k, v in sums.items() if k not in stale}, **fresh})
    _remove_downloads(downloads)
    how = obtained[TEXTUAL_FILE][1]
    return {label: f"extracted from {model}'s textual model ({how})"}
