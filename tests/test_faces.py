"""The facial-recognition handlers over fake networks: options, model names, wiring, batching."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ml_target.config import Settings
from ml_target.errors import BadRequest, ModelNotServed
from ml_target.hailo.types import EdgeInfo, QuantInfo
from ml_target.networks import NETWORKS, NetworkSpec
from ml_target.results import FaceDetections
from ml_target.tasks.faces import FaceDetection, FaceRecognition, create_face_handlers, face_handlers
from ml_target.vision.align import align_face
from ml_target.vision.letterbox import letterbox

SCRFD = NETWORKS["scrfd_2.5g"]
ARCFACE = NETWORKS["arcface_r50"]


def edges(spec: NetworkSpec, which):
    return tuple(
        EdgeInfo(spec.vstream(e), e.shape, np.dtype(np.uint8), QuantInfo(e.quant.scale, e.quant.zp, e.quant.min, e.quant.max))
        for e in which
    )


class FakeNetwork:
    """A `Network` whose outputs come from `respond(frame)`; it records frames and concurrency."""

    def __init__(self, spec: NetworkSpec, respond):
        self.name = spec.group
        self.inputs = edges(spec, spec.inputs)
        self.outputs = edges(spec, spec.outputs)
        self.batch_size = spec.batch_size
        self.frames: list[np.ndarray] = []
        self.timeouts: list[float | None] = []
        self._respond = respond

    async def infer(self, frame, *, timeout=None):
        self.frames.append(frame)
        self.timeouts.append(timeout)
        return await self._respond(frame)


def scrfd_heads(face_cells):
    """Dequantised heads with faces at (stride, row, col, anchor, score, ltrb) — zero elsewhere."""
    heads = {SCRFD.vstream(e): np.zeros(e.shape, np.float32) for e in SCRFD.outputs}
    for stride, row, col, anchor, score, ltrb in face_cells:
        i = (8, 16, 32).index(stride)
        score_edge, box_edge, _ = SCRFD.outputs[3 * i : 3 * i + 3]
        heads[SCRFD.vstream(score_edge)][row, col, anchor] = score
        heads[SCRFD.vstream(box_edge)][row, col, 4 * anchor : 4 * anchor + 4] = ltrb
    return heads


def fixed(outputs):
    async def respond(frame):
        return outputs

    return respond


@pytest.fixture
def detection():
    heads = scrfd_heads([(16, 10, 12, 1, 0.9, [2, 2, 2, 3]), (32, 5, 5, 0, 0.6, [1, 1, 1, 1])])
    return FaceDetection(FakeNetwork(SCRFD, fixed(heads)), timeout=7.5)


def test_min_score_defaults_to_immichs_and_accepts_numbers(detection):
    assert detection.parse_options({}).min_score == 0.7
    assert detection.parse_options({"minScore": 0.25}).min_score == 0.25
    assert detection.parse_options({"minScore": 1}).min_score == 1.0
    assert detection.parse_options({"minScore": 0.5, "other": "ignored"}).min_score == 0.5


@pytest.mark.parametrize("value", ["0.7", True, None, float("nan"), float("inf"), 0, 0.0, -0.1, 1.5, [0.7]])
def test_min_score_refuses_wrong_types_and_ranges(detection, value):
    with pytest.raises(BadRequest, match="minScore"):
        detection.parse_options({"minScore": value})


def test_options_must_be_an_object(detection):
    with pytest.raises(BadRequest, match="object"):
        detection.parse_options([("minScore", 0.7)])


def test_immichs_pack_names_are_served_and_others_refused(detection):
    for name in ("buffalo_l", "buffalo_m", "buffalo_s", "antelopev2"):
        detection.check_model(name)
    with pytest.raises(ModelNotServed, match="buffalo_l"):
        detection.check_model("ViT-B-32__openai")


async def test_detection_letterboxes_decodes_and_maps_back(detection):
    image = np.full((1280, 960, 3), 90, np.uint8)  # portrait: det_scale = 640 / 1280 = 0.5
    faces = await detection.run(image, detection.parse_options({"minScore": 0.5}), None)
    network = detection._network
    np.testing.assert_array_equal(network.frames[0], letterbox(image).image)
    assert network.timeouts == [7.5]
    # stride 16, cell (row 10, col 12) -> centre (192, 160); ltrb (2, 2, 2, 3) x 16; / 0.5
    np.testing.assert_allclose(faces.boxes, [[320, 256, 448, 416], [256, 256, 384, 384]])
    np.testing.assert_allclose(faces.scores, [0.9, 0.6])


async def test_detection_applies_min_score(detection):
    faces = await detection.run(np.zeros((640, 640, 3), np.uint8), detection.parse_options({"minScore": 0.7}), None)
    np.testing.assert_allclose(faces.scores, [0.9])


def arcface_by_brightness():
    """An embedding that encodes the crop's mean brightness, and a barrier proving concurrency."""
    state = {"waiting": 0, "expected": 0, "all_in": asyncio.Event()}

    async def respond(crop):
        state["waiting"] += 1
        if state["waiting"] == state["expected"]:
            state["all_in"].set()
        await asyncio.wait_for(state["all_in"].wait(), timeout=2.0)  # fails unless all are submitted at once
        vector = np.zeros(512, np.float32)
        vector[0] = crop.mean()
        return {ARCFACE.vstream(ARCFACE.outputs[0]): vector}

    return respond, state


