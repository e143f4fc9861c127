"""Image bytes -> RGB uint8 (H, W, 3), the way Immich's ML service sees an upload.

Immich opens the upload with Pillow and calls `.convert("RGB")`: no EXIF transposition (the server
already sends an upright preview), no ICC conversion, alpha dropped rather than composited. We do
the same, so `imageWidth`/`imageHeight` and every pixel match what Immich's models received.

Two deliberate differences, both on inputs Immich's server never sends (it always sends a JPEG or
WebP preview):
- 16-bit greyscale (`I;16*`) is scaled to 8 bits; Pillow's `convert` clips it, turning almost
  every 16-bit photo white.
- The declared size is checked against a pixel budget after reading only the header, so a
  decompression bomb costs a few hundred bytes of parsing, not gigabytes of memory.

Decoding is CPU work of tens of milliseconds, so `ImageDecoder` runs it in a thread pool and the
event loop (and `/ping`) stays responsive.

Baseline and progressive colour JPEGs (every preview Immich sends) are decoded by OpenCV's
libjpeg-turbo straight into a numpy array, at full size or at the DCT scale Pillow's `draft` chose:
the same library and the same defaults (integer IDCT, smooth chroma upsampling) as Pillow's, so the
pixels are identical (tests compare them), in about 60% of the time at full size, and without
Pillow's `tobytes` copy, which holds the GIL for several milliseconds per preview and stalls the
event loop under load. Pillow still reads the header first (format, mode, size budget, draft scale)
and decodes everything else: other formats, greyscale and CMYK JPEGs, MPO, and any JPEG that does
not end in an EOI marker, so a truncated upload is refused with Pillow's message instead of being
padded with grey as libjpeg would.

`decode_reduced` serves tasks whose network input is far smaller than the upload (CLIP's 224 px
crop of a 1440 px preview): libjpeg decodes at 1/2, 1/4 or 1/8 scale straight from the DCT
coefficients, which costs a fraction of a full decode and of the big resize after it. The result
keeps the full image's size, so reported dimensions and crop geometry stay those of the upload.
"""

from __future__ import annotations

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from ml_target.errors import BadRequest, PayloadTooLarge

ACCEPTED_FORMATS = ("JPEG", "WEBP", "PNG", "GIF", "TIFF", "BMP")
# The JPEG opener returns multi-picture JPEGs (from many cameras) as format "MPO".
_JPEG_FORMATS = ("JPEG", "MPO")
_FORMAT_LIST = "JPEG, WebP, PNG, GIF, TIFF or BMP"
_JPEG_END = b"\xff\xd9"
# Colour as stored (no EXIF rotation, like Pillow without `exif_transpose`), channels in RGB order.
_LIBJPEG_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION
# OpenCV's IMREAD_REDUCED_GRAYSCALE_n flags are only the 1/n scale bit (greyscale is no bit), so
# they combine with IMREAD_COLOR_RGB; the REDUCED_COLOR ones would also set BGR colour.
_LIBJPEG_SCALES = {
    1: 0,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}


@dataclass(frozen=True)
class ReducedImage:
    """An image decoded at a reduced scale, with the (height, width) of the full image it stands for.

    `pixels` cover the whole image (libjpeg rounds each side up, so the last row and column may
    stand for fewer source pixels); for non-JPEG input they are the full-size pixels.
    """

    pixels: np.ndarray
    full_size: tuple[int, int]


