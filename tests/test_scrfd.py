"""SCRFD decoding against tensors built by hand from known faces, passed through the HEF's quantisation.

Heads are filled here with explicit index arithmetic (cell row/col, anchor slot, l/t/r/b in stride
units), independently of the decoder, using the output order `networks.py` declares: per stride
score, box, keypoints. Values are quantised with the declared QPs exactly as a UINT8 edge would.
"""

import numpy as np
import pytest

from ml_target.networks import NETWORKS, NetworkSpec, Quant
from ml_target.vision.letterbox import letterbox_size
from ml_target.vision.scrfd import decode, match_heads

STRIDES = (8, 16, 32)
SCORE_TOL = 0.5 / 255 + 1e-6  # half a step of the score heads' 1/255 scale


def quantise(values: np.ndarray, quant: Quant) -> np.ndarray:
    q = np.clip(np.rint(np.asarray(values, np.float64) / quant.scale + quant.zp), 0, 255)
    return ((q - quant.zp) * quant.scale).astype(np.float32)


class Heads:
    """Raw float heads for one frame of `spec`, filled face by face, read back quantised."""

    def __init__(self, spec: NetworkSpec) -> None:
        self.spec = spec
        self.raw = {spec.vstream(e): np.zeros(e.shape, np.float64) for e in spec.outputs}
        self.by_stride = {
            stride: tuple(spec.outputs[3 * i : 3 * i + 3]) for i, stride in enumerate(STRIDES)
        }

    def put(self, stride, row, col, anchor, score, ltrb, keypoint_offsets):
        score_edge, box_edge, kps_edge = self.by_stride[stride]
        self.raw[self.spec.vstream(score_edge)][row, col, anchor] = score
        self.raw[self.spec.vstream(box_edge)][row, col, 4 * anchor : 4 * anchor + 4] = ltrb
        self.raw[self.spec.vstream(kps_edge)][row, col, 10 * anchor : 10 * anchor + 10] = np.ravel(keypoint_offsets)

    def put_face(self, stride, anchor, box, landmarks, score=0.9):
        """Write a face given in detector-input pixels at the cell nearest its centre."""
        box, landmarks = np.asarray(box, np.float64), np.asarray(landmarks, np.float64)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        col, row = int(round(cx / stride)), int(round(cy / stride))
        ax, ay = col * stride, row * stride
        ltrb = np.array([ax - box[0], ay - box[1], box[2] - ax, box[3] - ay]) / stride
        self.put(stride, row, col, anchor, score, ltrb, (landmarks - [ax, ay]) / stride)

    def outputs(self):
        quants = {self.spec.vstream(e): e.quant for e in self.spec.outputs}
        return {name: quantise(value, quants[name]) for name, value in self.raw.items()}


def levels_of(spec: NetworkSpec):
    return match_heads(((spec.vstream(e), e.shape) for e in spec.outputs), (640, 640))


SPEC = NETWORKS["scrfd_2.5g"]
LEVELS = levels_of(SPEC)


def face_at(cx, cy, size):
    """A square face box and five plausible landmarks around (cx, cy)."""
    box = np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])
    fractions = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
    return box, box[:2] + fractions * size


def test_heads_are_found_by_shape_for_both_detectors():
    for hef in ("scrfd_2.5g", "scrfd_10g"):
        spec = NETWORKS[hef]
        shuffled = [(spec.vstream(e), e.shape) for e in reversed(spec.outputs)]
        levels = match_heads(shuffled, (640, 640))
        assert [lv.stride for lv in levels] == [8, 16, 32]
        for level, stride in zip(levels, STRIDES):
            score, box, kps = (spec.vstream(e) for e in Heads(spec).by_stride[stride])
            assert (level.scores, level.boxes, level.keypoints, level.anchors) == (score, box, kps, 2)


