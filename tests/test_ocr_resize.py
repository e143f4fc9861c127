"""Fitting images into the 544x960 detector input (bands for tall images) and mapping back."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ml_target.networks import IMAGENET_MEAN_255, IMAGENET_STD_255
from ml_target.vision.ocr_levels import immich_levels
from ml_target.vision.ocr_resize import (
    DetectionFit,
    _resize,
    bands_for_rows,
    holds,
    immich_input_size,
    plan_fit,
    render_input,
)

INPUT = (544, 960)
IDENTITY = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)


def test_immich_input_size_examples() -> None:
    assert immich_input_size(1440, 1920, 736) == (736, 992)  # immich-protocol.md §6.5
    assert immich_input_size(100, 200, 736) == (96, 192)  # never upscaled, rounded to 32
    assert immich_input_size(40, 40, 736) == (32, 32)


def test_wide_image_fits_in_one_frame() -> None:
    (fit,) = plan_fit(1080, 1920, INPUT, 736, max_tiles=3)  # width-limited: bands cannot help
    assert (fit.top, fit.bottom) == (0, 1080)
    assert fit.resized == (540, 960)
    assert fit.scale == pytest.approx(0.5)


def test_4_3_preview_uses_two_bands_at_about_immich_scale() -> None:
    fits = plan_fit(1440, 1920, INPUT, 736, max_tiles=3)
    assert len(fits) == 2
    assert all(fit.resized[1] == 960 and fit.scale == pytest.approx(0.5, abs=1e-3) for fit in fits)
    (plain,) = plan_fit(1440, 1920, INPUT, 736, max_tiles=1)
    assert plain.resized == (544, 725)


def test_small_max_resolution_caps_the_scale() -> None:
    (fit,) = plan_fit(1440, 1920, INPUT, 200, max_tiles=3)
    # Immich: shorter side 200 -> 200 x 266 -> (192, 256) after rounding to 32
    assert (fit.top, fit.bottom) == (0, 1440)
    assert fit.resized == (192, 256) and fit.immich_size


def test_immich_size_is_used_exactly_when_it_fits() -> None:
    (fit,) = plan_fit(500, 700, INPUT, 736, max_tiles=3)
    assert fit.resized == immich_input_size(500, 700, 736) == (512, 704)  # stretched as Immich does
    assert fit.immich_size
    (larger,) = plan_fit(1080, 1920, INPUT, 736, max_tiles=3)  # Immich's (736, 1312) does not fit
    assert not larger.immich_size


def test_small_image_is_not_enlarged_beyond_immich() -> None:
    (fit,) = plan_fit(100, 200, INPUT, 736, max_tiles=3)
    assert fit.resized == (96, 192)


def test_portrait_page_is_cut_into_two_overlapping_bands() -> None:
    fits = plan_fit(1920, 1440, INPUT, 736, max_tiles=3)
    assert len(fits) == 2
    assert fits[0].top == 0 and fits[-1].bottom == 1920
    assert fits[0].bottom - fits[1].top >= 0.25 * (fits[0].bottom - fits[0].top) - 1
    for fit in fits:
        assert fit.resized[0] <= 544 and fit.resized[1] <= 960
        assert fit.scale > 1.7 * 544 / 1920  # plain fit would be 0.283


def test_bands_disabled_gives_the_plain_fit() -> None:
    (fit,) = plan_fit(1920, 1440, INPUT, 736, max_tiles=1)
    assert fit.resized == (544, 408)


def test_to_image_maps_band_pixels_back() -> None:
    fit = DetectionFit(image=(1000, 500), top=400, bottom=800, resized=(200, 250))
    points = np.array([[0, 0], [250, 200], [125, 100]], np.float32)
    assert fit.to_image(points).tolist() == [[0, 400], [500, 800], [250, 600]]


def test_cut_by_band_only_at_inner_edges() -> None:
    top_band = DetectionFit(image=(1000, 500), top=0, bottom=600, resized=(300, 250))
    bottom_band = DetectionFit(image=(1000, 500), top=400, bottom=1000, resized=(300, 250))
    at_top = np.array([[[0, 0], [10, 0], [10, 10], [0, 10]]], np.float32)
    at_bottom = np.array([[[0, 290], [10, 290], [10, 299], [0, 299]]], np.float32)
    assert top_band.cut_by_band(at_top).tolist() == [False]
    assert top_band.cut_by_band(at_bottom).tolist() == [True]
    assert bottom_band.cut_by_band(at_top).tolist() == [True]
    assert bottom_band.cut_by_band(at_bottom).tolist() == [False]


PORTRAIT_BANDS = plan_fit(1920, 1440, INPUT, 736)


def _spans(bands: list[DetectionFit]) -> list[tuple[int, int]]:
    return [(fit.top, fit.bottom) for fit in bands]


def test_a_band_holds_rows_with_their_height_to_spare_at_inner_edges_only() -> None:
    upper, lower = PORTRAIT_BANDS
    assert _spans(PORTRAIT_BANDS) == [(0, 1097), (823, 1920)]
    assert holds(upper, 0, 40)  # the image's top edge cuts nothing
    assert holds(upper, 1000, 1048) and not holds(upper, 1000, 1049)  # 48 rows to spare above 1097
    assert holds(lower, 873, 923) and not holds(lower, 872, 923)
    assert holds(lower, 1880, 1920)


def test_rows_one_band_holds_run_that_band_alone() -> None:
    # Held by both bands: the one whose middle is nearer.
    assert _spans(bands_for_rows(PORTRAIT_BANDS, [(1030, 1040)])) == [(823, 1920)]
    assert _spans(bands_for_rows(PORTRAIT_BANDS, [(900, 930)])) == [(0, 1097)]
    # The upper band is needed anyway for the second row, so it takes the first one too.
    assert _spans(bands_for_rows(PORTRAIT_BANDS, [(1030, 1040), (100, 130)])) == [(0, 1097)]
    assert _spans(bands_for_rows(PORTRAIT_BANDS, [(100, 130), (1800, 1830)])) == [(0, 1097), (823, 1920)]
    assert bands_for_rows(PORTRAIT_BANDS, []) == []


def test_rows_no_band_holds_run_every_band_they_touch() -> None:
    assert _spans(bands_for_rows(PORTRAIT_BANDS, [(900, 1000)])) == [(0, 1097), (823, 1920)]
    (fit,) = plan_fit(1080, 1920, INPUT, 736)
    assert bands_for_rows([fit], [(500, 600)]) == [fit]


@pytest.mark.parametrize("height, width", [(1920, 1440), (1440, 1920), (3000, 1000)])
def test_every_row_is_held_by_a_chosen_band_or_all_it_touches_run(height: int, width: int) -> None:
    bands = plan_fit(height, width, INPUT, 736)
    rng = np.random.default_rng(height)
    for _ in range(300):
        tops = rng.uniform(0, height - 10, size=rng.integers(1, 5))
        rows = [(float(t), float(min(height, t + rng.uniform(10, 150)))) for t in tops]
        chosen = bands_for_rows(bands, rows)
        for top, bottom in rows:
            touched = [fit for fit in bands if top < fit.bottom and bottom > fit.top]
            assert any(holds(fit, top, bottom) for fit in chosen) or all(fit in chosen for fit in touched)
        assert all(any(top < fit.bottom and bottom > fit.top for top, bottom in rows) for fit in chosen)


def test_render_input_places_the_band_top_left_on_black() -> None:
    image = np.full((1920, 1440, 3), 200, np.uint8)
    image[1000:] = 50
    fits = plan_fit(1920, 1440, INPUT, 736, max_tiles=3)
    frame = render_input(image, fits[1], INPUT, IDENTITY)
    rh, rw = fits[1].resized
    assert frame.shape == (544, 960, 3) and frame.dtype == np.uint8
    assert (frame[rh:] == 0).all() and (frame[:, rw:] == 0).all()
    assert frame[0, 0, 0] == 200 and frame[rh - 1, rw - 1, 0] == 50


def test_immich_size_frame_is_pillow_lanczos_through_the_levels() -> None:
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (500, 700, 3), dtype=np.uint8)
    (fit,) = plan_fit(500, 700, INPUT, 736)
    levels = immich_levels(IMAGENET_MEAN_255, IMAGENET_STD_255)
    frame = render_input(image, fit, INPUT, levels)
    expected = np.asarray(Image.fromarray(image).resize((704, 512), Image.Resampling.LANCZOS))[..., ::-1]
    for channel in range(3):  # the frame is BGR, as are the levels
        assert (frame[:512, :704, channel] == levels[0, expected[..., channel], channel]).all()
    assert (frame[512:] == 0).all() and (frame[:, 704:] == 0).all()


@pytest.mark.parametrize(("height", "width"), [(500, 700), (1440, 1920), (1920, 1440)])
def test_frame_from_rgb_is_the_frame_of_a_bgr_copy(height: int, width: int) -> None:
    """Reversing the channels after the resize gives exactly the frame the BGR image would: Immich's
    size (Lanczos), a scaled whole frame and bands (OpenCV)."""
    rng = np.random.default_rng(height + width)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    levels = immich_levels(IMAGENET_MEAN_255, IMAGENET_STD_255)
    for fit in plan_fit(height, width, INPUT, 736) + plan_fit(height, width, INPUT, 736, max_tiles=1):
        rh, rw = fit.resized
        resized = _resize(bgr[fit.top : fit.bottom], fit)
        expected = levels[0, resized, np.arange(3)] if fit.immich_size else resized
        frame = render_input(rgb, fit, INPUT, levels)
        assert (frame[:rh, :rw] == expected).all()
        assert (frame[rh:] == 0).all() and (frame[:, rw:] == 0).all()


def test_levels_give_the_hef_immichs_detector_values() -> None:
    mean, std = np.array(IMAGENET_MEAN_255), np.array(IMAGENET_STD_255)
    levels = immich_levels(mean, std)[0].astype(np.float64)
    immich = (np.arange(256)[:, None] - 0.5) / 127.5  # immich-protocol.md §6.5
    assert np.abs((levels - mean) / std - immich).max() <= 0.5 / std.min() + 1e-9  # within rounding
    assert levels[0].tolist() == [123, 116, 103] and levels[255].tolist() == [240, 230, 218]
    assert (np.diff(levels, axis=0) >= 0).all()
