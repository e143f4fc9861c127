"""The worker's glibc heap (`ml_target.heap`), each case in a fresh interpreter: mallopt changes the
whole process, and glibc reads its environment variables only at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ml_target.heap import ARENA_MAX, _glibc, operator_set

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(_glibc() is None, reason="the settings are glibc's")

# Eight threads allocate at once, as the request threads do, then the scan's pattern: photo-sized
# buffers each followed by a small object that outlives it (a result, a log record), after one
# larger photo was freed; then every photo buffer is freed.
PROGRAM = textwrap.dedent(
    """
    import ctypes, json, os, sys, tempfile, threading
    import numpy as np
    from ml_target.heap import configure_heap, release_free_heap

    def rss_mb():
        with open("/proc/self/status") as status:
            return next(int(l.split()[1]) / 1024 for l in status if l.startswith("VmRSS:"))

    def arenas():
        libc = ctypes.CDLL("libc.so.6")
        libc.fopen.restype = ctypes.c_void_p
        with tempfile.NamedTemporaryFile(suffix=".xml") as info:
            stream = libc.fopen(info.name.encode(), b"w")
            libc.malloc_info(0, ctypes.c_void_p(stream))
            libc.fclose(ctypes.c_void_p(stream))
            return open(info.name).read().count("<heap nr=")

    env = json.loads(sys.argv[1])
    applied = configure_heap(env) if env is not None else {}
    start, kept = threading.Barrier(8), []
    def work():
        start.wait()
        kept.append(bytearray(300_000))
    threads = [threading.Thread(target=work) for _ in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    before = rss_mb()
    larger = np.ones(8 << 20, np.uint8)
    del larger
    photos = []
    for _ in range(40):
        photos.append(np.ones(3 << 20, np.uint8))
        kept.append(bytearray(4096))
    held = rss_mb() - before
    del photos
    retained = rss_mb() - before
    released = release_free_heap()
    print(json.dumps({"applied": applied, "arenas": arenas(), "held_mb": held, "retained_mb": retained,
                      "released": released, "after_release_mb": rss_mb() - before}))
    """
)


def without_heap_settings() -> dict[str, str]:
    """This environment without glibc's heap variables, so a child process's heap is the worker's
    own doing (tests of `serve`, the soak, and these)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "GLIBC_TUNABLES"}


def run(env: dict[str, str] | None, process_env: dict[str, str] | None = None) -> dict:
    """Run PROGRAM in a fresh interpreter; `env` is what configure_heap sees (None: not called)."""
    finished = subprocess.run(
        [sys.executable, "-c", PROGRAM, json.dumps(env)],
        cwd=REPO,
        env={**without_heap_settings(), **(process_env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(finished.stdout)


def test_two_arenas_serve_all_threads() -> None:
    default, configured = run(None), run({})
    assert default["arenas"] >= 5, default  # a 2-core host: up to 16, one per new thread here
    assert configured["arenas"] == ARENA_MAX and configured["applied"] == {"MALLOC_ARENA_MAX": ARENA_MAX}


def test_the_operators_own_arena_setting_wins() -> None:
    chosen = {"MALLOC_ARENA_MAX": "4"}
    result = run(chosen, process_env=chosen)
    assert result["applied"] == {} and result["arenas"] == 4
    tunables = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=3"}
    result = run(tunables, process_env=tunables)
    assert result["applied"] == {} and result["arenas"] == 3


def test_freed_photo_buffers_glibc_keeps_are_released_on_request() -> None:
    """What the soak relies on: glibc keeps freed photo buffers resident, release_free_heap returns them."""
    result = run({})
    assert result["held_mb"] >= 110, result  # the photos were really there
    assert result["retained_mb"] >= 100, result  # and stay resident after they are freed
    assert result["released"] and result["after_release_mb"] <= 10, result


def test_operator_set_reads_variables_and_tunables() -> None:
    assert operator_set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max", {"MALLOC_ARENA_MAX": "4"})
    assert operator_set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max", {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"})
    assert not operator_set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max", {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=0"})
    assert not operator_set("MALLOC_ARENA_MAX", "glibc.malloc.arena_max", {})
