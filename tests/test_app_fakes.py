"""Fake handlers and a fake runtime health source for the service tests (no tests in this module).

The fakes return real `ml_target.results` objects computed from the payload, so the tests check
the HTTP layer, the orchestration and the wire form, not model numerics.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np

from ml_target.config import Settings
from ml_target.errors import BadRequest, ModelNotServed
from ml_target.results import Embedding, FaceDetections, Faces, TextDetections, TextLines

# A face box straddling the top edge, with .5 values to check half-to-even rounding (-89.5 -> -90,
# 833.5 -> 834, 96.5 -> 96) and no clipping.
FACE_BOX = [100.4, -89.5, 833.5, 96.5]


def unit_vector(seed: float, dim: int = 512) -> np.ndarray:
    vector = np.sin(np.arange(1, dim + 1, dtype=np.float64) * (seed + 1.0)).astype(np.float32)
    return vector / np.linalg.norm(vector)


class FakeHandler:
    """Base: serves `models`, validates a float `minScore`, optionally waits before answering."""

    task = ""
    type = ""
    modality = "image"
    depends_on: str | None = None

    def __init__(self, models: tuple[str, ...], delay: float = 0.0) -> None:
        self.models = models
        self.delay = delay
        self.calls: list[tuple[Any, Any]] = []
        self.started = asyncio.Event()

    def check_model(self, model_name: str) -> None:
        if model_name not in self.models:
            raise ModelNotServed(
                f"{self.task}.{self.type}: model {model_name!r} is not served; "
                f"this worker serves {', '.join(self.models)}"
            )

    def parse_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        min_score = options.get("minScore", 0.5)
        if isinstance(min_score, bool) or not isinstance(min_score, int | float):
            raise BadRequest(f"{self.task}.{self.type}: minScore must be a number, got {min_score!r}")
        return {"min_score": float(min_score)}

    async def run(self, payload: Any, options: Any, upstream: Any | None) -> Any:
        self.calls.append((options, upstream))
        self.started.set()
        if self.delay:
            await asyncio.sleep(self.delay)
        return self.compute(payload, upstream)

    def compute(self, payload: Any, upstream: Any | None) -> Any:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"networks": [f"fake_{self.task}_{self.type}"], "models": list(self.models)}


class ClipVisual(FakeHandler):
    task, type = "clip", "visual"

    def compute(self, payload: np.ndarray, upstream: Any) -> Embedding:
        return Embedding(unit_vector(float(payload.mean())))


class ClipTextual(FakeHandler):
    task, type, modality = "clip", "textual", "text"

    def compute(self, payload: str, upstream: Any) -> Embedding:
        return Embedding(unit_vector(float(len(payload))))


class FaceDetection(FakeHandler):
    task, type = "facial-recognition", "detection"

    def compute(self, payload: np.ndarray, upstream: Any) -> FaceDetections:
        landmarks = np.array([[[150.0, 30.0], [250.0, 30.0], [200.0, 60.0], [160.0, 80.0], [240.0, 80.0]]])
        return FaceDetections(np.array([FACE_BOX]), np.array([0.9876]), landmarks)


class FaceRecognition(FakeHandler):
    task, type, depends_on = "facial-recognition", "recognition", "detection"

    def compute(self, payload: np.ndarray, upstream: FaceDetections) -> Faces:
        embeddings = np.stack([5.96 * unit_vector(float(i)) for i in range(len(upstream.scores))])
        return Faces(upstream, embeddings)


class OcrDetection(FakeHandler):
    task, type = "ocr", "detection"

    def compute(self, payload: np.ndarray, upstream: Any) -> TextDetections:
        h, w = payload.shape[:2]
        quads = np.array([[[0, 0], [w - 1, 0], [w - 1, h // 2], [0, h // 2]], [[2, 3], [10, 3], [10, 8], [2, 8]]])
        return TextDetections(quads, np.array([0.9243445, 0.7]), image_width=w, image_height=h)


class OcrRecognition(FakeHandler):
    task, type, depends_on = "ocr", "recognition", "detection"

    def compute(self, payload: np.ndarray, upstream: TextDetections) -> TextLines:
        return TextLines(upstream, ["Hello World", "ab"], np.array([0.97654, 0.85]))


def all_handlers(delay: float = 0.0) -> list[FakeHandler]:
    """One fake per Immich (task, type), serving Immich's default model names."""
    return [
        ClipVisual(("ViT-B-32__openai",), delay),
        ClipTextual(("ViT-B-32__openai",), delay),
        FaceDetection(("buffalo_l",), delay),
        FaceRecognition(("buffalo_l",), delay),
        OcrDetection(("PP-OCRv5_mobile",), delay),
        OcrRecognition(("PP-OCRv5_mobile",), delay),
    ]


class FakeHealth:
    """A runtime health source whose state the test sets."""

    def __init__(self, device: str = "emulator") -> None:
        self.state: dict[str, Any] = {
            "state": "healthy",
            "reason": None,
            "arch": "hailo8",
            "device": device,
            "hailort_version": "4.23.0",
            "temperature_c": 47.5,
            "rebuilds": 1,
            "networks": {
                "clip_vit_b_32_image_encoder": {
                    "state": "ready",
                    "inflight_frames": 2,
                    "queue_wait_s": 0.5,
                    "timeouts": 1,
                    "frames": np.int64(40),
                    "bursts": 12,
                    "busy_s": 1.25,
                    "queue_depth": 3,
                    "batch_sizes": {1: 8, 8: np.int64(4)},
                    "errors": 0,
                },
                "scrfd_2_5g": {"state": "recovering", "frames": 0},
            },
        }
        self.fail: Exception | None = None

    def __call__(self) -> Mapping[str, Any]:
        if self.fail is not None:
            raise self.fail
        return self.state


def make_settings(**overrides: Any) -> Settings:
    """Settings for service tests: emulator device, small pools."""
    return Settings(hailo_device="emulator", request_threads=2, **overrides)
