"""DBNet post-processing: text boxes from a probability map, following Immich's OCR detector.

Steps (immich-protocol.md §6.5): threshold the map at 0.3, dilate 2x2, take at most 1000 contours,
fit a rotated rectangle to each (short side < 3 dropped), score it (mean probability inside the box
for "fast", inside the contour for "slow"), keep score >= box threshold, unclip by the distance
area * 1.6 / perimeter, fit again (short side < 5 dropped). Then, in received-image pixels: round,
clip, order the corners TL, TR, BR, BL, drop boxes 3 px or less on a side, and sort in reading order.

Unclipping: PaddleOCR offsets the polygon with a round-joined Clipper offset and takes the
`minAreaRect` of the result. Our polygon is always a rectangle, and the minimum-area rectangle of a
rectangle offset by `d` with round corners is the rectangle grown by `d` on every side, so growing
the rectangle's sides gives the same box without a polygon-clipping library.
"""

from __future__ import annotations

import cv2
import numpy as np

BINARY_THRESHOLD = 0.3
UNCLIP_RATIO = 1.6
MAX_CANDIDATES = 1000
MIN_SIZE = 3
MIN_SIDE_PX = 3
LINE_GAP_PX = 10
SCORE_MODES = ("fast", "slow")


def mini_box(rect: tuple) -> tuple[np.ndarray, float]:
    """Corners of a `cv2.minAreaRect` result, ordered as PaddleOCR does, and its short side."""
    points = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    first, fourth = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    second, third = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    box = np.array([points[first], points[second], points[third], points[fourth]], dtype=np.float32)
    return box, float(min(rect[1]))


def _mean_inside(prob: np.ndarray, polygon: np.ndarray) -> float:
    """Mean of `prob` over the pixels a filled polygon covers (its bounding box clipped to the map)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(polygon[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(polygon[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(polygon[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(polygon[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    shifted = (polygon - np.array([x0, y0], dtype=polygon.dtype)).astype(np.int32)
    cv2.fillPoly(mask, [shifted.reshape(-1, 1, 2)], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def box_score(prob: np.ndarray, box: np.ndarray, contour: np.ndarray, mode: str) -> float:
    """DB box score: "fast" averages inside the rectangle, "slow" inside the contour itself."""
    if mode == "fast":
        return _mean_inside(prob, box)
    return _mean_inside(prob, contour.reshape(-1, 2).astype(np.float32))


def unclip(rect: tuple, ratio: float = UNCLIP_RATIO) -> tuple:
    """Grow a rotated rectangle by `area * ratio / perimeter` on every side (see module doc)."""
    (cx, cy), (w, h), angle = rect
    perimeter = 2.0 * (w + h)
    distance = w * h * ratio / perimeter if perimeter > 0 else 0.0
    return (cx, cy), (w + 2 * distance, h + 2 * distance), angle


def db_boxes(
    prob: np.ndarray,
    *,
    box_threshold: float,
    score_mode: str = "fast",
    threshold: float = BINARY_THRESHOLD,
    unclip_ratio: float = UNCLIP_RATIO,
    max_candidates: int = MAX_CANDIDATES,
) -> tuple[np.ndarray, np.ndarray]:
    """Text boxes (N, 4, 2) float32 in probability-map pixels and their scores (N,) float32."""
    if score_mode not in SCORE_MODES:
        raise ValueError(f"score mode {score_mode!r} is not one of {SCORE_MODES}")
    prob = np.ascontiguousarray(prob, dtype=np.float32)
    bitmap = (prob > threshold).astype(np.uint8)
    bitmap = cv2.dilate(bitmap, np.ones((2, 2), dtype=np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    boxes, scores = [], []
    for contour in contours[:max_candidates]:
        rect = cv2.minAreaRect(contour)
        box, short_side = mini_box(rect)
        if short_side < MIN_SIZE:
            continue
        score = box_score(prob, box, contour, score_mode)
        if score < box_threshold:
            continue
        grown = cv2.minAreaRect(cv2.boxPoints(unclip(rect, unclip_ratio)))
        box, short_side = mini_box(grown)
        if short_side < MIN_SIZE + 2:
            continue
        boxes.append(box)
        scores.append(score)
    if not boxes:
        return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack(boxes), np.array(scores, dtype=np.float32)


def order_corners(quad: np.ndarray) -> np.ndarray:
    """TL, TR, BR, BL: the two leftmost points top then bottom, the two rightmost likewise."""
    by_x = quad[np.argsort(quad[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=quad.dtype)


def finish_boxes(
    quads: np.ndarray, scores: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Received-image quads: rounded, clipped to [0, w-1] x [0, h-1], ordered, tiny ones dropped."""
    kept_quads, kept_scores = [], []
    limit = np.array([width - 1, height - 1], dtype=np.float32)
    for quad, score in zip(quads, scores):
        quad = np.clip(np.rint(quad.astype(np.float32)), 0, limit)
        quad = order_corners(quad)
        box_w = int(np.linalg.norm(quad[0] - quad[1]))
        box_h = int(np.linalg.norm(quad[0] - quad[3]))
        if box_w <= MIN_SIDE_PX or box_h <= MIN_SIDE_PX:
            continue
        kept_quads.append(quad)
        kept_scores.append(score)
    if not kept_quads:
        return np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32)
    return np.stack(kept_quads), np.array(kept_scores, dtype=np.float32)


def drop_duplicates(quads: np.ndarray, scores: np.ndarray, sources: np.ndarray, overlap: float = 0.5) -> np.ndarray:
    """Indices of boxes to keep when detector frames overlap: of two boxes from different frames
    whose bounds overlap by more than `overlap` of the smaller one, the lower-scored one goes."""
    lo, hi = quads.min(axis=1), quads.max(axis=1)
    areas = np.prod(np.maximum(hi - lo, 0), axis=1)
    keep: list[int] = []
    for i in np.argsort(-scores, kind="stable").tolist():
        inter = np.prod(np.clip(np.minimum(hi[keep], hi[i]) - np.maximum(lo[keep], lo[i]), 0, None), axis=1)
        same = (inter > overlap * np.minimum(areas[keep], areas[i])) & (sources[keep] != sources[i])
        if not same.any():
            keep.append(i)
    return np.array(sorted(keep), dtype=np.int64)


def reading_order(quads: np.ndarray, line_gap: float = LINE_GAP_PX) -> np.ndarray:
    """Indices that sort boxes top to bottom, then left to right within a line.

    Boxes are taken by their top-left corner; a new line starts where the top edge drops by
    `line_gap` pixels or more from the previous box. (Immich states this intent; its bubble pass can
    leave some orders unsorted, which we do not reproduce.)
    """
    if len(quads) == 0:
        return np.zeros((0,), dtype=np.int64)
    tl = quads[:, 0, :]
    by_y = np.lexsort((tl[:, 0], tl[:, 1]))
    lines: list[list[int]] = [[int(by_y[0])]]
    for prev, cur in zip(by_y[:-1], by_y[1:]):
        if tl[cur, 1] - tl[prev, 1] >= line_gap:
            lines.append([])
        lines[-1].append(int(cur))
    return np.array([i for line in lines for i in sorted(line, key=lambda i: (tl[i, 0], tl[i, 1]))])
