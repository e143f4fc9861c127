"""Five-point face alignment onto the ArcFace template (insightface `norm_crop`, Immich §6.4).

ArcFace was trained on faces warped so that the eyes, nose tip and mouth corners land on fixed
points of a 112 x 112 crop; feeding it a plain box crop degrades embeddings (hailo-models.md §6,
pitfall 5). The transform is the least-squares similarity (rotation, uniform scale, translation)
of Umeyama (1991), which is what scikit-image's `SimilarityTransform.estimate` computes for Immich.
"""

from __future__ import annotations

import cv2
import numpy as np

ARCFACE_SIZE = 112
# insightface (and Immich after it) declares the template as float32; its float32-rounded values are
# used here too, because the 1e-6 difference to the decimal ones moves the warp matrix enough to
# change interpolated pixels by one level, and with them Immich's recogniser's output.
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
).astype(np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 matrix M minimising sum |M [src_i, 1] - dst_i|^2 over similarities (Umeyama).

    With the cross-covariance C = U D V^T of the centred point sets, the rotation is U S V^T where
    S = diag(1, det U * det V) rules out reflections (this also covers the collinear, rank-1 case),
    the scale is trace(D S) / variance(src) and the translation maps the source centroid onto the
    destination centroid. Identical source points have no defined rotation or scale; we then map
    everything onto the destination centroid rather than produce NaN.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    variance = float((src_c**2).sum() / len(src))
    if variance == 0.0:
        return np.hstack([np.zeros((2, 2)), dst_mean[:, None]])
    u, d, vt = np.linalg.svd(dst_c.T @ src_c / len(src))
    signs = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt))])
    rotation = u @ np.diag(signs) @ vt
    scale = float(d @ signs) / variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """The size x size ArcFace crop of `image` (H, W, 3) for one face's five (x, y) landmarks."""
    template = ARCFACE_TEMPLATE * (size / ARCFACE_SIZE)
    matrix = similarity_transform(landmarks, template)
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
