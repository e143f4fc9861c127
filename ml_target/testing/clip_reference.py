"""Tiny, randomly initialised CLIP/SigLIP reference models and the exact parts a Hailo HEF runs.

Cut-point fidelity (DESIGN.md) is proven by building a small model from the real `transformers`
architecture code, exporting only the HEF's share of it to ONNX, running that in the emulator, and
checking that our host parts around it reproduce the model's own `get_text_features` /
`get_image_features`. What the HEF contains is derived from a backend's declared `TextCut`: the HEF
does everything the host does not (positions if the host does not add them, the final LayerNorm if
the host does not apply it, pooling and projection if the host does not). Needs torch.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import CLIPConfig, CLIPModel, SiglipConfig, SiglipModel

from ml_target.catalog import TextCut

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4, "num_hidden_layers": 2}
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


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    """ONNX with input `x`, output `y` and a dynamic batch axis (the emulator batches frames)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer chatter about shape checks that are constant here
        torch.onnx.export(
            module,
            (example,),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def run_torch(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


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
