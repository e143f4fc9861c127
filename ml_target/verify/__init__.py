"""`verify`: measure, on the user's own machine, how closely this worker's outputs match Immich's.

The same inputs go through Immich's own ONNX models on the CPU (read from an `immich-machine-learning`
model cache, with Immich's documented pre- and post-processing, immich-protocol.md §6) and through
this worker's real service path on the configured device. The report gives per-task agreement
(cosine, retrieval overlap, box IoU, exact OCR lines), a verdict against stated thresholds, and a
non-zero exit when a task the worker claims to serve faithfully falls short.

Modules: `cache` (reading Immich's cache), `reference_clip` / `reference_faces` / `reference_ocr`
(Immich's pipelines on onnxruntime, sessions from `onnx_session`), `worker` (this worker through
its ASGI app), `metrics`, `compare` (running both sides per task), `report` (verdicts, table,
JSON, PNG), `samples` (the built-in images and queries), `command` (the CLI entry).
"""

from ml_target.verify.command import DESCRIPTION, add_arguments, main, run

__all__ = ["DESCRIPTION", "add_arguments", "main", "run"]
