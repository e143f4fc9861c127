"""HTTP layer: Immich's ML endpoints plus /health and /metrics.

`create_app(settings, handlers, health_source)` builds the FastAPI app; `create_app_for_runtime`
does the same from a runtime object (uses `runtime.health` and closes the runtime at shutdown).

Status policy (immich-protocol.md §5, hailo-models.md §6 items 10-11): every failure is a
non-2xx with `{"detail": "..."}`, because Immich only looks at the status; never an error inside
a 200. Exceptions from `ml_target.errors` carry their status; anything else is a logged 500.
`/ping` reflects the device (503 when it is down) but never waits behind inference.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from ml_target import __version__
from ml_target.config import Settings
from ml_target.errors import BadRequest, PayloadTooLarge, WorkerError
from ml_target.metrics import HealthSource, Metrics
from ml_target.pipeline import IMMICH_TASK_TYPES, Pipeline, Prediction
from ml_target.protocol import Entry, error_body, invalid_format, parse_entries, response_body
from ml_target.tasks.base import Handler
from ml_target.vision.decode import ImageDecoder

log = logging.getLogger(__name__)
access_log = logging.getLogger("ml_target.access")

# FastAPI's own body for a missing required form field, which is what Immich answers.
MISSING_ENTRIES = [{"type": "missing", "loc": ["body", "entries"], "msg": "Field required", "input": None}]
HEALTH_TIMEOUT_S = 1.0  # /ping must answer well inside Immich's 2 s availability timeout
_FORM_PART_LIMIT = 1024 * 1024  # non-file parts; our own, tighter limits are checked after parsing
EMULATOR_WARNING = "EMULATED DEVICE: no Hailo hardware is used; results are for tests and demos only"


class RuntimeHandle(Protocol):
    """The part of `ml_target.hailo.runtime.Runtime` the HTTP layer needs."""

    def health(self) -> Mapping[str, Any]: ...

    def close(self) -> None: ...


def create_app_for_runtime(settings: Settings, handlers: Sequence[Handler], runtime: RuntimeHandle) -> FastAPI:
    """The whole service: handlers built on `runtime`, health from it, and the runtime closed at shutdown."""
    app = create_app(settings, handlers, runtime.health, on_shutdown=runtime.close)
    app.state.runtime = runtime
    return app


def create_app(
    settings: Settings,
    handlers: Sequence[Handler],
    health_source: HealthSource,
    *,
    on_shutdown: Callable[[], None] | None = None,
) -> FastAPI:
    """Build the app.

    `handlers` satisfy `ml_target.tasks.base.Handler`; `health_source()` returns the runtime's
    health dict (`state`, `reason`, `arch`, `device`, `hailort_version`, `temperature_c`,
    `networks`: per-network stats, see `ml_target.metrics`). It is called in a helper thread with
    a timeout, so it may block briefly on the device. `on_shutdown` runs after the last request.
    """
    service = _Service(settings, handlers, health_source)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.close()
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        title="ml_target",
        version=__version__,
        description="Immich machine-learning protocol on Hailo-8/8L accelerators.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.get("/", responses={200: {"description": "Service banner, as Immich's ML service answers"}})
    async def root() -> Response:
        return _json(b'{"message":"Immich ML"}')

    @app.get("/ping", response_class=PlainTextResponse, responses={503: {"description": "The device is down"}})
    async def ping() -> Response:
        health = await service.health()
        if health.get("state") == "down":
            return PlainTextResponse(f"down: {health.get('reason') or 'device unavailable'}", status_code=503)
        return PlainTextResponse("pong")

    @app.post("/predict", openapi_extra=PREDICT_REQUEST_BODY, responses=PREDICT_RESPONSES)
    async def predict(request: Request) -> Response:
        return await service.predict(request)

    @app.get("/health", responses={200: {"description": "Device state, handlers, queues"}})
    async def health() -> Response:
        report = await service.health_report()
        # Runtime stats may hold numpy numbers and integer keys (batch sizes).
        return _json(orjson.dumps(report, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS))

    @app.get("/metrics", response_class=PlainTextResponse, responses={200: {"description": "Prometheus text format"}})
    async def metrics() -> Response:
        body, content_type = await service.metrics_text()
        return Response(body, media_type=content_type)

    return app


@dataclass
class _Form:
    """The parts of a /predict request, after Immich's rules for which ones count."""

    entries: list[Entry]
    image: bytes | None
    text: str | None


