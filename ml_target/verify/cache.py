"""Reading the model cache of an `immich-machine-learning` container (its `/cache` volume).

Layout (Immich v3.1, immich-protocol.md §6): `clip/<model>/{visual,textual}/model.onnx` with
`config.json`, `visual/preprocess_cfg.json`, `textual/tokenizer.json` and `tokenizer_config.json`;
`facial-recognition/<pack>/{detection,recognition}/model.onnx`; `ocr/<model>/{detection,recognition}/
model.onnx`, the recogniser's characters in its ONNX metadata (`character`) or in a keys file.

Immich downloads a model only when a job first needs it, so a cache often lacks some. Every missing
file is reported with its path, what Immich uses it for, and how to make Immich fetch it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ml_target.errors import ConfigurationError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
DEFAULT_CONTEXT_LENGTH = 77
TASK_DIRS = {"clip": "clip", "faces": "facial-recognition", "ocr": "ocr"}
HOW_TO_LOAD = {
    "clip": (
        "select it as the Smart Search model (Administration > Settings > Machine Learning > Smart Search), "
        "run Smart Search on one asset and search once, so that Immich downloads both halves"
    ),
    "faces": (
        "select it as the Facial Recognition model (Administration > Settings > Machine Learning) and run "
        "Face Detection on one asset"
    ),
    "ocr": "select it as the OCR model (Administration > Settings > Machine Learning > OCR) and run OCR on one asset",
}


class MissingModel(ConfigurationError):
    """A model (or one of its files) that `verify` needs is not in the Immich cache."""


@dataclass(frozen=True)
class ClipFiles:
    """One CLIP/SigLIP model as Immich caches it, with the settings that decide its preprocessing."""

    name: str
    visual: Path
    textual: Path
    tokenizer: Path
    tokenizer_config: Path
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    context_length: int
    canonicalize: bool
    embed_dim: int | None


@dataclass(frozen=True)
class FaceFiles:
    """An insightface model pack (`buffalo_l`, ...): SCRFD detector and ArcFace recogniser."""

    name: str
    detection: Path
    recognition: Path


@dataclass(frozen=True)
class OcrFiles:
    """A PP-OCR model: DBNet detector, CTC recogniser and its character table (without blank/space)."""

    name: str
    detection: Path
    recognition: Path
    characters: tuple[str, ...]


class ImmichCache:
    """The `/cache` directory of an immich-machine-learning container, copied or mounted locally."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigurationError(
                f"Immich model cache {self.root} is not a directory. Point --immich-cache at the immich-machine-"
                "learning container's /cache (e.g. `docker cp immich_machine_learning:/cache ./immich-cache`, "
                "or the host path of its `model-cache` volume)."
            )

    def models(self, task: str) -> list[str]:
        """Names of the models of `task` ("clip", "faces", "ocr") present in the cache."""
        directory = self.root / TASK_DIRS[task]
        return (
            sorted(p.name for p in directory.iterdir() if p.is_dir())
            if directory.is_dir()
            else []
        )

    def _model_dir(self, task: str, name: str) -> Path:
        directory = self.root / TASK_DIRS[task] / name
        if not directory.is_dir():
            present = ", ".join(self.models(task)) or "none"
            raise MissingModel(
                f"{directory} is missing: Immich has not downloaded {task} model {name!r} yet "
                f"(models of this task in the cache: {present}). To fetch it, {HOW_TO_LOAD[task]}; then copy "
                "the container's /cache again."
            )
        return directory

    def _file(self, task: str, name: str, path: Path, role: str) -> Path:
        if path.is_file():
            return path
        if path.name == "model.onnx" and path.parent.is_dir():
            candidates = sorted(path.parent.glob("*.onnx"))
            if len(candidates) == 1:  # tolerate a renamed single export
                return candidates[0]
        raise MissingModel(
            f"{path} is missing ({role} of {task} model {name!r}). Immich downloads it on first use: "
            f"{HOW_TO_LOAD[task]}; an interrupted download leaves the folder incomplete: delete "
            f"{path.parent.parent} and let Immich download it again."
        )

    def clip(self, name: str) -> ClipFiles:
        """The CLIP model `name` (e.g. `ViT-B-32__openai`); MissingModel names any absent file."""
        base = self._model_dir("clip", name)
        visual = self._file(
            "clip", name, base / "visual" / "model.onnx", "image encoder"
        )
        textual = self._file(
            "clip", name, base / "textual" / "model.onnx", "text encoder"
        )
        tokenizer = self._file(
            "clip", name, base / "textual" / "tokenizer.json", "tokenizer"
        )
        tokenizer_config = self._file(
            "clip", name, base / "textual" / "tokenizer_config.json", "pad token"
        )
        config = _json(
            self._file("clip", name, base / "config.json", "model configuration")
        )
        preprocess_path = base / "visual" / "preprocess_cfg.json"
        preprocess = _json(preprocess_path) if preprocess_path.is_file() else {}
        vision_cfg, text_cfg = config.get("vision_cfg", {}), config.get("text_cfg", {})
        size = preprocess.get("size", vision_cfg.get("image_size"))
        if size is None:
            raise MissingModel(
                f"{preprocess_path} is missing and {base / 'config.json'} has no vision_cfg.image_size"
            )
        kwargs = text_cfg.get("tokenizer_kwargs") or {}
        return ClipFiles(
            name=name,
            visual=visual,
            textual=textual,
            tokenizer=tokenizer,
            tokenizer_config=tokenizer_config,
            image_size=int(size[0] if isinstance(size, (list, tuple)) else size),
            mean=tuple(float(v) for v in preprocess.get("mean", OPENAI_MEAN)),
            std=tuple(float(v) for v in preprocess.get("std", OPENAI_STD)),
            context_length=int(text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH)),
            canonicalize=kwargs.get("clean") == "canonicalize",
            embed_dim=config.get("embed_dim"),
        )

    def faces(self, name: str) -> FaceFiles:
        """The insightface pack `name` (e.g. `buffalo_l`)."""
        base = self._model_dir("faces", name)
        return FaceFiles(
            name=name,
            detection=self._file(
                "faces", name, base / "detection" / "model.onnx", "SCRFD detector"
            ),
            recognition=self._file(
                "faces", name, base / "recognition" / "model.onnx", "ArcFace recogniser"
            ),
        )

    def ocr(self, name: str) -> OcrFiles:
        """The OCR model `name` (e.g. `PP-OCRv5_mobile`) with its character table."""
        base = self._model_dir("ocr", name)
        detection = self._file(
            "ocr", name, base / "detection" / "model.onnx", "text detector"
        )
        recognition = self._file(
            "ocr", name, base / "recognition" / "model.onnx", "text recogniser"
        )
        return OcrFiles(name, detection, recognition, _characters(recognition, base))


