"""Immich's OCR task on the PP-OCRv5 mobile HEFs: ("ocr", "detection") and ("ocr", "recognition").

Served faithfully: `PP-OCRv5_mobile` (and its explicit Chinese-variant name `CH__PP-OCRv5_mobile`),
the same detector and recogniser weights Immich uses. Where Immich's detector input fits the
HEF's fixed 544x960 input, the detector gets exactly Immich's frame: its size, filter and input
values (`ocr_resize`, `ocr_levels`). Larger images are scaled down or cut into bands, so their
boxes can differ from Immich's; text agrees where the crops agree. Other Immich OCR models
(`PP-OCRv5_server`, `EN__`/`LATIN__`/... recognisers) have other weights and dictionaries: they
are refused rather than answered with this recogniser.

The detector sees BGR pixels: PaddleOCR trains on OpenCV (BGR) images with the ImageNet mean/std
listed in RGB order, Immich's detector feeds BGR, and the Model Zoo evaluates this HEF on BGR.
The recogniser's order is a declared setting (`OCR_RECOGNISER_CHANNELS`, default BGR as PaddleOCR
and Immich): the Zoo calibrated and evaluated it on RGB, no hardware run tells them apart, and
`doctor` reads a coloured page both ways (docs/hardware-evidence.md §1.16).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ml_target.config import Settings
from ml_target.errors import BadRequest, ModelNotServed
from ml_target.hailo.types import Network
from ml_target.networks import NETWORKS
from ml_target.results import TextDetections, TextLines
from ml_target.text.ocr_dictionary import DICTIONARY_FILE, check_class_count, load_dictionary
from ml_target.vision.ctc import CtcPath, greedy_path, line_score, path_text
from ml_target.vision.dbnet import SCORE_MODES, db_boxes, drop_duplicates, finish_boxes, reading_order
from ml_target.vision.ocr_crops import Window, crop_quad, line_windows, merge_windows, squashed_frame
from ml_target.vision.ocr_levels import immich_levels
from ml_target.vision.ocr_resize import (
    MAX_RESOLUTION_CAP,
    MAX_TILES,
    DetectionFit,
    bands_for_rows,
    plan_fit,
    render_input,
)

SERVED_MODELS = ("PP-OCRv5_mobile", "CH__PP-OCRv5_mobile")
DETECTOR_HEF = "paddle_ocr_v5_mobile_detection"
RECOGNISER_HEF = "paddle_ocr_v5_mobile_recognition"
MIN_IMAGE_SIDE = 32
DEFAULT_DETECTION_SCORE = 0.5
DEFAULT_MAX_RESOLUTION = 736
DEFAULT_RECOGNITION_SCORE = 0.9
LONG_LINE_MODES = ("windows", "squash")
# Screening (OcrDetection): boxes with a short side under SMALL_TEXT_PX detector pixels in the
# whole-image frame call for bands over their rows. DB's unclipped boxes do not shrink with the
# text below about 15 px (a single line of 12-22 px text in a 1920x1440 preview gives 13-15 px boxes
# at the whole-frame scale, 32 px text 17 px), so the threshold keeps bands for every text smaller
# than about 40 px in the preview and skips them for signs and titles. Candidates are taken from
# SCREEN_SCORE up: false boxes on the library mix's photos without text scored mostly under 0.4
# (`bench --library`), small real text at the whole-frame scale 0.44 and up.
SMALL_TEXT_PX = 20.0
SCREEN_SCORE = 0.4
# Recognition frames one request keeps queued or on the device. A page of dense text yields
# over a hundred windows; submitting them all at once would let one request fill the network's
# queue (MAX_QUEUED_FRAMES), so that two such pages refuse each other, and hold an output buffer
# per frame (40 x 18385 floats, about 3 MB), hundreds of MB per page. Each window is reduced to
# its CTC path as soon as it returns. One burst's worth per request keeps a single page fast and
# lets 32 concurrent pages share the queue without a 503 (measured with `bench --workload ocr`:
# 24 frames per request collapsed to 1.4 pages/s with 503s at 16 concurrent pages; 8 gives 6.4,
# 83 % of the device bound, and no errors at 16 and 32).
FRAMES_IN_FLIGHT = 8


class _Skipped(Exception):
    """A window not submitted because another window of its request already failed."""


def _check_model(model_name: str, type_: str) -> None:
    """Refuse every OCR model name except PP-OCRv5 mobile with the default (Chinese) recogniser."""
    name = model_name.strip().rsplit("/", 1)[-1]
    if name not in SERVED_MODELS:
        raise ModelNotServed(
            f"OCR {type_} model {model_name!r} is not served: this worker runs PP-OCRv5 mobile "
            f"({DETECTOR_HEF} + {RECOGNISER_HEF}) and serves only {SERVED_MODELS[0]!r}; set Immich's OCR "
            f"model (Administration > Settings > Machine Learning > OCR) to {SERVED_MODELS[0]}"
        )


def _score(options: Mapping[str, Any], key: str, default: float) -> float:
    """A threshold in [0, 1]; JSON booleans are ints in Python and must not pass as 0 or 1."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"ocr option {key} must be a number, got {value!r}")
    if not 0.0 <= value <= 1.0:
        raise BadRequest(f"ocr option {key} must be between 0 and 1, got {value!r}")
    return float(value)


