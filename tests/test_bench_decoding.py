"""Reduced-scale JPEG decoding for CLIP requests, and the benchmark's photographs and pixel measurement."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from ml_target.benchmarks import photos
from ml_target.benchmarks.decoding import (
    difference,
    exact_crop,
    reduced_crop,
    reduced_decode_effect,
)
from ml_target.catalog import BACKENDS
from ml_target.errors import PayloadTooLarge
from ml_target.hailo.types import EdgeInfo, QuantInfo
from ml_target.pipeline import Pipeline
from ml_target.protocol import Entry
from ml_target.results import Embedding
from ml_target.tasks.clip import ClipVisualHandler
from ml_target.vision.clip_transform import clip_crop
from ml_target.vision.decode import (
    ImageDecoder,
    ReducedImage,
    decode_image,
    decode_reduced,
)
from ml_target.vision.letterbox import letterbox

QUANT = QuantInfo(scale=1.0, zp=0.0, min=0.0, max=255.0)


def jpeg(pixels: np.ndarray, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def smooth(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], axis=2).astype(np.uint8)


def test_reduced_decode_keeps_the_full_size_and_covers_the_request():
    data = jpeg(smooth(1440, 2160))
    reduced = decode_reduced(data, max_pixels=10**8, min_size=(224, 224))
    assert reduced.full_size == (1440, 2160)
    assert reduced.pixels.shape == (360, 540, 3) and not reduced.pixels.flags.writeable
    assert decode_reduced(data, max_pixels=10**8, min_size=(400, 400)).pixels.shape == (720, 1080, 3)


def test_reduced_decode_of_a_png_is_the_exact_image():
    buffer = io.BytesIO()
    Image.fromarray(smooth(300, 500)).save(buffer, "PNG")
    reduced = decode_reduced(buffer.getvalue(), max_pixels=10**8, min_size=(50, 50))
    assert reduced.full_size == (300, 500)
    assert np.array_equal(reduced.pixels, smooth(300, 500))


def test_reduced_decode_applies_the_pixel_budget_to_the_full_size():
    with pytest.raises(PayloadTooLarge, match="1440x1440"):
        decode_reduced(jpeg(smooth(1440, 1440)), max_pixels=1440 * 1440 - 1, min_size=(224, 224))


def test_reduced_crop_keeps_immichs_framing():
    # A dark bar one eighth of the width, off centre: its columns in the 224 px crop must not move.
    pixels = np.full((1440, 2165, 3), 200, np.uint8)
    pixels[:, 1200:1470] = 20
    data = jpeg(pixels, quality=95)
    exact, reduced = exact_crop(data, 224), reduced_crop(data, 224)
    dark_exact = np.flatnonzero(exact[112, :, 0] < 110)
    dark_reduced = np.flatnonzero(reduced[112, :, 0] < 110)
    assert abs(dark_exact[0] - dark_reduced[0]) <= 1 and abs(dark_exact[-1] - dark_reduced[-1]) <= 1
    assert difference(reduced, exact)["mean_abs_diff"] < 1.0


def test_difference_of_known_images():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 12
    result = difference(a, b)
    assert result["max_abs_diff"] == 12 and result["mean_abs_diff"] == 1.0
    assert result["psnr_db"] == pytest.approx(10 * np.log10(255**2 / 12.0))
    assert difference(a, a)["psnr_db"] == float("inf")


class Recorder:
    """An image handler that records the payload it was given."""

    task, modality, depends_on = "clip", "image", None

    def __init__(self, type_: str, decode_size: tuple[int, int] | None) -> None:
        self.type = type_
        if decode_size is not None:
            self.decode_size = decode_size
        self.payloads: list[object] = []

    def check_model(self, model_name: str) -> None:
        pass

    def parse_options(self, options: object) -> None:
        return None

    async def run(self, payload, options, upstream):
        self.payloads.append(payload)
        return Embedding(np.ones(2, np.float32) / np.sqrt(2))

    def describe(self) -> dict:
        return {}


async def test_pipeline_decodes_at_reduced_scale_only_when_every_entry_allows_it():
    data = jpeg(smooth(1440, 2160))
    decoder = ImageDecoder(max_pixels=10**8, threads=1)
    reducing, exact = Recorder("visual", (224, 224)), Recorder("textual", None)
    exact.modality = "image"
    pipeline = Pipeline([reducing, exact], decoder.decode, decoder.decode_reduced)
    only_reducing = await pipeline.predict([Entry("clip", "visual", "m", {})], data, None)
    assert only_reducing.image_size == (1440, 2160)
    assert isinstance(reducing.payloads[0], ReducedImage) and reducing.payloads[0].pixels.shape == (360, 540, 3)
    both = await pipeline.predict([Entry("clip", "visual", "m", {}), Entry("clip", "textual", "m", {})], data, None)
    assert both.image_size == (1440, 2160)
    assert reducing.payloads[1].shape == (1440, 2160, 3) and exact.payloads[0] is reducing.payloads[1]
    without = Pipeline([reducing], decoder.decode)
    await without.predict([Entry("clip", "visual", "m", {})], data, None)
    assert isinstance(reducing.payloads[2], np.ndarray) and reducing.payloads[2].shape == (1440, 2160, 3)
    decoder.close()


class CapturingNetwork:
    name = "clip_vit_b_32_image_encoder"
    inputs = (EdgeInfo("in", (224, 224, 3), np.dtype(np.uint8), QUANT),)
    outputs = (EdgeInfo("out", (1, 1, 512), np.dtype(np.float32), QUANT),)

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    async def infer(self, frame, timeout=None):
        self.frames.append(frame)
        return {"out": np.ones((1, 1, 512), np.float32)}


async def test_clip_visual_crops_a_reduced_image_with_the_full_size_geometry():
    network = CapturingNetwork()
    handler = ClipVisualHandler(BACKENDS["clip_vit_b_32"], network)
    assert handler.decode_size == (224, 224)
    reduced = decode_reduced(jpeg(smooth(1440, 2165)), max_pixels=10**8, min_size=handler.decode_size)
    await handler.run(reduced, None, None)
    assert np.array_equal(network.frames[0], clip_crop(reduced.pixels, 224, (1440, 2165)))
    full = decode_image(jpeg(smooth(1440, 2165)), max_pixels=10**8)
    await handler.run(full, None, None)
    assert np.array_equal(network.frames[1], clip_crop(full, 224))


def test_previews_are_jpegs_with_a_1440_px_shorter_side():
    for data in photos.preview_jpegs()[:2] + photos.text_jpegs():
        with Image.open(io.BytesIO(data)) as image:
            assert image.format == "JPEG" and min(image.size) == 1440


def test_group_photos_show_three_faces_to_the_stand_in_detector():
    from ml_target.testing.faces_emulation import detect_faces

    for data in photos.group_jpegs():
        boxed = letterbox(decode_image(data, max_pixels=10**8), 640, 640)
        boxes, _ = detect_faces(boxed.image.astype(np.float32))
        assert len(boxes) == 3


def test_reduced_decode_effect_is_reported_per_photo():
    results = reduced_decode_effect(repeats=1)
    assert set(results) == set(photos.PHOTOS)
    for row in results.values():
        assert 0.0 < row["mean_abs_diff"] < 3.0 and row["psnr_db"] > 35.0 and row["jpeg_q80_psnr_db"] > 40.0
        assert row["exact_ms"] > 0 and row["draft_ms"] > 0


@pytest.mark.parametrize("fast", [True, False])
async def test_fast_jpeg_decode_setting_chooses_the_decode_path(fast):
    """FAST_JPEG_DECODE=false gives CLIP-only requests Immich's exact full-size pixels."""
    import dataclasses

    import httpx

    from ml_target.app import create_app
    from ml_target.config import Settings

    recorder = Recorder("visual", (224, 224))
    settings = dataclasses.replace(Settings.from_env({}), fast_jpeg_decode=fast)
    app = create_app(settings, [recorder], lambda: {"state": "healthy", "device": "emulator", "networks": {}})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ml") as client:
        response = await client.post(
            "/predict",
            data={"entries": '{"clip":{"visual":{"modelName":"m"}}}'},
            files={"image": ("blob", jpeg(smooth(1440, 2160)), "application/octet-stream")},
        )
    app.state.service.close()
    assert response.status_code == 200 and response.json()["imageWidth"] == 2160
    payload = recorder.payloads[0]
    if fast:
        assert isinstance(payload, ReducedImage) and payload.pixels.shape == (360, 540, 3)
    else:
        assert isinstance(payload, np.ndarray) and payload.shape == (1440, 2160, 3)
