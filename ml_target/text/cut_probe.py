"""Where a text HEF's cut really lies, measured on the HEF itself at start-up.

The catalog declares, per backend, what the text HEF computes (`ml_target.catalog.TextCut`), but
two parts of that declaration rest on no dump of a real HEF (docs/hardware-evidence.md): whether
the position table is added inside the HEF, and at which stage its output leaves the encoder (the
last block's residual stream, the final LayerNorm's output, or already projected). Getting either
wrong gives plausible but wrong vectors. Both can be read off the network's own behaviour with
nothing but the host weights, so the worker measures them instead of trusting the declaration:

- **Positions.** Without a position table a transformer cannot tell its input rows apart: fed the
  same token in every row, every output row is the same (causal or not); and a bidirectional
  encoder's pooled output does not change when the other tokens are reordered. With the table
  inside the HEF both change a lot. One or two frames settle it.
- **Output stage.** A LayerNorm's output `y = gamma * n + beta` has, per row, `n` of mean 0 and
  standard deviation 1 exactly; `gamma` and `beta` are the host's final LayerNorm weights. So
  `(y - beta) / gamma` tells whether the HEF ends at the final LayerNorm; the same test on
  `(y - b) @ P^-1` (host projection `P`, `b`) tells whether it ends after the projection; neither
  means the residual stream, which needs both on the host.

A measurement is "definitive" only with a wide margin on both sides of its threshold; otherwise the
declaration stands and the evidence says so. Everything here is pure numpy around a callable that
runs one frame, so it is tested against stand-in networks of every kind without a device.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ml_target.catalog import TextCut
from ml_target.text.host_weights import TextHostWeights

Stage = Literal["residual", "normalised", "projected"]
RunFrame = Callable[[np.ndarray], Awaitable[np.ndarray]]

# Relative spread of outputs that should be identical if the HEF has no position table: 0 in exact
# arithmetic, a few quantisation steps on a device; with a position table it is of order 0.1-1.
SAME_BELOW = 0.01
DIFFERENT_ABOVE = 0.05
# LayerNorm statistics of `n`: a LayerNorm output scores near 0 (quantisation noise only, ~0.003);
# beyond NOT_LN_ABOVE a vector is no LayerNorm output. A LayerNorm output seen through a random
# rotation (the other hypothesis' test) has mean ~ 1/sqrt(width) and scores ~0.03, so the two LayerNorm
# hypotheses are told apart by ratio: the winner under LN_BELOW and RATIO times below the other.
LN_BELOW = 0.015
RATIO = 3.0
NOT_LN_ABOVE = 0.12
STAGE_CUT = {"residual": (True, True), "normalised": (False, True), "projected": (False, False)}
PROBE_QUERIES = ("a photo of a dog", "a red car parked on a street at night", "two people smiling")


@dataclass(frozen=True)
class CutEvidence:
    """What the probe measured, what it concluded, and where that differs from the declaration."""

    per_token: bool
    positions: str | None  # "hef" / "host", None when not definitive
    positions_spread: float | None
    stage: Stage | None
    ln_scores: dict[str, float]
    declared: TextCut
    resolved: TextCut
    contradictions: tuple[str, ...]
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """For /health and doctor."""
        return {
            "per_token_output": self.per_token,
            "positions": self.positions or "not definitive",
            "positions_spread": _round(self.positions_spread),
            "output_stage": self.stage or "not definitive",
            "layer_norm_scores": {k: _round(v) for k, v in self.ln_scores.items()},
            "declared": dataclasses.asdict(self.declared),
            "resolved": dataclasses.asdict(self.resolved),
            "contradictions": list(self.contradictions),
            "notes": list(self.notes),
        }


def _round(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 5)


def relative_spread(outputs: np.ndarray) -> float:
    """Largest distance of any output row from the first, relative to the first row's norm."""
    rows = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    norm = float(np.linalg.norm(rows[0]))
    if norm == 0.0:
        return math.inf
    return float(np.max(np.linalg.norm(rows - rows[0], axis=1)) / norm)


def classify_spread(spread: float) -> str | None:
    """"host" (the HEF has no positions: identical outputs), "hef", or None in between."""
    if spread < SAME_BELOW:
        return "host"
    if spread > DIFFERENT_ABOVE:
        return "hef"
    return None


