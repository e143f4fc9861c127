"""What reduced-scale JPEG decoding costs in pixels and saves in CPU, on the benchmark's photographs.

For each preview the CLIP input crop is made twice: the exact path (full decode, Immich's bicubic
resize and crop) and the reduced path (`decode_reduced` to the crop size, the same geometry applied
to the smaller pixels). The report gives the CPU time of each and the pixel difference of the two
crops, next to a yardstick: how far the exact crop of the q80 preview already is from the crop of
the same picture before JPEG encoding, i.e. the error Immich's own preview compression introduces.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np

from ml_target.benchmarks.photos import encode_jpeg, preview_pixels
from ml_target.vision.clip_transform import clip_crop
from ml_target.vision.decode import decode_image, decode_reduced

MAX_PIXELS = 100_000_000
REPEATS = 5


def difference(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean and max absolute difference (0-255 levels) and PSNR (dB, inf when equal) of two uint8 images."""
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16))
    mse = float(np.mean(delta.astype(np.float64) ** 2))
    psnr = float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)
    return {"mean_abs_diff": float(delta.mean()), "max_abs_diff": float(delta.max()), "psnr_db": psnr}


def _cpu_ms(fn: Callable[[], np.ndarray], repeats: int) -> tuple[np.ndarray, float]:
    started = time.process_time()
    for _ in range(repeats):
        result = fn()
    return result, 1000.0 * (time.process_time() - started) / repeats


def exact_crop(jpeg: bytes, size: int) -> np.ndarray:
    """The exact path: full-size decode, then Immich's resize and centre crop."""
    return clip_crop(decode_image(jpeg, max_pixels=MAX_PIXELS), size)


def reduced_crop(jpeg: bytes, size: int) -> np.ndarray:
    """The reduced path: DCT-scaled decode covering the crop, Immich's geometry for the full size."""
    reduced = decode_reduced(jpeg, max_pixels=MAX_PIXELS, min_size=(size, size))
    return clip_crop(reduced.pixels, size, reduced.full_size)


def reduced_decode_effect(size: int = 224, repeats: int = REPEATS) -> dict[str, Mapping[str, float]]:
    """Per photograph: CPU ms of both paths, their crop difference, and the q80 encoding's own error."""
    results = {}
    for name, pixels in preview_pixels().items():
        jpeg = encode_jpeg(pixels)
        exact, exact_ms = _cpu_ms(partial(exact_crop, jpeg, size), repeats)
        reduced, reduced_ms = _cpu_ms(partial(reduced_crop, jpeg, size), repeats)
        jpeg_error = difference(exact, clip_crop(pixels, size))
        results[name] = {
            "exact_ms": exact_ms,
            "draft_ms": reduced_ms,
            **difference(reduced, exact),
            "jpeg_q80_psnr_db": jpeg_error["psnr_db"],
        }
    return results
