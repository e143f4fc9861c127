"""DB post-processing on synthetic probability maps with known rectangles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ml_target.vision.dbnet import (
    db_boxes,
    drop_duplicates,
    finish_boxes,
    order_corners,
    reading_order,
    unclip,
)


def prob_map(rects: list[tuple[int, int, int, int, float]], shape: tuple[int, int] = (200, 300)) -> np.ndarray:
    """A map with each (x0, y0, x1, y1, p) filled with p (pixels x0..x1-1, y0..y1-1)."""
    prob = np.zeros(shape, np.float32)
    for x0, y0, x1, y1, p in rects:
        prob[y0:y1, x0:x1] = p
    return prob


def test_axis_aligned_rectangle_is_found_and_unclipped_by_area_ratio() -> None:
    boxes, scores = db_boxes(prob_map([(50, 40, 150, 60, 0.9)]), box_threshold=0.5)
    assert len(boxes) == 1
    # After the 2x2 dilation the blob spans pixels x 50..150, y 40..60: its contour rectangle is
    # 100 x 20 (pixel centres). Unclip distance = 100*20*1.6 / 240 = 13.33 on every side.
    d = 100 * 20 * 1.6 / 240
    expected = np.array([[50 - d, 40 - d], [150 + d, 40 - d], [150 + d, 60 + d], [50 - d, 60 + d]])
    assert np.allclose(order_corners(boxes[0]), expected, atol=0.05)
    # "fast" score: mean probability inside the (integer) rectangle 50..150 x 40..60, which includes
    # the one dilated row and column of zeros: 100*20 of 101*21 pixels are 0.9.
    assert scores[0] == pytest.approx(0.9 * 100 * 20 / (101 * 21), abs=1e-5)


def test_box_threshold_is_inclusive_and_filters_weak_boxes() -> None:
    prob = prob_map([(20, 20, 120, 40, 0.9), (20, 100, 120, 120, 0.45)])
    boxes, _ = db_boxes(prob, box_threshold=0.5)
    assert len(boxes) == 1 and boxes[0][:, 1].max() < 60
    boxes, _ = db_boxes(prob, box_threshold=0.3)
    assert len(boxes) == 2
    # a blob of 0.5 scores exactly 1000 / 2121 (2000 of the 101 x 21 box pixels): kept at that
    # threshold (>=), dropped just above it
    half = prob_map([(20, 20, 120, 40, 0.5)])
    assert len(db_boxes(half, box_threshold=1000 / 2121)[0]) == 1
    assert len(db_boxes(half, box_threshold=np.nextafter(1000 / 2121, 1))[0]) == 0


def test_threshold_is_strictly_above_0_3() -> None:
    assert len(db_boxes(prob_map([(20, 20, 120, 40, 0.3)]), box_threshold=0.0)[0]) == 0
    assert len(db_boxes(prob_map([(20, 20, 120, 40, 0.31)]), box_threshold=0.0)[0]) == 1


def test_thin_blobs_are_dropped() -> None:
    # a 1 px high line dilates to 2 px: short side 1 (centres) < 3
    assert len(db_boxes(prob_map([(20, 20, 120, 21, 0.9)]), box_threshold=0.0)[0]) == 0
    assert len(db_boxes(prob_map([(20, 20, 120, 24, 0.9)]), box_threshold=0.0)[0]) == 1


def test_rotated_rectangle_keeps_its_angle() -> None:
    prob = np.zeros((300, 300), np.float32)
    rect = ((150.0, 150.0), (160.0, 30.0), 20.0)
    cv2.fillPoly(prob, [cv2.boxPoints(rect).astype(np.int32)], 0.95)
    boxes, scores = db_boxes(prob, box_threshold=0.5)
    assert len(boxes) == 1 and scores[0] > 0.8
    fitted = cv2.minAreaRect(boxes[0])
    long_side, short_side = max(fitted[1]), min(fitted[1])
    assert long_side > 160 and short_side > 30  # grown by the unclip distance
    angle = fitted[2] if fitted[1][0] >= fitted[1][1] else fitted[2] - 90
    assert abs(((angle - 20) + 90) % 180 - 90) < 2


def test_slow_score_averages_inside_the_contour() -> None:
    prob = np.zeros((200, 200), np.float32)
    triangle = np.array([[20, 20], [180, 20], [20, 180]], np.int32)
    cv2.fillPoly(prob, [triangle], 0.8)
    _, fast = db_boxes(prob, box_threshold=0.0, score_mode="fast")
    _, slow = db_boxes(prob, box_threshold=0.0, score_mode="slow")
    assert slow[0] > 0.75 > 0.6 > fast[0]  # the rotated box around a triangle is half empty


def test_unclip_grows_each_side_by_area_ratio_over_perimeter() -> None:
    (cx, cy), (w, h), angle = unclip(((10.0, 20.0), (40.0, 10.0), 30.0), ratio=1.6)
    d = 400 * 1.6 / 100
    assert (cx, cy, angle) == (10.0, 20.0, 30.0)
    assert (w, h) == pytest.approx((40 + 2 * d, 10 + 2 * d))


def test_unknown_score_mode_is_refused() -> None:
    with pytest.raises(ValueError):
        db_boxes(prob_map([]), box_threshold=0.5, score_mode="exact")


def test_order_corners_tl_tr_br_bl() -> None:
    quad = np.array([[10, 30], [50, 5], [10, 5], [50, 30]], np.float32)
    assert order_corners(quad).tolist() == [[10, 5], [50, 5], [50, 30], [10, 30]]


def test_finish_boxes_rounds_clips_and_drops_tiny() -> None:
    quads = np.array(
        [
            [[-5.4, 10.6], [120.2, 10.6], [120.2, 40.5], [-5.4, 40.5]],  # clipped to the image
            [[10, 50], [13, 50], [13, 70], [10, 70]],  # 3 px wide: dropped
            [[10, 80], [40, 80], [40, 83.4], [10, 83.4]],  # 3 px high after rounding: dropped
        ],
        np.float32,
    )
    out, scores = finish_boxes(quads, np.array([0.9, 0.8, 0.7], np.float32), width=100, height=90)
    assert out.tolist() == [[[0, 11], [99, 11], [99, 40], [0, 40]]]
    assert scores.tolist() == pytest.approx([0.9])


def test_reading_order_top_to_bottom_then_left_to_right() -> None:
    def box(x: float, y: float) -> list[list[float]]:
        return [[x, y], [x + 20, y], [x + 20, y + 8], [x, y + 8]]

    # two boxes on one line whose tops differ by < 10 px come out left to right
    quads = np.array([box(200, 104), box(10, 100), box(300, 100), box(50, 300), box(5, 114)], np.float32)
    assert reading_order(quads).tolist() == [1, 0, 2, 4, 3]
    assert reading_order(np.zeros((0, 4, 2), np.float32)).tolist() == []


def test_drop_duplicates_only_across_sources() -> None:
    quads = np.array(
        [
            [[0, 0], [100, 0], [100, 20], [0, 20]],
            [[2, 1], [101, 1], [101, 21], [2, 21]],  # same line seen by the other band
            [[0, 40], [100, 40], [100, 60], [0, 60]],
            [[1, 41], [99, 41], [99, 59], [1, 59]],  # overlapping, but from the same band: kept
        ],
        np.float32,
    )
    keep = drop_duplicates(quads, np.array([0.7, 0.8, 0.9, 0.6], np.float32), np.array([0, 1, 0, 0]))
    assert keep.tolist() == [1, 2, 3]