def test_heads_that_are_not_scrfd_are_refused():
    shapes = [(f"o{i}", (80, 80, c)) for i, c in enumerate((2, 8, 16))]
    with pytest.raises(ValueError, match="score/box/keypoints"):
        match_heads(shapes, (640, 640))
    with pytest.raises(ValueError, match="divide"):
        match_heads([("a", (30, 30, 2)), ("b", (30, 30, 8)), ("c", (30, 30, 20))], (640, 640))


@pytest.mark.parametrize(("height", "width"), [(480, 640), (777, 1001), (1001, 777), (300, 200)])
def test_faces_at_every_stride_and_anchor_survive_the_letterbox_round_trip(height, width):
    """Six faces (3 strides x 2 anchors) known in image pixels come back within 1 px.

    Quantisation of the declared QPs moves a value by at most half a step (box 0.05, keypoints 0.1,
    in stride units); the faces are placed so that their geometry lies on that grid, so what is
    measured here is the decoder's geometry (centres, strides, anchor slots, det_scale), not the
    quantisation noise, which `test_quantisation_error_is_bounded` covers.
    """
    new_h, _ = letterbox_size(height, width, 640, 640)
    det_scale = new_h / height
    heads = Heads(SPEC)
    expected = []
    for k, (stride, anchor) in enumerate((s, a) for s in STRIDES for a in (0, 1)):
        col, row = 3 + 2 * k, 4 + k  # distinct cells, inside every grid
        units = (12 + 10 * anchor) * 0.05  # box half-size in stride units, on the 0.05 grid
        half = units * stride
        ax, ay = col * stride, row * stride
        ltrb = np.full(4, units)
        offsets = np.array([[-0.3, -0.2], [0.3, -0.2], [0.0, 0.1], [-0.2, 0.4], [0.2, 0.4]]) * (1 + anchor)
        heads.put(stride, row, col, anchor, 0.5 + 0.05 * k, ltrb, offsets)
        box = np.array([ax - half, ay - half, ax + half, ay + half]) / det_scale
        expected.append((0.5 + 0.05 * k, box, (np.array([ax, ay]) + offsets * stride) / det_scale))
    faces = decode(heads.outputs(), LEVELS, det_scale, min_score=0.4)
    expected.sort(key=lambda e: -e[0])
    assert len(faces.boxes) == 6
    for (score, box, landmarks), got_score, got_box, got_landmarks in zip(
        expected, faces.scores, faces.boxes, faces.landmarks
    ):
        assert got_score == pytest.approx(score, abs=SCORE_TOL)
        np.testing.assert_allclose(got_box, box, atol=1e-3)
        np.testing.assert_allclose(got_landmarks, landmarks, atol=1e-3)
        assert np.abs(got_box - box).max() < 1 and np.abs(got_landmarks - landmarks).max() < 1


def test_quantisation_error_is_bounded():
    """Arbitrary faces: error <= half a quantisation step x stride, divided by det_scale."""
    rng = np.random.default_rng(7)
    det_scale = 496 / 777
    for stride, anchor in ((s, a) for s in STRIDES for a in (0, 1)):
        heads = Heads(SPEC)
        size = {8: 20.0, 16: 90.0, 32: 300.0}[stride] * rng.uniform(0.8, 1.2)
        box, landmarks = face_at(*rng.uniform(200, 400, 2), size)
        heads.put_face(stride, anchor, box, landmarks)
        faces = decode(heads.outputs(), LEVELS, det_scale, min_score=0.5)
        assert len(faces.boxes) == 1
        np.testing.assert_allclose(faces.boxes[0], box / det_scale, atol=0.5 * 0.05 * stride / det_scale + 1e-3)
        np.testing.assert_allclose(faces.landmarks[0], landmarks / det_scale, atol=0.5 * 0.1 * stride / det_scale + 1e-3)


