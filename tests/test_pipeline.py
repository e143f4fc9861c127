"""Orchestration: handler selection, refusal before work, dependencies, concurrency, failures."""

from __future__ import annotations

import asyncio
import contextlib

import numpy as np
import pytest
from test_app_fakes import ClipVisual, FaceDetection, FaceRecognition, FakeHandler, all_handlers

from ml_target.errors import BadRequest, DeviceError, ModelNotServed
from ml_target.pipeline import Pipeline
from ml_target.protocol import Entry
from ml_target.results import Embedding, FaceDetections, Faces

IMAGE = np.full((30, 40, 3), 7, dtype=np.uint8)
FACES = [
    Entry("facial-recognition", "detection", "buffalo_l", {"minScore": 0.7}),
    Entry("facial-recognition", "recognition", "buffalo_l", {}),
]
CLIP = Entry("clip", "visual", "ViT-B-32__openai", {})


class CountingDecoder:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, data: bytes) -> np.ndarray:
        self.calls += 1
        return IMAGE


def pipeline_with(
    handlers: list[FakeHandler] | None = None,
) -> tuple[Pipeline, CountingDecoder, dict[str, FakeHandler]]:
    handlers = all_handlers() if handlers is None else handlers
    decoder = CountingDecoder()
    return Pipeline(handlers, decoder), decoder, {f"{h.task}.{h.type}": h for h in handlers}


async def test_recognition_receives_its_detection_result_and_replaces_it() -> None:
    pipeline, _, handlers = pipeline_with()
    prediction = await pipeline.predict([CLIP, *FACES], b"jpeg", None)
    assert list(prediction.results) == ["clip", "facial-recognition"]
    faces = prediction.results["facial-recognition"]
    assert isinstance(faces, Faces)
    detection_options, _ = handlers["facial-recognition.detection"].calls[0]
    _, upstream = handlers["facial-recognition.recognition"].calls[0]
    assert detection_options == {"min_score": 0.7}
    assert upstream is faces.detections
    assert isinstance(prediction.results["clip"], Embedding)
    assert prediction.image_size == (30, 40)
    assert set(prediction.timings_ms) == {
        "decode",
        "clip.visual",
        "facial-recognition.detection",
        "facial-recognition.recognition",
    }


async def test_dependency_declared_after_its_dependent_still_runs_first() -> None:
    pipeline, _, handlers = pipeline_with()
    prediction = await pipeline.predict([FACES[1], CLIP, FACES[0]], b"jpeg", None)
    assert list(prediction.results) == ["facial-recognition", "clip"]
    assert handlers["facial-recognition.recognition"].calls[0][1] is not None


async def test_detection_alone_returns_detections() -> None:
    pipeline, _, _ = pipeline_with()
    prediction = await pipeline.predict([FACES[0]], b"jpeg", None)
    assert isinstance(prediction.results["facial-recognition"], FaceDetections)


class Rendezvous(FakeHandler):
    """Finishes only once its partner has started: deadlocks unless both run at the same time."""

    def __init__(self, task: str, type_: str, partner: FakeHandler | None = None) -> None:
        super().__init__(("m",))
        self.task, self.type, self.partner = task, type_, partner

    async def run(self, payload, options, upstream):
        self.started.set()
        await asyncio.wait_for(self.partner.started.wait(), timeout=2.0)
        return Embedding(np.array([1.0], dtype=np.float32))


async def test_independent_entries_run_concurrently() -> None:
    first = Rendezvous("clip", "visual")
    second = Rendezvous("ocr", "detection", partner=first)
    first.partner = second
    pipeline, _, _ = pipeline_with([first, second])
    prediction = await pipeline.predict([Entry("clip", "visual", "m"), Entry("ocr", "detection", "m")], b"x", None)
    assert list(prediction.results) == ["clip", "ocr"]


async def test_recognition_starts_without_waiting_for_unrelated_entries() -> None:
    slow_clip = ClipVisual(("ViT-B-32__openai",), delay=30.0)
    recognition = FaceRecognition(("buffalo_l",))
    pipeline, _, _ = pipeline_with([slow_clip, FaceDetection(("buffalo_l",)), recognition])
    running = asyncio.create_task(pipeline.predict([CLIP, *FACES], b"jpeg", None))
    await asyncio.wait_for(recognition.started.wait(), timeout=2.0)
    assert slow_clip.started.is_set() and not running.done()
    running.cancel()


def _assert_refused_without_work(
    pipeline: Pipeline, decoder: CountingDecoder, handlers: dict[str, FakeHandler]
) -> None:
    assert decoder.calls == 0
    assert all(not h.calls for h in handlers.values())


@pytest.mark.parametrize(
    ("entries", "error", "message"),
    [
        ([Entry("clip", "audio", "x")], ModelNotServed, "Unknown task/type 'clip.audio'; Immich's are clip.visual"),
        (
            [Entry("clip", "visual", "ViT-L-14__openai")],
            ModelNotServed,
            "clip.visual: model 'ViT-L-14__openai' is not served; this worker serves ViT-B-32__openai",
        ),
        (
            [Entry("facial-recognition", "detection", "buffalo_l", {"minScore": "high"})],
            BadRequest,
            "facial-recognition.detection: minScore must be a number, got 'high'",
        ),
        (
            [FACES[1]],
            BadRequest,
            "Task facial-recognition of type recognition depends on output of "
            "(<ModelType.DETECTION: 'detection'>, <ModelTask.FACIAL_RECOGNITION: 'facial-recognition'>)",
        ),
        (
            [Entry("ocr", "recognition", "PP-OCRv5_mobile", {}), CLIP],
            BadRequest,
            "Task ocr of type recognition depends on output of "
            "(<ModelType.DETECTION: 'detection'>, <ModelTask.OCR: 'ocr'>)",
        ),
        (
            [Entry("clip", "textual", "ViT-B-32__openai")],
            BadRequest,
            "clip.textual needs text, but the request sent an image",
        ),
    ],
)
async def test_refusals_happen_before_decoding_or_running(entries, error, message) -> None:
    pipeline, decoder, handlers = pipeline_with()
    with pytest.raises(error) as caught:
        await pipeline.predict(entries, b"jpeg", None)
    assert str(caught.value).startswith(message)
    _assert_refused_without_work(pipeline, decoder, handlers)


