"""Character accuracy of the OCR task on rendered pages: `python -m ml_target.testing.ocr_eval`.

Compares the design choices that the fixed Hailo input sizes force, on the real PP-OCRv5 mobile
weights at the HEFs' sizes (via `ocr_networks`):
- pages fitted plainly into 544x960 vs cut into overlapping bands (portrait pages), every band or
  only where the whole-image frame finds small text (the default);
- pages small enough for Immich's own detector input: its pixel levels (the default) vs the
  pixels as they are (`ocr_levels`);
- long lines squashed into one 320 px frame vs read in overlapping windows.
With `--device`, instead, the modelled Hailo-8 device time per page through the runtime on the
emulator (its "hailo8" timing profile).
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from ml_target.tasks.ocr import OcrDetection, OcrRecognition
from ml_target.testing.ocr_networks import OnnxOcrNetwork, ocr_networks, ocrspine_file
from ml_target.testing.ocr_pages import PHRASES, char_accuracy, page_accuracy, read_phrases, render_page, text_page
from ml_target.text.ocr_dictionary import load_dictionary
from ml_target.vision.ocr_levels import IMMICH_DETECTOR_MEAN, IMMICH_DETECTOR_STD

PAGE_SIZES = (12, 14, 18, 24, 32)
BANDED_PHOTOS = (("landscape 1920x1440", (1920, 1440)), ("portrait 1440x1920", (1440, 1920)))  # preview sizes cut into bands
LONG_LINES = (
    PHRASES[5],
    PHRASES[2],
    PHRASES[2] + " " + PHRASES[1],
    " ".join(PHRASES[1:4]),
    " ".join(PHRASES[:6]),
)


def _real_ocr() -> tuple[OnnxOcrNetwork, OnnxOcrNetwork, tuple[str, ...]]:
    """The real PP-OCRv5 mobile networks at the HEFs' sizes (detector, recogniser) and their dictionary."""
    det_net, rec_net = ocr_networks()
    return det_net, rec_net, load_dictionary(ocrspine_file("ppocr_keys_v5.txt"))


async def read(detector: OcrDetection, recogniser: OcrRecognition, image: np.ndarray, min_score: float = 0.8):
    detections = await detector.run(image, detector.parse_options({}))
    return await recogniser.run(image, recogniser.parse_options({"minScore": min_score}), detections)


async def page_table() -> list[tuple[str, int, float, float, float]]:
    """(orientation, font px, accuracy: one frame, every band, screened bands (default)) per page."""
    det_net, rec_net, dictionary = _real_ocr()
    detectors = (OcrDetection(det_net, max_tiles=1), OcrDetection(det_net, screen=False), OcrDetection(det_net))
    recogniser = OcrRecognition(rec_net, dictionary)
    rows = []
    for orientation, (w, h) in (*BANDED_PHOTOS, ("16:9 1920x1080", (1920, 1080))):
        for size in PAGE_SIZES:
            image, phrases = text_page(w, h, size)
            scores = [page_accuracy(phrases, await read(d, recogniser, image)) for d in detectors]
            rows.append((orientation, size, *scores))
    return rows


CAPTION_SIZES = (16, 20)
CAPTION_STEPS = 12


async def caption_table() -> list[tuple[str, int, int, float, float, int, int]]:
    """(photo, font px, caption top, accuracy every band, accuracy screened (default), detector
    frames every band, screened) for one small caption at rows stepping down the photo, across
    where the bands overlap and meet: what running one band of two costs the text."""
    det_net, rec_net, dictionary = _real_ocr()
    detectors = (OcrDetection(det_net, screen=False), OcrDetection(det_net))
    recogniser = OcrRecognition(rec_net, dictionary)
    rows = []
    for orientation, (w, h) in BANDED_PHOTOS:
        for size in CAPTION_SIZES:
            for step in range(CAPTION_STEPS):
                y = 40 + step * (h - 120) // (CAPTION_STEPS - 1)
                image, phrases = render_page(w, h, [(PHRASES[1], 100, y, size)])
                scores, frames = [], []
                for detector in detectors:
                    calls = det_net.calls
                    scores.append(page_accuracy(phrases, await read(detector, recogniser, image)))
                    frames.append(det_net.calls - calls)
                rows.append((orientation, size, y, *scores, *frames))
    return rows


SMALL_PAGES = (("landscape 640x480", (640, 480)), ("landscape 800x500", (800, 500)))
# Levels for a network that normalised as Immich does: each pixel level maps to itself.
PLAIN_LEVELS = ((IMMICH_DETECTOR_MEAN,) * 3, (IMMICH_DETECTOR_STD,) * 3)


