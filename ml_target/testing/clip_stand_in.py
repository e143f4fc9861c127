"""A stand-in CLIP/SigLIP that knows colours, for running the worker and `doctor` on the emulator.

No trained CLIP weights ship in a package we can install, so the emulated smart-search networks
compute something smaller with real meaning: **the colour of the main object in the picture,
and colour words in the query**. A picture of a red disc and the query "a red circle" land close
together; "a blue circle" does not. That is enough for `doctor`'s colour probe to pass on a correct
configuration and to fail on a swapped channel order, exactly as it must on a real card.

Each backend gets a pair of emulated HEFs (`callable` computes registered with the emulator) with
the real HEFs' edges and QPs, and host-side text files of the real widths, built so that the text
HEF behaves like the cut its backend declares (`ml_target.catalog`):

- **Image** (`image_compute`): the background is the border's median colour; the object is what
  differs from it; its mean colour is softly classified against a palette of named colours, and the
  feature is the mix of those colours' directions plus a weak fingerprint of the picture's coarse
  grey levels, so different photos still get different vectors. `channels="bgr"` builds the
  deliberately broken variant that reads its input channels reversed.
- **Text** (`text_compute`): the HEF adds its own position table and mixes token rows with
  position-dependent gains (a causal running mix for CLIP, a bidirectional one for SigLIP), so its
  output depends on where tokens stand, as a transformer's does; then it stops at the declared stage
  (residual stream, final LayerNorm, or LayerNorm + projection, pooled or not). The host token
  table puts every colour word on the direction that, through that stage and the host's part,
  lands on the colour's image direction; position rows are orthogonal to all colour directions.
  `positions=False` builds the variant without a position table (then the host must add them).

The numbers mean nothing to a real Immich: never point a library at a worker running them.
"""

from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml_target.catalog import BACKENDS, ClipBackend, TextCut
from ml_target.testing.clip_tokenizers import CLIP_EOS, CORPUS, clip_like_tokenizer, siglip_like_tokenizer, write_tokenizer
from ml_target.text.host_weights import TextHostWeights, save_host_weights

# Saturated colours a person would name without hesitation (sRGB); the doctor's probe uses some of them.
PALETTE = {
    "red": (215, 35, 35),
    "orange": (240, 135, 25),
    "yellow": (240, 220, 40),
    "green": (40, 165, 65),
    "blue": (40, 70, 215),
    "purple": (135, 45, 170),
    "pink": (240, 130, 190),
    "brown": (120, 75, 35),
}
PHRASES = tuple(f"a {colour} circle" for colour in PALETTE) + tuple(
    f"a photo of a {colour} circle on a grey background" for colour in PALETTE
)
CORPUS_WITH_COLOURS = CORPUS + PHRASES
CLIP_VOCAB = 450
COLOUR_SIGMA = 45.0  # RGB distance at which a colour stops counting as its palette neighbour
OBJECT_DISTANCE = 60.0  # RGB distance from the background that makes a pixel part of the object
FINGERPRINT_WEIGHT = 0.25
FEATURE_SCALE = 10.0  # image features within the output edge's range, far above its quantisation step
CONTENT_NORM = 1.5  # colour-word rows: within the 16-bit input edge's +-2 range per value
COMMON_STD = 0.08
POSITION_NORM = 2.0
FILLER_NORM = 0.15
LN_INPUT_GAIN = 10.0
RESIDUAL_SCALE = 30.0  # a residual-stream output is not unit-scaled, unlike a LayerNorm output
HEAD_SCALE = 2.0


def _seed(*parts: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(parts).encode()))


def _orthonormal(rng: np.random.Generator, size: int, count: int, *, zero_mean: bool = False) -> np.ndarray:
    """`count` orthonormal columns of length `size`, optionally orthogonal to the all-ones vector."""
    basis = rng.normal(size=(size, count))
    if zero_mean:
        basis -= basis.mean(axis=0)
    q, _ = np.linalg.qr(basis)
    return q


def _stage(cut: TextCut) -> str:
    return {(True, True): "residual", (False, True): "normalised", (False, False): "projected"}[
        (cut.final_layer_norm, cut.projection)
    ]


