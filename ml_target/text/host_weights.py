"""The host-side text weights of a CLIP backend: file format, loading and writing.

Format (version 1), one directory per backend, `<models_dir>/<backend id>/`:

    host.json               {"format": "ml_target-clip-host", "version": 1, "backend": "<id>",
                             "source": "<checkpoint or 'stand-in'>", "stand_in": false,
                             "layer_norm_eps": 1e-5}
    token_embedding.npy     (vocab, width)        float32 or float16; memory-mapped, rows looked up
    position_embedding.npy  (positions, width)    optional
    final_ln_weight.npy     (width,)              optional, with final_ln_bias.npy
    final_ln_bias.npy       (width,)
    text_projection.npy     (width, dim)          optional, applied as `x @ P` (OpenAI orientation;
                                                  a Hugging Face Linear weight is stored transposed)
    text_projection_bias.npy (dim,)               optional (SigLIP's head has a bias)
    tokenizer.json, tokenizer_config.json         copied from the checkpoint / Immich's model

`fetch-models` writes it from Immich's textual ONNX (`ml_target.provision.clip_host`);
`scripts/export_clip_host_weights.py` from a Hugging Face checkpoint (TinyCLIP). Plain `.npy` files
rather than one `.npz` let the (up to 256k-row) embedding table be memory-mapped: a query touches
only its own rows, which matters on a Raspberry Pi.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml_target.errors import ConfigurationError

FORMAT = "ml_target-clip-host"
VERSION = 1
_ARRAYS = (
    "token_embedding",
    "position_embedding",
    "final_ln_weight",
    "final_ln_bias",
    "text_projection",
    "text_projection_bias",
)
EXPORT_HINT = (
    "run `python -m ml_target fetch-models`, which extracts it from Immich's own textual model (for TinyCLIP, "
    "which has no Immich model: `python scripts/export_clip_host_weights.py --checkpoint <HF checkpoint dir> "
    "--backend <id> --out <models_dir>/<id>`)"
)


@dataclass(frozen=True)
class TextHostWeights:
    """The parts of a text encoder that run on the host, around the HEF."""

    token_embedding: np.ndarray
    position_embedding: np.ndarray | None = None
    final_ln_weight: np.ndarray | None = None
    final_ln_bias: np.ndarray | None = None
    text_projection: np.ndarray | None = None
    text_projection_bias: np.ndarray | None = None
    layer_norm_eps: float = 1e-5
    source: str = "unknown"
    stand_in: bool = False

    @property
    def width(self) -> int:
        return int(self.token_embedding.shape[1])


def save_host_weights(directory: Path, weights: TextHostWeights, *, backend: str) -> None:
    """Write `weights` in format version 1 (tokenizer files are copied by the caller)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name in _ARRAYS:
        array = getattr(weights, name)
        if array is not None:
            np.save(directory / f"{name}.npy", np.ascontiguousarray(array))
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "backend": backend,
        "source": weights.source,
        "stand_in": weights.stand_in,
        "layer_norm_eps": weights.layer_norm_eps,
    }
    (directory / "host.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_host_weights(directory: Path, *, backend: str) -> TextHostWeights:
    """Read format version 1 from `directory`; any problem is a ConfigurationError saying how to fix it."""
    directory = Path(directory)
    meta_file = directory / "host.json"
    if not meta_file.is_file():
        raise ConfigurationError(f"{meta_file} is missing: the host-side text weights of {backend}; {EXPORT_HINT}")
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{meta_file} is unreadable ({exc}); {EXPORT_HINT}") from exc
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ConfigurationError(f"{meta_file} is not {FORMAT} version {VERSION}; {EXPORT_HINT}")
    if meta.get("backend") != backend:
        raise ConfigurationError(
            f"{meta_file} holds weights for {meta.get('backend')!r}, not {backend!r}; {EXPORT_HINT}"
        )
    arrays = {}
    for name in _ARRAYS:
        path = directory / f"{name}.npy"
        if path.is_file():
            try:
                arrays[name] = np.load(path, mmap_mode="r" if name == "token_embedding" else None, allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise ConfigurationError(f"{path} is unreadable ({exc}); {EXPORT_HINT}") from exc
    if "token_embedding" not in arrays:
        raise ConfigurationError(f"{directory / 'token_embedding.npy'} is missing; {EXPORT_HINT}")
    return TextHostWeights(
        **arrays,
        layer_norm_eps=float(meta.get("layer_norm_eps", 1e-5)),
        source=str(meta.get("source", "unknown")),
        stand_in=bool(meta.get("stand_in", False)),
    )