async def small_page_table() -> list[tuple[str, int, float, float]]:
    """(page, font px, accuracy: pixels as they are, Immich's levels (default)) per small page."""
    det_net, rec_net, dictionary = _real_ocr()
    detectors = (OcrDetection(det_net, normalization=PLAIN_LEVELS), OcrDetection(det_net))
    recogniser = OcrRecognition(rec_net, dictionary)
    rows = []
    for name, (w, h) in SMALL_PAGES:
        for size in PAGE_SIZES:
            image, phrases = text_page(w, h, size)
            plain, immich = [page_accuracy(phrases, await read(d, recogniser, image)) for d in detectors]
            rows.append((name, size, plain, immich))
    return rows


async def long_line_table(size: int = 28) -> list[tuple[int, float, float, float]]:
    """(chars, aspect w/h of the line, accuracy squashed, accuracy windowed) per long line."""
    det_net, rec_net, dictionary = _real_ocr()
    detector = OcrDetection(det_net)
    squash = OcrRecognition(rec_net, dictionary, long_lines="squash")
    windows = OcrRecognition(rec_net, dictionary, long_lines="windows")
    rows = []
    for text in LONG_LINES:
        image, phrases = render_page(2600, 200, [(text, 20, 80, size)])
        x0, y0, x1, y1 = phrases[0].box
        detections = await detector.run(image, detector.parse_options({}))
        got = []
        for recogniser in (squash, windows):
            lines = await recogniser.run(image, recogniser.parse_options({"minScore": 0.0}), detections)
            got.append(char_accuracy(text, read_phrases(phrases, lines)[0]))
        rows.append((len(text), (x1 - x0) / (y1 - y0), got[0], got[1]))
    return rows


async def device_table() -> list[tuple[str, int, int, float, float, float]]:
    """(page, lines read, detector frames, detector ms, recogniser frames, recogniser ms) per page."""
    from ml_target.config import Settings
    from ml_target.hailo import emulator
    from ml_target.hailo.emulator.models_dir import write_emulated_models
    from ml_target.hailo.runtime import Runtime
    from ml_target.tasks.ocr import create_ocr_handlers
    from ml_target.text.ocr_dictionary import DICTIONARY_FILE

    models = Path(tempfile.mkdtemp())
    write_emulated_models(models)
    shutil.copy(ocrspine_file("ppocr_keys_v5.txt"), models / DICTIONARY_FILE)
    settings = Settings(hailo_device="emulator", hailo_emulator_profile="hailo8", models_dir=models)
    runtime = Runtime(settings)
    detector, recogniser = create_ocr_handlers(settings, runtime)
    device = emulator.device()
    pages = (
        ("landscape 1920x1440, 24 px", text_page(1920, 1440, 24)[0]),
        ("portrait 1440x1920, 24 px", text_page(1440, 1920, 24)[0]),
        ("16:9 1920x1080, 32 px", text_page(1920, 1080, 32)[0]),
        ("photo 1920x1440, 2 lines", render_page(1920, 1440, [(PHRASES[0], 300, 400, 60), (PHRASES[4], 300, 900, 40)])[0]),
    )
    rows = []
    try:
        for name, image in pages:
            device.reset()
            device.set_profile("hailo8")
            lines = await read(detector, recogniser, image)
            nets = device.counters()["networks"]
            det, rec = nets[detector.network.name], nets[recogniser.network.name]
            rows.append((name, len(lines.text), det["frames"], det["busy_ms"], rec["frames"], rec["busy_ms"]))
    finally:
        runtime.close()
        shutil.rmtree(models)
    return rows


def main() -> None:
    if "--captions" in sys.argv:
        print("| photo | font px | caption top | every band | screened (default) | frames every band | frames screened |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, size, y, a, b, fa, fb in asyncio.run(caption_table()):
            print(f"| {name} | {size} | {y} | {a:.3f} | {b:.3f} | {fa} | {fb} |")
        return
    if "--device" in sys.argv:
        print("| page | lines | det frames | det ms | rec frames | rec ms |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, count, det_frames, det_ms, rec_frames, rec_ms in asyncio.run(device_table()):
            print(f"| {name} | {count} | {det_frames} | {det_ms:.1f} | {rec_frames} | {rec_ms:.1f} |")
        return
    print("| page | font px | one frame | every band | screened bands (default) |")
    print("|---|---:|---:|---:|---:|")
    for orientation, size, a, b, c in asyncio.run(page_table()):
        print(f"| {orientation} | {size} | {a:.3f} | {b:.3f} | {c:.3f} |")
    print()
    print("| page (Immich's own input size) | font px | pixels as they are | Immich's levels (default) |")
    print("|---|---:|---:|---:|")
    for name, size, a, b in asyncio.run(small_page_table()):
        print(f"| {name} | {size} | {a:.3f} | {b:.3f} |")
    print()
    print("| long line chars | ink aspect w/h | squashed | windowed |")
    print("|---:|---:|---:|---:|")
    for chars, aspect, a, b in asyncio.run(long_line_table()):
        print(f"| {chars} | {aspect:.1f} | {a:.3f} | {b:.3f} |")


if __name__ == "__main__":
    main()
