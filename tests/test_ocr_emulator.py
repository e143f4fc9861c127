"""OCR through the real runtime on the emulated Hailo device (PP-OCRv5 ONNX behind emulated HEFs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ml_target.config import Settings
from ml_target.errors import ConfigurationError
from ml_target.hailo import emulator
from ml_target.hailo.emulator.models_dir import write_emulated_models
from ml_target.hailo.runtime import Runtime
from ml_target.networks import NETWORKS
from ml_target.tasks.ocr import OcrDetection, OcrRecognition, create_ocr_handlers
from ml_target.text.ocr_dictionary import load_dictionary
from ml_target.testing.ocr_networks import ocrspine_file
from ml_target.testing.ocr_pages import PHRASES, page_accuracy, read_phrases, render_page, text_page
from ml_target.text.ocr_dictionary import DICTIONARY_FILE

FLOAT_COPY = "paddle_ocr_v5_mobile_recognition_float32.hef"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    write_emulated_models(tmp_path)
    shutil.copy(ocrspine_file("ppocr_keys_v5.txt"), tmp_path / DICTIONARY_FILE)
    # The recogniser again under another name, so the runtime can load it a second time as float32.
    shutil.copy(tmp_path / "paddle_ocr_v5_mobile_recognition.hef", tmp_path / FLOAT_COPY)
    return tmp_path


@pytest.fixture
def runtime(models: Path):
    device = emulator.device()
    device.reset()
    runtime = Runtime(Settings(hailo_device="emulator", hailo_emulator_profile="none", models_dir=models))
    yield runtime
    runtime.close()
    device.reset()


async def test_portrait_page_through_the_emulated_device(runtime, models: Path) -> None:
    detection, recognition = create_ocr_handlers(Settings(models_dir=models), runtime)
    image, phrases = text_page(1440, 1920, 24)
    boxes = await detection.run(image, detection.parse_options({"minScore": 0.5, "maxResolution": 736}))
    lines = await recognition.run(image, recognition.parse_options({"minScore": 0.8}), boxes)
    got = read_phrases(phrases, lines)
    assert sum(p.text == g for p, g in zip(phrases, got)) >= 0.95 * len(phrases)
    assert page_accuracy(phrases, lines) >= 0.99
    counters = emulator.device().counters()["networks"]
    # The whole-image frame finds small text, so both bands run too, together in one burst.
    assert counters["paddle_ocr_v5_mobile_detection"]["frames"] == 3
    assert counters["paddle_ocr_v5_mobile_detection"]["bursts"] == 2
    rec = counters["paddle_ocr_v5_mobile_recognition"]
    assert rec["frames"] >= len(lines.text) and max(rec["burst_sizes"]) == 8  # crops batched


async def test_photo_without_text_costs_one_detector_frame_and_big_text_no_bands(runtime, models: Path) -> None:
    """Screening: a 4:3 photo without text is answered from the whole-image frame alone (bands
    would have been two frames), and so is a photo whose only text is large (a sign)."""
    detection, recognition = create_ocr_handlers(Settings(models_dir=models), runtime)
    options = detection.parse_options({"minScore": 0.5, "maxResolution": 736})
    device = emulator.device()
    blank = np.full((1440, 1920, 3), 128, np.uint8)
    blank[:, ::97] = 30  # a few thin vertical lines: texture, not text
    assert len((await detection.run(blank, options)).quads) == 0
    assert device.counters()["networks"]["paddle_ocr_v5_mobile_detection"]["frames"] == 1
    sign, phrases = render_page(1920, 1440, [(PHRASES[0], 300, 300, 90), (PHRASES[4], 300, 700, 70)])
    device.reset()
    boxes = await detection.run(sign, options)
    assert device.counters()["networks"]["paddle_ocr_v5_mobile_detection"]["frames"] == 1
    lines = await recognition.run(sign, recognition.parse_options({"minScore": 0.8}), boxes)
    assert read_phrases(phrases, lines) == [p.text for p in phrases]


@pytest.mark.parametrize("caption_top", [1300, 700])
async def test_bands_run_only_over_rows_with_small_text(runtime, models: Path, caption_top: int) -> None:
    """A 4:3 photo with one small caption, near the bottom (only the lower band holds it) or in the
    middle (both bands hold it): the whole frame plus one band, and the caption read exactly;
    without screening both bands run."""
    detection, recognition = create_ocr_handlers(Settings(models_dir=models), runtime)
    options = detection.parse_options({"minScore": 0.5, "maxResolution": 736})
    image, phrases = render_page(1920, 1440, [(PHRASES[1], 100, caption_top, 20)])
    device = emulator.device()
    boxes = await detection.run(image, options)
    assert device.counters()["networks"]["paddle_ocr_v5_mobile_detection"]["frames"] == 2
    lines = await recognition.run(image, recognition.parse_options({"minScore": 0.8}), boxes)
    assert read_phrases(phrases, lines) == [PHRASES[1]]
    device.reset()
    unscreened = OcrDetection(detection.network, screen=False)
    await unscreened.run(image, options)
    assert device.counters()["networks"]["paddle_ocr_v5_mobile_detection"]["frames"] == 2
    assert device.counters()["networks"]["paddle_ocr_v5_mobile_detection"]["bursts"] == 1


async def test_raw_recogniser_outputs_read_exactly_what_dequantised_ones_read(runtime, models: Path) -> None:
    """The recogniser hands back uint8 (argmax on the integers, only kept steps dequantised): same
    texts and the same scores, to the last bit, as with libhailort dequantising every element."""
    detection, raw_reader = create_ocr_handlers(Settings(models_dir=models), runtime)
    spec = NETWORKS["paddle_ocr_v5_mobile_recognition"]
    assert spec.raw_outputs and raw_reader.network.outputs[0].dtype == "uint8"
    float_network = runtime.load(
        models / FLOAT_COPY, batch_size=spec.batch_size, priority=spec.priority
    )
    assert float_network.outputs[0].dtype == "float32"
    float_reader = OcrRecognition(float_network, load_dictionary(models / DICTIONARY_FILE))
    image, phrases = text_page(1440, 1920, 24)
    boxes = await detection.run(image, detection.parse_options({"minScore": 0.5, "maxResolution": 736}))
    options = raw_reader.parse_options({"minScore": 0.8})
    raw, dequantised = await raw_reader.run(image, options, boxes), await float_reader.run(image, options, boxes)
    assert len(raw.text) >= 0.95 * len(phrases)
    assert raw.text == dequantised.text
    assert raw.text_scores.tobytes() == dequantised.text_scores.tobytes()


async def test_a_dictionary_one_short_stops_start_up(runtime, models: Path) -> None:
    keys = (models / DICTIONARY_FILE).read_text(encoding="utf-8").split("\n")  # blank, 18383, space
    characters = keys[1:-2]
    (models / DICTIONARY_FILE).write_text("\n".join(characters[:-1]), encoding="utf-8")  # one short
    with pytest.raises(ConfigurationError, match="18384 CTC classes"):
        create_ocr_handlers(Settings(models_dir=models), runtime)
    (models / DICTIONARY_FILE).write_text("\n".join(keys[1:]), encoding="utf-8")  # "blank" line lost
    with pytest.raises(ConfigurationError, match="18386 CTC classes"):
        create_ocr_handlers(Settings(models_dir=models), runtime)
