"""Tiny, randomly initialised CLIP/SigLIP reference models and the exact parts a Hailo HEF runs.

Cut-point fidelity (DESIGN.md) is proven by building a small model from the real `transformers`
architecture code, exporting only the HEF's share of it to ONNX, running that in the emulator, and
checking that our host parts around it reproduce the model's own `get_text_features` /
`get_image_features`. What the HEF contains is derived from a backend's declared `TextCut`: the HEF
does everything the host does not (positions if the host does not add them, the final LayerNorm if
the host does not apply it, pooling and projection if the host does not).

Needs torch and transformers: only `scripts/make_test_fixtures.py` imports it, to write the
committed fixtures the tests read (ml_target.testing.clip_fixtures).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

from ml_target.catalog import ClipBackend, TextCut
from ml_target.testing.clip_fidelity import OPENAI_MEAN, OPENAI_STD
from ml_target.testing.clip_fixtures import TINY
from ml_target.testing.clip_tokenizers import CLIP_BOS, CLIP_EOS, clip_like_tokenizer, siglip_like_tokenizer

GAIN = 1.5  # weight scale relative to 1/sqrt(fan_in): large enough that outputs depend on inputs


def tiny_clip(*, vocab_size: int, bos_id: int, eos_id: int, pad_id: int, image_size: int = 224, seed: int = 0) -> CLIPModel:
    """A CLIPModel with CLIP's structure (causal text, first-EOS pooling, projections) at toy width."""
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            **TINY,
            "vocab_size": vocab_size,
            "max_position_embeddings": 77,
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "pad_token_id": pad_id,
        },
        vision_config={**TINY, "image_size": image_size, "patch_size": 32},
        projection_dim=TINY["hidden_size"],  # ViT-B text width equals its projection size (512)
    )
    config._attn_implementation = "eager"
    return _randomise(CLIPModel(config).eval())


def tiny_siglip(
    *, vocab_size: int, pad_id: int, eos_id: int, image_size: int = 224, patch_size: int = 16, seed: int = 0
) -> SiglipModel:
    """A SiglipModel (bidirectional text, last-token pooling + head, MAP image head) at toy width."""
    torch.manual_seed(seed)
    config = SiglipConfig(
        text_config={
            **TINY,
            "vocab_size": vocab_size,
            "max_position_embeddings": 64,
            "pad_token_id": pad_id,
            "eos_token_id": eos_id,
            "bos_token_id": None,
            "projection_size": TINY["hidden_size"],
        },
        vision_config={**TINY, "image_size": image_size, "patch_size": patch_size},
    )
    config._attn_implementation = "eager"
    return _randomise(SiglipModel(config).eval())


def _randomise(model: nn.Module) -> nn.Module:
    """Re-draw the weights so that a random model is sensitive to its input and to every host step.

    The library's initialisation (std 0.02, LayerNorms at 1/0, SigLIP biases at 0) makes a toy
    model's output nearly constant: squash versus crop, or a LayerNorm applied twice, would change
    nothing measurable and the wrong-cut tests could not fail. Weights get std GAIN/sqrt(fan_in),
    embeddings std 1, LayerNorms and biases random values.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                module.weight.normal_(0.0, GAIN / module.weight[0].numel() ** 0.5)
                if module.bias is not None:
                    module.bias.normal_(0.0, 0.1)
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, 1.0)
            elif isinstance(module, nn.LayerNorm):
                module.weight.normal_(1.0, 0.5)
                module.bias.normal_(0.0, 0.5)
        class_embedding = getattr(model.vision_model.embeddings, "class_embedding", None)
        if class_embedding is not None:
            class_embedding.normal_(0.0, 1.0)
    return model


class TextHefPart(nn.Module):
    """The text encoder's share that runs on the HEF, given what the host does (`host_cut`).

    Input: token embeddings (B, L, W) (plus positions if the host adds them). Output: per-token
    hidden states (B, L, W), or the pooled, projected (B, D) when the HEF pools.
    """

    def __init__(self, model: CLIPModel | SiglipModel, host_cut: TextCut, *, causal: bool) -> None:
        super().__init__()
        self.text = model.text_model
        self.projection = model.text_projection if isinstance(model, CLIPModel) else self.text.head
        self.cut = host_cut
        length = self.text.embeddings.position_embedding.weight.shape[0]
        mask = torch.full((length, length), -1e9).triu(1) if causal else torch.zeros(length, length)
        self.register_buffer("mask", mask[None, None], persistent=False)

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        x = embeds
        if self.cut.positions == "hef":
            x = x + self.text.embeddings.position_embedding.weight[None, : x.shape[1]]
        x = self.text.encoder(inputs_embeds=x, attention_mask=self.mask).last_hidden_state
        if not self.cut.final_layer_norm:
            x = self.text.final_layer_norm(x)
        if self.cut.pooling == "hef":
            x = x[:, -1]
        if not self.cut.projection:
            x = self.projection(x)
        return x


class ImageHefPart(nn.Module):
    """The whole image encoder: normalised NCHW pixels -> pooled, projected (B, D) features."""

    def __init__(self, model: CLIPModel | SiglipModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.get_image_features(pixel_values=pixels).pooler_output


def tiny_model_for(backend: ClipBackend) -> tuple[CLIPModel | SiglipModel, Tokenizer, str]:
    """The tiny model of `backend`'s family at its image size, its tokenizer and its pad token."""
    if backend.tokenizer == "clip-bpe":
        tokenizer = clip_like_tokenizer()
        eos = tokenizer.token_to_id(CLIP_EOS)
        model = tiny_clip(
            vocab_size=tokenizer.get_vocab_size(), bos_id=tokenizer.token_to_id(CLIP_BOS), eos_id=eos, pad_id=eos,
            image_size=backend.image_size,
        )
        return model, tokenizer, CLIP_EOS
    tokenizer = siglip_like_tokenizer(eos=backend.eos_token)
    model = tiny_siglip(
        vocab_size=tokenizer.get_vocab_size(), pad_id=tokenizer.token_to_id(backend.pad_token), eos_id=1,
        image_size=backend.image_size, patch_size=32 if "b_32" in backend.id else 16,
    )
    return model, tokenizer, backend.pad_token