@dataclass(frozen=True)
class StandIn:
    """Everything one backend's stand-in needs, derived deterministically from the backend id."""

    backend: ClipBackend
    width: int
    dim: int
    context: int
    colour_dirs: np.ndarray  # (colours, dim) unit image-feature directions, orthonormal
    fingerprint: np.ndarray  # (dim, 36) maps a 6x6 grey picture into the feature space
    projection: np.ndarray  # (width, dim): host projection (or the HEF's own head)
    projection_bias: np.ndarray | None
    ln_weight: np.ndarray
    ln_bias: np.ndarray
    positions: np.ndarray  # (context, width), orthogonal to every colour row
    filler: np.ndarray  # (width,) the row of EOS and padding, orthogonal to every colour row
    gains: np.ndarray  # (context,) position-dependent mixing gains

    @property
    def causal(self) -> bool:
        return self.backend.tokenizer == "clip-bpe"

    def colour_row(self, k: int) -> np.ndarray:
        """The host token row of colour k: through the text cut it lands on colour_dirs[k]."""
        row = np.linalg.solve(self.projection.T, self.colour_dirs[k])  # row @ P = the colour's direction
        row -= row.mean()  # LayerNorm subtracts the mean: keep the row where it does nothing
        return CONTENT_NORM * row / np.linalg.norm(row)


@functools.cache
def stand_in(backend_id: str) -> StandIn:
    """The stand-in of one backend (cached: random matrices up to 768 x 768)."""
    backend = BACKENDS[backend_id]
    spec = backend.text_network
    width = spec.inputs[0].shape[-1]
    dim = backend.dim
    rng = _seed("clip-stand-in", backend_id)
    colour_dirs = _orthonormal(rng, dim, len(PALETTE)).T
    fingerprint = rng.normal(size=(dim, 36)) / math.sqrt(dim)
    if width != dim:
        raise ValueError(f"{backend_id}: the stand-in needs a square projection, not {width} x {dim}")
    projection = _orthonormal(rng, width, dim)
    if _stage(backend.text_cut) == "projected":
        projection = HEAD_SCALE * projection
    has_bias = backend.tokenizer == "sentencepiece"  # SigLIP's head has a bias
    projection_bias = rng.normal(0.0, 0.02, dim) if has_bias else None
    ln_weight = 1.0 + rng.normal(0.0, 0.05, width)
    ln_bias = rng.normal(0.0, 0.05, width)
    partial = StandIn(backend, width, dim, backend.context_length, colour_dirs, fingerprint, projection,
                      projection_bias, ln_weight, ln_bias, np.zeros((0, width)), np.zeros(width), np.zeros(0))
    colour_rows = np.stack([partial.colour_row(k) for k in range(len(PALETTE))])
    # Position rows: zero-mean and orthogonal to every colour row, so they never move a ranking.
    keep_out = np.concatenate([colour_rows.T, np.ones((width, 1))], axis=1)
    q, _ = np.linalg.qr(keep_out)
    raw = rng.normal(size=(backend.context_length + 1, width))
    raw -= (raw @ q) @ q.T
    rows = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    gains = 1.0 + 0.9 * np.sin(0.7 * np.arange(backend.context_length) + 0.3)
    return StandIn(backend, width, dim, backend.context_length, colour_dirs, fingerprint, projection,
                   projection_bias, ln_weight, ln_bias, POSITION_NORM * rows[:-1], FILLER_NORM * rows[-1], gains)


# ---- image ----

def object_colour(frame: np.ndarray) -> np.ndarray:
    """Mean RGB of the pixels that differ from the border's median colour (all pixels if none do)."""
    frame = np.asarray(frame, dtype=np.float64)
    border = np.concatenate([frame[0], frame[-1], frame[:, 0], frame[:, -1]])
    background = np.median(border, axis=0)
    mask = np.linalg.norm(frame - background, axis=-1) > OBJECT_DISTANCE
    pixels = frame[mask] if mask.sum() >= 0.01 * mask.size else frame.reshape(-1, 3)
    return pixels.mean(axis=0)