def test_one_firing_anchor_gives_exactly_one_face():
    """Pitfall 1: the silent sibling anchor must not inherit the firing anchor's score."""
    heads = Heads(SPEC)
    heads.put(16, 10, 10, 0, 0.95, [2, 2, 2, 2], np.zeros((5, 2)))
    heads.put(16, 10, 10, 1, 0.0, [4, 4, 4, 4], np.zeros((5, 2)))
    faces = decode(heads.outputs(), LEVELS, 1.0, min_score=0.5)
    assert len(faces.boxes) == 1
    np.testing.assert_allclose(faces.boxes[0], [128, 128, 192, 192])


def test_anchor_centres_have_no_half_stride_offset():
    """Pitfall 2: cell (9, 9) at stride 32 with distances 2 is [224, 224, 352, 352], not +16 px."""
    heads = Heads(SPEC)
    heads.put(32, 9, 9, 0, 0.9, [2, 2, 2, 2], [[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]])
    faces = decode(heads.outputs(), LEVELS, 1.0, min_score=0.5)
    np.testing.assert_array_equal(faces.boxes, [[224, 224, 352, 352]])
    np.testing.assert_array_equal(faces.landmarks[0], [[288, 288], [320, 288], [288, 320], [256, 288], [288, 256]])


def test_one_face_seen_at_two_strides_is_merged_by_nms():
    heads = Heads(SPEC)
    box, landmarks = face_at(320, 320, 180)
    heads.put_face(16, 1, box, landmarks, score=0.9)
    heads.put_face(32, 0, box + [6, -4, 6, -4], landmarks, score=0.8)
    faces = decode(heads.outputs(), LEVELS, 1.0, min_score=0.5)
    assert len(faces.boxes) == 1
    assert faces.scores[0] == pytest.approx(0.9, abs=SCORE_TOL)
    np.testing.assert_allclose(faces.boxes[0], box, atol=0.5 * 0.05 * 16)


def test_separate_faces_come_out_in_descending_score_order():
    heads = Heads(SPEC)
    for (cx, cy), score in (((100, 100), 0.75), ((400, 300), 0.95), ((250, 500), 0.85)):
        heads.put_face(16, 1, *face_at(cx, cy, 100), score=score)
    faces = decode(heads.outputs(), LEVELS, 1.0, min_score=0.5)
    np.testing.assert_allclose(faces.scores, [0.95, 0.85, 0.75], atol=SCORE_TOL)
    np.testing.assert_allclose(faces.boxes[:, 0], [350, 200, 50], atol=0.5 * 0.05 * 16)


def test_min_score_keeps_scores_equal_to_it():
    heads = Heads(SPEC)
    heads.put_face(16, 1, *face_at(320, 320, 100), score=204 / 255)  # exactly representable
    outputs = heads.outputs()
    score = float(outputs[LEVELS[1].scores].max())
    assert len(decode(outputs, LEVELS, 1.0, min_score=score).boxes) == 1
    assert len(decode(outputs, LEVELS, 1.0, min_score=float(np.nextafter(np.float32(score), 1))).boxes) == 0


def test_boxes_are_not_clipped_to_the_image():
    heads = Heads(SPEC)
    heads.put(32, 0, 0, 1, 0.9, [3, 2, 4, 5], np.full((5, 2), -1.0))
    faces = decode(heads.outputs(), LEVELS, 0.5, min_score=0.5)
    np.testing.assert_allclose(faces.boxes[0], [-192, -128, 256, 320])
    np.testing.assert_allclose(faces.landmarks[0], np.full((5, 2), -64.0))


def test_nothing_above_threshold_gives_empty_arrays_of_the_right_shape():
    faces = decode(Heads(SPEC).outputs(), LEVELS, 1.0, min_score=0.7)
    assert faces.boxes.shape == (0, 4) and faces.scores.shape == (0,) and faces.landmarks.shape == (0, 5, 2)
    assert faces.to_wire() == {"boxes": [], "scores": [], "landmarks": []}
