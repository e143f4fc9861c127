"""Extracting the host-side text weights from a Hugging Face CLIP/SigLIP checkpoint.

Used by `scripts/export_clip_host_weights.py` (on a machine with the checkpoint) and by the tests
(on tiny randomly initialised checkpoints). Everything the host might need is exported — token and
position tables, final LayerNorm, projection — whatever the backend's current cut uses, so a
corrected cut (hailo-models.md §7) needs no re-export. Hugging Face stores a Linear weight as
(out, in); the projection is saved transposed, in OpenAI's (in, out) orientation.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ml_target.catalog import ClipBackend
from ml_target.errors import ConfigurationError
from ml_target.text.host_weights import TextHostWeights, save_host_weights
from ml_target.text.tokenizer import ImmichTokenizer

# (our name, Hugging Face parameter suffix under text_model. or the model root, transpose)
_CLIP_KEYS = (
    ("token_embedding", "text_model.embeddings.token_embedding.weight", False),
    ("position_embedding", "text_model.embeddings.position_embedding.weight", False),
    ("final_ln_weight", "text_model.final_layer_norm.weight", False),
    ("final_ln_bias", "text_model.final_layer_norm.bias", False),
    ("text_projection", "text_projection.weight", True),
)
_SIGLIP_KEYS = (
    ("token_embedding", "text_model.embeddings.token_embedding.weight", False),
    ("position_embedding", "text_model.embeddings.position_embedding.weight", False),
    ("final_ln_weight", "text_model.final_layer_norm.weight", False),
    ("final_ln_bias", "text_model.final_layer_norm.bias", False),
    ("text_projection", "text_model.head.weight", True),
    ("text_projection_bias", "text_model.head.bias", False),
)


def host_weights_from_state_dict(
    state: Mapping[str, np.ndarray],
    backend: ClipBackend,
    *,
    layer_norm_eps: float,
    source: str,
    embedding_dtype: str = "float32",
) -> TextHostWeights:
    """Pick and orient the host-side arrays of `backend`'s family from a full model state dict."""
    keys = _SIGLIP_KEYS if backend.tokenizer == "sentencepiece" else _CLIP_KEYS
    arrays = {}
    for name, key, transpose in keys:
        if key not in state:
            raise ConfigurationError(f"checkpoint has no {key!r}: is it a {backend.checkpoint}-style model?")
        array = np.asarray(state[key], dtype=np.float32)
        arrays[name] = np.ascontiguousarray(array.T if transpose else array)
    arrays["token_embedding"] = arrays["token_embedding"].astype(embedding_dtype)
    return TextHostWeights(**arrays, layer_norm_eps=layer_norm_eps, source=source)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def tokenizer_sources(tokenizer_dir: Path) -> list[Path]:
    """The two files Immich itself tokenises with; refused before anything is written if absent."""
    sources = [Path(tokenizer_dir) / name for name in TOKENIZER_FILES]
    for source in sources:
        if not source.is_file():
            raise ConfigurationError(
                f"{source} is missing; pass --tokenizer-dir with the `textual/` folder of Immich's model "
                "(Hugging Face repo immich-app/<model name>), which holds both files"
            )
    return sources


def verify_export(out_dir: Path, backend: ClipBackend, weights: TextHostWeights) -> dict[str, object]:
    """Check the written tokenizer against the weights and the backend; return a summary."""
    tokenizer = ImmichTokenizer.from_files(out_dir, context_length=backend.context_length, eos_token=backend.eos_token)
    rows = weights.token_embedding.shape[0]
    if tokenizer.vocab_size > rows:
        raise ConfigurationError(f"tokenizer has {tokenizer.vocab_size} tokens, token_embedding {rows} rows")
    pad_token = json.loads((Path(out_dir) / "tokenizer_config.json").read_text(encoding="utf-8")).get("pad_token")
    if isinstance(pad_token, dict):
        pad_token = pad_token.get("content")
    return {
        "backend": backend.id,
        "vocab": tokenizer.vocab_size,
        "width": weights.width,
        "pad_token": pad_token,
        "expected_pad_token": backend.pad_token,
        "pad_id": tokenizer.pad_id,
        "eos_id": tokenizer.eos_id,
    }


def export_host_assets(
    state: Mapping[str, np.ndarray],
    backend: ClipBackend,
    out_dir: Path,
    *,
    tokenizer_dir: Path,
    layer_norm_eps: float,
    source: str,
    embedding_dtype: str = "float32",
) -> dict[str, object]:
    """Write the host weights and tokenizer files of `backend` into `out_dir`; return a summary."""
    weights = host_weights_from_state_dict(
        state, backend, layer_norm_eps=layer_norm_eps, source=source, embedding_dtype=embedding_dtype
    )
    sources = tokenizer_sources(tokenizer_dir)
    out_dir = Path(out_dir)
    save_host_weights(out_dir, weights, backend=backend.id)
    for path in sources:
        shutil.copyfile(path, out_dir / path.name)
    return verify_export(out_dir, backend, weights)
