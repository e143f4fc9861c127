"""Emulated HEFs for a tiny reference model, in the shape of a backend's real HEFs.

`write_text_hef` / `write_image_hef` export the HEF's share of a `clip_reference` model to ONNX and
write an emulated HEF around it whose edges have the real HEF's layout (e.g. text input (1, 77, W)
or (8, 8, W), 16-bit; image output (1, 1, D) 8- or 16-bit as `ml_target.networks` declares) at the
toy width, with QPs calibrated on sample activations like the Hailo compiler's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ml_target.catalog import ClipBackend
from ml_target.hailo.emulator.models_dir import NHWC_TO_NCHW, edge_json, normalization_json, write_hef
from ml_target.networks import CLIP_NORM, Edge, Quant
from ml_target.testing.clip_reference import ImageHefPart, TextHefPart, export_onnx, run_torch

LEVELS = {"UINT8": 255, "UINT16": 65535}
OPENAI_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
OPENAI_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)


def calibrate(samples: np.ndarray, type_: str) -> Quant:
    """Min/max quantisation of sample activations onto the edge type, as the Hailo compiler does.

    The range always includes 0 and the zero point is an integer, so 0.0 is exactly representable.
    """
    low = min(float(np.min(samples)), 0.0)
    high = max(float(np.max(samples)), 0.0)
    levels = LEVELS[type_]
    scale = (high - low) / levels if high > low else 1.0
    zp = float(np.round(-low / scale))
    return Quant(scale=scale, zp=zp, min=(0 - zp) * scale, max=(levels - zp) * scale)


def text_edge_shapes(backend: ClipBackend, width: int, dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The text HEF's input and output shapes at toy width: the declared layout, last axis resized."""
    spec = backend.text_network
    in_shape = (*spec.inputs[0].shape[:-1], width)
    out_shape = (*spec.outputs[0].shape[:-1], dim if backend.text_cut.pooling == "hef" else width)
    return in_shape, out_shape


def write_text_hef(model: nn.Module, backend: ClipBackend, models_dir: Path, calibration: np.ndarray) -> Path:
    """Emulated text HEF for `model` running everything the host cut leaves to the device.

    `calibration`: (N, L, W) host-prepared inputs (token embeddings) to calibrate the QPs on.
    """
    spec = backend.text_network
    part = TextHefPart(model, backend.text_cut, causal=backend.tokenizer == "clip-bpe").eval()
    width = calibration.shape[-1]
    onnx_path = export_onnx(part, _tensor(calibration[:1]), Path(models_dir) / f"{spec.hef}.onnx")
    outputs = run_torch(part, calibration)
    in_shape, out_shape = text_edge_shapes(backend, width, outputs.shape[-1])
    in_edge = Edge(spec.inputs[0].layer, in_shape, spec.inputs[0].type, quant=calibrate(calibration, spec.inputs[0].type))
    out_edge = Edge(spec.outputs[0].layer, out_shape, spec.outputs[0].type, quant=calibrate(outputs, spec.outputs[0].type))
    return write_hef(
        Path(models_dir) / f"{spec.hef}.hef",
        spec=spec,
        inputs=[edge_json(spec, in_edge)],
        outputs=[edge_json(spec, out_edge)],
        compute={
            "kind": "onnx",
            "path": onnx_path.name,
            "normalization": None,
            "inputs": {spec.vstream(in_edge): {"name": "x", "shape": list(calibration.shape[1:]), "transpose": None}},
            "outputs": {spec.vstream(out_edge): {"name": "y", "transpose": None}},
        },
    )


def write_image_hef(model: nn.Module, backend: ClipBackend, models_dir: Path, calibration: np.ndarray) -> Path:
    """Emulated image HEF: uint8 (S, S, 3) pixels, in-network normalisation, (1, 1, D) output.

    `calibration`: (N, S, S, 3) uint8 crops to calibrate the output QP on.
    """
    spec = backend.image_network
    mean, std = (np.asarray(v, np.float32) for v in spec.normalization)
    pixels = ((calibration.astype(np.float32) - mean) / std).transpose(NHWC_TO_NCHW)
    part = ImageHefPart(model).eval()
    onnx_path = export_onnx(part, _tensor(pixels[:1]), Path(models_dir) / f"{spec.hef}.onnx")
    outputs = run_torch(part, pixels)
    in_edge = spec.inputs[0]
    out_type = spec.outputs[0].type
    out_edge = Edge(spec.outputs[0].layer, (1, 1, outputs.shape[-1]), out_type, quant=calibrate(outputs, out_type))
    return write_hef(
        Path(models_dir) / f"{spec.hef}.hef",
        spec=spec,
        outputs=[edge_json(spec, out_edge)],
        compute={
            "kind": "onnx",
            "path": onnx_path.name,
            "normalization": normalization_json(spec),
            "inputs": {spec.vstream(in_edge): {"name": "x", "shape": None, "transpose": NHWC_TO_NCHW}},
            "outputs": {spec.vstream(out_edge): {"name": "y", "transpose": None}},
        },
    )


def immich_pixels(crops: np.ndarray, backend: ClipBackend) -> np.ndarray:
    """Immich's float normalisation of uint8 crops (B, S, S, 3) -> (B, 3, S, S): /255, -mean, /std."""
    mean, std = _unit_norm(backend)
    return ((crops.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2)


def _unit_norm(backend: ClipBackend) -> tuple[np.ndarray, np.ndarray]:
    """Immich's mean/std in 0..1 units: OpenAI's for CLIP models, 0.5 for SigLIP (§6.3)."""
    if backend.image_network.normalization == CLIP_NORM:
        return OPENAI_MEAN, OPENAI_STD
    return np.full(3, 0.5, np.float32), np.full(3, 0.5, np.float32)


def _tensor(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