def layer_norm_score(rows: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> float:
    """How far rows are from LayerNorm outputs with these weights: 0 for an exact LayerNorm output.

    Per row, `n = (y - beta) / gamma`; the score is the median over rows of max(|mean(n)|, |std(n) - 1|).
    Every dimension counts: leaving some out would break the exact identities on which the test
    rests. A dimension with a tiny gamma amplifies the output's quantisation noise, which can only
    push a LayerNorm output towards "not definitive", never make another vector look like one.
    """
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, gamma.shape[0])
    gamma = np.asarray(gamma, dtype=np.float64)
    keep = gamma != 0.0  # a zero gamma leaves nothing of n in y
    n = (rows[:, keep] - np.asarray(beta, dtype=np.float64)[keep]) / gamma[keep]
    scores = np.maximum(np.abs(n.mean(axis=1)), np.abs(n.std(axis=1) - 1.0))
    return float(np.median(scores))


def unproject(rows: np.ndarray, projection: np.ndarray, bias: np.ndarray | None) -> np.ndarray | None:
    """Rows before `x @ P + b`, when P is square and well conditioned enough to invert; else None."""
    projection = np.asarray(projection, dtype=np.float64)
    if projection.shape[0] != projection.shape[1]:
        return None
    if np.linalg.cond(projection) > 1e6:
        return None
    rows = np.asarray(rows, dtype=np.float64).reshape(-1, projection.shape[1])
    if bias is not None:
        rows = rows - np.asarray(bias, dtype=np.float64)
    return np.linalg.solve(projection.T, rows.T).T


def classify_stage(rows: np.ndarray, weights: TextHostWeights) -> tuple[Stage | None, dict[str, float]]:
    """Which stage per-token or pooled output rows come from (module docstring), with the scores."""
    gamma, beta = weights.final_ln_weight, weights.final_ln_bias
    if gamma is None or beta is None:
        return None, {}
    width = gamma.shape[0]
    scores: dict[str, float] = {}
    rows = np.asarray(rows, dtype=np.float64)
    if rows.shape[-1] == width:
        scores["as_output"] = layer_norm_score(rows, gamma, beta)
    if weights.text_projection is not None and rows.shape[-1] == weights.text_projection.shape[1]:
        before = unproject(rows, weights.text_projection, weights.text_projection_bias)
        if before is not None:
            scores["before_projection"] = layer_norm_score(before, gamma, beta)
    normalised = scores.get("as_output", math.inf)
    projected = scores.get("before_projection", math.inf)
    if normalised < LN_BELOW and projected > RATIO * normalised:
        return "normalised", scores
    if projected < LN_BELOW and normalised > RATIO * projected:
        return "projected", scores
    if all(score > NOT_LN_ABOVE for score in scores.values()) and "as_output" in scores:
        return "residual", scores
    return None, scores


def family_pooling(tokenizer_family: str) -> str:
    """How a per-token output is pooled for this model family: CLIP's first EOS row, SigLIP's last row."""
    return "first_eos" if tokenizer_family == "clip-bpe" else "last"


@dataclass(frozen=True)
class ProbeInputs:
    """What the probe feeds the HEF: embedded rows laid out as the HEF's input, and id sequences."""

    context: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    pad_id: int
    query_ids: tuple[np.ndarray, ...]


