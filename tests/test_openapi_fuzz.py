"""Schemathesis fuzzing of the served OpenAPI schema: no input may produce a 5xx.

The app runs on fake handlers (see `test_app_fakes`); the point is the HTTP layer, the form
parsing, the entries parser and the decoder on arbitrary input. Bounded to a few dozen examples
per operation so it runs in seconds.
"""

from __future__ import annotations

import io

import orjson
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from immich_client import undici_form
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance
from starlette.testclient import TestClient
from test_app_fakes import FakeHealth, all_handlers, make_settings

from ml_target.app import create_app

app = create_app(make_settings(), all_handlers(), FakeHealth())
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, content_type_conformance])


# Schemathesis rarely produces a well-formed `entries` by chance, so a second, structured fuzzer
# builds requests close to Immich's and mutates model names, options and payloads.
_TASK_TYPES = st.sampled_from(
    [
        ("clip", "visual"),
        ("clip", "textual"),
        ("facial-recognition", "detection"),
        ("facial-recognition", "recognition"),
        ("ocr", "detection"),
        ("ocr", "recognition"),
    ]
) | st.tuples(st.text(max_size=8), st.text(max_size=8))
_MODEL_NAMES = st.sampled_from(["ViT-B-32__openai", "ViT-B-32::openai", "buffalo_l", "PP-OCRv5_mobile"]) | st.text(
    max_size=12
)
_OPTION_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=5)
    | st.lists(st.integers(0, 9), max_size=2)
)
_OPTIONS = st.dictionaries(st.sampled_from(["minScore", "maxResolution", "language", "x"]), _OPTION_VALUES, max_size=3)


@st.composite
def _entries(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(st.text(max_size=30))
    body: dict = {}
    for task, type_ in draw(st.lists(_TASK_TYPES, max_size=4)):
        entry: dict = {"modelName": draw(_MODEL_NAMES)}
        if draw(st.booleans()):
            entry["options"] = draw(_OPTIONS)
        body.setdefault(task, {})[type_] = entry
    return orjson.dumps(body).decode()


def _image(width: int, height: int, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (width % 256, 90, height % 256)).save(buffer, fmt)
    return buffer.getvalue()


_IMAGES = st.sampled_from([_image(20, 10, "JPEG"), _image(1, 1, "PNG"), _image(7, 3, "WEBP"), b""]) | st.binary(
    max_size=64
)
_client = TestClient(create_app(make_settings(), all_handlers(), FakeHealth()))


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(entries=_entries(), image=st.none() | _IMAGES, text=st.none() | st.text(max_size=60))
def test_structured_requests_get_a_4xx_or_a_well_formed_200(
    entries: str, image: bytes | None, text: str | None
) -> None:
    parts: list[tuple[str, str | bytes]] = [("entries", entries)]
    if image is not None:
        parts.append(("image", image))
    if text is not None:
        parts.append(("text", text))
    body, headers = undici_form(parts)
    response = _client.post("/predict", content=body, headers=headers)
    assert response.status_code in (200, 400, 413, 422), response.text
    decoded = orjson.loads(response.content)
    if response.status_code != 200:
        assert set(decoded) == {"detail"}
        return
    assert not any(isinstance(v, dict) and "error" in v for v in decoded.values())
    if image is not None:
        assert list(decoded)[-2:] == ["imageHeight", "imageWidth"]
    else:
        assert "imageHeight" not in decoded
