"""A light load generator: pre-built Immich requests posted by asyncio tasks over kept-alive connections.

Requests are built once, bytes and all (multipart exactly as Immich's server sends: an `entries`
field and an `image` file part or a `text` field), and sent with the minimal client of
`ml_target.benchmarks.http`, so generating load costs little of the CPU the worker needs. Streams
are either closed loops (N callers, each posting as soon as its previous answer arrived: a job
queue with concurrency N) or open loops (requests at random moments, `interval_s` apart on
average, whatever the others do: users typing searches). Open-loop arrivals are a Poisson
process: fixed intervals could lock into phase with the worker's own periodic behaviour and
always, or never, meet a background burst.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import orjson

from ml_target.benchmarks.http import HttpError, Pool, request_bytes

Body = tuple[bytes, dict[str, str]]
OPEN_LOOP_SEED = 2026  # the same arrival pattern in every run, so runs compare
MAX_WARMUP_S = 60.0


def multipart(entries: str, *, image: bytes | None = None, text: str | None = None) -> Body:
    """A multipart/form-data body with `entries` and either an `image` file part or a `text` field."""
    boundary = f"----bench{uuid.uuid4().hex}"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="entries"\r\n\r\n'.encode() + entries.encode()]
    if image is not None:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="blob"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + image)
    if text is not None:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="text"\r\n\r\n'.encode() + text.encode())
    body = b"\r\n".join(parts) + f"\r\n--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def predict_requests(bodies: Sequence[Body], pool: Pool) -> list[bytes]:
    """Complete `POST /predict` requests for `pool`'s server, one per body."""
    return [request_bytes("POST", "/predict", pool.authority, body, headers) for body, headers in bodies]


@dataclass
class Stream:
    """One source of requests: `concurrency` closed-loop callers, or one request every `interval_s`."""

    label: str
    requests: Sequence[bytes]
    concurrency: int = 1
    interval_s: float | None = None
    check: Callable[[bytes], int] | None = None  # counts items in a 200 answer (e.g. faces)
    samples: list[tuple[float, float, int, int]] = field(default_factory=list)  # start, end, status, items

    def completed(self, start: float, end: float) -> list[tuple[float, float, int, int]]:
        """Samples whose answer arrived inside [start, end]."""
        return [s for s in self.samples if start <= s[1] <= end]


def count_faces(body: bytes) -> int:
    """Faces in a facial-recognition answer."""
    return len(orjson.loads(body).get("facial-recognition", []))


async def _post(pool: Pool, stream: Stream, request: bytes) -> None:
    started = time.monotonic()
    try:
        status, content = await pool.send(request)
    except HttpError:
        status, content = 599, b""
    items = stream.check(content) if stream.check is not None and status == 200 else 0
    stream.samples.append((started, time.monotonic(), status, items))


@dataclass
class _Run:
    """When the streams stop: unknown until the warm-up is over."""

    stop_at: float = math.inf


async def _closed_loop(pool: Pool, stream: Stream, offset: int, run: _Run) -> None:
    requests = itertools.islice(itertools.cycle(stream.requests), offset, None)
    while time.monotonic() < run.stop_at:
        await _post(pool, stream, next(requests))


async def _open_loop(pool: Pool, stream: Stream, interval_s: float, run: _Run) -> None:
    pending = []
    arrivals = random.Random(OPEN_LOOP_SEED)
    for request in itertools.cycle(stream.requests):
        if time.monotonic() >= run.stop_at:
            break
        pending.append(asyncio.create_task(_post(pool, stream, request)))
        await asyncio.sleep(arrivals.expovariate(1 / interval_s))
    await asyncio.gather(*pending)


async def drive(
    pool: Pool,
    streams: Sequence[Stream],
    *,
    warmup_s: float,
    seconds: float,
    on_window: Callable[[str], Awaitable[None]],
    min_answers: tuple[Stream, int] | None = None,
    max_seconds: float | None = None,
    await_callers: bool = True,
) -> tuple[float, float]:
    """Warm up, then measure for `seconds`; `on_window("start"|"end")` brackets the measured window.

    With `min_answers` = (stream, n) the window goes on past `seconds` (up to `max_seconds`, by
    default three times as long) until that stream has had n answers inside it: a percentile needs
    its samples, and a rate over a window shorter than one answer per caller says little.

    The warm-up lasts `warmup_s` and, beyond that (up to `MAX_WARMUP_S`; not with `await_callers`
    False), until the closed-loop callers have had as many answers as there are callers: slow
    requests at high concurrency (OCR pages) must reach their steady state before the window
    opens, or a short window counts no answer at all. Returns the window's (start, end) on the monotonic clock; requests still
    running at the end are awaited but only answers inside the window count.
    """
    run = _Run()
    started = time.monotonic()
    tasks = []
    for stream in streams:
        if stream.interval_s is not None:
            tasks.append(asyncio.create_task(_open_loop(pool, stream, stream.interval_s, run)))
        else:
            tasks += [asyncio.create_task(_closed_loop(pool, stream, i, run)) for i in range(stream.concurrency)]
    callers = [s for s in streams if s.interval_s is None] if await_callers else []
    await asyncio.sleep(warmup_s)
    while time.monotonic() - started < MAX_WARMUP_S and any(len(s.samples) < s.concurrency for s in callers):
        await asyncio.sleep(0.05)
    await on_window("start")
    window_start = time.monotonic()
    await asyncio.sleep(seconds)
    if min_answers is not None:
        stream, wanted = min_answers
        limit = 3 * seconds if max_seconds is None else max_seconds
        while time.monotonic() - window_start < limit and len(stream.completed(window_start, math.inf)) < wanted:
            await asyncio.sleep(0.05)
    window_end = run.stop_at = time.monotonic()
    await on_window("end")
    await asyncio.gather(*tasks)
    return window_start, window_end
