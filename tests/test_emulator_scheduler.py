"""Scheduling and timing of the emulated device: HailoRT's ROUND_ROBIN decision (pure), the order
in which the device serves networks, threshold/timeout coalescing, and the a + b*B time model."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from emulator_helpers import affine, bind, marker, write_net

from ml_target.hailo import emulator
from ml_target.hailo.emulator.device import SWITCH_PENALTY_MS

GATE_STARTED = threading.Event()


def _gate_compute(inputs):
    GATE_STARTED.set()
    return affine(inputs)


emulator.register_compute("emulator_test_gate", _gate_compute)
from ml_target.hailo.emulator.scheduler import Candidate, RoundRobin

pytest_plugins = ["emulator_helpers.fixtures"]

# -- the pure decision ------------------------------------------------------------------------


def _rr(*keys_priorities: tuple[int, int]) -> RoundRobin:
    rr = RoundRobin()
    for key, priority in keys_priorities:
        rr.add(key, priority)
    return rr


def test_higher_priority_group_wins_over_round_robin():
    rr = _rr((1, 16), (2, 16), (3, 24))
    cands = {k: Candidate(k, p, pending=2) for k, p in ((1, 16), (2, 16), (3, 24))}
    assert [rr.choose(cands, 0.0) for _ in range(3)] == [3, 3, 3]
    cands[3].pending = 0
    assert [rr.choose(cands, 0.0) for _ in range(4)] == [1, 2, 1, 2]


def test_round_robin_skips_models_without_frames_and_survives_removal():
    rr = _rr((1, 16), (2, 16), (3, 16))
    cands = {1: Candidate(1, 16, 1), 2: Candidate(2, 16, 0), 3: Candidate(3, 16, 1)}
    assert [rr.choose(cands, 0.0) for _ in range(4)] == [1, 3, 1, 3]
    rr.remove(3)
    assert rr.choose(cands, 0.0) == 1
    cands[1].pending = 0
    assert rr.choose(cands, 0.0) is None


def test_threshold_holds_frames_until_reached_or_timed_out_unless_idle_optimisation():
    rr = _rr((1, 16))
    waiting = {1: Candidate(1, 16, pending=2, threshold=4, timeout_s=0.1, last_run=10.0)}
    assert rr.choose(waiting, 10.05, idle_optimisation=False) is None
    assert rr.choose(waiting, 10.05, idle_optimisation=True) == 1
    assert rr.choose(waiting, 10.2, idle_optimisation=False) == 1
    assert RoundRobin.next_timeout(waiting) == pytest.approx(10.1)
    waiting[1].pending = 4
    assert rr.choose(waiting, 10.0, idle_optimisation=False) == 1


def test_default_timeout_of_zero_counts_as_elapsed_like_hailort():
    rr = _rr((1, 16))
    assert rr.choose({1: Candidate(1, 16, pending=1, threshold=8)}, 5.0, idle_optimisation=False) == 1


def test_a_ready_model_beats_a_below_threshold_one_of_higher_priority():
    rr = _rr((1, 24), (2, 16))
    cands = {1: Candidate(1, 24, 1, threshold=4, timeout_s=1.0, last_run=0.0), 2: Candidate(2, 16, 1)}
    assert rr.choose(cands, 0.5) == 2


# -- the device ---------------------------------------------------------------------------------


def _gate(vdevice, tmp_path, emu, seconds: float):
    """Occupy the device with one stalled burst of a third network, so queues can fill up."""
    model = vdevice.create_infer_model(write_net(tmp_path, "gate", compute="emulator_test_gate"))
    configured = model.configure()
    emu.stall("gate", seconds)
    GATE_STARTED.clear()
    job = configured.run_async([bind(configured, model, marker(0))[0]])
    assert GATE_STARTED.wait(2.0)
    return configured, job


def _configure(vdevice, tmp_path, group: str, *, batch: int = 1, priority: int = 16):
    model = vdevice.create_infer_model(write_net(tmp_path, group))
    model.set_batch_size(batch)
    configured = model.configure()
    configured.set_scheduler_priority(priority)
    return model, configured


def _submit(model, configured, count: int, start: int = 0):
    pairs = [bind(configured, model, marker(start + i)) for i in range(count)]
    jobs = [configured.run_async([b]) for b, _ in pairs]
    return jobs, [out for _, out in pairs]


def test_device_serves_the_higher_priority_network_first(vdevice, tmp_path, emu):
    gate, gate_job = _gate(vdevice, tmp_path, emu, 0.3)
    low = _configure(vdevice, tmp_path, "low", priority=16)
    high = _configure(vdevice, tmp_path, "high", priority=24)
    jobs_low, _ = _submit(*low, 4)
    jobs_high, outs_high = _submit(*high, 4, start=10)
    for job in [gate_job, *jobs_low, *jobs_high]:
        job.wait(5000)
    assert [net for net, _ in emu.burst_log()] == ["gate"] + ["high"] * 4 + ["low"] * 4
    for i, out in enumerate(outs_high):
        np.testing.assert_array_equal(out, 2 * marker(10 + i).astype(int) + 1)
    for c in (gate, low[1], high[1]):
        c.shutdown()


def test_equal_priorities_alternate_in_batch_sized_bursts(vdevice, tmp_path, emu):
    gate, gate_job = _gate(vdevice, tmp_path, emu, 0.3)
    a = _configure(vdevice, tmp_path, "a", batch=2)
    b = _configure(vdevice, tmp_path, "b", batch=2)
    jobs = _submit(*a, 4)[0] + _submit(*b, 4)[0]
    for job in [gate_job, *jobs]:
        job.wait(5000)
    assert emu.burst_log() == [("gate", 1), ("a", 2), ("b", 2), ("a", 2), ("b", 2)]
    counters = emu.counters()
    assert counters["switches"] == 5
    for c in (gate, a[1], b[1]):
        c.shutdown()


def test_threshold_with_timeout_coalesces_frames_into_one_burst(vdevice, tmp_path, emu):
    emu.set_idle_optimisation(False)
    model = vdevice.create_infer_model(write_net(tmp_path, "net", multi_context=True))
    model.set_batch_size(4)
    with model.configure() as configured:
        configured.set_scheduler_threshold(4)
        configured.set_scheduler_timeout(1500)
        first, _ = _submit(model, configured, 2)
        time.sleep(0.1)
        assert emu.burst_log() == []
        second, _ = _submit(model, configured, 2, start=2)
        for job in first + second:
            job.wait(5000)
        assert emu.burst_log() == [("net", 4)]
        started = time.monotonic()
        (alone,), (out,) = _submit(model, configured, 1, start=7)
        alone.wait(5000)
        assert time.monotonic() - started > 1.0  # held until the timeout since the last run
    assert emu.burst_log() == [("net", 4), ("net", 1)]
    np.testing.assert_array_equal(out, 2 * marker(7).astype(int) + 1)


def test_idle_optimisation_runs_a_lone_frame_below_threshold_at_once(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "net", multi_context=True))
    model.set_batch_size(4)
    with model.configure() as configured:
        configured.set_scheduler_threshold(4)
        configured.set_scheduler_timeout(5000)
        (job,), _ = _submit(model, configured, 1)
        job.wait(2000)
    assert emu.burst_log() == [("net", 1)]


def test_busy_time_is_a_plus_b_times_burst_size_on_the_hailo8_profile(vdevice, tmp_path, emu):
    emu.set_profile("hailo8")
    a, b = 3.0, 2.0
    model = vdevice.create_infer_model(write_net(tmp_path, "timed", timing=(a, b), multi_context=True))
    model.set_batch_size(4)
    with model.configure() as configured:
        started = time.monotonic()
        bindings = [bind(configured, model, marker(i))[0] for i in range(7)]
        configured.run(bindings, 5000)
        elapsed_ms = (time.monotonic() - started) * 1000
    net = emu.counters()["networks"]["timed"]
    sizes = net["burst_sizes"]
    assert sum(size * n for size, n in sizes.items()) == net["frames"] == 7
    assert net["busy_ms"] == pytest.approx(sum(n * (a + b * size) for size, n in sizes.items()))
    assert net["bursts"] == sum(sizes.values())
    assert elapsed_ms >= net["busy_ms"]


def test_hailo8l_profile_uses_the_8l_timing_and_none_models_no_time(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "timed", timing=(1.0, 0.5)))
    with model.configure() as configured:
        emu.set_profile("hailo8l")
        configured.run([bind(configured, model, marker(0))[0]], 5000)
        assert emu.counters()["networks"]["timed"]["busy_ms"] == pytest.approx(2.0 + 1.0)
        emu.set_profile("none")
        configured.run([bind(configured, model, marker(1))[0]], 5000)
        assert emu.counters()["networks"]["timed"]["busy_ms"] == pytest.approx(3.0)


def test_switching_networks_costs_the_switch_penalty(vdevice, tmp_path, emu):
    emu.set_profile("hailo8")
    a = _configure(vdevice, tmp_path, "a")
    b = _configure(vdevice, tmp_path, "b")
    for i in range(3):
        for model, configured in (a, b):
            configured.run([bind(configured, model, marker(i))[0]], 5000)
    counters = emu.counters()
    assert counters["switches"] == 6
    assert counters["switch_ms"] == pytest.approx(6 * SWITCH_PENALTY_MS)
    a[1].shutdown()
    b[1].shutdown()
