"""Faces end to end without hardware: the stand-in computes, then the real runtime on the emulator.

Pictures are scikit-image's bundled photographs: `astronaut` (one face) and faces of the bundled
LFW subset, enlarged and pasted on canvases to make multi-face and shifted/rescaled scenes.
"""

from dataclasses import replace

import cv2
import numpy as np
import pytest
import skimage.data

from ml_target.config import Settings
from ml_target.hailo.runtime import Runtime
from ml_target.networks import NETWORKS
from ml_target.tasks.faces import create_face_handlers
from ml_target.testing import faces_emulation as fe
from ml_target.vision.align import align_face
from ml_target.vision.letterbox import letterbox
from ml_target.vision.scrfd import decode, match_heads

ASTRONAUT_FACE = np.array([175, 55, 275, 172])  # hand-labelled: hairline to chin, ear to ear


def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def cosine(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def paste(canvas_shape, fill, placements):
    canvas = np.full((*canvas_shape, 3), fill, np.uint8)
    for image, (top, left) in placements:
        canvas[top : top + image.shape[0], left : left + image.shape[1]] = image
    return canvas


def lfw_face(index, size=240):
    grey = (skimage.data.lfw_subset()[index] * 255).astype(np.uint8)
    return np.repeat(cv2.resize(grey, (size, size), interpolation=cv2.INTER_CUBIC)[..., None], 3, axis=2)


ASTRONAUT = skimage.data.astronaut()
SHIFTED = paste((900, 1200), 40, [(ASTRONAUT, (150, 400))])
RESCALED = paste((700, 700), 200, [(cv2.resize(ASTRONAUT, (384, 384), interpolation=cv2.INTER_AREA), (50, 250))])
OTHER_FACES = paste((480, 1000), 128, [(lfw_face(0), (120, 60)), (lfw_face(42), (100, 650))])


SCRFD = NETWORKS["scrfd_2.5g"]
LEVELS = match_heads([(SCRFD.vstream(e), e.shape) for e in SCRFD.outputs], (640, 640))


def quantised(outputs, spec):
    """What the HEF's UINT8 edges hand back for float outputs (clip, round half to even)."""
    result = {}
    for edge in spec.outputs:
        q = edge.quant
        raw = np.clip(np.rint(np.clip(outputs[spec.vstream(edge)], q.min, q.max) / q.scale + q.zp), 0, 255)
        result[spec.vstream(edge)] = ((raw - q.zp) * q.scale).astype(np.float32)
    return result


class TestStandIns:
    """The stand-in computes with the worker's real pre- and post-processing, without the device."""

    spec = SCRFD
    levels = LEVELS

    def detect(self, image):
        boxed = letterbox(image)
        outputs = fe.scrfd_compute(self.spec)({self.spec.vstream(self.spec.inputs[0]): boxed.image[None].astype(np.float32)})
        return decode(quantised({k: v[0] for k, v in outputs.items()}, self.spec), self.levels, boxed.scale, 0.7)

    @pytest.mark.parametrize("size", [30.0, 60.0, 110.0, 200.0, 400.0, 600.0])
    def test_encoded_faces_decode_back_within_quantisation(self, size):
        box = np.array([[50.0, 40.0, 50.0 + size, 40.0 + size]])
        landmarks = box[:, None, :2] + fe.LANDMARK_FRACTIONS[None] * size
        heads = {self.spec.vstream(e): np.zeros(e.shape, np.float32) for e in self.spec.outputs}
        fe.encode_heads(box, landmarks, 0.9, self.levels, heads)
        faces = decode(quantised(heads, self.spec), self.levels, 1.0, 0.5)
        stride, _ = fe.anchor_for(size)
        assert len(faces.boxes) == 1
        np.testing.assert_allclose(faces.boxes, box, atol=0.5 * 0.05 * stride + 1e-3)
        np.testing.assert_allclose(faces.landmarks, landmarks, atol=0.5 * 0.1 * stride + 1e-3)

    def test_astronaut_has_one_face_where_she_is(self):
        faces = self.detect(ASTRONAUT)
        assert len(faces.boxes) == 1
        assert iou(faces.boxes[0], ASTRONAUT_FACE) > 0.5  # Immich's own face-matching rule

    def test_blank_image_has_no_face(self):
        assert len(self.detect(np.full((480, 640, 3), 128, np.uint8)).boxes) == 0

    def test_embedding_is_deterministic_and_fits_the_edge(self):
        crop = align_face(ASTRONAUT, self.detect(ASTRONAUT).landmarks[0])
        first, second = fe.stand_in_embedding(crop), fe.stand_in_embedding(crop.copy())
        np.testing.assert_array_equal(first, second)
        (edge,) = NETWORKS["arcface_r50"].outputs
        assert first.shape == (512,) and edge.quant.min < first.min() and first.max() < edge.quant.max


@pytest.fixture
def runtime(tmp_path):
    """The real runtime on the emulated device (no sleeping) over a models dir of stand-in HEFs."""
    fe.write_face_models(tmp_path)
    settings = Settings(
        hailo_device="emulator", hailo_emulator_profile="none", models_dir=tmp_path, face_serve_any_model_name=True
    )
    rt = Runtime(settings)
    yield settings, rt
    rt.close()


async def faces_of(handlers, image):
    detection, recognition = handlers
    found = await detection.run(image, detection.parse_options({"minScore": 0.7}), None)
    return await recognition.run(image, recognition.parse_options({}), found)


@pytest.mark.parametrize(("detector", "recogniser"), [("scrfd_2.5g", "arcface_r50"), ("scrfd_10g", "arcface_mobilefacenet")])
async def test_end_to_end_through_the_emulator(runtime, detector, recogniser):
    settings, rt = runtime
    handlers = create_face_handlers(replace(settings, face_detector=detector, face_recogniser=recogniser), rt)

    astronaut = await faces_of(handlers, ASTRONAUT)
    (wire,) = astronaut.to_wire()
    box = [wire["boundingBox"][k] for k in ("x1", "y1", "x2", "y2")]
    assert all(float(v).is_integer() for v in box)
    assert iou(box, ASTRONAUT_FACE) > 0.5
    assert wire["score"] == pytest.approx(fe.FACE_SCORE, abs=0.5 / 255 + 1e-6)

    shifted, rescaled, others = [await faces_of(handlers, image) for image in (SHIFTED, RESCALED, OTHER_FACES)]
    reference = astronaut.embeddings[0]
    np.testing.assert_allclose(shifted.detections.boxes[0], astronaut.detections.boxes[0] + [400, 150, 400, 150], atol=15)
    assert cosine(reference, shifted.embeddings[0]) > 0.9
    assert cosine(reference, rescaled.embeddings[0]) > 0.9
    assert len(others.embeddings) == 2
    different = [cosine(reference, e) for e in others.embeddings] + [cosine(*others.embeddings)]
    assert max(different) < 0.5
