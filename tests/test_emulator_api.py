"""The emulated `hailo_platform` surface: names, enums, exceptions, VDevice, Device, HEF, InferModel."""

from __future__ import annotations

import json
import pickle

import pytest
from emulator_helpers import U8, scheduled_params, write_net

from ml_target.hailo.emulator import hailo_platform as hp
from ml_target.hailo.emulator import vdevice as vdevice_module
from ml_target.hailo.emulator.hailo_platform.pyhailort import pyhailort as ph
from ml_target.hailo.emulator.models_dir import write_hef

pytest_plugins = ["emulator_helpers.fixtures"]

# -- import surface and enums -------------------------------------------------------------------


def test_top_level_names_match_hailort_4_23():
    for name in ("HEF", "VDevice", "Device", "FormatType", "FormatOrder", "HailoSchedulingAlgorithm",
                 "HailoStreamInterface", "HailoStreamDirection", "HailoFormatFlags", "HailoPowerMode",
                 "HailoRTException", "HailoRTStreamAbortedByUser", "HailoCommunicationClosedException",
                 "AsyncInferJob"):
        assert hasattr(hp, name), name
    assert hp.__version__ == "4.23.0"
    for hidden in ("HailoRTTimeout", "InferModel", "ConfiguredInferModel", "QuantInfo"):
        assert not hasattr(hp, hidden), hidden
        assert hasattr(ph, hidden), hidden


def test_enums_print_like_pybind_and_compare_as_ints():
    assert str(hp.FormatType.UINT8) == "FormatType.UINT8"
    assert str(hp.FormatOrder.NHWC) == "FormatOrder.NHWC"
    assert str(hp.HailoSchedulingAlgorithm.ROUND_ROBIN) == "SchedulingAlgorithm.ROUND_ROBIN"
    assert [int(t) for t in hp.FormatType] == [0, 1, 2, 3]
    assert (int(hp.FormatOrder.NC), int(hp.FormatOrder.NHW), int(hp.FormatOrder.HAILO_NMS_BY_CLASS)) == (6, 5, 22)
    assert getattr(hp.FormatOrder, "12_BIT_BAYER_RGB") == 8
    assert hp.FormatType.FLOAT32.name == "FLOAT32"
    assert str(ph.DeviceArchitectureTypes.HAILO8L) == "HAILO8L"


@pytest.mark.parametrize(
    ("code", "cls", "text"),
    [
        (4, "HailoRTTimeout", "Received a timeout - hailort has failed because a timeout had occurred"),
        (6, "HailoRTInvalidOperationException", "Invalid operation. See hailort.log for more information"),
        (2, "HailoRTInvalidArgumentException", "Invalid argument. See hailort.log for more information"),
        (61, "HailoRTNotFoundException", "Item not found. See hailort.log for more information"),
        (26, "HailoRTInvalidHEFException", "Invalid HEF. See hailort.log for more information"),
        (93, "HailoRTHEFNotCompatibleWithDevice", "HEF file is not compatible with device."),
        (36, "HailoRTDriverOperationFailedException", "Failure in hailort driver ioctl."),
        (62, "HailoCommunicationClosedException", "Communication closed failure."),
        (63, "HailoRTStreamAborted", "Stream was aborted"),
        (74, "HailoRTException", "libhailort failed with error: 74 (HAILO_OUT_OF_PHYSICAL_DEVICES)"),
        (82, "HailoRTException", "libhailort failed with error: 82 (HAILO_QUEUE_IS_FULL)"),
        (13, "HailoRTException", "libhailort failed with error: 13 (HAILO_OPEN_FILE_FAILURE)"),
    ],
)
def test_status_codes_map_to_hailort_exceptions(code, cls, text):
    exc = ph.exception_from_status(code)
    assert type(exc) is getattr(ph, cls)
    assert isinstance(exc, ph.HailoRTException)
    assert str(exc).startswith(text)


def test_raw_pybind_exception_is_not_a_hailort_exception_and_bad_codes_are_refused():
    assert not issubclass(ph.HailoRTStatusException, ph.HailoRTException)
    assert ph.HailoRTPCIeDriverException is ph.HailoRTDriverOperationFailedException
    with pytest.raises(ph.HailoStatusInvalidValueException):
        ph.exception_from_status(94)


