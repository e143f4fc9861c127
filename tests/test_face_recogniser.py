"""The compatible face mode: Immich's own recogniser ONNX on the host CPU (no torch needed).

The recogniser files are built with `ml_target.testing.face_models` (numpy weights, `onnx` helper
API) in buffalo_l's interface. The reference embeddings are computed independently of the worker:
`verify`'s own re-implementation of insightface's alignment, normalisation by hand, onnxruntime.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ml_target.config import Settings
from ml_target.errors import ConfigurationError, ModelNotServed
from ml_target.immich_models import recogniser_path
from ml_target.networks import NETWORKS
from ml_target.results import FaceDetections
from ml_target.tasks.face_recogniser import HostRecogniser, insightface_normalisation, recogniser_blob
from ml_target.tasks.faces import FaceDetection, ImmichFaceRecognition, create_face_handlers
from ml_target.testing import face_models
from ml_target.verify.reference_faces import align as immich_align

RNG = np.random.default_rng(7)
IMAGE = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
TEMPLATE = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])
LANDMARKS = np.stack([TEMPLATE * 1.3 + [40, 60], TEMPLATE * 0.9 + [300, 200], TEMPLATE * 2.0 + [420, 150]]).astype(
    np.float32
)


def reference_embeddings(model_path: Path, image: np.ndarray, landmarks: np.ndarray, *, bgr: bool = False) -> np.ndarray:
    """What Immich's recognition computes: norm_crop, RGB, (x - 127.5) / 127.5, NCHW, one batch."""
    crops = np.stack([immich_align(image, points) for points in landmarks]).astype(np.float32)
    if bgr:
        crops = crops[..., ::-1]
    blob = ((crops - 127.5) / 127.5).transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input.1": np.ascontiguousarray(blob)})[0]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    return face_models.write_recogniser(tmp_path)


def test_insightface_picks_mean_and_std_from_the_first_nodes():
    assert insightface_normalisation(["Conv_0", "PRelu_1", "Conv_2"]) == (127.5, 127.5)
    assert insightface_normalisation(["_minusscalar0", "_mulscalar0", "conv0"]) == (0.0, 1.0)
    assert insightface_normalisation(["Sub_0", "Mul_1", "Conv_2"]) == (0.0, 1.0)
    assert insightface_normalisation(["Sub_0", "Conv_1"]) == (127.5, 127.5)  # both are needed
    assert insightface_normalisation([f"Conv_{i}" for i in range(8)] + ["Sub_8", "Mul_9"]) == (127.5, 127.5)


def test_the_blob_keeps_rgb_and_normalises_to_minus_one_one():
    crops = np.zeros((2, 112, 112, 3), np.uint8)
    crops[0, ..., 0] = 255  # red
    crops[1, ..., 2] = 0
    blob = recogniser_blob(crops, 127.5, 127.5)
    assert blob.shape == (2, 3, 112, 112) and blob.dtype == np.float32 and blob.flags.c_contiguous
    assert blob[0, 0].min() == 1.0 and blob[0, 1].max() == -1.0 and blob[0, 2].max() == -1.0


async def test_embeddings_equal_immichs_recognition_on_the_same_landmarks(model_path: Path):
    recogniser = HostRecogniser("buffalo_l", model_path, threads=1)
    ours = await recogniser.embed(IMAGE, LANDMARKS)
    reference = reference_embeddings(model_path, IMAGE, LANDMARKS)
    assert ours.shape == (3, 512) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-5)
    assert cosines(ours, reference).min() > 0.99999
    # The test can fail: the same crops in BGR are far from what Immich computes.
    assert cosines(ours, reference_embeddings(model_path, IMAGE, LANDMARKS, bgr=True)).max() < 0.99
    stats = recogniser.stats()
    assert stats["faces"] == 3 and stats["runs"] == 1  # all faces of the photo in one batch
    assert stats["cpu_ms_per_face"] > 0 and stats["wall_ms_per_run"] > 0
    recogniser.close()


async def test_a_recogniser_with_a_fixed_batch_runs_face_by_face(tmp_path: Path, model_path: Path):
    fixed = face_models.write_recogniser(tmp_path / "fixed", model=face_models.recogniser_model(batch=1))
    recogniser = HostRecogniser("buffalo_l", fixed, threads=1)
    assert recogniser.fixed_batch
    np.testing.assert_allclose(
        await recogniser.embed(IMAGE, LANDMARKS), reference_embeddings(model_path, IMAGE, LANDMARKS), rtol=1e-5, atol=1e-5
    )
    assert recogniser.stats()["runs"] == 3 and recogniser.describe()["batch"] == 1
    recogniser.close()


async def test_no_faces_runs_nothing(model_path: Path):
    recogniser = HostRecogniser("buffalo_l", model_path, threads=1)
    assert (await recogniser.embed(IMAGE, np.zeros((0, 5, 2), np.float32))).shape == (0, 512)
    assert recogniser.stats() == {"faces": 0, "runs": 0, "cpu_ms_per_face": None, "wall_ms_per_run": None}


