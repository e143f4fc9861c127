"""Text-line crops for the recogniser: perspective crop, rotation, resize, pad, long-line windows.

Crops follow Immich: a perspective warp of the quad from the full-resolution received image
(bicubic, border replicated), size from the quad's longer opposite edges (truncated), turned 90°
counter-clockwise when h/w >= 1.5. Each line is resized (bilinear) to the recogniser's height 48
keeping its aspect ratio and padded on the right with pixel value 128, which the HEF's in-network
(x - 127.5) / 127.5 turns into ~0, the value Immich pads with in normalised space.

The Hailo recogniser's input is a fixed 320 px wide; Immich instead widens its batch. A line wider
than 320/48 would have to be squashed, which ruins long lines, so it is read in overlapping
windows at full height. The recogniser misreads text that runs up to its input's edge (a window of
a scanned page ending mid-word read "thetw eemepatsf h" for "the two extreme parts of the", and
read it exactly with room after it), so windows begin and end in blank columns between letters
or words where the line has them (`_blank_cuts`), each padded after its end as Immich pads the
shorter lines of a batch; only a line without such columns is cut at fixed positions. Each
window's CTC steps cover 8 px of its input, which places every decoded character on the line;
neighbouring windows are stitched at a character both read in their overlap (see `_join`).
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
# A column is blank when its range of grey levels is at most this share of the line's largest.
BLANK_CONTRAST = 0.25
MIN_CUT_OVERLAP = 48  # one line height: at least a character read by both windows, to stitch at


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


def _blank_runs(line: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) column runs of a resized line that hold no ink.

    A column through a letter spans ink and the background around it, a column between words only
    background, so a column's range (not its distance from a guessed background) tells them apart,
    whatever the colours and however dense the text.
    """
    grey = line.astype(np.float32).mean(axis=2) if line.ndim == 3 else line.astype(np.float32)
    spread = grey.max(axis=0) - grey.min(axis=0)
    contrast = float(spread.max())
    if contrast == 0.0:
        return []
    blank = np.concatenate([[False], spread <= BLANK_CONTRAST * contrast, [False]])
    edges = np.flatnonzero(np.diff(blank.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _blank_cuts(line: np.ndarray, width: int, overlap: int) -> list[tuple[int, int]] | None:
    """(start, end) of each window, every start and end in a blank run, or None.

    A window ends at the last blank column that keeps it within `width`, at least half a window
    on; the next one starts at the blank column nearest `overlap` before that end, but at least
    MIN_CUT_OVERLAP before it, so both windows read some characters whole.
    """
    full = line.shape[1]
    centres = [(a + b) // 2 for a, b in _blank_runs(line) if 0 < a and b < full]
    spans, start = [], 0
    while full - start > width:
        ends = [c for c in centres if start + width // 2 <= c <= start + width]
        if not ends:
            return None
        end = max(ends)
        starts = [c for c in centres if start < c <= end - MIN_CUT_OVERLAP]
        if not starts:
            return None
        spans.append((start, end))
        start = min(starts, key=lambda c: abs(end - overlap - c))
    return spans + [(start, full)]


def line_windows(
    crop: np.ndarray, height: int = REC_HEIGHT, width: int = REC_WIDTH, overlap: int = WINDOW_OVERLAP
) -> list[Window]:
    """Recogniser frames for a line: one padded frame, or overlapping windows for a long line."""
    full = line_width(crop, height)
    if full <= width:
        return [Window(squashed_frame(crop, height, width), 0, -math.inf)]
    line = cv2.resize(crop, (full, height), interpolation=cv2.INTER_LINEAR)
    spans = _blank_cuts(line, width, overlap)
    if spans is None:
        count = math.ceil((full - overlap) / (width - overlap))
        offsets = [round(i * (full - width) / (count - 1)) for i in range(count)]
        spans = [(x0, x0 + width) for x0 in offsets]
    cuts = [-math.inf] + [(spans[i - 1][1] + spans[i][0]) / 2 for i in range(1, len(spans))]
    return [
        Window(_pad_right(np.ascontiguousarray(line[:, x0:x1]), width), x0, cut)
        for (x0, x1), cut in zip(spans, cuts)
    ]


def _placed(path: CtcPath, window: Window, step_px: float) -> CtcPath:
    """The path with each kept step's position in line pixels (its step centre)."""
    return CtcPath(path.classes, path.probs, window.offset + (path.steps + 0.5) * step_px)


def _join(left: CtcPath, right: CtcPath, cut: float, tolerance: float) -> CtcPath:
    """Stitch two neighbouring windows' placed paths at their shared region around `cut`.

    Preferably at an anchor: the same character read by both windows at nearly the same place
    (the nearest placements first, then closest to the cut); the left path is kept up to it and the right path after it. CTC peaks
    wander by a step or two near a window's edge, so a bare position cut could drop or double a
    character; the anchor cannot. Without an anchor the bare cut is used.
    """
    best: tuple[float, float, int, int] | None = None
    for i, (cls, pos) in enumerate(zip(left.classes.tolist(), left.steps.tolist())):
        for j in np.flatnonzero((right.classes == cls) & (np.abs(right.steps - pos) <= tolerance)).tolist():
            # Where both windows place it closest first: in "9981" the first 9 of one window and
            # the second of the other are a pitch apart, within the tolerance, and not one character.
            mismatch = round(abs(right.steps[j] - pos) / (tolerance / 2))
            candidate = (mismatch, abs((pos + right.steps[j]) / 2 - cut), i, j)
            if best is None or candidate < best:
                best = candidate
    if best is None:
        keep_left, keep_right = left.steps < cut, right.steps >= cut
    else:
        _, _, i, j = best
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
