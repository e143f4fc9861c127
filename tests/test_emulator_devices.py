"""Several emulated cards in one host, mixed chips, and the HailoRT 5.x module's differences."""

from __future__ import annotations

import numpy as np
import pytest
from emulator_helpers import bind, marker, scheduled_params, write_net

from ml_target.hailo import emulator
from ml_target.hailo.emulator import hailo_platform as hp
from ml_target.hailo.emulator.hailo_platform.pyhailort import pyhailort as ph
from ml_target.hailo.emulator.v5 import hailo_platform as hp5
from ml_target.hailo.emulator.v5.hailo_platform.pyhailort import pyhailort as ph5

pytest_plugins = ["emulator_helpers.fixtures"]

ID1, ID2 = "0000:01:00.0", "0000:02:00.0"


def _params(module, device_id: str | None = None):
    params = module.VDevice.create_params()
    params.scheduling_algorithm = module.HailoSchedulingAlgorithm.ROUND_ROBIN
    if device_id:
        params.device_ids = [device_id]
    return params


def _run(vdevice, path: str, i: int) -> np.ndarray:
    model = vdevice.create_infer_model(path)
    with model.configure() as configured:
        bindings, out = bind(configured, model, marker(i))
        configured.run([bindings], 3000)
    return out


def test_two_cards_are_listed_and_each_vdevice_takes_its_own(emu, tmp_path):
    emulator.set_devices(["hailo8", "hailo8"])
    path = write_net(tmp_path, "net", hw_arch="hailo8")
    assert hp.Device.scan() == [ID1, ID2]
    with hp.VDevice(_params(hp, ID2)) as second, hp.VDevice(_params(hp, ID1)) as first:
        assert (first.get_physical_devices_ids(), second.get_physical_devices_ids()) == ([ID1], [ID2])
        np.testing.assert_array_equal(_run(second, path, 3), 2 * marker(3).astype(int) + 1)
        np.testing.assert_array_equal(_run(first, path, 4), 2 * marker(4).astype(int) + 1)
    assert emulator.device(ID1).counters()["networks"]["net"]["frames"] == 1
    assert emulator.device(ID2).counters()["networks"]["net"]["frames"] == 1


def test_without_ids_free_cards_are_taken_in_scan_order_and_busy_ones_skipped(emu):
    emulator.set_devices(["hailo8", "hailo8"], ids=[ID2, ID1])  # HailoRT scans in directory order
    assert hp.Device.scan() == [ID2, ID1]
    a, b = hp.VDevice(scheduled_params()), hp.VDevice(scheduled_params())
    assert (a.get_physical_devices_ids(), b.get_physical_devices_ids()) == ([ID2], [ID1])
    with pytest.raises(hp.HailoRTException, match=r"\b74\b"):
        hp.VDevice(scheduled_params())
    a.release()
    b.release()


def test_an_asked_for_card_that_is_busy_or_unknown_is_an_error_not_skipped(emu):
    emulator.set_devices(["hailo8", "hailo8"])
    with hp.VDevice(_params(hp, ID1)):
        with pytest.raises(hp.HailoRTException, match=r"\b73\b.*HAILO_DEVICE_IN_USE"):
            hp.VDevice(_params(hp, ID1))
        with pytest.raises(ph.HailoRTInvalidArgumentException):
            hp.VDevice(_params(hp, "0000:09:00.0"))


def test_a_fault_on_one_card_leaves_the_other_serving(emu, tmp_path):
    emulator.set_devices(["hailo8", "hailo8"])
    path = write_net(tmp_path, "net", hw_arch="hailo8")
    with hp.VDevice(_params(hp, ID1)) as first, hp.VDevice(_params(hp, ID2)) as second:
        emulator.device(ID2).vanish()
        assert hp.Device.scan() == [ID1]
        with pytest.raises(ph.HailoRTDriverOperationFailedException):
            second.create_infer_model(path)
        np.testing.assert_array_equal(_run(first, path, 1), 2 * marker(1).astype(int) + 1)
        emulator.device(ID2).restore()
    with hp.VDevice(_params(hp, ID2)) as again:
        np.testing.assert_array_equal(_run(again, path, 2), 2 * marker(2).astype(int) + 1)


