"""glibc's heap as a long-running worker wants it: set when `serve` starts, measurable by the soak.

glibc gives each new thread its own heap arena, up to eight per core; the worker's request,
decoder and recogniser threads would each keep one, holding freed photo buffers apart. Two arenas
serve them all (unless the operator set `MALLOC_ARENA_MAX` or `glibc.malloc.arena_max` in
`GLIBC_TUNABLES`, which glibc has already applied).

Within an arena glibc keeps freed memory: after the first large buffer is freed its dynamic mmap
threshold rises to that size (up to 32 MiB), so later decoded photos and frames come from the heap
and leave holes it keeps resident. In the soak (emulated hailo8, eight request threads) the heap
held 519 MiB of which 100-290 MiB was in use; the resident level is the high-water mark of photos
in flight, not a leak, and it rises on a machine with more cores. A fixed
`MALLOC_MMAP_THRESHOLD_` of 1 MiB returns those buffers when freed and halves the resident memory
(same soak: 125 MiB heap, 330-360 MiB RSS instead of 550-650 MiB), but each new buffer is then
faulted in afresh, which costs CPU the library scan needs (`bench --library`, hailo8: worker CPU
per photo +6-15 % for faces, +21-26 % for OCR). So the threshold is the operator's choice, for a host
short of memory rather than of CPU (README, Memory).

`release_free_heap` hands the free pages back once, so that the soak can tell memory the worker
holds from memory glibc merely keeps.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
from collections.abc import Mapping

log = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter, from glibc's malloc.h
ARENA_MAX = 2
ARENA_VARIABLE, ARENA_TUNABLE = "MALLOC_ARENA_MAX", "glibc.malloc.arena_max"


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    """This process's C library when it is glibc (the only one whose mallopt these values mean)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "malloc_trim") else None


def operator_set(variable: str, tunable: str, env: Mapping[str, str]) -> bool:
    """Whether the operator chose this setting already (glibc read it at start-up)."""
    return variable in env or tunable in env.get("GLIBC_TUNABLES", "")


def configure_heap(env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Cap the arenas unless the operator did; returns what was applied, by variable name."""
    env = os.environ if env is None else env
    libc = _glibc()
    if libc is None or operator_set(ARENA_VARIABLE, ARENA_TUNABLE, env):
        return {}
    if libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(ARENA_MAX)) != 1:
        log.warning("glibc refused mallopt(M_ARENA_MAX, %d); the heap keeps its default", ARENA_MAX)
        return {}
    log.info("C heap: %s=%d", ARENA_VARIABLE, ARENA_MAX)
    return {ARENA_VARIABLE: ARENA_MAX}


def release_free_heap() -> bool:
    """Return every free page of every arena to the system (glibc's malloc_trim); False elsewhere."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(ctypes.c_size_t(0))
    return True