class SlowSession:
    """Wraps an onnxruntime session so that each run takes `delay` s and records its thread."""

    def __init__(self, session, delay: float) -> None:
        self._session, self._delay, self.threads = session, delay, []

    def run(self, names, feeds):
        self.threads.append(threading.current_thread().name)
        time.sleep(self._delay)
        return self._session.run(names, feeds)


async def test_recognition_runs_off_the_event_loop_and_requests_in_parallel(model_path: Path):
    recogniser = HostRecogniser("buffalo_l", model_path, threads=2)
    slow = SlowSession(recogniser._session, 0.3)
    recogniser._session = slow
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    started = time.perf_counter()
    await asyncio.gather(recogniser.embed(IMAGE, LANDMARKS), recogniser.embed(IMAGE, LANDMARKS[:1]))
    elapsed = time.perf_counter() - started
    task.cancel()
    assert elapsed < 0.55  # two 0.3-s runs side by side, not one after the other
    assert ticks >= 10  # the loop kept running while the recogniser worked
    assert all(name.startswith("face-recogniser") for name in slow.threads) and len(slow.threads) == 2
    recogniser.close()


def test_a_missing_recogniser_names_the_fix(tmp_path: Path):
    with pytest.raises(ConfigurationError, match=r"recognition/model.onnx is missing.*fetch-models.*FACE_SERVE_ANY_MODEL_NAME"):
        HostRecogniser("buffalo_l", tmp_path / recogniser_path("buffalo_l"), threads=1)


def test_a_file_that_is_not_a_recogniser_is_refused(tmp_path: Path):
    page = tmp_path / "page.onnx"
    page.write_bytes(b"<html><body>rate limited</body></html>")
    with pytest.raises(ConfigurationError, match="not a loadable ONNX model.*fetch-models"):
        HostRecogniser("buffalo_l", page, threads=1)
    detector = face_models.save(face_models.detector_model(face_models.scrfd_heads([])), tmp_path / "det.onnx")
    with pytest.raises(ConfigurationError, match=r"not a face recogniser.*\(N, 3, 112, 112\)"):
        HostRecogniser("buffalo_l", detector, threads=1)


def test_the_compatible_mode_serves_only_its_own_pack(model_path: Path):
    recognition = ImmichFaceRecognition(HostRecogniser("buffalo_l", model_path, threads=1))
    recognition.check_model("buffalo_l")
    with pytest.raises(ModelNotServed, match=r"FACE_MODEL=buffalo_s on the worker and run fetch-models"):
        recognition.check_model("buffalo_s")
    with pytest.raises(ModelNotServed, match="buffalo_l"):
        recognition.check_model("ViT-B-32__openai")
    described = recognition.describe()
    assert described["mode"] == "immich-compatible" and described["model_names"] == ["buffalo_l"]
    assert described["recogniser"]["input_normalisation"] == {"mean": 127.5, "std": 127.5, "channels": "RGB"}


class FakeRuntime:
    def __init__(self):
        self.loads = []

    def load(self, hef_path, *, batch_size, priority):
        from tests.test_faces import FakeNetwork, fixed

        self.loads.append(Path(hef_path).stem)
        return FakeNetwork(NETWORKS[Path(hef_path).stem], fixed({}))


def test_by_default_only_the_detector_goes_to_the_device(tmp_path: Path):
    face_models.write_recogniser(tmp_path, "buffalo_m")
    runtime = FakeRuntime()
    settings = Settings(models_dir=tmp_path, face_model="buffalo_m", face_recognition_threads=3)
    detection, recognition = create_face_handlers(settings, runtime)
    assert runtime.loads == ["scrfd_10g"]
    assert isinstance(detection, FaceDetection) and isinstance(recognition, ImmichFaceRecognition)
    assert recognition.describe()["recogniser"]["threads"] == 3
    recognition.check_model("buffalo_m")
    with pytest.raises(ConfigurationError, match="buffalo_l"):
        create_face_handlers(Settings(models_dir=tmp_path), FakeRuntime())


async def test_the_handler_returns_immichs_embeddings_for_the_detected_faces(model_path: Path):
    recognition = ImmichFaceRecognition(HostRecogniser("buffalo_l", model_path, threads=1))
    detections = FaceDetections(
        boxes=np.array([[0, 0, 10, 10]] * 3, np.float32), scores=np.array([0.9, 0.8, 0.7], np.float32), landmarks=LANDMARKS
    )
    faces = await recognition.run(IMAGE, recognition.parse_options({}), detections)
    assert faces.detections is detections
    np.testing.assert_allclose(faces.embeddings, reference_embeddings(model_path, IMAGE, LANDMARKS), rtol=1e-5, atol=1e-5)
    assert len(faces.to_wire()) == 3
    recognition.close()
