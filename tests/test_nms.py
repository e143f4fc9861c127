"""Greedy NMS equals its definition, with insightface's +1 area and `<=` keep conventions."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_target.vision.nms import nms


def area(r):
    return (r[2] - r[0] + 1) * (r[3] - r[1] + 1)


def iou_plus_one(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = w * h
    return inter / (area(a) + area(b) - inter)


def reference(boxes, scores, threshold):
    """Visit boxes by descending score (ties in input order); keep one unless it overlaps a kept one."""
    kept = []
    for i in sorted(range(len(boxes)), key=lambda i: -scores[i]):
        if all(iou_plus_one(boxes[i], boxes[k]) <= threshold for k in kept):
            kept.append(i)
    return kept


box = st.tuples(
    st.integers(0, 60), st.integers(0, 60), st.integers(1, 40), st.integers(1, 40)
).map(lambda t: (float(t[0]), float(t[1]), float(t[0] + t[2]), float(t[1] + t[3])))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(box, st.integers(0, 20)), min_size=0, max_size=25),
    st.sampled_from([0.0, 0.3, 0.4, 0.5, 0.9]),
)
def test_matches_brute_force_reference(items, threshold):
    boxes = [b for b, _ in items]
    scores = [s / 20 for _, s in items]  # coarse scores: ties happen and must keep input order
    got = nms(np.array(boxes).reshape(-1, 4), np.array(scores), threshold)
    assert got.tolist() == reference(boxes, scores, threshold)


def test_areas_use_the_plus_one_convention():
    # Inclusive pixels: IoU = 15 / 35 = 0.43 > 0.4, suppressed; without +1 it would be 8 / 24 = 0.33.
    boxes = np.array([[0, 0, 4, 4], [2, 0, 6, 4]], float)
    assert nms(boxes, np.array([0.9, 0.8]), 0.4).tolist() == [0]


def test_iou_equal_to_threshold_is_kept():
    # The second box lies inside the first: IoU = 40 / 100 = 0.4 exactly.
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 3]], float)
    assert nms(boxes, np.array([0.9, 0.8]), 0.4).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), 0.39).tolist() == [0]


def test_result_is_in_descending_score_order():
    boxes = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [200, 0, 210, 10]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.7]), 0.4).tolist() == [1, 2, 0]
