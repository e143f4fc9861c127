"""Text-line crops for the recogniser: perspective crop, rotation, resize, pad, long-line windows.

Crops follow Immich: a perspective warp of the quad from the full-resolution received image
(bicubic, border replicated), size from the quad's longer opposite edges (truncated), turned 90°
counter-clockwise when h/w >= 1.5. Each line is resized (bilinear) to the recogniser's height 48
keeping its aspect ratio and padded on the right with pixel value 128, which the HEF's in-network
(x - 127.5) / 127.5 turns into ~0, the value Immich pads with in normalised space.

The Hailo recogniser's input is a fixed 320 px wide; Immich instead widens its batch. A line wider
than 320/48 would have to be squashed, which ruins long lines, so it is cut into overlapping
windows at full height, each `WINDOW_TEXT_WIDTH` px of the line padded to 320 px. Each window's CTC steps cover 8 px of its input, which places every
decoded character on the line; neighbouring windows are stitched at a character both read in their
overlap (see `_join`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ml_target.vision.ctc import CtcPath

REC_HEIGHT = 48
REC_WIDTH = 320
PAD_VALUE = 128
ROTATE_ASPECT = 1.5
WINDOW_OVERLAP = 96  # two line heights: every character near a cut is whole in both windows
# Line pixels per window; the rest of the 320 px frame is padding. PP-OCRv5's recogniser reads text
# that runs to the frame's right edge badly: on scikit-image's scanned page, a window of "the two
# extreme parts of the" read "thetw eemepatsf h" at 320 px of text and exactly with 80 px of padding
# after 320 px of text (README, OCR). Immich's own batches give long lines such padding whenever a
# wider line shares the batch.
WINDOW_TEXT_WIDTH = 240


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective crop of a TL, TR, BR, BL quad; tall crops are turned 90° counter-clockwise."""
    quad = quad.astype(np.float32)
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if height / width >= ROTATE_ASPECT:
        crop = np.ascontiguousarray(np.rot90(crop))
    return crop


def line_width(crop: np.ndarray, height: int = REC_HEIGHT) -> int:
    """Width of the line at the recogniser's height, keeping its aspect ratio."""
    h, w = crop.shape[:2]
    return max(1, math.ceil(height * w / h))


def _pad_right(line: np.ndarray, width: int) -> np.ndarray:
    frame = np.full((line.shape[0], width, line.shape[2]), PAD_VALUE, dtype=np.uint8)
    frame[:, : line.shape[1]] = line
    return frame


@dataclass(frozen=True)
class Window:
    """One recogniser frame cut from a line: it starts at `offset` px of the resized line, and
    takes over from the previous window around `cut` px (the middle of their overlap)."""

    frame: np.ndarray
    offset: int
    cut: float


def squashed_frame(crop: np.ndarray, height: int = REC_HEIGHT, width: int = REC_WIDTH) -> np.ndarray:
    """The whole line in one frame, squashed horizontally if wider than `width` (the baseline)."""
    line = cv2.resize(crop, (min(line_width(crop, height), width), height), interpolation=cv2.INTER_LINEAR)
    return _pad_right(line, width)


def line_windows(
    crop: np.ndarray,
    height: int = REC_HEIGHT,
    width: int = REC_WIDTH,
    overlap: int = WINDOW_OVERLAP,
    text_width: int = WINDOW_TEXT_WIDTH,
) -> list[Window]:
    """Recogniser frames for a line: one padded frame, or overlapping windows for a long line,
    each holding `text_width` px of the line and padding after it (module docstring)."""
    full = line_width(crop, height)
    if full <= width:
        return [Window(squashed_frame(crop, height, width), 0, -math.inf)]
    line = cv2.resize(crop, (full, height), interpolation=cv2.INTER_LINEAR)
    span = min(text_width, width)
    count = math.ceil((full - overlap) / (span - overlap))
    offsets = [round(i * (full - span) / (count - 1)) for i in range(count)]
    cuts = [-math.inf] + [(offsets[i - 1] + span + offsets[i]) / 2 for i in range(1, count)]
    return [Window(_pad_right(line[:, x0 : x0 + span], width), x0, cut) for x0, cut in zip(offsets, cuts)]


def _placed(path: CtcPath, window: Window, step_px: float) -> CtcPath:
    """The path with each kept step's position in line pixels (its step centre)."""
    return CtcPath(path.classes, path.probs, window.offset + (path.steps + 0.5) * step_px)


def _join(left: CtcPath, right: CtcPath, cut: float, tolerance: float) -> CtcPath:
    """Stitch two neighbouring windows' placed paths at their shared region around `cut`.

    Preferably at an anchor: the same character read by both windows at nearly the same place,
    closest to the cut; the left path is kept up to it and the right path after it. CTC peaks
    wander by a step or two near a window's edge, so a bare position cut could drop or double a
    character; the anchor cannot. Without an anchor the bare cut is used.
    """
    best: tuple[float, int, int] | None = None
    for i, (cls, pos) in enumerate(zip(left.classes.tolist(), left.steps.tolist())):
        for j in np.flatnonzero((right.classes == cls) & (np.abs(right.steps - pos) <= tolerance)).tolist():
            distance = abs((pos + right.steps[j]) / 2 - cut)
            if best is None or distance < best[0]:
                best = (distance, i, j)
    if best is None:
        keep_left, keep_right = left.steps < cut, right.steps >= cut
    else:
        _, i, j = best
        keep_left = np.arange(len(left.classes)) <= i
        keep_right = np.arange(len(right.classes)) > j
    return CtcPath(
        classes=np.concatenate([left.classes[keep_left], right.classes[keep_right]]),
        probs=np.concatenate([left.probs[keep_left], right.probs[keep_right]]),
        steps=np.concatenate([left.steps[keep_left], right.steps[keep_right]]),
    )


def merge_windows(paths: list[CtcPath], windows: list[Window], step_px: float) -> CtcPath:
    """Stitch per-window CTC paths into one path over the whole line (positions in line pixels)."""
    merged = _placed(paths[0], windows[0], step_px)
    for path, window in zip(paths[1:], windows[1:]):
        merged = _join(merged, _placed(path, window, step_px), window.cut, 2 * step_px)
    return merged
