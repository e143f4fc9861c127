"""User buffers <-> device edges: what libhailort's host-side transform does per frame.

The device sees raw edge values (UINT8/UINT16 q). A user buffer holds either the same raw values
(native format), another integer width (cast), or FLOAT32, which libhailort quantises on the way
in and dequantises on the way out with the edge's QP. Buffers are reinterpreted by their bytes,
as DMA would: there is no dtype or shape check, only the byte count (checked at submission).
"""

from __future__ import annotations

import numpy as np

from ml_target.hailo.emulator.hef import quant_of
from ml_target.hailo.emulator.hef_format import EdgeDesc
from ml_target.hailo.emulator.quant import DTYPES, dequantize, quantize


def frame_size(edge: EdgeDesc, user_type: str) -> int:
    """Bytes of one frame in the user's format: prod(shape) * bytes(type)."""
    return int(np.prod(edge.shape)) * DTYPES[user_type].itemsize


def _as_type(buffer: np.ndarray, user_type: str, shape: tuple[int, ...]) -> np.ndarray:
    return buffer.reshape(-1).view(np.uint8).view(DTYPES[user_type]).reshape(shape)


def read_input(buffer: np.ndarray, edge: EdgeDesc, user_type: str) -> np.ndarray:
    """One input frame as the device computes on it: raw edge values, dequantised to float32."""
    edge_dtype = DTYPES[edge.type]
    quant = quant_of(edge)
    user = _as_type(buffer, user_type, edge.shape)
    if user_type == edge.type:
        q = user
    elif user_type == "FLOAT32":
        q = quantize(user, quant, edge_dtype)
    else:
        q = np.clip(user, 0, np.iinfo(edge_dtype).max).astype(edge_dtype)
    return dequantize(q, quant)


def to_user_format(values: np.ndarray, edge: EdgeDesc, user_type: str) -> np.ndarray:
    """Outputs as the caller receives them: quantised to the edge type, then dequantised for FLOAT32."""
    edge_dtype = DTYPES[edge.type]
    quant = quant_of(edge)
    q = quantize(values, quant, edge_dtype)
    if user_type == "FLOAT32":
        return dequantize(q, quant)
    return q.astype(DTYPES[user_type], copy=False)


def write_output(buffer: np.ndarray, edge: EdgeDesc, user_type: str, data: np.ndarray) -> None:
    """Copy one frame already in the user's format into the user's buffer, byte for byte."""
    np.copyto(_as_type(buffer, user_type, edge.shape), data.reshape(edge.shape))