def _max_resolution(options: Mapping[str, Any]) -> int:
    """An integer >= 1 (736.0 accepted, 736.5 not), capped where it can no longer matter."""
    value = options.get("maxResolution", DEFAULT_MAX_RESOLUTION)
    integral = isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if isinstance(value, bool) or not integral or value < 1:
        raise BadRequest(f"ocr option maxResolution must be an integer >= 1, got {value!r}")
    return min(int(value), MAX_RESOLUTION_CAP)


@dataclass(frozen=True)
class DetectionOptions:
    """Validated detection options: DB box threshold, Immich's shorter-side cap, box score mode."""

    min_score: float = DEFAULT_DETECTION_SCORE
    max_resolution: int = DEFAULT_MAX_RESOLUTION
    score_mode: str = "fast"


@dataclass(frozen=True)
class RecognitionOptions:
    """Validated recognition options: lines scoring above `min_score` are kept."""

    min_score: float = DEFAULT_RECOGNITION_SCORE


def _detector_normalization() -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The detector HEF's in-network normalisation (docs/hardware-evidence.md §1.15)."""
    normalization = NETWORKS[DETECTOR_HEF].normalization
    if normalization is None:
        raise ValueError(f"{DETECTOR_HEF} lists no input normalisation: its input levels cannot match Immich's")
    return normalization


def _empty_detections(width: int, height: int) -> TextDetections:
    return TextDetections(np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32), width, height)


