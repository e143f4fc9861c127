"""Search sessions: background bursts leave the device idle for the next search, and never starve.

The gate's rules are checked with explicit clocks; then through the runtime on the emulated
hailo8 timing profile, a background flood of long multi-context bursts against a search every
150 ms, with and without sessions.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from test_runtime import emu, expected, make_runtime, marker, write_affine  # noqa: F401 (fixtures)

from ml_target.config import Settings
from ml_target.errors import ConfigurationError, DeviceError, DeviceTimeout
from ml_target.hailo.sessions import SearchSessions, SessionPolicy, is_interactive, session_policy


def gate(session_s: float = 10.0, share: float = 0.1, starvation_s: float = 5.0) -> SearchSessions:
    return SearchSessions(SessionPolicy(session_s, share, starvation_s))


def test_outside_a_session_background_goes_at_once():
    sessions = gate()
    assert sessions.background_wait(100.0, 100.0) == 0.0
    assert sessions.background_wait(100.0, 100.0) == 0.0  # several bursts in flight: no limit
    assert not sessions.in_session(100.0)


def test_in_a_session_one_background_burst_then_an_idle_gap_of_its_share():
    sessions = gate(share=0.1)
    sessions.interactive_arrived(10.0)
    assert sessions.background_wait(10.1, 10.1) == 0.0  # granted
    assert sessions.background_wait(10.11, 10.1) == math.inf  # one at a time
    sessions.background_done(started=10.1, now=10.14)  # a 40 ms burst buys 360 ms of idle device
    assert sessions.background_wait(10.2, 10.2) == pytest.approx(0.3)
    assert sessions.background_wait(10.51, 10.2) == 0.0
    assert sessions.stats()["background_held_s"] == pytest.approx(0.36)


def test_a_session_ends_session_s_after_the_last_search():
    sessions = gate(session_s=2.0)
    sessions.interactive_arrived(1.0)
    sessions.interactive_arrived(2.5)  # extends, same session
    sessions.background_wait(3.0, 3.0)
    sessions.background_done(3.0, 3.2)  # next burst at 5.0, but the session ends at 4.5
    assert sessions.background_wait(4.4, 4.4) > 0
    assert sessions.background_wait(4.5, 4.5) == 0.0
    sessions.interactive_arrived(9.0)
    assert sessions.stats()["sessions"] == 2


def test_in_a_session_the_network_holding_the_oldest_frame_goes_first():
    sessions = gate()
    sessions.interactive_arrived(1.0)
    sessions.background_waiting("ocr_recognition", 0.5)  # the OCR request has waited longest
    sessions.background_waiting("clip_image", 0.9)
    assert 0 < sessions.background_wait(1.0, 0.9) < 0.1  # clip asks again shortly
    assert sessions.background_wait(1.0, 0.5) == 0.0
    sessions.background_done(1.0, 1.0)
    sessions.background_waiting("ocr_recognition", None)
    assert sessions.background_wait(1.0, 0.9) == 0.0


def test_a_frame_that_waited_starvation_s_goes_regardless():
    sessions = gate(starvation_s=5.0)
    sessions.interactive_arrived(0.0)
    assert sessions.background_wait(0.0, 0.0) == 0.0
    sessions.background_done(0.0, 1.0)  # a long burst: the next would wait 9 s
    assert sessions.background_wait(4.9, 0.0) > 0
    assert sessions.background_wait(5.0, 0.0) == 0.0
    assert sessions.stats()["starvation_grants"] == 1


def test_sessions_spend_a_budget_so_endless_searching_cannot_hold_the_scan_back_for_long():
    sessions = SearchSessions(SessionPolicy(10.0, 0.1, 5.0, budget_s=60.0, refill=0.1))
    now = 0.0
    while sessions.stats()["budget_exhausted"] is False and now < 200:  # a search every second
        sessions.interactive_arrived(now)
        now += 1.0
    # 60 s of budget, refilled at 0.1 s/s while being spent at 1 s/s: gone after about 67 s.
    assert 65 <= now <= 69, now
    sessions.background_wait(now, now)
    sessions.background_done(now, now + 0.04)
    assert sessions.background_wait(now + 0.05, now) == 0.0  # priority only: no idle gap
    for _ in range(50):  # searching on: no session while the budget refills
        now += 1.0
        sessions.interactive_arrived(now)
    assert not sessions.in_session(now) and sessions.stats()["budget_exhausted"]
    now += 60.0  # refilled past one session's worth (10 s at 0.1 s/s takes 100 s in all)
    sessions.interactive_arrived(now)
    assert sessions.in_session(now) and sessions.stats()["sessions"] == 2


def test_disabled_sessions_never_hold_background():
    for policy in (SessionPolicy(0.0, 0.05, 5.0), SessionPolicy(10.0, 1.0, 5.0)):
        sessions = SearchSessions(policy)
        sessions.interactive_arrived(0.0)
        sessions.background_wait(0.0, 0.0)
        sessions.background_done(0.0, 1.0)
        assert sessions.background_wait(0.1, 0.1) == 0.0


def test_settings_and_policy():
    assert is_interactive(24) and not is_interactive(16)
    defaults = Settings()
    assert (defaults.search_session_s, defaults.search_background_share) == (10.0, 0.03)
    policy = session_policy(Settings(queue_wait_s=10.0, request_timeout_s=30.0))
    assert policy.starvation_s == 5.0  # half the queue-wait limit: held frames never hit it
    assert (policy.budget_s, policy.refill) == (300.0, 0.1)  # five minutes of holding, <= 10 % in the long run
    assert session_policy(Settings(queue_wait_s=0.0, request_timeout_s=8.0)).starvation_s == 4.0
    parsed = Settings.from_env({"SEARCH_SESSION_S": "0", "SEARCH_BACKGROUND_SHARE": "0.2"})
    assert (parsed.search_session_s, parsed.search_background_share) == (0.0, 0.2)
    for bad in ("0", "1.5", "-1", "lots"):
        with pytest.raises(ConfigurationError, match="SEARCH_BACKGROUND_SHARE"):
            Settings.from_env({"SEARCH_BACKGROUND_SHARE": bad})


BACKGROUND_MS = (40.0, 1.0)  # a multi-context burst of 4: 44 ms the device cannot give up
SEARCH_MS = (5.0, 1.0)
SLOW_S = 0.025  # a search slower than this waited for a background burst


async def _search_under_a_scan(make_runtime, tmp_path, emu, session_s: float) -> dict:  # noqa: F811
    runtime = make_runtime(
        hailo_emulator_profile="hailo8",
        request_timeout_s=5.0,
        search_session_s=session_s,
        search_background_share=0.05,
    )
    scan = runtime.load(write_affine(tmp_path, "scan", timing=BACKGROUND_MS), batch_size=4, priority=16)
    search = runtime.load(
        write_affine(tmp_path, "search", timing=SEARCH_MS, multi_context=False), batch_size=1, priority=24
    )
    stop = asyncio.Event()
    served: list[bool] = []

    async def scanner(i: int) -> None:
        while not stop.is_set():
            frame = marker(i)
            out = await scan.infer(frame)
            served.append(bool((out["scan/fc1"] == expected(frame)).all()))

    scanners = [asyncio.create_task(scanner(i)) for i in range(8)]
    await asyncio.sleep(0.3)
    busy_before = emu.counters()["networks"]["scan"]["busy_ms"]
    started = time.monotonic()
    latencies = []
    for i in range(20):
        t0 = time.monotonic()
        out = await search.infer(marker(100 + i))
        latencies.append(time.monotonic() - t0)
        assert (out["search/fc1"] == expected(marker(100 + i))).all()
        await asyncio.sleep(0.15)
    window_ms = (time.monotonic() - started) * 1000
    share = (emu.counters()["networks"]["scan"]["busy_ms"] - busy_before) / window_ms
    await asyncio.sleep(session_s + 0.1)  # the session ends; the scan takes the device back
    busy_after = emu.counters()["networks"]["scan"]["busy_ms"]
    await asyncio.sleep(0.5)
    share_after = (emu.counters()["networks"]["scan"]["busy_ms"] - busy_after) / 500
    stop.set()
    await asyncio.gather(*scanners)
    return {
        "slow": sum(latency > SLOW_S for latency in latencies),
        "share": share,
        "share_after": share_after,
        "served": served,
        "sessions": runtime.health()["search_sessions"],
    }


async def test_searches_find_the_device_idle_during_a_session(make_runtime, tmp_path, emu):  # noqa: F811
    result = await _search_under_a_scan(make_runtime, tmp_path, emu, session_s=1.0)
    assert result["slow"] <= 6, result  # about 5 % of searches meet a burst (share 0.05)
    assert result["share"] < 0.15, result
    assert result["share_after"] > 0.7, result  # after the session the scan runs at full speed
    assert result["served"] and all(result["served"]), "every scan frame got its own answer"
    assert result["sessions"]["sessions"] == 1 and result["sessions"]["background_held_s"] > 1.0


async def test_without_sessions_the_scan_keeps_the_device_and_searches_wait(make_runtime, tmp_path, emu):  # noqa: F811
    result = await _search_under_a_scan(make_runtime, tmp_path, emu, session_s=0.0)
    assert result["slow"] >= 5, result  # most searches wait for the rest of a 44 ms burst
    assert result["share"] > 0.7, result
    assert result["served"] and all(result["served"])


@pytest.mark.parametrize("fault", ["failed run_async", "failed burst", "stalled burst"])
async def test_a_background_burst_that_fails_in_a_session_returns_its_grant(make_runtime, tmp_path, emu, fault):  # noqa: F811
    """Every path that ends a granted burst gives the grant back: a leaked grant would hold all
    background work until the starvation bound, in every later session."""
    runtime = make_runtime(
        hailo_emulator_profile="hailo8", request_timeout_s=1.0, search_session_s=30.0, search_background_share=0.5
    )
    scan = runtime.load(write_affine(tmp_path, "scan", timing=(20.0, 1.0)), batch_size=4, priority=16)
    search = runtime.load(write_affine(tmp_path, "search", timing=SEARCH_MS), batch_size=1, priority=24)
    await search.infer(marker(0))  # a session starts
    if fault == "failed run_async":
        emu.fail_next_run_async("scan", status=8)  # HAILO_INTERNAL_FAILURE: the model is re-configured
    elif fault == "failed burst":
        emu.fail_bursts("scan", count=1, status=8)
    else:
        emu.stall("scan", 1.5)
    with pytest.raises((DeviceError, DeviceTimeout)):
        await scan.infer(marker(1))
    await asyncio.sleep(2.0)  # the failed burst's idle gap and the device's stall are over
    before = runtime.health()["search_sessions"]["starvation_grants"]
    started = time.monotonic()
    for i in range(3):
        out = await scan.infer(marker(2 + i))
        assert (out["scan/fc1"] == expected(marker(2 + i))).all()
    # The session's share (a 21 ms burst, then 21 ms idle), not the 0.5 s starvation bound per burst.
    assert time.monotonic() - started < 0.45
    sessions = runtime.health()["search_sessions"]
    assert sessions["active"] and sessions["starvation_grants"] == before, sessions
