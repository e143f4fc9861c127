"""Settings from the environment: one typed, immutable object, read once at start-up.

Unknown values are refused with the list of accepted ones rather than silently replaced by a
default: a typo in `CLIP_BACKEND` must not quietly change which embedding space a library is in.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from ml_target.errors import ConfigurationError

DEVICES = ("hailort", "emulator")
ARCHES = ("auto", "hailo8", "hailo8l", "hailo10h")
EMULATOR_PROFILES = ("hailo8", "hailo8l", "hailo10h", "none")
EMULATOR_CHIPS = ("hailo8", "hailo8l", "hailo10h")
EMULATOR_HAILORT = ("auto", "4", "5")
# HailoRT prints PCIe ids as "%04x:%02x:%02x.%d", or without the domain (pcie_device.cpp).
PCIE_ID = re.compile(r"^(?:[0-9a-f]{4}:)?[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
CLIP_BACKENDS = {
    "vit-b-32": "clip_vit_b_32",
    "vit-b-16": "clip_vit_b_16",
    "siglip": "siglip_b_16",
    "siglip2": "siglip2_b_32_256",
    "tinyclip": "tinyclip_vit_39m",
}
FACE_DETECTORS = ("scrfd_2.5g", "scrfd_10g")
FACE_RECOGNISERS = ("arcface_r50", "arcface_mobilefacenet")
CHANNEL_ORDERS = ("bgr", "rgb")
# Immich's insightface packs; the configured one's own recogniser runs on the host CPU (compatible mode).
FACE_PACKS = ("buffalo_l", "buffalo_m", "buffalo_s", "antelopev2")
TASKS = ("clip", "faces", "ocr")


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(f"{name}={raw!r} is not a boolean; use true or false")


def _choice(name: str, raw: str, allowed: tuple[str, ...] | Mapping[str, str]) -> str:
    value = raw.strip().lower()
    if value not in allowed:
        raise ConfigurationError(f"{name}={raw!r} is not one of: {', '.join(allowed)}")
    return value


def _number(name: str, raw: str, kind: type, minimum: float) -> float | int:
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if not value >= minimum:
        raise ConfigurationError(f"{name}={raw!r} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    """Everything the worker can be told. Field names match the environment variables, lower-cased."""

    immich_host: str = "::"
    immich_port: int = 3003
    hailo_device: str = "hailort"
    hailo_arch: str = "auto"
    hailo_device_ids: tuple[str, ...] = ()  # () = one free card (HailoRT's choice); ("all",) = every card
    hailo_group_id: str = "SHARED"
    hailo_multi_process_service: bool = False
    hailo_emulator_profile: str = "hailo8"
    hailo_emulator_devices: tuple[str, ...] = ()  # the emulated cards' chips; () = leave the emulator as it is
    hailo_emulator_hailort: str = "auto"  # the emulated HailoRT line; auto = the one that drives the cards
    models_dir: Path = Path("models")
    tasks: tuple[str, ...] = TASKS
    clip_backend: str = "vit-b-32"
    clip_serve_any_model_name: bool = False
    face_detector: str = "scrfd_10g"
    face_recogniser: str = "arcface_r50"
    face_serve_any_model_name: bool = False
    ocr_recogniser_channels: str = "bgr"
    face_model: str = "buffalo_l"
    face_recognition_threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    request_timeout_s: float = 30.0
    queue_wait_s: float = 10.0
    max_queued_frames: int = 256
    max_upload_bytes: int = 64 * 1024 * 1024
    max_image_pixels: int = 100_000_000
    max_entries_bytes: int = 16 * 1024
    max_connections: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    fast_jpeg_decode: bool = True
    search_session_s: float = 10.0
    search_background_share: float = 0.03
    request_threads: int = field(default_factory=lambda: max(1, os.cpu_count() or 1))
    log_level: str = "info"

    @property
    def clip_backend_id(self) -> str:
        """The catalog id of the selected CLIP backend (e.g. `clip_vit_b_32`)."""
        return CLIP_BACKENDS[self.clip_backend]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read settings from `env` (default: the process environment); unset names keep defaults."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f.name.upper())
            if raw is None:
                continue
            values[f.name] = _parse(f.name, f.name.upper(), raw)
        return cls(**values)


def _parse(field_name: str, env_name: str, raw: str) -> object:
    parsers = {
        "immich_host": lambda: raw.strip() or "::",
        "immich_port": lambda: _number(env_name, raw, int, 1),
        "hailo_device": lambda: _choice(env_name, raw, DEVICES),
        "hailo_arch": lambda: _choice(env_name, raw, ARCHES),
        "hailo_device_ids": lambda: device_ids(env_name, raw),
        "hailo_group_id": lambda: raw.strip() or "SHARED",
        "hailo_multi_process_service": lambda: _bool(env_name, raw),
        "hailo_emulator_profile": lambda: _choice(env_name, raw, EMULATOR_PROFILES),
        "hailo_emulator_devices": lambda: _chips(env_name, raw),
        "hailo_emulator_hailort": lambda: _choice(env_name, raw, EMULATOR_HAILORT),
        "models_dir": lambda: Path(raw),
        "tasks": lambda: _tasks(env_name, raw),
        "clip_backend": lambda: _choice(env_name, raw, CLIP_BACKENDS),
        "clip_serve_any_model_name": lambda: _bool(env_name, raw),
        "face_detector": lambda: _choice(env_name, raw, FACE_DETECTORS),
        "face_recogniser": lambda: _choice(env_name, raw, FACE_RECOGNISERS),
        "face_serve_any_model_name": lambda: _bool(env_name, raw),
        "ocr_recogniser_channels": lambda: _choice(env_name, raw, CHANNEL_ORDERS),
        "face_model": lambda: _choice(env_name, raw, FACE_PACKS),
        "face_recognition_threads": lambda: _number(env_name, raw, int, 1),
        "request_timeout_s": lambda: _number(env_name, raw, float, 0.1),
        "queue_wait_s": lambda: _number(env_name, raw, float, 0.0),
        "max_queued_frames": lambda: _number(env_name, raw, int, 1),
        "max_upload_bytes": lambda: _number(env_name, raw, int, 1),
        "max_image_pixels": lambda: _number(env_name, raw, int, 1),
        "max_entries_bytes": lambda: _number(env_name, raw, int, 2),
        "max_connections": lambda: _number(env_name, raw, int, 1),
        "header_timeout_s": lambda: _number(env_name, raw, float, 0.1),
        "body_timeout_s": lambda: _number(env_name, raw, float, 0.1),
        "fast_jpeg_decode": lambda: _bool(env_name, raw),
        "search_session_s": lambda: _number(env_name, raw, float, 0.0),
        "search_background_share": lambda: _share(env_name, raw),
        "request_threads": lambda: _number(env_name, raw, int, 1),
        "log_level": lambda: _choice(env_name, raw, ("debug", "info", "warning", "error")),
    }
    return parsers[field_name]()


def _share(name: str, raw: str) -> float:
    value = _number(name, raw, float, 0.001)
    if value > 1:
        raise ConfigurationError(f"{name}={raw!r} is a fraction of the device's time: give 0.001 to 1")
    return value


def device_ids(name: str, raw: str) -> tuple[str, ...]:
    """HAILO_DEVICE_IDS: "" (one free card, HailoRT's choice), "all", or a comma list of PCIe ids."""
    value = raw.strip().lower()
    if not value:
        return ()
    if value == "all":
        return ("all",)
    ids = tuple(part.strip() for part in value.split(",") if part.strip())
    bad = [i for i in ids if not PCIE_ID.match(i)]
    if bad or not ids:
        raise ConfigurationError(
            f"{name}={raw!r}: give `all` or PCIe ids as HailoRT lists them (`hailortcli scan`), e.g. "
            f"0000:01:00.0,0000:02:00.0; not {', '.join(bad) or 'an empty list'}"
        )
    if len(set(ids)) != len(ids):
        raise ConfigurationError(f"{name}={raw!r} names a card twice")
    return ids


def _chips(name: str, raw: str) -> tuple[str, ...]:
    """HAILO_EMULATOR_DEVICES: the emulated cards, e.g. `hailo8,hailo8` or `hailo8,hailo8l`."""
    chips = tuple(part.strip().lower() for part in raw.split(",") if part.strip())
    unknown = [c for c in chips if c not in EMULATOR_CHIPS]
    if unknown:
        raise ConfigurationError(f"{name}={raw!r}: give a comma-separated list of {', '.join(EMULATOR_CHIPS)}")
    return chips


def _tasks(name: str, raw: str) -> tuple[str, ...]:
    return _subset(name, raw, TASKS)


def _subset(name: str, raw: str, allowed: tuple[str, ...]) -> tuple[str, ...]:
    """A non-empty comma-separated subset of `allowed`, in the order given, duplicates dropped."""
    chosen = tuple(dict.fromkeys(t.strip().lower() for t in raw.split(",") if t.strip()))
    unknown = [t for t in chosen if t not in allowed]
    if unknown or not chosen:
        raise ConfigurationError(f"{name}={raw!r}: give a comma-separated subset of {', '.join(allowed)}")
    return chosen
