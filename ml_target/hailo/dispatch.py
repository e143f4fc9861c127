"""Several cards in one worker: which cards to open, which card takes the next burst, and how the
per-card counters add up. Pure functions; the mechanism lives in `batching.py` (lanes) and
`runtime.py` (one VDevice per card).

Why one VDevice per card and our own dispatch rather than one HailoRT VDevice over every card
(docs/hardware-evidence.md §B): HailoRT refuses a multi-device VDevice on a Hailo-8L or Hailo-10H
and over mixed chips (vdevice.cpp `create_devices`, vdevice_hrpc_client.cpp "Only single device is
supported!"), and inside one VDevice a failing card shuts the configured model down on every card
(async_infer_runner.cpp: the pipeline shutdown is "considered unrecoverable"), with no way to drop
the card but to rebuild everything. With one VDevice per card a card's failure is its own: its
lanes stop pulling bursts, its in-flight frames move to the other cards, and it rejoins when its
own rebuild succeeds. What HailoRT's multi-device scheduler did (one queue per model, the next
burst to an idle device) the lanes reproduce at burst granularity: they pull from one queue, and
a lane takes a burst only while no other ready lane has fewer bursts in flight.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ml_target.errors import ConfigurationError

if TYPE_CHECKING:
    from ml_target.hailo.batching import Lane, _Request

# Network states from best to worst, as a lane reports them (`Lane.state`).
LANE_STATES = ("ready", "failing", "recovering", "down")


def cards_to_open(
    setting: tuple[str, ...], scan: Callable[[], list[str]], drivable: Callable[[str], bool]
) -> list[str | None]:
    """The cards to open: None alone means "one free card, HailoRT's choice" (the default).

    `all` is every card `scan` lists that this HailoRT line can drive (`drivable`: 4.x does not
    open a Hailo-10H, 5.x no Hailo-8), sorted, because HailoRT lists them in directory order.
    """
    if not setting:
        return [None]
    if setting != ("all",):
        return list(setting)
    found = sorted(str(i) for i in scan())
    usable = [i for i in found if drivable(i)]
    if not usable:
        raise ConfigurationError(
            f"HAILO_DEVICE_IDS=all: no card this HailoRT can drive among {found or 'none (Device.scan() is empty)'}"
        )
    return usable


def takes_next_burst(own_inflight: int, others_inflight: Iterable[int]) -> bool:
    """A lane takes the next burst unless another ready lane has fewer bursts in flight."""
    return all(own_inflight <= other for other in others_inflight)


def split_movable(requests: Iterable[_Request]) -> tuple[list[_Request], list[_Request]]:
    """(frames that may be queued again, frames that must fail): a frame moves once; a caller that
    gave up is dropped from both."""
    movable, failed = [], []
    for request in requests:
        if request.abandoned:
            continue
        (failed if request.retried else movable).append(request)
    return movable, failed


def lane_stats(lane: Lane) -> dict[str, Any]:
    """One lane's counters as a plain dict (call under the network's lock)."""
    s = lane.stats
    return {
        "state": lane.state(),
        "inflight_frames": lane.inflight_frames(),
        "frames": s.frames,
        "bursts": s.bursts,
        "batch_sizes": dict(sorted(s.burst_sizes.items())),
        "busy_s": s.busy_s,
        "errors": s.errors,
        "reconfigures": s.reconfigures,
        "retried": s.retried,
        "moved": s.moved,
        "last_error": s.last_error,
        "last_error_age_s": None if s.last_error_at is None else time.monotonic() - s.last_error_at,
    }


def network_state(states: Iterable[str]) -> str:
    """A network's state from its lanes': "ready" when all are, "degraded" while some serve and
    others do not, else the best of theirs (one lane: its own)."""
    states = list(states)
    if not states:
        return "down"
    if all(s == "ready" for s in states):
        return "ready"
    if "ready" in states:
        return "degraded"
    return min(states, key=LANE_STATES.index)


def combine_lanes(lanes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The network-wide view of its lanes' counters: sums, merged burst sizes, the latest error."""
    sums = {key: sum(lane[key] for lane in lanes.values())
            for key in ("inflight_frames", "frames", "bursts", "busy_s", "errors", "reconfigures", "retried", "moved")}
    sizes: Counter = Counter()
    for lane in lanes.values():
        sizes.update(lane["batch_sizes"])
    failed = [lane for lane in lanes.values() if lane["last_error"] is not None]
    latest = min(failed, key=lambda lane: lane["last_error_age_s"], default=None)
    return {
        "state": network_state(lane["state"] for lane in lanes.values()),
        **sums,
        "batch_sizes": dict(sorted(sizes.items())),
        "mean_burst_size": sums["frames"] / sums["bursts"] if sums["bursts"] else 0.0,
        "last_error": None if latest is None else latest["last_error"],
        "last_error_age_s": None if latest is None else latest["last_error_age_s"],
    }
