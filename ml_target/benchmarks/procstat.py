"""CPU time of another process, per thread group, read from Linux's /proc.

The benchmark's load generator must not be counted as server work, so the server runs in its own
process and its CPU time is read from `/proc/<pid>/task/<tid>/stat` (utime + stime). Threads are
grouped by their Python names (the worker reports them), which say what they do: the event loop
(HTTP, multipart, JSON, tokenising), `decode_*` (JPEG decoding), `asyncio_*` (resize, crop,
letterbox, post-processing in `to_thread`), `face-recogniser_*` (Immich's face recogniser on the CPU,
alignment included), `hailo-submit-*` (the runtime's submitters),
`hailort-callbacks-*` (completion callbacks) and `hailo-emulated-device` (the emulated device
computing its stand-in networks: emulator cost, which a real Hailo does on the chip, not on the host).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

EMULATOR_GROUP = "emulated device"
RECOGNISER_GROUP = "face recogniser (Immich's ONNX on the CPU)"
GROUPS = (
    ("hailo-emulated", EMULATOR_GROUP),
    ("face-recognise", RECOGNISER_GROUP),
    ("hailort-callbac", "completion callbacks"),
    ("hailo-submit", "runtime submitters"),
    ("decode", "decode pool"),
    ("asyncio", "to_thread pool (resize, crop, post-process)"),
    ("health", "health pool"),
)
MAIN_GROUP = "event loop and other threads (HTTP, multipart, JSON, tokenising)"
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def group_of(thread_name: str) -> str:
    """The thread group a thread name belongs to (see the module docstring)."""
    for prefix, group in GROUPS:
        if thread_name.startswith(prefix):
            return group
    return MAIN_GROUP


def parse_stat(line: str) -> float:
    """CPU seconds (utime + stime) from one `/proc/.../stat` line; the name field may hold spaces."""
    fields = line[line.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def thread_cpu(pid: int, proc: Path = Path("/proc")) -> dict[int, tuple[str, float]]:
    """{tid: (thread name, CPU seconds)} of every live thread of `pid`; vanished threads are skipped."""
    threads = {}
    for task in (proc / str(pid) / "task").iterdir():
        try:
            name = (task / "comm").read_text().strip()
            threads[int(task.name)] = (name, parse_stat((task / "stat").read_text()))
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue
    return threads


def process_cpu(pid: int, proc: Path = Path("/proc")) -> float:
    """CPU seconds of the whole process, including threads that have exited."""
    return parse_stat((proc / str(pid) / "stat").read_text())


def cpu_by_group(
    before: Mapping[int, tuple[str, float]],
    after: Mapping[int, tuple[str, float]],
    names: Mapping[int, str] | None = None,
) -> dict[str, float]:
    """CPU seconds spent between two `thread_cpu` samples, summed per thread group.

    `names` maps native thread ids to Python thread names: Python 3.11 does not give OS threads
    their Python names, so /proc shows every thread as the process name.
    """
    names = names or {}
    spent: dict[str, float] = {}
    for tid, (name, seconds) in after.items():
        start = before.get(tid, (name, 0.0))[1]
        group = group_of(names.get(tid, name))
        spent[group] = spent.get(group, 0.0) + max(0.0, seconds - start)
    return spent
