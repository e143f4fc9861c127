"""The only module that imports `hailo_platform`: one VDevice per card, configured networks, recovery.

`Runtime(settings)` opens the cards HAILO_DEVICE_IDS names (default: one free card, HailoRT's
choice; `all`: every card this HailoRT line drives), each as its own ROUND_ROBIN VDevice
(`ml_target.hailo.dispatch` says why not one VDevice over all of them), identifies each chip, and
`load()`s each HEF once per card into one `DeviceNetwork` whose lanes share its queue
(micro-batching, per-model recovery and the hand-over of a failing card's frames live in
`batching.py`). When a card reports a device-level failure, that card alone releases its models
and rebuilds its VDevice in the background, with backoff, and rejoins when it succeeds; the other
cards go on serving. With `HAILO_DEVICE=emulator` the emulator's stand-in module of the right
HailoRT line is used instead of the real library; every other line of code is the same.

HailoRT 4.x and 5.x (docs/hardware-evidence.md §B). The Python classes this module uses are the same
in both lines; the differences that matter are handled here, so tasks never learn the version:
- `VDevice.create_params()` defaults to scheduler NONE in 4.x and ROUND_ROBIN in 5.x: ROUND_ROBIN is
  always set explicitly; cards are chosen with `params.device_ids`, never the `device_ids=` keyword
  (4.23 then turns the scheduler off and ignores the other params).
- 5.x drives the Hailo-10H only and 4.x the Hailo-8/8L only (79 HAILO_NOT_SUPPORTED otherwise):
  `all` keeps the cards this line can open; a card of the other family is refused with the fix.
- A Hailo-10H takes one device per VDevice and refuses the multi-process service (it shares
  natively): HAILO_MULTI_PROCESS_SERVICE is ignored under 5.x, with a warning.
- Every `Device` of a Hailo-10H is an RPC session (`get_physical_devices()` opens new ones): each
  card's control handle is opened once and kept for identify and temperature.
- 5.x's raw `HailoRTStatusException` derives from `HailoRTException`, and 5.x adds status codes
  94-97: `faults` classifies by class name and code, and counts 96 HAILO_DEVICE_NOT_CONNECTED (and
  77 HAILO_RPC_FAILED, the 10H's transport) as device failures.
- The driver is `hailo_pci` for 4.x and `hailo1x_pci` for 5.x (`host_info`).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ml_target.config import Settings
from ml_target.errors import ConfigurationError, ServiceUnavailable
from ml_target.hailo import dispatch, faults, host_info
from ml_target.hailo.batching import DeviceNetwork, Limits
from ml_target.hailo.sessions import SearchSessions, session_policy
from ml_target.hailo.types import EdgeInfo, QuantInfo
from ml_target.networks import build_arch

log = logging.getLogger(__name__)

EMULATOR_MODULE = "ml_target.hailo.emulator"
REAL_HEF_MAGIC = b"\x01HEF"
COALESCE_TIMEOUT_MS = 10
TEMPERATURE_INTERVAL_S = 30.0  # a control call per /ping would be wasteful; the chip heats slowly
REBUILD_BACKOFF_S = (0.1, 0.5, 2.0, 5.0, 15.0)
# HAILO8_A0 (a pre-production Hailo-8) is not mapped: HailoRT 4.23 runs no HEF on it. A Hailo-10H
# may identify as HAILO15H (hailo-apps installation_utils.py maps both names to the 10H).
ARCH_BY_DEVICE = {"HAILO8": "hailo8", "HAILO8L": "hailo8l", "HAILO10H": "hailo10h", "HAILO15H": "hailo10h"}
DEVICE_ARCHITECTURES = ("HAILO8_A0", "HAILO8", "HAILO8L", "HAILO15H", "HAILO15L", "HAILO15M", "HAILO10H")
CHIPS_OF_LINE = {4: ("hailo8", "hailo8l"), 5: ("hailo10h",)}
RUNS_ON = {"hailo8": ("hailo8",), "hailo8l": ("hailo8", "hailo8l"), "hailo10h": ("hailo10h",)}  # build -> chips
NOT_SUPPORTED = 79
ARGMAX_ORDERS = ("NHW",)
USER_DTYPES = {"UINT8": np.uint8, "UINT16": np.uint16, "FLOAT32": np.float32}
FETCH_HINT = "Download the HEFs for this device with `python -m ml_target fetch-models` (or set MODELS_DIR)."
WHEELS = {
    4: "the HailoRT 4.23 wheel from hailo-rt-4/ (pip install hailo-rt-4/hailort-4.23.0-*.whl) with the matching "
       "hailo_pci driver",
    5: "the HailoRT 5.x wheel from hailo-rt-5/ (pip install hailo-rt-5/hailort-5.*.whl) with the matching "
       "hailo1x_pci driver",
}


def enum_name(value: Any) -> str:
    """Member name of a pybind or Python enum (`FormatType.UINT8` -> "UINT8"); hailort.md §4."""
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value).rsplit(".", 1)[-1]


def arch_name(value: Any) -> str:
    """Map `identify().device_architecture` (enum or int) to "hailo8", "hailo8l", "hailo10h", or the raw name."""
    name = DEVICE_ARCHITECTURES[value] if isinstance(value, int) and not hasattr(value, "name") else enum_name(value)
    return ARCH_BY_DEVICE.get(name.upper(), name.lower())


def _import_real() -> ModuleType:
    try:
        return importlib.import_module("hailo_platform")
    except ImportError as exc:
        raise ConfigurationError(
            "HAILO_DEVICE=hailort but the Python package `hailo_platform` is not installed "
            f"({exc}). Install {WHEELS[4]} for a Hailo-8/8L, or {WHEELS[5]} for a Hailo-10H; "
            "or set HAILO_DEVICE=emulator for a demo without a device."
        ) from exc


def _import_emulator(settings: Settings) -> ModuleType:
    emulator = importlib.import_module(EMULATOR_MODULE)
    if settings.hailo_emulator_devices:
        emulator.set_devices(settings.hailo_emulator_devices)
    for card in emulator.devices():
        card.set_profile(settings.hailo_emulator_profile)
    if settings.hailo_emulator_hailort != "auto":
        line = int(settings.hailo_emulator_hailort)
    else:
        try:
            line = emulator.library_line()
        except ValueError as exc:
            raise ConfigurationError(f"{exc}: set HAILO_EMULATOR_HAILORT=4 or 5") from None
    module = importlib.import_module(emulator.MODULES[line])
    log.warning(
        "HAILO_DEVICE=emulator: running on EMULATED Hailo devices (%s, HailoRT %s, timing profile %r). "
        "Results come from synthetic or ONNX stand-ins, not from a Hailo accelerator.",
        ", ".join(c.counters()["architecture"] for c in emulator.devices()), module.__version__,
        settings.hailo_emulator_profile,
    )
    return module


def _quant(stream: Any) -> QuantInfo:
    infos = list(getattr(stream, "quant_infos", None) or [])
    if not infos:
        return QuantInfo(scale=0.0, zp=0.0, min=0.0, max=0.0)
    q = infos[0]
    return QuantInfo(
        scale=float(q.qp_scale), zp=float(q.qp_zp), min=float(q.limvals_min), max=float(q.limvals_max)
    )


def _edge(stream: Any, native_type: str, user_type: str) -> EdgeInfo:
    return EdgeInfo(
        name=str(stream.name),
        shape=tuple(int(d) for d in stream.shape),
        dtype=np.dtype(USER_DTYPES[user_type]),
        quant=_quant(stream),
        native_type=native_type,
        order=enum_name(stream.format.order),
    )


def _firmware_version(version: Any) -> str:
    """"4.23.0" from HailoRT's FirmwareVersion (major/minor/revision), whatever its str() adds."""
    parts = [getattr(version, name, None) for name in ("major", "minor", "revision")]
    if all(isinstance(p, int) for p in parts):
        return ".".join(str(p) for p in parts)
    return str(version).split(" ", 1)[0]


