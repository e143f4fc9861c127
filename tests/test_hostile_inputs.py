"""A corpus of hostile inputs, generated here, against the whole worker on the emulated device.

Every item must get a clear 4xx with a reason, or a correct 200: never a 5xx, a hang or a large
allocation, and the next valid request must still succeed. Unlike `test_app.py` and
`test_openapi_fuzz.py` (fake handlers), these requests go through the real task handlers, the
real pre-processing and the runtime, so an option or an image shape that only breaks a handler is
caught too. Property-based tests cover the decoder and the pre-processing functions directly.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zlib
from collections.abc import Iterator

import httpx
import numpy as np
import orjson
import pytest
from emulated_service import EmulatedService, encode, photo, write_models
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from immich_client import (
    CLIP_IMAGE_ENTRIES,
    CLIP_TEXT_ENTRIES,
    FACES_ENTRIES,
    OCR_ENTRIES,
    immich_form,
    post_predict,
    undici_form,
)
from PIL import Image

from ml_target.errors import BadRequest, PayloadTooLarge
from ml_target.vision.clip_transform import MAX_ASPECT_RATIO, clip_crop
from ml_target.vision.decode import decode_image
from ml_target.vision.letterbox import letterbox, letterbox_size
from ml_target.vision.ocr_levels import immich_levels
from ml_target.vision.ocr_resize import plan_fit, render_input

IMAGE_TASKS = {"clip": CLIP_IMAGE_ENTRIES, "faces": FACES_ENTRIES, "ocr": OCR_ENTRIES}
ALL_IMAGE_ENTRIES = (
    '{"clip":{"visual":{"modelName":"ViT-B-32__openai"}},'
    '"facial-recognition":{"detection":{"modelName":"buffalo_l","options":{"minScore":0.7}},'
    '"recognition":{"modelName":"buffalo_l"}},'
    '"ocr":{"detection":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.5,"maxResolution":736}},'
    '"recognition":{"modelName":"PP-OCRv5_mobile","options":{"minScore":0.8}}}}'
)
MAX_PIXELS = 100_000_000  # the default MAX_IMAGE_PIXELS


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedService]:
    service = EmulatedService(write_models(tmp_path_factory.mktemp("models")))
    yield service
    service.close()


async def ask(worker: EmulatedService, entries: str, **payload: object) -> httpx.Response:
    async with worker.client() as client:
        return await post_predict(client, entries, **payload)


async def still_serving(worker: EmulatedService) -> None:
    """The next valid request after a hostile one succeeds with a real embedding."""
    response = await ask(worker, CLIP_IMAGE_ENTRIES, image=encode(photo(64, 48)))
    assert response.status_code == 200, response.text
    embedding = orjson.loads(response.json()["clip"])
    assert abs(float(np.linalg.norm(embedding)) - 1.0) < 1e-3


def refused(response: httpx.Response, status: int, reason: str) -> None:
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"], response.json()


# --- hostile image files ------------------------------------------------------------------------


def png_with_size(width: int, height: int, mode: int = 2) -> bytes:
    """A PNG whose IHDR declares `width` x `height` with one tiny IDAT: a decompression-bomb header."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, mode, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def jpeg_with_size(width: int, height: int) -> bytes:
    """A real JPEG whose SOF0 marker is rewritten to declare `width` x `height`."""
    data = bytearray(encode(photo(16, 16)))
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_with_size(width: int, height: int) -> bytes:
    data = bytearray(encode(photo(8, 8), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def bit_flipped(data: bytes, seed: int, flips: int = 8) -> bytes:
    """`flips` single-bit errors after the first 32 bytes (a damaged file with an intact signature)."""
    rng = np.random.default_rng(seed)
    damaged = bytearray(data)
    for position in rng.integers(32, len(data), flips):
        damaged[position] ^= 1 << int(rng.integers(0, 8))
    return bytes(damaged)


SOURCE = photo(96, 64, seed=3)
FILES = {fmt: encode(SOURCE, fmt) for fmt in ("JPEG", "WEBP", "PNG")}


@pytest.mark.parametrize(
    ("image", "status", "reason"),
    [
        pytest.param(b"", 400, "zero bytes", id="zero-bytes"),
        pytest.param(
            FILES["JPEG"][: len(FILES["JPEG"]) // 2], 400, "Cannot decode the JPEG image", id="truncated-jpeg"
        ),
        pytest.param(FILES["WEBP"][: len(FILES["WEBP"]) // 2], 400, "Cannot", id="truncated-webp"),
        pytest.param(FILES["PNG"][: len(FILES["PNG"]) // 2], 400, "PNG", id="truncated-png"),
        pytest.param(FILES["JPEG"][:20], 400, "Cannot", id="jpeg-header-only"),
        pytest.param(b"\x89PNG" + FILES["JPEG"][4:], 400, "Cannot", id="png-magic-on-jpeg"),
        pytest.param(b"GIF89a" + b"\0" * 100, 400, "Cannot", id="gif-magic-on-zeros"),
        pytest.param(b"%PDF-1.7\n" + b"x" * 500, 400, "Cannot identify the image format", id="pdf"),
        pytest.param(b"<svg xmlns='http://www.w3.org/2000/svg'/>", 400, "Cannot identify", id="svg"),
        pytest.param(b"\0" * 4096, 400, "Cannot identify the image format", id="zeros"),
        # Beyond twice Pillow's own bomb limit, Pillow refuses at open; below it our budget does.
        pytest.param(png_with_size(100_000, 100_000), 413, "decompression bomb", id="png-bomb-header"),
        pytest.param(png_with_size(10_001, 10_000), 413, "MAX_IMAGE_PIXELS", id="png-just-over-limit"),
        pytest.param(png_with_size(0x7FFFFFFF, 1), 413, "2147483647 pixels", id="png-absurd-width"),
        pytest.param(png_with_size(0, 10), 400, "Cannot", id="png-zero-width"),
        pytest.param(jpeg_with_size(12_000, 9_000), 413, "MAX_IMAGE_PIXELS", id="jpeg-over-limit"),
        pytest.param(jpeg_with_size(65_000, 65_000), 413, "decompression bomb", id="jpeg-huge-declared"),
        pytest.param(gif_with_size(65_535, 65_535), 413, "decompression bomb", id="gif-huge-declared"),
    ],
)
async def test_broken_and_hostile_files_are_refused_with_the_reason(
    worker: EmulatedService, image: bytes, status: int, reason: str
) -> None:
    for entries in IMAGE_TASKS.values():
        refused(await ask(worker, entries, image=image), status, reason)
    await still_serving(worker)


async def test_header_bombs_cost_no_memory() -> None:
    """The pixel budget is checked from the header: a 10-gigapixel declaration allocates nothing."""
    for bomb in (png_with_size(100_000, 100_000), jpeg_with_size(65_000, 65_000), gif_with_size(65_535, 65_535)):
        tracemalloc.start()
        with pytest.raises(PayloadTooLarge):
            decode_image(bomb, max_pixels=MAX_PIXELS)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < 1_000_000, f"decoding a bomb header peaked at {peak} bytes"


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP", "PNG"])
@pytest.mark.parametrize("seed", range(6))
async def test_bit_flipped_files_get_a_400_or_a_correct_200(worker: EmulatedService, fmt: str, seed: int) -> None:
    response = await ask(worker, ALL_IMAGE_ENTRIES, image=bit_flipped(FILES[fmt], seed))
    assert response.status_code in (200, 400), response.text
    body = response.json()
    if response.status_code == 400:
        assert "Cannot" in body["detail"]
    else:  # the damage hit pixels only: the image keeps its size and every task answers
        assert (body["imageWidth"], body["imageHeight"]) == (96, 64)
        assert set(body) == {"clip", "facial-recognition", "ocr", "imageWidth", "imageHeight"}
    await still_serving(worker)


def rgba(width: int, height: int) -> Image.Image:
    return Image.fromarray(np.dstack([photo(width, height), np.full((height, width), 128, np.uint8)]), "RGBA")


def odd_images() -> dict[str, tuple[bytes, tuple[int, int]]]:
    """Valid but unusual files, with the (width, height) the response must report."""
    palette = Image.fromarray(photo(40, 30)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    frames = [Image.fromarray(photo(50, 40, seed=s)) for s in range(3)]
    animated_gif, animated_webp = io.BytesIO(), io.BytesIO()
    frames[0].save(animated_gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    frames[0].save(animated_webp, "WEBP", save_all=True, append_images=frames[1:], duration=100)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW to display: Immich's server sends upright previews, so it is ignored
    sixteen = Image.fromarray((np.arange(60 * 80).reshape(60, 80) * 13).astype(np.uint16))
    return {
        "1x1-jpeg": (encode(photo(1, 1)), (1, 1)),
        "1x1-png": (encode(photo(1, 1), "PNG"), (1, 1)),
        "2x1-webp": (encode(photo(2, 1), "WEBP", lossless=True), (2, 1)),
        "cmyk-jpeg": (encode(Image.fromarray(photo(64, 48)).convert("CMYK")), (64, 48)),
        "16-bit-png": (encode(sixteen, "PNG"), (80, 60)),
        "palette-transparency-png": (encode(palette, "PNG"), (40, 30)),
        "rgba-webp": (encode(rgba(33, 17), "WEBP"), (33, 17)),
        "la-png": (encode(rgba(20, 10).convert("LA"), "PNG"), (20, 10)),
        "1-bit-bmp": (encode(Image.fromarray(photo(24, 16)).convert("1"), "BMP"), (24, 16)),
        "tiff": (encode(photo(30, 20), "TIFF"), (30, 20)),
        "animated-gif": (animated_gif.getvalue(), (50, 40)),
        "animated-webp": (animated_webp.getvalue(), (50, 40)),
        "exif-rotated-jpeg": (encode(photo(64, 32), exif=exif), (64, 32)),
        "progressive-jpeg": (encode(photo(100, 70), progressive=True), (100, 70)),
        "tall-100x1": (encode(photo(1, 100), "PNG"), (1, 100)),
        "wide-256x1": (encode(photo(256, 1), "PNG"), (256, 1)),
    }


ODD = odd_images()


@pytest.mark.parametrize("name", list(ODD))
async def test_unusual_valid_images_get_every_task_answered(worker: EmulatedService, name: str) -> None:
    image, (width, height) = ODD[name]
    response = await ask(worker, ALL_IMAGE_ENTRIES, image=image)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["imageWidth"], body["imageHeight"]) == (width, height)
    assert abs(float(np.linalg.norm(orjson.loads(body["clip"]))) - 1.0) < 1e-3
    faces = body["facial-recognition"]
    assert isinstance(faces, list) and all(len(f["embedding"]) > 0 for f in faces)
    ocr = body["ocr"]
    assert len(ocr["box"]) == 8 * len(ocr["text"]) == 8 * len(ocr["textScore"])


@pytest.mark.parametrize(("width", "height"), [(MAX_ASPECT_RATIO + 1, 1), (1, 4000), (20_000, 3)])
async def test_extreme_aspect_ratios(worker: EmulatedService, width: int, height: int) -> None:
    """Faces and OCR answer (nothing found); CLIP refuses strips too thin to crop, as a 400."""
    image = encode(np.full((height, width, 3), 200, np.uint8), "PNG")
    clip = await ask(worker, CLIP_IMAGE_ENTRIES, image=image)
    refused(clip, 400, f"more elongated than {MAX_ASPECT_RATIO}:1")
    faces = await ask(worker, FACES_ENTRIES, image=image)
    assert faces.status_code == 200, faces.text
    assert faces.json() == {"facial-recognition": [], "imageHeight": height, "imageWidth": width}
    ocr = await ask(worker, OCR_ENTRIES, image=image)
    assert ocr.status_code == 200, ocr.text
    assert ocr.json()["ocr"] == {"text": [], "box": [], "boxScore": [], "textScore": []}
    await still_serving(worker)


# --- hostile requests ---------------------------------------------------------------------------


def nested(depth: int) -> str:
    return '{"clip":' * depth + "{}" + "}" * depth


@pytest.mark.parametrize(
    ("entries", "status", "reason"),
    [
        pytest.param("not json", 422, "Invalid request format", id="not-json"),
        pytest.param("[]", 422, "Invalid request format", id="array"),
        pytest.param('{"clip":[]}', 422, "Invalid request format", id="task-not-object"),
        pytest.param('{"clip":{"visual":{}}}', 422, "Invalid request format", id="no-model-name"),
        pytest.param('{"clip":{"visual":{"modelName":7}}}', 422, "Invalid request format", id="model-name-number"),
        pytest.param(nested(900), 422, "Invalid request format", id="nested-900"),
        pytest.param(nested(2000), 413, "MAX_ENTRIES_BYTES", id="nested-2000"),
        pytest.param('{"x":' + '"' + "a" * 20_000 + '"}', 413, "MAX_ENTRIES_BYTES", id="huge"),
        pytest.param('{"clip":{"visual":{"modelName":"ViT-B-32__openai","options":[1]}}}', 422, "", id="options-list"),
        pytest.param('{"clip":{"visual":{"modelName":"ViT-B-32__openai","options":NaN}}}', 422, "", id="json-nan"),
        pytest.param(
            '{"ocr":{"detection":{"modelName":"PP-OCRv5_mobile","options":{"minScore":1e400}}}}',
            422,
            "Invalid request format",
            id="json-infinity",
        ),
        pytest.param('{"telepathy":{"visual":{"modelName":"x"}}}', 400, "Unknown task/type", id="unknown-task"),
        pytest.param('{"clip":{"auditory":{"modelName":"x"}}}', 400, "Unknown task/type", id="unknown-type"),
        pytest.param('{"clip":{"visual":{"modelName":"ViT-H-14__laion"}}}', 400, "ViT-H-14", id="unserved-model"),
    ],
)
async def test_hostile_entries_are_refused(worker: EmulatedService, entries: str, status: int, reason: str) -> None:
    refused(await ask(worker, entries, image=FILES["JPEG"]), status, reason)
    await still_serving(worker)


def ocr_entries(detection: dict, recognition: dict | None = None) -> str:
    return orjson.dumps(
        {
            "ocr": {
                "detection": {"modelName": "PP-OCRv5_mobile", "options": detection},
                "recognition": {"modelName": "PP-OCRv5_mobile", "options": recognition or {}},
            }
        }
    ).decode()


def faces_entries(options: object) -> str:
    return orjson.dumps(
        {
            "facial-recognition": {
                "detection": {"modelName": "buffalo_l", "options": options},
                "recognition": {"modelName": "buffalo_l"},
            }
        }
    ).decode()


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        pytest.param(ocr_entries({"maxResolution": -736}), "maxResolution must be an integer >= 1", id="negative"),
        pytest.param(ocr_entries({"maxResolution": 0}), "maxResolution must be an integer >= 1", id="zero"),
        pytest.param(ocr_entries({"maxResolution": 736.5}), "maxResolution must be an integer", id="fraction"),
        pytest.param(ocr_entries({"maxResolution": "736"}), "maxResolution must be an integer", id="string"),
        pytest.param(ocr_entries({"maxResolution": True}), "maxResolution must be an integer", id="boolean"),
        pytest.param(ocr_entries({"minScore": -0.1}), "minScore must be between 0 and 1", id="ocr-negative-score"),
        pytest.param(ocr_entries({}, {"minScore": "high"}), "minScore must be a number", id="rec-score-string"),
        pytest.param(ocr_entries({"scoreMode": "magic"}), "scoreMode must be one of", id="score-mode"),
        pytest.param(faces_entries({"minScore": 0}), "minScore must be in (0, 1]", id="faces-zero-score"),
        pytest.param(faces_entries({"minScore": 7}), "minScore must be in (0, 1]", id="faces-big-score"),
        pytest.param(faces_entries({"minScore": [0.5]}), "minScore must be a number", id="faces-list-score"),
        pytest.param(faces_entries({"minScore": None}), "minScore must be a number", id="faces-null-score"),
    ],
)
async def test_options_of_the_wrong_type_or_range_are_400(worker: EmulatedService, entries: str, reason: str) -> None:
    refused(await ask(worker, entries, image=FILES["JPEG"]), 400, reason)


def test_nan_and_infinity_cannot_reach_an_option() -> None:
    """JSON has no NaN and orjson refuses numbers that overflow to infinity, so an option is finite."""
    for literal in ("NaN", "Infinity", "1e400", "-1e400"):
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads('{"v": ' + literal + "}")


@pytest.mark.parametrize("value", ["1" + "0" * 30, "18446744073709551615", "1e308", "16384", "1"])
async def test_huge_or_tiny_max_resolution_is_served(worker: EmulatedService, value: str) -> None:
    """Immich's setting is a positive integer with no upper bound; past the input size it changes nothing."""
    entries = ocr_entries({"maxResolution": 736}).replace("736", value)
    response = await ask(worker, entries, image=encode(photo(200, 120), "PNG"))
    assert response.status_code == 200, response.text
    assert (response.json()["imageWidth"], response.json()["imageHeight"]) == (200, 120)


def clip_embedding(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array(orjson.loads(response.json()["clip"]))


async def test_long_text_is_truncated_as_immich_does(worker: EmulatedService) -> None:
    """Immich's service answers any text up to the form's 1 MiB field limit: its tokenizer keeps the
    first context-length tokens. So does this one: texts that differ only after those tokens embed
    the same; a text over the field limit is refused with 413."""
    head = "a dog on the beach at sunset " * 40  # far more than 77 tokens
    first = clip_embedding(await ask(worker, CLIP_TEXT_ENTRIES, text=head + "and a red kite"))
    other_tail = clip_embedding(await ask(worker, CLIP_TEXT_ENTRIES, text=head + "é" * 2500))
    np.testing.assert_array_equal(first, other_tail)
    other_head = clip_embedding(await ask(worker, CLIP_TEXT_ENTRIES, text="snow covered mountains " + head))
    assert float(first @ other_head) < 0.999  # the embedding does depend on the kept tokens
    whole_field = clip_embedding(await ask(worker, CLIP_TEXT_ENTRIES, text=head + "x" * (1024 * 1024 - len(head))))
    np.testing.assert_array_equal(first, whole_field)
    refused(await ask(worker, CLIP_TEXT_ENTRIES, text="x" * (1024 * 1024 + 1)), 413, "form field is larger")
    await still_serving(worker)


async def test_odd_text(worker: EmulatedService) -> None:
    embeddings = []
    for text in ("x" * 2000, "\0\0\0", "\u202e\u0301" * 300, "🐕" * 500, " \t\r\n "):
        response = await ask(worker, CLIP_TEXT_ENTRIES, text=text)
        assert response.status_code == 200, (text[:10], response.text)
        embeddings.append(np.array(orjson.loads(response.json()["clip"])))
    assert all(abs(np.linalg.norm(e) - 1.0) < 1e-3 for e in embeddings)
    await still_serving(worker)


async def post_raw(worker: EmulatedService, body: bytes, headers: dict[str, str]) -> httpx.Response:
    async with worker.client() as client:
        return await client.post("/predict", content=body, headers=headers)


async def test_malformed_multipart_bodies_are_4xx(worker: EmulatedService) -> None:
    body, headers = immich_form(CLIP_IMAGE_ENTRIES, image=FILES["JPEG"])
    boundary = headers["content-type"].split("boundary=")[1]
    cases = {
        "no boundary": (body, {"content-type": "multipart/form-data"}),
        "other boundary": (body, {"content-type": "multipart/form-data; boundary=nothere"}),
        "cut in a part": (body[: len(body) // 2], headers),
        "no final boundary": (body[: body.rindex(f"--{boundary}--".encode())], headers),
        "garbage": (b"\xff\xfe" * 1000, headers),
        "header without colon": (f"--{boundary}\r\nnonsense\r\n\r\nx\r\n--{boundary}--\r\n".encode(), headers),
        "json body": (b'{"entries": "{}"}', {"content-type": "application/json"}),
        "no content type": (body, {}),
    }
    for name, (content, case_headers) in cases.items():
        response = await post_raw(worker, content, case_headers)
        assert 400 <= response.status_code < 500, (name, response.status_code, response.text)
        assert response.json()["detail"], name
    await still_serving(worker)


async def test_missing_and_duplicated_parts(worker: EmulatedService) -> None:
    image = FILES["PNG"]
    missing_entries = await post_raw(worker, *undici_form([("image", image)]))
    assert missing_entries.status_code == 422
    assert missing_entries.json()["detail"][0]["loc"] == ["body", "entries"]
    refused(await post_raw(worker, *undici_form([("entries", CLIP_IMAGE_ENTRIES)])), 400, "Either image or text")
    # Duplicated parts: the last one counts (Starlette's and FastAPI's rule), whatever it says.
    twice = await post_raw(
        worker, *undici_form([("entries", "not json"), ("entries", CLIP_TEXT_ENTRIES), ("text", "a"), ("text", "dog")])
    )
    assert twice.status_code == 200, twice.text
    single = await ask(worker, CLIP_TEXT_ENTRIES, text="dog")
    assert twice.json() == single.json()
    two_images = await post_raw(
        worker, *undici_form([("entries", CLIP_IMAGE_ENTRIES), ("image", b"garbage"), ("image", image)])
    )
    assert two_images.status_code == 200 and two_images.json()["imageWidth"] == 96
    many = await post_raw(worker, *undici_form([("entries", "{}")] + [(f"f{i}", "x") for i in range(50)]))
    refused(many, 400, "Malformed form data")
    many_files = await post_raw(worker, *undici_form([("entries", "{}")] + [("image", image)] * 10))
    refused(many_files, 400, "Malformed form data")
    await still_serving(worker)


# --- property-based: decoder and pre-processing -------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@FAST
@given(data=st.binary(max_size=2048))
def test_decoder_on_arbitrary_bytes_returns_rgb_or_refuses(data: bytes) -> None:
    try:
        pixels = decode_image(data, max_pixels=1_000_000)
    except (BadRequest, PayloadTooLarge) as exc:
        assert str(exc)
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3


@FAST
@given(
    fmt=st.sampled_from(["JPEG", "WEBP", "PNG", "GIF", "BMP", "TIFF"]),
    damage=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.none() | st.integers(0, 10**6),
)
def test_decoder_on_damaged_files_returns_the_declared_size_or_refuses(fmt: str, damage: list, cut: int | None) -> None:
    data = bytearray(encode(photo(40, 30, seed=1), fmt))
    for position, value in damage:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    try:
        pixels = decode_image(bytes(data), max_pixels=1_000_000)
    except (BadRequest, PayloadTooLarge):
        return
    assert pixels.dtype == np.uint8 and pixels.shape[2] == 3
    assert pixels.shape[0] * pixels.shape[1] <= 1_000_000


SIDES = st.integers(1, 700)


@FAST
@given(width=SIDES, height=SIDES)
def test_clip_crop_of_any_size_is_the_model_input(width: int, height: int) -> None:
    image = np.full((height, width, 3), 77, np.uint8)
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        with pytest.raises(BadRequest):
            clip_crop(image, 224)
        return
    crop = clip_crop(image, 224)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.uint8
    assert np.all(crop == 77)  # a flat image stays flat: no padding or out-of-image pixels


@FAST
@given(width=SIDES, height=SIDES)
def test_letterbox_of_any_size_fits_the_detector(width: int, height: int) -> None:
    image = np.full((height, width, 3), 200, np.uint8)
    boxed = letterbox(image, 640, 640)
    new_h, new_w = letterbox_size(height, width, 640, 640)
    assert boxed.image.shape == (640, 640, 3)
    assert 1 <= new_h <= 640 and 1 <= new_w <= 640 and (new_h == 640 or new_w == 640)
    assert boxed.scale == new_h / height
    covered = boxed.image[..., 0] == 200
    assert covered[:new_h, :new_w].all() and covered.sum() == new_h * new_w  # top-left, nothing else


@FAST
@given(width=st.integers(1, 3000), height=st.integers(1, 3000), max_resolution=st.integers(1, 10**9))
def test_ocr_fit_of_any_size_fits_the_detector(width: int, height: int, max_resolution: int) -> None:
    input_hw = (544, 960)
    fits = plan_fit(height, width, input_hw, max_resolution)
    assert 1 <= len(fits)
    assert fits[0].top == 0 and fits[-1].bottom == height
    for fit in fits:
        assert 1 <= fit.resized[0] <= input_hw[0] and 1 <= fit.resized[1] <= input_hw[1]
        assert 0 <= fit.top < fit.bottom <= height
    if width * height <= 500_000:
        frame = render_input(np.zeros((height, width, 3), np.uint8), fits[0], input_hw, immich_levels((0, 0, 0), (127.5,) * 3))
        assert frame.shape == (*input_hw, 3)


# --- the OpenAPI schema, fuzzed against the real handlers ---------------------------------------


def test_openapi_fuzz_on_the_emulated_worker(worker: EmulatedService) -> None:
    """Schemathesis against the real worker: no request generated from the schema gets a 5xx."""
    import schemathesis
    from schemathesis.checks import not_a_server_error

    schema = schemathesis.openapi.from_asgi("/openapi.json", worker.app)

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=schema["/predict"]["POST"].as_strategy())
    def fuzz(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=[not_a_server_error])

    fuzz()