def export_onnx(
    module: nn.Module, example: torch.Tensor, path: Path, *, input_name: str = "x", output_name: str = "y",
    dynamic_batch: bool = True,
) -> Path:
    """ONNX of `module` traced on `example`; by default input `x`, output `y` and a dynamic batch
    axis (the emulator batches frames)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about shape checks that are constant here
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None,
            opset_version=17,
            dynamo=False,
        )
    return path


def text_features(model: CLIPModel | SiglipModel, ids: np.ndarray) -> np.ndarray:
    """The reference: the model's own `get_text_features` on (B, L) ids, L2-normalised."""
    with torch.no_grad():
        out = model.get_text_features(input_ids=torch.from_numpy(ids.astype(np.int64))).pooler_output.numpy()
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def image_features(model: CLIPModel | SiglipModel, pixels: np.ndarray) -> np.ndarray:
    """The reference: `get_image_features` on (B, 3, S, S) normalised float pixels, L2-normalised."""
    with torch.no_grad():
        out = model.get_image_features(pixel_values=torch.from_numpy(pixels.astype(np.float32))).pooler_output.numpy()
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


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


def export_immich_model(directory: Path, model: CLIPModel | SiglipModel, backend: ClipBackend, tokenizer_dir: Path) -> Path:
    """`directory` laid out as Immich's model folder (immich-protocol.md §6): full visual and textual
    ONNX (input `image` float32 [1,3,S,S] / `text` int32 [1,L]), `config.json`,
    `visual/preprocess_cfg.json` and the tokenizer files from `tokenizer_dir`."""
    base = Path(directory)
    size, length = backend.image_size, backend.context_length
    export_onnx(_ImmichVisual(model).eval(), torch.zeros(1, 3, size, size), base / "visual" / "model.onnx",
                input_name="image", output_name="embedding", dynamic_batch=False)
    export_onnx(_ImmichTextual(model).eval(), torch.zeros(1, length, dtype=torch.int32), base / "textual" / "model.onnx",
                input_name="text", output_name="embedding", dynamic_batch=False)
    siglip = backend.tokenizer == "sentencepiece"
    mean, std = ([0.5] * 3, [0.5] * 3) if siglip else (OPENAI_MEAN.tolist(), OPENAI_STD.tolist())
    config = {
        "embed_dim": TINY["hidden_size"],
        "vision_cfg": {"image_size": size},
        "text_cfg": {"context_length": length, **({"tokenizer_kwargs": {"clean": "canonicalize"}} if siglip else {})},
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
    (base / "visual" / "preprocess_cfg.json").write_text(json.dumps(preprocess), encoding="utf-8")
    for file in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(Path(tokenizer_dir) / file, base / "textual" / file)
    return base
