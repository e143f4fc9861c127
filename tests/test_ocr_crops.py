"""Recogniser crops: perspective crop, rotation, resize/pad, long-line windows and their stitching."""

from __future__ import annotations

import math

import numpy as np

from ml_target.vision.ctc import CtcPath
from ml_target.vision.ocr_crops import (
    PAD_VALUE,
    Window,
    crop_quad,
    line_windows,
    merge_windows,
    squashed_frame,
)


def gradient_image(h: int = 200, w: int = 300) -> np.ndarray:
    """Pixel (x, y) holds (x % 256, y % 256, 7): crops reveal where they were taken."""
    ys, xs = np.mgrid[0:h, 0:w]
    return np.stack([xs % 256, ys % 256, np.full_like(xs, 7)], axis=-1).astype(np.uint8)


def test_axis_aligned_crop_is_the_region_with_truncated_size() -> None:
    crop = crop_quad(gradient_image(), np.array([[20, 30], [120.9, 30], [120.9, 60], [20, 60]], np.float32))
    assert crop.shape == (30, 100, 3)
    assert crop[0, 0].tolist() == [20, 30, 7]
    assert crop[10, 50].tolist() == [70, 40, 7]


def test_tall_crop_turns_counter_clockwise() -> None:
    quad = np.array([[50, 10], [70, 10], [70, 70], [50, 70]], np.float32)  # 20 x 60: h/w = 3
    crop = crop_quad(gradient_image(), quad)
    assert crop.shape == (20, 60, 3)
    # counter-clockwise: the crop's top-right corner (x=69, y=10) becomes the top-left
    assert crop[0, 0].tolist() == [69, 10, 7]
    assert crop[-1, -1].tolist() == [50, 69, 7]


def test_short_line_is_resized_to_height_48_and_padded_with_128() -> None:
    crop = np.zeros((24, 60, 3), np.uint8)  # 2.5:1 -> 120 px at height 48
    (window,) = line_windows(crop)
    assert window.frame.shape == (48, 320, 3) and window.frame.dtype == np.uint8
    assert (window.frame[:, :120] == 0).all()
    assert (window.frame[:, 120:] == PAD_VALUE).all()


def test_squashed_frame_compresses_a_long_line_into_320() -> None:
    frame = squashed_frame(np.zeros((10, 200, 3), np.uint8))  # 20:1
    assert frame.shape == (48, 320, 3) and (frame == 0).all()


def inked_everywhere(h: int, w: int) -> np.ndarray:
    """The gradient image with a black and a white pixel in every column: no gap between words."""
    image = gradient_image(h, w)
    image[0], image[1] = 0, 255
    return image


def test_long_line_without_word_gaps_is_read_in_overlapping_windows() -> None:
    crop = inked_everywhere(48, 1000)
    windows = line_windows(crop)
    assert len(windows) == math.ceil((1000 - 96) / (320 - 96)) == 5
    assert windows[0].offset == 0 and windows[-1].offset == 1000 - 320
    for prev, cur in zip(windows, windows[1:]):
        assert prev.offset + 320 - cur.offset >= 96  # overlap
        assert prev.offset + 320 > cur.cut > cur.offset
    for window in windows:  # each frame is the line's pixels at full height, no resampling at 48 px
        assert (window.frame == crop[:, window.offset : window.offset + 320]).all()


def words_line(words: list[int], gaps: list[int], height: int = 48) -> np.ndarray:
    """A white line of black words (widths in px, each with 3-px gaps between its letters)
    separated by the given gaps."""
    columns: list[np.ndarray] = []
    for i, width in enumerate(words):
        word = np.zeros((height, width, 3), np.uint8)
        word[:, 9::12] = 255
        word[:, 10::12] = 255
        word[:, 11::12] = 255
        word[:4], word[-4:] = 255, 255
        columns.append(word)
        if i < len(gaps):
            columns.append(np.full((height, gaps[i], 3), 255, np.uint8))
    return np.concatenate(columns, axis=1)


