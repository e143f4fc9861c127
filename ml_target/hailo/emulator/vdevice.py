"""`VDevice`, `VDeviceParams`, `Device` and its `Control`, with HailoRT 4.23's defaults and errors.

4.x specifics reproduced: `create_params()` selects scheduler NONE; the scheduler getter returns a
plain int; one physical device per process unless VDevices share a non-UNIQUE group id; the
multi-process service needs a scheduler; creating models from a forked child is refused.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_target.hailo.emulator.device import DEVICE_ID, LIBRARY_VERSION, simulated_device
from ml_target.hailo.emulator.enums import (
    DeviceArchitectureTypes,
    HailoSchedulingAlgorithm,
)
from ml_target.hailo.emulator.exceptions import (
    ExceptionWrapper,
    HailoRTException,
    Status,
    StatusError,
)

if TYPE_CHECKING:
    from typing import Self

UNIQUE = "UNIQUE"


class VDeviceParams:
    """pybind `VDeviceParams`; `scheduling_algorithm` is set with the enum and read back as an int."""

    def __init__(self) -> None:
        self.device_count = 1
        self._device_ids: list[str] = []
        self._scheduling_algorithm = int(HailoSchedulingAlgorithm.ROUND_ROBIN)
        self.group_id = UNIQUE
        self.multi_process_service = False

    @staticmethod
    def default() -> VDeviceParams:
        params = VDeviceParams()
        params.scheduling_algorithm = HailoSchedulingAlgorithm.NONE
        return params

    @property
    def scheduling_algorithm(self) -> int:
        return self._scheduling_algorithm

    @scheduling_algorithm.setter
    def scheduling_algorithm(self, value: HailoSchedulingAlgorithm) -> None:
        if not isinstance(value, HailoSchedulingAlgorithm):
            raise TypeError("scheduling_algorithm must be a HailoSchedulingAlgorithm")
        self._scheduling_algorithm = int(value)

    @property
    def device_ids(self) -> list[str]:
        return list(self._device_ids)

    @device_ids.setter
    def device_ids(self, ids: list[str]) -> None:
        for device_id in ids:
            if not isinstance(device_id, str) or not device_id:
                with ExceptionWrapper():
                    raise StatusError(Status.HAILO_INVALID_ARGUMENT, f"Invalid device id {device_id!r}")
        self._device_ids = [str(i) for i in ids]
        self.device_count = len(ids)


@dataclass(frozen=True)
class TemperatureInfo:
    ts0_temperature: float
    ts1_temperature: float
    sample_count: int


@dataclass(frozen=True)
class FirmwareVersion:
    major: int
    minor: int
    revision: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.revision} (release,app)"


@dataclass(frozen=True)
class BoardInformation:
    protocol_version: int
    firmware_version: FirmwareVersion
    logger_version: int
    board_name: str
    is_release: bool
    device_architecture: DeviceArchitectureTypes
    serial_number: str
    part_number: str
    product_name: str


_BOARDS = {
    "hailo8": (DeviceArchitectureTypes.HAILO8, "Hailo-8", "HAILO-8 AI ACC M.2 M KEY MODULE (EMULATED)"),
    "hailo8l": (DeviceArchitectureTypes.HAILO8L, "Hailo-8L", "HAILO-8L AI ACC M.2 B+M KEY MODULE (EMULATED)"),
    "hailo8_a0": (DeviceArchitectureTypes.HAILO8_A0, "Hailo-8", "HAILO-8 A0 ENGINEERING SAMPLE (EMULATED)"),
}


class Control:
    """The device's control API (the subset a worker uses: identify, temperature)."""

    def __init__(self) -> None:
        self._samples = 0

    def identify(self) -> BoardInformation:
        device = simulated_device()
        with ExceptionWrapper():
            device.check_alive(device.generation)
        arch, board, product = _BOARDS[device.architecture]
        major, minor, revision = (int(p) for p in LIBRARY_VERSION.split("."))
        return BoardInformation(2, FirmwareVersion(major, minor, revision), 0, board, True, arch,
                                "EMULATED0000001", "EMU-H8", product)

    def get_chip_temperature(self) -> TemperatureInfo:
        device = simulated_device()
        with ExceptionWrapper():
            device.check_alive(device.generation)
        self._samples = (self._samples + 1) % 65536
        return TemperatureInfo(47.25, 47.5, self._samples)