def test_faults_are_per_card(emu, tmp_path):
    emulator.set_devices(["hailo8", "hailo8"])
    path = write_net(tmp_path, "net", hw_arch="hailo8")
    emulator.device(ID2).fail_next_run_async("net", status=8)
    with hp.VDevice(_params(hp, ID1)) as first:
        _run(first, path, 0)  # the fault armed on the other card does not fire here
    with hp.VDevice(_params(hp, ID2)) as second:
        model = second.create_infer_model(path)
        with model.configure() as configured, pytest.raises(hp.HailoRTException, match=r"\b8\b"):
            configured.run_async([bind(configured, model, marker(0))[0]])


def test_several_devices_in_one_vdevice_are_refused_as_hailort_does(emu):
    emulator.set_devices(["hailo8", "hailo8l"])
    params = scheduled_params()
    params.device_ids = [ID1, ID2]
    with pytest.raises(ph.HailoRTInvalidOperationException):
        hp.VDevice(params)
    emulator.set_devices(["hailo8", "hailo8"])
    with pytest.raises(hp.HailoRTException, match=r"\b7\b.*NOT_IMPLEMENTED"):
        hp.VDevice(params)


def test_mixed_hailo8_and_hailo8l_accept_the_8l_build_on_both(emu, tmp_path):
    emulator.set_devices(["hailo8", "hailo8l"])
    h8l = write_net(tmp_path, "h8l", hw_arch="hailo8l")
    h8 = write_net(tmp_path, "h8", hw_arch="hailo8")
    for device_id in (ID1, ID2):
        with hp.VDevice(_params(hp, device_id)) as vdevice:
            _run(vdevice, h8l, 0)
    with hp.VDevice(_params(hp, ID2)) as eight_l:
        with pytest.raises(ph.HailoRTHEFNotCompatibleWithDevice):
            eight_l.create_infer_model(h8).configure()


def test_each_line_refuses_the_other_family(emu):
    emulator.set_devices(["hailo10h"])
    with pytest.raises(hp.HailoRTException, match=r"\b79\b.*NOT_SUPPORTED"):
        hp.VDevice(scheduled_params())
    with pytest.raises(hp.HailoRTException, match=r"\b79\b"):
        hp.Device(ID1)
    emulator.set_devices(["hailo8"])
    with pytest.raises(hp5.HailoRTException, match=r"\b79\b"):
        hp5.VDevice(_params(hp5))


def test_a_host_with_both_families_needs_device_ids(emu):
    emulator.set_devices(["hailo8", "hailo10h"])
    with pytest.raises(ph.HailoRTInvalidArgumentException):
        hp.VDevice(scheduled_params())
    with hp.VDevice(_params(hp, ID1)), hp5.VDevice(_params(hp5, ID2)):
        pass
    both = scheduled_params()
    both.device_ids = [ID1, ID2]
    with pytest.raises(ph.HailoRTInvalidArgumentException):
        hp.VDevice(both)
    assert emulator.library_line(["hailo10h"]) == 5 and emulator.library_line(["hailo8", "hailo8l"]) == 4
    with pytest.raises(ValueError):
        emulator.library_line()


# -- HailoRT 5.x ---------------------------------------------------------------------------------


def test_5x_defaults_version_and_exception_hierarchy(emu):
    emulator.set_devices(["hailo10h"])
    assert hp5.__version__.startswith("5.") and hp.__version__ == "4.23.0"
    assert hp5.VDevice.create_params().scheduling_algorithm == 1
    assert hp.VDevice.create_params().scheduling_algorithm == 0
    with hp5.VDevice(device_ids=[ID1]) as vdevice:
        assert vdevice.scheduled  # the keyword path keeps ROUND_ROBIN in 5.x (4.23 forces NONE)
    assert issubclass(ph5.HailoRTStatusException, ph5.HailoRTException)
    assert not issubclass(ph.HailoRTStatusException, ph.HailoRTException)
    assert ph5.HailoRTStatusException.__name__ == "HailoRTStatusException"
    assert "96 (HAILO_DEVICE_NOT_CONNECTED)" in str(ph5.exception_from_status(96))
    with pytest.raises(ph.HailoStatusInvalidValueException):
        ph.exception_from_status(96)
    assert not hasattr(ph5, "UdpRecvError") and hasattr(ph, "UdpRecvError")


