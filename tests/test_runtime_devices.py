"""The runtime over several emulated cards: which cards open, how work spreads, and what a failing
card does to the others (nothing: its frames move, it rebuilds alone and rejoins)."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np
import pytest
import test_runtime
from emulator_helpers import ARCH
from test_runtime import expected, marker, runtime_factory, write_affine

from ml_target.config import Settings
from ml_target.errors import ConfigurationError
from ml_target.hailo import emulator
from ml_target.hailo import runtime as runtime_module
from ml_target.hailo.emulator.models_dir import write_hef
from ml_target.hailo.runtime import Runtime

emu = test_runtime.emu
ID1, ID2 = "0000:01:00.0", "0000:02:00.0"


@pytest.fixture
def make_runtime(emu):
    with runtime_factory(request_timeout_s=3.0, hailo_device_ids=("all",)) as factory:

        def make(chips=(ARCH, ARCH), ids=None, **overrides) -> Runtime:
            emulator.set_devices(list(chips), ids=ids)
            return factory(**overrides)

        yield make
    for card in emulator.devices():
        card.restore()


async def wait_for(predicate, what: str, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"never {what}")


async def run_calls(net, count: int, start: int = 0) -> list:
    return await asyncio.gather(*(net.infer(marker(i)) for i in range(start, start + count)), return_exceptions=True)


def assert_all_correct(results: list, start: int = 0) -> None:
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    for i, result in enumerate(results, start):
        np.testing.assert_array_equal(result["affine/fc1"], expected(marker(i)))


def card_frames(runtime: Runtime, network: str = "affine") -> dict[str, int]:
    return {device_id: lane["frames"] for device_id, lane in runtime.stats()["networks"][network]["devices"].items()}


async def test_all_opens_every_card_in_sorted_order_each_on_its_own_vdevice(make_runtime, tmp_path):
    runtime = make_runtime(ids=[ID2, ID1])  # HailoRT lists cards in directory order
    assert [c.device_id for c in runtime.cards] == [ID1, ID2]
    assert [c.info["device_id"] for c in runtime.cards] == [ID1, ID2]
    assert runtime.arch == ARCH
    health = runtime.health()
    assert [(d["device_id"], d["state"], d["arch"]) for d in health["devices"]] == [
        (ID1, "ready", ARCH), (ID2, "ready", ARCH)]
    assert health["device_info"]["device_id"] == ID1  # the first card, for readers of one device


async def test_concurrent_frames_spread_over_both_cards_with_each_callers_own_result(make_runtime, tmp_path):
    runtime = make_runtime(hailo_emulator_profile="hailo8")
    net = runtime.load(write_affine(tmp_path, "affine", timing=(20.0, 1.0)), batch_size=4, priority=16)
    assert_all_correct(await run_calls(net, 48))
    frames = card_frames(runtime)
    assert sum(frames.values()) == 48
    assert min(frames.values()) >= 12, frames  # neither card idles while the other works
    device = {c.device_id: c.counters()["networks"]["affine"]["frames"] for c in emulator.devices()}
    assert device == frames  # what each emulated card ran is what the runtime counted for it


async def test_a_card_that_vanishes_under_load_fails_no_request_and_rejoins_after_its_rebuild(make_runtime, tmp_path):
    runtime = make_runtime(hailo_emulator_profile="hailo8")
    net = runtime.load(write_affine(tmp_path, "affine", timing=(20.0, 1.0)), batch_size=4, priority=16)
    calls = asyncio.ensure_future(run_calls(net, 64))
    await wait_for(lambda: card_frames(runtime)[ID2] > 0 and net.stats()["devices"][ID2]["inflight_frames"] > 0,
                   "had frames in flight on the second card")
    emulator.device(ID2).vanish()
    results = await calls
    assert_all_correct(results)  # its in-flight frames moved to the first card; nothing failed
    assert net.stats()["devices"][ID2]["moved"] > 0
    health = runtime.health()
    assert health["state"] == "degraded"
    assert [d["state"] for d in health["devices"]] == ["ready", "down"]
    assert ID2 in health["reason"]
    assert_all_correct(await run_calls(net, 8, start=100), start=100)  # the first card alone serves
    emulator.device(ID2).restore()
    await wait_for(lambda: runtime.health()["state"] == "healthy", "rejoined")
    before = card_frames(runtime)[ID2]
    assert_all_correct(await run_calls(net, 32, start=200), start=200)
    assert card_frames(runtime)[ID2] > before  # the rebuilt card takes work again
    assert [d["rebuilds"] for d in runtime.health()["devices"]] == [0, 1]


async def test_a_failing_model_on_one_card_moves_its_burst_to_the_other(make_runtime, tmp_path):
    runtime = make_runtime(hailo_emulator_profile="hailo8")
    net = runtime.load(write_affine(tmp_path, "affine", timing=(20.0, 1.0)), batch_size=4, priority=16)
    emulator.device(ID2).fail_bursts("affine", count=1, status=8)
    assert_all_correct(await run_calls(net, 32))
    lane = net.stats()["devices"][ID2]
    assert (lane["errors"], lane["reconfigures"]) == (1, 1) and lane["moved"] >= 1
    assert runtime.health()["rebuilds"] == 0


async def test_with_one_card_a_lost_card_still_fails_its_requests_and_reads_down(make_runtime, tmp_path):
    runtime = make_runtime(chips=(ARCH,))
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    emulator.device(0).vanish()
    results = await run_calls(net, 4)
    assert all(isinstance(r, BaseException) for r in results)
    await wait_for(lambda: runtime.health()["state"] == "down", "read down")


async def test_mixed_hailo8_and_hailo8l_use_the_8l_build_on_both(make_runtime, tmp_path):
    runtime = make_runtime(chips=("hailo8", "hailo8l"))
    assert [c.arch for c in runtime.cards] == ["hailo8", "hailo8l"] and runtime.arch == "hailo8l"
    eight = tmp_path / "eight" / "affine.hef"  # a hailo8 build: the 8L card refuses it
    write_hef(eight, network_group="affine", inputs=[_edge("input_layer1", "UINT8")], outputs=[_edge("fc1", "UINT16")],
              compute={"kind": "callable", "name": "runtime_test_affine"}, hw_arch="hailo8")
    with pytest.raises(ConfigurationError, match=rf"on {ID2}.*HEF") as refused:
        runtime.load(eight, batch_size=4, priority=16)
    assert "fetch the HEFs for this device's arch" in str(refused.value)
    path = tmp_path / "eightl" / "affine.hef"
    write_hef(path, network_group="affine", inputs=[_edge("input_layer1", "UINT8")], outputs=[_edge("fc1", "UINT16")],
              compute={"kind": "callable", "name": "runtime_test_affine"}, hw_arch="hailo8l")
    net = runtime.load(path, batch_size=4, priority=16)
    assert_all_correct(await run_calls(net, 16))


def _edge(layer: str, kind: str) -> dict:
    top = 255.0 if kind == "UINT8" else 65535.0
    return {"name": f"affine/{layer}", "shape": [test_runtime.WIDTH], "type": kind, "order": "NC",
            "quant": {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": top}}


async def test_all_keeps_the_cards_of_this_hailort_line(make_runtime):
    four = make_runtime(chips=("hailo10h", "hailo8"), hailo_emulator_hailort="4")
    assert [(c.device_id, c.arch) for c in four.cards] == [(ID2, "hailo8")]
    four.close()
    five = make_runtime(chips=("hailo10h", "hailo8"), hailo_emulator_hailort="5")
    assert [(c.device_id, c.arch) for c in five.cards] == [(ID1, "hailo10h")]
    assert five.hailort_version.startswith("5.") and five.arch == "hailo10h"


async def test_a_named_card_of_the_other_family_is_refused_with_the_line_it_needs(make_runtime):
    with pytest.raises(ConfigurationError, match=r"79.*HailoRT 5\.x|HailoRT 5\.x.*79"):
        make_runtime(chips=("hailo8", "hailo10h"), hailo_device_ids=(ID2,), hailo_emulator_hailort="4")


async def test_an_unknown_card_id_says_how_to_list_the_cards(make_runtime):
    with pytest.raises(ConfigurationError, match="hailortcli scan"):
        make_runtime(hailo_device_ids=("0000:07:00.0",))


async def test_several_cards_get_one_group_id_each(make_runtime):
    runtime = make_runtime(hailo_group_id="SHARED")
    assert runtime._group_ids == {ID1: f"SHARED-{ID1}", ID2: f"SHARED-{ID2}"}
    single = Settings(hailo_device="emulator", hailo_emulator_profile="none", hailo_device_ids=(ID1,))
    runtime.close()
    alone = Runtime(single)
    try:
        assert alone._group_ids == {ID1: "SHARED"}  # one card: the group other processes share
    finally:
        alone.close()


async def test_hailo10h_under_5x_keeps_one_control_session_per_card(make_runtime, monkeypatch, caplog):
    monkeypatch.setattr(runtime_module, "TEMPERATURE_INTERVAL_S", 0.0)
    with caplog.at_level(logging.WARNING, logger="ml_target.hailo.runtime"):
        runtime = make_runtime(chips=("hailo10h", "hailo10h"), hailo_multi_process_service=True)
    assert "HAILO_MULTI_PROCESS_SERVICE is ignored" in caplog.text  # a 10H refuses the service
    opened = [c.counters()["sessions_opened"] for c in emulator.devices()]
    for _ in range(5):
        assert runtime.health()["temperature_c"] == 47.5
    assert [c.counters()["sessions_opened"] for c in emulator.devices()] == opened
    assert {d["device_info"]["architecture"] for d in runtime.health()["devices"]} == {"HAILO10H"}


async def test_health_and_metrics_count_each_cards_work(make_runtime, tmp_path):
    from prometheus_client.core import Metric

    from ml_target.metrics import runtime_metrics

    runtime = make_runtime(hailo_emulator_profile="hailo8")
    net = runtime.load(write_affine(tmp_path, "affine", timing=(20.0, 1.0)), batch_size=4, priority=16)
    assert_all_correct(await run_calls(net, 32))
    emulator.device(ID2).vanish()
    assert_all_correct(await run_calls(net, 16, start=50), start=50)  # the lost card notices on its next burst
    await wait_for(lambda: runtime.health()["devices"][1]["state"] == "down", "saw the second card down")
    health = runtime.health()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in runtime_metrics(health) if isinstance(family, Metric) for s in family.samples}
    frames = card_frames(runtime)
    for device_id in (ID1, ID2):
        key = ("ml_target_card_network_frames_total", (("device", device_id), ("network", "affine")))
        assert samples[key] == frames[device_id] > 0
    assert samples[("ml_target_card_ready", (("device", ID1),))] == 1.0
    assert samples[("ml_target_card_ready", (("device", ID2),))] == 0.0
    assert samples[("ml_target_network_frames_total", (("network", "affine"),))] == 48.0
    assert [d["frames"] for d in health["devices"]] == [frames[ID1], frames[ID2]]


def test_hailo_device_ids_and_emulated_cards_are_parsed_and_bad_values_refused():
    assert Settings.from_env({}).hailo_device_ids == ()
    assert Settings.from_env({"HAILO_DEVICE_IDS": "ALL"}).hailo_device_ids == ("all",)
    assert Settings.from_env({"HAILO_DEVICE_IDS": "0000:01:00.0, 02:00.0"}).hailo_device_ids == (ID1, "02:00.0")
    for bad in ("0000:01:00.0,0000:01:00.0", "card1", "0000:01:00.9"):
        with pytest.raises(ConfigurationError, match="HAILO_DEVICE_IDS"):
            Settings.from_env({"HAILO_DEVICE_IDS": bad})
    assert Settings.from_env({"HAILO_EMULATOR_DEVICES": "hailo8,hailo8l"}).hailo_emulator_devices == ("hailo8", "hailo8l")
    with pytest.raises(ConfigurationError, match="HAILO_EMULATOR_DEVICES"):
        Settings.from_env({"HAILO_EMULATOR_DEVICES": "hailo15"})
