"""The worker as the service benchmark runs it: `python -m ml_target.benchmarks.server`.

It is the production app (`build_app(Settings.from_env())`) in its own process, so the benchmark
can measure the server's CPU time from outside, plus two things only a benchmark wants:
- `GET /_bench/device`: the emulated device's counters (busy time per network, bursts, frames),
  which the HTTP app does not expose because a real device has no such counters, and the names of
  the process's threads by native id (for the per-thread CPU profile);
- `POST /_bench/search-sessions`: change the search-session policy (JSON fields of
  `ml_target.hailo.sessions.SessionPolicy`), so one worker is measured with and without sessions;
- optionally (`BENCH_CACHE_COMPUTES=true`, the benchmark's default; `BENCH_CACHE_FRAMES` frames per
  network, 128 unless set) a frame cache in front of the
  emulated networks whose compute is far dearer on the host than on a Hailo: the SCRFD stand-in
  (an LBP cascade, ~0.1 s of CPU per frame) and the real PP-OCRv5 ONNX models (~0.1 s per
  detection frame, and a 40 x 18385 recognition output per line). The emulated device computes on
  its own thread and sleeps only for whatever modelled time is left, so that CPU competes with the
  worker on a small machine and holds the emulated device longer than the modelled burst. The
  benchmark repeats a few photos, so memoising outputs by frame content removes that emulator
  artefact without changing any answer; its cost stays visible in the report as emulator CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import orjson
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import Response

from ml_target.config import Settings
from ml_target.heap import configure_heap
from ml_target.http_server import server_options
from ml_target.service import build_app

Compute = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
CACHE_FRAMES = 128
# Emulated networks whose compute costs far more host CPU than the modelled device time it stands for.
CACHED_HEFS = ("scrfd_2.5g", "scrfd_10g", "paddle_ocr_v5_mobile_detection", "paddle_ocr_v5_mobile_recognition")


class FrameCache:
    """Per-frame memo of a compute function, keyed by the frame's bytes (bounded, least recently used)."""

    def __init__(self, compute: Compute, capacity: int = CACHE_FRAMES) -> None:
        self._compute = compute
        self._capacity = capacity
        self._entries: OrderedDict[bytes, dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(next(iter(inputs.values())))
        rows = [self._row({name: batch[i : i + 1] for name, batch in inputs.items()}) for i in range(count)]
        return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}

    def _row(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        digest = hashlib.sha1()
        for name in sorted(inputs):
            # Emulated inputs are dequantised uint8 pixels: the uint8 bytes identify the frame exactly.
            digest.update(np.ascontiguousarray(inputs[name], dtype=np.uint8).data)
        key = digest.digest()
        with self._lock:
            cached = self._entries.get(key)
            if cached is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return cached
        result = self._compute(inputs)
        with self._lock:
            self.misses += 1
            self._entries[key] = result
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return result


def cache_emulated_computes(
    models_dir: Path, hefs: Iterable[str] = CACHED_HEFS, capacity: int = CACHE_FRAMES
) -> dict[str, FrameCache]:
    """Put a `FrameCache` in front of the emulated compute of each of `hefs` found in `models_dir`.

    Call before the app loads the HEFs: each file's compute is rewritten to a registered callable
    that memoises the compute the file declared (ONNX or a stand-in), so answers are unchanged.
    """
    from ml_target.hailo.emulator import register_compute
    from ml_target.hailo.emulator.compute import build_compute
    from ml_target.hailo.emulator.hef import load_desc
    from ml_target.testing.emulated_models import register_stand_ins

    register_stand_ins()
    caches = {}
    for hef in hefs:
        path = models_dir / f"{hef}.hef"
        if not path.is_file():
            continue
        caches[hef] = FrameCache(build_compute(load_desc(str(path))), capacity)
        name = f"ml_target.bench.cached.{hef}"
        register_compute(name, caches[hef])
        declared = json.loads(path.read_text())
        declared["compute"] = {"kind": "callable", "name": name}
        path.write_text(json.dumps(declared))
    return caches


def build_bench_app(settings: Settings, *, cache_computes: bool = False, cache_frames: int = CACHE_FRAMES) -> FastAPI:
    """The production app plus the benchmark's device-counter route (emulator only).

    With `cache_computes`, the emulated OCR and SCRFD computes are memoised first (module docstring):
    this rewrites HEFs in `settings.models_dir`, so only use it on a benchmark's own copy.
    """
    emulated = settings.hailo_device == "emulator"
    caches = cache_emulated_computes(settings.models_dir, capacity=cache_frames) if emulated and cache_computes else {}
    app = build_app(settings)
    if not emulated:
        return app
    from ml_target.hailo import emulator

    @app.get("/_bench/device", include_in_schema=False)
    async def device_counters() -> Response:
        counters = emulator.device().counters()
        counters["compute_cache"] = {hef: {"hits": c.hits, "misses": c.misses} for hef, c in caches.items()}
        counters["threads"] = {t.native_id: t.name for t in threading.enumerate() if t.native_id is not None}
        counters["search_sessions"] = app.state.runtime.sessions.stats()
        return Response(orjson.dumps(counters, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY))

    @app.post("/_bench/search-sessions", include_in_schema=False)
    async def search_sessions(request: Request) -> Response:
        """Switch the search-session policy, e.g. {"session_s": 0} to compare without sessions."""
        sessions = app.state.runtime.sessions
        changes = await request.json()
        sessions.set_policy(dataclasses.replace(sessions.policy, **changes))
        return Response(orjson.dumps(sessions.stats()))

    return app


def main() -> None:
    """Serve on IMMICH_HOST:IMMICH_PORT with settings from the environment; quiet access logs."""
    import os

    settings = Settings.from_env()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    configure_heap()
    cache = os.environ.get("BENCH_CACHE_COMPUTES", "false").lower() in ("1", "true", "yes")
    frames = int(os.environ.get("BENCH_CACHE_FRAMES", CACHE_FRAMES))
    app = build_bench_app(settings, cache_computes=cache, cache_frames=frames)
    uvicorn.run(app, **{**server_options(settings), "log_level": "warning", "access_log": False})


if __name__ == "__main__":
    main()
