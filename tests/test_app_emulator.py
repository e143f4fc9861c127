"""The service wired to the real runtime on the emulated device, with the real face handlers.

This is the integration seam: `create_app_for_runtime` + `Runtime` + `create_face_handlers`, driven
by Immich's exact faces request on a real photo (scikit-image's bundled astronaut portrait).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from immich_client import FACES_ENTRIES, post_predict
from PIL import Image
from skimage import data

from ml_target.app import create_app_for_runtime
from ml_target.config import Settings
from ml_target.hailo.runtime import Runtime
from ml_target.tasks.faces import create_face_handlers
from ml_target.testing import faces_emulation


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Runtime]]:
    faces_emulation.register()
    faces_emulation.write_face_models(tmp_path)
    settings = Settings(
        hailo_device="emulator",
        hailo_emulator_profile="none",
        models_dir=tmp_path,
        tasks=("faces",),
        face_serve_any_model_name=True,  # the Model Zoo ArcFace is not buffalo_l's recogniser
        request_threads=1,
    )
    runtime = Runtime(settings)
    app = create_app_for_runtime(settings, create_face_handlers(settings, runtime), runtime)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://ml") as client:
        yield client, runtime
    assert runtime.health()["state"] == "down"  # closed by the app's shutdown


def astronaut_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def test_faces_request_end_to_end_on_the_emulator(served) -> None:
    client, _ = served
    response = await post_predict(client, FACES_ENTRIES, image=astronaut_jpeg())
    assert response.status_code == 200
    body = response.json()
    assert (body["imageWidth"], body["imageHeight"]) == (512, 512)
    faces = body["facial-recognition"]
    for face in faces:
        assert all(float(v).is_integer() for v in face["boundingBox"].values())
        embedding = np.array(orjson.loads(face["embedding"]), dtype=np.float32)
        assert embedding.shape == (512,) and np.all(np.isfinite(embedding)) and np.linalg.norm(embedding) > 0
        assert face["score"] >= 0.7
    # The astronaut's face occupies roughly x 170-280, y 60-170 of the 512x512 portrait.
    assert any(
        150 <= b["x1"] <= 200 and 240 <= b["x2"] <= 300 and 40 <= b["y1"] <= 100 and 140 <= b["y2"] <= 200
        for b in (face["boundingBox"] for face in faces)
    )


async def test_health_and_metrics_reflect_the_runtime(served) -> None:
    client, _ = served
    assert (await post_predict(client, FACES_ENTRIES, image=astronaut_jpeg())).status_code == 200
    health = (await client.get("/health")).json()
    assert health["emulated"] is True and "EMULATED DEVICE" in health["warning"]
    assert health["status"] == "healthy" and health["device"] == "emulator"
    assert {(h["task"], h["type"]) for h in health["handlers"]} == {
        ("facial-recognition", "detection"),
        ("facial-recognition", "recognition"),
    }
    detector = next(name for name in health["networks"] if name.startswith("scrfd"))
    assert health["networks"][detector]["frames"] == 1
    metrics = (await client.get("/metrics")).text
    assert f'ml_target_network_frames_total{{network="{detector}"}} 1.0' in metrics
    tasks = "facial-recognition.detection+facial-recognition.recognition"
    tasks = "facial-recognition.detection+facial-recognition.recognition"
    assert f'ml_target_requests_total{{status="200",tasks="{tasks}"}} 1.0' in metrics
    assert (await client.get("/ping")).text == "pong"
    # No search was made: no session, and /health and /metrics say so.
    sessions = health["search_sessions"]
    assert (sessions["enabled"], sessions["active"], sessions["sessions"]) == (True, False, 0)
    assert "ml_target_search_session_active 0.0" in metrics and "ml_target_search_sessions_total 0.0" in metrics


async def test_the_default_compatible_mode_serves_immichs_recogniser_and_reports_its_cost(tmp_path: Path) -> None:
    """No opt-in: SCRFD on the (emulated) device, the pack's own recogniser ONNX on the host CPU."""
    import threading

    from ml_target.testing import face_models

    faces_emulation.register()
    faces_emulation.write_face_models(tmp_path)
    face_models.write_recogniser(tmp_path, "buffalo_l")
    settings = Settings(
        hailo_device="emulator", hailo_emulator_profile="none", models_dir=tmp_path, tasks=("faces",), request_threads=1
    )
    runtime = Runtime(settings)
    app = create_app_for_runtime(settings, create_face_handlers(settings, runtime), runtime)
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://ml") as client:
        response = await post_predict(client, FACES_ENTRIES, image=astronaut_jpeg())
        assert response.status_code == 200
        faces = response.json()["facial-recognition"]
        assert faces and all(len(orjson.loads(face["embedding"])) == 512 for face in faces)
        health = (await client.get("/health")).json()
        recognition = next(h for h in health["handlers"] if h["type"] == "recognition")
        assert recognition["mode"] == "immich-compatible" and recognition["model_names"] == ["buffalo_l"]
        assert recognition["recogniser"]["faces"] == len(faces) and recognition["recogniser"]["cpu_ms_per_face"] > 0
        assert "nothing needs re-running" in recognition["note"]
        assert not any(name.startswith("arcface") for name in health["networks"])  # nothing recognised on the device
        other = FACES_ENTRIES.replace("buffalo_l", "buffalo_s")
        refused = await post_predict(client, other, image=astronaut_jpeg())
        assert refused.status_code == 400 and "FACE_MODEL=buffalo_s" in refused.json()["detail"]
    assert not [t for t in threading.enumerate() if t.name.startswith("face-recogniser")]  # pool closed at shutdown