# -- VDevice ------------------------------------------------------------------------------------


def test_create_params_have_the_4x_python_defaults():
    params = hp.VDevice.create_params()
    assert params.scheduling_algorithm == 0 and type(params.scheduling_algorithm) is int
    assert (params.group_id, params.multi_process_service, params.device_count, params.device_ids) == (
        "UNIQUE", False, 1, [])
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    assert params.scheduling_algorithm == 1 and type(params.scheduling_algorithm) is int


def test_multi_process_service_needs_a_scheduler(emu):
    params = hp.VDevice.create_params()
    params.multi_process_service = True
    with pytest.raises(ph.HailoRTInvalidArgumentException):
        hp.VDevice(params)
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vd:
        assert vd.get_physical_devices_ids() == ["0000:01:00.0"]


def test_one_unique_vdevice_per_process_and_release_is_idempotent(emu):
    first = hp.VDevice()
    with pytest.raises(hp.HailoRTException, match=r"\b74\b.*HAILO_OUT_OF_PHYSICAL_DEVICES"):
        hp.VDevice()
    first.release()
    first.release()
    with hp.VDevice() as second:
        assert [d.device_id for d in second.get_physical_devices()] == ["0000:01:00.0"]
    with hp.VDevice():
        pass


def test_same_group_id_shares_the_device_and_other_groups_are_refused(emu):
    params = scheduled_params()
    params.group_id = "SHARED"
    a, b = hp.VDevice(params), hp.VDevice(params)
    other = scheduled_params()
    other.group_id = "OTHER"
    with pytest.raises(hp.HailoRTException, match=r"\b74\b"):
        hp.VDevice(other)
    a.release()
    with pytest.raises(hp.HailoRTException, match=r"\b74\b"):
        hp.VDevice()
    b.release()
    with hp.VDevice(other):
        pass


def test_device_ids_argument_and_params_device_ids_are_exclusive(emu):
    params = hp.VDevice.create_params()
    params.device_ids = ["0000:01:00.0"]
    with pytest.raises(ph.HailoRTInvalidOperationException):
        hp.VDevice(params, device_ids=["0000:01:00.0"])
    with hp.VDevice(device_ids=["0000:01:00.0"]) as vd:
        assert vd.get_physical_devices_ids() == ["0000:01:00.0"]


def test_models_cannot_be_created_from_a_forked_child(vdevice, tmp_path, monkeypatch):
    path = write_net(tmp_path, "net")
    model = vdevice.create_infer_model(path)
    real_pid = vdevice_module.os.getpid()
    monkeypatch.setattr(vdevice_module.os, "getpid", lambda: real_pid + 1)
    with pytest.raises(hp.HailoRTException, match="process VDevice was created in"):
        vdevice.create_infer_model(path)
    monkeypatch.undo()
    from ml_target.hailo.emulator import infer_model as infer_model_module

    monkeypatch.setattr(infer_model_module.os, "getpid", lambda: real_pid + 1)
    with pytest.raises(hp.HailoRTException, match="process VDevice was created in"):
        model.configure()


# -- Device -------------------------------------------------------------------------------------


def test_device_scan_identify_and_temperature_follow_the_configured_architecture(emu):
    assert hp.Device.scan() == ["0000:01:00.0"]
    with hp.Device() as device:
        info = device.control.identify()
        assert info.device_architecture == ph.DeviceArchitectureTypes.HAILO8
        assert str(info.firmware_version).startswith("4.23.0")
        temp = device.control.get_chip_temperature()
        assert 20 < temp.ts0_temperature < 90 and 20 < temp.ts1_temperature < 90
        assert device.control.get_chip_temperature().sample_count == temp.sample_count + 1
    emu.set_architecture("hailo8l")
    assert hp.Device("0000:01:00.0").control.identify().device_architecture == ph.DeviceArchitectureTypes.HAILO8L
    with pytest.raises(ph.HailoRTNotFoundException):
        hp.Device("0000:09:00.0")


# -- HEF ----------------------------------------------------------------------------------------


