"""Immich's own published models that this worker runs or reads on the host, and where they live.

Immich's service downloads each model from the Hugging Face repository `immich-app/<model name>`
into its cache as `<cache>/<task dir>/<model name>/<file>` (immich-protocol.md §6, §7). This worker
keeps the files it needs from them in the models directory under the same relative paths, so one
layout serves a copy of Immich's `/cache`, a download from Immich's repositories and the worker:

- faces: the pack's recogniser `facial-recognition/<pack>/recognition/model.onnx`, run on the host
  CPU by the compatible face mode (`ml_target.tasks.face_recogniser`);
- smart search: `clip/<model>/textual/model.onnx` and the two tokenizer files, read once by
  `fetch-models` to extract the host-side text files of a Hailo text encoder (`ml_target.text.onnx_host`).
"""

from __future__ import annotations

from pathlib import PurePosixPath

FACE_TASK_DIR = "facial-recognition"
CLIP_TASK_DIR = "clip"
RECOGNISER_FILE = "recognition/model.onnx"
TEXTUAL_FILE = "textual/model.onnx"
TOKENIZER_FILES = ("textual/tokenizer.json", "textual/tokenizer_config.json")
HUB_URL = "https://huggingface.co/immich-app"
# Immich's service downloads the repositories' default branch (huggingface_hub's snapshot_download).
HUB_REVISION = "main"


def recogniser_path(pack: str) -> PurePosixPath:
    """`facial-recognition/<pack>/recognition/model.onnx`, relative to a models directory or Immich's cache."""
    return PurePosixPath(FACE_TASK_DIR, pack, RECOGNISER_FILE)


def clip_path(model: str, file: str) -> PurePosixPath:
    """`clip/<model>/<file>` (e.g. `textual/model.onnx`), relative to Immich's cache."""
    return PurePosixPath(CLIP_TASK_DIR, model, file)


def hub_url(model: str, file: str, base_url: str = HUB_URL) -> str:
    """Where Immich's repository `<base>/<model>` serves `file`: `<base>/<model>/resolve/main/<file>`."""
    return f"{base_url.rstrip('/')}/{model}/resolve/{HUB_REVISION}/{file}"
