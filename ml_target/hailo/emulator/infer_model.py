"""`InferModel` and `InferModel.InferStream`: per-edge user formats, batch size, `configure()`.

Settings made on the streams are copied at `configure()`, as libhailort does; the default user
format of an edge is the HEF edge's own type and order.
"""

from __future__ import annotations

import os

from ml_target.hailo.emulator.compute import build_compute
from ml_target.hailo.emulator.device import ModelState
from ml_target.hailo.emulator.enums import FormatOrder, FormatType, HailoPowerMode
from ml_target.hailo.emulator.exceptions import (
    ExceptionWrapper,
    HailoRTException,
    Status,
    StatusError,
)
from ml_target.hailo.emulator.hef import HEF, HailoFormat, load_desc, quant_of
from ml_target.hailo.emulator.hef_format import EdgeDesc
from ml_target.hailo.emulator.quant import QuantInfo

ACCEPTED_HEF_ARCHES = {"hailo8": ("hailo8", "hailo8l"), "hailo8l": ("hailo8l",), "hailo8_a0": (), "hailo10h": ("hailo10h",)}


class _StreamSettings:
    """The mutable per-edge settings behind an `InferStream` handle."""

    def __init__(self, edge: EdgeDesc) -> None:
        self.edge = edge
        self.type = FormatType[edge.type]
        self.order = FormatOrder[edge.order]
        self.nms_setters_used = False


def pick(names: list[str], name: str, kind: str) -> str:
    """HailoRT's edge lookup: "" means the only edge; unknown names are not found."""
    if name == "":
        if len(names) != 1:
            raise StatusError(Status.HAILO_INVALID_OPERATION, f"Model has more than one {kind}!")
        return names[0]
    if name not in names:
        raise StatusError(Status.HAILO_NOT_FOUND, f"{kind.capitalize()} {name!r} not found")
    return name


class InferModel:
    """A HEF opened for inference on a VDevice (keeps the VDevice alive)."""

    class InferStream:
        """One edge's user-side settings: format type/order, quantisation info (read-only)."""

        def __init__(self, settings: _StreamSettings) -> None:
            self._settings = settings

        @property
        def name(self) -> str:
            return self._settings.edge.name

        @property
        def shape(self) -> list[int]:
            return list(self._settings.edge.shape)

        @property
        def format(self) -> HailoFormat:
            return HailoFormat(self._settings.type, self._settings.order)

        def set_format_type(self, type: FormatType) -> None:
            if not isinstance(type, FormatType):
                raise TypeError("set_format_type(): incompatible function arguments")
            self._settings.type = FormatType[self._settings.edge.type] if type == FormatType.AUTO else type

        def set_format_order(self, order: FormatOrder) -> None:
            if not isinstance(order, FormatOrder):
                raise TypeError("set_format_order(): incompatible function arguments")
            self._settings.order = FormatOrder[self._settings.edge.order] if order == FormatOrder.AUTO else order

        @property
        def quant_infos(self) -> list[QuantInfo]:
            return [quant_of(self._settings.edge)]

        @property
        def is_nms(self) -> bool:
            return False

        def _nms_setter(self, *_args) -> None:
            """Accepted now, refused at configure(): the emulated edges are never NMS edges."""
            self._settings.nms_setters_used = True

        set_nms_score_threshold = _nms_setter
        set_nms_iou_threshold = _nms_setter
        set_nms_max_proposals_per_class = _nms_setter
        set_nms_max_accumulated_mask_size = _nms_setter

    def __init__(self, vdevice, generation: int, hef_source: str | bytes, name: str = "") -> None:
        self._vdevice = vdevice
        self._generation = generation
        self._hef_source = hef_source
        self._hef: HEF | None = None
        self._desc = load_desc(hef_source)
        if name and name != self._desc.network_group:
            with ExceptionWrapper():
                raise StatusError(Status.HAILO_NOT_IMPLEMENTED, f"Network group {name!r} not found in HEF")
        self._streams = {e.name: _StreamSettings(e) for e in self._desc.edges}
        self._batch_size = 0
        self._power_mode = HailoPowerMode.PERFORMANCE

    @property
    def hef(self) -> HEF:
        if self._hef is None:
            self._hef = self._vdevice._hef_class(self._hef_source)
        return self._hef

    def set_batch_size(self, batch_size: int) -> None:
        if not isinstance(batch_size, int) or not 0 <= batch_size <= 0xFFFF:
            raise TypeError("set_batch_size(): incompatible function arguments")
        self._batch_size = batch_size

    def set_power_mode(self, power_mode: HailoPowerMode) -> None:
        self._power_mode = power_mode

    @property
    def input_names(self) -> list[str]:
        return [e.name for e in self._desc.inputs]

    @property
    def output_names(self) -> list[str]:
        return [e.name for e in self._desc.outputs]

    @property
    def inputs(self) -> list[InferStream]:
        return [self.InferStream(self._streams[n]) for n in self.input_names]

    @property
    def outputs(self) -> list[InferStream]:
        return [self.InferStream(self._streams[n]) for n in self.output_names]

    def input(self, name: str = "") -> InferStream:
        with ExceptionWrapper():
            return self.InferStream(self._streams[pick(self.input_names, name, "input")])

    def output(self, name: str = "") -> InferStream:
        with ExceptionWrapper():
            return self.InferStream(self._streams[pick(self.output_names, name, "output")])

    def configure(self):
        from ml_target.hailo.emulator.configured import ConfiguredInferModel

        if os.getpid() != self._vdevice._creation_pid:
            raise HailoRTException("InferModel can be configured only from the process VDevice was created in.")
        device = self._vdevice.card
        with ExceptionWrapper():
            device.check_alive(self._generation)
            self._check_compatible(device.architecture)
            batch = self._batch_size or 1
            if batch > self._desc.max_queue_size:
                raise StatusError(Status.HAILO_INVALID_OPERATION,
                                  f"Batch size {batch} is larger than the async queue size {self._desc.max_queue_size}")
            user_types = self._user_types()
            model = ModelState(
                desc=self._desc,
                compute=build_compute(self._desc),
                batch_size=batch,
                queue_size=self._desc.max_queue_size,
                scheduled=self._vdevice.scheduled,
                generation=self._generation,
                user_types=user_types,
            )
            device.register(model)
        return ConfiguredInferModel(model, self)

    def _check_compatible(self, device_arch: str) -> None:
        if self._desc.hw_arch not in ACCEPTED_HEF_ARCHES[device_arch]:
            raise StatusError(Status.HAILO_HEF_NOT_COMPATIBLE_WITH_DEVICE,
                              f"HEF compiled for {self._desc.hw_arch.upper()} is not compatible with device "
                              f"architecture {device_arch.upper()}")

    def _user_types(self) -> dict[str, str]:
        types = {}
        for name, settings in self._streams.items():
            if settings.nms_setters_used:
                raise StatusError(Status.HAILO_INVALID_OPERATION, f"NMS settings were set on non-NMS edge {name!r}")
            if settings.order != FormatOrder[settings.edge.order]:
                raise StatusError(Status.HAILO_NOT_SUPPORTED,
                                  f"Format order {settings.order} is not supported for edge {name!r} "
                                  f"(the emulator supports the HEF order {settings.edge.order})")
            types[name] = settings.type.name
        return types