def _two_edge_hef(tmp_path):
    quant16 = {"scale": 0.5, "zp": 100.0, "min": -50.0, "max": 1000.0}
    return write_hef(
        tmp_path / "two.hef",
        network_group="two",
        inputs=[{"name": "two/a", "shape": [4, 6, 3], "type": "UINT8", "order": "NHWC", "quant": U8},
                {"name": "two/b", "shape": [5], "type": "UINT16", "order": "NC", "quant": quant16}],
        outputs=[{"name": "two/conv9", "shape": [2, 3], "type": "UINT8", "order": "NHW", "quant": U8}],
        timing_ms={"hailo8": [1.0, 4.0]},
        multi_context=True,
    )


def test_hef_reports_names_shapes_formats_and_quantisation(tmp_path):
    hef = hp.HEF(str(_two_edge_hef(tmp_path)))
    assert hef.get_network_group_names() == ["two"]
    assert [(g.name, g.is_multi_context) for g in hef.get_network_groups_infos()] == [("two", True)]
    assert hef.get_networks_names() == ["two/two"]
    a, b = hef.get_input_vstream_infos()
    (out,) = hef.get_output_vstream_infos()
    assert (a.name, a.shape, a.format.type, a.format.order) == ("two/a", (4, 6, 3), hp.FormatType.UINT8, hp.FormatOrder.NHWC)
    assert (b.shape, b.format.type, b.format.order) == ((5,), hp.FormatType.UINT16, hp.FormatOrder.NC)
    assert (out.shape, out.direction, out.network_name) == ((2, 3), hp.HailoStreamDirection.D2H, "two/two")
    assert (b.quant_info.qp_scale, b.quant_info.qp_zp, b.quant_info.limvals_min, b.quant_info.limvals_max) == (
        0.5, 100.0, -50.0, 1000.0)
    assert pickle.loads(pickle.dumps(b)) == b
    assert [v.name for v in hef.get_all_vstream_infos()] == ["two/a", "two/b", "two/conv9"]
    assert hef.get_sorted_output_names() == ["two/conv9"]
    assert hef.get_vstream_name_from_original_name("conv9") == "two/conv9"
    assert hef.get_original_names_from_vstream_name("two/conv9") == ["conv9"]
    assert hef.bottleneck_fps() == pytest.approx(250.0)
    assert hp.HEF(_two_edge_hef(tmp_path).read_bytes()).path is None


def test_hef_getters_leak_the_raw_exception_on_unknown_names(tmp_path):
    hef = hp.HEF(str(_two_edge_hef(tmp_path)))
    with pytest.raises(ph.HailoRTStatusException):
        hef.get_input_vstream_infos("nope")
    output = hef.get_output_vstream_infos()[0]
    with pytest.raises(ph.HailoRTStatusException):
        _ = output.nms_shape
    with pytest.raises(ph.HailoRTNotFoundException):
        hef.get_networks_names("nope")


def test_hef_sources_and_errors(tmp_path):
    with pytest.raises(hp.HailoRTException, match=r"\b13\b.*HAILO_OPEN_FILE_FAILURE"):
        hp.HEF(str(tmp_path / "missing.hef"))
    with pytest.raises(ValueError, match="file path"):
        hp.HEF(tmp_path / "missing.hef")
    real = tmp_path / "real.hef"
    real.write_bytes(b"\x01HEF" + bytes(60))
    with pytest.raises(hp.HailoRTException, match="cannot run real HEFs"):
        hp.HEF(str(real))
    broken = tmp_path / "broken.hef"
    for doc in ("{not json", json.dumps({"format": "something-else"})):
        broken.write_text(doc)
        with pytest.raises(ph.HailoRTInvalidHEFException) as caught:
            hp.HEF(str(broken))
        assert "Invalid emulated HEF" in str(caught.value.__cause__)


def test_write_hef_refuses_documents_the_emulator_cannot_parse(tmp_path):
    with pytest.raises(Exception, match="order"):
        write_hef(tmp_path / "bad.hef", network_group="bad",
                  inputs=[{"name": "bad/in", "shape": [4, 4], "type": "UINT8", "order": "NC", "quant": U8}],
                  outputs=[{"name": "bad/out", "shape": [4], "type": "UINT8", "order": "NC", "quant": U8}])
    assert not (tmp_path / "bad.hef").exists()