@dataclass
class _RequestRecord:
    """What the access log line and the metrics say about one request."""

    tasks: str = "none"
    status: int = 499  # stays 499 when the client goes away before an answer
    upload_bytes: int = 0
    image_size: tuple[int, int] | None = None
    text_chars: int | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    error: str | None = None


class _Service:
    """State shared by the routes: pipeline, decoder pool, metrics, health polling."""

    def __init__(self, settings: Settings, handlers: Sequence[Handler], health_source: HealthSource) -> None:
        self.settings = settings
        self.decoder = ImageDecoder(max_pixels=settings.max_image_pixels, threads=settings.request_threads)
        # Reduced-scale JPEG decoding for CLIP-only requests: 5x less CPU, crop within ~1/255 of exact.
        reduced = self.decoder.decode_reduced if settings.fast_jpeg_decode else None
        self.pipeline = Pipeline(handlers, self.decoder.decode, reduced)
        self.metrics = Metrics(health_source)
        self._health_source = health_source
        self._in_flight = 0
        self._health_pool: ThreadPoolExecutor | None = None

    def close(self) -> None:
        """Release the thread pools (the handlers' too); they are re-created if the app serves again."""
        self.decoder.close()
        for handler in self.pipeline.handlers:
            close = getattr(handler, "close", None)
            if close is not None:
                close()
        if self._health_pool is not None:
            self._health_pool.shutdown(wait=False, cancel_futures=True)
            self._health_pool = None

    async def _off_loop(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` in the health pool: separate from the decode pool, so a queue of big uploads cannot delay /ping."""
        if self._health_pool is None:
            self._health_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="health")
        return await asyncio.get_running_loop().run_in_executor(self._health_pool, fn)

    async def health(self) -> Mapping[str, Any]:
        """The runtime's health dict; a failing or hanging source reads as "down" with the reason."""
        try:
            return await asyncio.wait_for(self._off_loop(self._health_source), HEALTH_TIMEOUT_S)
        except asyncio.TimeoutError:  # not the builtin TimeoutError before Python 3.11
            return {"state": "down", "reason": f"runtime health check did not answer within {HEALTH_TIMEOUT_S} s"}
        except Exception as exc:
            log.exception("runtime health check failed")
            return {"state": "down", "reason": f"runtime health check failed: {exc}"}

    async def health_report(self) -> dict[str, Any]:
        health = await self.health()
        emulated = self.settings.hailo_device == "emulator" or health.get("device") == "emulator"
        report: dict[str, Any] = {
            "status": health.get("state", "unknown"),
            "reason": health.get("reason"),
            "emulated": emulated,
            "device": health.get("device", self.settings.hailo_device),
            "arch": health.get("arch", self.settings.hailo_arch),
            "hailort_version": health.get("hailort_version"),
            "device_info": health.get("device_info"),
            "devices": health.get("devices", []),
            "temperature_c": health.get("temperature_c"),
            "requests_in_flight": self._in_flight,
            "search_sessions": health.get("search_sessions"),
            "handlers": [_describe(h) for h in self.pipeline.handlers],
            "networks": health.get("networks", {}),
            "hefs": health.get("hefs", {}),
        }
        if emulated:
            report = {"warning": EMULATOR_WARNING, **report}
        return report

    async def metrics_text(self) -> tuple[bytes, str]:
        return await self._off_loop(self.metrics.render)

    async def predict(self, request: Request) -> Response:
        """One /predict call, with exactly one metrics record and one access log line whatever happens."""
        started = time.perf_counter()
        record = _RequestRecord()
        self._in_flight += 1
        self.metrics.in_flight.set(self._in_flight)
        try:
            form = await self._read_form(request, record)
            record.tasks = _task_label(form.entries)
            if form.image is None and form.text:
                record.text_chars = len(form.text)
            prediction = await self.pipeline.predict(form.entries, form.image, form.text, record.timings_ms)
            body = self._success(prediction, record)
            record.status = 200
            return _json(body)
        except WorkerError as exc:
            return self._failure(record, exc.status, str(exc), type(exc).__name__)
        except _MissingEntries:
            return self._failure(record, 422, MISSING_ENTRIES, "InvalidEntries")
        except ClientDisconnect:  # gone, or closed for sending too slowly (ml_target.http_server)
            return self._failure(record, 499, "the client went away before its request was complete", "disconnected")
        except Exception:
            log.exception("unexpected error while serving /predict (tasks=%s)", record.tasks)
            return self._failure(record, 500, "Internal Server Error", "internal")
        finally:
            self._in_flight -= 1
            self.metrics.in_flight.set(self._in_flight)
            elapsed = time.perf_counter() - started
            self.metrics.observe(record.tasks, record.status, elapsed, record.timings_ms)
            _log_request(record, elapsed)

    def _success(self, prediction: Prediction, record: _RequestRecord) -> bytes:
        record.image_size = prediction.image_size
        return response_body(prediction.results, prediction.image_size)

    def _failure(self, record: _RequestRecord, status: int, detail: Any, kind: str) -> Response:
        record.status = status
        record.error = detail if isinstance(detail, str) else "missing entries"
        self.metrics.errors.labels(kind).inc()
        return _json(error_body(detail), status)

    async def _read_form(self, request: Request, record: _RequestRecord) -> _Form:
        """Parse the multipart (or url-encoded) body within the size limits, then apply Immich's part rules."""
        limits = self.settings
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_upload_bytes:
            raise PayloadTooLarge(_upload_message(int(declared), limits.max_upload_bytes))
        counted = Request(request.scope, _counting_receive(request.receive, limits.max_upload_bytes, record))
        try:
            form = await counted.form(max_files=4, max_fields=8, max_part_size=_FORM_PART_LIMIT)
        except HTTPException as exc:  # Starlette's multipart errors
            if "maximum size" in str(exc.detail):
                raise PayloadTooLarge(f"A form field is larger than {_FORM_PART_LIMIT} bytes") from None
            raise BadRequest(f"Malformed form data: {exc.detail}") from None
        try:
            return await self._parts(form)
        finally:
            await form.close()

    async def _parts(self, form: Any) -> _Form:
        limits = self.settings
        entries_raw = form.get("entries")
        if entries_raw is None:
            raise _MissingEntries()
        if not isinstance(entries_raw, str):
            raise invalid_format("entries must be a plain form field, not a file part")
        entries_size = len(entries_raw.encode())
        if entries_size > limits.max_entries_bytes:
            raise PayloadTooLarge(
                f"entries is {entries_size} bytes, more than the limit of {limits.max_entries_bytes}"
                " (MAX_ENTRIES_BYTES)"
            )
        entries = parse_entries(entries_raw)
        image_part, text = form.get("image"), form.get("text")
        image: bytes | None = None
        if image_part is not None:
            if not isinstance(image_part, UploadFile):
                raise BadRequest(
                    'image must be a file part (Content-Disposition with filename="..."), not a text field'
                )
            image = await image_part.read()
        if isinstance(text, UploadFile):
            raise BadRequest("text must be a plain form field, not a file part")
        # No length limit of its own, as in Immich: the tokenizer truncates to the context length, and
        # the form's field limit (1 MiB, Immich's too) bounds the upload.
        return _Form(entries=entries, image=image, text=text or None)


class _MissingEntries(Exception):
    """No `entries` part: answered with FastAPI's validation body, as Immich does."""


def _counting_receive(receive: Receive, limit: int, record: _RequestRecord) -> Receive:
    """`receive` that stops reading once the body exceeds `limit` (chunked uploads declare no length)."""

    async def counted() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            record.upload_bytes += len(message.get("body", b""))
            if record.upload_bytes > limit:
                raise PayloadTooLarge(_upload_message(record.upload_bytes, limit, at_least=True))
        return message

    return counted


def _upload_message(size: int, limit: int, at_least: bool = False) -> str:
    return (
        f"Request body is {'more than ' if at_least else ''}{size} bytes, over the limit of {limit} "
        "(MAX_UPLOAD_BYTES); Immich sends previews of a few hundred kilobytes"
    )


def _task_label(entries: Sequence[Entry]) -> str:
    """Metric label for a request's task set; unknown pairs collapse so label values stay bounded."""
    keys = sorted({e.key if e.key in IMMICH_TASK_TYPES else "unknown" for e in entries})
    return "+".join(keys) or "none"


def _describe(handler: Handler) -> dict[str, Any]:
    return {"task": handler.task, "type": handler.type, **handler.describe()}


def _log_request(record: _RequestRecord, elapsed_s: float) -> None:
    line: dict[str, Any] = {"event": "predict", "status": record.status, "tasks": record.tasks}
    if record.image_size is not None:
        line["image"] = f"{record.image_size[1]}x{record.image_size[0]}"
    if record.text_chars is not None:
        line["text_chars"] = record.text_chars
    line["upload_bytes"] = record.upload_bytes
    line["timings_ms"] = {k: round(v, 2) for k, v in record.timings_ms.items()}
    line["total_ms"] = round(elapsed_s * 1000.0, 2)
    if record.error is not None:
        line["error"] = record.error
    access_log.info(orjson.dumps(line).decode())


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type="application/json")


_ERROR_SCHEMA = {
    "type": "object",
    "properties": {
        "detail": {"description": "Why the request failed (a string, or FastAPI's list for a missing entries part)"}
    },
    "required": ["detail"],
}
_ENTRIES_DOC = (
    'JSON object {task: {type: {"modelName": str, "options": {...}}}}, e.g. '
    '{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}. Tasks/types: ' + ", ".join(IMMICH_TASK_TYPES) + "."
)
_ENTRIES_EXAMPLES = [  # the requests Immich's server sends (immich-protocol.md §3.4), and "dimensions only"
    '{"clip":{"visual":{"modelName":"ViT-B-32__openai"}}}',
    '{"clip":{"textual":{"modelName":"ViT-B-32__openai","options":{"language":"de"}}}}',
    '{"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":0.7}},'
    '"recognition":{"modelName":"buffalo_l"}}}',
    '{"ocr":{"detection":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.5,"maxResolution":736}},'
    '"recognition":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.8}}}}',
    "{}",
]
PREDICT_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["entries"],
                    "properties": {
                        "entries": {"type": "string", "description": _ENTRIES_DOC, "examples": _ENTRIES_EXAMPLES},
                        "image": {
                            "type": "string",
                            "format": "binary",
                            "description": "Image file (JPEG, WebP, PNG, GIF, TIFF, BMP). Takes precedence over text.",
                        },
                        "text": {
                            "type": "string",
                            "description": "Search query for clip.textual; empty counts as absent.",
                        },
                    },
                    "description": "entries plus exactly one of image (a file part) or text.",
                },
                "encoding": {"image": {"contentType": "application/octet-stream"}},
            }
        },
    }
}
PREDICT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "One key per task (clip: embedding string; facial-recognition: faces; ocr: box/text/boxScore/textScore), "
            "then imageHeight and imageWidth for image requests"
        ),
        "content": {"application/json": {"schema": {"type": "object"}}},
    },
    400: {
        "description": "Bad input, unserved model or task, bad options",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    },
    413: {
        "description": "Upload, image pixels or entries over the limits",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    },
    422: {
        "description": "entries missing or not Immich's shape",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    },
    500: {"description": "Unexpected error (logged)", "content": {"application/json": {"schema": _ERROR_SCHEMA}}},
    503: {
        "description": "Device overloaded, recovering or down",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    },
}
