"""A `Network` running an emulated HEF's ONNX compute in float32, with no quantisation at all.

The cut-point tests compare our pipeline with the reference model twice: through the real runtime
on the emulator (quantised edges, cosine >= 0.999) and through this double (cosine >= 0.99999), which
isolates the host-side arithmetic from quantisation error. It follows the emulated-HEF semantics
(ml_target/hailo/emulator/README.md) for `onnx` compute: in-network normalisation of 3-channel uint8
inputs, per-input reshape and transpose, output transpose and reshape to the edge shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ml_target.hailo.types import EdgeInfo, QuantInfo


def _edge_info(entry: dict, *, is_input: bool) -> EdgeInfo:
    """As the runtime presents edges: uint8 inputs stay native, everything else is FLOAT32."""
    q = entry["quant"]
    return EdgeInfo(
        name=entry["name"],
        shape=tuple(entry["shape"]),
        dtype=np.dtype(np.uint8 if is_input and entry["type"] == "UINT8" else np.float32),
        quant=QuantInfo(scale=q["scale"], zp=q["zp"], min=q["min"], max=q["max"]),
    )


class FloatHefNetwork:
    """One emulated HEF with `compute.kind == "onnx"`, run frame by frame in float32."""

    batch_size = 1

    def __init__(self, hef_path: Path) -> None:
        hef_path = Path(hef_path)
        document = json.loads(hef_path.read_text(encoding="utf-8"))
        self._compute = document["compute"]
        if self._compute["kind"] != "onnx":
            raise ValueError(f"{hef_path}: only onnx compute runs here, not {self._compute['kind']!r}")
        self.name = document["network_group"]
        self.inputs = tuple(_edge_info(e, is_input=True) for e in document["inputs"])
        self.outputs = tuple(_edge_info(e, is_input=False) for e in document["outputs"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        onnx_path = Path(self._compute["path"])
        onnx_path = onnx_path if onnx_path.is_absolute() else hef_path.parent / onnx_path
        self._session = ort.InferenceSession(str(onnx_path), options)

    async def infer(self, frame: np.ndarray | dict[str, np.ndarray], *, timeout: float | None = None) -> dict[str, np.ndarray]:
        frames = frame if isinstance(frame, dict) else {self.inputs[0].name: frame}
        feeds = {}
        for edge in self.inputs:
            x = np.asarray(frames[edge.name], dtype=np.float32).reshape(edge.shape)
            if edge.dtype == np.uint8:
                x = self._normalise(x)
            x = x[None]
            spec = self._compute["inputs"][edge.name]
            if spec.get("shape"):
                x = x.reshape(1, *spec["shape"])
            if spec.get("transpose"):
                x = x.transpose(spec["transpose"])
            feeds[spec["name"]] = np.ascontiguousarray(x)
        names = [self._compute["outputs"][edge.name]["name"] for edge in self.outputs]
        results = dict(zip(names, self._session.run(names, feeds)))
        outputs = {}
        for edge in self.outputs:
            spec = self._compute["outputs"][edge.name]
            y = results[spec["name"]]
            if spec.get("transpose"):
                y = y.transpose(spec["transpose"])
            outputs[edge.name] = y.reshape(edge.shape).astype(np.float32)
        return outputs

    def _normalise(self, x: np.ndarray) -> np.ndarray:
        """In-network normalisation, which the HEF applies to 3-channel NHWC uint8 pixel inputs."""
        norm = self._compute.get("normalization")
        if norm is None or x.ndim != 3 or x.shape[-1] != 3:
            return x
        return (x - np.asarray(norm["mean"], np.float32)) / np.asarray(norm["std"], np.float32)