def decode_image(data: bytes, *, max_pixels: int, draft_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode `data` into a read-only, C-contiguous RGB uint8 array of shape (H, W, 3).

    `draft_size` (JPEG only) lets libjpeg decode at a reduced DCT scale that still covers the
    requested (width, height); it changes the returned size, so callers that report dimensions
    to Immich must not use it (`decode_reduced` keeps the full size). The default is an exact,
    full-size decode.

    Raises `BadRequest` (empty, unknown format, corrupt or truncated data, zero size) and
    `PayloadTooLarge` (more than `max_pixels` declared pixels).
    """
    return _decode(data, max_pixels, draft_size).pixels


def decode_reduced(data: bytes, *, max_pixels: int, min_size: tuple[int, int]) -> ReducedImage:
    """Decode at the smallest JPEG DCT scale whose output still covers `min_size` (width, height).

    Same checks and errors as `decode_image`, which the budget applies to the full declared size.
    """
    return _decode(data, max_pixels, min_size)


def _decode(data: bytes, max_pixels: int, draft_size: tuple[int, int] | None) -> ReducedImage:
    if not data:
        raise BadRequest("Image file is empty (zero bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise PayloadTooLarge(f"Image refused as a decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        raise BadRequest(f"Cannot identify the image format; send {_FORMAT_LIST}") from None
    except Exception as exc:  # Pillow's plugins raise many exception types on corrupt headers.
        raise BadRequest(f"Cannot read the image header: {exc}") from None
    with image:
        _check_size(image.width, image.height, max_pixels)
        full_size = (image.height, image.width)
        scale = 1
        if draft_size is not None and image.format in _JPEG_FORMATS:
            image.draft("RGB", draft_size)  # reads nothing: sets the scale and image.size
            scale = _draft_scale(full_size, draft_size)
        if _is_plain_colour_jpeg(image, data):
            pixels = _decode_with_libjpeg(data, scale, (image.height, image.width))
            if pixels is not None:
                return ReducedImage(_read_only(pixels), full_size)
        try:
            image.load()
            return ReducedImage(_read_only(to_rgb(image)), full_size)
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"Image refused as a decompression bomb: {exc}") from None
        except Exception as exc:  # corrupt or truncated data: the reason is the decoder's message
            raise BadRequest(f"Cannot decode the {image.format} image: {exc}") from None


def _is_plain_colour_jpeg(image: Image.Image, data: bytes) -> bool:
    """A complete single-picture YCbCr/RGB JPEG: the case where libjpeg's output is Pillow's."""
    return image.format == "JPEG" and image.mode == "RGB" and data.endswith(_JPEG_END)


def _decode_with_libjpeg(data: bytes, scale: int, size: tuple[int, int]) -> np.ndarray | None:
    """Pixels at 1/`scale`, of (height, width) `size` as Pillow would decode them, from OpenCV's
    libjpeg-turbo with the GIL released; None lets Pillow decode (and explain)."""
    try:
        pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), _LIBJPEG_FLAGS | _LIBJPEG_SCALES[scale])
    except cv2.error:
        return None
    if pixels is None or pixels.shape != (*size, 3):
        return None
    return pixels


def _draft_scale(full_size: tuple[int, int], draft_size: tuple[int, int]) -> int:
    """The DCT scale Pillow's `draft` picks: the largest of 8, 4, 2 that keeps both sides of the
    (height, width) image at least the requested (width, height), else 1 (also for an image
    smaller than requested)."""
    ratio = min(full_size[1] // draft_size[0], full_size[0] // draft_size[1])
    return next((scale for scale in (8, 4, 2) if ratio >= scale), 1)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise BadRequest("Image has zero width or height")
    if width * height > max_pixels:
        raise PayloadTooLarge(
            f"Image is {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}"
            " (MAX_IMAGE_PIXELS); Immich sends previews of at most a few megapixels"
        )


def to_rgb(image: Image.Image) -> np.ndarray:
    """Pixels of a loaded Pillow image as RGB uint8, converting like Pillow's `convert("RGB")`.

    Alpha is dropped without compositing (RGBA, LA, P with transparency), CMYK uses Pillow's
    formula, 1-bit becomes 0/255, `I` and `F` are clipped to 0..255. `I;16*` is scaled instead
    (0..65535 -> 0..255, rounded), see the module docstring.
    """
    if image.mode == "RGB":
        return np.asarray(image)
    if image.mode.startswith("I;16"):
        wide = np.asarray(image).astype(np.uint32)
        grey = ((wide * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    try:
        return np.asarray(image.convert("RGB"))
    except ValueError as exc:
        raise BadRequest(f"Cannot convert image mode {image.mode} to RGB: {exc}") from None


def _read_only(pixels: np.ndarray) -> np.ndarray:
    """One decoded image is shared by concurrent tasks; freezing it stops one task mutating another's input."""
    pixels = np.ascontiguousarray(pixels)
    pixels.flags.writeable = False
    return pixels


class ImageDecoder:
    """Decodes uploads in a bounded thread pool so the event loop never waits on Pillow.

    The pool is created on first use and dropped by `close()`, so an app whose lifespan is
    started and stopped several times (test clients do that) keeps working.
    """

    def __init__(self, *, max_pixels: int, threads: int) -> None:
        self._max_pixels = max_pixels
        self._threads = max(1, threads)
        self._pool: ThreadPoolExecutor | None = None

    async def decode(self, data: bytes, draft_size: tuple[int, int] | None = None) -> np.ndarray:
        """`decode_image` in the pool; same result and errors."""
        job = partial(decode_image, data, max_pixels=self._max_pixels, draft_size=draft_size)
        return await asyncio.get_running_loop().run_in_executor(self._executor(), job)

    async def decode_reduced(self, data: bytes, min_size: tuple[int, int]) -> ReducedImage:
        """`decode_reduced` in the pool; same result and errors."""
        job = partial(decode_reduced, data, max_pixels=self._max_pixels, min_size=min_size)
        return await asyncio.get_running_loop().run_in_executor(self._executor(), job)

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="decode")
        return self._pool

    def close(self) -> None:
        """Let the pool's threads exit once running decodes finish; queued ones are cancelled."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
