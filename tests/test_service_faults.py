"""Device faults seen from Immich's side: the whole worker on the emulated device, faults injected.

`test_runtime_faults.py` proves recovery at the runtime's interface; this proves what a client
sees: the affected requests get a 503 within their deadline, `/health` shows the failure and the
recovery, `/ping` is 503 only while the worker cannot serve at all, service resumes without a
restart, and nothing (threads, descriptors, memory) accumulates across many faults.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from emulated_service import EmulatedService, encode, photo, write_models
from emulator_helpers import ARCH
from immich_client import CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES, FACES_ENTRIES, OCR_ENTRIES, post_predict

from ml_target.benchmarks.soak import open_fds, rss_mb
from ml_target.hailo import emulator
from ml_target.tasks.ocr import FRAMES_IN_FLIGHT
from ml_target.testing.ocr_pages import text_page

CLIP_IMAGE_GROUP = "clip_vit_b_32_image_encoder"  # network-group names, as the fault API takes them
IMAGE = encode(photo(64, 48))
MODEL_FAILURE = 8  # HAILO_INTERNAL_FAILURE: the configured model is shut down, the device is fine
DRIVER_FAILURE = 36  # HAILO_DRIVER_OPERATION_FAILED: the VDevice must be rebuilt
LOST = 96 if ARCH == "hailo10h" else 36  # a lost card: HAILO_DRIVER_OPERATION_FAILED, HAILO_DEVICE_NOT_CONNECTED in 5.x


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_models(tmp_path_factory.mktemp("models"))


@pytest.fixture
def worker(models: Path) -> Iterator[EmulatedService]:
    service = EmulatedService(models, request_timeout_s=1.0)
    yield service
    service.close()


async def predict(client: httpx.AsyncClient, entries: str = CLIP_IMAGE_ENTRIES) -> httpx.Response:
    if entries == CLIP_TEXT_ENTRIES:
        return await post_predict(client, entries, text="a dog")
    return await post_predict(client, entries, image=IMAGE)


async def health(client: httpx.AsyncClient) -> dict:
    response = await client.get("/health")
    assert response.status_code == 200
    return response.json()


async def wait_for(client: httpx.AsyncClient, status: str, seconds: float = 10.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        report = await health(client)
        if report["status"] == status:
            return report
        assert time.monotonic() < deadline, f"/health stayed {report['status']} ({report['reason']})"
        await asyncio.sleep(0.02)


async def recover(client: httpx.AsyncClient, seconds: float = 10.0) -> dict:
    """Send traffic until every request succeeds and /health is healthy again.

    A re-configured network reports "failing" until a burst succeeds on it, so recovery is only
    visible under traffic, as it is in production.
    """
    deadline = time.monotonic() + seconds
    while True:
        statuses = {(await predict(client, e)).status_code for e in (CLIP_IMAGE_ENTRIES, FACES_ENTRIES)}
        report = await health(client)
        if statuses == {200} and report["status"] == "healthy":
            return report
        assert statuses <= {200, 503}, statuses
        assert time.monotonic() < deadline, f"no recovery: {statuses}, /health {report['status']} ({report['reason']})"
        await asyncio.sleep(0.05)


def network(report: dict, name: str = CLIP_IMAGE_GROUP) -> dict:
    return next(n for n in report["networks"].values() if n["network_group"] == name)


async def test_failed_run_async_is_a_503_and_the_model_is_reconfigured(worker: EmulatedService) -> None:
    async with worker.client() as client:
        assert (await predict(client)).status_code == 200
        emulator.device().fail_next_run_async(CLIP_IMAGE_GROUP, status=MODEL_FAILURE)
        failed = await predict(client)
        assert failed.status_code == 503
        assert "inference failed" in failed.json()["detail"] and "HAILO_INTERNAL_FAILURE" in failed.json()["detail"]
        # Degraded but serving: the other networks work, so /ping stays 200.
        degraded = await health(client)
        assert degraded["status"] == "degraded" and "clip_vit_b_32_image_encoder" in degraded["reason"]
        assert (await client.get("/ping")).status_code == 200
        assert (await predict(client, FACES_ENTRIES)).status_code == 200
        report = await recover(client)
        clip = network(report)
        assert (clip["errors"], clip["reconfigures"], worker.runtime.health()["rebuilds"]) == (1, 1, 0)


async def test_driver_failure_rebuilds_the_device_and_service_resumes(worker: EmulatedService) -> None:
    async with worker.client() as client:
        assert (await predict(client)).status_code == 200
        emulator.device().fail_bursts(CLIP_IMAGE_GROUP, count=1, status=DRIVER_FAILURE)
        failed = await predict(client)
        assert failed.status_code == 503 and "(status 36)" in failed.json()["detail"]
        await recover(client)
        for entries in (CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES, FACES_ENTRIES):
            response = await predict(client, entries)
            assert response.status_code == 200, (entries, response.text)
        assert worker.runtime.health()["rebuilds"] == 1


async def test_stalled_network_answers_503_within_the_deadline(worker: EmulatedService) -> None:
    deadline = worker.settings.request_timeout_s
    async with worker.client() as client:
        assert (await predict(client)).status_code == 200
        emulator.device().stall(CLIP_IMAGE_GROUP, 3 * deadline)
        started = time.monotonic()
        stalled = await predict(client)
        elapsed = time.monotonic() - started
        assert stalled.status_code == 503 and "no result within 1 s" in stalled.json()["detail"]
        assert deadline <= elapsed < deadline + 0.5
        # The stalled burst holds the whole device; once it ends, the runtime re-creates what broke.
        report = await recover(client)
        assert network(report)["timeouts"] >= 1 and network(report)["reconfigures"] >= 1


async def test_vanished_device_is_503_fast_ping_down_then_back_without_restart(worker: EmulatedService) -> None:
    async with worker.client() as client:
        assert (await predict(client)).status_code == 200
        emulator.device().vanish()
        lost = await predict(client)
        assert lost.status_code == 503
        down = await wait_for(client, "down")
        assert f"{LOST}" in down["reason"] or "rebuild attempt" in down["reason"], down
        ping = await client.get("/ping")
        assert ping.status_code == 503 and ping.text.startswith("down: ")
        for entries in (CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES):
            started = time.monotonic()
            refused = await predict(client, entries)
            assert refused.status_code == 503 and "recovering" in refused.json()["detail"]
            assert time.monotonic() - started < 0.5  # fail fast while down, no waiting for a deadline
        emulator.device().restore()
        await recover(client)
        assert (await client.get("/ping")).text == "pong"
        for entries in (CLIP_IMAGE_ENTRIES, CLIP_TEXT_ENTRIES, FACES_ENTRIES):
            assert (await predict(client, entries)).status_code == 200


async def test_concurrent_requests_during_a_fault_all_get_an_answer(worker: EmulatedService) -> None:
    """Eight requests in flight when the driver fails: each gets a 200 or a 503, none hangs or 500s."""
    async with worker.client() as client:
        assert (await predict(client)).status_code == 200
        emulator.device().fail_bursts(None, count=1, status=DRIVER_FAILURE)
        entries = [CLIP_IMAGE_ENTRIES, FACES_ENTRIES, CLIP_TEXT_ENTRIES, CLIP_IMAGE_ENTRIES] * 2
        responses = await asyncio.wait_for(asyncio.gather(*(predict(client, e) for e in entries)), 5)
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503} and 503 in statuses, statuses
        await recover(client)
        again = await asyncio.gather(*(predict(client, e) for e in entries))
        assert [r.status_code for r in again] == [200] * len(entries)


# Thread pools that grow on demand up to a fixed size (asyncio's default executor, the decode and
# health pools) and the portal threads of other tests' clients are not leaks; everything else is.
POOLED = ("asyncio_", "decode_", "health_", "asyncio-portal")


def census() -> tuple[int, int, float]:
    """Unpooled threads, open descriptors and RSS (MB), after a garbage collection."""
    gc.collect()
    unpooled = [t for t in threading.enumerate() if not t.name.startswith(POOLED)]
    return len(unpooled), open_fds(), rss_mb()


def pool_sizes() -> dict[str, int]:
    """Live threads of each bounded pool the worker uses, by name prefix."""
    names = [t.name for t in threading.enumerate()]
    return {prefix: sum(n.startswith(prefix) for n in names) for prefix in ("asyncio_", "decode_", "health_")}


def pools_grew_within_bounds(before: dict[str, int], after: dict[str, int], settings) -> bool:
    """Pools may fill up to their size limit after the census, never beyond it.

    Growth is compared rather than absolute counts because idle pool threads of earlier tests'
    event loops and apps may still be alive in this process.
    """
    limits = {"asyncio_": min(32, (os.cpu_count() or 1) + 4), "decode_": settings.request_threads, "health_": 2}
    return all(after[prefix] - before[prefix] <= limit for prefix, limit in limits.items())


@pytest.mark.slow
async def test_no_leaks_across_many_faults(worker: EmulatedService) -> None:
    """Forty faults of every kind: threads and descriptors return to their level, memory stays flat."""
    device = emulator.device()
    faults = [
        lambda: device.fail_next_run_async(CLIP_IMAGE_GROUP, status=MODEL_FAILURE),
        lambda: device.fail_bursts("scrfd_2_5g", count=1, status=MODEL_FAILURE),
        lambda: device.fail_bursts(CLIP_IMAGE_GROUP, count=1, status=DRIVER_FAILURE),
        lambda: device.stall(CLIP_IMAGE_GROUP, 1.2),
    ]
    async with worker.client() as client:

        async def cycle(inject) -> None:
            inject()
            responses = await asyncio.gather(*(predict(client, e) for e in (CLIP_IMAGE_ENTRIES, FACES_ENTRIES)))
            assert {r.status_code for r in responses} <= {200, 503}
            await recover(client)

        for inject in faults:  # warm-up: every kind once, so pools and caches exist
            await cycle(inject)
        threads, fds, rss = census()
        pools = pool_sizes()
        for round_ in range(9):
            for inject in faults:
                await cycle(inject)
            if round_ == 4:
                device.vanish()
                assert (await predict(client)).status_code == 503
                await wait_for(client, "down")
                device.restore()
                await recover(client)
        after_threads, after_fds, after_rss = census()
    assert after_threads <= threads, (threads, after_threads, [t.name for t in threading.enumerate()])
    assert pools_grew_within_bounds(pools, pool_sizes(), worker.settings), (pools, pool_sizes())
    assert after_fds <= fds
    assert after_rss - rss < 30, f"RSS grew from {rss:.0f} to {after_rss:.0f} MB over 41 faults"
    rebuilds = worker.runtime.health()["rebuilds"]
    assert rebuilds >= 11  # one per driver failure, plus the vanished device
    assert worker.runtime.health()["state"] == "healthy"


async def test_closing_the_worker_releases_the_device(models: Path) -> None:
    """After shutdown the device is free: a new worker opens it and serves (no leaked VDevice)."""
    first = EmulatedService(models)
    async with first.client() as client:
        assert (await predict(client)).status_code == 200
    threads = threading.active_count()
    first.app.state.service.close()
    first.runtime.close()  # only the worker's own shutdown: no emulator reset frees the device for it
    assert threading.active_count() < threads  # submitter threads have exited
    second = EmulatedService(models)
    try:
        async with second.client() as client:
            assert (await predict(client)).status_code == 200
    finally:
        second.close()
    assert not any(t.name.startswith("hailo-submit") for t in threading.enumerate())


async def test_a_failed_ocr_request_stops_submitting_its_remaining_lines(models: Path) -> None:
    """A page of 134 recognition windows whose first burst fails: the request gets its 503 and the
    rest of its windows are never sent to the device (only the window already in flight; without
    the cancellation, windows kept being submitted for the failed request).

    The emulator runs the real detector on the CPU (about a second for this page on a slow
    machine), so this worker's deadline is not the 1 s of the stall tests."""
    page, _ = text_page(1440, 2560, 16)
    image = encode(page, "PNG")
    device = emulator.device()
    worker = EmulatedService(models, request_timeout_s=20.0)
    try:
        async with worker.client() as client:
            device.fail_bursts("paddle_ocr_v5_mobile_recognition", count=1, status=MODEL_FAILURE)
            before = device.counters()["networks"].get("paddle_ocr_v5_mobile_recognition", {}).get("frames", 0)
            failed = await post_predict(client, OCR_ENTRIES, image=image)
            assert failed.status_code == 503, failed.text
            await asyncio.sleep(0.5)  # anything still submitted would run now
            sent = device.counters()["networks"]["paddle_ocr_v5_mobile_recognition"]["frames"] - before
            assert sent <= FRAMES_IN_FLIGHT, f"{sent} of 134 windows reached the device"
            served = await post_predict(client, OCR_ENTRIES, image=image)
            assert served.status_code == 200 and len(served.json()["ocr"]["text"]) >= 60, served.text
    finally:
        worker.close()
