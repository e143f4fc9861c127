"""Immich's facial-recognition task: SCRFD detection and ArcFace recognition on the device.

Model names: Immich asks for an insightface pack (`buffalo_l` by default; also `buffalo_m`,
`buffalo_s`, `antelopev2`). Detection is compatible: every pack detects with SCRFD, decoded here
exactly as insightface does, so boxes match the IoU > 0.5 rule the server uses to recognise
already-stored faces. Recognition is NOT the same embedding space: the Model Zoo's ArcFace HEFs are
trained on MS1MV3, Immich's packs on WebFace600K / Glint360K. Serving them under Immich's names
therefore needs the operator's explicit opt-in (`FACE_SERVE_ANY_MODEL_NAME=true`); without it the
recognition entry is refused with a message saying so. Within one library processed only by this
worker, faces cluster as usual; a library that switches to or from this worker must re-run face
detection for all assets ("All" in Administration > Jobs), or new and old embeddings will be
compared across spaces. `describe()` says so in /health.

Embeddings are returned as the device returns them (dequantised, not L2-normalised), as Immich
returns ArcFace's raw output; the server compares them by cosine distance only.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ml_target.config import Settings
from ml_target.errors import BadRequest, ModelNotServed
from ml_target.hailo.types import Network
from ml_target.networks import NETWORKS, NetworkSpec
from ml_target.results import FaceDetections, Faces
from ml_target.tasks.base import Handler
from ml_target.vision.align import align_face
from ml_target.vision.letterbox import letterbox
from ml_target.vision.scrfd import decode, match_heads

log = logging.getLogger(__name__)

TASK = "facial-recognition"
MODEL_NAMES = ("buffalo_l", "buffalo_m", "buffalo_s", "antelopev2")
DEFAULT_MIN_SCORE = 0.7
EMBEDDING_CAVEAT = (
    "Face embeddings come from the Hailo Model Zoo's ArcFace (MS1MV3), not from the insightface pack "
    "Immich names (WebFace600K/Glint360K): they are not comparable with embeddings from another worker. "
    "When switching a library to or from this worker, re-run face detection for all assets."
)


class ModelLoader(Protocol):
    """The part of `ml_target.hailo.runtime.Runtime` this module needs."""

    def load(self, hef_path: Any, *, batch_size: int, priority: int) -> Network: ...


@dataclass(frozen=True)
class DetectionOptions:
    """Validated detection options: keep anchors whose score is >= `min_score`."""

    min_score: float = DEFAULT_MIN_SCORE


def check_model_name(model_name: str) -> None:
    """Accept the insightface pack names Immich sends; refuse anything else with the accepted list."""
    if model_name not in MODEL_NAMES:
        raise ModelNotServed(
            f"facial-recognition model {model_name!r} is not served; this worker serves {', '.join(MODEL_NAMES)} "
            "(choose one of them in Administration > Machine Learning > Facial Recognition)"
        )


def _options_mapping(options: Any) -> Mapping[str, Any]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise BadRequest(f"facial-recognition options must be an object, got {type(options).__name__}")
    return options


def parse_min_score(options: Any) -> DetectionOptions:
    """`minScore`: a number in (0, 1], default 0.7; booleans, strings and NaN are refused."""
    value = _options_mapping(options).get("minScore", DEFAULT_MIN_SCORE)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"minScore must be a number in (0, 1], got {value!r}")
    if not (math.isfinite(value) and 0.0 < value <= 1.0):
        raise BadRequest(f"minScore must be in (0, 1], got {value!r}")
    return DetectionOptions(min_score=float(value))


def _single_input_hw(network: Network) -> tuple[int, int]:
    if len(network.inputs) != 1 or len(network.inputs[0].shape) != 3:
        raise ValueError(f"{network.name}: expected one (h, w, 3) image input, got {network.inputs}")
    return network.inputs[0].shape[0], network.inputs[0].shape[1]


class FaceDetection:
    """("facial-recognition", "detection"): letterbox -> SCRFD on the device -> decode + NMS."""

    task = TASK
    type = "detection"
    modality = "image"
    depends_on = None

    def __init__(self, network: Network, *, timeout: float | None = None) -> None:
        self._network = network
        self._timeout = timeout
        self._input_hw = _single_input_hw(network)
        self._levels = match_heads(((edge.name, edge.shape) for edge in network.outputs), self._input_hw)

    def check_model(self, model_name: str) -> None:
        check_model_name(model_name)

    def parse_options(self, options: Mapping[str, Any]) -> DetectionOptions:
        return parse_min_score(options)

    async def run(self, payload: np.ndarray | str, options: DetectionOptions, upstream: Any | None) -> FaceDetections:
        boxed = await asyncio.to_thread(letterbox, payload, *self._input_hw)
        outputs = await self._network.infer(boxed.image, timeout=self._timeout)
        return decode(outputs, self._levels, boxed.scale, options.min_score)

    def describe(self) -> dict[str, Any]:
        return {"network": self._network.name, "model_names": list(MODEL_NAMES)}


class FaceRecognition:
    """("facial-recognition", "recognition"): align every detected face -> ArcFace, all concurrently.

    All crops of a request are submitted at once; the runtime batches them (and other requests'
    crops) into device bursts, which is what makes multi-context `arcface_r50` fast.
    """

    task = TASK
    type = "recognition"
    modality = "image"
    depends_on = "detection"

    def __init__(self, network: Network, *, timeout: float | None = None, opted_in: bool = False) -> None:
        if len(network.outputs) != 1:
            raise ValueError(f"{network.name}: expected one embedding output, got {network.outputs}")
        self._network = network
        self._timeout = timeout
        self._opted_in = opted_in
        self._crop_size = _single_input_hw(network)[0]
        self._output = network.outputs[0].name
        self._dim = int(np.prod(network.outputs[0].shape))

    def check_model(self, model_name: str) -> None:
        check_model_name(model_name)
        if not self._opted_in:
            raise ModelNotServed(
                f"facial-recognition {model_name!r}: this worker's ArcFace ({self._network.name}, MS1MV3) is not "
                f"the recogniser in {model_name}, so its embeddings are in another space. To use it anyway, set "
                "FACE_SERVE_ANY_MODEL_NAME=true on the worker and then re-run face detection for all assets "
                "(Administration > Jobs > Face Detection > All)."
            )

    def parse_options(self, options: Mapping[str, Any]) -> None:
        """Immich sends no recognition options; unknown keys are ignored as Immich ignores them."""
        _options_mapping(options)

    def announce(self) -> AbstractContextManager[None]:
        """Before decoding: this request's crops are coming, so another request's crops may wait to share a burst."""
        return self._network.announce()

    async def run(self, payload: np.ndarray | str, options: None, upstream: FaceDetections) -> Faces:
        crops = [align_face(payload, landmarks, self._crop_size) for landmarks in upstream.landmarks]
        results = await asyncio.gather(*(self._network.infer(crop, timeout=self._timeout) for crop in crops))
        embeddings = np.zeros((len(crops), self._dim), dtype=np.float32)
        for row, result in zip(embeddings, results):
            row[:] = np.asarray(result[self._output], dtype=np.float32).reshape(-1)
        return Faces(detections=upstream, embeddings=embeddings)

    def describe(self) -> dict[str, Any]:
        return {
            "network": self._network.name,
            "model_names": list(MODEL_NAMES) if self._opted_in else [],
            "opted_in": self._opted_in,
            "caveat": EMBEDDING_CAVEAT,
        }


def face_handlers(
    detector: Network, recogniser: Network, *, timeout: float | None = None, opted_in: bool = False
) -> list[Handler]:
    """Both facial-recognition handlers over already-configured networks (tests pass fakes here)."""
    return [FaceDetection(detector, timeout=timeout), FaceRecognition(recogniser, timeout=timeout, opted_in=opted_in)]


def _load(runtime: ModelLoader, settings: Settings, spec: NetworkSpec) -> Network:
    return runtime.load(settings.models_dir / f"{spec.hef}.hef", batch_size=spec.batch_size, priority=spec.priority)


def create_face_handlers(settings: Settings, runtime: ModelLoader) -> list[Handler]:
    """Load the configured SCRFD and ArcFace HEFs and build the two handlers; log the caveat once."""
    log.warning(EMBEDDING_CAVEAT)
    detector = _load(runtime, settings, NETWORKS[settings.face_detector])
    recogniser = _load(runtime, settings, NETWORKS[settings.face_recogniser])
    return face_handlers(
        detector, recogniser, timeout=settings.request_timeout_s, opted_in=settings.face_serve_any_model_name
    )
