"""Greedy CTC decoding of the PP-OCRv5 recogniser output, scored the way Immich scores it.

Immich (via RapidOCR) takes the argmax class per time step, collapses repeats, drops the blank
(class 0), and scores a line as the mean of the kept steps' max probabilities, each rounded to 5
decimals and the mean rounded to 5 again; an empty line scores 0. The kept steps are returned with
their time-step index so that a long line read in overlapping windows can be stitched by position.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

BLANK_CLASS = 0


@dataclass(frozen=True)
class CtcPath:
    """The kept (non-blank, non-repeated) steps of a greedy CTC path."""

    classes: np.ndarray  # (K,) int class ids
    probs: np.ndarray  # (K,) float max probability at each kept step
    steps: np.ndarray  # (K,) time-step index of each kept step (line pixels once windows are merged)


def greedy_path(probs: np.ndarray, dequantise: Callable[[np.ndarray], np.ndarray] | None = None) -> CtcPath:
    """Best path through (T, C) per-step class probabilities, repeats collapsed, blanks dropped.

    `probs` may be the device's raw integers with `dequantise` mapping them to probabilities: the
    mapping is increasing, so the argmax is the same, and only the kept steps are dequantised.
    """
    if probs.ndim != 2:
        raise ValueError(f"expected (time steps, classes) probabilities, got shape {probs.shape}")
    best = probs.argmax(axis=1)
    keep = best != BLANK_CLASS
    keep[1:] &= best[1:] != best[:-1]
    steps = np.flatnonzero(keep)
    kept = probs[steps, best[steps]]
    if dequantise is not None:
        kept = dequantise(kept)
    return CtcPath(classes=best[steps], probs=kept.astype(np.float64), steps=steps)


def path_text(classes: np.ndarray, table: tuple[str, ...]) -> str:
    """The string of a sequence of class ids (ids outside the table are a caller bug)."""
    return "".join(table[int(c)] for c in classes)


def line_score(probs: np.ndarray) -> float:
    """Immich's line score: mean of per-step probabilities rounded to 5 decimals, rounded to 5."""
    if len(probs) == 0:
        return 0.0
    return float(np.round(np.mean([round(float(p), 5) for p in probs]), 5))


def decode(probs: np.ndarray, table: tuple[str, ...]) -> tuple[str, float]:
    """Text and score of one line from its (T, C) probabilities."""
    path = greedy_path(probs)
    return path_text(path.classes, table), line_score(path.probs)
