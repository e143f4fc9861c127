"""Fault injection on the emulated device, and the recovery paths the runtime relies on."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from emulator_helpers import bind, marker, scheduled_params, write_net

from ml_target.hailo.emulator import hailo_platform as hp
from ml_target.hailo.emulator.hailo_platform.pyhailort import pyhailort as ph

pytest_plugins = ["emulator_helpers.fixtures"]


def _expected(i: int) -> np.ndarray:
    return 2 * marker(i).astype(int) + 1


def test_failed_run_async_raises_the_status_and_shuts_only_that_model_down(vdevice, tmp_path, emu):
    a = vdevice.create_infer_model(write_net(tmp_path, "a"))
    b = vdevice.create_infer_model(write_net(tmp_path, "b"))
    with a.configure() as ca, b.configure() as cb:
        emu.fail_next_run_async("a", status=36)
        with pytest.raises(ph.HailoRTDriverOperationFailedException):
            ca.run_async([bind(ca, a, marker(0))[0]])
        with pytest.raises(ph.HailoRTStreamAborted):
            ca.run_async([bind(ca, a, marker(1))[0]])
        bindings, out = bind(cb, b, marker(2))
        cb.run([bindings], 3000)
        np.testing.assert_array_equal(out, _expected(2))
        emu.fail_next_run_async(None, status=82)
        with pytest.raises(hp.HailoRTException, match=r"\b82\b"):
            cb.run_async([bind(cb, b, marker(3))[0]])


def test_reconfiguring_after_a_failure_serves_again(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    emu.fail_next_run_async("net")
    with model.configure() as broken, pytest.raises(ph.HailoRTDriverOperationFailedException):
        broken.run_async([bind(broken, model, marker(0))[0]])
    with model.configure() as fresh:
        bindings, out = bind(fresh, model, marker(5))
        fresh.run([bindings], 3000)
    np.testing.assert_array_equal(out, _expected(5))


def test_failed_bursts_report_through_the_callback_and_leave_outputs_untouched(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    with model.configure() as configured:
        emu.fail_bursts("net", count=2, status=36)
        results = []
        outs = []
        for i in range(3):
            bindings, out = bind(configured, model, marker(i))
            outs.append(out)
            job = configured.run_async([bindings], lambda completion_info: results.append(completion_info.exception))
            job.wait(3000)  # 4.23: wait() does not raise for a failed job
        assert [type(e) for e in results] == [ph.HailoRTDriverOperationFailedException] * 2 + [type(None)]
        assert not outs[0].any() and not outs[1].any()
        np.testing.assert_array_equal(outs[2], _expected(2))
        configured.run([bind(configured, model, marker(3))[0]], 3000)
    net = emu.counters()["networks"]["net"]
    assert (net["bursts"], net["failed_bursts"]) == (4, 2)


def test_stall_holds_the_whole_device(vdevice, tmp_path, emu):
    slow = vdevice.create_infer_model(write_net(tmp_path, "slow"))
    other = vdevice.create_infer_model(write_net(tmp_path, "other"))
    with slow.configure() as cs, other.configure() as co:
        emu.stall("slow", 0.4)
        stalled = cs.run_async([bind(cs, slow, marker(0))[0]])
        behind = co.run_async([bind(co, other, marker(1))[0]])
        with pytest.raises(ph.HailoRTTimeout):
            behind.wait(100)
        stalled.wait(3000)
        behind.wait(3000)
    assert emu.counters()["stall_s"] == pytest.approx(0.4)


def test_vanished_device_fails_everything_until_restored_and_old_handles_stay_dead(emu, tmp_path):
    path = write_net(tmp_path, "net")
    vd = hp.VDevice(scheduled_params())
    model = vd.create_infer_model(path)
    configured = model.configure()
    emu.stall("net", 0.3)
    done = threading.Event()
    statuses = []

    def callback(completion_info):
        statuses.append(completion_info.exception)
        done.set()

    in_flight = configured.run_async([bind(configured, model, marker(0))[0]], callback)
    queued = configured.run_async([bind(configured, model, marker(1))[0]], callback)
    emu.vanish()
    in_flight.wait(3000)
    queued.wait(3000)
    assert [type(s) for s in statuses] == [ph.HailoRTDriverOperationFailedException] * 2
    with pytest.raises(ph.HailoRTDriverOperationFailedException):
        configured.run_async([bind(configured, model, marker(2))[0]])
    with pytest.raises(ph.HailoRTDriverOperationFailedException):
        vd.create_infer_model(path)
    assert hp.Device.scan() == []
    with pytest.raises(hp.HailoRTException, match=r"\b74\b"):
        hp.VDevice(scheduled_params())
    emu.restore()
    with hp.VDevice(scheduled_params()) as fresh:
        vd.release()  # the stale handle must not free the new owner's device
        with pytest.raises(hp.HailoRTException, match=r"\b74\b"):
            hp.VDevice(scheduled_params())
        with pytest.raises(ph.HailoCommunicationClosedException):
            model.configure()
        new_model = fresh.create_infer_model(path)
        with new_model.configure() as ok:
            bindings, out = bind(ok, new_model, marker(3))
            ok.run([bindings], 3000)
        np.testing.assert_array_equal(out, _expected(3))
        with pytest.raises(ph.HailoCommunicationClosedException):
            configured.wait_for_async_ready(10)


def test_identify_fails_on_a_vanished_device(emu):
    device = hp.Device()
    emu.vanish()
    try:
        with pytest.raises(ph.HailoRTDriverOperationFailedException):
            device.control.identify()
    finally:
        emu.restore()
    assert device.control.identify().board_name == "Hailo-8"


def test_driver_version_mismatch_refuses_the_vdevice(emu):
    emu.set_driver_version_mismatch(True)
    with pytest.raises(hp.HailoRTException, match=r"\b76\b.*HAILO_INVALID_DRIVER_VERSION") as caught:
        hp.VDevice(scheduled_params())
    assert "Driver version (4.22.0) is different from library version (4.23.0)" in str(caught.value.__cause__)
    emu.set_driver_version_mismatch(False)
    with hp.VDevice(scheduled_params()):
        pass


def test_a_compute_that_raises_fails_its_burst_with_internal_failure(vdevice, tmp_path, emu):
    from ml_target.hailo import emulator

    def broken(inputs):
        raise RuntimeError("compute bug")

    emulator.register_compute("emulator_test_broken", broken)
    try:
        model = vdevice.create_infer_model(write_net(tmp_path, "net", compute="emulator_test_broken"))
        seen = []
        with model.configure() as configured:
            configured.run_async([bind(configured, model, marker(0))[0]],
                                 lambda completion_info: seen.append(completion_info.exception)).wait(3000)
        assert len(seen) == 1 and "HAILO_INTERNAL_FAILURE" in str(seen[0])
    finally:
        emulator.unregister_compute("emulator_test_broken")


def test_shutdown_aborts_queued_and_running_frames_and_still_runs_their_callbacks(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    configured = model.configure()
    emu.stall("net", 0.2)
    seen = []
    jobs = [configured.run_async([bind(configured, model, marker(i))[0]],
                                 lambda completion_info: seen.append(type(completion_info.exception)))
            for i in range(3)]
    configured.shutdown()
    for job in jobs:
        job.wait(3000)
    assert seen == [ph.HailoRTStreamAborted] * 3
    with pytest.raises(ph.HailoRTStreamAborted):
        configured.run_async([bind(configured, model, marker(4))[0]])
