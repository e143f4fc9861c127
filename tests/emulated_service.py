"""The whole worker (real runtime, real task handlers, real app) on the emulated device, for tests.

The same assembly as `ml_target.service.build_app`, but keeping a handle on the runtime so tests
can read its health and close it, and with the "none" timing profile unless asked otherwise.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from emulator_helpers import ARCH
from PIL import Image

from ml_target.app import create_app_for_runtime
from ml_target.config import Settings
from ml_target.hailo import emulator
from ml_target.hailo.runtime import Runtime
from ml_target.tasks import create_handlers
from ml_target.testing.emulated_models import register_stand_ins, write_emulated_models_dir



def write_models(directory: Path) -> Path:
    write_emulated_models_dir(directory, arch=ARCH)
    return directory


def emulated_settings(models_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "hailo_device": "emulator",
        "hailo_emulator_profile": "none",
        "models_dir": models_dir,
        "face_serve_any_model_name": True,  # the Hailo ArcFace is not buffalo_l's recogniser
        "request_threads": 2,
    }
    values.update(overrides)
    return Settings(**values)


class EmulatedService:
    """Runtime + handlers + app on the emulated device; `close()` releases everything."""

    def __init__(self, models_dir: Path, **overrides: Any) -> None:
        register_stand_ins()
        emulator.device().reset()
        self.settings = emulated_settings(models_dir, **overrides)
        self.runtime = Runtime(self.settings, rebuild_backoff_s=(0.05, 0.2, 0.5))
        try:
            self.app = create_app_for_runtime(self.settings, create_handlers(self.settings, self.runtime), self.runtime)
        except BaseException:
            self.runtime.close()
            raise

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://ml", timeout=60)

    def close(self) -> None:
        """Shut the worker down, then bring the emulated device back to defaults for the next test
        (`restore()` also frees a device left vanished by a failed test)."""
        self.app.state.service.close()
        self.runtime.close()
        emulator.device().restore()
        emulator.device().reset()


def encode(pixels: np.ndarray | Image.Image, fmt: str = "JPEG", **params: Any) -> bytes:
    image = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(width: int = 320, height: int = 240, seed: int = 0) -> np.ndarray:
    """A smooth, textured RGB image (compresses like a photo, not like noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 255, (max(1, height // 16), max(1, width // 16), 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC))
