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

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ml_target.errors import BadRequest

MAX_ASPECT_RATIO = 256  # bounds the intermediate resized image (S x 256 S) for absurd strips
BICUBIC = Image.Resampling.BICUBIC
BICUBIC_SUPPORT = 2.0  # Pillow's bicubic kernel reaches two source pixels each side, times the scale


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
    by the service benchmark), never the framing. That path, already approximate, resamples only
    the crop's source region (`_crop_of_reduced`), about a third less work.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2] if full_size is None else full_size
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise BadRequest(f"image of {width}x{height} is more elongated than {MAX_ASPECT_RATIO}:1")
    geometry = crop_geometry(width, height, size)
    if image.shape[:2] != (height, width):
        return _crop_of_reduced(image, geometry, size)
    resized = _resize_horizontal_first(Image.fromarray(image), (geometry.resized_width, geometry.resized_height))
    box = (geometry.left, geometry.top, geometry.left + size, geometry.top + size)
    return np.asarray(resized.crop(box), dtype=np.uint8)


def _resize_horizontal_first(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Pillow's bicubic resize with the horizontal pass first, as the Pillow Immich runs does.

    Immich's ML service pins Pillow < 11, whose resize always runs the horizontal pass first.
    Pillow 13 runs some resizes vertical-first, and its 8-bit intermediate then rounds differently:
    up to 24 levels apart, on about one geometry in ten (narrow portraits such as 241x496). Two
    single-axis resizes fix the order, and each is exactly one pass of the old resize.
    """
    return image.resize((size[0], image.height), resample=BICUBIC).resize(size, resample=BICUBIC)


def _crop_of_reduced(pixels: np.ndarray, geometry: CropGeometry, size: int) -> np.ndarray:
    """Resize-then-crop computed for the crop only: the horizontal pass over the band of rows the
    vertical pass reads, then the vertical pass, with the same filter scales and sample positions.

    The passes are explicit for the reason `_resize_horizontal_first` gives. Pillow takes the box
    as float32, which moves about one value in a thousand by one level.
    """
    rows, columns = pixels.shape[:2]
    x_scale = columns / geometry.resized_width
    y_scale = rows / geometry.resized_height
    top, bottom = geometry.top * y_scale, (geometry.top + size) * y_scale
    reach = BICUBIC_SUPPORT * max(y_scale, 1.0) + 1.0  # source rows a crop row reads, plus rounding
    first, last = max(0, math.floor(top - reach)), min(rows, math.ceil(bottom + reach))
    left, right = geometry.left * x_scale, (geometry.left + size) * x_scale
    band = Image.fromarray(pixels[first:last])
    narrowed = band.resize((size, last - first), resample=BICUBIC, box=(left, 0, right, last - first))
    crop = narrowed.resize((size, size), resample=BICUBIC, box=(0, top - first, size, bottom - first))
    return np.asarray(crop, dtype=np.uint8)