def _input_user_type(native: str) -> str:
    """8-bit image edges stay UINT8 (raw pixels); wider edges take float32 that HailoRT quantises."""
    return "UINT8" if native == "UINT8" else "FLOAT32"


def _release(handle: Any, what: str) -> None:
    try:
        handle.release()
    except Exception as exc:  # leaky pybind exceptions (hailort.md §2)
        log.debug("%s.release failed: %s", what, faults.describe(exc))


class Card:
    """One physical card: its VDevice, identity, control handle and background rebuild.

    It is the `Host` of its lane of every network (`batching.Host`): a lane asks it for a freshly
    configured model, and escalates device-level failures to it.
    """

    def __init__(self, runtime: Runtime, requested_id: str | None) -> None:
        self.runtime = runtime
        self.requested_id = requested_id
        self.device_id = requested_id or "default"
        self.arch: str | None = None
        self.info: dict[str, Any] = {}
        self.rebuilds = 0
        self._lock = threading.Lock()
        self._vdevice: Any = None
        self._control: Any = None  # one Device handle, kept: on a Hailo-10H each one is an RPC session
        self._down_reason: str | None = None
        self._rebuild_thread: threading.Thread | None = None
        self._infer_models: dict[str, Any] = {}  # kept alive next to their configured models
        self._temperature: tuple[float, float | None] = (float("-inf"), None)  # (sampled at, degrees C)

    # ---- opening ----

    def open(self) -> None:
        """Open the VDevice and identify the chip (start-up); raises ConfigurationError with the fix."""
        try:
            self._vdevice = self.runtime.open_vdevice(self.requested_id)
        except Exception as exc:
            where = f" {self.requested_id}" if self.requested_id else ""
            raise ConfigurationError(
                f"cannot open the Hailo device{where}: {faults.describe(exc)}. {faults.startup_advice(exc)}"
            ) from exc
        self.device_id = self._physical_id() or self.device_id
        board, error = None, None
        try:
            board = self._control_handle().control.identify()
        except Exception as exc:
            error = exc
        try:
            self.arch = self.runtime.card_arch(self.device_id, board, error)
        except ConfigurationError:
            self.close()
            raise
        self.info = self.runtime.describe_card(self.device_id, board, error)

    def _physical_id(self) -> str | None:
        try:
            return str(self._vdevice.get_physical_devices_ids()[0])
        except Exception as exc:  # through the multi-process service the VDevice has no local devices
            log.debug("get_physical_devices_ids failed: %s", faults.describe(exc))
        if self.requested_id:
            return self.requested_id
        try:
            ids = self.runtime.hp.Device.scan()
        except Exception as exc:
            log.debug("Device.scan failed: %s", faults.describe(exc))
            return None
        return str(ids[0]) if ids else None

    def _control_handle(self) -> Any:
        """The card's Device handle for control calls, opened once: through the VDevice, else (the
        multi-process service) by id."""
        if self._control is None:
            try:
                self._control = self._vdevice.get_physical_devices()[0]
            except Exception as exc:
                log.debug("control handle through the VDevice failed (%s); opening %s", faults.describe(exc),
                          self.device_id)
                self._control = self.runtime.hp.Device(self.requested_id or self._physical_id())
        return self._control

    # ---- Host hooks of the lanes ----

    def configure(self, network: DeviceNetwork) -> Any:
        """A fresh configured model for `network` on this card's current VDevice (after a failure)."""
        with self._lock:
            vdevice = self._vdevice
        if vdevice is None:
            raise ServiceUnavailable(f"the Hailo device {self.device_id} is down")
        infer_model, configured = self.runtime.configure_on(vdevice, network)
        with self._lock:
            self._infer_models[network.name] = infer_model
        return configured

    def keep_infer_model(self, name: str, infer_model: Any) -> None:
        with self._lock:
            self._infer_models[name] = infer_model

    def release_configured(self, configured: Any) -> None:
        self.runtime.release_configured(configured)

    def device_failed(self, reason: str) -> None:
        """Release this card and rebuild it in the background (once at a time); the others go on."""
        with self._lock:
            if self.runtime.closed or self._rebuild_thread is not None:
                return
            self._down_reason = reason
            thread = self._rebuild_thread = threading.Thread(
                target=self._rebuild, name=f"hailo-rebuild-{self.device_id}", daemon=True
            )
        log.error("Hailo device %s failed (%s): releasing and rebuilding its VDevice", self.device_id, reason)
        thread.start()

    # ---- state ----

    @property
    def down_reason(self) -> str | None:
        return self._down_reason

    @property
    def vdevice(self) -> Any:
        with self._lock:
            return self._vdevice

    def _rebuild(self) -> None:
        networks = self.runtime.loaded()
        down = ServiceUnavailable(f"the Hailo device {self.device_id} is recovering: {self._down_reason}")
        for network in networks:
            old = network.detach(down, self.device_id)
            if old is not None:
                self.release_configured(old)
        self.close()
        attempt = 0
        backoff = self.runtime.backoff
        while not self.runtime.stopping.is_set():
            try:
                self._reopen(networks)
                log.warning("Hailo device %s rebuilt after %d failed attempt(s)", self.device_id, attempt)
                return
            except Exception as exc:
                delay = backoff[min(attempt, len(backoff) - 1)]
                attempt += 1
                with self._lock:
                    self._down_reason = f"rebuild attempt {attempt} failed: {faults.describe(exc)}"
                log.warning("Hailo device %s: rebuild attempt %d failed (%s); retrying in %.1f s", self.device_id,
                            attempt, faults.describe(exc), delay)
                self.runtime.stopping.wait(delay)
        with self._lock:
            self._rebuild_thread = None

    def _reopen(self, networks: list[DeviceNetwork]) -> None:
        """One rebuild attempt: a new VDevice and every network configured on it, or nothing."""
        vdevice = self.runtime.open_vdevice(self.requested_id)
        built: list[tuple[DeviceNetwork, Any, Any]] = []
        try:
            for network in networks:
                infer_model, configured = self.runtime.configure_on(vdevice, network)
                built.append((network, infer_model, configured))
        except Exception:
            for _, _, configured in built:
                self.release_configured(configured)
            _release(vdevice, "VDevice")
            raise
        with self._lock:
            closed = self.runtime.closed
            if not closed:
                self._vdevice = vdevice
                self._infer_models = {n.name: im for n, im, _ in built}
        if closed:
            for _, _, configured in built:
                self.release_configured(configured)
            _release(vdevice, "VDevice")
            return
        for network, _, configured in built:
            network.attach(configured, self.device_id)
        with self._lock:
            self.rebuilds += 1
            self._down_reason = None
            self._rebuild_thread = None

    def temperature(self) -> float | None:
        """The hotter of the chip's two sensors, sampled at most every TEMPERATURE_INTERVAL_S.

        None when the card is down or HailoRT cannot say (e.g. through the multi-process service);
        a failure is never an error for /health, and drops the control handle for a fresh one.
        """
        sampled_at, degrees = self._temperature
        now = time.monotonic()
        if now - sampled_at < TEMPERATURE_INTERVAL_S:
            return degrees
        degrees = None
        with self._lock:
            up = self._vdevice is not None and not self.runtime.closed
        if up:
            try:
                reading = self._control_handle().control.get_chip_temperature()
                degrees = round(float(max(reading.ts0_temperature, reading.ts1_temperature)), 2)
            except Exception as exc:
                log.debug("chip temperature of %s unavailable: %s", self.device_id, faults.describe(exc))
                with self._lock:
                    control, self._control = self._control, None
                if control is not None:
                    _release(control, "Device")
        self._temperature = (now, degrees)
        return degrees

    def health(self, networks: list[DeviceNetwork]) -> dict[str, Any]:
        """This card for /health and /metrics: state, identity and its share of the work."""
        lanes = [n.lane_stats(self.device_id) for n in networks]
        reason = self._down_reason
        return {
            "device_id": self.device_id,
            "arch": self.arch,
            "state": "down" if reason is not None else "ready",
            "reason": reason,
            "rebuilds": self.rebuilds,
            "temperature_c": self.temperature(),
            "frames": sum(lane["frames"] for lane in lanes),
            "bursts": sum(lane["bursts"] for lane in lanes),
            "busy_s": sum(lane["busy_s"] for lane in lanes),
            "errors": sum(lane["errors"] for lane in lanes),
            "moved": sum(lane["moved"] for lane in lanes),
            "inflight_frames": sum(lane["inflight_frames"] for lane in lanes),
            "device_info": self.info,
        }

    def join_rebuild(self, timeout: float) -> None:
        with self._lock:
            thread = self._rebuild_thread
        if thread is not None:
            thread.join(timeout=timeout)

    def close(self) -> None:
        """Release the control handle and the VDevice (after the networks dropped their models)."""
        with self._lock:
            vdevice, self._vdevice = self._vdevice, None
            control, self._control = self._control, None
            self._infer_models.clear()
        if control is not None:
            _release(control, "Device")
        if vdevice is not None:
            _release(vdevice, "VDevice")


