"""SCRFD head decoding, as insightface's `RetinaFace` decodes it for Immich (§6.4).

The nine output heads are recognised by shape and role, never by layer name: layer names differ
between `scrfd_2.5g` and `scrfd_10g` and between compilations. For an H x W input, a head of spatial
size h x w belongs to stride H / h; within one stride the three heads have A, 4A and 10A channels
(scores, box distances, keypoint offsets) for A anchors per cell.

Decoding follows the reference exactly (see hailo-models.md §6 for the traps of an earlier worker):
every anchor keeps its own score, anchor centres are (col * stride, row * stride) with no
half-stride offset, distances and offsets are multiplied by the stride, boxes and keypoints are
divided by the letterbox scale *before* NMS (so NMS's +1 convention applies in image pixels), and
nothing is clipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from ml_target.results import FaceDetections
from ml_target.vision.nms import nms

NMS_IOU = 0.4
KEYPOINTS = 5


@dataclass(frozen=True)
class Level:
    """The three heads of one stride, by output name, and the number of anchors per cell."""

    stride: int
    anchors: int
    scores: str
    boxes: str
    keypoints: str


def match_heads(shapes: Iterable[tuple[str, tuple[int, ...]]], input_hw: tuple[int, int]) -> tuple[Level, ...]:
    """Assign each (name, (h, w, c)) output to a stride and role; finest stride first.

    Raises ValueError naming what was found when the outputs are not SCRFD heads, so a wrong HEF is
    refused at start-up rather than producing nonsense boxes.
    """
    groups: dict[tuple[int, int], list[tuple[int, str]]] = {}
    for name, shape in shapes:
        if len(shape) != 3:
            raise ValueError(f"SCRFD output {name!r} has shape {shape}; expected (h, w, channels)")
        h, w, c = shape
        groups.setdefault((h, w), []).append((c, name))
    levels = []
    for (h, w), heads in groups.items():
        stride = input_hw[0] // h
        if stride * h != input_hw[0] or stride * w != input_hw[1]:
            raise ValueError(f"SCRFD heads of size {h}x{w} do not divide the {input_hw} input evenly")
        channels = sorted(heads)
        anchors = channels[0][0]
        if [c for c, _ in channels] != [anchors, 4 * anchors, 10 * anchors]:
            found = ", ".join(f"{n} ({h}x{w}x{c})" for c, n in channels)
            raise ValueError(f"stride {stride} heads are not score/box/keypoints (A, 4A, 10A channels): {found}")
        levels.append(Level(stride, anchors, channels[0][1], channels[1][1], channels[2][1]))
    if not levels:
        raise ValueError("no SCRFD output heads")
    return tuple(sorted(levels, key=lambda level: level.stride))


def anchor_centres(height: int, width: int, stride: int, anchors: int) -> np.ndarray:
    """(h * w * anchors, 2) x, y centres in row-major cell order, each cell's anchors adjacent."""
    rows, cols = np.mgrid[0:height, 0:width]
    centres = np.stack([cols, rows], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, anchors, axis=0)


def decode_level(
    outputs: Mapping[str, np.ndarray], level: Level, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (N, 4), scores (N,) and keypoints (N, 5, 2) in detector-input pixels for one stride."""
    score_map = np.asarray(outputs[level.scores], dtype=np.float32)
    h, w = score_map.shape[:2]
    scores = score_map.reshape(-1)
    keep = np.flatnonzero(scores >= min_score)
    centres = anchor_centres(h, w, level.stride, level.anchors)[keep]
    distances = np.asarray(outputs[level.boxes], dtype=np.float32).reshape(-1, 4)[keep] * level.stride
    offsets = np.asarray(outputs[level.keypoints], dtype=np.float32).reshape(-1, KEYPOINTS, 2)[keep] * level.stride
    boxes = np.concatenate([centres - distances[:, :2], centres + distances[:, 2:]], axis=1)
    keypoints = centres[:, None, :] + offsets
    return boxes, scores[keep], keypoints


def decode(
    outputs: Mapping[str, np.ndarray],
    levels: Iterable[Level],
    det_scale: float,
    min_score: float,
    iou_threshold: float = NMS_IOU,
) -> FaceDetections:
    """Faces in original-image pixels, score-descending after NMS; boxes unrounded and unclipped."""
    decoded = [decode_level(outputs, level, min_score) for level in levels]
    boxes = np.concatenate([d[0] for d in decoded]) / det_scale
    scores = np.concatenate([d[1] for d in decoded])
    keypoints = np.concatenate([d[2] for d in decoded]) / det_scale
    kept = nms(boxes, scores, iou_threshold)
    return FaceDetections(
        boxes=boxes[kept].astype(np.float32).reshape(-1, 4),
        scores=scores[kept].astype(np.float32),
        landmarks=keypoints[kept].astype(np.float32).reshape(-1, KEYPOINTS, 2),
    )