async def probe_text_cut(
    run: RunFrame,
    declared: TextCut,
    weights: TextHostWeights,
    inputs: ProbeInputs,
    *,
    tokenizer_family: str,
) -> CutEvidence:
    """Measure positions and output stage of a text HEF (`run`: frame -> output array) and resolve the cut."""
    out_size = math.prod(inputs.output_shape)
    # A pooled output is one vector (512 or 768 values); a per-token one has a row per context position.
    per_token = out_size % inputs.context == 0 and out_size // inputs.context >= 16
    notes: list[str] = []

    def frame(ids: np.ndarray, add_positions: bool) -> np.ndarray:
        rows = np.asarray(weights.token_embedding[ids], dtype=np.float32)
        if add_positions and weights.position_embedding is not None:
            rows = rows + np.asarray(weights.position_embedding[: len(ids)], dtype=np.float32)
        return np.ascontiguousarray(rows.reshape(inputs.input_shape))

    def rows_of(output: np.ndarray) -> np.ndarray:
        flat = np.asarray(output, dtype=np.float64).reshape(-1)
        return flat.reshape(inputs.context, -1) if per_token else flat.reshape(1, -1)

    # Positions: identical rows (per-token) or an order-blind pooled output mean the HEF has none.
    if per_token:
        constant = np.full(inputs.context, _busy_token(weights, inputs), dtype=np.int64)
        spread = relative_spread(rows_of(await run(frame(constant, False))))
    else:
        spread = await _reorder_spread(run, frame, inputs, rows_of)
    positions = classify_spread(spread) if spread is not None else None
    if positions is None:
        notes.append(f"positions: spread {spread} is between {SAME_BELOW} and {DIFFERENT_ABOVE}; the declaration stands")

    # Output stage, on real queries embedded as the resolved positions say.
    add_host_positions = (positions or declared.positions) == "host"
    outputs = [rows_of(await run(frame(ids, add_host_positions))) for ids in inputs.query_ids]
    stage, scores = classify_stage(np.concatenate(outputs), weights)
    if stage is None:
        notes.append(f"output stage: LayerNorm scores {scores} are not definitive; the declaration stands")

    resolved = _resolve(declared, per_token, positions, stage, tokenizer_family)
    contradictions = _contradictions(declared, resolved, per_token)
    return CutEvidence(per_token, positions, spread, stage, scores, declared, resolved, contradictions, tuple(notes))


def _busy_token(weights: TextHostWeights, inputs: ProbeInputs) -> int:
    """A token with a non-zero embedding to fill every row with (padding may embed to zero)."""
    for token in (int(t) for ids in inputs.query_ids for t in ids):
        if token != inputs.pad_id and np.any(np.asarray(weights.token_embedding[token]) != 0):
            return token
    return inputs.pad_id


async def _reorder_spread(run: RunFrame, frame, inputs: ProbeInputs, rows_of) -> float | None:
    """Pooled output: the largest change, over the queries, from reversing a query's content tokens."""
    spreads = []
    for ids in inputs.query_ids:
        content = np.flatnonzero(ids != inputs.pad_id)[:-1]  # keep the closing token and padding in place
        if len(content) >= 2 and len(set(ids[content].tolist())) >= 2:
            reordered = ids.copy()
            reordered[content] = ids[content][::-1]
            first = rows_of(await run(frame(ids, False)))
            second = rows_of(await run(frame(reordered, False)))
            spreads.append(relative_spread(np.concatenate([first, second])))
    return max(spreads) if spreads else None


def _resolve(declared: TextCut, per_token: bool, positions: str | None, stage: Stage | None, family: str) -> TextCut:
    pooling = (declared.pooling if declared.pooling != "hef" else family_pooling(family)) if per_token else "hef"
    final_layer_norm, projection = STAGE_CUT[stage] if stage else (declared.final_layer_norm, declared.projection)
    return TextCut(
        positions=positions or declared.positions,
        pooling=pooling,
        final_layer_norm=final_layer_norm,
        projection=projection,
    )


def stage_name(cut: TextCut) -> str:
    """The output stage a cut implies (the inverse of STAGE_CUT), for messages."""
    for stage, flags in STAGE_CUT.items():
        if flags == (cut.final_layer_norm, cut.projection):
            return stage
    return "residual stage with no projection after it"


def _contradictions(declared: TextCut, resolved: TextCut, per_token: bool) -> tuple[str, ...]:
    found = []
    if resolved.positions != declared.positions:
        where = {"hef": "inside the HEF", "host": "on the host"}
        found.append(
            f"positions: the catalog adds them {where[declared.positions]}, the HEF shows they belong "
            f"{where[resolved.positions]}" + (" (they would have been added twice)" if declared.positions == "host" else
                                               " (they would have been missing)")
        )
    if (declared.pooling == "hef") != (not per_token):
        shape = "per-token" if per_token else "pooled"
        found.append(f"pooling: the catalog expects a {'pooled' if declared.pooling == 'hef' else 'per-token'} output, "
                     f"the HEF's is {shape}")
    if (resolved.final_layer_norm, resolved.projection) != (declared.final_layer_norm, declared.projection):
        found.append(
            f"output stage: the catalog declares the HEF ends at the {stage_name(declared)} stage, "
            f"its output is the {stage_name(resolved)} stage"
        )
    return tuple(found)
