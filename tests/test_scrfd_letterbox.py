"""Letterbox sizes and placement follow insightface's rule as Immich runs it (immich-protocol.md §6.4)."""

import numpy as np
import pytest

from ml_target.vision.letterbox import letterbox, letterbox_size


@pytest.mark.parametrize(
    ("height", "width", "new_h", "new_w"),
    [
        (777, 1001, 496, 640),  # landscape, odd: int(640 * 777 / 1001) = int(496.78)
        (1001, 777, 640, 496),  # portrait, odd: int(640 / (1001 / 777)) = int(496.78)
        (480, 640, 480, 640),
        (512, 512, 640, 640),  # square is upscaled
        (3, 7, 274, 640),  # int(274.28) truncates
        (641, 639, 640, 638),  # just portrait
        (1, 1000, 1, 640),  # insightface would compute 0 rows; we keep one
        (1000, 1, 640, 1),
    ],
)
def test_size_rule(height, width, new_h, new_w):
    assert letterbox_size(height, width, 640, 640) == (new_h, new_w)


def test_scale_is_new_height_over_height():
    boxed = letterbox(np.zeros((777, 1001, 3), np.uint8))
    assert boxed.scale == 496 / 777


def test_image_sits_top_left_on_black():
    image = np.full((1001, 777, 3), 200, np.uint8)
    boxed = letterbox(image)
    assert boxed.image.shape == (640, 640, 3) and boxed.image.dtype == np.uint8
    assert np.all(boxed.image[:, :496] == 200)
    assert np.all(boxed.image[:, 496:] == 0)


def test_bilinear_resize_of_a_ramp():
    # Upscaling 2x bilinearly puts each new pixel centre between the old ones: a horizontal ramp
    # 0, 64, 128, 192 becomes 0, 16, 48, 80, ... (half-pixel centres), which nearest-neighbour would not give.
    ramp = np.tile(np.array([0, 64, 128, 192], np.uint8)[None, :, None], (4, 1, 3))
    boxed = letterbox(ramp, 8, 8)
    assert boxed.scale == 2.0
    assert boxed.image[0, :, 0].tolist() == [0, 16, 48, 80, 112, 144, 176, 192]