def test_long_line_windows_begin_and_end_in_blank_columns_with_padding_after() -> None:
    crop = words_line([100, 100, 100, 100, 100, 100], [14] * 5)  # 670 px
    blank = (crop.max(axis=(0, 2)) == 255) & (crop.min(axis=(0, 2)) == 255)
    windows = line_windows(crop)
    ends = [w.offset + int((w.frame != PAD_VALUE).any(axis=(0, 2)).nonzero()[0].max()) + 1 for w in windows]
    assert ends[-1] == crop.shape[1] and len(windows) == 3
    for window, end in zip(windows, ends):
        assert window.offset == 0 or blank[window.offset]
        assert end == crop.shape[1] or blank[end]  # no window ends inside a letter
        assert (window.frame[:, : end - window.offset] == crop[:, window.offset : end]).all()
        assert (window.frame[:, end - window.offset :] == PAD_VALUE).all()
    for prev, cur, prev_end in zip(windows, windows[1:], ends):
        assert prev_end - cur.offset >= 48  # some characters read whole by both, to stitch at
        assert cur.cut == (prev_end + cur.offset) / 2


def test_merge_stitches_a_doubled_character_where_both_windows_place_it() -> None:
    """"9981" seen by both windows at a 16-px pitch: the left window's first 9 and the right
    window's second are within the tolerance, but the 9s both place at the same spot are the anchor
    (measured on a rendered page: the bare closest-to-the-cut pair read "981")."""
    frame = np.zeros((48, 320, 3), np.uint8)
    windows = [Window(frame, 0, -math.inf), Window(frame, 223, 268.0)]
    left = path([2, 9, 9, 8], [28, 32, 34, 37])  # x 228, 260, 276, 300
    right = path([2, 9, 9, 8, 1], [0, 4, 6, 9, 12])  # x 227, 259, 275, 299, 323
    # the left's first 9 (260) and the right's second (275) straddle the cut at 268 most closely
    assert merge_windows([left, right], windows, 8.0).classes.tolist() == [2, 9, 9, 8, 1]


def path(classes: list[int], steps: list[int]) -> CtcPath:
    return CtcPath(np.array(classes), np.full(len(classes), 0.9), np.array(steps))


def two_windows() -> list:
    crop = inked_everywhere(48, 544)  # two windows: offsets 0 and 224, cut at 272
    windows = line_windows(crop)
    assert [w.offset for w in windows] == [0, 224] and windows[1].cut == 272
    return windows


def test_merge_keeps_a_character_whose_peaks_straddle_the_cut() -> None:
    windows = two_windows()
    # line "abcdef" at x = 20, 100, 180, 260+, 340, 420; "d" peaks at x 276 in the left window and
    # at x 268 in the right one: a bare cut at 272 would drop it
    left = path([1, 2, 3, 4], [2, 12, 22, 34])
    right = path([4, 5, 6], [5, 14, 24])
    merged = merge_windows([left, right], windows, 8.0)
    assert merged.classes.tolist() == [1, 2, 3, 4, 5, 6]
    assert merged.steps.tolist() == [20, 100, 180, 276, 340, 420]
    assert len(merged.probs) == 6


def test_merge_does_not_double_a_character_seen_on_both_sides_of_the_cut() -> None:
    windows = two_windows()
    # "d" peaks at x 268 in the left window and x 276 in the right one: a bare cut keeps both
    left = path([1, 2, 3, 4], [2, 12, 22, 33])
    right = path([4, 5, 6], [6, 14, 24])
    assert merge_windows([left, right], windows, 8.0).classes.tolist() == [1, 2, 3, 4, 5, 6]


def test_merge_keeps_real_double_letters() -> None:
    windows = two_windows()
    # "xllz": the two l's are 24 px apart around the cut and both windows see both
    left = path([7, 8, 8], [10, 31, 34])  # x 84, 252, 276
    right = path([8, 8, 9], [3, 6, 20])  # x 252, 276, 388
    assert merge_windows([left, right], windows, 8.0).classes.tolist() == [7, 8, 8, 9]


def test_merge_without_a_shared_character_cuts_at_the_middle() -> None:
    windows = two_windows()
    left = path([1, 2], [10, 35])  # x 84, 284 (past the cut: the right window owns it)
    right = path([3, 4], [4, 20])  # x 260 (before the cut: left owns it), 388
    assert merge_windows([left, right], windows, 8.0).classes.tolist() == [1, 4]