# -- InferModel -----------------------------------------------------------------------------------


def test_infer_model_streams_report_lists_formats_and_quant_infos(vdevice, tmp_path):
    model = vdevice.create_infer_model(str(_two_edge_hef(tmp_path)))
    assert model.input_names == ["two/a", "two/b"] and model.output_names == ["two/conv9"]
    a, b = model.inputs
    assert (a.shape, b.shape, model.output().shape) == ([4, 6, 3], [5], [2, 3])
    assert (a.format.type, b.format.type) == (hp.FormatType.UINT8, hp.FormatType.UINT16)
    assert [(q.qp_scale, q.qp_zp) for q in b.quant_infos] == [(0.5, 100.0)]
    assert not a.is_nms
    b.set_format_type(hp.FormatType.FLOAT32)
    assert model.input("two/b").format.type == hp.FormatType.FLOAT32
    model.input("two/b").set_format_type(hp.FormatType.AUTO)
    assert model.input("two/b").format.type == hp.FormatType.UINT16
    assert isinstance(model.hef, hp.HEF)


def test_edge_lookup_errors(vdevice, tmp_path):
    model = vdevice.create_infer_model(str(_two_edge_hef(tmp_path)))
    with pytest.raises(ph.HailoRTInvalidOperationException):
        model.input()
    with pytest.raises(ph.HailoRTNotFoundException):
        model.input("two/zzz")
    assert model.output().name == "two/conv9"
    with pytest.raises(hp.HailoRTException, match=r"\b7\b.*HAILO_NOT_IMPLEMENTED"):
        vdevice.create_infer_model(str(_two_edge_hef(tmp_path)), name="other")


def test_configure_refuses_a_batch_larger_than_the_queue(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net", max_queue_size=4))
    model.set_batch_size(5)
    with pytest.raises(ph.HailoRTInvalidOperationException):
        model.configure()
    model.set_batch_size(4)
    with model.configure() as configured:
        assert configured.get_async_queue_size() == 4


def test_hef_architecture_must_suit_the_device(emu, tmp_path):
    h8 = write_net(tmp_path, "h8", hw_arch="hailo8")
    h8l = write_net(tmp_path, "h8l", hw_arch="hailo8l")
    with hp.VDevice(scheduled_params()) as vd:
        for path in (h8, h8l):
            with vd.create_infer_model(path).configure():
                pass
    emu.set_architecture("hailo8l")
    with hp.VDevice(scheduled_params()) as vd:
        with vd.create_infer_model(h8l).configure():
            pass
        with pytest.raises(ph.HailoRTHEFNotCompatibleWithDevice):
            vd.create_infer_model(h8).configure()


def test_unsupported_stream_settings_fail_at_configure(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    model.output().set_nms_score_threshold(0.3)
    with pytest.raises(ph.HailoRTInvalidOperationException):
        model.configure()
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    model.input().set_format_order(hp.FormatOrder.NHWC)
    with pytest.raises(hp.HailoRTException, match=r"\b79\b"):
        model.configure()


def test_missing_callable_fails_at_configure(vdevice, tmp_path):
    path = write_net(tmp_path, "net", compute="never_registered")
    with pytest.raises(ph.HailoRTNotFoundException):
        vdevice.create_infer_model(path).configure()


def test_onnx_hef_with_missing_file_fails_at_configure(vdevice, tmp_path):
    path = write_hef(tmp_path / "o.hef", network_group="o",
                     inputs=[{"name": "o/in", "shape": [2], "type": "UINT8", "order": "NC", "quant": U8}],
                     outputs=[{"name": "o/out", "shape": [2], "type": "UINT8", "order": "NC", "quant": U8}],
                     compute={"kind": "onnx", "path": "nowhere.onnx", "normalization": None,
                              "inputs": {"o/in": {"name": "x"}}, "outputs": {"o/out": {"name": "y"}}})
    with pytest.raises(ph.HailoRTInvalidHEFException):
        vdevice.create_infer_model(str(path)).configure()
