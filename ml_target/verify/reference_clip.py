"""Immich's CLIP/SigLIP pipeline on onnxruntime, written from its documented behaviour (§6.1-§6.2).

Deliberately independent of the worker's own `vision.clip_transform` and `text.tokenizer`: the
reference must not share a bug with the code it judges.

Image: RGB, shorter side to S with Pillow bicubic (longer side truncated), centre crop with
truncating offsets, /255, (x - mean) / std from `preprocess_cfg.json`, NCHW, input `image`.
Text: collapse whitespace; with `clean: canonicalize` drop ASCII punctuation and lower-case;
`tokenizer.json` truncated to the context length and padded to exactly that length with the pad
token of `tokenizer_config.json`; int32 ids as input `text`. The embedding is output [0][0].
"""

from __future__ import annotations

import json
import string

import numpy as np
from PIL import Image
from tokenizers import Tokenizer

from ml_target.verify.cache import ClipFiles, MissingModel
from ml_target.verify.onnx_session import cpu_session


def immich_crop(image: Image.Image, size: int) -> Image.Image:
    """Short side to `size` (bicubic, long side truncated), then Immich's truncating centre crop."""
    width, height = image.size
    if width < height:
        resized = (size, int(height / width * size))
    else:
        resized = (int(width / height * size), size)
    # Immich pins Pillow < 11, which always resamples horizontally first; Pillow 13 may not.
    image = image.resize((resized[0], height), Image.Resampling.BICUBIC).resize(resized, Image.Resampling.BICUBIC)
    left, top = int(resized[0] / 2 - size / 2), int(resized[1] / 2 - size / 2)
    return image.crop((left, top, left + size, top + size))


def clean_text(text: str, *, canonicalize: bool) -> str:
    """Immich's cleaning: whitespace collapsed; canonicalize removes punctuation, then lower-cases."""
    text = " ".join(text.split())
    if canonicalize:
        text = text.translate(str.maketrans("", "", string.punctuation)).lower()
    return text


def _pad_token(config_path) -> str:
    token = json.loads(config_path.read_text(encoding="utf-8")).get("pad_token")
    if isinstance(token, dict):
        token = token.get("content")
    if not isinstance(token, str):
        raise MissingModel(f"{config_path} names no pad_token")
    return token


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).reshape(-1)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class ImmichClip:
    """Both encoders of one cached CLIP model, run as Immich runs them."""

    def __init__(self, files: ClipFiles) -> None:
        self.files = files
        self._visual = cpu_session(files.visual)
        self._textual = cpu_session(files.textual)
        tokenizer = Tokenizer.from_file(str(files.tokenizer))
        pad_token = _pad_token(files.tokenizer_config)
        pad_id = tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise MissingModel(
                f"pad token {pad_token!r} of {files.tokenizer_config} is not in {files.tokenizer}"
            )
        tokenizer.enable_truncation(max_length=files.context_length)
        tokenizer.enable_padding(
            length=files.context_length, pad_id=pad_id, pad_token=pad_token
        )
        self._tokenizer = tokenizer
        self._mean = np.asarray(files.mean, np.float32)
        self._std = np.asarray(files.std, np.float32)

    def pixels(self, image: Image.Image) -> np.ndarray:
        """(1, 3, S, S) float32: Immich's crop, /255, normalised, NCHW."""
        crop = (
            np.asarray(
                immich_crop(image.convert("RGB"), self.files.image_size),
                dtype=np.float32,
            )
            / 255.0
        )
        return (
            ((crop - self._mean) / self._std)
            .transpose(2, 0, 1)[None]
            .astype(np.float32)
        )

    def token_ids(self, text: str) -> np.ndarray:
        """(1, L) int32 ids of `text` after Immich's cleaning."""
        encoding = self._tokenizer.encode(
            clean_text(text, canonicalize=self.files.canonicalize)
        )
        return np.asarray([encoding.ids], dtype=np.int32)

    def encode_image(self, image: Image.Image) -> np.ndarray:
        """L2-normalised image embedding (cosine is what matters, Immich's exports also normalise)."""
        name = self._visual.get_inputs()[0].name
        return _unit(self._visual.run(None, {name: self.pixels(image)})[0][0])

    def encode_text(self, text: str) -> np.ndarray:
        """L2-normalised text embedding; M-CLIP-style graphs also get the attention mask."""
        encoding = self._tokenizer.encode(
            clean_text(text, canonicalize=self.files.canonicalize)
        )
        ids = np.asarray([encoding.ids], dtype=np.int32)
        mask = np.asarray([encoding.attention_mask], dtype=np.int32)
        feeds = {
            node.name: mask if node.name == "attention_mask" else ids
            for node in self._textual.get_inputs()
        }
        return _unit(self._textual.run(None, feeds)[0][0])
