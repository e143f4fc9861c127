"""This worker's side of `verify`: its real service path, spoken to exactly as Immich speaks to it.

Requests go through the FastAPI app in-process (httpx's ASGI transport, no socket): multipart
`entries` + `image`/`text` as Immich's server sends them, answers parsed from the JSON Immich would
store. Calling the handlers directly would skip what sits between them and Immich's database —
image decoding, option parsing, model-name checks, wire serialisation (OCR boxes normalised, face
boxes integral, embeddings as float32 strings) — and a fault there corrupts a library just as well.
The handlers run on `Runtime(settings)`: the Hailo device, or the emulator when selected.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson

from ml_target.app import create_app
from ml_target.config import Settings
from ml_target.tasks.base import Handler

IMMICH_OCR_OPTIONS = {
    "minScore": 0.5,
    "maxResolution": 736,
}  # the server's defaults (§3.4)
IMMICH_OCR_REC_SCORE = 0.8
IMMICH_FACE_SCORE = 0.7


class WorkerError(RuntimeError):
    """The worker refused or failed a request; the message carries its status and detail."""


@dataclass(frozen=True)
class WorkerFace:
    box: np.ndarray  # (x1, y1, x2, y2) received-image pixels
    score: float
    embedding: np.ndarray | None
    landmarks: np.ndarray | None = None  # (5, 2), only in detection-only answers


@dataclass(frozen=True)
class WorkerOcr:
    quads: np.ndarray  # (N, 4, 2) as received: Immich expects 0..1
    text: list[str]
    image_width: int
    image_height: int


def claimed_models(handlers: Sequence[Handler]) -> dict[str, Any]:
    """What the handlers say they serve faithfully, from their /health descriptions."""
    by_key = {f"{h.task}.{h.type}": h.describe() for h in handlers}
    clip = by_key.get("clip.visual", {})
    detection = by_key.get("facial-recognition.detection", {})
    recognition = by_key.get("facial-recognition.recognition", {})
    ocr = by_key.get("ocr.detection", {})
    return {
        "clip": list(clip.get("model_names", [])) if "clip.visual" in by_key else None,
        "clip_dim": clip.get("dim"),
        "faces": list(detection.get("model_names", [])) if detection else None,
        # "immich-compatible" (Immich's own recogniser on the host), "hailo-arcface" (opt-in) or None
        "faces_recognition": recognition.get("mode"),
        "faces_recognition_models": list(recognition.get("model_names", [])),
        "ocr": list(ocr.get("models", [])) if ocr else None,
    }


class WorkerClient:
    """Posts Immich-shaped /predict requests to the in-process app."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def _predict(
        self,
        entries: dict[str, Any],
        *,
        image: bytes | None = None,
        text: str | None = None,
    ) -> dict:
        data = {"entries": orjson.dumps(entries).decode()}
        files = None
        if image is not None:
            files = {"image": ("blob", image, "application/octet-stream")}
        else:
            data["text"] = text
        response = await self._client.post("/predict", data=data, files=files)
        if response.status_code != 200:
            raise WorkerError(
                f"worker answered {response.status_code}: {response.text[:500]}"
            )
        return response.json()

    async def clip_image(self, model: str, image: bytes) -> np.ndarray:
        body = await self._predict(
            {"clip": {"visual": {"modelName": model}}}, image=image
        )
        return np.asarray(orjson.loads(body["clip"]), dtype=np.float32)

    async def clip_text(self, model: str, text: str) -> np.ndarray:
        body = await self._predict(
            {"clip": {"textual": {"modelName": model, "options": {}}}}, text=text
        )
        return np.asarray(orjson.loads(body["clip"]), dtype=np.float32)

    async def faces(
        self, model: str, image: bytes, *, recognition: bool
    ) -> list[WorkerFace]:
        entries: dict[str, Any] = {
            "detection": {
                "modelName": model,
                "options": {"minScore": IMMICH_FACE_SCORE},
            }
        }
        if recognition:
            entries["recognition"] = {"modelName": model}
        body = (await self._predict({"facial-recognition": entries}, image=image))[
            "facial-recognition"
        ]
        if not recognition:  # detection-only answers carry the raw detector output
            return [
                WorkerFace(np.asarray(b, np.float64), float(s), None, np.asarray(k, np.float32))
                for b, s, k in zip(body["boxes"], body["scores"], body["landmarks"])
            ]
        return [
            WorkerFace(
                np.array(
                    [f["boundingBox"][k] for k in ("x1", "y1", "x2", "y2")], np.float64
                ),
                float(f["score"]),
                np.asarray(orjson.loads(f["embedding"]), np.float32),
            )
            for f in body
        ]

    async def ocr(self, model: str, image: bytes) -> WorkerOcr:
        entries = {
            "detection": {"modelName": model, "options": dict(IMMICH_OCR_OPTIONS)},
            "recognition": {
                "modelName": model,
                "options": {"minScore": IMMICH_OCR_REC_SCORE},
            },
        }
        body = await self._predict({"ocr": entries}, image=image)
        result = body["ocr"]
        quads = np.asarray(result["box"], dtype=np.float64).reshape(-1, 4, 2)
        return WorkerOcr(
            quads,
            list(result["text"]),
            int(body["imageWidth"]),
            int(body["imageHeight"]),
        )


@contextlib.asynccontextmanager
async def serve_in_process(
    settings: Settings, handlers: Sequence[Handler], health=None
) -> AsyncIterator[WorkerClient]:
    """The app around `handlers`, started and shut down like the real service (runtime left open)."""
    app = create_app(settings, handlers, health or (lambda: {"state": "ok"}))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport, base_url="http://worker", timeout=600.0
        ) as client,
    ):
        yield WorkerClient(client)


@contextlib.contextmanager
def configured_worker(settings: Settings):
    """(handlers, runtime health) for the configured device, as `serve` builds them; closes the runtime."""
    from ml_target.hailo.runtime import Runtime
    from ml_target.tasks import create_handlers

    if settings.hailo_device == "emulator":
        from ml_target.testing.emulated_models import register_stand_ins

        register_stand_ins()
    runtime = Runtime(settings)
    try:
        yield create_handlers(settings, runtime), runtime.health
    finally:
        runtime.close()
