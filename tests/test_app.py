"""Black-box tests of the HTTP service with Immich's exact requests and fake handlers.

Responses are checked the way Immich's server consumes them (immich-protocol.md §4, §8): clip a
string of floats with norm 1, face boxes integral and unclipped, OCR boxes 8·N normalised values,
image dimensions of the received file.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import time
from collections.abc import AsyncIterator

import httpx
import numpy as np
import orjson
import pytest
from immich_client import (
    CLIP_IMAGE_ENTRIES,
    CLIP_TEXT_ENTRIES,
    CLIP_TEXT_ENTRIES_NO_LANGUAGE,
    FACES_ENTRIES,
    OCR_ENTRIES,
    immich_form,
    post_predict,
    undici_form,
)
from PIL import Image
from test_app_fakes import FakeHandler, FakeHealth, all_handlers, make_settings

from ml_target.app import create_app, create_app_for_runtime
from ml_target.config import Settings
from ml_target.errors import DeviceError, Overloaded
from ml_target.results import Embedding


def jpeg(width: int = 64, height: int = 48, **params: object) -> bytes:
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack([x * 4 % 256, y * 5 % 256, np.full_like(x, 100)], axis=2).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **params)
    return buffer.getvalue()


class Service:
    """An app on fake handlers, with the client and the fakes the test may adjust."""

    def __init__(self, settings: Settings | None = None, handlers: list[FakeHandler] | None = None) -> None:
        self.health = FakeHealth()
        self.handlers = all_handlers() if handlers is None else handlers
        self.app = create_app(settings or make_settings(), self.handlers, self.health)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://ml")

    def handler(self, key: str) -> FakeHandler:
        return next(h for h in self.handlers if f"{h.task}.{h.type}" == key)

    async def close(self) -> None:
        await self.client.aclose()
        self.app.state.service.close()


@pytest.fixture
async def service() -> AsyncIterator[Service]:
    running = Service()
    yield running
    await running.close()


def limited(**overrides: object) -> Service:
    return Service(make_settings(**overrides))


def vector(text: str) -> np.ndarray:
    assert text.startswith("[") and text.endswith("]")
    values = np.array(orjson.loads(text), dtype=np.float64)
    assert np.all(np.isfinite(values))
    return values


# --- Immich's endpoints -------------------------------------------------------------------------


async def test_root_ping_and_wrong_methods(service: Service) -> None:
    root = await service.client.get("/")
    assert (root.status_code, root.content) == (200, b'{"message":"Immich ML"}')
    ping = await service.client.get("/ping")
    assert (ping.status_code, ping.text, ping.headers["content-type"]) == (200, "pong", "text/plain; charset=utf-8")
    assert (await service.client.head("/ping")).status_code == 405
    wrong = await service.client.get("/predict")
    assert (wrong.status_code, wrong.json()) == (405, {"detail": "Method Not Allowed"})


async def test_clip_image_request(service: Service) -> None:
    response = await post_predict(service.client, CLIP_IMAGE_ENTRIES, image=jpeg(64, 48))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["clip", "imageHeight", "imageWidth"]
    assert (body["imageHeight"], body["imageWidth"]) == (48, 64)
    embedding = vector(body["clip"])
    assert embedding.shape == (512,)
    assert math.isclose(np.linalg.norm(embedding), 1.0, abs_tol=1e-6)


@pytest.mark.parametrize("entries", [CLIP_TEXT_ENTRIES, CLIP_TEXT_ENTRIES_NO_LANGUAGE])
async def test_clip_text_request(service: Service, entries: str) -> None:
    response = await post_predict(service.client, entries, text="a dog on a beach")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["clip"]
    assert math.isclose(np.linalg.norm(vector(body["clip"])), 1.0, abs_tol=1e-6)
    options, _ = service.handler("clip.textual").calls[0]
    assert options == {"min_score": 0.5}


async def test_faces_request(service: Service) -> None:
    response = await post_predict(service.client, FACES_ENTRIES, image=jpeg(600, 800))
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["facial-recognition", "imageHeight", "imageWidth"]
    (face,) = body["facial-recognition"]
    box = face["boundingBox"]
    assert box == {"x1": 100.0, "y1": -90.0, "x2": 834.0, "y2": 96.0}  # half-to-even, unclipped
    assert all(float(v).is_integer() for v in box.values())
    assert b'"x1":100.0' in response.content
    assert vector(face["embedding"]).shape == (512,)
    assert math.isclose(face["score"], 0.9876, rel_tol=1e-6)
    assert service.handler("facial-recognition.detection").calls[0][0] == {"min_score": 0.7}


async def test_ocr_request(service: Service) -> None:
    response = await post_predict(service.client, OCR_ENTRIES, image=jpeg(64, 48))
    assert response.status_code == 200
    body = response.json()
    ocr = body["ocr"]
    assert list(body) == ["ocr", "imageHeight", "imageWidth"]
    count = len(ocr["text"])
    assert count == 2 and ocr["text"] == ["Hello World", "ab"]
    assert len(ocr["box"]) == 8 * count and len(ocr["boxScore"]) == count and len(ocr["textScore"]) == count
    assert all(0.0 <= v < 1.0 for v in ocr["box"])
    assert ocr["box"][2] == float(np.float32(63 / 64))
    assert ocr["textScore"] == [0.97654, 0.85]
    assert b'"boxScore":[0.9243445,0.7]' in response.content


async def test_webp_preview_is_accepted(service: Service) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (10, 200, 30)).save(buffer, "WEBP")
    response = await post_predict(service.client, CLIP_IMAGE_ENTRIES, image=buffer.getvalue())
    assert (response.status_code, response.json()["imageWidth"], response.json()["imageHeight"]) == (200, 30, 20)


async def test_image_size_ignores_exif_orientation(service: Service) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    response = await post_predict(service.client, "{}", image=jpeg(40, 20, exif=exif.tobytes()))
    assert response.json() == {"imageHeight": 20, "imageWidth": 40}


async def test_multi_task_and_empty_entries(service: Service) -> None:
    entries = '{"clip":{"visual":{"modelName":"ViT-B-32::openai"}},' + FACES_ENTRIES[1:]
    both = await post_predict(service.client, entries, image=jpeg())
    assert list(both.json()) == ["clip", "facial-recognition", "imageHeight", "imageWidth"]
    assert (await post_predict(service.client, "{}", image=jpeg())).content == b'{"imageHeight":48,"imageWidth":64}'
    assert (await post_predict(service.client, "{}", text="query")).content == b"{}"


async def test_boundary_and_part_layout_are_undicis() -> None:
    body, headers = immich_form('{"a":1}', image=b"\x01\x02")
    boundary = headers["content-type"].split("boundary=")[1]
    assert boundary.startswith("----formdata-undici-0") and len(boundary) == len("----formdata-undici-0") + 11
    assert (
        body
        == (
            f'--{boundary}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n{{"a":1}}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="blob"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + b"\x01\x02\r\n"
        + f"--{boundary}--\r\n".encode()
    )
    assert headers["content-length"] == str(len(body))


# --- error matrix (immich-protocol.md §5.1, plus our limits) -----------------------------------


async def expect_error(response: httpx.Response, status: int, detail: object) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    if isinstance(detail, str) and detail.startswith("~"):
        assert detail[1:] in response.json()["detail"]
    else:
        assert response.json() == {"detail": detail}


async def test_missing_entries_is_fastapis_422(service: Service) -> None:
    missing = [{"type": "missing", "loc": ["body", "entries"], "msg": "Field required", "input": None}]
    body, headers = undici_form([("image", jpeg())])
    await expect_error(await service.client.post("/predict", content=body, headers=headers), 422, missing)
    await expect_error(await service.client.post("/predict"), 422, missing)


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ("nope", "Invalid request format. entries is not JSON (invalid literal"),
        ("[]", 'Invalid request format. entries must be a JSON object {task: {type: {"modelName": ..., "options": {...}}}}, not an array'),
        ('{"clip":{"visual":{}}}', 'Invalid request format. entries["clip"]["visual"] needs a "modelName" string (found none)'),
        ('{"clip":"visual"}', 'Invalid request format. entries["clip"] must be an object of types, not a string'),
    ],
)
async def test_invalid_entries_are_422_with_a_reason(service: Service, entries: str, reason: str) -> None:
    response = await post_predict(service.client, entries, image=jpeg())
    await expect_error(response, 422, "~" + reason)
    assert response.json()["detail"].startswith(reason)


async def test_entries_as_a_file_part_is_422(service: Service) -> None:
    body, headers = undici_form([("entries", CLIP_IMAGE_ENTRIES.encode()), ("image", jpeg())])
    await expect_error(
        await service.client.post("/predict", content=body, headers=headers),
        422,
        "Invalid request format. entries must be a plain form field, not a file part",
    )


@pytest.mark.parametrize("text", [None, ""])
async def test_neither_image_nor_text_is_400(service: Service, text: str | None) -> None:
    response = await post_predict(service.client, CLIP_TEXT_ENTRIES, text=text)
    await expect_error(response, 400, "Either image or text must be provided")


async def test_recognition_without_detection_is_400(service: Service) -> None:
    entries = '{"facial-recognition":{"recognition":{"modelName":"buffalo_l"}}}'
    response = await post_predict(service.client, entries, image=jpeg())
    await expect_error(
        response,
        400,
        "~Task facial-recognition of type recognition depends on output of (<ModelType.DETECTION: 'detection'>, "
        "<ModelTask.FACIAL_RECOGNITION: 'facial-recognition'>)",
    )


async def test_unserved_model_and_unknown_task_are_4xx_with_a_fix(service: Service) -> None:
    unserved = await post_predict(service.client, '{"clip":{"visual":{"modelName":"ViT-L-14__openai"}}}', image=jpeg())
    await expect_error(unserved, 400, "~model 'ViT-L-14__openai' is not served; this worker serves ViT-B-32__openai")
    unknown = await post_predict(service.client, '{"clip":{"audio":{"modelName":"x"}}}', image=jpeg())
    await expect_error(unknown, 400, "~Unknown task/type 'clip.audio'")


async def test_wrong_option_type_is_400(service: Service) -> None:
    entries = '{"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":"0.7"}}}}'
    await expect_error(await post_predict(service.client, entries, image=jpeg()), 400, "~minScore must be a number")


@pytest.mark.parametrize(
    ("image", "detail"),
    [
        (b"", "~zero"),
        (b"garbage", "~Cannot identify the image format"),
        (jpeg(256, 256, quality=95)[:-600], "~Cannot decode the JPEG image: image file is truncated"),
    ],
)
async def test_bad_images_are_400_with_the_reason(service: Service, image: bytes, detail: str) -> None:
    await expect_error(await post_predict(service.client, CLIP_IMAGE_ENTRIES, image=image), 400, detail)


async def test_payload_kind_mismatches_are_400(service: Service) -> None:
    text_to_image_task = await post_predict(service.client, CLIP_IMAGE_ENTRIES, text="dog")
    await expect_error(text_to_image_task, 400, "clip.visual needs an image, but the request sent text")
    body, headers = undici_form([("entries", CLIP_IMAGE_ENTRIES), ("image", "not a file part")])
    image_as_field = await service.client.post("/predict", content=body, headers=headers)
    await expect_error(image_as_field, 400, "~image must be a file part")
    body, headers = undici_form([("entries", CLIP_TEXT_ENTRIES), ("text", b"query")])
    await expect_error(
        await service.client.post("/predict", content=body, headers=headers), 400, "~text must be a plain form field"
    )


async def test_malformed_multipart_is_400(service: Service) -> None:
    headers = {"content-type": "multipart/form-data"}
    await expect_error(await service.client.post("/predict", content=b"x", headers=headers), 400, "~Missing boundary")


async def test_upload_over_the_limit_is_413_declared_or_chunked() -> None:
    running = limited(max_upload_bytes=5000)
    try:
        image = jpeg(200, 200, quality=95)
        assert len(image) > 5000
        declared = await post_predict(running.client, CLIP_IMAGE_ENTRIES, image=image)
        await expect_error(declared, 413, "~over the limit of 5000 (MAX_UPLOAD_BYTES)")
        body, headers = immich_form(CLIP_IMAGE_ENTRIES, image=image)
        del headers["content-length"]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1024):
                yield body[start : start + 1024]

        chunked = await running.client.post("/predict", content=chunks(), headers=headers)
        await expect_error(chunked, 413, "~Request body is more than")
        assert running.handler("clip.visual").calls == []
    finally:
        await running.close()


async def test_pixels_entries_and_text_limits() -> None:
    running = limited(max_image_pixels=1000, max_entries_bytes=60)
    try:
        pixels = await post_predict(running.client, "{}", image=jpeg(64, 48))
        await expect_error(pixels, 413, "~64x48 = 3072 pixels, more than the limit of 1000")
        long_entries = await post_predict(running.client, CLIP_TEXT_ENTRIES, text="dog")
        await expect_error(long_entries, 413, f"~entries is {len(CLIP_TEXT_ENTRIES)} bytes, more than the limit of 60")
        # Text has no limit of its own (Immich truncates it when tokenising); the form field limit bounds it.
        assert (await post_predict(running.client, "{}", text="x" * 2500)).status_code == 200
        assert (await post_predict(running.client, "{}", text="x" * 1024 * 1024)).status_code == 200
        huge = await post_predict(running.client, "{}", text="x" * (1024 * 1024 + 1))
        await expect_error(huge, 413, "A form field is larger than 1048576 bytes")
    finally:
        await running.close()


class Raising(FakeHandler):
    task, type = "clip", "visual"

    def __init__(self, error: Exception | None = None, result: object = None) -> None:
        super().__init__(("ViT-B-32__openai",))
        self.error, self.result = error, result

    async def run(self, payload, options, upstream):
        if self.error is not None:
            raise self.error
        return self.result


@pytest.mark.parametrize(
    ("handler", "status", "detail"),
    [
        (
            Raising(DeviceError("inference failed on clip_vit_b_32; recovering")),
            503,
            "inference failed on clip_vit_b_32; recovering",
        ),
        (Raising(Overloaded("too many queued frames")), 503, "too many queued frames"),
        (Raising(RuntimeError("bug")), 500, "Internal Server Error"),
        (Raising(result=Embedding(np.array([0.5, np.nan], dtype=np.float32))), 500, "Internal Server Error"),
    ],
)
async def test_device_errors_are_503_and_bugs_are_logged_500s(handler, status, detail, caplog) -> None:
    running = Service(handlers=[handler])
    try:
        with caplog.at_level(logging.ERROR, logger="ml_target.app"):
            response = await post_predict(running.client, CLIP_IMAGE_ENTRIES, image=jpeg())
        await expect_error(response, status, detail)
        logged = [r for r in caplog.records if r.name == "ml_target.app" and r.exc_info]
        assert len(logged) == (1 if status == 500 else 0)
        assert (await running.client.get("/ping")).status_code == 200  # still serving
    finally:
        await running.close()


# --- /ping, /health, /metrics, logging ---------------------------------------------------------


async def test_ping_is_503_only_when_the_device_is_down(service: Service) -> None:
    service.health.state["state"] = "degraded"
    assert (await service.client.get("/ping")).status_code == 200
    service.health.state.update(state="down", reason="device /dev/hailo0 disappeared")
    down = await service.client.get("/ping")
    assert (down.status_code, down.text) == (503, "down: device /dev/hailo0 disappeared")
    service.health.state["state"] = "healthy"
    service.health.fail = RuntimeError("driver gone")
    failing = await service.client.get("/ping")
    assert (failing.status_code, failing.text) == (503, "down: runtime health check failed: driver gone")


async def test_a_hanging_health_source_does_not_hang_ping(monkeypatch) -> None:
    import threading

    monkeypatch.setattr("ml_target.app.HEALTH_TIMEOUT_S", 0.05)
    release = threading.Event()
    running = Service()
    running.app.state.service._health_source = lambda: release.wait(5) and {}
    try:
        response = await running.client.get("/ping")
        assert (response.status_code, response.text) == (503, "down: runtime health check did not answer within 0.05 s")
    finally:
        release.set()
        await running.close()


async def test_ping_answers_while_eight_slow_predictions_are_in_flight() -> None:
    running = Service(handlers=all_handlers(delay=0.5))
    try:
        image = jpeg()
        predictions = [
            asyncio.create_task(post_predict(running.client, CLIP_IMAGE_ENTRIES, image=image)) for _ in range(8)
        ]
        clip = running.handler("clip.visual")
        for _ in range(200):
            if len(clip.calls) == 8:
                break
            await asyncio.sleep(0.01)
        assert len(clip.calls) == 8
        started = time.perf_counter()
        ping = await running.client.get("/ping")
        elapsed = time.perf_counter() - started
        assert (ping.status_code, ping.text) == (200, "pong")
        assert not any(p.done() for p in predictions)
        assert elapsed < 0.5, f"/ping took {elapsed:.3f} s under load"
        health = (await running.client.get("/health")).json()
        assert health["requests_in_flight"] == 8
        assert [r.status_code for r in await asyncio.gather(*predictions)] == [200] * 8
    finally:
        await running.close()


async def test_health_reports_device_handlers_queues_and_emulation(service: Service) -> None:
    health = (await service.client.get("/health")).json()
    assert next(iter(health)) == "warning" and "EMULATED DEVICE" in health["warning"]
    assert health["status"] == "healthy" and health["emulated"] is True
    assert (health["device"], health["arch"], health["hailort_version"]) == ("emulator", "hailo8", "4.23.0")
    network = health["networks"]["clip_vit_b_32_image_encoder"]
    assert (network["queue_depth"], network["frames"], network["batch_sizes"]) == (3, 40, {"1": 8, "8": 4})
    assert health["requests_in_flight"] == 0
    handlers = {f"{h['task']}.{h['type']}": h for h in health["handlers"]}
    assert len(handlers) == 6
    assert handlers["clip.visual"]["models"] == ["ViT-B-32__openai"]


async def test_health_on_real_hardware_has_no_warning() -> None:
    running = Service(Settings(hailo_device="hailort", request_threads=1))
    running.health.state["device"] = "hailort"
    try:
        health = (await running.client.get("/health")).json()
        assert "warning" not in health and health["emulated"] is False
    finally:
        await running.close()


def metric_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def test_metrics_count_requests_errors_and_device_statistics(service: Service) -> None:
    await post_predict(service.client, CLIP_IMAGE_ENTRIES, image=jpeg())
    await post_predict(service.client, CLIP_IMAGE_ENTRIES, text="")
    response = await service.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    values = metric_values(response.text)
    assert values[("ml_target_requests_total", (("status", "200"), ("tasks", "clip.visual")))] == 1.0
    assert values[("ml_target_requests_total", (("status", "400"), ("tasks", "clip.visual")))] == 1.0
    assert values[("ml_target_errors_total", (("kind", "BadRequest"),))] == 1.0
    assert values[("ml_target_request_duration_seconds_count", (("status", "200"), ("tasks", "clip.visual")))] == 1.0
    assert values[("ml_target_decode_duration_seconds_count", ())] == 1.0
    assert values[("ml_target_entry_duration_seconds_count", (("entry", "clip.visual"),))] == 1.0
    assert values[("ml_target_requests_in_flight", ())] == 0.0
    network = (("network", "clip_vit_b_32_image_encoder"),)
    assert values[("ml_target_network_frames_total", network)] == 40.0
    assert values[("ml_target_network_busy_seconds_total", network)] == 1.25
    assert values[("ml_target_network_queue_depth", network)] == 3.0
    assert values[("ml_target_network_batches_total", (("batch_size", "8"), *network))] == 4.0
    assert values[("ml_target_network_inflight_frames", network)] == 2.0
    assert values[("ml_target_network_queue_wait_seconds_total", network)] == 0.5
    assert values[("ml_target_network_timeouts_total", network)] == 1.0
    assert values[("ml_target_network_errors_total", network)] == 0.0
    assert values[("ml_target_network_ready", network)] == 1.0
    assert values[("ml_target_network_ready", (("network", "scrfd_2_5g"),))] == 0.0
    assert ("ml_target_network_busy_seconds_total", (("network", "scrfd_2_5g"),)) not in values
    assert values[("ml_target_device_rebuilds_total", ())] == 1.0
    assert values[("ml_target_chip_temperature_celsius", ())] == 47.5
    assert values[("ml_target_device_state", (("state", "healthy"),))] == 1.0
    assert values[("ml_target_device_state", (("state", "down"),))] == 0.0
    assert values[("ml_target_device_emulated", ())] == 1.0


async def test_metrics_survive_a_failing_health_source(service: Service, caplog) -> None:
    await post_predict(service.client, CLIP_IMAGE_ENTRIES, image=jpeg())
    service.health.fail = RuntimeError("driver gone")
    with caplog.at_level(logging.ERROR, logger="ml_target.metrics"):
        response = await service.client.get("/metrics")
    assert response.status_code == 200
    names = {name for name, _ in metric_values(response.text)}
    assert "ml_target_requests_total" in names
    assert not any(name.startswith(("ml_target_network_", "ml_target_device_")) for name in names)
    assert any("health source failed" in r.getMessage() for r in caplog.records)


async def test_each_app_has_its_own_registry(service: Service) -> None:
    other = Service()
    try:
        await post_predict(service.client, CLIP_IMAGE_ENTRIES, image=jpeg())
        values = metric_values((await other.client.get("/metrics")).text)
        assert not any(name == "ml_target_requests_total" for name, _ in values)
    finally:
        await other.close()


async def test_one_structured_log_line_per_request(service: Service, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="ml_target.access"):
        await post_predict(service.client, CLIP_IMAGE_ENTRIES + " ", image=jpeg(64, 48))
        await post_predict(service.client, "bad", image=jpeg())
        await post_predict(service.client, CLIP_TEXT_ENTRIES, text="a dog")
        await post_predict(service.client, FACES_ENTRIES, image=b"junk")
    lines = [orjson.loads(r.getMessage()) for r in caplog.records if r.name == "ml_target.access"]
    assert len(lines) == 4
    ok, bad, text, undecodable = lines
    assert (ok["event"], ok["status"], ok["tasks"], ok["image"]) == ("predict", 200, "clip.visual", "64x48")
    assert set(ok["timings_ms"]) == {"decode", "clip.visual"} and ok["upload_bytes"] > 0
    assert (bad["status"], bad["tasks"]) == (422, "none")
    assert bad["error"].startswith("Invalid request format. entries is not JSON")
    assert (text["status"], text["text_chars"], set(text["timings_ms"])) == (200, 5, {"clip.textual"})
    assert (undecodable["status"], undecodable["tasks"]) == (
        400,
        "facial-recognition.detection+facial-recognition.recognition",
    )
    assert undecodable["error"].startswith("Cannot identify the image format") and "image" not in undecodable


async def test_openapi_describes_the_multipart_form(service: Service) -> None:
    schema = (await service.client.get("/openapi.json")).json()
    body = schema["paths"]["/predict"]["post"]["requestBody"]
    form = body["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["entries"]
    assert form["properties"]["image"] == form["properties"]["image"] | {"type": "string", "format": "binary"}
    assert form["properties"]["text"]["type"] == "string"
    assert {"200", "400", "413", "422", "503"} <= set(schema["paths"]["/predict"]["post"]["responses"])


class FakeRuntime:
    def __init__(self) -> None:
        self.closed = False
        self.health = FakeHealth()

    def close(self) -> None:
        self.closed = True


async def test_app_for_runtime_uses_its_health_and_closes_it_at_shutdown() -> None:
    runtime = FakeRuntime()
    runtime.health.state.update(state="down", reason="lost")
    app = create_app_for_runtime(make_settings(), all_handlers(), runtime)
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ml") as client:
            assert (await client.get("/ping")).status_code == 503
        assert not runtime.closed
    assert runtime.closed
