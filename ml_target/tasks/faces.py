"""Immich's facial-recognition task: SCRFD detection on the device, recognition in one of two modes.

Model names: Immich asks for an insightface pack (`buffalo_l` by default; also `buffalo_m`,
`buffalo_s`, `antelopev2`). Detection is compatible: every pack detects with SCRFD, decoded here
exactly as insightface does, so boxes match the IoU > 0.5 rule the server uses to recognise
already-stored faces.

Recognition, two modes (`describe()` says which in /health, with its cost):
- **compatible (default)**: the recogniser of the configured pack (`FACE_MODEL`), Immich's own
  `recognition/model.onnx`, on the host CPU (`ml_target.tasks.face_recogniser`). Its embeddings
  are Immich's, so a library keeps its people and nothing is re-run when switching to or from this
  worker. Requests for another pack are refused with the fix.
- **Hailo ArcFace (opt-in, `FACE_SERVE_ANY_MODEL_NAME=true`)**: the Model Zoo's ArcFace HEF
  (`FACE_RECOGNISER`) on the device: far less host CPU, but trained on MS1MV3, not Immich's
  WebFace600K / Glint360K, so its embeddings are in another space and a library switching to or
  from it must re-run face detection for all assets.

Embeddings are returned as the recogniser returns them (not L2-normalised), as Immich returns
them; the server compares them by cosine distance only.
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

from ml_target.config import FACE_PACKS, Settings
from ml_target.errors import BadRequest, ModelNotServed
from ml_target.hailo.types import Network
from ml_target.immich_models import recogniser_path
from ml_target.networks import NETWORKS, NetworkSpec
from ml_target.results import FaceDetections, Faces
from ml_target.tasks.base import Handler
from ml_target.tasks.face_recogniser import HostRecogniser
from ml_target.vision.align import align_face
from ml_target.vision.letterbox import letterbox
from ml_target.vision.scrfd import decode, match_heads

log = logging.getLogger(__name__)

TASK = "facial-recognition"
MODEL_NAMES = FACE_PACKS
DEFAULT_MIN_SCORE = 0.7
EMBEDDING_CAVEAT = (
    "Face embeddings come from the Hailo Model Zoo's ArcFace (MS1MV3), not from the insightface pack "
    "Immich names (WebFace600K/Glint360K): they are not comparable with embeddings from another worker. "
    "When switching a library to or from this worker, re-run face detection for all assets."
)
COMPATIBLE_NOTE = (
    "Embeddings from Immich's own recogniser of this pack, on the host CPU: the same as Immich's worker "
    "computes, so nothing needs re-running when switching. It costs host CPU (cpu_ms_per_face); "
    "FACE_SERVE_ANY_MODEL_NAME=true moves recognition to the Hailo ArcFace instead, which needs a re-run."
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


class _RecognitionBase:
    """What both recognition modes share: Immich's protocol fields and option handling."""

    task = TASK
    type = "recognition"
    modality = "image"
    depends_on = "detection"

    def parse_options(self, options: Mapping[str, Any]) -> None:
        """Immich sends no recognition options; unknown keys are ignored as Immich ignores them."""
        _options_mapping(options)


class FaceRecognition(_RecognitionBase):
    """Hailo ArcFace mode (the operator's opt-in): align every detected face -> ArcFace HEF, all concurrently.

    All crops of a request are submitted at once; the runtime batches them (and other requests'
    crops) into device bursts, which is what makes multi-context `arcface_r50` fast. It answers
    every Immich pack name: the operator chose another embedding space knowingly.
    """

    def __init__(self, network: Network, *, timeout: float | None = None) -> None:
        if len(network.outputs) != 1:
            raise ValueError(f"{network.name}: expected one embedding output, got {network.outputs}")
        self._network = network
        self._timeout = timeout
        self._crop_size = _single_input_hw(network)[0]
        self._output = network.outputs[0].name
        self._dim = int(np.prod(network.outputs[0].shape))

    def check_model(self, model_name: str) -> None:
        check_model_name(model_name)

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
            "mode": "hailo-arcface",
            "network": self._network.name,
            "model_names": list(MODEL_NAMES),
            "caveat": EMBEDDING_CAVEAT,
        }


class ImmichFaceRecognition(_RecognitionBase):
    """Compatible mode (default): the configured pack's own recogniser ONNX on the host CPU."""

    def __init__(self, recogniser: HostRecogniser) -> None:
        self._recogniser = recogniser

    def check_model(self, model_name: str) -> None:
        check_model_name(model_name)
        pack = self._recogniser.pack
        if model_name != pack:
            raise ModelNotServed(
                f"facial-recognition {model_name!r}: this worker runs the recogniser of {pack!r} (FACE_MODEL={pack}), "
                f"and another pack's embeddings would not match it. Either choose {pack} in Immich (Administration > "
                f"Settings > Machine Learning > Facial Recognition), or set FACE_MODEL={model_name} on the worker and "
                "run fetch-models."
            )

    async def run(self, payload: np.ndarray | str, options: None, upstream: FaceDetections) -> Faces:
        embeddings = await self._recogniser.embed(payload, upstream.landmarks)
        return Faces(detections=upstream, embeddings=embeddings)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "immich-compatible",
            "model_names": [self._recogniser.pack],
            "recogniser": self._recogniser.describe(),
            "note": COMPATIBLE_NOTE,
        }

    def close(self) -> None:
        self._recogniser.close()


def face_handlers(detector: Network, recognition: Handler, *, timeout: float | None = None) -> list[Handler]:
    """Both facial-recognition handlers: detection over a configured SCRFD network, and a recognition mode."""
    return [FaceDetection(detector, timeout=timeout), recognition]


def _load(runtime: ModelLoader, settings: Settings, spec: NetworkSpec) -> Network:
    return runtime.load(settings.models_dir / f"{spec.hef}.hef", batch_size=spec.batch_size, priority=spec.priority)


def create_face_handlers(settings: Settings, runtime: ModelLoader) -> list[Handler]:
    """Load SCRFD and the recognition mode the settings choose (compatible unless opted in to Hailo ArcFace)."""
    if settings.face_serve_any_model_name:
        log.warning(EMBEDDING_CAVEAT)
        recognition: Handler = FaceRecognition(
            _load(runtime, settings, NETWORKS[settings.face_recogniser]), timeout=settings.request_timeout_s
        )
    else:
        recogniser = HostRecogniser(
            settings.face_model,
            settings.models_dir / recogniser_path(settings.face_model),
            threads=settings.face_recognition_threads,
        )
        log.info("face recognition: %s's own recogniser on the host CPU (%s)", settings.face_model, recogniser.path)
        recognition = ImmichFaceRecognition(recogniser)
    detector = _load(runtime, settings, NETWORKS[settings.face_detector])
    return face_handlers(detector, recognition, timeout=settings.request_timeout_s)
