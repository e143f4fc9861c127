"""Immich's CLIP image transform, pixel for pixel (immich-protocol.md §6.1)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ml_target.errors import BadRequest
from ml_target.vision.clip_transform import CropGeometry, clip_crop, crop_geometry


def immich_reference(image: np.ndarray, size: int) -> np.ndarray:
    """The documented algorithm, step by step: bicubic short-side resize, truncating centre crop."""
    pil = Image.fromarray(image)
    if pil.width < pil.height:
        pil = pil.resize((size, int((pil.height / pil.width) * size)), resample=Image.Resampling.BICUBIC)
    else:
        pil = pil.resize((int((pil.width / pil.height) * size), size), resample=Image.Resampling.BICUBIC)
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