def test_hailo10h_refuses_the_multi_process_service_and_several_devices(emu):
    emulator.set_devices(["hailo10h", "hailo10h"])
    params = _params(hp5, ID1)
    params.multi_process_service = True
    with pytest.raises(ph5.HailoRTInvalidOperationException):
        hp5.VDevice(params)
    several = _params(hp5)
    several.device_ids = [ID1, ID2]
    with pytest.raises(ph5.HailoRTInvalidOperationException):
        hp5.VDevice(several)


def test_hailo10h_identify_and_one_rpc_session_per_device_handle(emu):
    emulator.set_devices(["hailo10h"])
    with hp5.VDevice(_params(hp5, ID1)) as vdevice:
        for _ in range(3):
            info = vdevice.get_physical_devices()[0].control.identify()
        assert info.device_architecture == ph5.DeviceArchitectureTypes.HAILO10H
        assert str(info.firmware_version).startswith(hp5.__version__)
    assert emulator.device(0).counters()["sessions_opened"] == 3


def test_hailo10h_runs_only_10h_builds_and_reports_a_lost_card_as_not_connected(emu, tmp_path):
    emulator.set_devices(["hailo10h"])
    ten = write_net(tmp_path, "ten", hw_arch="hailo10h")
    eight = write_net(tmp_path, "eight", hw_arch="hailo8")
    with hp5.VDevice(_params(hp5, ID1)) as vdevice:
        np.testing.assert_array_equal(_run(vdevice, ten, 2), 2 * marker(2).astype(int) + 1)
        with pytest.raises(ph5.HailoRTHEFNotCompatibleWithDevice):
            vdevice.create_infer_model(eight).configure()
        model = vdevice.create_infer_model(ten)
        with model.configure() as configured:
            emulator.device(0).vanish()
            with pytest.raises(hp5.HailoRTException, match=r"\b96\b.*HAILO_DEVICE_NOT_CONNECTED"):
                configured.run_async([bind(configured, model, marker(0))[0]])
        emulator.device(0).restore()
        with pytest.raises(hp5.HailoRTException, match=r"\b77\b.*HAILO_RPC_FAILED"):
            vdevice.create_infer_model(ten)


def test_reset_returns_to_the_default_cards(emu):
    emulator.set_devices(["hailo8", "hailo8l", "hailo8"])
    emulator.device(2).set_profile("hailo8l")
    emu.reset()
    assert hp.Device.scan() == [ID1]
    assert emulator.device(0).counters()["architecture"] == emulator.default_chips()[0]


def test_one_group_id_names_one_card(emu):
    emulator.set_devices(["hailo8", "hailo8"])
    first = _params(hp, ID1)
    first.group_id = "SHARED"
    other = _params(hp, ID2)
    other.group_id = "SHARED"
    with hp.VDevice(first), pytest.raises(ph.HailoRTInvalidOperationException):
        hp.VDevice(other)
    other.group_id = "SHARED-2"
    with hp.VDevice(first), hp.VDevice(other):
        pass


def test_constant_compute_returns_the_zero_point_without_reading_the_input(emu, tmp_path):
    from ml_target.hailo.emulator.models_dir import write_hef

    emulator.set_devices(["hailo8"])
    quant = {"scale": 0.5, "zp": 7.0, "min": -3.5, "max": 124.0}
    path = write_hef(tmp_path / "c.hef", network_group="c",
                     inputs=[{"name": "c/in", "shape": [4], "type": "UINT8", "order": "NC", "quant": quant}],
                     outputs=[{"name": "c/out", "shape": [3], "type": "UINT8", "order": "NC", "quant": quant}],
                     compute={"kind": "constant"}, hw_arch="hailo8")
    with hp.VDevice(scheduled_params()) as vdevice:
        model = vdevice.create_infer_model(str(path))
        raw = vdevice.create_infer_model(str(path))
        model.output().set_format_type(hp.FormatType.FLOAT32)
        with model.configure() as floats, raw.configure() as native:
            for frame in (np.zeros(4, np.uint8), np.full(4, 255, np.uint8)):
                out = np.full(3, -1.0, np.float32)
                floats.run([floats.create_bindings(input_buffers={"c/in": frame}, output_buffers={"c/out": out})], 3000)
                np.testing.assert_array_equal(out, [0.0, 0.0, 0.0])
                q = np.zeros(3, np.uint8)
                native.run([native.create_bindings(input_buffers={"c/in": frame}, output_buffers={"c/out": q})], 3000)
                np.testing.assert_array_equal(q, [7, 7, 7])
