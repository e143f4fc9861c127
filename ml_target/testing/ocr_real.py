"""OCR on real scanned and photographed text against Immich's own pipeline.

`python -m ml_target.testing.ocr_real` reads each image with this worker's OCR task (the real
PP-OCRv5 mobile weights at the HEFs' fixed sizes, `ocr_networks`) and with
`verify.reference_ocr.ImmichOcr` (Immich's pipeline on the same weights, written independently),
both with Immich's server options, and reports per image:
- exact-line agreement: lines both read identically (paired by text, then box) over the lines
  either side read, as `verify` scores it;
- search-token agreement: Immich's lines that some worker line (each used once) gives Immich's
  search index exactly the same words for, over the same denominator (its server's `tokenizeForSearch` splits a line at whitespace, so a leading space or
  a space the other side lost is invisible to search but not to the exact measure);
- character accuracy of each side against a hand transcription, where the image has one: lines
  sorted top to bottom and joined by spaces, 1 - edit distance / transcription length;
- Immich against itself: Immich's lines it reads identically when each is recognised alone, over
  its lines. Immich pads each batch of six crops to the batch's widest, and the recogniser's
  reading of a line depends on that width, so the same box reads differently beside other lines:
  a ceiling for how well any recogniser with one fixed input width can agree with it line by line.

Images, all from installed packages: scikit-image's `page` (a real scan of a printed page,
191 x 384, "no known copyright restrictions") and `text` (a photograph of handwriting on paper,
public domain, from Wikimedia Commons), each as shipped and as a 2x bicubic enlargement (a closer
photo of the same page); and OpenCV's sample images from Debian's `opencv-doc` package, fetched
by `scripts/fetch-real-text.sh` into `.cache/real-text/` (`OCR_REAL_TEXT_DIR` elsewhere): a
printed book page with lines of 90 characters (`imageTextN`, 556 x 323), the same page slightly
rotated (`imageTextR`) and a photographed cookie box (`box`). Where they are absent they are left
out, and `missing_real_text` says so.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ml_target.tasks.ocr import OcrDetection, OcrRecognition
from ml_target.testing.ocr_networks import ocr_networks, ocrspine_file
from ml_target.testing.ocr_pages import char_accuracy
from ml_target.text.ocr_dictionary import load_dictionary
from ml_target.verify.cache import OcrFiles, _table
from ml_target.verify.metrics import match_lines
from ml_target.verify.reference_ocr import ImmichOcr

IMMICH_DETECTION = {"minScore": 0.5, "maxResolution": 736}
IMMICH_RECOGNITION_SCORE = 0.8
# scikit-image's `page`, transcribed by hand (the last line is cut by the scan's lower edge).
PAGE_TEXT = (
    "Region-based segmentation",
    "Let us first determine markers of the coins and the",
    "background. These markers are pixels that we can label",
    "unambiguously as either object or background. Here,",
    "the markers are found at the two extreme parts of the",
    "histogram of grey values:",
    ">>> markers = np.zeros_like(coins)",
)
# OpenCV's `imageTextN` (and, rotated, `imageTextR`), a page of Szeliski's "Computer Vision:
# Algorithms and Applications" preface, transcribed by hand.
BOOK_TEXT = (
    "technical details are too complex to cover in the book itself.",
    "In teaching our courses, we have found it useful for the students to attempt a number of",
    "small implementation projects, which often build on one another, in order to get them used to",
    "working with real-world images and the challenges that these present. The students are then",
    "asked to choose an individual topic for each of their small-group, final projects. (Sometimes",
    "these projects even turn into conference papers!) The exercises at the end of each chapter",
    "contain numerous suggestions for smaller mid-term projects, as well as more open-ended",
    "problems whose solutions are still active research topics. Wherever possible, I encourage",
    "students to try their algorithms on their own personal photographs, since this better motivates",
    "them, often leads to creative variants on the problems, and better acquaints them with the",
    "variety and complexity of real-world imagery.",
    "In formulating and solving computer vision problems, I have often found it useful to draw",
    "inspiration from three high-level approaches:",
)
OPENCV_IMAGES = (("imageTextN.png", BOOK_TEXT), ("imageTextR.png", BOOK_TEXT), ("box.png", None))
REAL_TEXT_DIR = Path(os.environ.get("OCR_REAL_TEXT_DIR", Path(__file__).resolve().parents[2] / ".cache" / "real-text"))


@dataclass(frozen=True)
class RealImage:
    name: str
    rgb: np.ndarray
    transcription: tuple[str, ...] | None


@dataclass(frozen=True)
class Comparison:
    """One image read by both pipelines."""

    name: str
    immich_lines: list[str]
    worker_lines: list[str]
    exact: int
    same_tokens: int
    lines: int  # lines either side read (the larger count), the agreement's denominator
    immich_accuracy: float | None
    worker_accuracy: float | None
    immich_alone: int  # Immich's lines read the same alone as in its batch (of len(immich_lines))


def real_images() -> list[RealImage]:
    """The real scans and photographs of text that installed packages ship (module docstring)."""
    from skimage import data

    images = []
    for name, pixels, text in (("page", data.page(), PAGE_TEXT), ("text", data.text(), None)):
        rgb = np.ascontiguousarray(np.repeat(pixels[:, :, None], 3, axis=2))
        images.append(RealImage(f"scikit-image {name}", rgb, text))
        larger = cv2.resize(rgb, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
        images.append(RealImage(f"scikit-image {name}, 2x", larger, text))
    for file, text in OPENCV_IMAGES:
        bgr = cv2.imread(str(REAL_TEXT_DIR / file), cv2.IMREAD_COLOR)
        if bgr is not None:
            images.append(RealImage(f"OpenCV {file.rsplit('.', 1)[0]}", np.ascontiguousarray(bgr[:, :, ::-1]), text))
    return images


def missing_real_text() -> list[str]:
    """OpenCV's images that are not in REAL_TEXT_DIR (scripts/fetch-real-text.sh fetches them)."""
    return [file for file, _ in OPENCV_IMAGES if not (REAL_TEXT_DIR / file).is_file()]


