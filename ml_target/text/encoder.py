"""The host halves of a Hailo text encoder, interpreted from a backend's declared `TextCut`.

Before the HEF: clean and tokenise the query as Immich does, look up token embeddings (plus
positions if the cut says the HEF lacks them) and lay the (context, width) matrix out row-major in
the input edge's shape, e.g. (1, 77, 512) or (8, 8, 768). After the HEF: pool (first EOS row for
CLIP, last row for SigLIP, or nothing when the HEF pools), optional final LayerNorm, optional
projection. L2 normalisation is left to the task, which applies it to both modalities alike.

Every step is a pure function of arrays so the cut can be checked against a float reference model
without a device (tests/test_clip_fidelity.py).
"""

from __future__ import annotations

import math

import numpy as np

from ml_target.catalog import TextCut
from ml_target.errors import ConfigurationError
from ml_target.text.clean import clean_text
from ml_target.text.host_weights import TextHostWeights
from ml_target.text.tokenizer import ImmichTokenizer, TokenIds


def embed_tokens(ids: np.ndarray, weights: TextHostWeights, *, add_positions: bool) -> np.ndarray:
    """(L, width) float32: token embedding rows, plus the position table's first L rows if asked."""
    embedded = np.asarray(weights.token_embedding[ids], dtype=np.float32)
    if add_positions:
        embedded = embedded + np.asarray(weights.position_embedding[: len(ids)], dtype=np.float32)
    return embedded


def pool(hidden: np.ndarray, tokens: TokenIds, pooling: str) -> np.ndarray:
    """The sentence row of a per-token (L, width) output, or the flattened output if already pooled."""
    if pooling == "hef":
        return hidden.reshape(-1)
    if pooling == "last":
        return hidden[-1]
    eos_positions = np.flatnonzero(tokens.ids == tokens.eos_id)
    # Immich's tokenizer always appends EOS; a query without one (not producible here) falls back to the last row.
    return hidden[eos_positions[0] if eos_positions.size else -1]


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """LayerNorm over the last axis in float64, to keep the host part out of the error budget."""
    x = x.astype(np.float64)
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = np.mean(centred * centred, axis=-1, keepdims=True)
    return (centred / np.sqrt(variance + eps) * weight + bias).astype(np.float32)


def project(x: np.ndarray, projection: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """`x @ P (+ b)`; P is (width, dim) in OpenAI orientation."""
    out = x.astype(np.float64) @ np.asarray(projection, dtype=np.float64)
    if bias is not None:
        out = out + bias
    return out.astype(np.float32)


class HostTextEncoder:
    """Query text -> HEF input frame, and HEF output -> text features, for one backend.

    Construction checks that the weights, the tokenizer and the HEF's edge shapes fit the declared
    cut, so a mismatch fails at start-up with a message instead of producing wrong vectors.
    """

    def __init__(
        self,
        cut: TextCut,
        weights: TextHostWeights,
        tokenizer: ImmichTokenizer,
        *,
        canonicalize: bool,
        input_shape: tuple[int, ...],
        output_shape: tuple[int, ...],
        dim: int,
    ) -> None:
        self.cut = cut
        self.weights = weights
        self.tokenizer = tokenizer
        self.canonicalize = canonicalize
        self.input_shape = tuple(input_shape)
        self.output_shape = tuple(output_shape)
        self.dim = dim
        self._check()

    def prepare(self, text: str) -> tuple[np.ndarray, TokenIds]:
        """The float32 input frame for the HEF (FLOAT32 user format: HailoRT quantises it) and the ids."""
        tokens = self.tokenizer.encode(clean_text(text, canonicalize=self.canonicalize))
        embedded = embed_tokens(tokens.ids, self.weights, add_positions=self.cut.positions == "host")
        return np.ascontiguousarray(embedded.reshape(self.input_shape)), tokens

    def finish(self, output: np.ndarray, tokens: TokenIds) -> np.ndarray:
        """Text features (dim,) from the dequantised HEF output, before L2 normalisation."""
        context = self.tokenizer.context_length
        hidden = output.reshape(-1) if self.cut.pooling == "hef" else output.reshape(context, -1)
        features = pool(hidden, tokens, self.cut.pooling)
        if self.cut.final_layer_norm:
            w = self.weights
            features = layer_norm(features, w.final_ln_weight, w.final_ln_bias, w.layer_norm_eps)
        if self.cut.projection:
            features = project(features, self.weights.text_projection, self.weights.text_projection_bias)
        return features.astype(np.float32)

    def _check(self) -> None:
        w = self.weights
        context = self.tokenizer.context_length
        if math.prod(self.input_shape) != context * w.width:
            raise ConfigurationError(
                f"text HEF input {self.input_shape} does not hold {context} tokens of width {w.width} "
                "(host token_embedding); the host weights do not belong to this HEF"
            )
        if self.tokenizer.vocab_size > w.token_embedding.shape[0]:
            raise ConfigurationError(
                f"tokenizer has {self.tokenizer.vocab_size} tokens but token_embedding only "
                f"{w.token_embedding.shape[0]} rows; tokenizer and weights come from different checkpoints"
            )
        if self.cut.positions == "host" and (w.position_embedding is None or w.position_embedding.shape[0] < context):
            raise ConfigurationError(f"the cut adds positions on the host but position_embedding lacks {context} rows")
        out_size = math.prod(self.output_shape)
        if self.cut.pooling != "hef" and out_size % context:
            raise ConfigurationError(f"text HEF output {self.output_shape} is not per token for {context} tokens")
        width = out_size if self.cut.pooling == "hef" else out_size // context
        if self.cut.final_layer_norm and (w.final_ln_weight is None or w.final_ln_weight.shape != (width,)):
            raise ConfigurationError(
                f"the cut applies the final LayerNorm on the host but final_ln_weight is not ({width},)"
            )
        if self.cut.projection:
            if w.text_projection is None or w.text_projection.shape != (width, self.dim):
                raise ConfigurationError(
                    f"the cut projects on the host but text_projection is not ({width}, {self.dim})"
                )
        elif width != self.dim:
            raise ConfigurationError(f"text HEF output width {width} is not the backend's dimension {self.dim}")
