"""What an emulated network computes: ONNX via onnxruntime, a synthetic function, or a callable.

Every backend maps `{vstream name: (B, *edge shape) float32}` of dequantised inputs to
`{vstream name: (B, *edge shape) float32}` outputs; quantisation around it is the device's job.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ml_target.hailo.emulator.exceptions import Status, StatusError
from ml_target.hailo.emulator.hef import quant_of
from ml_target.hailo.emulator.hef_format import HefDesc
from ml_target.hailo.emulator.quant import DTYPES, representable_range

Arrays = dict[str, np.ndarray]
ComputeFn = Callable[[Arrays], Arrays]


_registry: dict[str, ComputeFn] = {}
_registry_lock = threading.Lock()
_sessions: dict[tuple[str, float], Any] = {}
_sessions_lock = threading.Lock()


def register_compute(name: str, fn: ComputeFn) -> None:
    """Register `fn` for emulated HEFs with `compute: {"kind": "callable", "name": name}`."""
    with _registry_lock:
        _registry[name] = fn


def unregister_compute(name: str) -> None:
    with _registry_lock:
        _registry.pop(name, None)


def _registered(name: str) -> ComputeFn:
    with _registry_lock:
        fn = _registry.get(name)
    if fn is None:
        raise StatusError(Status.HAILO_NOT_FOUND, f"No compute function registered as {name!r} (register_compute)")
    return fn


class CallableCompute:
    """Looks the function up at every burst so a test may re-register it between runs."""

    def __init__(self, name: str) -> None:
        _registered(name)
        self._name = name

    def __call__(self, inputs: Arrays) -> Arrays:
        return _registered(self._name)(inputs)


class SyntheticCompute:
    """A deterministic function of the whole input: a CRC of every input byte (cheap enough to keep
    up with the modelled device on 640x640 frames) and the seed drive a PRNG, so equal inputs give
    equal outputs and any change anywhere changes every output. Values are uniform over each output
    edge's representable float range."""

    def __init__(self, desc: HefDesc, seed: int) -> None:
        self._seed = int(seed)
        self._outputs = [(e.name, e.shape, representable_range(quant_of(e), DTYPES[e.type])) for e in desc.outputs]
        self._input_names = sorted(e.name for e in desc.inputs)

    def __call__(self, inputs: Arrays) -> Arrays:
        batch = next(iter(inputs.values())).shape[0]
        out = {name: np.empty((batch, *shape), np.float32) for name, shape, _ in self._outputs}
        for b in range(batch):
            crc = 0
            for name in self._input_names:
                frame = np.ascontiguousarray(inputs[name][b], dtype=np.float32)
                crc = zlib.crc32(memoryview(frame).cast("B"), crc)
            rng = np.random.default_rng([self._seed, crc])
            for name, shape, (lo, hi) in self._outputs:
                out[name][b] = rng.uniform(lo, hi, size=shape)
        return out


def _session(path: Path):
    """One cached InferenceSession per ONNX file (keyed by path and mtime)."""
    import onnxruntime as ort

    key = (str(path), path.stat().st_mtime)
    with _sessions_lock:
        if key not in _sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.enable_cpu_mem_arena = False
            options.log_severity_level = 3
            try:
                _sessions[key] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - onnxruntime raises several unrelated types
                raise StatusError(Status.HAILO_INVALID_HEF, f"onnxruntime cannot load {path}: {exc}") from None
        return _sessions[key]


_ORT_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64,
               "tensor(int32)": np.int32, "tensor(float16)": np.float16}


