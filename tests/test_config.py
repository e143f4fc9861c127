"""Settings: defaults, parsing, and refusal of values that would silently change behaviour."""

from pathlib import Path

import pytest

from ml_target.config import Settings
from ml_target.errors import ConfigurationError


def test_defaults_match_immich_and_production() -> None:
    s = Settings.from_env({})
    assert s.immich_port == 3003
    assert s.hailo_device == "hailort"  # the emulator is never a silent fallback
    assert s.clip_backend == "vit-b-32" and s.clip_backend_id == "clip_vit_b_32"
    assert s.clip_serve_any_model_name is False
    assert s.tasks == ("clip", "faces", "ocr")


def test_parses_every_kind_of_value() -> None:
    s = Settings.from_env(
        {
            "IMMICH_PORT": "4000",
            "HAILO_DEVICE": "Emulator",
            "CLIP_BACKEND": "siglip",
            "CLIP_SERVE_ANY_MODEL_NAME": "yes",
            "MODELS_DIR": "/models",
            "TASKS": "clip, ocr",
            "REQUEST_TIMEOUT_S": "2.5",
            "MAX_CONNECTIONS": "8",
            "FAST_JPEG_DECODE": "false",
        }
    )
    assert (s.max_connections, s.fast_jpeg_decode) == (8, False)
    assert (s.immich_port, s.hailo_device, s.clip_backend_id) == (4000, "emulator", "siglip_b_16")
    assert s.clip_serve_any_model_name is True
    assert s.models_dir == Path("/models")
    assert s.tasks == ("clip", "ocr")
    assert s.request_timeout_s == 2.5


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CLIP_BACKEND", "vit-l-14", "vit-b-32"),
        ("HAILO_DEVICE", "cpu", "emulator"),
        ("IMMICH_PORT", "http", "int"),
        ("IMMICH_PORT", "0", "at least"),
        ("CLIP_SERVE_ANY_MODEL_NAME", "maybe", "boolean"),
        ("TASKS", "clip,video", "subset"),
        ("REQUEST_TIMEOUT_S", "nan", "at least"),
    ],
)
def test_refuses_unknown_values_with_the_accepted_ones(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError, match=fragment):
        Settings.from_env({name: value})
