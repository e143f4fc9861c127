"""The only module that imports `hailo_platform`: one VDevice, configured networks, recovery.

`Runtime(settings)` opens one ROUND_ROBIN VDevice for the process (HailoRT 4.x defaults to scheduler
NONE, which would need manual activation: hailort.md §3.1), finds the architecture, and
`load()`s each HEF once into a `DeviceNetwork` (micro-batching and per-model recovery live in
`batching.py`). When a device-level failure is reported it releases everything and rebuilds the
VDevice and every loaded network in the background, with backoff; meanwhile `infer` fails fast with
`ServiceUnavailable`. With `HAILO_DEVICE=emulator` the emulator's stand-in module is used instead of
the real library; every other line of code is the same.
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
from ml_target.hailo import faults, host_info
from ml_target.hailo.batching import DeviceNetwork, Limits
from ml_target.hailo.sessions import SearchSessions, session_policy
from ml_target.hailo.types import EdgeInfo, QuantInfo

log = logging.getLogger(__name__)

EMULATOR_MODULE = "ml_target.hailo.emulator"
REAL_HEF_MAGIC = b"\x01HEF"
COALESCE_TIMEOUT_MS = 10
TEMPERATURE_INTERVAL_S = 30.0  # a control call per /ping would be wasteful; the chip heats slowly
REBUILD_BACKOFF_S = (0.1, 0.5, 2.0, 5.0, 15.0)
# HAILO8_A0 (a pre-production Hailo-8) is not mapped: HailoRT 4.23 runs no HEF on it.
ARCH_BY_DEVICE = {"HAILO8": "hailo8", "HAILO8L": "hailo8l"}
DEVICE_ARCHITECTURES = ("HAILO8_A0", "HAILO8", "HAILO8L", "HAILO15H", "HAILO15L", "HAILO15M", "HAILO10H")
ARGMAX_ORDERS = ("NHW",)
USER_DTYPES = {"UINT8": np.uint8, "UINT16": np.uint16, "FLOAT32": np.float32}
FETCH_HINT = "Download the HEFs for this device with `python -m ml_target fetch-models` (or set MODELS_DIR)."


def enum_name(value: Any) -> str:
    """Member name of a pybind or Python enum (`FormatType.UINT8` -> "UINT8"); hailort.md §4."""
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value).rsplit(".", 1)[-1]


def arch_name(value: Any) -> str:
    """Map `identify().device_architecture` (enum or int) to "hailo8", "hailo8l", or the raw name."""
    name = DEVICE_ARCHITECTURES[value] if isinstance(value, int) and not hasattr(value, "name") else enum_name(value)
    return ARCH_BY_DEVICE.get(name.upper(), name.lower())


def _import_real() -> ModuleType:
    try:
        return importlib.import_module("hailo_platform")
    except ImportError as exc:
        raise ConfigurationError(
            "HAILO_DEVICE=hailort but the Python package `hailo_platform` is not installed "
            f"({exc}). Install the HailoRT 4.23 wheel from hailo-rt-4/ into this environment "
            "(pip install hailo-rt-4/hailort-4.23.0-*.whl), with the matching hailo_pci driver; "
            "or set HAILO_DEVICE=emulator for a demo without a device."
        ) from exc


def _import_emulator(profile: str) -> ModuleType:
    module = importlib.import_module(f"{EMULATOR_MODULE}.hailo_platform")
    importlib.import_module(EMULATOR_MODULE).device().set_profile(profile)
    log.warning(
        "HAILO_DEVICE=emulator: running on an EMULATED Hailo device (timing profile %r). "
        "Results come from synthetic or ONNX stand-ins, not from a Hailo accelerator.",
        profile,
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


class Runtime:
    """One Hailo device (or the emulator) for the whole process; see the module docstring."""

    def __init__(self, settings: Settings, *, rebuild_backoff_s: tuple[float, ...] = REBUILD_BACKOFF_S) -> None:
        self.settings = settings
        self.device = settings.hailo_device
        if self.device == "emulator":
            self._hp = _import_emulator(settings.hailo_emulator_profile)
        else:
            self._hp = _import_real()
        self.hailort_version = str(getattr(self._hp, "__version__", "unknown"))
        self._limits = Limits(settings.request_timeout_s, settings.max_queued_frames, settings.queue_wait_s)
        self.sessions = SearchSessions(session_policy(settings))
        self._backoff = rebuild_backoff_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._load_lock = threading.Lock()
        self._networks: dict[Path, DeviceNetwork] = {}
        # Each network's InferModel, kept alive next to its configured model for the VDevice's life.
        self._infer_models: dict[str, Any] = {}
        self._state_down_reason: str | None = None
        self._rebuild_thread: threading.Thread | None = None
        self._rebuilds = 0
        self._closed = False
        self._temperature: tuple[float, float | None] = (float("-inf"), None)  # (sampled at, degrees C)
        try:
            self._vdevice = self._open_vdevice()
        except Exception as exc:
            raise ConfigurationError(
                f"cannot open the Hailo device: {faults.describe(exc)}. {faults.startup_advice(exc)}"
            ) from exc
        board, identify_error = self._board_information()
        self.arch = self._detect_arch(board, identify_error)
        self.device_info = self._describe_device(board, identify_error)
        log.info("Hailo runtime ready: device=%s arch=%s HailoRT %s", self.device, self.arch, self.hailort_version)

    # ---- device ----

    def _open_vdevice(self) -> Any:
        params = self._hp.VDevice.create_params()
        params.scheduling_algorithm = self._hp.HailoSchedulingAlgorithm.ROUND_ROBIN
        params.group_id = self.settings.hailo_group_id
        params.multi_process_service = self.settings.hailo_multi_process_service
        return self._hp.VDevice(params)

    def _board_information(self) -> tuple[Any, Exception | None]:
        """identify() once at start-up: the chip for `arch`, its firmware for /health and `doctor`."""
        try:
            return self._identify(), None
        except Exception as exc:
            return None, exc

    def _detect_arch(self, board: Any, identify_error: Exception | None) -> str:
        if self.settings.hailo_arch != "auto":
            return self.settings.hailo_arch
        if board is None:
            self._release_vdevice(self._vdevice)
            raise ConfigurationError(
                f"cannot identify the Hailo device ({faults.describe(identify_error)}); set HAILO_ARCH=hailo8 or hailo8l"
            ) from identify_error
        arch = arch_name(board.device_architecture)
        if arch == "hailo8_a0":
            self._release_vdevice(self._vdevice)
            raise ConfigurationError(
                "the device reports architecture HAILO8_A0, a pre-production Hailo-8 on which HailoRT 4.23 "
                "accepts no HEF (is_hef_compatible); this worker needs a production Hailo-8 or Hailo-8L"
            )
        if arch not in ("hailo8", "hailo8l"):
            self._release_vdevice(self._vdevice)
            raise ConfigurationError(
                f"the device reports architecture {arch}; this worker drives Hailo-8/8L with HailoRT 4.x "
                "(Hailo-10H/15 need HailoRT 5.x)"
            )
        return arch

    def _describe_device(self, board: Any, identify_error: Exception | None) -> dict[str, Any]:
        """The device as /health and `doctor` report it: chip, firmware, driver, library, PCIe link."""
        device_id = self._device_id()
        info: dict[str, Any] = {
            "device_id": device_id,
            "library_version": self.hailort_version,
            "driver_version": None if self.device == "emulator" else host_info.driver_version(),
            "pcie": None if self.device == "emulator" else host_info.pcie_link(device_id),
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

    def _device_id(self) -> str | None:
        try:
            ids = self._hp.Device.scan()
        except Exception as exc:
            log.debug("Device.scan failed: %s", faults.describe(exc))
            return None
        return str(ids[0]) if ids else None

    def _identify(self) -> Any:
        """Board information of the device: through the VDevice, else (e.g. with the multi-process
        service, where the VDevice has no local devices) through a control handle from a scan."""
        try:
            return self._vdevice.get_physical_devices()[0].control.identify()
        except Exception as exc:
            log.debug("identify through the VDevice failed (%s); scanning", faults.describe(exc))
        ids = self._hp.Device.scan()
        if not ids:
            raise ConfigurationError("no Hailo device found by Device.scan()")
        device = self._hp.Device(ids[0])
        try:
            return device.control.identify()
        finally:
            device.release()

    @staticmethod
    def _release_vdevice(vdevice: Any) -> None:
        try:
            vdevice.release()
        except Exception as exc:  # leaky pybind exceptions (hailort.md §2)
            log.debug("VDevice.release failed: %s", faults.describe(exc))

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
        """Configure a HEF once and return its `Network`; the same path twice returns the same object.

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
            vdevice = self._vdevice
        if existing is not None:
            if (existing.batch_size, existing.priority, existing.raw_outputs) != (batch_size, priority, raw_outputs):
                raise ConfigurationError(f"{path} is already loaded with another batch size, priority or output format")
            return existing
        if vdevice is None:
            raise ConfigurationError(f"cannot load {path.name}: the Hailo device is down ({self._state_down_reason})")
        try:
            infer_model, inputs, outputs = self._create_infer_model(vdevice, path, batch_size, raw_outputs)
            group, multi_context = self._group_info(infer_model, path)
            configured = self._configure(infer_model, batch_size, priority, coalesce=multi_context)
        except ConfigurationError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"cannot configure {path}: {faults.describe(exc)}. {faults.startup_advice(exc)}"
            ) from exc
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
        with self._lock:
            self._networks[key] = network
            self._infer_models[network.name] = infer_model
        network.attach(configured)
        return network

    def _create_infer_model(
        self, vdevice: Any, path: Path, batch_size: int, raw_outputs: bool
    ) -> tuple[Any, tuple[EdgeInfo, ...], tuple[EdgeInfo, ...]]:
        """create_infer_model + batch + user formats; edges read from the HEF before formats change.

        Outputs are set to FLOAT32 (libhailort dequantises) unless `raw_outputs`, when they keep the
        HEF's native type (set explicitly, so the user buffers match it) wherever the HEF gives one
        positive scale, so that callers can dequantise and order values by the raw integers.
        """
        infer_model = vdevice.create_infer_model(str(path))
        infer_model.set_batch_size(batch_size)
        float32 = self._hp.FormatType.FLOAT32
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
            stream.set_format_type(getattr(self._hp.FormatType, user))
            outputs.append(_edge(stream, native, user))
        return infer_model, tuple(inputs), tuple(outputs)

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

    def configure(self, network: DeviceNetwork) -> Any:
        """Host hook: a fresh configured model for `network` on the current VDevice (after a failure)."""
        with self._lock:
            vdevice = self._vdevice
        if vdevice is None:
            raise ServiceUnavailable("the Hailo device is down")
        infer_model, _, _ = self._create_infer_model(vdevice, network.path, network.batch_size, network.raw_outputs)
        configured = self._configure(infer_model, network.batch_size, network.priority, coalesce=network.fill_bursts)
        with self._lock:
            self._infer_models[network.name] = infer_model
        return configured

    # ---- availability and recovery ----

    def check_available(self) -> None:
        """Host hook: fail fast while the device is down or the runtime closed."""
        if self._closed:
            raise ServiceUnavailable("the Hailo runtime is closed")
        reason = self._state_down_reason
        if reason is not None:
            raise ServiceUnavailable(f"the Hailo device is recovering: {reason}")

    def device_failed(self, reason: str) -> None:
        """Host hook: release everything and rebuild the VDevice in the background (once at a time)."""
        with self._lock:
            if self._closed or self._rebuild_thread is not None:
                return
            self._state_down_reason = reason
            thread = self._rebuild_thread = threading.Thread(target=self._rebuild, name="hailo-rebuild", daemon=True)
        log.error("Hailo device failure (%s): releasing and rebuilding the VDevice", reason)
        thread.start()

    def _rebuild(self) -> None:
        with self._lock:
            networks = list(self._networks.values())
            old_vdevice, self._vdevice = self._vdevice, None
        down = ServiceUnavailable(f"the Hailo device is recovering: {self._state_down_reason}")
        for network in networks:
            old = network.detach(down)
            if old is not None:
                self.release_configured(old)
        with self._lock:
            self._infer_models.clear()
        if old_vdevice is not None:
            self._release_vdevice(old_vdevice)
        attempt = 0
        while not self._stop.is_set():
            try:
                self._reopen(networks)
                log.warning("Hailo device rebuilt after %d failed attempt(s)", attempt)
                return
            except Exception as exc:
                delay = self._backoff[min(attempt, len(self._backoff) - 1)]
                attempt += 1
                with self._lock:
                    self._state_down_reason = f"rebuild attempt {attempt} failed: {faults.describe(exc)}"
                log.warning("Hailo rebuild attempt %d failed (%s); retrying in %.1f s", attempt, faults.describe(exc), delay)
                self._stop.wait(delay)
        with self._lock:
            self._rebuild_thread = None

    def _reopen(self, networks: list[DeviceNetwork]) -> None:
        """One rebuild attempt: a new VDevice and every network configured on it, or nothing."""
        vdevice = self._open_vdevice()
        built: list[tuple[DeviceNetwork, Any, Any]] = []
        try:
            for network in networks:
                infer_model, _, _ = self._create_infer_model(vdevice, network.path, network.batch_size, network.raw_outputs)
                configured = self._configure(
                    infer_model, network.batch_size, network.priority, coalesce=network.fill_bursts
                )
                built.append((network, infer_model, configured))
        except Exception:
            for _, _, configured in built:
                self.release_configured(configured)
            self._release_vdevice(vdevice)
            raise
        with self._lock:
            if self._closed:
                closed = True
            else:
                closed = False
                self._vdevice = vdevice
                self._infer_models = {n.name: im for n, im, _ in built}
        if closed:
            for _, _, configured in built:
                self.release_configured(configured)
            self._release_vdevice(vdevice)
            return
        for network, _, configured in built:
            network.attach(configured)
        with self._lock:
            self._rebuilds += 1
            self._state_down_reason = None
            self._rebuild_thread = None

    # ---- observation ----

    def health(self) -> dict[str, Any]:
        """State for /health: "healthy", "degraded" (a network is recovering) or "down"."""
        networks = {n.name: n.stats() for n in self._loaded()}
        reason = self._state_down_reason
        if self._closed:
            state, reason = "down", "closed"
        elif reason is not None:
            state = "down"
        else:
            troubled = [n for n in networks.values() if n["state"] != "ready"]
            state = "degraded" if troubled else "healthy"
            reason = "; ".join(f"{n['name']}: {n['state']} ({n['last_error']})" for n in troubled) or None
        return {
            "state": state,
            "reason": reason,
            "arch": self.arch,
            "device": self.device,
            "device_info": self.device_info,
            "hefs": {n.name: n.describe() for n in self._loaded()},
            "hailort_version": self.hailort_version,
            "temperature_c": self._chip_temperature(),
            "rebuilds": self._rebuilds,
            "search_sessions": self.sessions.stats(),
            "networks": networks,
        }

    def _chip_temperature(self) -> float | None:
        """The hotter of the chip's two sensors, sampled at most every TEMPERATURE_INTERVAL_S.

        None when the device is down or HailoRT cannot say (e.g. through the multi-process service,
        where the VDevice has no local devices); a failure is never an error for /health.
        """
        sampled_at, degrees = self._temperature
        now = time.monotonic()
        if now - sampled_at < TEMPERATURE_INTERVAL_S:
            return degrees
        with self._lock:
            vdevice = None if self._closed else self._vdevice
        degrees = None
        if vdevice is not None:
            try:
                reading = vdevice.get_physical_devices()[0].control.get_chip_temperature()
                degrees = round(float(max(reading.ts0_temperature, reading.ts1_temperature)), 2)
            except Exception as exc:
                log.debug("chip temperature unavailable: %s", faults.describe(exc))
        self._temperature = (now, degrees)
        return degrees

    def stats(self) -> dict[str, Any]:
        """Counters per network (frames, bursts, burst sizes, busy and queue-wait seconds) for /metrics."""
        return {
            "rebuilds": self._rebuilds,
            "search_sessions": self.sessions.stats(),
            "networks": {n.name: n.stats() for n in self._loaded()},
        }

    def _loaded(self) -> list[DeviceNetwork]:
        with self._lock:
            return list(self._networks.values())

    def close(self) -> None:
        """Drop every configured model, then release the VDevice. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._stop.set()
            rebuild = self._rebuild_thread
            networks = list(self._networks.values())
        if rebuild is not None:
            rebuild.join(timeout=10)
        for network in networks:
            old = network.close()
            if old is not None:
                self.release_configured(old)
        with self._lock:
            vdevice, self._vdevice = self._vdevice, None
            self._infer_models.clear()
        if vdevice is not None:
            self._release_vdevice(vdevice)
        log.info("Hailo runtime closed: %d network(s) shut down, device released", len(networks))


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
