"""Overload: a bounded device queue with a bounded wait, and a fast 503 beyond it.

The whole worker on the emulated device. A stalled device fills the queue; requests beyond
`MAX_QUEUED_FRAMES` are refused at once and frames that wait longer than `QUEUE_WAIT_S` are refused
then, instead of piling up latency. With the defaults, Immich's own job concurrency (smart search
2, face detection 2, OCR 1, plus searches) on the "hailo8" timing profile never meets either limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from emulated_service import EmulatedService, encode, photo, write_models
from immich_client import CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES, FACES_ENTRIES, OCR_ENTRIES, post_predict
from skimage import data

from ml_target.config import Settings
from ml_target.hailo import emulator
from ml_target.tasks.ocr import FRAMES_IN_FLIGHT
from ml_target.testing.ocr_pages import text_page

CLIP_IMAGE_GROUP = "clip_vit_b_32_image_encoder"
IMAGE = encode(photo(64, 48))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def make_worker(models: Path) -> Iterator:
    started: list[EmulatedService] = []

    def make(**overrides: object) -> EmulatedService:
        started.append(EmulatedService(models, **overrides))
        return started[-1]

    yield make
    for service in started:
        service.close()


async def timed(
    client: httpx.AsyncClient, entries: str = CLIP_IMAGE_ENTRIES, **payload: object
) -> tuple[int, str, float]:
    started = time.monotonic()
    response = await post_predict(client, entries, **(payload or {"image": IMAGE}))
    detail = "" if response.status_code == 200 else response.json()["detail"]
    return response.status_code, detail, time.monotonic() - started


async def stall_device(client: httpx.AsyncClient, seconds: float) -> asyncio.Task:
    """Stall the CLIP image network: one request starts the stalled burst and stays in flight."""
    emulator.device().stall(CLIP_IMAGE_GROUP, seconds)
    blocker = asyncio.create_task(timed(client))
    await asyncio.sleep(0.1)
    return blocker


async def test_requests_beyond_the_queue_bound_get_a_fast_503(make_worker) -> None:
    worker = make_worker(max_queued_frames=4, request_timeout_s=5.0)
    async with worker.client() as client:
        assert (await timed(client))[0] == 200
        blocker = await stall_device(client, 1.5)
        flood = await asyncio.gather(*(timed(client) for _ in range(40)))
        refused = [(d, t) for status, d, t in flood if status == 503]
        served = [t for status, _, t in flood if status == 200]
        assert len(refused) + len(served) == 40
        # At most one burst behind the stalled one plus four queued frames can wait for the device.
        batch = worker.runtime.health()["networks"]["clip_vit_b_32_image_encoder"]["batch_size"]
        assert len(served) <= batch + 4 and len(refused) >= 40 - batch - 4
        assert all("MAX_QUEUED_FRAMES" in d for d, _ in refused)
        assert max(t for _, t in refused) < 0.5, "refusals must not wait for the stalled device"
        assert (await blocker)[0] == 200
        network = worker.runtime.health()["networks"]["clip_vit_b_32_image_encoder"]
        assert network["overloaded"] == len(refused) and network["queue_depth"] == 0
        assert (await timed(client))[0] == 200  # and the next request is served


async def test_frames_waiting_longer_than_the_queue_wait_get_a_503_then(make_worker) -> None:
    worker = make_worker(queue_wait_s=0.3, request_timeout_s=5.0)
    async with worker.client() as client:
        assert (await timed(client))[0] == 200
        blocker = await stall_device(client, 2.0)
        flood = await asyncio.gather(*(timed(client) for _ in range(30)))
        waited = [t for status, d, t in flood if status == 503 and "waited over 0.3 s" in d]
        assert waited, flood
        assert all(status in (200, 503) for status, _, _ in flood)
        # Refused after the queue wait (plus the submitter's 50 ms tick), long before the stall ends.
        assert 0.3 <= min(waited) and max(waited) < 0.8
        assert (await blocker)[0] == 200
        assert (await timed(client))[0] == 200


def test_defaults_leave_room_for_immichs_job_concurrency() -> None:
    """The defaults hold well over what Immich's default jobs can queue (about 5 requests): eight
    OCR requests at once, each with its full window of recognition frames, fit in the queue."""
    defaults = Settings()
    assert defaults.max_queued_frames >= 8 * FRAMES_IN_FLIGHT
    assert defaults.queue_wait_s >= 5.0 and defaults.request_timeout_s >= defaults.queue_wait_s


@pytest.mark.slow
async def test_immichs_default_job_concurrency_never_meets_the_limits(make_worker) -> None:
    """SmartSearch 2 + FaceDetection 2 + OCR 1 + one user searching without pause (a search session
    all along, so the scan runs on its small share of the device), on the hailo8 profile, 6 s."""
    worker = make_worker(hailo_emulator_profile="hailo8")
    page, _ = text_page(1440, 1080, 30)
    portrait = encode(data.astronaut())
    loads = [
        (CLIP_IMAGE_ENTRIES, {"image": encode(photo(1440, 1080))}),
        (CLIP_IMAGE_ENTRIES, {"image": portrait}),
        (FACES_ENTRIES, {"image": portrait}),
        (FACES_ENTRIES, {"image": portrait}),
        (OCR_ENTRIES, {"image": encode(page)}),
        (CLIP_TEXT_ENTRIES, {"text": "a dog on the beach"}),
    ]
    end = time.monotonic() + 6.0
    results: list[tuple[int, str, float]] = []

    async def job(client: httpx.AsyncClient, entries: str, payload: dict) -> None:
        while time.monotonic() < end:
            results.append(await timed(client, entries, **payload))

    async with worker.client() as client:
        await asyncio.gather(*(job(client, e, p) for e, p in loads))
    failures = [(s, d) for s, d, _ in results if s != 200]
    assert not failures, failures[:5]
    assert len(results) >= 30
    health = worker.runtime.health()
    networks = health["networks"].values()
    assert sum(n["overloaded"] + n["timeouts"] for n in networks) == 0
    # The user's searches start a search session that holds the scan back; no frame may wait long
    # enough to meet QUEUE_WAIT_S (the gate lets a frame go after half of it).
    assert health["search_sessions"]["sessions"] >= 1
    assert max(n["max_queue_wait_s"] for n in networks) < 0.6 * worker.settings.queue_wait_s


async def test_a_page_of_dense_text_does_not_fill_the_queue_on_its_own(make_worker) -> None:
    """A page with 70 lines needs 134 recognition frames; each request keeps only a window of them
    (FRAMES_IN_FLIGHT) queued, so a queue bound of half a page serves two such pages at once."""
    worker = make_worker(max_queued_frames=2 * FRAMES_IN_FLIGHT)
    page, _ = text_page(1440, 2560, 16)
    image = encode(page, "PNG")
    async with worker.client() as client:
        responses = await asyncio.gather(*(timed(client, OCR_ENTRIES, image=image) for _ in range(2)))
    assert [status for status, _, _ in responses] == [200, 200], responses
    recognition = worker.runtime.health()["networks"]["paddle_ocr_v5_mobile_recognition"]
    assert recognition["frames"] >= 2 * 134 and recognition["overloaded"] == 0
