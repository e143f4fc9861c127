"""Pixel levels that make the OCR detector HEF see the values Immich's detector sees.

The detector HEF normalises its uint8 input inside the network with ImageNet's mean and std
(docs/hardware-evidence.md §1.15), while Immich feeds its ONNX detector `(x - 0.5) / 127.5`
(values in [-0.004, 2]; immich-protocol.md §6.5). DB box scores sit close to their 0.5 threshold
on real pages, so the difference decides whether a line is found. A per-channel table maps each pixel level p to the
level q the HEF normalises to Immich's value: (q - mean) / std = (p - 0.5) / 127.5. Immich's range
lands on levels 103-240 of the 256, so no value is clipped. Applied to the frames that are
exactly Immich's input (`ocr_resize`); measured on the real scans (README, OCR) it brings the
worker's character accuracy to Immich's or above on every image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# What Immich's detector subtracts from and divides each 0..255 pixel by (immich-protocol.md §6.5).
IMMICH_DETECTOR_MEAN, IMMICH_DETECTOR_STD = 0.5, 127.5


def immich_levels(mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(1, 256, C) uint8 table for `cv2.LUT`, for a network that normalises channel c as
    (q - mean[c]) / std[c]; the channels are in the order the network is fed."""
    p = np.arange(256, dtype=np.float64)[:, None]
    q = np.asarray(mean, np.float64) + np.asarray(std, np.float64) * (p - IMMICH_DETECTOR_MEAN) / IMMICH_DETECTOR_STD
    return np.clip(np.rint(q), 0, 255).astype(np.uint8)[None]
