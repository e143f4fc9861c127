"""`VDevice`, `VDeviceParams`, `Device` and its `Control`, with each HailoRT line's defaults and errors.

4.x specifics reproduced: `create_params()` selects scheduler NONE, and so does the `device_ids=`
keyword (which also ignores `params`, vdevice_api.hpp @ v4.23.0); the scheduler getter returns a
plain int; one VDevice per card unless VDevices share a non-UNIQUE group id; the multi-process
service needs a scheduler; creating models from a forked child is refused.

5.x (`VDevice5`, `Device5`, the module `hailort5.hailo_platform`): `create_params()` selects
ROUND_ROBIN (HailoRTDefaults::get_vdevice_params @ v5.2.0), and so does the `device_ids=` keyword;
a Hailo-10H takes one device per VDevice ("Only single device is supported!",
vdevice_hrpc_client.cpp), refuses the multi-process service, and every `Device` handle opens an
RPC session of its own (device_hrpc_client.cpp), counted in the card's `sessions_opened`.

Device selection follows `VDeviceBase::get_accelerator_type` / `create_devices` (vdevice.cpp):
with ids, an unknown id is 2 HAILO_INVALID_ARGUMENT and a busy card 73 HAILO_DEVICE_IN_USE; without
ids, a host with both families is refused (2) and busy cards are skipped, then 74 when too few are free.
A non-UNIQUE group id names one VDevice: asking it for another card is 6 HAILO_INVALID_OPERATION
("Device {} not used by group_id {}", `validate_same_vdevice`).
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ml_target.hailo.emulator.device import (
    LIBRARY_VERSIONS,
    SimulatedDevice,
    machine,
)
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
from ml_target.hailo.emulator.hef import HEF

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
        """4.x's `create_params()`: scheduler NONE."""
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
    "hailo10h": (DeviceArchitectureTypes.HAILO10H, "Hailo-10H", "HAILO-10H M.2 MODULE (EMULATED)"),
}


def _card(device_id: str, line: int) -> SimulatedDevice:
    """The card `device_id` of the emulated host, usable by a library of `line`, or raise as HailoRT."""
    card = machine().get(device_id)
    if card is None or card.vanished:
        raise StatusError(Status.HAILO_NOT_FOUND, f"Device {device_id!r} not found")
    card.check_line(line)
    return card


class Control:
    """A card's control API (the subset a worker uses: identify, temperature). A control handle
    fails while its card is gone and works again once it is back."""

    def __init__(self, card: SimulatedDevice) -> None:
        self._card = card
        self._samples = 0

    def identify(self) -> BoardInformation:
        with ExceptionWrapper():
            self._card.check_alive(self._card.generation)
        arch, board, product = _BOARDS[self._card.architecture]
        major, minor, revision = (int(p) for p in LIBRARY_VERSIONS[self._card.line].split("."))
        serial = f"EMULATED{self._card.device_id.replace(':', '').replace('.', '')}"
        return BoardInformation(2, FirmwareVersion(major, minor, revision), 0, board, True, arch,
                                serial, "EMU-H8" if self._card.line == 4 else "EMU-H10", product)

    def get_chip_temperature(self) -> TemperatureInfo:
        with ExceptionWrapper():
            self._card.check_alive(self._card.generation)
        self._samples = (self._samples + 1) % 65536
        return TemperatureInfo(47.25, 47.5, self._samples)


