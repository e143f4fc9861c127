"""One way to open Immich's ONNX files: CPU only, quiet, so the reference runs anywhere."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def cpu_session(path: Path | str, threads: int = 0) -> ort.InferenceSession:
    """A CPU session (Immich's reference provider); shape-merge warnings of some exports silenced."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