def _json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MissingModel(
            f"{path} is unreadable ({exc}); delete its model folder and let Immich download it again"
        )
    if not isinstance(value, dict):
        raise MissingModel(f"{path} is not a JSON object")
    return value


def _characters(recognition: Path, base: Path) -> tuple[str, ...]:
    """The recogniser's dictionary: ONNX metadata `character` (RapidOCR exports), else a keys file."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    metadata = (
        ort.InferenceSession(str(recognition), options)
        .get_modelmeta()
        .custom_metadata_map
    )
    if "character" in metadata:
        return _table(metadata["character"])
    keys = sorted({*recognition.parent.glob("*.txt"), *base.glob("*.txt")})
    if len(keys) == 1:
        return _table(keys[0].read_text(encoding="utf-8"))
    raise MissingModel(
        f"{recognition} has no `character` metadata and {recognition.parent} holds "
        f"{'no' if not keys else 'several'} keys file (*.txt): put the model's dictionary (e.g. ppocrv5_dict.txt) there"
    )


def _table(text: str) -> tuple[str, ...]:
    """Dictionary characters, one per line (split on "\\n" only: U+3000 and kin are characters).

    PaddleOCR's layout lists characters only; some distributions (ocrspine's `ppocr_keys_v5.txt`)
    already hold `blank` first and a space last: those two are dropped, Immich adds them itself.
    """
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) >= 2 and lines[0] == "blank" and lines[-1] == " ":
        lines = lines[1:-1]
    return tuple(lines)