def image_feature(frame: np.ndarray, s: StandIn) -> np.ndarray:
    """The stand-in image embedding (dim,) of one RGB frame (values 0..255)."""
    colour = object_colour(frame)
    distances = np.array([np.linalg.norm(colour - np.array(rgb)) for rgb in PALETTE.values()])
    weights = np.exp(-0.5 * (distances / COLOUR_SIGMA) ** 2)
    grey = np.asarray(frame, dtype=np.float64).mean(axis=-1)
    h, w = grey.shape
    coarse = grey[: h - h % 6, : w - w % 6].reshape(6, (h - h % 6) // 6, 6, (w - w % 6) // 6).mean(axis=(1, 3)).ravel()
    coarse -= coarse.mean()
    norm = np.linalg.norm(coarse)
    fingerprint = s.fingerprint @ (coarse / norm) if norm > 0 else np.zeros(s.dim)
    return FEATURE_SCALE * (weights @ s.colour_dirs + FINGERPRINT_WEIGHT * fingerprint)


def image_compute(backend_id: str, *, channels: str = "rgb") -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The emulator `callable` of a backend's image HEF (`channels="bgr"`: the broken variant)."""
    s = stand_in(backend_id)
    spec = s.backend.image_network
    (inp,), (out,) = spec.inputs, spec.outputs
    in_name, out_name = spec.vstream(inp), spec.vstream(out)

    def compute(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = inputs[in_name]
        if channels == "bgr":
            frames = frames[..., ::-1]
        features = np.stack([image_feature(frame, s) for frame in frames])
        return {out_name: features.reshape(len(frames), *out.shape).astype(np.float32)}

    return compute


# ---- text ----

def _layer_norm(x: np.ndarray, s: StandIn) -> np.ndarray:
    x = LN_INPUT_GAIN * x  # a real residual stream is large next to the LayerNorm's epsilon; keep ours so
    centred = x - x.mean(axis=-1, keepdims=True)
    return centred / np.sqrt((centred**2).mean(axis=-1, keepdims=True) + 1e-5) * s.ln_weight + s.ln_bias


def text_hidden(x: np.ndarray, s: StandIn, *, positions: bool = True) -> np.ndarray:
    """(context, width) rows of the stand-in encoder body for one frame of token rows."""
    if not positions:
        gains = np.ones(s.context)
        table = np.zeros_like(s.positions)
    else:
        gains, table = s.gains, s.positions
    weighted = x * gains[:, None]
    if s.causal:
        # A running mean, like causal attention: blind to positions when the gains are flat.
        mixed = np.cumsum(weighted, axis=0) / np.arange(1, s.context + 1)[:, None]
    else:
        # Not a mean: 64 rows of mostly silent padding must not dilute the few content rows.
        mixed = np.broadcast_to(weighted.sum(axis=0) / math.sqrt(s.context), x.shape)
    return mixed + table


def text_output(x: np.ndarray, s: StandIn, *, positions: bool = True, per_token: bool | None = None) -> np.ndarray:
    """The stand-in text HEF's output for one frame: the declared stage, pooled as declared."""
    hidden = text_hidden(x, s, positions=positions)
    stage = _stage(s.backend.text_cut)
    if stage == "residual":
        rows = RESIDUAL_SCALE * hidden
    else:
        rows = _layer_norm(hidden, s)
        if stage == "projected":
            rows = rows @ s.projection + (s.projection_bias if s.projection_bias is not None else 0.0)
    pooled = s.backend.text_cut.pooling == "hef" if per_token is None else not per_token
    return rows[-1] if pooled else rows


def text_compute(
    backend_id: str, *, positions: bool = True, per_token: bool | None = None
) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The emulator `callable` of a backend's text HEF (variants: no position table, per-token output)."""
    s = stand_in(backend_id)
    spec = s.backend.text_network
    (inp,), (out,) = spec.inputs, spec.outputs
    in_name, out_name = spec.vstream(inp), spec.vstream(out)
    out_shape = text_output_shape(backend_id, per_token=per_token)

    def compute(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = inputs[in_name].reshape(-1, s.context, s.width).astype(np.float64)
        outputs = np.stack([text_output(f, s, positions=positions, per_token=per_token) for f in frames])
        return {out_name: outputs.reshape(len(frames), *out_shape).astype(np.float32)}

    return compute


def text_output_shape(backend_id: str, *, per_token: bool | None = None) -> tuple[int, ...]:
    """The text HEF's output edge shape; `per_token=True` for a pooled backend gives (1, context, width)."""
    s = stand_in(backend_id)
    declared = s.backend.text_network.outputs[0].shape
    if per_token and s.backend.text_cut.pooling == "hef":
        return (1, s.context, s.width)
    return declared


# ---- host files ----

def host_weights(backend_id: str, tokenizer) -> TextHostWeights:
    """Host text tables of the stand-in: colour words on their directions, other words faint, EOS and
    padding one shared filler row that carries no colour (a zero row would make long causal means tiny)."""
    s = stand_in(backend_id)
    rng = _seed("clip-stand-in-tokens", backend_id)
    vocab = tokenizer.get_vocab_size()
    table = rng.normal(0.0, COMMON_STD, (vocab, s.width))
    for k, colour in enumerate(PALETTE):
        ids = colour_token_ids(tokenizer, colour)
        for token in ids:
            table[token] = s.colour_row(k) / len(ids)
    for token in silent_tokens(tokenizer, s.backend):
        table[token] = s.filler
    return TextHostWeights(
        token_embedding=table.astype(np.float32),
        position_embedding=s.positions.astype(np.float32),
        final_ln_weight=s.ln_weight.astype(np.float32),
        final_ln_bias=s.ln_bias.astype(np.float32),
        text_projection=s.projection.astype(np.float32),
        text_projection_bias=None if s.projection_bias is None else s.projection_bias.astype(np.float32),
        source="stand-in (ml_target.testing.clip_stand_in)",
        stand_in=True,
    )


def colour_token_ids(tokenizer, colour: str) -> list[int]:
    """The token ids a colour word gets inside a query (a single token for the palette, by construction)."""
    with_word = tokenizer.encode(f"a {colour} circle").ids
    without = tokenizer.encode("a circle").ids
    return [token for token in with_word if token not in without]


def silent_tokens(tokenizer, backend: ClipBackend) -> list[int]:
    """EOS and padding carry no colour (they fill most of a query's rows)."""
    names = {CLIP_EOS} if backend.tokenizer == "clip-bpe" else {backend.pad_token, backend.eos_token}
    return [tokenizer.token_to_id(name) for name in names if tokenizer.token_to_id(name) is not None]


def tokenizer_for(backend: ClipBackend):
    """The stand-in tokenizer of a backend's family, with the palette's words in its vocabulary."""
    if backend.tokenizer == "clip-bpe":
        return clip_like_tokenizer(CLIP_VOCAB, corpus=CORPUS_WITH_COLOURS), CLIP_EOS
    return siglip_like_tokenizer(eos=backend.eos_token, corpus=CORPUS_WITH_COLOURS), backend.pad_token


def write_host_assets(models_dir: Path, backend_id: str) -> Path:
    """`<models_dir>/<backend id>/`: the stand-in's host weights and tokenizer files."""
    backend = BACKENDS[backend_id]
    tokenizer, pad_token = tokenizer_for(backend)
    directory = backend.host_dir(models_dir)
    save_host_weights(directory, host_weights(backend_id, tokenizer), backend=backend.id)
    write_tokenizer(directory, tokenizer, pad_token=pad_token, context_length=backend.context_length)
    return directory


# ---- registration with the emulator ----

def image_compute_name(backend_id: str, channels: str = "rgb") -> str:
    return f"ml_target.clip.{backend_id}.image" + ("" if channels == "rgb" else f".{channels}")


def text_compute_name(backend_id: str, *, positions: bool = True, per_token: bool | None = None) -> str:
    name = f"ml_target.clip.{backend_id}.text"
    if not positions:
        name += ".no-positions"
    if per_token:
        name += ".per-token"
    return name


def register() -> None:
    """Register every stand-in compute (and the broken variants) with the emulator; cheap until first used."""
    from ml_target.hailo.emulator import register_compute

    for backend_id in BACKENDS:
        for channels in ("rgb", "bgr"):
            register_compute(image_compute_name(backend_id, channels), _lazy(image_compute, backend_id, channels=channels))
        for positions in (True, False):
            for per_token in (None, True):
                register_compute(
                    text_compute_name(backend_id, positions=positions, per_token=per_token),
                    _lazy(text_compute, backend_id, positions=positions, per_token=per_token),
                )


def _lazy(factory, *args, **kwargs):
    """A compute built on its first call, so registering every variant costs nothing."""
    built: list = []

    def compute(inputs):
        if not built:
            built.append(factory(*args, **kwargs))
        return built[0](inputs)

    return compute


def write_stand_in_models(
    models_dir: Path,
    backend_id: str,
    *,
    arch: str | None = None,
    channels: str = "rgb",
    positions: bool = True,
    per_token: bool | None = None,
) -> list[Path]:
    """Write one backend's emulated HEF pair and host files (a variant when asked); register the computes."""
    from ml_target.hailo.emulator.models_dir import default_build, edge_json, write_hef

    register()
    backend = BACKENDS[backend_id]
    models_dir = Path(models_dir)
    arch = arch or default_build()
    image_spec, text_spec = backend.image_network.for_arch(arch), backend.text_network.for_arch(arch)
    image = write_hef(models_dir / f"{image_spec.hef}.hef", spec=image_spec, hw_arch=arch,
                      compute={"kind": "callable", "name": image_compute_name(backend_id, channels)})
    outputs = [dict(edge_json(text_spec, text_spec.outputs[0]), shape=list(text_output_shape(backend_id, per_token=per_token)))]
    text = write_hef(models_dir / f"{text_spec.hef}.hef", spec=text_spec, hw_arch=arch, outputs=outputs,
                     compute={"kind": "callable",
                              "name": text_compute_name(backend_id, positions=positions, per_token=per_token)})
    return [image, text, write_host_assets(models_dir, backend_id)]


def write_emulated_clip_models(models_dir: Path, arch: str | None = None) -> list[Path]:
    """Every backend's stand-in HEFs and host files: the smart-search part of an emulated models dir."""
    written: list[Path] = []
    for backend_id in BACKENDS:
        written += write_stand_in_models(models_dir, backend_id, arch=arch)
    return written
