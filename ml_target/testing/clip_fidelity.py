"""Emulated HEFs for a tiny reference model, in the shape of a backend's real HEFs.

`write_text_hef` / `write_image_hef` take the ONNX of the HEF's share of a tiny reference model
(committed fixtures, see ml_target.testing.clip_fixtures) and write an emulated HEF around it whose
edges have the real HEF's layout (e.g. text input (1, 77, W) or (8, 8, W), 16-bit; image output
(1, 1, D) 8- or 16-bit as `ml_target.networks` declares) at the toy width, with QPs calibrated on
sample activations like the Hailo compiler's (the activations computed with ONNX Runtime).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ml_target.catalog import ClipBackend
from ml_target.hailo.emulator.models_dir import NHWC_TO_NCHW, edge_json, normalization_json, write_hef
from ml_target.networks import CLIP_NORM, Edge, Quant

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


def run_onnx(onnx_path: Path, x: np.ndarray) -> np.ndarray:
    """The ONNX's output `y` for the batch `x` (input `x`, dynamic batch axis), in float32."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options)
    return session.run(["y"], {"x": np.ascontiguousarray(x, dtype=np.float32)})[0]


def _place(onnx_source: Path, models_dir: Path, hef: str) -> Path:
    """The ONNX copied next to the HEF it computes for, under the name the HEF refers to."""
    target = Path(models_dir) / f"{hef}.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(onnx_source, target)
    return target


def write_text_hef(onnx_source: Path, backend: ClipBackend, models_dir: Path, calibration: np.ndarray) -> Path:
    """Emulated text HEF running `onnx_source`: everything the host cut leaves to the device.

    `calibration`: (N, L, W) host-prepared inputs (token embeddings) to calibrate the QPs on.
    """
    spec = backend.text_network
    width = calibration.shape[-1]
    onnx_path = _place(onnx_source, models_dir, spec.hef)
    outputs = run_onnx(onnx_path, calibration)
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


def write_image_hef(onnx_source: Path, backend: ClipBackend, models_dir: Path, calibration: np.ndarray) -> Path:
    """Emulated image HEF running `onnx_source`: uint8 (S, S, 3) pixels, in-network normalisation,
    (1, 1, D) output.

    `calibration`: (N, S, S, 3) uint8 crops to calibrate the output QP on.
    """
    spec = backend.image_network
    mean, std = (np.asarray(v, np.float32) for v in spec.normalization)
    pixels = ((calibration.astype(np.float32) - mean) / std).transpose(NHWC_TO_NCHW)
    onnx_path = _place(onnx_source, models_dir, spec.hef)
    outputs = run_onnx(onnx_path, pixels)
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
