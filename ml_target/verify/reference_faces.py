"""Immich's face pipeline (insightface as Immich v3.1 uses it) on onnxruntime, from §6.4.

Independent of the worker's `vision.scrfd` / `letterbox` / `align`. SCRFD: BGR image letterboxed
into the top-left of a black 640 x 640 canvas (bilinear), `(x - 127.5) / 128` on RGB, anchors at
`(col, row) * stride` (no half-stride offset), two per cell, scores >= minScore, boxes and keypoints
divided by the letterbox scale, greedy NMS at IoU 0.4 with the `+1` area convention. ArcFace: a
similarity transform from the five keypoints to the 112-px template, bilinear warp, black border,
`(x - 127.5) / 127.5` on RGB (insightface's mean/std for packs whose graph does not normalise).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ml_target.verify.cache import FaceFiles
from ml_target.verify.onnx_session import cpu_session

DET_SIZE = 640
NMS_IOU = 0.4
STRIDES = (8, 16, 32)
ANCHORS = 2
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Face:
    """One face: box (x1, y1, x2, y2) in received-image pixels, score, keypoints (5, 2), embedding."""

    box: np.ndarray
    score: float
    keypoints: np.ndarray
    embedding: np.ndarray | None = None


def letterbox_top_left(
    bgr: np.ndarray, size: int = DET_SIZE
) -> tuple[np.ndarray, float]:
    """insightface's resize into the top-left corner of a black `size` x `size` canvas; det_scale."""
    h, w = bgr.shape[:2]
    if h / w > 1:
        new_h, new_w = size, int(size / (h / w))
    else:
        new_w, new_h = size, int(size * h / w)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:new_h, :new_w] = cv2.resize(bgr, (new_w, new_h))
    return canvas, new_h / h


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = NMS_IOU) -> list[int]:
    """Greedy NMS, score-descending, areas with insightface's +1 convention."""
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = list(np.argsort(-scores, kind="stable"))
    keep = []
    while order:
        i, rest = order[0], np.array(order[1:], dtype=int)
        keep.append(int(i))
        if rest.size == 0:
            break
        w = np.maximum(
            0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]) + 1
        )
        h = np.maximum(
            0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]) + 1
        )
        overlap = w * h / (areas[i] + areas[rest] - w * h)
        order = list(rest[overlap <= threshold])
    return keep


def decode_scrfd(
    outputs: list[np.ndarray], min_score: float, det_scale: float, size: int = DET_SIZE
) -> list[Face]:
    """insightface's output order: scores per stride, then boxes per stride, then keypoints per stride."""
    levels = len(STRIDES)
    boxes, scores, points = [], [], []
    for k, stride in enumerate(STRIDES):
        score = outputs[k].reshape(-1)
        distance = outputs[k + levels].reshape(-1, 4) * stride
        offsets = outputs[k + 2 * levels].reshape(-1, 10) * stride
        cells = size // stride
        rows, cols = np.mgrid[:cells, :cells]
        centres = (
            np.stack([cols, rows], axis=-1).reshape(-1, 2).astype(np.float32) * stride
        )
        centres = np.repeat(centres, ANCHORS, axis=0)
        hit = score >= min_score
        c = centres[hit]
        boxes.append(
            np.concatenate([c - distance[hit, :2], c + distance[hit, 2:]], axis=1)
        )
        points.append(c[:, None, :] + offsets[hit].reshape(-1, 5, 2))
        scores.append(score[hit])
    boxes_all = np.concatenate(boxes) / det_scale
    scores_all = np.concatenate(scores)
    points_all = np.concatenate(points) / det_scale
    return [
        Face(np.round(boxes_all[i]), float(scores_all[i]), points_all[i])
        for i in nms(boxes_all, scores_all)
    ]


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991) mapping `src` onto `dst`, as a 2 x 3 matrix.

    The estimate scikit-image's `SimilarityTransform` makes for insightface; written out so that
    `verify` needs no scikit-image on a production image.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    u, singular, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    rotation = u @ np.diag(d) @ vt
    scale = float(singular @ d) / src_c.var(axis=0).sum()
    return np.hstack(
        [scale * rotation, (dst_mean - scale * rotation @ src_mean)[:, None]]
    )


def align(rgb: np.ndarray, keypoints: np.ndarray) -> np.ndarray:
    """insightface `norm_crop`: similarity transform onto the ArcFace template, 112 x 112, black border."""
    return cv2.warpAffine(
        rgb, similarity(keypoints, ARCFACE_TEMPLATE), (112, 112), borderValue=0.0
    )


class ImmichFaces:
    """SCRFD detector and ArcFace recogniser of one cached insightface pack."""

    def __init__(self, files: FaceFiles) -> None:
        self.files = files
        self._det = cpu_session(files.detection)
        self._rec = cpu_session(files.recognition)

    def detect(self, rgb: np.ndarray, min_score: float) -> list[Face]:
        canvas, det_scale = letterbox_top_left(np.ascontiguousarray(rgb[..., ::-1]))
        x = ((canvas[..., ::-1].astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1)[
            None
        ]
        outputs = self._det.run(
            None, {self._det.get_inputs()[0].name: np.ascontiguousarray(x)}
        )
        return decode_scrfd(outputs, min_score, det_scale)

    def embed(self, rgb: np.ndarray, faces: list[Face]) -> list[Face]:
        if not faces:
            return []
        crops = np.stack([align(rgb, f.keypoints) for f in faces]).astype(np.float32)
        x = ((crops - 127.5) / 127.5).transpose(0, 3, 1, 2)
        embeddings = self._rec.run(
            None, {self._rec.get_inputs()[0].name: np.ascontiguousarray(x)}
        )[0]
        return [
            Face(f.box, f.score, f.keypoints, e.reshape(-1))
            for f, e in zip(faces, embeddings)
        ]
