"""The CI-sized soak: `ml_target.benchmarks.soak` for three minutes (SOAK_SECONDS to change it).

Mixed Immich traffic at concurrency 8 on the "hailo8" profile with a fault every 15 s (failed
`run_async`, failed bursts, a stall past the deadline, a vanished device, in turn). It must show no
unexpected error, every fault recovered, and RSS with nothing in flight (sampled before each fault,
`soak._idle_sample`) growing by at most 10% after the warm-up and the first cycle of faults (on a
slow machine that cycle ends at about 100 s, leaving 80 s and five idle samples to judge).

It runs in its own process, so the RSS it measures is the worker's and not this test session's,
with the C heap set up as `serve` sets it (`ml_target.heap`), not by this environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_heap import without_heap_settings

pytestmark = pytest.mark.slow

SECONDS = float(os.environ.get("SOAK_SECONDS", "180"))
REPO = Path(__file__).resolve().parents[1]


def test_soak_serves_recovers_and_does_not_grow(tmp_path: Path) -> None:
    output = tmp_path / "soak.json"
    command = [sys.executable, "-m", "ml_target.benchmarks.soak", "--seconds", str(SECONDS)]
    # RSS is still settling (thread pools, malloc arenas, model sessions) during the first minute.
    command += ["--fault-interval", "15", "--warmup", str(min(60.0, SECONDS / 2)), "--output", str(output)]
    # Two of nine soak requests are searches: with search sessions the whole run would be one
    # session and the scan would barely move, leaving too little traffic to judge memory growth.
    # Sessions, also under faults, have their own tests (test_search_sessions.py).
    command += ["--search-session", "0"]
    finished = subprocess.run(
        command,
        check=False,
        cwd=REPO,
        env=without_heap_settings(),
        capture_output=True,
        text=True,
        timeout=SECONDS + 180,
    )
    assert output.exists(), finished.stderr[-3000:]
    report = json.loads(output.read_text())
    summary = {k: v for k, v in report.items() if k != "samples"}
    print(json.dumps(summary, indent=2))  # the numbers, for the CI log
    print("busy (t, rss_mb):", [(round(s["t"]), round(s["rss_mb"])) for s in report["samples"]])

    assert report["unexpected_errors"]["total"] == 0, report["unexpected_errors"]
    faults = report["faults"]
    assert faults["injected"] >= min(4, int(SECONDS // 15) - 1), faults
    assert faults["recovered"] == faults["injected"], faults["timeline"]
    assert set(report["requests_by_kind"]) == {"clip-image", "faces", "ocr", "search"}
    assert set(report["latency_ok_ms"]) == {"clip-image", "faces", "ocr", "search"}  # each kind served
    assert report["ok"] >= 0.5 * report["requests"]
    assert report["rss_mb"]["growth_after_warmup_pct"] <= 10.0, report["rss_mb"]
    assert report["threads"]["end"] <= report["threads"]["after_warmup"] + 1, report["threads"]
    assert report["open_fds"]["end"] <= report["open_fds"]["after_warmup"] + 2, report["open_fds"]
    assert report["passed"] and finished.returncode == 0
