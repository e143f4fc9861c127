"""Immich's CLIP image transform, up to the uint8 crop the image HEF takes.

Immich (immich-protocol.md §6.1) resizes the RGB image so the shorter side becomes S with Pillow's
bicubic filter, the longer side being `int(long / short * S)` (truncated), then centre-crops S x S
at `left = int(W/2 - S/2)`, `top = int(H/2 - S/2)` (truncated, unlike torchvision's rounding). It
does this for every model, including SigLIP, which open_clip would squash instead: matching Immich,
not the model's own recipe, is what keeps new vectors in the space of a library's stored ones.
Immich then divides by 255 and normalises; the Hailo image HEFs normalise in-network, so the host
stops at the uint8 crop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from ml_target.errors import BadRequest

MAX_ASPECT_RATIO = 256  # bounds the intermediate resized image (S x 256 S) for absurd strips


@dataclass(frozen=True)
class CropGeometry:
    """Size after the short-side resize and the crop's top-left corner in that resized image."""

    resized_width: int
    resized_height: int
    left: int
    top: int


def crop_geometry(width: int, height: int, size: int) -> CropGeometry:
    """Immich's integer arithmetic for the resize and centre crop of a `width` x `height` image."""
    if width < height:
        resized = (size, int(height / width * size))
    else:
        resized = (int(width / height * size), size)
    left = int(resized[0] / 2 - size / 2)
    top = int(resized[1] / 2 - size / 2)
    return CropGeometry(resized[0], resized[1], left, top)


def clip_crop(image: np.ndarray, size: int, full_size: tuple[int, int] | None = None) -> np.ndarray:
    """(size, size, 3) uint8 crop of an RGB uint8 (H, W, 3) image, pixel-identical to Immich's.

    `full_size` (height, width) says `image` is a reduced-scale decode of a larger image
    (`ml_target.vision.decode.decode_reduced`): the resize and crop geometry are then Immich's for
    the full size, applied to the reduced pixels, so only the resampling source differs (measured
    by the service benchmark), never the framing.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2] if full_size is None else full_size
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise BadRequest(f"image of {width}x{height} is more elongated than {MAX_ASPECT_RATIO}:1")
    geometry = crop_geometry(width, height, size)
    resized = Image.fromarray(image).resize(
        (geometry.resized_width, geometry.resized_height), resample=Image.Resampling.BICUBIC
    )
    box = (geometry.left, geometry.top, geometry.left + size, geometry.top + size)
    return np.asarray(resized.crop(box), dtype=np.uint8)
