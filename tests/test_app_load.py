"""The service on a real uvicorn socket under Immich-like load (slow: starts a server).

Checks that /ping stays responsive while eight slow predictions, each decoding a 1920x1440 JPEG
preview, are in flight, and prints the measured latencies and per-request host overhead. The
bound is generous (the machine is shared); the printed numbers are the measurement.
"""

from __future__ import annotations

import asyncio
import io
import statistics
import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import uvicorn
from immich_client import CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES, post_predict
from PIL import Image
from test_app_fakes import FakeHealth, all_handlers, make_settings

from ml_target.app import create_app

pytestmark = pytest.mark.slow


def preview_jpeg() -> bytes:
    """A 1920x1440 JPEG with photo-like detail, the size of an Immich preview."""
    rng = np.random.default_rng(1)
    noise = rng.integers(0, 255, (180, 240, 3), dtype=np.uint8)
    image = Image.fromarray(noise).resize((1920, 1440), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def serve(delay: float) -> Iterator[str]:
    app = create_app(make_settings(), all_handlers(delay=delay), FakeHealth())
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def slow_server() -> Iterator[str]:
    yield from serve(delay=0.5)


@pytest.fixture
def fast_server() -> Iterator[str]:
    yield from serve(delay=0.0)


async def test_ping_answers_quickly_while_eight_predictions_run(slow_server: str) -> None:
    image = preview_jpeg()
    async with httpx.AsyncClient(base_url=slow_server, timeout=30) as client:
        started = time.perf_counter()
        predictions = [asyncio.create_task(post_predict(client, CLIP_IMAGE_ENTRIES, image=image)) for _ in range(8)]
        pings: list[float] = []
        while not all(p.done() for p in predictions):
            sent = time.perf_counter()
            response = await client.get("/ping")
            pings.append(time.perf_counter() - sent)
            assert (response.status_code, response.text) == (200, "pong")
            await asyncio.sleep(0.05)
        results = await asyncio.gather(*predictions)
        total = time.perf_counter() - started
    assert [r.status_code for r in results] == [200] * 8
    assert [r.json()["imageWidth"] for r in results] == [1920] * 8
    print(
        f"\n8 concurrent 1920x1440 predictions (0.5 s fake inference each): {total:.2f} s total; "
        f"{len(pings)} pings, median {statistics.median(pings) * 1000:.1f} ms, max {max(pings) * 1000:.1f} ms"
    )
    assert max(pings) < 0.5


async def test_host_overhead_per_request(fast_server: str) -> None:
    image = preview_jpeg()
    async with httpx.AsyncClient(base_url=fast_server, timeout=30) as client:
        for _ in range(3):  # warm-up: pools, imports, connections
            await post_predict(client, CLIP_IMAGE_ENTRIES, image=image)
        image_times, text_times = [], []
        for _ in range(20):
            sent = time.perf_counter()
            assert (await post_predict(client, CLIP_IMAGE_ENTRIES, image=image)).status_code == 200
            image_times.append(time.perf_counter() - sent)
            sent = time.perf_counter()
            assert (await post_predict(client, CLIP_TEXT_ENTRIES, text="a dog on the beach")).status_code == 200
            text_times.append(time.perf_counter() - sent)
    print(
        f"\nround trip with instant fake inference ({len(image) // 1024} KiB JPEG): image median "
        f"{statistics.median(image_times) * 1000:.1f} ms, text median {statistics.median(text_times) * 1000:.1f} ms"
    )