class OcrDetection:
    """DBNet text boxes in received-image pixels, in reading order.

    An image that bands would enlarge (`ocr_resize.plan_fit`) is screened first with one frame of
    the whole image: most photos in a library hold no text, and for them that one frame is the
    answer. Bands run only over rows where the whole frame found text shrunk below
    `SMALL_TEXT_PX` (box short side in detector pixels, where measured accuracy starts to drop,
    README), and only the bands those rows need (`ocr_resize.bands_for_rows`: one band where one
    holds them); boxes the whole frame found elsewhere are kept. Text that small is screened with a
    lower box threshold (`SCREEN_SCORE`), since the small scale lowers its scores. With
    `screen=False` every band runs (the behaviour before screening). `normalization` is the HEF's
    in-network mean and std (channels as fed; by default the detector HEF's in `NETWORKS`), from
    which `ocr_levels` makes the frame that is Immich's own input give the network Immich's values.
    """

    task = "ocr"
    type = "detection"
    modality = "image"
    depends_on = None

    def __init__(
        self,
        network: Network,
        *,
        max_tiles: int = MAX_TILES,
        screen: bool = True,
        normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    ) -> None:
        self.network = network
        self.max_tiles = max_tiles
        self.screen = screen
        self._levels = immich_levels(*(normalization or _detector_normalization()))
        self._output = network.outputs[0]
        self._input_hw = tuple(network.inputs[0].shape[:2])

    def check_model(self, model_name: str) -> None:
        _check_model(model_name, self.type)

    def parse_options(self, options: Mapping[str, Any]) -> DetectionOptions:
        score_mode = options.get("scoreMode", "fast")
        if score_mode not in SCORE_MODES:
            raise BadRequest(f"ocr option scoreMode must be one of {', '.join(SCORE_MODES)}, got {score_mode!r}")
        return DetectionOptions(
            min_score=_score(options, "minScore", DEFAULT_DETECTION_SCORE),
            max_resolution=_max_resolution(options),
            score_mode=score_mode,
        )

    def _render(self, rgb: np.ndarray, fits: list[DetectionFit]) -> list[np.ndarray]:
        return [render_input(rgb, fit, self._input_hw, self._levels) for fit in fits]

    async def _probabilities(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        outputs = await asyncio.gather(*(self.network.infer(frame) for frame in frames))
        return [o[self._output.name].reshape(self._output.shape[:2]) for o in outputs]

    def _found(
        self, prob: np.ndarray, fit: DetectionFit, threshold: float, mode: str
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """DB boxes of one frame (boxes cut by a band's inner edge dropped): in received-image
        pixels, their scores, and in detector pixels."""
        rh, rw = fit.resized
        quads, scores = db_boxes(prob[:rh, :rw], box_threshold=threshold, score_mode=mode)
        whole = ~fit.cut_by_band(quads)
        return fit.to_image(quads[whole]), scores[whole], quads[whole]

    def _small_text_rows(self, prob: np.ndarray, fit: DetectionFit, options: DetectionOptions) -> list[tuple[float, float]]:
        """Image rows (top, bottom) of text the whole frame shrinks below `SMALL_TEXT_PX` (class docstring)."""
        threshold = min(SCREEN_SCORE, options.min_score)
        image_quads, _, input_quads = self._found(prob, fit, threshold, options.score_mode)
        short = np.minimum(
            np.linalg.norm(input_quads[:, 0] - input_quads[:, 1], axis=1),
            np.linalg.norm(input_quads[:, 0] - input_quads[:, 3], axis=1),
        )
        ys = image_quads[short < SMALL_TEXT_PX][..., 1]
        return [(float(y.min()), float(y.max())) for y in ys]

    def _boxes(
        self, probs: list[np.ndarray], fits: list[DetectionFit], options: DetectionOptions, whole_frame: int | None = None
    ) -> TextDetections:
        """Boxes of every frame, merged. `whole_frame` indexes the screening frame among `fits`: its
        boxes lying wholly inside a band that was run are left to that band."""
        height, width = fits[0].image
        bands = [(fit.top, fit.bottom) for i, fit in enumerate(fits) if i != whole_frame]
        all_quads, all_scores, sources = [], [], []
        for index, (prob, fit) in enumerate(zip(probs, fits)):
            quads, scores, _ = self._found(prob, fit, options.min_score, options.score_mode)
            if index == whole_frame and len(quads):
                ys = quads[..., 1]
                inside = np.zeros(len(quads), dtype=bool)
                for top, bottom in bands:
                    inside |= (ys.min(axis=1) >= top) & (ys.max(axis=1) <= bottom)
                quads, scores = quads[~inside], scores[~inside]
            all_quads.append(quads)
            all_scores.append(scores)
            sources.append(np.full(len(quads), index))
        quads, scores = np.concatenate(all_quads), np.concatenate(all_scores)
        if len(fits) > 1:
            keep = drop_duplicates(quads, scores, np.concatenate(sources))
            quads, scores = quads[keep], scores[keep]
        quads, scores = finish_boxes(quads, scores, width, height)
        order = reading_order(quads)
        return TextDetections(quads[order], scores[order], width, height)

    async def run(self, payload: np.ndarray, options: DetectionOptions, upstream: Any | None = None) -> TextDetections:
        height, width = payload.shape[:2]
        if height < MIN_IMAGE_SIDE or width < MIN_IMAGE_SIDE:
            return _empty_detections(width, height)
        bands = plan_fit(height, width, self._input_hw, options.max_resolution, self.max_tiles)
        if len(bands) == 1 or not self.screen:
            probs = await self._probabilities(await asyncio.to_thread(self._render, payload, bands))
            return await asyncio.to_thread(self._boxes, probs, bands, options)
        whole = plan_fit(height, width, self._input_hw, options.max_resolution, 1)
        (prob,) = await self._probabilities(await asyncio.to_thread(self._render, payload, whole))
        rows = await asyncio.to_thread(self._small_text_rows, prob, whole[0], options)
        needed = bands_for_rows(bands, rows)
        band_probs = await self._probabilities(await asyncio.to_thread(self._render, payload, needed)) if needed else []
        return await asyncio.to_thread(self._boxes, [*band_probs, prob], [*needed, *whole], options, len(needed))

    def describe(self) -> dict[str, Any]:
        return {
            "networks": [self.network.name],
            "models": list(SERVED_MODELS),
            "max_tiles": self.max_tiles,
            "screen": self.screen,
        }


class OcrRecognition:
    """Text of each detected box (CTC greedy), keeping lines scored above `minScore`."""

    task = "ocr"
    type = "recognition"
    modality = "image"
    depends_on = "detection"

    def __init__(
        self, network: Network, dictionary: tuple[str, ...], *, long_lines: str = "windows", channels: str = "bgr"
    ) -> None:
        if long_lines not in LONG_LINE_MODES:
            raise ValueError(f"long_lines must be one of {LONG_LINE_MODES}")
        if channels not in ("bgr", "rgb"):
            raise ValueError("channels must be bgr or rgb")
        self.channels = channels
        self.network = network
        self.long_lines = long_lines
        self._output = network.outputs[0]
        check_class_count(dictionary, self._output.shape[-1])
        # Raw outputs (`NetworkSpec.raw_outputs`): CTC takes the argmax of the integers and
        # dequantises only the kept steps, not 40 x 18385 values per window.
        self._dequantise = None if self._output.dtype == np.float32 else self._output.quant.dequantise
        self.dictionary = dictionary
        height, width = network.inputs[0].shape[:2]
        self._size = (height, width)
        self._step_px = width / math.prod(self._output.shape[:-1])

    def check_model(self, model_name: str) -> None:
        _check_model(model_name, self.type)

    def parse_options(self, options: Mapping[str, Any]) -> RecognitionOptions:
        return RecognitionOptions(min_score=_score(options, "minScore", DEFAULT_RECOGNITION_SCORE))

    def _windows(self, image: np.ndarray, quads: np.ndarray) -> list[list[Window]]:
        height, width = self._size
        lines = []
        for quad in quads:
            # Cropped from the RGB image, then reordered: the warp treats each channel alone.
            crop = crop_quad(image, quad)
            if self.channels == "bgr":
                crop = np.ascontiguousarray(crop[..., ::-1])
            if self.long_lines == "squash":
                lines.append([Window(squashed_frame(crop, height, width), 0, -math.inf)])
            else:
                lines.append(line_windows(crop, height, width))
        return lines

    def _read(self, windows: list[Window], paths: list[CtcPath]) -> CtcPath:
        if len(windows) == 1:
            return paths[0]
        return merge_windows(paths, windows, self._step_px)

    def _lines(
        self, detections: TextDetections, lines: list[list[Window]], paths: list[CtcPath], min_score: float
    ) -> TextLines:
        keep, texts, scores = [], [], []
        start = 0
        for i, line in enumerate(lines):
            path = self._read(line, paths[start : start + len(line)])
            start += len(line)
            score = line_score(path.probs)
            if score > min_score:
                keep.append(i)
                texts.append(path_text(path.classes, self.dictionary))
                scores.append(score)
        kept = TextDetections(
            detections.quads[keep], detections.scores[keep], detections.image_width, detections.image_height
        )
        return TextLines(kept, texts, np.array(scores, dtype=np.float32))

    async def run(self, payload: np.ndarray, options: RecognitionOptions, upstream: TextDetections) -> TextLines:
        detections = upstream
        if len(detections.quads) == 0:
            return TextLines(detections, [], np.zeros((0,), np.float32))
        lines = await asyncio.to_thread(self._windows, payload, detections.quads)
        slots = asyncio.Semaphore(FRAMES_IN_FLIGHT)
        failures: list[BaseException] = []

        async def read(frame: np.ndarray) -> CtcPath:
            """One window's best path; its (large) class probabilities are dropped at once.

            A failure is recorded before its slot is released, so the window that release wakes
            is not submitted (the failing burst's siblings may still complete and free slots)."""
            async with slots:
                if failures:
                    raise _Skipped
                try:
                    probs = (await self.network.infer(frame))[self._output.name]
                except BaseException as error:
                    failures.append(error)
                    raise
            return await asyncio.to_thread(greedy_path, probs.reshape(-1, probs.shape[-1]), self._dequantise)

        reads = [asyncio.ensure_future(read(w.frame)) for line in lines for w in line]
        try:
            paths = await asyncio.gather(*reads)
        except BaseException:
            # gather leaves the other windows running when one fails: stop them rather than keep
            # submitting frames for a request that has already failed.
            for pending in reads:
                pending.cancel()
            if failures:
                raise failures[0] from None  # the device's error, never a skipped window's
            raise
        return await asyncio.to_thread(self._lines, detections, lines, list(paths), options.min_score)

    def describe(self) -> dict[str, Any]:
        return {
            "networks": [self.network.name],
            "models": list(SERVED_MODELS),
            "classes": len(self.dictionary),
            "long_lines": self.long_lines,
            "channels": self.channels,
        }


def create_ocr_handlers(settings: Settings, runtime: Any) -> tuple[OcrDetection, OcrRecognition]:
    """Load both HEFs and the dictionary from `settings.models_dir`; fails fast if any is unusable."""
    networks = []
    for hef in (DETECTOR_HEF, RECOGNISER_HEF):
        spec = NETWORKS[hef]
        networks.append(
            runtime.load(
                settings.models_dir / f"{hef}.hef",
                batch_size=spec.batch_size,
                priority=spec.priority,
                raw_outputs=spec.raw_outputs,
            )
        )
    dictionary = load_dictionary(settings.models_dir / DICTIONARY_FILE)
    return OcrDetection(networks[0]), OcrRecognition(networks[1], dictionary, channels=settings.ocr_recogniser_channels)
