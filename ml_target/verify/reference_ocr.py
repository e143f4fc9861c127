"""Immich's OCR pipeline (RapidOCR as configured by Immich v3.1) on onnxruntime, from §6.5.

Written from the documented algorithm, independent of the worker's `vision.dbnet` / `ocr_crops`,
so that both sides cannot share a mistake. Detection runs at Immich's own size (shorter side capped
at `maxResolution`, both sides rounded to multiples of 32, Lanczos) with Immich's normalisation
quirk `(x - 0.5) / 127.5` on BGR; recognition crops from the full-resolution image, batches of 6
sorted by aspect ratio, height 48, greedy CTC with blank first and space last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from ml_target.verify.cache import MissingModel, OcrFiles
from ml_target.verify.onnx_session import cpu_session

MIN_SIDE = 32
BINARY_THRESHOLD = 0.3
MAX_CANDIDATES = 1000
UNCLIP_RATIO = 1.6
MIN_BOX_SIDE = 3
REC_HEIGHT = 48
REC_MIN_WIDTH = 320
REC_BATCH = 6


@dataclass(frozen=True)
class OcrLine:
    """One recognised line: quad (4, 2) TL, TR, BR, BL normalised to 0..1, text, scores."""

    quad: np.ndarray
    text: str
    box_score: float
    text_score: float


def detector_size(height: int, width: int, max_resolution: int) -> tuple[int, int]:
    """(rh, rw): never upscale, shorter side to `max_resolution`, each rounded to a multiple of 32."""
    ratio = min(max_resolution / min(height, width), 1.0)
    rh, rw = int(height * ratio), int(width * ratio)
    return int(round(rh / 32) * 32), int(round(rw / 32) * 32)


def _mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """minAreaRect corners ordered TL, TR, BR, BL as DB's post-process orders them, and the short side."""
    rect = cv2.minAreaRect(points.astype(np.float32))
    corners = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = sorted(corners[:2], key=lambda p: p[1])
    right = sorted(corners[2:], key=lambda p: p[1])
    box = np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)
    return box, float(min(rect[1]))


