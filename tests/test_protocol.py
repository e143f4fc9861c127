"""Immich's wire format: entries parsing, model-name normalisation, response serialisation."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from immich_client import CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES, FACES_ENTRIES, OCR_ENTRIES

from ml_target.errors import InvalidEntries
from ml_target.protocol import Entry, normalise_model_name, parse_entries, response_body
from ml_target.results import Embedding, FaceDetections, Faces, TextDetections


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ViT-B-32__openai", "ViT-B-32__openai"),
        ("ViT-B-32::openai", "ViT-B-32__openai"),
        ("immich-app/ViT-B-32__openai", "ViT-B-32__openai"),
        ("a/b/nllb-clip-base-siglip__v1", "nllb-clip-base-siglip__v1"),
        ("PP-OCRv5.mobile", "PP-OCRv5mobile"),
        ("x\\y:z", "x_y_z"),
        ("buffalo_l", "buffalo_l"),
    ],
)
def test_model_names_are_normalised_like_immich(raw: str, expected: str) -> None:
    assert normalise_model_name(raw) == expected


def test_immich_requests_parse_in_order_with_options() -> None:
    assert parse_entries(CLIP_IMAGE_ENTRIES) == [Entry("clip", "visual", "ViT-B-32__openai", {})]
    assert parse_entries(CLIP_TEXT_ENTRIES) == [Entry("clip", "textual", "ViT-B-32__openai", {"language": "de"})]
    assert parse_entries(FACES_ENTRIES) == [
        Entry("facial-recognition", "detection", "buffalo_l", {"minScore": 0.7}),
        Entry("facial-recognition", "recognition", "buffalo_l", {}),
    ]
    assert parse_entries(OCR_ENTRIES) == [
        Entry("ocr", "detection", "PP-OCRv5_mobile", {"minScore": 0.5, "maxResolution": 736}),
        Entry("ocr", "recognition", "PP-OCRv5_mobile", {"minScore": 0.8}),
    ]


def test_empty_entries_and_null_options() -> None:
    assert parse_entries("{}") == []
    assert parse_entries(b'{"clip":{"visual":{"modelName":"a::b","options":null}}}') == [
        Entry("clip", "visual", "a__b", {})
    ]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "entries is not JSON (Input is a zero-length, empty document"),
        ("not json", "entries is not JSON ("),
        ("[]", "entries must be a JSON object {task: {type: {\"modelName\": ..., \"options\": {...}}}}, not an array"),
        ('"clip"', "entries must be a JSON object {task: {type: {\"modelName\": ..., \"options\": {...}}}}, not a string"),
        ("null", "not null"),
        ('{"clip": []}', 'entries["clip"] must be an object of types, not an array'),
        ('{"clip": {"visual": "ViT-B-32__openai"}}', 'entries["clip"]["visual"] must be an object with "modelName", not a string'),
        ('{"clip": {"visual": {}}}', 'entries["clip"]["visual"] needs a "modelName" string (found none)'),
        ('{"clip": {"visual": {"modelname": "ViT-B-32__openai"}}}', 'needs a "modelName" string (found none)'),
        ('{"clip": {"visual": {"modelName": 5}}}', 'entries["clip"]["visual"] needs a "modelName" string (found a number)'),
        ('{"clip": {"visual": {"modelName": "x", "options": [1]}}}', 'entries["clip"]["visual"]["options"] must be an object, not an array'),
        ('{"clip": {"visual": {"modelName": "x"}}', "entries is not JSON (unexpected end of data"),
        ('{"%s": []}' % ("t" * 100), 'entries["tttttttttttttttttttttttttttttttttttt..."] must be an object'),
    ],
)
def test_malformed_entries_are_immichs_422_with_the_reason_after_immichs_message(raw: str, reason: str) -> None:
    with pytest.raises(InvalidEntries) as caught:
        parse_entries(raw)
    message = str(caught.value)
    assert message.startswith("Invalid request format. "), message  # Immich's own message comes first
    assert reason in message
    assert caught.value.status == 422


def test_image_response_has_dimensions_last_and_float32_shortest() -> None:
    body = response_body({"clip": Embedding(np.array([1 / 3, 1e-8, -0.5], dtype=np.float32))}, (1440, 1920))
    assert body == b'{"clip":"[0.33333334,1e-8,-0.5]","imageHeight":1440,"imageWidth":1920}'


def test_text_response_has_no_dimensions_and_empty_is_empty_object() -> None:
    assert response_body({"clip": Embedding(np.array([0.6, 0.8], dtype=np.float32))}, None) == b'{"clip":"[0.6,0.8]"}'
    assert response_body({}, None) == b"{}"
    assert response_body({}, (800, 600)) == b'{"imageHeight":800,"imageWidth":600}'


def test_python_floats_are_written_as_float32() -> None:
    detections = FaceDetections(np.array([[1.0, 2.0, 3.0, 4.0]]), np.array([1 / 3]), np.zeros((1, 5, 2)))
    faces = Faces(detections, np.ones((1, 2), dtype=np.float32))
    decoded = orjson.loads(response_body({"facial-recognition": faces}, (10, 20)))
    assert b'"score":0.33333334' in response_body({"facial-recognition": faces}, (10, 20))
    assert decoded["facial-recognition"][0]["boundingBox"] == {"x1": 1.0, "y1": 2.0, "x2": 3.0, "y2": 4.0}


def test_ocr_arrays_are_float32_lists() -> None:
    detections = TextDetections(
        np.array([[[0, 0], [9, 0], [9, 4], [0, 4]]]), np.array([0.5]), image_width=10, image_height=5
    )
    assert response_body({"ocr": detections}, (5, 10)) == (
        b'{"ocr":{"box":[0.0,0.0,0.9,0.0,0.9,0.8,0.0,0.8],"boxScore":[0.5]},"imageHeight":5,"imageWidth":10}'
    )


class _Wire:
    def __init__(self, value: object) -> None:
        self.value = value

    def to_wire(self) -> object:
        return self.value


@pytest.mark.parametrize(
    "bad", [float("nan"), np.float32("inf"), [1.0, float("-inf")], np.array([np.nan], dtype=np.float64)]
)
def test_non_finite_numbers_never_serialise(bad: object) -> None:
    with pytest.raises(ValueError, match="NaN or infinity"):
        response_body({"x": _Wire({"v": bad})}, None)


def test_integer_arrays_and_nested_values_serialise() -> None:
    value = {"ids": np.array([1, 2], dtype=np.int64), "n": np.int32(7), "t": ("a", True, None, np.bool_(False))}
    assert response_body({"x": _Wire(value)}, None) == b'{"x":{"ids":[1,2],"n":7,"t":["a",true,null,false]}}'
