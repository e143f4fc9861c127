"""Checking caller frames against a network's edges before they reach the device.

HailoRT checks only contiguity at `set_buffer` and the byte count at `run_async`, and a failed
`run_async` shuts the configured model down for every caller (hailort.md §6.1, §7). A wrong shape
with the right byte count would even run and return garbage. So every frame is checked here, on
the caller's side, for names, dtype, shape and finiteness; a bad frame fails alone.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ml_target.hailo.types import EdgeInfo


class FrameError(ValueError):
    """A frame does not match the network's input edges (a programming error in the caller)."""


def check_frame(frame: np.ndarray | Mapping[str, np.ndarray], inputs: tuple[EdgeInfo, ...], network: str) -> dict[str, np.ndarray]:
    """Return the frame as {input name: C-contiguous array of the edge's shape}, or raise FrameError.

    A single array is accepted for single-input networks. Arrays may carry a leading batch axis of
    1. Non-contiguous arrays are copied rather than refused: the caller did nothing wrong.
    """
    if isinstance(frame, np.ndarray):
        if len(inputs) != 1:
            names = ", ".join(edge.name for edge in inputs)
            raise FrameError(f"{network} has {len(inputs)} inputs ({names}); pass a dict name -> array")
        frame = {inputs[0].name: frame}
    if not isinstance(frame, Mapping):
        raise FrameError(f"{network}: a frame is an ndarray or a dict of ndarrays, not {type(frame).__name__}")
    expected = {edge.name for edge in inputs}
    if set(frame) != expected:
        missing = sorted(expected - set(frame))
        unknown = sorted(set(frame) - expected)
        raise FrameError(f"{network}: frame inputs do not match the HEF (missing {missing}, unknown {unknown})")
    return {edge.name: _check_array(frame[edge.name], edge, network) for edge in inputs}


def _check_array(array: object, edge: EdgeInfo, network: str) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise FrameError(f"{network}: input {edge.name} must be an ndarray, not {type(array).__name__}")
    if array.dtype == np.uint8 and edge.dtype == np.float32:
        # Pixels for a 16-bit image edge (none is known to exist: docs/hardware-evidence.md): as float32
        # libhailort quantises them with the edge's QP; as uint8 it would cast them into uint16 codes.
        array = array.astype(np.float32)
    if array.dtype != edge.dtype:
        raise FrameError(f"{network}: input {edge.name} must be {edge.dtype}, got {array.dtype}")
    if array.shape != edge.shape:
        if array.shape != (1, *edge.shape):
            raise FrameError(f"{network}: input {edge.name} must have shape {edge.shape}, got {array.shape}")
        array = array.reshape(edge.shape)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise FrameError(f"{network}: input {edge.name} contains NaN or infinite values")
    return np.ascontiguousarray(array)


def output_buffers(outputs: tuple[EdgeInfo, ...]) -> dict[str, np.ndarray]:
    """Fresh output arrays for one frame: each caller owns its results, no copy and no cross-talk."""
    return {edge.name: np.empty(edge.shape, dtype=edge.dtype) for edge in outputs}