async def test_recognition_aligns_every_face_and_submits_them_concurrently():
    respond, state = arcface_by_brightness()
    network = FakeNetwork(ARCFACE, respond)
    recognition = FaceRecognition(network, timeout=3.0)
    image = np.zeros((400, 600, 3), np.uint8)
    image[:, 300:] = 200  # faces on the right half are bright
    template = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])
    landmarks = np.stack([template + [20, 50], template + [420, 150], template + [150, 250]]).astype(np.float32)
    detections = FaceDetections(
        boxes=np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 12, 12]], np.float32),
        scores=np.array([0.9, 0.8, 0.7], np.float32),
        landmarks=landmarks,
    )
    state["expected"] = 3
    faces = await recognition.run(image, recognition.parse_options({}), detections)
    for frame, points in zip(network.frames, landmarks):
        np.testing.assert_array_equal(frame, align_face(image, points))
    assert network.timeouts == [3.0] * 3
    assert faces.embeddings.shape == (3, 512) and faces.embeddings.dtype == np.float32
    np.testing.assert_allclose(faces.embeddings[:, 0], [0.0, 200.0, 0.0])
    assert faces.detections is detections
    assert [f["score"] for f in faces.to_wire()] == pytest.approx([0.9, 0.8, 0.7])


async def test_recognition_of_no_faces_calls_nothing():
    respond, _ = arcface_by_brightness()
    network = FakeNetwork(ARCFACE, respond)
    empty = FaceDetections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32))
    faces = await FaceRecognition(network).run(np.zeros((50, 50, 3), np.uint8), None, empty)
    assert network.frames == [] and faces.embeddings.shape == (0, 512)
    assert faces.to_wire() == []


def test_handlers_declare_the_protocol_fields():
    detector = FakeNetwork(SCRFD, fixed({}))
    recogniser = FakeNetwork(ARCFACE, fixed({}))
    detection, recognition = face_handlers(detector, FaceRecognition(recogniser))
    assert (detection.task, detection.type, detection.modality, detection.depends_on) == (
        "facial-recognition", "detection", "image", None,
    )
    assert (recognition.task, recognition.type, recognition.modality, recognition.depends_on) == (
        "facial-recognition", "recognition", "image", "detection",
    )
    assert detection.describe()["network"] == "scrfd_2_5g"
    described = recognition.describe()
    assert described["network"] == "arcface_r50" and described["mode"] == "hailo-arcface"
    assert "re-run face detection" in described["caveat"]


def test_a_detector_without_scrfd_heads_is_refused_at_start():
    with pytest.raises(ValueError, match="SCRFD"):
        FaceDetection(FakeNetwork(ARCFACE, fixed({})))


class FakeRuntime:
    def __init__(self):
        self.loads = []

    def load(self, hef_path, *, batch_size, priority):
        self.loads.append((Path(hef_path), batch_size, priority))
        spec = NETWORKS[Path(hef_path).stem]
        return FakeNetwork(spec, fixed({}))


def test_the_default_detector_is_buffalo_ls_scrfd_10g():
    assert Settings().face_detector == "scrfd_10g" and Settings().face_model == "buffalo_l"


@pytest.mark.parametrize(("detector", "recogniser"), [("scrfd_2.5g", "arcface_r50"), ("scrfd_10g", "arcface_mobilefacenet")])
def test_the_hailo_opt_in_loads_both_hefs(tmp_path, detector, recogniser):
    runtime = FakeRuntime()
    settings = Settings(
        models_dir=tmp_path, face_detector=detector, face_recogniser=recogniser, request_timeout_s=12.0,
        face_serve_any_model_name=True,
    )
    detection, recognition = create_face_handlers(settings, runtime)
    assert sorted(runtime.loads) == sorted([
        (tmp_path / f"{detector}.hef", NETWORKS[detector].batch_size, NETWORKS[detector].priority),
        (tmp_path / f"{recogniser}.hef", NETWORKS[recogniser].batch_size, NETWORKS[recogniser].priority),
    ])
    assert detection.describe()["network"] == NETWORKS[detector].group
    assert recognition.describe()["network"] == NETWORKS[recogniser].group


def test_the_hailo_arcface_answers_every_pack_name():
    """The opt-in is the operator's choice of another embedding space: every Immich pack name is answered."""
    respond, _ = arcface_by_brightness()
    recognition = FaceRecognition(FakeNetwork(ARCFACE, respond))
    for name in ("buffalo_l", "buffalo_m", "buffalo_s", "antelopev2"):
        recognition.check_model(name)
    with pytest.raises(ModelNotServed):
        recognition.check_model("ViT-B-32__openai")
    assert recognition.describe()["model_names"] == ["buffalo_l", "buffalo_m", "buffalo_s", "antelopev2"]
