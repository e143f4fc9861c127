"""Immich's CLIP image transform, pixel for pixel (immich-protocol.md §6.1)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from ml_target.errors import BadRequest
from ml_target.vision.clip_transform import CropGeometry, clip_crop, crop_geometry


def pillow_10_resize(pil: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Bicubic resize as Immich's Pillow (< 11) computes it: horizontal pass, then vertical."""
    return pil.resize((size[0], pil.height), resample=Image.Resampling.BICUBIC).resize(
        size, resample=Image.Resampling.BICUBIC
    )


def immich_reference(image: np.ndarray, size: int) -> np.ndarray:
    """The documented algorithm, step by step: bicubic short-side resize, truncating centre crop."""
    pil = Image.fromarray(image)
    if pil.width < pil.height:
        pil = pillow_10_resize(pil, (size, int((pil.height / pil.width) * size)))
    else:
        pil = pillow_10_resize(pil, (int((pil.width / pil.height) * size), size))
    left = int((pil.size[0] / 2) - (size / 2))
    upper = int((pil.size[1] / 2) - (size / 2))
    return np.asarray(pil.crop((left, upper, left + size, upper + size)))


@pytest.mark.parametrize(
    ("width", "height", "size", "expected"),
    [
        (333, 500, 224, CropGeometry(224, 336, 0, 56)),  # portrait
        (1515, 1000, 224, CropGeometry(339, 224, 57, 0)),  # (339-224)/2 = 57.5: truncated (torchvision rounds to 58)
        (3, 7, 224, CropGeometry(224, 522, 0, 149)),  # 7/3*224 = 522.67: truncated, not rounded
        (1920, 1440, 256, CropGeometry(341, 256, 42, 0)),  # SigLIP2 size
        (224, 224, 224, CropGeometry(224, 224, 0, 0)),
    ],
)
def test_geometry_uses_immichs_integer_truncation(width, height, size, expected):
    assert crop_geometry(width, height, size) == expected


@pytest.mark.parametrize(
    ("height", "width", "size"),
    [(333, 501, 224), (501, 333, 224), (1000, 1515, 224), (1440, 1920, 256), (9, 5, 224), (224, 224, 224), (257, 257, 256), (1, 3, 224)],
)
def test_crop_is_pixel_identical_to_immich(height, width, size):
    image = np.random.default_rng(height * 7919 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    crop = clip_crop(image, size)
    assert crop.shape == (size, size, 3) and crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, immich_reference(image, size))


# SHA-256 of Immich's 224 crop computed with Pillow 10.4.0, the Pillow Immich's ML service pins
# (`pillow>=9.5.0,<11.0`), of np.random.default_rng(h * 1000 + w).integers(0, 256, (h, w, 3), uint8).
# Pillow 13 resizes the first three vertical-first in one `resize` call and gets other pixels.
PILLOW_10_CROPS = {
    (496, 241): "88c3a940b6f2974cfcc6d44e10ba931da2c975e431fe2da3ff848de6b4d79634",
    (570, 282): "2146e2b591976dacb3ad358d7421ed38723a47b64b7727d1b2a4c991861372f7",
    (681, 323): "211d484a16a6d2c0813e71a118fe98725d6ade4ee99d53cde2739cd20b7fa709",
    (241, 496): "840f95102a0ad0cee9074830cb0fd2838d680c5ea17c5dd126e292e314a6a570",
}


@pytest.mark.parametrize(("height", "width"), PILLOW_10_CROPS)
def test_crop_is_immichs_pillow_10_crop_on_any_pillow(height, width):
    image = np.random.default_rng(height * 1000 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    assert hashlib.sha256(clip_crop(image, 224).tobytes()).hexdigest() == PILLOW_10_CROPS[(height, width)]


def test_crop_keeps_the_centre_and_drops_the_sides():
    """A 3:1 landscape of red | green | blue bands: the crop is the green centre, not a squash of all three."""
    image = np.zeros((200, 600, 3), np.uint8)
    image[:, :200, 0] = image[:, 200:400, 1] = image[:, 400:, 2] = 255
    crop = clip_crop(image, 224).astype(int)
    assert crop[:, 8:-8, 1].min() == 255 and crop[:, 8:-8, [0, 2]].max() == 0


def test_absurd_aspect_ratios_are_refused_before_allocating():
    with pytest.raises(BadRequest, match="more elongated than 256:1"):
        clip_crop(np.zeros((1, 300, 3), np.uint8), 224)


def test_non_rgb_input_is_a_programming_error():
    with pytest.raises(ValueError, match="RGB uint8"):
        clip_crop(np.zeros((10, 10), np.uint8), 224)


def _reduced_reference(pixels: np.ndarray, full_size: tuple[int, int], size: int) -> np.ndarray:
    """Immich's geometry for the full size, applied by resizing all the reduced pixels, then cropping."""
    geometry = crop_geometry(full_size[1], full_size[0], size)
    resized = pillow_10_resize(Image.fromarray(pixels), (geometry.resized_width, geometry.resized_height))
    return np.asarray(resized.crop((geometry.left, geometry.top, geometry.left + size, geometry.top + size)))


@pytest.mark.parametrize(
    ("full_size", "scale", "size"),
    [((1440, 2160), 4, 224), ((2160, 1440), 4, 224), ((1440, 1920), 4, 256), ((1441, 2163), 4, 224),
     ((1000, 1515), 2, 224), ((3000, 4000), 8, 384), ((1440, 1440), 4, 224), ((2230, 970), 4, 224)],
)
def test_reduced_crop_resamples_only_the_crop_and_matches_resize_then_crop(full_size, scale, size):
    """Within one level on at most one value in a hundred: the same filter and sample positions."""
    reduced_size = (-(-full_size[0] // scale), -(-full_size[1] // scale))
    pixels = np.random.default_rng(full_size[0] + scale).integers(0, 256, (*reduced_size, 3), dtype=np.uint8)
    crop = clip_crop(pixels, size, full_size).astype(int)
    reference = _reduced_reference(pixels, full_size, size).astype(int)
    assert crop.shape == (size, size, 3)
    assert np.abs(crop - reference).max() <= 1
    assert np.mean(crop != reference) <= 0.01


def test_reduced_crop_keeps_the_full_images_framing():
    """The bands test on a 1/4-scale decode of a 3:1 image: the crop is still the green centre."""
    pixels = np.zeros((50, 150, 3), np.uint8)
    pixels[:, :50, 0] = pixels[:, 50:100, 1] = pixels[:, 100:, 2] = 255
    crop = clip_crop(pixels, 224, (200, 600)).astype(int)
    assert crop[:, 8:-8, 1].min() == 255 and crop[:, 8:-8, [0, 2]].max() == 0


def test_a_full_size_payload_takes_immichs_exact_path():
    """decode_reduced hands back full-size pixels for PNGs and small JPEGs: those crops stay exact."""
    image = np.random.default_rng(5).integers(0, 256, (150, 180, 3), dtype=np.uint8)
    np.testing.assert_array_equal(clip_crop(image, 224, (150, 180)), immich_reference(image, 224))