def search_tokens(text: str) -> list[str]:
    """The words Immich's server indexes for a line: runs of characters above U+0020, as its
    `tokenizeForSearch` cuts them (CJK runs, which it splits into pairs, do not occur here)."""
    return "".join(c if ord(c) > 32 else " " for c in text).split()


def _reading(quads: list[np.ndarray], texts: list[str]) -> str:
    """Texts joined top to bottom (by box centre), then left to right."""
    order = sorted(range(len(texts)), key=lambda i: (round(float(quads[i][:, 1].mean()) / 8), float(quads[i][:, 0].min())))
    return " ".join(texts[i] for i in order)


async def compare(images: list[RealImage] | None = None) -> list[Comparison]:
    """Each image through both pipelines (module docstring)."""
    keys = ocrspine_file("ppocr_keys_v5.txt")
    immich = ImmichOcr(
        OcrFiles("PP-OCRv5_mobile", ocrspine_file("ppocrv5_det.onnx"), ocrspine_file("ppocrv5_rec.onnx"), _table(keys.read_text(encoding="utf-8")))
    )
    det_net, rec_net = ocr_networks()
    detector, recogniser = OcrDetection(det_net), OcrRecognition(rec_net, load_dictionary(keys))
    results = []
    for image in images or real_images():
        height, width = image.rgb.shape[:2]
        reference = immich.read(
            image.rgb,
            det_score=IMMICH_DETECTION["minScore"],
            max_resolution=IMMICH_DETECTION["maxResolution"],
            rec_score=IMMICH_RECOGNITION_SCORE,
        )
        boxes = await detector.run(image.rgb, detector.parse_options(IMMICH_DETECTION))
        ours = await recogniser.run(image.rgb, recogniser.parse_options({"minScore": IMMICH_RECOGNITION_SCORE}), boxes)
        ref_quads = [line.quad * np.array([width, height], np.float32) for line in reference]
        ref_texts = [line.text for line in reference]
        our_quads = list(ours.detections.quads)
        agreement = match_lines(ref_quads, ref_texts, our_quads, ours.text)
        truth = " ".join(image.transcription) if image.transcription else None
        results.append(
            Comparison(
                image.name,
                ref_texts,
                list(ours.text),
                agreement.exact,
                _same_tokens(ref_texts, list(ours.text)),
                max(agreement.reference_lines, agreement.worker_lines),
                None if truth is None else char_accuracy(truth, _reading(ref_quads, ref_texts)),
                None if truth is None else char_accuracy(truth, _reading(our_quads, list(ours.text))),
                _read_alone(immich, image.rgb, ref_quads, ref_texts),
            )
        )
    return results


def _read_alone(immich: ImmichOcr, rgb: np.ndarray, quads: list[np.ndarray], texts: list[str]) -> int:
    """Immich's lines that its recogniser reads the same when given each box alone."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    return sum(immich.recognise(bgr, [quad])[0][0] == text for quad, text in zip(quads, texts))


def _same_tokens(immich: list[str], worker: list[str]) -> int:
    """Immich's lines whose search tokens some worker line gives exactly (each worker line once)."""
    left = [search_tokens(text) for text in worker]
    same = 0
    for text in immich:
        tokens = search_tokens(text)
        if tokens in left:
            left.remove(tokens)
            same += 1
    return same


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _share(part: int, whole: int) -> str:
    return f"{part}/{whole} = {part / whole:.3f}" if whole else "- (no line on either side)"


def main() -> None:
    results = asyncio.run(compare())
    if missing := missing_real_text():
        print(f"left out (run scripts/fetch-real-text.sh): {', '.join(missing)}\n")
    print(
        "| image | lines Immich / worker | exact-line agreement | search-token agreement "
        "| char accuracy Immich | char accuracy worker | Immich alone vs in its batch |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r.name} | {len(r.immich_lines)} / {len(r.worker_lines)} | {_share(r.exact, r.lines)} | {_share(r.same_tokens, r.lines)} "
            f"| {_f(r.immich_accuracy)} | {_f(r.worker_accuracy)} | {_share(r.immich_alone, len(r.immich_lines))} |"
        )
    lines = sum(r.lines for r in results)
    exact, same = sum(r.exact for r in results), sum(r.same_tokens for r in results)
    alone, immich = sum(r.immich_alone for r in results), sum(len(r.immich_lines) for r in results)
    print(
        f"\nall images: {_share(exact, lines)} exact-line agreement, {_share(same, lines)} search-token agreement, "
        f"Immich alone vs in its batch {_share(alone, immich)}"
    )
    for r in results:
        print(f"\n{r.name}\n  Immich: {r.immich_lines}\n  worker: {r.worker_lines}")


if __name__ == "__main__":
    main()
