"""`HEF` and the info objects it reports (`VStreamInfo`, `HailoFormat`, `NetworkGroupInfo`).

Names and shapes follow HailoRT: network group `<ng>`, network `<ng>/<ng>`, vstreams
`<ng>/<layer>`; `VStreamInfo.shape` is a tuple, user formats default to the edge's type.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ml_target.hailo.emulator import hef_format
from ml_target.hailo.emulator.enums import (
    FormatOrder,
    FormatType,
    HailoFormatFlags,
    HailoStreamDirection,
)
from ml_target.hailo.emulator.exceptions import (
    ExceptionWrapper,
    HailoRTException,
    HailoRTInvalidHEFException,
    STATUS_EXCEPTIONS,
    Status,
    StatusError,
)
from ml_target.hailo.emulator.hef_format import EdgeDesc, HefDesc
from ml_target.hailo.emulator.quant import QuantInfo


@dataclass(frozen=True)
class HailoFormat:
    """pybind `hailo_format_t`: `.type`, `.order`, `.flags`."""

    type: FormatType
    order: FormatOrder
    flags: HailoFormatFlags = HailoFormatFlags.NONE


@dataclass(frozen=True)
class NetworkGroupInfo:
    name: str
    is_multi_context: bool


@dataclass(frozen=True)
class VStreamInfo:
    """One vstream as `get_*_vstream_infos()` reports it (picklable)."""

    name: str
    network_name: str
    direction: HailoStreamDirection
    format: HailoFormat
    shape: tuple[int, ...]
    quant_info: QuantInfo
    line: int = field(default=4, repr=False, compare=False)  # the HailoRT line whose raw exception leaks

    @property
    def nms_shape(self):
        raise STATUS_EXCEPTIONS[self.line](str(6), "Trying to get nms_shape of a non-NMS vstream")


@dataclass(frozen=True)
class StreamInfo:
    """A low-level (hardware) stream; the emulator has one per vstream, same name and shape."""

    name: str
    direction: HailoStreamDirection
    hw_shape: tuple[int, ...]
    data_bytes: int


def quant_of(edge: EdgeDesc) -> QuantInfo:
    return QuantInfo(edge.zp, edge.scale, edge.min, edge.max)


def vstream_info(edge: EdgeDesc, network: str, direction: HailoStreamDirection, line: int = 4) -> VStreamInfo:
    return VStreamInfo(
        name=edge.name,
        network_name=network,
        direction=direction,
        format=HailoFormat(FormatType[edge.type], FormatOrder[edge.order]),
        shape=edge.shape,
        quant_info=quant_of(edge),
        line=line,
    )


def load_desc(hef_source: str | bytes) -> HefDesc:
    """Parse a HEF source with HailoRT's errors (missing file -> 13, malformed -> 26)."""
    if not isinstance(hef_source, (str, bytes)):
        raise ValueError("HEF can only be created from a file path (str) or a buffer (bytes)")  # noqa: TRY004 - as HailoRT
    try:
        with ExceptionWrapper():
            return hef_format.load(hef_source)
    except hef_format.RealHefError as exc:
        raise HailoRTInvalidHEFException(str(exc)) from None


class HEF:
    """An emulated HEF. No device is needed to parse it. `_line`: the HailoRT line of the module."""

    _line = 4

    def __init__(self, hef_source: str | bytes) -> None:
        self._desc = load_desc(hef_source)
        self._path = hef_source if isinstance(hef_source, str) else None

    @property
    def path(self) -> str | None:
        return self._path

    @property
    def _network(self) -> str:
        return f"{self._desc.network_group}/{self._desc.network_group}"

    def _check_name(self, name: str | None) -> None:
        """The leaky (unwrapped) getters raise the raw pybind exception on an unknown name."""
        if name not in (None, self._desc.network_group, self._network):
            raise STATUS_EXCEPTIONS[self._line](
                str(Status.HAILO_NOT_FOUND), f"Network group or network {name!r} not found"
            )

    def _check_group(self, name: str | None) -> None:
        if name not in (None, self._desc.network_group):
            with ExceptionWrapper():
                raise StatusError(Status.HAILO_NOT_FOUND, f"Network group {name!r} not found in HEF")

    def get_network_group_names(self) -> list[str]:
        return [self._desc.network_group]

    def get_network_groups_infos(self) -> list[NetworkGroupInfo]:
        return [NetworkGroupInfo(self._desc.network_group, self._desc.multi_context)]

    def get_networks_names(self, network_group_name: str | None = None) -> list[str]:
        self._check_group(network_group_name)
        return [self._network]

    def get_input_vstream_infos(self, name: str | None = None) -> list[VStreamInfo]:
        self._check_name(name)
        return [vstream_info(e, self._network, HailoStreamDirection.H2D, self._line) for e in self._desc.inputs]

    def get_output_vstream_infos(self, name: str | None = None) -> list[VStreamInfo]:
        self._check_name(name)
        return [vstream_info(e, self._network, HailoStreamDirection.D2H, self._line) for e in self._desc.outputs]

    def get_all_vstream_infos(self, name: str | None = None) -> list[VStreamInfo]:
        return self.get_input_vstream_infos(name) + self.get_output_vstream_infos(name)

    def _stream_infos(self, edges: tuple[EdgeDesc, ...], direction: HailoStreamDirection) -> list[StreamInfo]:
        return [StreamInfo(e.name, direction, e.shape, 1 if e.type == "UINT8" else 2) for e in edges]

    def get_input_stream_infos(self, name: str | None = None) -> list[StreamInfo]:
        self._check_name(name)
        return self._stream_infos(self._desc.inputs, HailoStreamDirection.H2D)

    def get_output_stream_infos(self, name: str | None = None) -> list[StreamInfo]:
        self._check_name(name)
        return self._stream_infos(self._desc.outputs, HailoStreamDirection.D2H)

    def get_all_stream_infos(self, name: str | None = None) -> list[StreamInfo]:
        return self.get_input_stream_infos(name) + self.get_output_stream_infos(name)

    def get_sorted_output_names(self, network_group_name: str | None = None) -> list[str]:
        self._check_group(network_group_name)
        return [e.name for e in self._desc.outputs]

    def bottleneck_fps(self, network_group_name: str | None = None) -> float:
        """The compiler's estimate; here the asymptotic rate 1000 / b of the HEF's own architecture."""
        self._check_group(network_group_name)
        _, per_frame = self._desc.timing(self._desc.hw_arch)
        if per_frame <= 0:
            raise HailoRTException("Failed to get bottleneck FPS (0)")
        return 1000.0 / per_frame

    def get_vstream_name_from_original_name(self, original_name: str, network_group_name: str | None = None) -> str:
        self._check_group(network_group_name)
        for edge in self._desc.edges:
            if edge.layer == original_name or edge.name == original_name:
                return edge.name
        with ExceptionWrapper():
            raise StatusError(Status.HAILO_NOT_FOUND, f"Original name {original_name!r} not found")

    def get_original_names_from_vstream_name(self, vstream_name: str, network_group_name: str | None = None) -> list[str]:
        self._check_group(network_group_name)
        for edge in self._desc.edges:
            if edge.name == vstream_name:
                return [edge.layer]
        with ExceptionWrapper():
            raise StatusError(Status.HAILO_NOT_FOUND, f"VStream {vstream_name!r} not found")
