"""Assembles the worker: the runtime on the configured device, the task handlers, the HTTP app."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from ml_target.app import create_app_for_runtime
from ml_target.config import Settings
from ml_target.hailo.runtime import Runtime
from ml_target.tasks import create_handlers

log = logging.getLogger(__name__)


def build_app(settings: Settings) -> FastAPI:
    """Open the device, configure every network the settings need, and serve them.

    Fails fast (ConfigurationError) when a HEF or host file is missing or the device cannot be
    opened: a worker that starts without its models would only fail later, request by request.
    """
    if settings.hailo_device == "emulator":
        from ml_target.testing.emulated_models import register_stand_ins

        register_stand_ins()
    runtime = Runtime(settings)
    try:
        handlers = create_handlers(settings, runtime)
    except BaseException:
        runtime.close()
        raise
    log.info("serving %s", ", ".join(f"{h.task}/{h.type}" for h in handlers))
    return create_app_for_runtime(settings, handlers, runtime)
