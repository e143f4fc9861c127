"""Stand-in host-side text assets for every CLIP backend, for running the worker on the emulator.

The emulated models directory has synthetic CLIP HEFs (no real checkpoint is available offline), so
the host side gets matching stand-ins: a small tokenizer of the right kind and deterministic random
tables of the real widths (token and position embeddings, final LayerNorm, projection). `host.json`
marks them `"stand_in": true`. The vectors they produce have the right dimension and unit norm and
respond to the query text, but they are NOT any model's embeddings: never point Immich at a
worker running these.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from ml_target.catalog import BACKENDS, ClipBackend
from ml_target.testing.clip_tokenizers import CLIP_EOS, clip_like_tokenizer, siglip_like_tokenizer, write_tokenizer
from ml_target.text.host_weights import TextHostWeights, save_host_weights


def _stand_in_weights(backend: ClipBackend, vocab_size: int) -> TextHostWeights:
    """Random tables of the backend's real widths; values fit the synthetic HEF's 16-bit input range."""
    rng = np.random.default_rng(zlib.crc32(backend.id.encode()))
    spec = backend.text_network
    width = spec.inputs[0].shape[-1]
    out_width = math.prod(spec.outputs[0].shape) // (1 if backend.text_cut.pooling == "hef" else backend.context_length)

    def table(*shape: int, std: float) -> np.ndarray:
        return rng.normal(0.0, std, shape).astype(np.float32)

    return TextHostWeights(
        token_embedding=np.clip(table(vocab_size, width, std=0.5), -1.5, 1.5),
        position_embedding=np.clip(table(backend.context_length, width, std=0.1), -0.3, 0.3),
        final_ln_weight=1.0 + table(out_width, std=0.05),
        final_ln_bias=table(out_width, std=0.05),
        text_projection=table(out_width, backend.dim, std=out_width**-0.5),
        source="stand-in (ml_target.testing.clip_emulation)",
        stand_in=True,
    )


def write_emulated_clip_assets(models_dir: Path) -> list[Path]:
    """Write stand-in host assets for every backend into `<models_dir>/<backend id>/`; returns the dirs."""
    written = []
    for backend in BACKENDS.values():
        if backend.tokenizer == "clip-bpe":
            tokenizer = clip_like_tokenizer()
            pad_token = CLIP_EOS
        else:
            tokenizer = siglip_like_tokenizer(eos=backend.eos_token)
            pad_token = backend.pad_token
        directory = backend.host_dir(models_dir)
        save_host_weights(directory, _stand_in_weights(backend, tokenizer.get_vocab_size()), backend=backend.id)
        write_tokenizer(directory, tokenizer, pad_token=pad_token, context_length=backend.context_length)
        written.append(directory)
    return written
