"""`verify` for faces on the emulator, without torch: the compatible mode agrees with Immich to float precision.

The rig (`ml_target.testing.face_rig`) gives both sides the same insightface-shaped detector and
recogniser ONNX files; the worker runs the detector as an emulated SCRFD HEF and the recogniser on
the host, through its real HTTP path. The same-crop cosine must be >= 0.999 for every face; a
worker that feeds the recogniser BGR, or skips the alignment, must fail; the Hailo ArcFace opt-in
is reported, never judged.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ml_target.hailo import emulator
from ml_target.hailo.runtime import Runtime
from ml_target.results import Faces
from ml_target.tasks import faces as faces_task
from ml_target.tasks.face_recogniser import HostRecogniser, recogniser_blob
from ml_target.tasks.faces import create_face_handlers
from ml_target.testing import faces_emulation
from ml_target.testing.face_rig import RIG_FACES, build_face_rig
from ml_target.verify.cache import ImmichCache
from ml_target.verify.compare import Plan, run_verification
from ml_target.verify.report import Report
from ml_target.verify.samples import builtin_images
from ml_target.verify.worker import claimed_models, serve_in_process

IMAGES = builtin_images(photos=True, scenes=3, pages=0)


@pytest.fixture
def rig(tmp_path: Path):
    emulator.device().reset()
    rig = build_face_rig(tmp_path)
    runtime = Runtime(rig.settings)
    yield rig, runtime
    runtime.close()


def verify(rig, handlers, images=IMAGES, model: str | None = None) -> Report:
    plan = Plan(images=images, queries=[], tasks=("faces",), models={"faces": model} if model else {})

    async def go() -> Report:
        async with serve_in_process(rig.settings, handlers) as worker:
            return await run_verification(ImmichCache(rig.cache), worker, claimed_models(handlers), plan)

    return asyncio.run(go())


def test_the_compatible_mode_gives_immichs_own_embeddings(rig, tmp_path: Path) -> None:
    face_rig, runtime = rig
    report = verify(face_rig, create_face_handlers(face_rig.settings, runtime))
    faces = report.task("facial-recognition")
    assert faces.status == "pass" and report.exit_code() == 0, report.table()
    expected = len(IMAGES) * len(RIG_FACES)
    assert faces.measures["faces Immich"] == faces.measures["faces worker"] == faces.measures["faces matched"] == expected
    assert faces.measures["same-crop cosine"]["count"] == expected
    assert faces.measures["same-crop cosine"]["min"] >= 0.999
    # The detector's outputs sit on the HEF's grid, so even end to end the two sides agree.
    assert faces.measures["embedding cosine end to end"]["min"] >= 0.999
    assert faces.measures["box IoU"]["min"] == pytest.approx(1.0)
    assert faces.measures["faces Immich would keep (IoU > 0.5)"] == expected
    assert {c.name: c.threshold for c in faces.checks} == {"same-crop cosine min": 0.999}
    written = {p.name for p in report.write(tmp_path / "report")}
    assert "cosines.png" in written


class BgrRecogniser(HostRecogniser):
    """The mistake insightface's swapRB exists to prevent: crops fed to the recogniser in BGR."""

    def _embed(self, image, landmarks):
        return super()._embed(np.ascontiguousarray(image[..., ::-1]), landmarks)


class BoxCropRecognition(faces_task.ImmichFaceRecognition):
    """Pitfall 5: the face box squashed to 112 x 112 instead of the 5-point alignment."""

    async def run(self, payload, options, upstream):
        import cv2

        crops = []
        for x1, y1, x2, y2 in upstream.boxes:
            x1, y1 = max(int(x1), 0), max(int(y1), 0)
            patch = payload[y1 : max(int(y2), y1 + 1), x1 : max(int(x2), x1 + 1)]
            crops.append(cv2.resize(patch, (112, 112)) if patch.size else np.zeros((112, 112, 3), np.uint8))
        recogniser = self._recogniser
        blob = recogniser_blob(np.stack(crops), recogniser.mean, recogniser.std)
        embeddings = recogniser._session.run(None, {recogniser._input: blob})[0]
        return Faces(detections=upstream, embeddings=embeddings)


@pytest.mark.parametrize("broken", ["bgr", "box-crop"])
def test_a_wrong_crop_or_colour_order_fails(rig, broken: str) -> None:
    face_rig, runtime = rig
    detection, recognition = create_face_handlers(face_rig.settings, runtime)
    recogniser = recognition._recogniser
    if broken == "bgr":
        recognition = faces_task.ImmichFaceRecognition(
            BgrRecogniser(recogniser.pack, recogniser.path, threads=1)
        )
    else:
        recognition = BoxCropRecognition(recogniser)
    report = verify(face_rig, [detection, recognition])
    faces = report.task("facial-recognition")
    assert faces.status == "fail" and report.failed == ["facial-recognition"]
    assert faces.measures["same-crop cosine"]["min"] < 0.99
    assert faces.measures["box IoU"]["min"] == pytest.approx(1.0)  # detection is still right


def test_the_hailo_arcface_opt_in_is_reported_not_judged(rig) -> None:
    face_rig, runtime = rig
    faces_emulation.write_face_models(face_rig.models)  # the ArcFace stand-in HEFs
    face_rig.settings = dataclasses.replace(face_rig.settings, face_serve_any_model_name=True)
    from ml_target.testing.face_models import write_emulated_detector

    write_emulated_detector(face_rig.models, face_rig.cache / "facial-recognition/buffalo_l/detection/model.onnx")
    report = verify(face_rig, create_face_handlers(face_rig.settings, runtime), images=IMAGES[:2])
    faces = report.task("facial-recognition")
    assert faces.status == "report-only" and report.exit_code() == 0
    assert faces.measures["embedding cosine end to end"]["count"] == 2 * len(RIG_FACES)
    assert "same-crop cosine" not in faces.measures and faces.checks == []
    assert "not the recogniser" in faces.notes[0]


def test_another_pack_than_the_workers_is_compared_on_boxes_only(rig) -> None:
    face_rig, runtime = rig
    from ml_target.testing.face_models import scrfd_heads, write_face_pack

    write_face_pack(face_rig.cache, scrfd_heads(RIG_FACES), pack="buffalo_s")
    report = verify(face_rig, create_face_handlers(face_rig.settings, runtime), images=IMAGES[:1], model="buffalo_s")
    faces = report.task("facial-recognition")
    assert faces.status == "report-only" and faces.measures["faces matched"] == len(RIG_FACES)
    assert any("serves buffalo_l, not buffalo_s" in note for note in faces.notes)


def test_a_pack_missing_from_the_cache_is_skipped_with_the_fix(rig, tmp_path: Path) -> None:
    face_rig, runtime = rig
    empty = dataclasses.replace(face_rig, cache=tmp_path / "empty-cache")
    empty.cache.mkdir()
    report = verify(empty, create_face_handlers(face_rig.settings, runtime), images=IMAGES[:1])
    faces = report.task("facial-recognition")
    assert faces.status == "skipped" and report.exit_code() == 2
    assert "buffalo_l" in faces.notes[0] and "Face Detection" in faces.notes[0]
