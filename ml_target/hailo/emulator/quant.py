"""Quantisation as libhailort does it, plus pyhailort's `HailoRTTransformUtils`.

float = (q - zp) * scale; quantise = clip to [limvals_min, limvals_max], then
round-half-to-even(x / scale + zp), cast to the edge type. Arithmetic is float32 like libhailort's.
"""

from __future__ import annotations

import numpy as np

from ml_target.hailo.emulator.enums import FormatType
from ml_target.hailo.emulator.exceptions import HailoRTInvalidArgumentException

DTYPES = {"UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16), "FLOAT32": np.dtype(np.float32)}


class QuantInfo:
    """pybind `QuantInfo(qp_zp, qp_scale, limvals_min, limvals_max)`; fields are float32 values."""

    __slots__ = ("limvals_max", "limvals_min", "qp_scale", "qp_zp")

    def __init__(self, qp_zp: float = 0.0, qp_scale: float = 0.0, limvals_min: float = 0.0, limvals_max: float = 0.0):
        self.qp_zp = float(np.float32(qp_zp))
        self.qp_scale = float(np.float32(qp_scale))
        self.limvals_min = float(np.float32(limvals_min))
        self.limvals_max = float(np.float32(limvals_max))

    def __getstate__(self) -> tuple[float, float, float, float]:
        return (self.qp_zp, self.qp_scale, self.limvals_min, self.limvals_max)

    def __setstate__(self, state: tuple[float, float, float, float]) -> None:
        self.qp_zp, self.qp_scale, self.limvals_min, self.limvals_max = state

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuantInfo) and self.__getstate__() == other.__getstate__()

    def __repr__(self) -> str:
        return (
            f"QuantInfo(qp_zp={self.qp_zp}, qp_scale={self.qp_scale}, "
            f"limvals_min={self.limvals_min}, limvals_max={self.limvals_max})"
        )


def dequantize(q: np.ndarray, quant: QuantInfo) -> np.ndarray:
    """Raw edge values -> float32: (q - zp) * scale (a plain cast for the identity QP of pixels)."""
    x = q.astype(np.float32)
    if quant.qp_zp != 0.0:
        x -= np.float32(quant.qp_zp)
    if quant.qp_scale != 1.0:
        x *= np.float32(quant.qp_scale)
    return x


def quantize(x: np.ndarray, quant: QuantInfo, dtype: np.dtype) -> np.ndarray:
    """float -> raw edge values: clip to limvals, x / scale + zp, round half to even, saturate, cast."""
    info = np.iinfo(dtype)
    x = np.asarray(x, dtype=np.float32)
    if quant.limvals_min < quant.limvals_max:
        x = np.clip(x, np.float32(quant.limvals_min), np.float32(quant.limvals_max))
    q = np.rint(x / np.float32(quant.qp_scale) + np.float32(quant.qp_zp))
    return np.clip(q, info.min, info.max).astype(dtype)


def representable_range(quant: QuantInfo, dtype: np.dtype) -> tuple[float, float]:
    """The float interval an edge can express: dequantised type range intersected with limvals."""
    info = np.iinfo(dtype)
    lo, hi = sorted(float(v) for v in dequantize(np.array([info.min, info.max]), quant))
    if quant.limvals_min < quant.limvals_max:
        lo, hi = max(lo, quant.limvals_min), min(hi, quant.limvals_max)
    return lo, hi


def _dtype_of(format_type: FormatType) -> np.dtype:
    names = {FormatType.UINT8: "UINT8", FormatType.UINT16: "UINT16", FormatType.FLOAT32: "FLOAT32"}
    if format_type not in names:
        raise HailoRTInvalidArgumentException(f"Unsupported format type {format_type}")
    return DTYPES[names[format_type]]


def _check_quant(quant: QuantInfo) -> None:
    if quant.qp_scale == 0:
        raise HailoRTInvalidArgumentException(
            "Invalid quant_info (qp_scale is 0): this output has per-feature quantisation; "
            "set its format type to FLOAT32 so libhailort dequantises it"
        )


class HailoRTTransformUtils:
    """The host-side (de)quantisation utilities of pyhailort, for callers using native formats."""

    @staticmethod
    def dequantize_output_buffer(src_buffer: np.ndarray, dst_buffer: np.ndarray, elements_count: int, quant_info: QuantInfo) -> None:
        _check_quant(quant_info)
        flat = dst_buffer.reshape(-1)
        flat[:elements_count] = dequantize(src_buffer.reshape(-1)[:elements_count], quant_info).astype(dst_buffer.dtype)

    @staticmethod
    def dequantize_output_buffer_in_place(raw_buffer: np.ndarray, dst_dtype, elements_count: int, quant_info: QuantInfo) -> None:
        _check_quant(quant_info)
        flat = raw_buffer.reshape(-1)
        flat[:elements_count] = dequantize(flat[:elements_count], quant_info).astype(flat.dtype)

    @staticmethod
    def quantize_input_buffer(src_buffer: np.ndarray, dst_buffer: np.ndarray, elements_count: int, quant_info: QuantInfo) -> None:
        _check_quant(quant_info)
        flat = dst_buffer.reshape(-1)
        flat[:elements_count] = quantize(src_buffer.reshape(-1)[:elements_count], quant_info, dst_buffer.dtype)

    @staticmethod
    def get_dtype(data_bytes: int) -> np.dtype:
        return {1: DTYPES["UINT8"], 2: DTYPES["UINT16"], 4: DTYPES["FLOAT32"]}[data_bytes]

    @staticmethod
    def format_type_to_dtype(format_type: FormatType) -> np.dtype:
        return _dtype_of(format_type)
