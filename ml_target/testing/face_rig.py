"""Both sides of `verify` for faces, built offline without torch: an Immich cache and a worker on the emulator.

Immich's side: `<cache>/facial-recognition/<pack>/` with a detector and a recogniser in insightface's
interfaces (`ml_target.testing.face_models`). The worker's side: an emulated `scrfd_10g` HEF that
computes with that same detector ONNX (its outputs sit on the HEF's quantisation grid, so the device
hands back exactly what Immich's detector says), and the same recogniser file where `fetch-models`
puts it. With the worker in its compatible mode the two sides must agree to float precision; any
difference in letterboxing, decoding, alignment, colour order or normalisation shows up in `verify`.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from pathlib import Path

import onnx

from ml_target.config import Settings
from ml_target.immich_models import recogniser_path
from ml_target.testing import face_models

# Faces in detector-input (640 px letterbox) pixels: (box, stride, anchor), one per anchor scale.
RIG_FACES = (((212, 75, 350, 212), 16, 1), ((400, 300, 462, 368), 16, 0), ((60, 380, 92, 414), 8, 1))


@dataclasses.dataclass
class FaceRig:
    cache: Path
    models: Path
    settings: Settings


def build_face_rig(
    root: Path,
    faces: Sequence[tuple[tuple[float, float, float, float], int, int]] = RIG_FACES,
    pack: str = "buffalo_l",
    recogniser: onnx.ModelProto | None = None,
) -> FaceRig:
    """Cache under `root/cache`, worker models under `root/models`, settings for the compatible mode."""
    root = Path(root)
    cache, models = root / "cache", root / "models"
    base = face_models.write_face_pack(cache, face_models.scrfd_heads(faces), pack, recogniser or face_models.recogniser_model())
    face_models.write_emulated_detector(models, base / "detection" / "model.onnx")
    target = models / recogniser_path(pack)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(cache / recogniser_path(pack), target)
    settings = Settings(
        hailo_device="emulator",
        hailo_emulator_profile="none",
        models_dir=models,
        tasks=("faces",),
        face_model=pack,
        request_threads=1,
        face_recognition_threads=1,
    )
    return FaceRig(cache, models, settings)
