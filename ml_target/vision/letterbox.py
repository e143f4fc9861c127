"""Top-left letterbox for SCRFD, reproducing insightface's `RetinaFace.detect` (Immich §6.4).

Immich's boxes are the detector's boxes divided by `det_scale`; to land on the same integral pixels
we must resize to exactly the same size with the same interpolation and paste at the same corner.
The size rule truncates with `int()` on floats, so it is reproduced operation for operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterboxed:
    """A detector input canvas and the factor that maps canvas pixels back: original = canvas / scale."""

    image: np.ndarray
    scale: float


def letterbox_size(height: int, width: int, out_height: int, out_width: int) -> tuple[int, int]:
    """(new_h, new_w) of the resized image inside an out_height x out_width canvas, Immich's rule.

    insightface truncates, which gives 0 for extreme aspect ratios (e.g. 1x1000) and then crashes in
    resize; we keep at least one pixel so such images simply yield no faces.
    """
    im_ratio = float(height) / width
    model_ratio = float(out_height) / out_width
    if im_ratio > model_ratio:
        new_h = out_height
        new_w = int(new_h / im_ratio)
    else:
        new_w = out_width
        new_h = int(new_w * im_ratio)
    return max(new_h, 1), max(new_w, 1)


def letterbox(image: np.ndarray, out_height: int = 640, out_width: int = 640) -> Letterboxed:
    """Resize `image` (H, W, C uint8) bilinearly into the top-left of a black canvas."""
    height, width = image.shape[:2]
    new_h, new_w = letterbox_size(height, width, out_height, out_width)
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((out_height, out_width, *image.shape[2:]), dtype=image.dtype)
    canvas[:new_h, :new_w] = resized.reshape(new_h, new_w, *image.shape[2:])
    return Letterboxed(image=canvas, scale=float(new_h) / height)
