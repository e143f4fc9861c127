"""Shared pieces of the emulator tests: tiny emulated HEFs with known compute (fixtures live in
`emulator_helpers.fixtures`, loaded with `pytest_plugins`).

Networks here compute `out = 2 * in + 1` (a registered callable), so every caller can check that it
received exactly its own frame's result.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ml_target.hailo import emulator
from ml_target.hailo.emulator.hailo_platform import HailoSchedulingAlgorithm, VDevice
from ml_target.hailo.emulator.models_dir import write_hef

# The chip the suite runs on (`pytest --emulated-arch`, tests/conftest.py) and its timing profile.
ARCH = os.environ.get("ML_TARGET_TEST_ARCH", "hailo8")
PROFILE = ARCH
LIBRARY = "5.3.0" if ARCH == "hailo10h" else "4.23.0"  # the emulated HailoRT that drives it
U8 = {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": 255.0}
AFFINE = "emulator_test_affine"
IDENTITY = "emulator_test_identity"


def affine(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    (name, x), = inputs.items()
    return {f"{name.split('/')[0]}/out": 2.0 * x + 1.0}


def _identity(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    (name, x), = inputs.items()
    return {f"{name.split('/')[0]}/out": x}


emulator.register_compute(AFFINE, affine)
emulator.register_compute(IDENTITY, _identity)


def write_net(
    directory: Path,
    group: str,
    *,
    shape: Sequence[int] = (8,),
    in_type: str = "UINT8",
    out_type: str = "UINT8",
    in_quant: dict | None = None,
    out_quant: dict | None = None,
    compute: str = AFFINE,
    timing: tuple[float, float] = (0.0, 0.0),
    hw_arch: str = ARCH,
    multi_context: bool = False,
    max_queue_size: int | None = None,
) -> str:
    """An emulated HEF `<group>.hef` with one input `<group>/in` and one output `<group>/out`."""
    order = {1: "NC", 2: "NHW", 3: "NHWC"}[len(shape)]
    path = write_hef(
        directory / f"{group}.hef",
        network_group=group,
        inputs=[{"name": f"{group}/in", "shape": list(shape), "type": in_type, "order": order, "quant": in_quant or U8}],
        outputs=[{"name": f"{group}/out", "shape": list(shape), "type": out_type, "order": order,
                  "quant": out_quant or U8}],
        compute={"kind": "callable", "name": compute},
        timing_ms={"hailo8": list(timing), "hailo8l": [2 * timing[0], 2 * timing[1]], "hailo10h": list(timing)},
        hw_arch=hw_arch,
        multi_context=multi_context,
        max_queue_size=max_queue_size,
    )
    return str(path)


def scheduled_params():
    params = VDevice.create_params()
    params.scheduling_algorithm = HailoSchedulingAlgorithm.ROUND_ROBIN
    return params


def marker(i: int, size: int = 8) -> np.ndarray:
    """A distinct uint8 frame per caller (values stay below 128 so 2x+1 fits in uint8)."""
    return ((np.arange(size) * 5 + i * 3) % 120).astype(np.uint8)


def bind(configured, infer_model, frame: np.ndarray, out_dtype=np.uint8):
    """Bindings with `frame` as input and a fresh output buffer; returns (bindings, output buffer)."""
    out = np.zeros(infer_model.outputs[0].shape, dtype=out_dtype)
    bindings = configured.create_bindings(
        input_buffers={infer_model.input_names[0]: frame}, output_buffers={infer_model.output_names[0]: out}
    )
    return bindings, out
