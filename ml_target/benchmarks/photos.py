"""Benchmark payloads shaped like what Immich's server sends: previews of real photographs.

Immich's ML jobs upload the asset's preview, a JPEG whose shorter side is 1440 px (quality 80 by
default), never the original. The photographs are scikit-image's bundled public-domain pictures,
upscaled to that size and re-encoded the same way, so decode, resize and upload costs match a real
library. Face photos are group shots composed from the one photographed face scikit-image ships
(the astronaut), pasted three times at different sizes onto other photographs: the emulator's
stand-in detector finds every copy, which a benchmark needs to exercise ArcFace with several crops.
OCR pages are rendered text (`ml_target.testing.ocr_pages`), as a photographed document would be.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

PREVIEW_SHORT_SIDE = 1440
PREVIEW_QUALITY = 80
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")
BACKGROUNDS = ("coffee", "rocket", "chelsea")
# The astronaut's head (rows, columns) in skimage's 512 x 512 picture, and where three copies go:
# (centre x, centre y as fractions of the preview, scale of the head crop). Sizes the LBP stand-in
# detector finds reliably after the 640 px letterbox.
HEAD = (slice(20, 260), slice(120, 300))
GROUP_LAYOUT = ((0.17, 0.5, 2.2), (0.5, 0.5, 2.0), (0.83, 0.5, 2.4))
SEARCH_QUERIES = (
    "dog playing on the beach",
    "birthday cake with candles",
    "snowy mountains at sunset",
    "red car parked in the street",
    "people hiking in a forest",
    "a cat sleeping on the sofa",
    "fireworks over the city",
    "receipt from the restaurant",
)


def _skimage_photo(name: str) -> np.ndarray:
    from skimage import data

    pixels = getattr(data, name)()
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[:, :, None], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3]).astype(np.uint8)


def to_preview_size(pixels: np.ndarray, short_side: int = PREVIEW_SHORT_SIDE) -> np.ndarray:
    """Resize so the shorter side is `short_side` (bicubic), keeping the aspect ratio."""
    height, width = pixels.shape[:2]
    scale = short_side / min(height, width)
    size = (max(short_side, round(width * scale)), max(short_side, round(height * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_CUBIC)


def encode_jpeg(pixels: np.ndarray, quality: int = PREVIEW_QUALITY) -> bytes:
    """Baseline JPEG with 4:2:0 chroma, as Immich's preview generation writes (via libvips)."""
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, subsampling="4:2:0")
    return buffer.getvalue()


def group_photo(background: np.ndarray, head: np.ndarray) -> np.ndarray:
    """`background` at preview size with three copies of `head` pasted along its middle."""
    canvas = to_preview_size(background).copy()
    height, width = canvas.shape[:2]
    for fx, fy, scale in GROUP_LAYOUT:
        copy = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
        top = int(height * fy - copy.shape[0] / 2)
        left = int(width * fx - copy.shape[1] / 2)
        canvas[top : top + copy.shape[0], left : left + copy.shape[1]] = copy
    return canvas


def text_photo() -> np.ndarray:
    """A rendered page of known phrases at preview size (landscape, 32 px text)."""
    from ml_target.testing.ocr_pages import text_page

    page, _ = text_page(2160, PREVIEW_SHORT_SIDE, 32)
    return page


def preview_pixels() -> dict[str, np.ndarray]:
    """Each scikit-image photograph in `PHOTOS` at preview size, before JPEG encoding."""
    return {name: to_preview_size(_skimage_photo(name)) for name in PHOTOS}


def preview_jpegs() -> list[bytes]:
    """One Immich preview per scikit-image photograph in `PHOTOS`."""
    return [encode_jpeg(pixels) for pixels in preview_pixels().values()]


def group_jpegs() -> list[bytes]:
    """One three-face group photo per background in `BACKGROUNDS`."""
    head = _skimage_photo("astronaut")[HEAD]
    return [encode_jpeg(group_photo(_skimage_photo(name), head)) for name in BACKGROUNDS]


def text_jpegs() -> list[bytes]:
    """The rendered page as an Immich preview."""
    return [encode_jpeg(text_photo())]
