"""Prometheus metrics for one app instance: request outcomes and timings, plus device statistics.

Each app gets its own `CollectorRegistry`, so tests and several apps in one process never share
counters. Device statistics are not copied into counters as they happen: a collector reads the
runtime's health dict at scrape time, so the numbers are exactly the runtime's own.

The runtime's health dict is read with these optional keys (missing ones are skipped):
`state` ("healthy" | "degraded" | "down"), `device` ("hailort" | "emulator"), `temperature_c`
(float), `rebuilds` (int), `search_sessions` (`ml_target.hailo.sessions.SearchSessions.stats`),
and `networks`: {name: {"state": "ready" | ..., "frames", "bursts",
"busy_s", "queue_wait_s", "errors", "timeouts", "overloaded", "reconfigures", "retried" (running totals),
"queue_depth", "inflight_frames" (current), "max_queue_wait_s" (longest so far), "batch_sizes":
{size: count}, "devices": {device id: that network's counters on one card}}}, and `devices`: [{"device_id",
"arch", "state" ("ready" | "down"), "rebuilds", "temperature_c", "frames", "bursts", "busy_s", "errors",
"moved", "inflight_frames"}], one per card (`ml_target.hailo.runtime.Card.health`).
"""

from __future__ import annotations

import logging
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

HealthSource = Callable[[], Mapping[str, Any]]
STATES = ("healthy", "degraded", "down")
# Seconds; from a cached text query (~10 ms) to SigLIP image bursts under load (seconds).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_NETWORK_COUNTERS = (
    ("frames", "ml_target_network_frames", "Frames inferred on the device, per network"),
    ("bursts", "ml_target_network_bursts", "Device bursts (batches) run, per network"),
    ("busy_s", "ml_target_network_busy_seconds", "Device time spent on bursts, per network"),
    ("queue_wait_s", "ml_target_network_queue_wait_seconds", "Time frames waited before their burst, per network"),
    ("errors", "ml_target_network_errors", "Failed device inferences, per network"),
    ("timeouts", "ml_target_network_timeouts", "Inferences past their deadline, per network"),
    ("overloaded", "ml_target_network_overloaded", "Frames refused because the queue was full, per network"),
    ("reconfigures", "ml_target_network_reconfigures", "Model re-configurations after failures, per network"),
    ("retried", "ml_target_network_retried", "Frames resubmitted after a re-configure caught them in flight"),
)
# Per card and network (`networks[*]["devices"]`): where the work ran, and what a failing card handed on.
_LANE_COUNTERS = (
    ("frames", "ml_target_card_network_frames", "Frames inferred, per card and network"),
    ("bursts", "ml_target_card_network_bursts", "Bursts run, per card and network"),
    ("busy_s", "ml_target_card_network_busy_seconds", "Device time spent on bursts, per card and network"),
    ("errors", "ml_target_card_network_errors", "Failed inferences, per card and network"),
    ("moved", "ml_target_card_network_moved", "Frames a failing card handed to another card, per card and network"),
)
_NETWORK_GAUGES = (
    ("queue_depth", "ml_target_network_queue_depth", "Frames waiting for the device, per network"),
    ("inflight_frames", "ml_target_network_inflight_frames", "Frames submitted to the device, per network"),
    ("max_queue_wait_s", "ml_target_network_max_queue_wait_seconds", "Longest any frame waited for the device"),
)


