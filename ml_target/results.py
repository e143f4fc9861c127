"""Task results and their exact Immich wire form.

Each result knows how Immich's server reads it (immich-protocol.md §4): embeddings are strings
holding a JSON array of float32 in shortest form, face boxes are integral and unclipped, OCR boxes
are flat lists normalised to [0, 1]. Non-finite numbers are refused here, the last point before
they would reach a user's database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson


def _finite(array: np.ndarray, what: str) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinity")
    return array


def embedding_string(vector: np.ndarray) -> str:
    """pgvector text form, e.g. `[0.01,-0.02]`, float32 in shortest round-trip notation."""
    return orjson.dumps(_finite(vector, "embedding").ravel(), option=orjson.OPT_SERIALIZE_NUMPY).decode()


@dataclass(frozen=True)
class Embedding:
    """A CLIP/SigLIP image or text embedding, L2-normalised."""

    vector: np.ndarray

    def to_wire(self) -> str:
        return embedding_string(self.vector)


@dataclass(frozen=True)
class FaceDetections:
    """SCRFD output in received-image pixels: boxes (N,4) x1,y1,x2,y2; scores (N,); landmarks (N,5,2)."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def to_wire(self) -> dict[str, Any]:
        return {
            "boxes": np.rint(_finite(self.boxes, "face boxes")).tolist(),
            "scores": _finite(self.scores, "face scores").tolist(),
            "landmarks": _finite(self.landmarks, "face landmarks").tolist(),
        }


@dataclass(frozen=True)
class Faces:
    """Detected faces with one recognition embedding each (N,512)."""

    detections: FaceDetections
    embeddings: np.ndarray

    def to_wire(self) -> list[dict[str, Any]]:
        boxes = np.rint(_finite(self.detections.boxes, "face boxes"))  # half to even, as Immich
        scores = _finite(self.detections.scores, "face scores")
        return [
            {
                "boundingBox": {"x1": float(b[0]), "y1": float(b[1]), "x2": float(b[2]), "y2": float(b[3])},
                "embedding": embedding_string(e),
                "score": s,
            }
            for b, e, s in zip(boxes, self.embeddings, scores.tolist())
        ]


@dataclass(frozen=True)
class TextDetections:
    """DB text boxes in received-image pixels: quads (N,4,2) TL,TR,BR,BL; scores (N,)."""

    quads: np.ndarray
    scores: np.ndarray
    image_width: int
    image_height: int

    def normalised_boxes(self) -> np.ndarray:
        """Flat (N*8,) float32: x / width, y / height, as Immich stores them."""
        quads = _finite(self.quads, "text boxes").reshape(-1, 4, 2)
        scale = np.array([self.image_width, self.image_height], dtype=np.float32)
        return (quads / scale).astype(np.float32).ravel()

    def to_wire(self) -> dict[str, Any]:
        return {"box": self.normalised_boxes(), "boxScore": _finite(self.scores, "box scores")}


@dataclass(frozen=True)
class TextLines:
    """Recognised lines: `text[i]` read inside `detections.quads[i]` with `text_scores[i]`."""

    detections: TextDetections
    text: list[str]
    text_scores: np.ndarray

    def to_wire(self) -> dict[str, Any]:
        return {
            "text": list(self.text),
            "box": self.detections.normalised_boxes(),
            "boxScore": _finite(self.detections.scores, "box scores"),
            "textScore": _finite(self.text_scores, "text scores"),
        }