async def test_disabled_immich_task_names_the_fix() -> None:
    pipeline, _, _ = pipeline_with([ClipVisual(("ViT-B-32__openai",))])
    with pytest.raises(ModelNotServed) as caught:
        await pipeline.predict([Entry("ocr", "detection", "PP-OCRv5_mobile")], b"jpeg", None)
    assert str(caught.value) == (
        "This worker does not serve ocr.detection (model 'PP-OCRv5_mobile'); it serves clip.visual. "
        "Enable the task with the TASKS setting (clip, faces, ocr) or turn it off in Immich."
    )


async def test_image_task_with_text_is_refused() -> None:
    pipeline, decoder, handlers = pipeline_with()
    with pytest.raises(BadRequest, match=r"clip\.visual needs an image, but the request sent text"):
        await pipeline.predict([CLIP], None, "a dog")
    _assert_refused_without_work(pipeline, decoder, handlers)


@pytest.mark.parametrize("text", [None, ""])
async def test_no_payload_is_immichs_400(text: str | None) -> None:
    pipeline, _, _ = pipeline_with()
    with pytest.raises(BadRequest) as caught:
        await pipeline.predict([CLIP], None, text)
    assert str(caught.value) == "Either image or text must be provided"


async def test_empty_entries_decode_only() -> None:
    pipeline, decoder, _ = pipeline_with()
    image_prediction = await pipeline.predict([], b"jpeg", None)
    assert (image_prediction.results, image_prediction.image_size, decoder.calls) == ({}, (30, 40), 1)
    text_prediction = await pipeline.predict([], None, "query")
    assert (text_prediction.results, text_prediction.image_size) == ({}, None)


async def test_image_wins_over_text() -> None:
    pipeline, _, handlers = pipeline_with()
    prediction = await pipeline.predict([CLIP], b"jpeg", "ignored")
    assert prediction.image_size == (30, 40)
    assert handlers["clip.visual"].calls


class Failing(FakeHandler):
    def __init__(self, task: str, type_: str, error: Exception) -> None:
        super().__init__(("m",))
        self.task, self.type, self.error = task, type_, error

    async def run(self, payload, options, upstream):
        await asyncio.sleep(0)
        raise self.error


class Cancellable(FakeHandler):
    task, type = "ocr", "detection"

    def __init__(self) -> None:
        super().__init__(("m",))
        self.cancelled = False

    async def run(self, payload, options, upstream):
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_a_failing_entry_cancels_the_others_and_its_error_propagates_unwrapped() -> None:
    error = DeviceError("device lost")
    other = Cancellable()
    pipeline, _, _ = pipeline_with([Failing("clip", "visual", error), other])
    with pytest.raises(DeviceError) as caught:
        await pipeline.predict([Entry("clip", "visual", "m"), Entry("ocr", "detection", "m")], b"x", None)
    assert caught.value is error
    assert other.cancelled


async def test_timings_of_completed_stages_survive_a_failure() -> None:
    pipeline, _, _ = pipeline_with([Failing("clip", "visual", DeviceError("timeout"))])
    timings: dict[str, float] = {}
    with pytest.raises(DeviceError):
        await pipeline.predict([Entry("clip", "visual", "m")], b"x", None, timings)
    assert set(timings) == {"decode"} and timings["decode"] >= 0.0


async def test_failing_detection_never_runs_recognition() -> None:
    recognition = FaceRecognition(("m",))
    pipeline, _, _ = pipeline_with([Failing("facial-recognition", "detection", RuntimeError("boom")), recognition])
    with pytest.raises(RuntimeError, match="boom"):
        await pipeline.predict(
            [Entry("facial-recognition", "detection", "m"), Entry("facial-recognition", "recognition", "m")], b"x", None
        )
    assert recognition.calls == []


def test_two_handlers_for_one_pair_are_a_configuration_bug() -> None:
    with pytest.raises(ValueError, match=r"two handlers for clip\.visual"):
        Pipeline([ClipVisual(("a",)), ClipVisual(("b",))], CountingDecoder())


class Announcing(ClipVisual):
    """Records when its announcement opens and closes relative to decoding and running."""

    def __init__(self, events: list[str]) -> None:
        super().__init__(("ViT-B-32__openai",))
        self.events = events

    @contextlib.contextmanager
    def announce(self):
        self.events.append("announce")
        try:
            yield
        finally:
            self.events.append("withdraw")

    async def run(self, payload, options, upstream):
        self.events.append("run")
        return await super().run(payload, options, upstream)


async def test_handlers_announce_before_decoding_and_withdraw_when_done_or_failed() -> None:
    events: list[str] = []

    async def decode(data: bytes) -> np.ndarray:
        events.append("decode")
        if data == b"corrupt":
            raise BadRequest("not an image")
        return IMAGE

    pipeline = Pipeline([Announcing(events), FaceDetection(("buffalo_l",))], decode)
    await pipeline.predict([CLIP, FACES[0]], b"jpeg", None)
    assert events == ["announce", "decode", "run", "withdraw"]
    events.clear()
    with pytest.raises(BadRequest):
        await pipeline.predict([CLIP], b"corrupt", None)
    assert events == ["announce", "decode", "withdraw"]