class Device:
    """A physical device handle for control calls (inference goes through `VDevice`)."""

    _line = 4

    @classmethod
    def scan(cls) -> list[str]:
        """Every card the driver exposes, of either family, in the host's order (not sorted)."""
        return machine().scan()

    def __init__(self, device_id: str | None = None) -> None:
        gc.collect()
        self._device_id = None
        if device_id is None:
            ids = Device.scan()
            if not ids:
                raise HailoRTException("HailoRT device not found in the system")
            device_id = ids[0]
        with ExceptionWrapper():
            card = _card(device_id, self._line)
            with card.cond:
                card.sessions_opened += card.line == 5  # a Hailo-10H handle is an RPC client session
        self._device_id = device_id
        self._control = Control(card)

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
    """The virtual device models are created and configured on (4.x semantics; see `VDevice5`)."""

    _line = 4
    _device_class: type[Device] = Device
    _hef_class: type[HEF] = HEF

    def __init__(self, params: VDeviceParams | None = None, *, device_ids: list[str] | None = None) -> None:
        gc.collect()
        self._card: SimulatedDevice | None = None
        self._generation: int | None = None
        self._creation_pid = os.getpid()
        if params is not None and params.device_ids and device_ids:
            with ExceptionWrapper():
                raise StatusError(Status.HAILO_INVALID_OPERATION, "Both params.device_ids and device_ids were given")
        if device_ids:
            params = self._keyword_params()
            params.device_ids = list(device_ids)
        self._params = params if params is not None else self.create_params()
        with ExceptionWrapper():
            if self._params.multi_process_service and self._params.scheduling_algorithm == 0:
                raise StatusError(Status.HAILO_INVALID_ARGUMENT,
                                  "Multi-process service is supported only with HailoRT scheduler, "
                                  "please choose scheduling algorithm")
            self._card, self._generation = self._acquire()

    @classmethod
    def _keyword_params(cls) -> VDeviceParams:
        """What `VDevice(device_ids=...)` uses instead of the caller's params: 4.x forces NONE."""
        return VDeviceParams.default()

    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams.default()

    def _acquire(self) -> tuple[SimulatedDevice, int]:
        ids = self._params.device_ids
        cards = [machine().get(i) for i in ids]
        for identity, card in zip(ids, cards):
            if card is None or card.vanished:
                raise StatusError(Status.HAILO_INVALID_ARGUMENT, f"VDevice creation failed. device_id {identity} not found")
        families = {c.line for c in cards} if ids else {c.line for c in machine().cards() if not c.vanished}
        if len(families) > 1:
            which = ("device_ids of devices with different types are provided (e.g. Hailo8 and Hailo10). Please "
                     "provide device_ids of the same device types") if ids else (
                     "Devices of different types are found and no device_id is provided. Please provide device_ids")
            raise StatusError(Status.HAILO_INVALID_ARGUMENT, f"VDevice creation failed. {which}")
        if self._params.device_count != 1:
            self._refuse_several(cards or machine().cards())
        group = self._params.group_id
        shared = [c for c in machine().cards() if c.held_by(group) and c not in cards]
        if ids and shared:
            # VDevices are shared by group id alone (vdevice.cpp `validate_same_vdevice`)
            raise StatusError(Status.HAILO_INVALID_OPERATION, f"Device {ids[0]} not used by group_id {group}")
        if ids:
            card = cards[0]
            card.check_line(self._line)
            self._check_card(card)
            try:
                return card, card.acquire(self._params.group_id, self._line)
            except StatusError as exc:
                if exc.code != Status.HAILO_OUT_OF_PHYSICAL_DEVICES or card.vanished:
                    raise
                raise StatusError(Status.HAILO_DEVICE_IN_USE, f"Device {card.device_id} is in use") from None
        for card in machine().cards():
            if card.vanished:
                continue
            card.check_line(self._line)
            self._check_card(card)
            try:
                return card, card.acquire(self._params.group_id, self._line)
            except StatusError as exc:
                if exc.code != Status.HAILO_OUT_OF_PHYSICAL_DEVICES:
                    raise
        raise StatusError(Status.HAILO_OUT_OF_PHYSICAL_DEVICES,
                          "Failed to create vdevice. there are not enough free devices. requested: 1, found: 0")

    def _refuse_several(self, cards: list[SimulatedDevice]) -> None:
        for card in cards:
            if card.architecture in ("hailo8l", "hailo10h"):
                name = f"HAILO_ARCH_{card.architecture.upper()}"
                raise StatusError(Status.HAILO_INVALID_OPERATION,
                                  f"VDevice with multiple devices is not supported on {name}. device {card.device_id} "
                                  f"is {name}")
        raise StatusError(Status.HAILO_NOT_IMPLEMENTED,
                          "A VDevice over several Hailo-8 devices is not emulated (open one VDevice per device)")

    def _check_card(self, card: SimulatedDevice) -> None:
        """Line-specific refusals before the card is taken (none under 4.x)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *args) -> bool:
        self.release()
        return False

    def __del__(self) -> None:
        self.release()

    def release(self) -> None:
        if self._generation is not None:
            self._card.release(self._generation)
            self._generation = None

    @property
    def scheduled(self) -> bool:
        return self._params.scheduling_algorithm != 0

    @property
    def card(self) -> SimulatedDevice:
        """The emulated card behind this VDevice (emulator-internal)."""
        return self._card

    def _check_process(self, what: str) -> None:
        if os.getpid() != self._creation_pid:
            raise HailoRTException(what)

    def _live_generation(self) -> int:
        """The card generation this VDevice holds; a released VDevice has no device."""
        if self._generation is None:
            raise AttributeError("'NoneType' object has no attribute 'create_infer_model_from_file'")
        with ExceptionWrapper():
            self._card.check_alive(self._generation)
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
        return [self._card.device_id]

    def get_physical_devices(self) -> list[Device]:
        return [self._device_class(device_id) for device_id in self.get_physical_devices_ids()]

    @property
    def loaded_network_groups(self) -> list:
        return []


class Device5(Device):
    """HailoRT 5.x's `Device`."""

    _line = 5


class HEF5(HEF):
    """HailoRT 5.x's `HEF`: its leaked raw exceptions are `HailoRTException`s."""

    _line = 5


class VDevice5(VDevice):
    """HailoRT 5.x's `VDevice` (module docstring)."""

    _line = 5
    _device_class = Device5
    _hef_class = HEF5

    @classmethod
    def _keyword_params(cls) -> VDeviceParams:
        return VDeviceParams()

    @staticmethod
    def create_params() -> VDeviceParams:
        return VDeviceParams()

    def _check_card(self, card: SimulatedDevice) -> None:
        if card.architecture == "hailo10h" and self._params.multi_process_service:
            raise StatusError(Status.HAILO_INVALID_OPERATION,
                              "Using the Multi Process Service is needed only on Hailo-8 and Hailo-15 devices. "
                              "Hailo-10H supports multi-process functionality without requiring a service")