class Runtime:
    """The Hailo cards (or the emulator) of the process; see the module docstring."""

    def __init__(self, settings: Settings, *, rebuild_backoff_s: tuple[float, ...] = REBUILD_BACKOFF_S) -> None:
        self.settings = settings
        self.device = settings.hailo_device
        self.hp = _import_emulator(settings) if self.device == "emulator" else _import_real()
        self.hailort_version = str(getattr(self.hp, "__version__", "unknown"))
        self.hailort_major = 5 if self.hailort_version.startswith("5.") else 4
        self._limits = Limits(settings.request_timeout_s, settings.max_queued_frames, settings.queue_wait_s)
        self.sessions = SearchSessions(session_policy(settings))
        self.backoff = rebuild_backoff_s
        self.stopping = threading.Event()
        self.closed = False
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._networks: dict[Path, DeviceNetwork] = {}
        self._multi_process = self._multi_process_service()
        requested = dispatch.cards_to_open(settings.hailo_device_ids, self._scan, self._drivable)
        self._group_ids = {i: self._group_id(i, len(requested)) for i in requested}
        self.cards: list[Card] = []
        try:
            for device_id in requested:
                card = Card(self, device_id)
                card.open()
                self.cards.append(card)
        except BaseException:
            for card in self.cards:
                card.close()
            raise
        self.arch = self._build_arch()
        self.device_info = self.cards[0].info
        log.info("Hailo runtime ready: device=%s, %d card(s) %s, HEFs for %s, HailoRT %s", self.device,
                 len(self.cards), ", ".join(f"{c.device_id} ({c.arch})" for c in self.cards), self.arch,
                 self.hailort_version)

    # ---- devices ----

    def _build_arch(self) -> str:
        """HAILO_ARCH, refused when a card does not run that build (error 93 later), else the build
        every card runs (`networks.build_arch`)."""
        chips = [c.arch for c in self.cards]
        if self.settings.hailo_arch == "auto":
            return build_arch(chips)
        if any(chip not in RUNS_ON[self.settings.hailo_arch] for chip in chips):
            for card in self.cards:
                card.close()
            raise ConfigurationError(
                f"HAILO_ARCH={self.settings.hailo_arch}, but the card(s) are {', '.join(chips)}, which refuse that "
                "build (error 93): unset HAILO_ARCH, or set it to the chip of the cards"
            )
        return self.settings.hailo_arch

    def _multi_process_service(self) -> bool:
        if self.settings.hailo_multi_process_service and self.hailort_major >= 5:
            log.warning("HAILO_MULTI_PROCESS_SERVICE is ignored with HailoRT %s: a Hailo-10H shares itself between "
                        "processes without the service (and refuses it)", self.hailort_version)
            return False
        return self.settings.hailo_multi_process_service

    def _group_id(self, device_id: str | None, cards: int) -> str:
        """HailoRT shares VDevices by group id alone and refuses one group over two cards ("Device {}
        not used by group_id", vdevice.cpp), so with several cards each has its own group."""
        base = self.settings.hailo_group_id
        return base if cards == 1 or device_id is None or base == "UNIQUE" else f"{base}-{device_id}"

    def _scan(self) -> list[str]:
        return [str(i) for i in self.hp.Device.scan()]

    def _drivable(self, device_id: str) -> bool:
        """Whether this HailoRT line drives the card (for HAILO_DEVICE_IDS=all): 79 means the other family."""
        try:
            device = self.hp.Device(device_id)
        except Exception as exc:
            if faults.status_code(exc) == NOT_SUPPORTED:
                log.info("card %s is not driven by HailoRT %s: %s", device_id, self.hailort_version,
                         faults.describe(exc))
                return False
            return True  # let opening it report the problem
        try:
            return arch_name(device.control.identify().device_architecture) in CHIPS_OF_LINE[self.hailort_major]
        except Exception as exc:
            log.debug("identify %s failed: %s", device_id, faults.describe(exc))
            return True
        finally:
            _release(device, "Device")

    def open_vdevice(self, device_id: str | None) -> Any:
        """A ROUND_ROBIN VDevice on one card (`device_id`, or HailoRT's choice of a free one)."""
        params = self.hp.VDevice.create_params()
        params.scheduling_algorithm = self.hp.HailoSchedulingAlgorithm.ROUND_ROBIN
        if device_id is not None:
            params.device_ids = [device_id]
        params.group_id = self._group_ids.get(device_id, self.settings.hailo_group_id)
        params.multi_process_service = self._multi_process
        return self.hp.VDevice(params)

    def card_arch(self, device_id: str, board: Any, identify_error: Exception | None) -> str:
        """The chip of a card from identify(), or HAILO_ARCH when identify failed; refuses chips this
        worker or this HailoRT line cannot drive."""
        if board is None:
            if self.settings.hailo_arch != "auto":
                return self.settings.hailo_arch
            raise ConfigurationError(
                f"cannot identify the Hailo device {device_id} ({faults.describe(identify_error)}); "
                "set HAILO_ARCH=hailo8, hailo8l or hailo10h"
            ) from identify_error
        arch = arch_name(board.device_architecture)
        if arch == "hailo8_a0":
            raise ConfigurationError(
                f"the device {device_id} reports architecture HAILO8_A0, a pre-production Hailo-8 on which HailoRT "
                "4.23 accepts no HEF (is_hef_compatible); this worker needs a production Hailo-8, Hailo-8L or Hailo-10H"
            )
        chips = CHIPS_OF_LINE[self.hailort_major]
        if arch not in chips:
            other = 5 if self.hailort_major == 4 else 4
            needs = f"HailoRT {other}.x: install {WHEELS[other]}" if arch in CHIPS_OF_LINE[other] else \
                "a chip this worker does not support"
            raise ConfigurationError(
                f"the device {device_id} reports architecture {arch}; HailoRT {self.hailort_version} drives "
                f"{' and '.join(chips)} only, so this card needs {needs} (one HailoRT line per image; to use "
                "both kinds of card, run one worker per line with HAILO_DEVICE_IDS)"
            )
        return arch

    def describe_card(self, device_id: str, board: Any, identify_error: Exception | None) -> dict[str, Any]:
        """A card as /health and `doctor` report it: chip, firmware, driver, library, PCIe link."""
        real = self.device != "emulator"
        info: dict[str, Any] = {
            "device_id": device_id,
            "library_version": self.hailort_version,
            "driver_version": host_info.driver_version(line=self.hailort_major) if real else None,
            "pcie": host_info.pcie_link(device_id) if real else None,
        }
        if board is None:
            info["identify_error"] = faults.describe(identify_error)
            return info
        return {
            **info,
            "architecture": enum_name(board.device_architecture),
            "firmware_version": _firmware_version(board.firmware_version),
            "board_name": str(board.board_name).strip(),
            "product_name": str(getattr(board, "product_name", "")).strip(),
            "serial_number": str(getattr(board, "serial_number", "")).strip(),
        }

    def release_configured(self, configured: Any) -> None:
        """Shut a configured model down and drop it; never raises (it may already be dead)."""
        try:
            configured.shutdown()
        except Exception as exc:
            log.debug("ConfiguredInferModel.shutdown failed: %s", faults.describe(exc))
        try:
            configured.__exit__(None, None, None)
        except Exception as exc:
            log.debug("ConfiguredInferModel.__exit__ failed: %s", faults.describe(exc))

    # ---- networks ----

    def load(
        self, hef_path: Path | str, *, batch_size: int, priority: int, raw_outputs: bool = False
    ) -> DeviceNetwork:
        """Configure a HEF once per card and return its `Network`; the same path twice returns the same object.

        `raw_outputs`: outputs come in the edges' native integers instead of dequantised float32.
        """
        with self._load_lock:
            return self._load(Path(hef_path), batch_size, priority, raw_outputs)

    def _load(self, path: Path, batch_size: int, priority: int, raw_outputs: bool) -> DeviceNetwork:
        if not path.is_file():
            raise ConfigurationError(f"HEF file not found: {path}. {FETCH_HINT}")
        if batch_size < 1 or not 0 <= priority <= 31:
            raise ConfigurationError(f"{path.name}: batch_size must be >= 1 and priority 0..31")
        key = path.resolve()
        with self._lock:
            existing = self._networks.get(key)
        if existing is not None:
            if (existing.batch_size, existing.priority, existing.raw_outputs) != (batch_size, priority, raw_outputs):
                raise ConfigurationError(f"{path} is already loaded with another batch size, priority or output format")
            return existing
        up = [card for card in self.cards if card.vdevice is not None]
        if not up:
            raise ConfigurationError(f"cannot load {path.name}: every Hailo device is down "
                                     f"({'; '.join(str(c.down_reason) for c in self.cards)})")
        built: list[tuple[Card, Any, Any]] = []
        failing = up[0]
        try:
            edges = None
            for failing in up:
                infer_model, inputs, outputs = self.create_infer_model(failing.vdevice, path, batch_size, raw_outputs)
                if edges is None:
                    edges = (inputs, outputs, *self._group_info(infer_model, path))
                elif (inputs, outputs) != edges[:2]:
                    raise ConfigurationError(f"{path.name}: the cards present different edges for the same HEF")
                configured = self._configure(infer_model, batch_size, priority, coalesce=edges[3])
                built.append((failing, infer_model, configured))
        except Exception as exc:
            for card, _, configured in built:
                card.release_configured(configured)
            if isinstance(exc, ConfigurationError):
                raise
            where = f" on {failing.device_id}" if len(self.cards) > 1 else ""
            raise ConfigurationError(
                f"cannot configure {path}{where}: {faults.describe(exc)}. {faults.startup_advice(exc)}"
            ) from exc
        inputs, outputs, group, multi_context = edges
        network = DeviceNetwork(
            name=path.stem,
            group=group,
            path=path,
            inputs=inputs,
            outputs=outputs,
            batch_size=batch_size,
            priority=priority,
            limits=self._limits,
            host=self,
            fill_bursts=multi_context,
            raw_outputs=raw_outputs,
            sessions=self.sessions,
        )
        for card in self.cards:
            network.add_lane(card, card.device_id)
        with self._lock:
            self._networks[key] = network
        for card, infer_model, configured in built:
            card.keep_infer_model(network.name, infer_model)
            network.attach(configured, card.device_id)
        return network

    def create_infer_model(
        self, vdevice: Any, path: Path, batch_size: int, raw_outputs: bool
    ) -> tuple[Any, tuple[EdgeInfo, ...], tuple[EdgeInfo, ...]]:
        """create_infer_model + batch + user formats; edges read from the HEF before formats change.

        Outputs are set to FLOAT32 (libhailort dequantises) unless `raw_outputs`, when they keep the
        HEF's native type (set explicitly, so the user buffers match it) wherever the HEF gives one
        positive scale, so that callers can dequantise and order values by the raw integers.
        """
        infer_model = vdevice.create_infer_model(str(path))
        infer_model.set_batch_size(batch_size)
        float32 = self.hp.FormatType.FLOAT32
        inputs = []
        for stream in infer_model.inputs:
            native = enum_name(stream.format.type)
            user = _input_user_type(native)
            if user == "FLOAT32":
                stream.set_format_type(float32)
            inputs.append(_edge(stream, native, user))
        outputs = []
        for stream in infer_model.outputs:
            if getattr(stream, "is_nms", False):
                raise ConfigurationError(f"{path.name}: on-chip NMS outputs ({stream.name}) are not supported")
            if enum_name(stream.format.order) in ARGMAX_ORDERS:
                # libhailort casts NHW (argmax) outputs to FLOAT32 instead of dequantising them
                # (transform.cpp quantize_stream), so the values would be silently wrong.
                raise ConfigurationError(
                    f"{path.name}: output {stream.name} is in {enum_name(stream.format.order)} order (an on-chip "
                    "argmax); no network of this worker has one, so this HEF is not the one the catalog expects"
                )
            # An all-zero QP means per-feature scales (hailort.md §4): only libhailort can dequantise.
            native = enum_name(stream.format.type)
            user = native if raw_outputs and _quant(stream).scale > 0 else "FLOAT32"
            if user not in USER_DTYPES:
                raise ConfigurationError(f"{path.name}: output {stream.name} has unsupported type {user}")
            stream.set_format_type(getattr(self.hp.FormatType, user))
            outputs.append(_edge(stream, native, user))
        return infer_model, tuple(inputs), tuple(outputs)

    def configure_on(self, vdevice: Any, network: DeviceNetwork) -> tuple[Any, Any]:
        """(infer model, configured model) of a loaded network on a card's VDevice."""
        infer_model, _, _ = self.create_infer_model(vdevice, network.path, network.batch_size, network.raw_outputs)
        configured = self._configure(infer_model, network.batch_size, network.priority, coalesce=network.fill_bursts)
        return infer_model, configured

    def _configure(self, infer_model: Any, batch_size: int, priority: int, *, coalesce: bool) -> Any:
        """configure() plus scheduler priority and, for multi-context models (`coalesce`), a
        threshold of one burst with a short timeout, so the scheduler waits briefly for a full
        burst when other models compete (frames of other processes sharing the device included).
        Single-context models gain nothing from full bursts and keep HailoRT's defaults."""
        configured = infer_model.configure()
        try:
            configured.set_scheduler_priority(priority)
            if coalesce and batch_size > 1:
                configured.set_scheduler_threshold(batch_size)
                configured.set_scheduler_timeout(COALESCE_TIMEOUT_MS)
        except Exception:
            self.release_configured(configured)
            raise
        return configured

    @staticmethod
    def _group_info(infer_model: Any, path: Path) -> tuple[str, bool]:
        """Network-group name and whether it is multi-context (then full bursts pay off).

        Unknown counts as multi-context: filling bursts costs a single-context model a little
        device time, while not filling them costs a multi-context model most of its throughput.
        """
        try:
            info = infer_model.hef.get_network_groups_infos()[0]
            return str(info.name), bool(info.is_multi_context)
        except Exception as exc:
            log.warning("%s: cannot read the network-group info (%s)", path.name, faults.describe(exc))
            return path.stem.replace(".", "_"), True

    # ---- availability ----

    def check_available(self) -> None:
        """Fail fast while no card can serve: the runtime closed, or every card rebuilding."""
        if self.closed:
            raise ServiceUnavailable("the Hailo runtime is closed")
        reasons = [c.down_reason for c in self.cards]
        if all(r is not None for r in reasons):
            raise ServiceUnavailable(f"the Hailo device is recovering: {'; '.join(map(str, reasons))}")

    # ---- observation ----

    def health(self) -> dict[str, Any]:
        """State for /health: "healthy", "degraded" (a card or a network is recovering, others serve)
        or "down" (closed, or every card rebuilding)."""
        loaded = self.loaded()
        networks = {n.name: n.stats() for n in loaded}
        cards = [c.health(loaded) for c in self.cards]
        down = [c for c in cards if c["state"] == "down"]
        if self.closed:
            state, reason = "down", "closed"
        elif len(down) == len(cards):
            state = "down"
            reason = "; ".join(c["reason"] for c in down) if len(cards) == 1 else "; ".join(
                f"{c['device_id']}: {c['reason']}" for c in down)
        else:
            troubled = [n for n in networks.values() if n["state"] != "ready"]
            problems = [f"device {c['device_id']}: down ({c['reason']})" for c in down]
            problems += [f"{n['name']}: {n['state']} ({n['last_error']})" for n in troubled]
            state = "degraded" if problems else "healthy"
            reason = "; ".join(problems) or None
        temperatures = [c["temperature_c"] for c in cards if c["temperature_c"] is not None]
        return {
            "state": state,
            "reason": reason,
            "arch": self.arch,
            "device": self.device,
            "device_info": self.device_info,
            "devices": cards,
            "hefs": {n.name: n.describe() for n in loaded},
            "hailort_version": self.hailort_version,
            "temperature_c": max(temperatures) if temperatures else None,
            "rebuilds": sum(c.rebuilds for c in self.cards),
            "search_sessions": self.sessions.stats(),
            "networks": networks,
        }

    def stats(self) -> dict[str, Any]:
        """Counters per network (frames, bursts, burst sizes, busy and queue-wait seconds) and per card."""
        loaded = self.loaded()
        return {
            "rebuilds": sum(c.rebuilds for c in self.cards),
            "search_sessions": self.sessions.stats(),
            "networks": {n.name: n.stats() for n in loaded},
            "devices": {c.device_id: c.health(loaded) for c in self.cards},
        }

    def loaded(self) -> list[DeviceNetwork]:
        with self._lock:
            return list(self._networks.values())

    def close(self) -> None:
        """Drop every configured model, then release every card. Idempotent."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
            self.stopping.set()
            networks = list(self._networks.values())
        for card in self.cards:
            card.join_rebuild(timeout=10)
        by_id = {card.device_id: card for card in self.cards}
        for network in networks:
            for device_id, old in network.close():
                if old is not None:
                    by_id[device_id].release_configured(old)
        for card in self.cards:
            card.close()
        released = "device released" if len(self.cards) == 1 else f"{len(self.cards)} devices released"
        log.info("Hailo runtime closed: %d network(s) shut down, %s", len(networks), released)


def describe_hef(path: Path | str) -> list[dict[str, Any]]:
    """Every input and output vstream of a HEF (for `python -m ml_target inspect`); no device needed.

    The file's own magic decides which library reads it: real HEFs (`01 48 45 46`) need
    `hailo_platform`, anything else is handed to the emulator's parser.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigurationError(f"HEF file not found: {path}. {FETCH_HINT}")
    with path.open("rb") as f:
        real = f.read(4) == REAL_HEF_MAGIC
    hp = _import_real() if real else importlib.import_module(f"{EMULATOR_MODULE}.hailo_platform")
    try:
        hef = hp.HEF(str(path))
        group = str(hef.get_network_group_names()[0])
        infos = [("input", i) for i in hef.get_input_vstream_infos()]
        infos += [("output", i) for i in hef.get_output_vstream_infos()]
    except Exception as exc:  # the vstream-info getters leak raw pybind exceptions (hailort.md §2)
        raise ConfigurationError(f"cannot read {path}: {faults.describe(exc)}") from exc
    return [
        {
            "network_group": group,
            "name": str(info.name),
            "direction": direction,
            "shape": [int(d) for d in info.shape],
            "format_type": enum_name(info.format.type),
            "format_order": enum_name(info.format.order),
            "quant": {
                "scale": float(info.quant_info.qp_scale),
                "zp": float(info.quant_info.qp_zp),
                "min": float(info.quant_info.limvals_min),
                "max": float(info.quant_info.limvals_max),
            },
        }
        for direction, info in infos
    ]
