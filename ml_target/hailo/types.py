"""What the layers above see of the device: a network that turns one frame into named outputs.

Tasks depend on this small protocol, never on HailoRT objects, so they run unchanged against the
real device, the emulator, or a test double.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class QuantInfo:
    """Quantisation of one edge, as read from the HEF: float = (q - zp) * scale."""

    scale: float
    zp: float
    min: float
    max: float

    def dequantise(self, q: np.ndarray) -> np.ndarray:
        """float32 values of raw edge integers, computed as libhailort does: (q - zp) * scale in float32."""
        return (q.astype(np.float32) - np.float32(self.zp)) * np.float32(self.scale)


@dataclass(frozen=True)
class EdgeInfo:
    """One input or output edge of a configured network (shape without the batch axis).

    `dtype` is what callers exchange with the network (the user format); `native_type` and `order`
    are how the HEF itself stores the edge ("UINT8", "NHWC", ...), for `doctor` and /health.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    quant: QuantInfo
    native_type: str | None = None
    order: str | None = None

    def describe(self) -> dict[str, object]:
        """The edge as /health and `doctor` report it."""
        return {
            "name": self.name,
            "shape": list(self.shape),
            "native_type": self.native_type,
            "order": self.order,
            "user_type": str(self.dtype).upper(),
            "quant": {"scale": self.quant.scale, "zp": self.quant.zp, "min": self.quant.min, "max": self.quant.max},
        }


class Network(Protocol):
    """A configured HEF on the device.

    `infer` takes one frame: a single array when the network has one input, else a mapping from
    input edge name to array. Inputs on 8-bit edges are uint8; inputs on 16-bit edges are float32
    (HailoRT quantises them with the edge's QP). It returns arrays keyed by output edge name, shaped
    as `outputs[i].shape`, of dtype `outputs[i].dtype`: float32, dequantised, unless the network was
    loaded with raw outputs, whose native integers the caller dequantises with `outputs[i].quant`. Concurrent calls are batched into device bursts;
    each caller gets its own frame's results.
    """

    name: str
    inputs: tuple[EdgeInfo, ...]
    outputs: tuple[EdgeInfo, ...]
    batch_size: int

    async def infer(self, frame: np.ndarray | dict[str, np.ndarray], *, timeout: float | None = None) -> dict[str, np.ndarray]: ...

    def announce(self) -> AbstractContextManager[None]:
        """Entered before a request's host work: its frames are coming, so a partial burst may wait for them."""