class Device:
    """A physical device handle for control calls (inference goes through `VDevice`)."""

    @classmethod
    def scan(cls) -> list[str]:
        return [] if simulated_device().vanished else [DEVICE_ID]

    def __init__(self, device_id: str | None = None) -> None:
        gc.collect()
        self._device_id = None
        if device_id is None:
            ids = Device.scan()
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")
            device_id = ids[0]
        if device_id not in Device.scan():
            with ExceptionWrapper():
                raise StatusError(Status.HAILO_NOT_FOUND, f"Device {device_id!r} not found")
        self._device_id = device_id
        self._control = Control()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args) -> bool:
        self.release()
        return False

    def __repr__(self) -> str:
        return f"Device({self._device_id!r})"

    def release(self) -> None:
        """A control handle does not own the device (VDevices do), so there is nothing to free."""

    @property
    def device_id(self) -> str | None:
        return self._device_id

    @property
    def control(self) -> Control:
        return self._control

    @property
    def loaded_network_groups(self) -> list:
        return []


class VDevice:
    """The virtual device models are created and configured on."""

    def __init__(self, params: VDeviceParams | None = None, *, device_ids: list[str] | None = None) -> None:
        gc.collect()
        self._generation: int | None = None
        self._creation_pid = os.getpid()
        if params is not None and params.device_ids and device_ids:
            with ExceptionWrapper():
                raise StatusError(Status.HAILO_INVALID_OPERATION, "Both params.device_ids and device_ids were given")
        if device_ids:
            params = VDeviceParams.default()
            params.device_ids = list(device_ids)
        self._params = params if params is not None else VDevice.create_params()
        device = simulated_device()
        with ExceptionWrapper():
            if self._params.multi_process_service and self._params.scheduling_algorithm == 0:
                raise StatusError(Status.HAILO_INVALID_ARGUMENT,
                                  "Multi-process service is supported only with HailoRT scheduler, "
                                  "please choose scheduling algorithm")
            unknown = [i for i in self._params.device_ids if i not in Device.scan()]
            if unknown and not device.vanished:
                raise StatusError(Status.HAILO_NOT_FOUND, f"Device ids {unknown} not found")
            self._generation = device.acquire(self._params.group_id)

    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams.default()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args) -> bool:
        self.release()
        return False

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        if self._generation is not None:
            simulated_device().release(self._generation)
            self._generation = None

    @property
    def scheduled(self) -> bool:
        return self._params.scheduling_algorithm != 0

    def _check_process(self, what: str) -> None:
        if os.getpid() != self._creation_pid:
            raise HailoRTException(what)

    def _live_generation(self) -> int:
        """The device generation this VDevice holds; a released VDevice has no device."""
        if self._generation is None:
            raise AttributeError("'NoneType' object has no attribute 'create_infer_model_from_file'")
        device = simulated_device()
        with ExceptionWrapper():
            device.check_alive(self._generation)
        return self._generation

    def create_infer_model(self, hef_source: str | bytes, name: str = ""):
        from ml_target.hailo.emulator.infer_model import InferModel

        self._check_process("InferModel can be created only from the process VDevice was created in.")
        generation = self._live_generation()
        return InferModel(self, generation, hef_source, name)

    def configure(self, hef, configure_params_by_name=None):
        self._check_process("VDevice can only be configured from the process it was created in.")
        raise NotImplementedError(
            "The emulated hailo_platform implements the InferModel API only; the legacy "
            "configure()/InferVStreams API is not emulated"
        )

    def get_physical_devices_ids(self) -> list[str]:
        self._live_generation()
        return [DEVICE_ID]

    def get_physical_devices(self) -> list[Device]:
        return [Device(device_id) for device_id in self.get_physical_devices_ids()]

    @property
    def loaded_network_groups(self) -> list:
        return []
