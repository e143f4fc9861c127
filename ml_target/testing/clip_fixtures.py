"""The committed tiny CLIP/SigLIP reference models, the fixed inputs they were made for, and their layout.

`scripts/make_test_fixtures.py` (torch + transformers, run by hand) builds one tiny randomly
initialised model per backend (ml_target.testing.clip_reference) and writes under
`tests/fixtures/clip/<backend id>/`:

    text_hef.onnx, image_hef.onnx   exactly the share of the model the backend's HEFs run
    host/                           host weights exported from the model's checkpoint by
                                    scripts/export_clip_host_weights.py, with the tokenizer files
    immich/                         the model as Immich downloads one: config.json,
                                    visual/{model.onnx,preprocess_cfg.json},
                                    textual/{model.onnx,tokenizer.json,tokenizer_config.json}
    reference.json                  the model's own L2-normalised get_text_features /
                                    get_image_features for TEXTS / IMAGES (and their ids, crop hashes)

plus `host_ops.json` (torch's LayerNorm and Linear on fixed inputs) and `SHA256SUMS` over all of
them. Everything here is torch-free, so the tests read the fixtures
without torch; what a test builds from them (emulated HEFs with calibrated QPs) it builds itself.
"""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tokenizers import Tokenizer

from ml_target.catalog import ClipBackend

FIXTURES_DIR = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "clip"
MANIFEST = "SHA256SUMS"
HOST_OPS = "host_ops.json"  # torch's LayerNorm and Linear on fixed inputs (tests/test_text_encoder.py)
BACKEND_IDS = ("clip_vit_b_32", "tinyclip_vit_39m", "siglip_b_16", "siglip2_b_32_256")
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
TINY_DIM = TINY["hidden_size"]  # the toy projection size: every tiny backend's embedding dimension

TEXTS = (
    "a photo of a dog on the beach",
    "Grandma's  garden: Roses & Tulips!",
    "snow\tcovered   mountains\n",
    "x",
    "the Eiffel Tower in Paris, 2019 - holiday trip " * 12,  # longer than any context: truncated
    "zebra quokka",  # out of the tiny vocabulary: byte / character fallback
)


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random scene (a few random plane waves in colour) plus sensor noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    out = np.zeros((height, width, 3))
    for _ in range(6):
        fx, fy = rng.uniform(-12, 12, 2)
        out += np.cos(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))[..., None] * rng.uniform(-80, 80, 3)
    return np.clip(out + 128 + rng.normal(0, 8, out.shape), 0, 255).astype(np.uint8)


def _images() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(7)
    return tuple(photo(rng, h, w) for h, w in ((301, 517), (640, 427), (97, 300), (480, 640)))


IMAGES = _images()


def immich_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Immich's transform from its documented algorithm (immich-protocol.md §6.1), one Pillow resize."""
    pil = Image.fromarray(image)
    w, h = pil.size
    new = (size, int(h / w * size)) if w < h else (int(w / h * size), size)
    pil = pil.resize(new, Image.Resampling.BICUBIC)
    left, top = int(new[0] / 2 - size / 2), int(new[1] / 2 - size / 2)
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def reference_ids(tokenizer_file: Path, text: str, backend: ClipBackend, pad_token: str) -> np.ndarray:
    """Immich's text preprocessing written out from its documentation (§6.2), independent of ours."""
    text = " ".join(text.split())
    if backend.canonicalize:
        text = "".join(c for c in text if c not in string.punctuation).lower()
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(max_length=backend.context_length)
    ids = tokenizer.encode(text).ids
    return np.array(ids + [tokenizer.token_to_id(pad_token)] * (backend.context_length - len(ids)))


def pad_token(tokenizer_dir: Path) -> str:
    """The pad token `tokenizer_config.json` names, as Immich reads it."""
    return json.loads((Path(tokenizer_dir) / "tokenizer_config.json").read_text(encoding="utf-8"))["pad_token"]


def crop_digest(crop: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(crop).tobytes()).hexdigest()


def host_files(backend: ClipBackend) -> tuple[str, ...]:
    """The files the host-weight export writes for `backend`'s family (SigLIP's head has a bias)."""
    arrays = ["token_embedding", "position_embedding", "final_ln_weight", "final_ln_bias", "text_projection"]
    if backend.tokenizer == "sentencepiece":
        arrays.append("text_projection_bias")
    return ("host.json", *(f"{name}.npy" for name in arrays), "tokenizer.json", "tokenizer_config.json")


IMMICH_FILES = (
    "config.json",
    "visual/model.onnx",
    "visual/preprocess_cfg.json",
    "textual/model.onnx",
    "textual/tokenizer.json",
    "textual/tokenizer_config.json",
)


def fixture_files(backend: ClipBackend) -> tuple[str, ...]:
    """Every file of one backend's fixture directory, relative to it."""
    return (
        "text_hef.onnx",
        "image_hef.onnx",
        "reference.json",
        *(f"host/{name}" for name in host_files(backend)),
        *(f"immich/{name}" for name in IMMICH_FILES),
    )


@dataclass(frozen=True)
class Reference:
    """What the reference model itself computed at generation time (L2-normalised features)."""

    ids: np.ndarray  # (len(TEXTS), context_length)
    text_features: np.ndarray  # (len(TEXTS), TINY_DIM)
    crop_sha256: tuple[str, ...]  # of immich_crop(IMAGES[i], size) the image features were computed on
    image_features: np.ndarray  # (len(IMAGES), TINY_DIM)


def load_reference(directory: Path) -> Reference:
    document = json.loads((Path(directory) / "reference.json").read_text(encoding="utf-8"))
    return Reference(
        ids=np.asarray(document["ids"], dtype=np.int64),
        text_features=np.asarray(document["text_features"], dtype=np.float32),
        crop_sha256=tuple(document["crop_sha256"]),
        image_features=np.asarray(document["image_features"], dtype=np.float32),
    )


def reference_json(reference: Reference) -> str:
    """reference.json's text: float32 values written exactly (Python's shortest repr round-trips)."""
    document = {
        "texts": list(TEXTS),
        "ids": reference.ids.tolist(),
        "text_features": [[float(v) for v in row] for row in reference.text_features.astype(np.float32)],
        "crop_sha256": list(reference.crop_sha256),
        "image_features": [[float(v) for v in row] for row in reference.image_features.astype(np.float32)],
    }
    return json.dumps(document, indent=1) + "\n"


def manifest_lines(root: Path, relative_paths: list[str]) -> list[str]:
    """`SHA256SUMS` lines (`<sha256>  <path>`) for the files under `root`, in sorted order."""
    return [f"{hashlib.sha256((root / p).read_bytes()).hexdigest()}  {p}" for p in sorted(relative_paths)]
