"""Recovery on the emulated device: injected failures are survived and later calls succeed."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
import test_runtime
from test_runtime import expected, marker, write_affine

from ml_target.errors import (
    ConfigurationError,
    DeviceError,
    DeviceTimeout,
    ServiceUnavailable,
)

emu = test_runtime.emu  # the emulator and runtime fixtures, shared with test_runtime.py
make_runtime = test_runtime.make_runtime


async def wait_for_state(runtime, state: str, seconds: float = 5.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        health = runtime.health()
        if health["state"] == state:
            return health
        await asyncio.sleep(0.02)
    raise AssertionError(f"health never became {state}: {runtime.health()}")


async def ok(net, i: int = 5, timeout: float = 2.0) -> None:
    out = await net.infer(marker(i), timeout=timeout)
    np.testing.assert_array_equal(out["affine/fc1"], expected(marker(i)))


async def test_failed_run_async_reconfigures_the_model(make_runtime, emu, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    await ok(net)
    emu.fail_next_run_async("affine", status=82)
    with pytest.raises(DeviceError):
        await net.infer(marker(1))
    assert runtime.health()["state"] == "degraded"
    await ok(net)
    assert runtime.health()["state"] == "healthy"
    stats = runtime.stats()["networks"]["affine"]
    assert (stats["errors"], stats["reconfigures"], runtime.stats()["rebuilds"]) == (1, 1, 0)
    assert "82" in stats["last_error"] or "QUEUE_IS_FULL" in stats["last_error"]


async def test_failed_bursts_fail_their_callers_only_and_recover(make_runtime, emu, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    emu.fail_bursts("affine", count=2, status=8)
    for _ in range(2):
        with pytest.raises(DeviceError):
            await net.infer(marker(1))
    assert runtime.health()["state"] == "degraded"
    await asyncio.gather(*(ok(net, i) for i in range(8)))
    health = runtime.health()
    assert health["state"] == "healthy" and health["rebuilds"] == 0
    assert runtime.stats()["networks"]["affine"]["errors"] == 2


async def test_frames_caught_in_flight_by_a_reconfigure_are_served_on_the_new_model(make_runtime, emu, tmp_path):
    """Two bursts in flight and the first fails: its callers get the error, while the second
    burst's callers, caught in flight by the re-configure, are resubmitted and get their results."""
    runtime = make_runtime(hailo_emulator_profile="hailo8")
    net = runtime.load(write_affine(tmp_path, "affine", timing=(40.0, 0.5)), batch_size=2, priority=16)
    await ok(net)
    emu.fail_bursts("affine", count=1, status=8)
    results = await asyncio.gather(*(net.infer(marker(i)) for i in range(4)), return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert 1 <= len(failed) <= 2 and all(isinstance(e, DeviceError) for e in failed), failed
    assert not any("re-configured" in str(e) for e in failed), failed
    for i, result in enumerate(results):
        if not isinstance(result, BaseException):
            np.testing.assert_array_equal(result["affine/fc1"], expected(marker(i)))
    stats = runtime.stats()["networks"]["affine"]
    assert stats["retried"] == 4 - len(failed) and stats["reconfigures"] == 1
    await ok(net)


async def test_repeated_failures_escalate_to_a_device_rebuild(make_runtime, emu, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    emu.fail_bursts("affine", count=3, status=8)
    for _ in range(3):
        with pytest.raises(DeviceError):
            await net.infer(marker(1))
    await wait_for_state(runtime, "healthy")
    await ok(net)
    assert runtime.health()["rebuilds"] == 1


async def test_driver_error_rebuilds_the_device(make_runtime, emu, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    emu.fail_next_run_async("affine", status=36)
    with pytest.raises(DeviceError):
        await net.infer(marker(1))
    await wait_for_state(runtime, "healthy")
    await ok(net)
    assert runtime.health()["rebuilds"] == 1


async def test_stall_past_the_deadline_is_recovered(make_runtime, emu, tmp_path):
    runtime = make_runtime(request_timeout_s=0.3)
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=2, priority=16)
    emu.stall("affine", 0.8)
    with pytest.raises(DeviceTimeout):
        await net.infer(marker(1))
    await asyncio.sleep(0.6)
    await ok(net, timeout=2.0)
    await wait_for_state(runtime, "healthy")
    stats = runtime.stats()["networks"]["affine"]
    assert (stats["timeouts"], stats["reconfigures"]) == (1, 1)


async def test_vanished_device_goes_down_then_comes_back(make_runtime, emu, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    await ok(net)
    emu.vanish()
    with pytest.raises(ServiceUnavailable):
        await net.infer(marker(1))
    health = await wait_for_state(runtime, "down")
    assert health["reason"]
    t0 = time.monotonic()
    with pytest.raises(ServiceUnavailable):
        await net.infer(marker(1))
    assert time.monotonic() - t0 < 0.1
    emu.restore()
    await wait_for_state(runtime, "healthy")
    await ok(net)
    assert runtime.health()["rebuilds"] == 1


def test_startup_failures_are_configuration_errors(emu):
    from ml_target.config import Settings
    from ml_target.hailo.runtime import Runtime

    emu.set_driver_version_mismatch(True)
    with pytest.raises(ConfigurationError, match="driver"):
        Runtime(Settings(hailo_device="emulator", hailo_emulator_profile="none"))
