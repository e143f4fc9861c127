"""Immich's tasks on the device: one module per task, each registering the model names it serves."""

from __future__ import annotations

from collections.abc import Callable

from ml_target.config import Settings
from ml_target.tasks.base import Handler


def _factories() -> dict[str, Callable[..., list[Handler]]]:
    from ml_target.tasks.clip import create_clip_handlers
    from ml_target.tasks.faces import create_face_handlers
    from ml_target.tasks.ocr import create_ocr_handlers

    return {"clip": create_clip_handlers, "faces": create_face_handlers, "ocr": create_ocr_handlers}


def create_task_handlers(task: str, settings: Settings, runtime) -> list[Handler]:
    """Load one task's networks (`clip`, `faces` or `ocr`) and return its handlers."""
    return list(_factories()[task](settings, runtime))


def create_handlers(settings: Settings, runtime) -> list[Handler]:
    """Load the networks of every enabled task (`TASKS`) and return their handlers."""
    handlers: list[Handler] = []
    for task in settings.tasks:
        handlers += create_task_handlers(task, settings, runtime)
    return handlers
