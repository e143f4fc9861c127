"""The benchmark's workloads (Immich's own requests) and their device-bound limits.

A workload is one kind of /predict request, with the `entries` Immich's server sends for that job
and the device frames each request costs per network. The device-bound limit is the request rate
of a device that never idles and always runs full bursts: a burst of B frames of network N costs
`a_N + b_N * B` ms on the timing profile, so a frame costs `(a_N + b_N * B_N) / B_N` with the
runtime's batch size B_N, plus a network switch per burst when a request uses several networks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from ml_target.catalog import backend_for_setting
from ml_target.config import Settings
from ml_target.hailo.emulator.device import SWITCH_PENALTY_MS
from ml_target.networks import NETWORKS

FACES_PER_PHOTO = 3


@dataclass(frozen=True)
class Workload:
    """One request kind: its entries, whether it uploads an image or text, and frames per network."""

    name: str
    entries: str
    payload: str  # "image" or "text"
    frames: Mapping[str, float]  # expected device frames per request by HEF name; {} = measure them


def workloads(settings: Settings) -> dict[str, Workload]:
    """The four Immich jobs for the configured CLIP backend and face networks."""
    backend = backend_for_setting(settings.clip_backend)
    clip_model = backend.immich_names[0]
    face = {
        "detection": {"modelName": "buffalo_l", "options": {"minScore": 0.7}},
        "recognition": {"modelName": "buffalo_l"},
    }
    ocr = {
        "detection": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.5, "maxResolution": 736}},
        "recognition": {"modelName": "PP-OCRv5_mobile", "options": {"minScore": 0.8}},
    }
    return {
        "clip-image": Workload(
            "clip-image",
            json.dumps({"clip": {"visual": {"modelName": clip_model}}}),
            "image",
            {backend.image_network.hef: 1.0},
        ),
        "clip-text": Workload(
            "clip-text",
            json.dumps({"clip": {"textual": {"modelName": clip_model, "options": {"language": "en"}}}}),
            "text",
            {backend.text_network.hef: 1.0},
        ),
        "faces": Workload(
            "faces",
            json.dumps({"facial-recognition": face}),
            "image",
            {settings.face_detector: 1.0}
            if not settings.face_serve_any_model_name  # recognition runs on the host CPU
            else {settings.face_detector: 1.0, settings.face_recogniser: float(FACES_PER_PHOTO)},
        ),
        # Detection tiles and text lines depend on the page: frames are taken from the device counters.
        "ocr": Workload("ocr", json.dumps({"ocr": ocr}), "image", {}),
    }


def frame_cost_ms(hef: str, profile: str) -> float:
    """Device ms per frame of `hef` in full bursts of the runtime's batch size."""
    spec = NETWORKS[hef]
    a_ms, b_ms = spec.timing_ms[profile]
    return (a_ms + b_ms * spec.batch_size) / spec.batch_size


def device_ms_per_request(frames: Mapping[str, float], profile: str) -> float:
    """Least device time one request needs: full bursts, one network switch per burst if several networks."""
    busy = sum(count * frame_cost_ms(hef, profile) for hef, count in frames.items())
    if len(frames) > 1:
        busy += SWITCH_PENALTY_MS * sum(count / NETWORKS[hef].batch_size for hef, count in frames.items())
    return busy


def device_bound_rps(frames: Mapping[str, float], profile: str) -> float:
    """Requests per second of a device that is never idle (inf if a request needs no device time)."""
    per_request = device_ms_per_request(frames, profile)
    return float("inf") if per_request <= 0 else 1000.0 / per_request


def hef_for_group(group: str) -> str:
    """The HEF name of a network group as the emulator's counters name it (`scrfd_2_5g` -> `scrfd_2.5g`)."""
    for hef, spec in NETWORKS.items():
        if spec.group == group:
            return hef
    raise KeyError(group)