class Metrics:
    """Request-level instruments and the registry that also reports device statistics."""

    def __init__(self, health_source: HealthSource) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ml_target_requests",
            "/predict requests by task set and HTTP status",
            ["tasks", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ml_target_request_duration_seconds",
            "/predict latency by task set and HTTP status",
            ["tasks", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.entry_latency = Histogram(
            "ml_target_entry_duration_seconds",
            "Time of one entry (task.type) of a request, device wait included",
            ["entry"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decode_latency = Histogram(
            "ml_target_decode_duration_seconds", "Image decode time", buckets=_LATENCY_BUCKETS, registry=self.registry
        )
        self.errors = Counter(
            "ml_target_errors", "Failed /predict requests by error kind", ["kind"], registry=self.registry
        )
        self.in_flight = Gauge(
            "ml_target_requests_in_flight", "/predict requests being processed", registry=self.registry
        )
        self.registry.register(RuntimeCollector(health_source))

    def observe(self, tasks: str, status: int, seconds: float, timings_ms: Mapping[str, float]) -> None:
        """Record one finished request; `timings_ms` holds "decode" and one key per entry."""
        self.requests.labels(tasks, str(status)).inc()
        self.latency.labels(tasks, str(status)).observe(seconds)
        for stage, ms in timings_ms.items():
            if stage == "decode":
                self.decode_latency.observe(ms / 1000.0)
            else:
                self.entry_latency.labels(stage).observe(ms / 1000.0)

    def render(self) -> tuple[bytes, str]:
        """Exposition text and its content type. Calls the health source: run it off the event loop."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RuntimeCollector(Collector):
    """Reads the runtime's health dict at scrape time and exposes device and per-network figures."""

    def __init__(self, health_source: HealthSource) -> None:
        self._health_source = health_source

    def collect(self) -> Iterable[Metric]:
        try:
            health = self._health_source()
        except Exception:
            log.exception("runtime health source failed during a metrics scrape")
            return []
        return list(runtime_metrics(health))

    def describe(self) -> Iterable[Metric]:
        return []  # families depend on the runtime's networks; none are registered up front


def runtime_metrics(health: Mapping[str, Any]) -> Iterable[Metric]:
    """Metric families for one health snapshot (pure, so it is testable without a registry)."""
    state = GaugeMetricFamily("ml_target_device_state", "1 for the device's current state", labels=["state"])
    for name in STATES:
        state.add_metric([name], 1.0 if health.get("state") == name else 0.0)
    yield state
    yield GaugeMetricFamily(
        "ml_target_device_emulated",
        "1 when the device is the emulator, not Hailo hardware",
        value=1.0 if health.get("device") == "emulator" else 0.0,
    )
    if _is_number(health.get("rebuilds")):
        yield CounterMetricFamily(
            "ml_target_device_rebuilds",
            "Times the device was re-opened after being lost",
            value=float(health["rebuilds"]),
        )
    temperature = health.get("temperature_c")
    if _is_number(temperature):
        yield GaugeMetricFamily(
            "ml_target_chip_temperature_celsius", "Hailo chip temperature", value=float(temperature)
        )
    yield from _session_metrics(health.get("search_sessions") or {})
    networks = health.get("networks") or {}
    for key, name, documentation in _NETWORK_COUNTERS:
        family = CounterMetricFamily(name, documentation, labels=["network"])
        for network, stats in networks.items():
            if _is_number(stats.get(key)):
                family.add_metric([network], float(stats[key]))
        yield family
    for key, name, documentation in _NETWORK_GAUGES:
        gauge = GaugeMetricFamily(name, documentation, labels=["network"])
        for network, stats in networks.items():
            if _is_number(stats.get(key)):
                gauge.add_metric([network], float(stats[key]))
        yield gauge
    ready = GaugeMetricFamily(
        "ml_target_network_ready", "1 when the network is configured and serving", labels=["network"]
    )
    batches = CounterMetricFamily(
        "ml_target_network_batches", "Device bursts by batch size, per network", labels=["network", "batch_size"]
    )
    for network, stats in networks.items():
        if "state" in stats:
            ready.add_metric([network], 1.0 if stats["state"] == "ready" else 0.0)
        for size, count in (stats.get("batch_sizes") or {}).items():
            batches.add_metric([network, str(size)], float(count))
    yield ready
    yield batches
    yield from _device_metrics(health.get("devices") or [], networks)


def _device_metrics(devices: Iterable[Mapping[str, Any]], networks: Mapping[str, Any]) -> Iterable[Metric]:
    """Per-card figures: state, rebuilds, temperature, and each network's work on each card."""
    devices = list(devices)
    state = GaugeMetricFamily("ml_target_card_ready", "1 while the card serves, per card", labels=["device"])
    rebuilds = CounterMetricFamily("ml_target_card_rebuilds", "Times the card was re-opened", labels=["device"])
    temperature = GaugeMetricFamily("ml_target_card_temperature_celsius", "Chip temperature, per card",
                                    labels=["device"])
    for card in devices:
        device = str(card.get("device_id"))
        state.add_metric([device], 1.0 if card.get("state") == "ready" else 0.0)
        if _is_number(card.get("rebuilds")):
            rebuilds.add_metric([device], float(card["rebuilds"]))
        if _is_number(card.get("temperature_c")):
            temperature.add_metric([device], float(card["temperature_c"]))
    yield state
    yield rebuilds
    yield temperature
    for key, name, documentation in _LANE_COUNTERS:
        family = CounterMetricFamily(name, documentation, labels=["device", "network"])
        for network, stats in networks.items():
            for device, lane in (stats.get("devices") or {}).items():
                if _is_number(lane.get(key)):
                    family.add_metric([str(device), network], float(lane[key]))
        yield family
    inflight = GaugeMetricFamily("ml_target_card_network_inflight_frames", "Frames submitted, per card and network",
                                 labels=["device", "network"])
    for network, stats in networks.items():
        for device, lane in (stats.get("devices") or {}).items():
            if _is_number(lane.get("inflight_frames")):
                inflight.add_metric([str(device), network], float(lane["inflight_frames"]))
    yield inflight


def _session_metrics(sessions: Mapping[str, Any]) -> Iterable[Metric]:
    """How much search sessions slowed background work (see `ml_target.hailo.sessions`)."""
    if "active" in sessions:
        yield GaugeMetricFamily(
            "ml_target_search_session_active", "1 while a search session holds background work back",
            value=1.0 if sessions["active"] else 0.0,
        )
    for key, name, documentation in (
        ("sessions", "ml_target_search_sessions", "Search sessions started"),
        ("background_held_s", "ml_target_search_session_background_held_seconds",
         "Seconds background bursts were held back for searches"),
        ("starvation_grants", "ml_target_search_session_starvation_grants",
         "Background bursts let through because a frame had waited too long"),
    ):
        if _is_number(sessions.get(key)):
            yield CounterMetricFamily(name, documentation, value=float(sessions[key]))


def _is_number(value: object) -> bool:
    """Plain or numpy numbers; bools and missing values are not statistics."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)
