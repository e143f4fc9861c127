"""Pure parts of the runtime layer: failure classification, frame checks, enum and arch names."""

from __future__ import annotations

import enum

import numpy as np
import pytest

from ml_target.hailo import faults
from ml_target.hailo.frames import FrameError, check_frame, output_buffers
from ml_target.hailo.runtime import arch_name, enum_name
from ml_target.hailo.types import EdgeInfo, QuantInfo

Q = QuantInfo(scale=1.0, zp=0.0, min=0.0, max=255.0)
IMAGE = EdgeInfo("net/input_layer1", (4, 4, 3), np.dtype(np.uint8), Q)
TOKENS = EdgeInfo("net/input_layer2", (2, 3), np.dtype(np.float32), Q)


class HailoRTException(Exception):
    pass


class HailoCommunicationClosedException(HailoRTException):
    pass


class HailoRTTimeout(HailoRTException):
    pass


class StatusError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"status {code}")
        self.code = code


def test_status_code_is_parsed_from_the_generic_message():
    message = "libhailort failed with error: 74 (HAILO_OUT_OF_PHYSICAL_DEVICES)"
    assert faults.status_code(HailoRTException(message)) == 74
    assert faults.status_code(HailoRTException("Invalid operation. See hailort.log for more information")) is None
    assert faults.status_code(StatusError(82)) == 82


def test_device_fatal_by_class_code_or_cause():
    assert faults.is_device_fatal(HailoCommunicationClosedException("Communication closed failure"))
    assert faults.is_device_fatal(HailoRTException("libhailort failed with error: 36 (HAILO_DRIVER_OPERATION_FAILED)"))
    wrapped = HailoRTException("Invalid operation. See hailort.log for more information")
    wrapped.__cause__ = StatusError(62)
    assert faults.is_device_fatal(wrapped)
    assert not faults.is_device_fatal(HailoRTException("libhailort failed with error: 82 (HAILO_QUEUE_IS_FULL)"))
    assert not faults.is_device_fatal(HailoRTException("Stream was aborted"))


def test_timeout_is_recognised_by_class_name():
    assert faults.is_timeout(HailoRTTimeout("Received a timeout"))
    assert not faults.is_timeout(HailoRTException("Received a timeout"))


class HailoRTHEFNotCompatibleWithDevice(HailoRTException):
    pass


def test_status_code_of_generic_messages_comes_from_the_class():
    exc = HailoRTHEFNotCompatibleWithDevice("HEF file is not compatible with device. See hailort.log")
    assert faults.status_code(exc) == 93
    assert "another Hailo architecture" in faults.startup_advice(exc)
    assert faults.describe(exc).endswith("(status 93)")


def test_startup_advice_names_the_remedy():
    assert "HAILO_MULTI_PROCESS_SERVICE" in faults.startup_advice(HailoRTException("failed with error: 74 (X)"))
    assert "driver" in faults.startup_advice(HailoRTException("failed with error: 76 (X)"))


def test_single_array_frame_maps_to_the_only_input():
    pixels = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    checked = check_frame(pixels, (IMAGE,), "net")
    assert list(checked) == ["net/input_layer1"]
    np.testing.assert_array_equal(checked["net/input_layer1"], pixels)


def test_leading_batch_axis_and_non_contiguous_arrays_are_normalised():
    pixels = np.arange(96, dtype=np.uint8).reshape(4, 8, 3)[:, ::2]
    assert not pixels.flags.c_contiguous
    checked = check_frame(pixels[None], (IMAGE,), "net")["net/input_layer1"]
    assert checked.flags.c_contiguous and checked.shape == (4, 4, 3)
    np.testing.assert_array_equal(checked, pixels)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((4, 4, 3), np.float32), "must be uint8"),
        (np.zeros((4, 4, 4), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        ([[0]], "ndarray"),
    ],
)
def test_bad_single_frames_are_refused(frame, message):
    with pytest.raises(FrameError, match=message):
        check_frame(frame, (IMAGE,), "net")


def test_multi_input_frames_need_exact_names_and_finite_floats():
    good = {IMAGE.name: np.zeros((4, 4, 3), np.uint8), TOKENS.name: np.ones((2, 3), np.float32)}
    assert set(check_frame(good, (IMAGE, TOKENS), "net")) == {IMAGE.name, TOKENS.name}
    with pytest.raises(FrameError, match="pass a dict"):
        check_frame(good[IMAGE.name], (IMAGE, TOKENS), "net")
    with pytest.raises(FrameError, match="missing"):
        check_frame({IMAGE.name: good[IMAGE.name]}, (IMAGE, TOKENS), "net")
    with pytest.raises(FrameError, match="NaN"):
        check_frame({**good, TOKENS.name: np.full((2, 3), np.nan, np.float32)}, (IMAGE, TOKENS), "net")
    assert issubclass(FrameError, ValueError)


def test_output_buffers_are_fresh_per_frame():
    first, second = output_buffers((TOKENS,)), output_buffers((TOKENS,))
    assert first[TOKENS.name].shape == (2, 3) and first[TOKENS.name].dtype == np.float32
    assert first[TOKENS.name] is not second[TOKENS.name]


class FormatType(enum.Enum):
    UINT8 = 1


class DeviceArchitectureTypes(enum.IntEnum):
    HAILO8_A0 = 0
    HAILO8 = 1
    HAILO8L = 2
    HAILO10H = 6


def test_enum_and_arch_names():
    assert enum_name(FormatType.UINT8) == "UINT8"
    assert enum_name("FormatType.UINT16") == "UINT16"
    assert arch_name(DeviceArchitectureTypes.HAILO8) == "hailo8"
    assert arch_name(DeviceArchitectureTypes.HAILO8_A0) == "hailo8_a0"  # refused: 4.23 runs no HEF on it
    assert arch_name(DeviceArchitectureTypes.HAILO8L) == "hailo8l"
    assert arch_name(DeviceArchitectureTypes.HAILO10H) == "hailo10h"
    assert arch_name(2) == "hailo8l"


def test_http_statuses_of_our_own_errors_are_not_taken_for_hailort_codes():
    from ml_target.errors import DeviceError, ServiceUnavailable
    from ml_target.hailo import faults

    assert faults.status_code(ServiceUnavailable("device down")) is None
    assert faults.describe(ServiceUnavailable("device down")) == "ServiceUnavailable: device down"
    wrapped = DeviceError("burst failed")
    wrapped.__cause__ = RuntimeError("libhailort failed with error: 36 (HAILO_DRIVER_OPERATION_FAILED)")
    assert faults.status_code(wrapped) == 36


def test_health_reports_the_chip_temperature_sampled_not_per_call(tmp_path):
    """/health and /metrics read `temperature_c`; the emulated chip reports 47.25 / 47.5 degrees C."""
    from ml_target.config import Settings
    from ml_target.hailo import emulator
    from ml_target.hailo.runtime import Runtime

    emulator.device().reset()
    runtime = Runtime(Settings.from_env({"HAILO_DEVICE": "emulator", "HAILO_EMULATOR_PROFILE": "none"}))
    try:
        assert runtime.health()["temperature_c"] == 47.5
        emulator.device().vanish()
        assert runtime.health()["temperature_c"] == 47.5  # cached: no control call within the interval
    finally:
        emulator.device().restore()
        runtime.close()
        emulator.device().reset()