def _fast_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside the quad (DB's "fast" box score)."""
    h, w = prob.shape
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    cv2.fillPoly(mask, [(box - [xmin, ymin]).astype(np.int32)], 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def _unclip(box: np.ndarray) -> np.ndarray:
    """Offset the rectangle outwards by area * 1.6 / perimeter (its rounded offset's bounding rectangle)."""
    area = cv2.contourArea(box)
    perimeter = cv2.arcLength(box.reshape(-1, 1, 2), True)
    if perimeter == 0:
        return box
    distance = area * UNCLIP_RATIO / perimeter
    (cx, cy), (w, h), angle = cv2.minAreaRect(box)
    return cv2.boxPoints(((cx, cy), (w + 2 * distance, h + 2 * distance), angle))


def _order(quad: np.ndarray) -> np.ndarray:
    """TL, TR, BR, BL: left pair and right pair by x, each ordered by y."""
    by_x = quad[np.argsort(quad[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def db_boxes(
    prob: np.ndarray, width: int, height: int, min_score: float
) -> list[tuple[np.ndarray, float]]:
    """DB post-process of a (rh, rw) probability map into quads in received-image pixels."""
    mask = cv2.dilate(
        (prob > BINARY_THRESHOLD).astype(np.uint8), np.ones((2, 2), np.uint8)
    )
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    scale = np.array([width / prob.shape[1], height / prob.shape[0]], np.float32)
    found = []
    for contour in contours[:MAX_CANDIDATES]:
        box, short = _mini_box(contour.reshape(-1, 2))
        if short < MIN_BOX_SIDE:
            continue
        score = _fast_score(prob, box)
        if score < min_score:
            continue
        box, short = _mini_box(_unclip(box))
        if short < MIN_BOX_SIDE + 2:
            continue
        box = np.round(box * scale)
        box[:, 0] = np.clip(box[:, 0], 0, width)
        box[:, 1] = np.clip(box[:, 1], 0, height)
        box = _order(box)
        box[:, 0] = np.clip(box[:, 0], 0, width - 1)
        box[:, 1] = np.clip(box[:, 1], 0, height - 1)
        if (
            int(np.linalg.norm(box[0] - box[1])) <= 3
            or int(np.linalg.norm(box[0] - box[3])) <= 3
        ):
            continue
        found.append((box, score))
    return found


def crop_line(bgr: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Perspective crop of a quad (bicubic, replicated border); tall crops rotated 90° CCW."""
    w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(
        bgr, matrix, (w, h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    if crop.shape[0] / max(crop.shape[1], 1) >= 1.5:
        crop = np.rot90(crop)
    return crop


def ctc_greedy(probs: np.ndarray, characters: tuple[str, ...]) -> tuple[str, float]:
    """Argmax per step, repeats collapsed, blank (0) dropped; score = mean of kept maxima (5 decimals)."""
    classes, maxima = probs.argmax(axis=-1), probs.max(axis=-1)
    keep = np.ones(len(classes), bool)
    keep[1:] = classes[1:] != classes[:-1]
    keep &= classes != 0
    table = ("blank", *characters, " ")
    text = "".join(table[c] for c in classes[keep] if c < len(table))
    if not keep.any():
        return "", 0.0
    return text, round(float(np.mean(np.round(maxima[keep], 5))), 5)


class ImmichOcr:
    """Detector and recogniser of one cached PP-OCR model, run as Immich runs them."""

    def __init__(self, files: OcrFiles) -> None:
        self.files = files
        self._det = cpu_session(files.detection)
        self._rec = cpu_session(files.recognition)

    def detect(
        self, rgb: np.ndarray, *, min_score: float, max_resolution: int
    ) -> list[tuple[np.ndarray, float]]:
        height, width = rgb.shape[:2]
        if height < MIN_SIDE or width < MIN_SIDE:
            return []
        rh, rw = detector_size(height, width, max_resolution)
        resized = np.asarray(
            Image.fromarray(rgb).resize((rw, rh), Image.Resampling.LANCZOS),
            dtype=np.float32,
        )
        x = ((resized[..., ::-1] - 0.5) / 127.5).transpose(2, 0, 1)[None]
        prob = self._det.run(
            None, {self._det.get_inputs()[0].name: np.ascontiguousarray(x)}
        )[0][0, 0]
        return db_boxes(prob, width, height, min_score)

    def recognise(
        self, bgr: np.ndarray, quads: list[np.ndarray]
    ) -> list[tuple[str, float]]:
        crops = [crop_line(bgr, q) for q in quads]
        order = np.argsort([c.shape[1] / c.shape[0] for c in crops], kind="stable")
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for start in range(0, len(order), REC_BATCH):
            batch = order[start : start + REC_BATCH]
            widest = max(crops[i].shape[1] / crops[i].shape[0] for i in batch)
            batch_width = int(REC_HEIGHT * max(REC_MIN_WIDTH / REC_HEIGHT, widest))
            x = np.zeros((len(batch), 3, REC_HEIGHT, batch_width), np.float32)
            for row, i in enumerate(batch):
                h, w = crops[i].shape[:2]
                new_w = min(math.ceil(REC_HEIGHT * w / h), batch_width)
                line = cv2.resize(
                    np.ascontiguousarray(crops[i]), (new_w, REC_HEIGHT)
                ).astype(np.float32)
                x[row, :, :, :new_w] = ((line / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)
            probs = self._rec.run(None, {self._rec.get_inputs()[0].name: x})[0]
            if probs.shape[-1] != len(self.files.characters) + 2:
                raise MissingModel(
                    f"{self.files.recognition} has {probs.shape[-1]} classes but its dictionary "
                    f"{len(self.files.characters)} characters (+ blank + space): wrong keys file"
                )
            for row, i in enumerate(batch):
                results[i] = ctc_greedy(probs[row], self.files.characters)
        return results

    def read(
        self,
        rgb: np.ndarray,
        *,
        det_score: float,
        max_resolution: int,
        rec_score: float,
    ) -> list[OcrLine]:
        """Immich's OCR result for an RGB image: lines scored above `rec_score`, boxes normalised."""
        height, width = rgb.shape[:2]
        boxes = self.detect(rgb, min_score=det_score, max_resolution=max_resolution)
        texts = self.recognise(
            np.ascontiguousarray(rgb[..., ::-1]), [b for b, _ in boxes]
        )
        scale = np.array([width, height], np.float32)
        return [
            OcrLine(box / scale, text, score, text_score)
            for (box, score), (text, text_score) in zip(boxes, texts)
            if text_score > rec_score
        ]