class OnnxCompute:
    """Runs an ONNX model with the HEF's in-network normalisation folded in front of it."""

    def __init__(self, desc: HefDesc, spec: Mapping[str, Any]) -> None:
        path = Path(str(spec.get("path", "")))
        if not path.is_absolute():
            path = (desc.directory or Path.cwd()) / path
        if not path.is_file():
            raise StatusError(Status.HAILO_INVALID_HEF, f"ONNX file of emulated HEF not found: {path}")
        self._session = _session(path)
        self._edges = {e.name: e for e in desc.edges}
        norm = spec.get("normalization")
        self._norm = None if norm is None else (
            np.asarray(norm["mean"], np.float32), np.asarray(norm["std"], np.float32))
        onnx_inputs = {i.name: i for i in self._session.get_inputs()}
        self._inputs = dict(spec.get("inputs") or {})
        self._outputs = dict(spec.get("outputs") or {})
        missing = [v for v in list(self._inputs) + list(self._outputs) if v not in self._edges]
        unknown = [c["name"] for c in self._inputs.values() if c["name"] not in onnx_inputs]
        if missing or unknown or set(self._inputs) != {e.name for e in desc.inputs} \
                or set(self._outputs) != {e.name for e in desc.outputs}:
            raise StatusError(
                Status.HAILO_INVALID_HEF,
                f"ONNX mapping of {path.name} does not match the HEF edges "
                f"(unknown vstreams {missing}, unknown ONNX inputs {unknown})",
            )
        self._feed_dtypes = {n: _ORT_DTYPES.get(i.type, np.float32) for n, i in onnx_inputs.items()}
        first = self._session.get_inputs()[0].shape
        self._per_frame = bool(first) and first[0] == 1

    def _feed(self, vstream: str, x: np.ndarray) -> tuple[str, np.ndarray]:
        cfg = self._inputs[vstream]
        edge = self._edges[vstream]
        if self._norm is not None and edge.type == "UINT8" and edge.order == "NHWC" and edge.shape[-1] == 3:
            x = (x - self._norm[0]) / self._norm[1]
        if cfg.get("shape"):
            x = x.reshape((x.shape[0], *cfg["shape"]))
        if cfg.get("transpose"):
            x = x.transpose(cfg["transpose"])
        return cfg["name"], np.ascontiguousarray(x, dtype=self._feed_dtypes[cfg["name"]])

    def _run(self, feeds: Arrays) -> Arrays:
        names = [cfg["name"] for cfg in self._outputs.values()]
        if not self._per_frame:
            return dict(zip(names, self._session.run(names, feeds)))
        batch = next(iter(feeds.values())).shape[0]
        frames = [self._session.run(names, {k: v[b:b + 1] for k, v in feeds.items()}) for b in range(batch)]
        return {n: _batch(f[i] for f in frames) for i, n in enumerate(names)}

    def __call__(self, inputs: Arrays) -> Arrays:
        feeds = dict(self._feed(v, x) for v, x in inputs.items())
        results = self._run(feeds)
        out = {}
        for vstream, cfg in self._outputs.items():
            y = results[cfg["name"]]
            if cfg.get("transpose"):
                y = y.transpose(cfg["transpose"])
            out[vstream] = np.asarray(y, np.float32).reshape((y.shape[0], *self._edges[vstream].shape))
        return out


def _batch(frames) -> np.ndarray:
    """One frame's outputs each, joined along the batch axis: concatenated when they carry one of
    size 1, stacked when they carry none (insightface's det_10g.onnx emits (anchors, channels))."""
    frames = list(frames)
    return np.concatenate(frames) if frames[0].shape[:1] == (1,) else np.stack(frames)


class ConstantCompute:
    """Every output at its edge's zero point, whatever the input, which is not even read: costs the
    emulator no CPU, for benchmarks of the host code against the modelled device time alone (the
    device thread skips dequantising inputs and converts the outputs once per user format)."""

    reads_inputs = False

    def __init__(self, desc: HefDesc) -> None:
        self._shapes = {e.name: e.shape for e in desc.outputs}

    def __call__(self, inputs: Arrays) -> Arrays:
        batch = next(iter(inputs.values())).shape[0]
        return {name: np.zeros((batch, *shape), np.float32) for name, shape in self._shapes.items()}


def build_compute(desc: HefDesc) -> ComputeFn:
    """The compute backend an emulated HEF declares (raises StatusError when it cannot be built)."""
    spec = desc.compute
    if spec["kind"] == "constant":
        return ConstantCompute(desc)
    if spec["kind"] == "onnx":
        return OnnxCompute(desc, spec)
    if spec["kind"] == "synthetic":
        return SyntheticCompute(desc, int(spec.get("seed", 0)))
    return CallableCompute(str(spec.get("name", "")))
