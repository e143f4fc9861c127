"""Agreement measures between Immich's reference outputs and the worker's, on the same inputs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Summary:
    """Distribution of a per-item measure: what the verdicts and the report read."""

    count: int
    mean: float
    p5: float
    min: float

    def to_dict(self) -> dict[str, float | int]:
        return {"count": self.count, "mean": self.mean, "p5": self.p5, "min": self.min}


def summarise(values: Sequence[float]) -> Summary:
    """Mean, 5th percentile (linear interpolation) and minimum; NaN for an empty list."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return Summary(0, float("nan"), float("nan"), float("nan"))
    return Summary(
        int(array.size),
        float(array.mean()),
        float(np.percentile(array, 5)),
        float(array.min()),
    )


def cosines(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two (N, D) arrays (each row normalised here)."""
    a = np.asarray(ours, np.float64)
    b = np.asarray(reference, np.float64)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return np.sum(a * b, axis=-1)


def top_k_overlap(
    ref_text: np.ndarray,
    ref_images: np.ndarray,
    our_text: np.ndarray,
    our_images: np.ndarray,
    k: int,
) -> np.ndarray:
    """Per query: |top-k images by Immich's vectors ∩ top-k by ours| / k (k capped at the image count).

    This is what a user sees: whether a search returns the same photos first.
    """
    k = min(k, len(ref_images))
    ref_rank = np.argsort(-(ref_text @ ref_images.T), axis=1, kind="stable")[:, :k]
    our_rank = np.argsort(-(our_text @ our_images.T), axis=1, kind="stable")[:, :k]
    return np.array([len(set(a) & set(b)) / k for a, b in zip(ref_rank, our_rank)])


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two axis-aligned boxes (x1, y1, x2, y2)."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def quad_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two convex quadrilaterals (4, 2), e.g. rotated OCR boxes."""
    a, b = (
        np.asarray(a, np.float32).reshape(4, 2),
        np.asarray(b, np.float32).reshape(4, 2),
    )
    area_a, area_b = abs(cv2.contourArea(a)), abs(cv2.contourArea(b))
    inter, _ = cv2.intersectConvexConvex(_convex(a), _convex(b))
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def _convex(quad: np.ndarray) -> np.ndarray:
    return cv2.convexHull(quad.reshape(-1, 1, 2)).astype(np.float32)


def greedy_pairs(scores: np.ndarray, minimum: float) -> list[tuple[int, int]]:
    """Pairs (i, j) of a (N, M) similarity matrix, best first, each row and column used once."""
    pairs, used_i, used_j = [], set(), set()
    for flat in np.argsort(-scores, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, scores.shape)
        if scores[i, j] < minimum:
            break
        if i not in used_i and j not in used_j:
            pairs.append((int(i), int(j)))
            used_i.add(i)
            used_j.add(j)
    return pairs


@dataclass(frozen=True)
class LineAgreement:
    """OCR agreement on one image: lines with identical text, and the IoU of their boxes."""

    reference_lines: int
    worker_lines: int
    exact: int
    ious: list[float]
    only_reference: list[str]
    only_worker: list[str]


def match_lines(
    ref_quads: Sequence[np.ndarray],
    ref_text: Sequence[str],
    our_quads: Sequence[np.ndarray],
    our_text: Sequence[str],
) -> LineAgreement:
    """Pair lines with identical text (the closest box first) and measure their box IoU.

    Pairing by text rather than by position keeps the two measures apart: boxes in the wrong units
    still pair (and then show IoU ~0), and a misread line does not borrow a neighbour's box.
    """
    n, m = len(ref_text), len(our_text)
    scores = np.full((n, m), -1.0)
    for i in range(n):
        for j in range(m):
            if ref_text[i] == our_text[j]:
                scores[i, j] = quad_iou(ref_quads[i], our_quads[j])
    pairs = greedy_pairs(scores, 0.0) if n and m else []
    paired_ref, paired_ours = {i for i, _ in pairs}, {j for _, j in pairs}
    return LineAgreement(
        n,
        m,
        len(pairs),
        [float(scores[i, j]) for i, j in pairs],
        [ref_text[i] for i in range(n) if i not in paired_ref],
        [our_text[j] for j in range(m) if j not in paired_ours],
    )
