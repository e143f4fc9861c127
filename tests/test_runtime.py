"""The runtime on the emulated device: formats, per-caller results, batching, priorities, limits.

Networks here are tiny emulated HEFs whose compute is a registered function of the input
(out = 3 * in + 7), so every caller can check that it got exactly its own frame's answer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from emulator_helpers import ARCH, LIBRARY

from ml_target.config import Settings
from ml_target.errors import (
    ConfigurationError,
    DeviceError,
    DeviceTimeout,
    Overloaded,
    ServiceUnavailable,
)
from ml_target.hailo import emulator
from ml_target.hailo.emulator.models_dir import write_hef
from ml_target.hailo.runtime import Runtime, describe_hef

WIDTH = 16
U8 = {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": 255.0}
U16 = {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": 65535.0}
WIDE = {"scale": 1 / 64, "zp": 32768.0, "min": -512.0, "max": 32767 / 64}


def _affine(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    (name, x), = inputs.items()
    group = name.split("/")[0]
    return {f"{group}/fc1": 3.0 * x + 7.0}


def _identity(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"wide/out": inputs["wide/tokens"]}


emulator.register_compute("runtime_test_affine", _affine)
emulator.register_compute("runtime_test_identity", _identity)


def write_affine(
    directory: Path, group: str, timing: tuple[float, float] = (0.0, 0.0), multi_context: bool = True
) -> Path:
    path = directory / f"{group}.hef"
    write_hef(
        path,
        network_group=group,
        inputs=[{"name": f"{group}/input_layer1", "shape": [WIDTH], "type": "UINT8", "order": "NC", "quant": U8}],
        outputs=[{"name": f"{group}/fc1", "shape": [WIDTH], "type": "UINT16", "order": "NC", "quant": U16}],
        compute={"kind": "callable", "name": "runtime_test_affine"},
        timing_ms={"hailo8": list(timing), "hailo8l": list(timing), "hailo10h": list(timing)},
        hw_arch=ARCH,
        multi_context=multi_context,
    )
    return path


def marker(i: int) -> np.ndarray:
    return ((np.arange(WIDTH) * 13 + i * 7) % 256).astype(np.uint8)


def expected(frame: np.ndarray) -> np.ndarray:
    return 3.0 * frame.astype(np.float32) + 7.0


@pytest.fixture
def emu():
    device = emulator.device()
    device.reset()
    yield device
    device.reset()


@contextmanager
def runtime_factory(**defaults) -> Iterator[Callable[..., Runtime]]:
    """Runtimes on the emulated device with these settings (each call may override them), with
    quick rebuilds; all closed on exit."""
    made: list[Runtime] = []

    def make(**overrides) -> Runtime:
        values = {"hailo_device": "emulator", "hailo_emulator_profile": "none", **defaults, **overrides}
        runtime = Runtime(Settings(**values), rebuild_backoff_s=(0.05, 0.1))
        made.append(runtime)
        return runtime

    try:
        yield make
    finally:
        for runtime in made:
            runtime.close()


@pytest.fixture
def make_runtime(emu):
    with runtime_factory(request_timeout_s=2.0) as make:
        yield make


async def test_edges_come_from_the_hef_with_the_chosen_user_types(make_runtime, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    (edge_in,), (edge_out,) = net.inputs, net.outputs
    assert (edge_in.name, edge_in.shape, edge_in.dtype) == ("affine/input_layer1", (WIDTH,), np.uint8)
    assert (edge_out.name, edge_out.shape, edge_out.dtype) == ("affine/fc1", (WIDTH,), np.float32)
    assert (edge_out.quant.scale, edge_out.quant.max) == (1.0, 65535.0)
    assert (net.name, net.group, net.batch_size) == ("affine", "affine", 4)
    assert runtime.load(tmp_path / "affine.hef", batch_size=4, priority=16) is net


async def test_sixteen_bit_inputs_take_float32_quantised_by_the_runtime(make_runtime, tmp_path):
    path = tmp_path / "wide.hef"
    write_hef(
        path,
        network_group="wide",
        inputs=[{"name": "wide/tokens", "shape": [4], "type": "UINT16", "order": "NC", "quant": WIDE}],
        outputs=[{"name": "wide/out", "shape": [4], "type": "UINT16", "order": "NC", "quant": WIDE}],
        compute={"kind": "callable", "name": "runtime_test_identity"},
        timing_ms={"hailo8": [0, 0]},
        hw_arch=ARCH,
        multi_context=False,
    )
    net = make_runtime().load(path, batch_size=1, priority=16)
    assert net.inputs[0].dtype == np.float32
    values = np.array([1.5, -2.25, 0.0, 100.015625], np.float32)
    out = await net.infer(values)
    np.testing.assert_array_equal(out["wide/out"], values)
    clipped = await net.infer(np.array([1000.0, -1000.0, 0.01, 0.0], np.float32))
    np.testing.assert_array_equal(clipped["wide/out"], [32767 / 64, -512.0, 0.015625, 0.0])


async def test_missing_hef_names_the_file_and_the_fetch_command(make_runtime, tmp_path):
    with pytest.raises(ConfigurationError, match="fetch-models") as info:
        make_runtime().load(tmp_path / "scrfd_2.5g.hef", batch_size=1, priority=16)
    assert "scrfd_2.5g.hef" in str(info.value)


async def test_hef_for_another_architecture_is_refused_with_advice(make_runtime, emu, tmp_path):
    emu.set_architecture("hailo8l")
    runtime = make_runtime()
    with pytest.raises(ConfigurationError, match="another Hailo architecture"):
        runtime.load(write_affine(tmp_path, "affine"), batch_size=1, priority=16)
    assert runtime.health()["networks"] == {}


async def test_each_of_32_concurrent_callers_gets_its_own_result(make_runtime, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=8, priority=16)
    frames = [marker(i) for i in range(32)]
    for _ in range(3):
        results = await asyncio.gather(*(net.infer(f) for f in frames))
        for frame, result in zip(frames, results):
            np.testing.assert_array_equal(result["affine/fc1"], expected(frame))
    stats = runtime.stats()["networks"]["affine"]
    assert stats["frames"] == 96 and stats["errors"] == 0


async def test_bursts_form_under_load(make_runtime, emu, tmp_path):
    runtime = make_runtime(hailo_emulator_profile="hailo8")
    net = runtime.load(write_affine(tmp_path, "affine", timing=(5.0, 0.5)), batch_size=8, priority=16)

    async def caller(i: int) -> None:
        for _ in range(4):
            out = await net.infer(marker(i))
            np.testing.assert_array_equal(out["affine/fc1"], expected(marker(i)))

    await asyncio.gather(*(caller(i) for i in range(16)))
    stats = runtime.stats()["networks"]["affine"]
    assert stats["frames"] == 64
    assert stats["mean_burst_size"] >= 4
    assert max(stats["batch_sizes"]) == 8
    device = emu.counters()["networks"]["affine"]
    assert device["frames"] == 64 and device["bursts"] <= 16


async def test_partial_bursts_wait_only_for_multi_context_networks(make_runtime, emu, tmp_path):
    runtime = make_runtime()
    multi = runtime.load(write_affine(tmp_path, "multi"), batch_size=4, priority=16)
    single = runtime.load(write_affine(tmp_path, "single", multi_context=False), batch_size=4, priority=16)
    for net, held_back in ((multi, 1), (single, 0)):
        emu.stall(net.group, 0.3)
        first = asyncio.create_task(net.infer(marker(1)))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(net.infer(marker(2)))
        await asyncio.sleep(0.05)
        stats = runtime.stats()["networks"][net.name]
        assert (stats["queue_depth"], stats["inflight_frames"]) == (held_back, 2 - held_back), net.name
        for task, i in ((first, 1), (second, 2)):
            np.testing.assert_array_equal((await task)[f"{net.group}/fc1"], expected(marker(i)))


async def test_higher_priority_network_wins_the_device(make_runtime, emu, tmp_path):
    runtime = make_runtime(hailo_emulator_profile="hailo8")
    low = runtime.load(write_affine(tmp_path, "low", timing=(4.0, 0.5)), batch_size=4, priority=2)
    high = runtime.load(write_affine(tmp_path, "high", timing=(4.0, 0.5)), batch_size=4, priority=30)
    stop = time.monotonic() + 0.6

    async def flood(net, i: int) -> None:
        while time.monotonic() < stop:
            await net.infer(marker(i))

    await asyncio.gather(*(flood(net, i) for net in (low, high) for i in range(8)))
    busy = {ng: c["busy_ms"] for ng, c in emu.counters()["networks"].items()}
    assert busy["high"] > 3 * busy["low"], busy


async def test_deadline_fires_with_device_timeout(make_runtime, emu, tmp_path):
    net = make_runtime(request_timeout_s=5.0).load(write_affine(tmp_path, "affine"), batch_size=1, priority=16)
    emu.stall("affine", 0.8)
    started = time.monotonic()
    with pytest.raises(DeviceTimeout):
        await net.infer(marker(1), timeout=0.2)
    assert 0.15 < time.monotonic() - started < 0.6
    out = await net.infer(marker(2), timeout=3.0)
    np.testing.assert_array_equal(out["affine/fc1"], expected(marker(2)))


async def test_full_queue_is_refused_fast_and_old_frames_expire(make_runtime, emu, tmp_path):
    runtime = make_runtime(max_queued_frames=2, queue_wait_s=0.3, request_timeout_s=5.0)
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=1, priority=16)
    emu.stall("affine", 0.8)
    started = []
    for i in range(4):  # two bursts go in flight (one stalled), two frames wait in the queue
        started.append(asyncio.create_task(net.infer(marker(i))))
        await asyncio.sleep(0.02)
    t0 = time.monotonic()
    with pytest.raises(Overloaded):
        await net.infer(marker(9))
    assert time.monotonic() - t0 < 0.1
    outcomes = await asyncio.gather(*started, return_exceptions=True)
    served = [o for o in outcomes if isinstance(o, dict)]
    expired = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(served) == 2 and len(expired) == 2, outcomes
    assert runtime.stats()["networks"]["affine"]["overloaded"] == 3


async def test_bad_frames_are_refused_without_touching_the_model(make_runtime, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16)
    for bad in (marker(1).astype(np.float32), marker(1)[:8], {"other": marker(1)}, np.zeros((2, WIDTH), np.uint8)):
        with pytest.raises(ValueError):
            await net.infer(bad)
    out = await net.infer(marker(3))
    np.testing.assert_array_equal(out["affine/fc1"], expected(marker(3)))
    stats = runtime.stats()["networks"]["affine"]
    assert (stats["errors"], stats["reconfigures"]) == (0, 0)


async def test_arch_is_identified_or_taken_from_settings(make_runtime, emu):
    emu.set_architecture("hailo8l")
    assert make_runtime().arch == "hailo8l"
    emu.set_architecture("hailo8")
    assert make_runtime(hailo_arch="hailo8l").arch == "hailo8l"  # the 8L build runs on a Hailo-8
    emu.set_architecture("hailo8l")
    with pytest.raises(ConfigurationError, match="HAILO_ARCH=hailo8, but the card"):
        make_runtime(hailo_arch="hailo8")


async def test_a_pre_production_hailo8_is_refused_with_the_reason(make_runtime, emu):
    emu.set_architecture("hailo8_a0")
    with pytest.raises(ConfigurationError, match="HAILO8_A0, a pre-production Hailo-8 on which HailoRT 4.23 accepts no HEF"):
        make_runtime()


async def test_health_reports_device_and_networks(make_runtime, tmp_path):
    runtime = make_runtime()
    runtime.load(write_affine(tmp_path, "affine"), batch_size=2, priority=20)
    health = runtime.health()
    assert (health["state"], health["device"], health["arch"]) == ("healthy", "emulator", ARCH)
    assert health["hailort_version"] == LIBRARY
    info = health["device_info"]
    assert (info["architecture"], info["firmware_version"], info["device_id"]) == (ARCH.upper(), LIBRARY, "0000:01:00.0")
    assert info["driver_version"] is None and info["pcie"] is None  # an emulated device has neither
    hef = health["hefs"]["affine"]
    assert hef["inputs"][0]["native_type"] == "UINT8" and hef["inputs"][0]["order"] == "NC"
    net = health["networks"]["affine"]
    assert (net["name"], net["batch_size"], net["priority"], net["queue_depth"]) == ("affine", 2, 20, 0)


async def test_close_is_idempotent_and_then_refuses_work(make_runtime, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=1, priority=16)
    runtime.close()
    runtime.close()
    with pytest.raises(ServiceUnavailable):
        await net.infer(marker(0))
    assert runtime.health()["state"] == "down"


def test_real_hailort_without_the_wheel_is_an_actionable_error():
    with pytest.raises(ConfigurationError, match="hailo-rt-4"):
        Runtime(Settings(hailo_device="hailort"))


def test_describe_hef_lists_edges(tmp_path):
    edges = describe_hef(write_affine(tmp_path, "affine"))
    assert [(e["direction"], e["name"], e["shape"], e["format_type"]) for e in edges] == [
        ("input", "affine/input_layer1", [WIDTH], "UINT8"),
        ("output", "affine/fc1", [WIDTH], "UINT16"),
    ]
    assert edges[1]["quant"] == U16 and edges[0]["format_order"] == "NC"
    real = tmp_path / "real.hef"
    real.write_bytes(b"\x01HEF" + bytes(60))
    with pytest.raises(ConfigurationError, match="hailo_platform"):
        describe_hef(real)


async def _announced_caller(net, i: int, host_work_s: float, *, announce: bool) -> dict:
    """A request: (announce,) host work, then its frame, like the pipeline's CLIP image step."""
    if not announce:
        await asyncio.sleep(host_work_s)
        return await net.infer(marker(i))
    with net.announce():
        await asyncio.sleep(host_work_s)
        return await net.infer(marker(i))


async def test_announced_callers_share_a_burst_on_an_idle_network(make_runtime, emu, tmp_path):
    net = make_runtime().load(write_affine(tmp_path, "affine"), batch_size=8, priority=16)
    emu.burst_log()  # start from an empty log
    outs = await asyncio.gather(*(_announced_caller(net, i, 0.002 * i, announce=True) for i in range(3)))
    for i, out in enumerate(outs):
        np.testing.assert_array_equal(out["affine/fc1"], expected(marker(i)))
    assert [frames for group, frames in emu.burst_log() if group == "affine"] == [3]
    await asyncio.gather(*(_announced_caller(net, i, 0.006 * i, announce=False) for i in range(3)))
    assert [frames for group, frames in emu.burst_log() if group == "affine"][-3:] == [1, 1, 1]


async def test_an_announced_caller_that_never_sends_delays_others_by_the_bound_only(make_runtime, emu, tmp_path):
    from ml_target.hailo.batching import ANNOUNCED_GATHER_S

    net = make_runtime().load(write_affine(tmp_path, "affine"), batch_size=8, priority=16)
    release = asyncio.Event()

    async def silent_request() -> None:  # e.g. a faces request whose photo has no face
        with net.announce():
            await release.wait()

    silent = asyncio.create_task(silent_request())
    await asyncio.sleep(0)
    started = time.monotonic()
    await net.infer(marker(1))
    waited = time.monotonic() - started
    assert ANNOUNCED_GATHER_S * 0.8 <= waited < ANNOUNCED_GATHER_S + 0.05
    release.set()
    await silent
    started = time.monotonic()
    await net.infer(marker(2))  # withdrawn on exit: no wait any more
    assert time.monotonic() - started < ANNOUNCED_GATHER_S


async def test_raw_outputs_keep_the_native_type_also_after_a_reconfigure(make_runtime, emu, tmp_path):
    runtime = make_runtime()
    net = runtime.load(write_affine(tmp_path, "affine"), batch_size=4, priority=16, raw_outputs=True)
    assert net.outputs[0].dtype == np.uint16
    out = (await net.infer(marker(3)))["affine/fc1"]
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(net.outputs[0].quant.dequantise(out), expected(marker(3)))
    emu.fail_next_run_async("affine", status=82)
    with pytest.raises(DeviceError):
        await net.infer(marker(1))
    again = (await net.infer(marker(4)))["affine/fc1"]
    assert again.dtype == np.uint16 and runtime.stats()["networks"]["affine"]["reconfigures"] == 1
    np.testing.assert_array_equal(again, expected(marker(4)).astype(np.uint16))
    with pytest.raises(ConfigurationError, match="output format"):
        runtime.load(tmp_path / "affine.hef", batch_size=4, priority=16)


async def test_raw_outputs_without_a_single_scale_stay_float32(make_runtime, tmp_path):
    """Per-feature QPs show as an all-zero quant_info: only libhailort can dequantise those."""
    path = tmp_path / "perfeature.hef"
    zero = {"scale": 0.0, "zp": 0.0, "min": 0.0, "max": 0.0}
    write_hef(
        path,
        network_group="perfeature",
        inputs=[{"name": "perfeature/input_layer1", "shape": [WIDTH], "type": "UINT8", "order": "NC", "quant": U8}],
        outputs=[{"name": "perfeature/fc1", "shape": [WIDTH], "type": "UINT8", "order": "NC", "quant": zero}],
        compute={"kind": "callable", "name": "runtime_test_affine"},
        timing_ms={"hailo8": [0, 0]},
        hw_arch=ARCH,
        multi_context=False,
    )
    net = make_runtime().load(path, batch_size=1, priority=16, raw_outputs=True)
    assert net.outputs[0].dtype == np.float32


async def test_an_argmax_output_is_refused_because_hailort_would_cast_it(make_runtime, tmp_path):
    path = tmp_path / "argmax.hef"
    write_hef(
        path,
        network_group="argmax",
        inputs=[{"name": "argmax/input_layer1", "shape": [4, 4, 3], "type": "UINT8", "order": "NHWC", "quant": U8}],
        outputs=[{"name": "argmax/argmax1", "shape": [4, 4], "type": "UINT8", "order": "NHW", "quant": U8}],
        hw_arch=ARCH,
    )
    with pytest.raises(ConfigurationError, match="argmax1 is in NHW order"):
        make_runtime().load(path, batch_size=1, priority=16)


async def test_uint8_pixels_reach_a_16_bit_image_edge_quantised_not_cast(make_runtime, tmp_path):
    """A 16-bit image input (none is known, docs/hardware-evidence.md) takes the handlers' uint8 pixels
    as float32, which libhailort quantises with the edge's QP: the network sees the same pixel values."""
    emulator.register_compute("runtime_test_pixels", lambda inputs: {"pixels/out": next(iter(inputs.values())).reshape(-1, 12)})
    path = tmp_path / "pixels.hef"
    write_hef(
        path, network_group="pixels",
        inputs=[{"name": "pixels/input_layer1", "shape": [2, 2, 3], "type": "UINT16", "order": "NHWC",
                 "quant": {"scale": 1 / 128, "zp": 0.0, "min": 0.0, "max": 511.99}}],
        outputs=[{"name": "pixels/out", "shape": [12], "type": "UINT16", "order": "NC",
                  "quant": {"scale": 1 / 64, "zp": 0.0, "min": 0.0, "max": 1023.98}}],
        compute={"kind": "callable", "name": "runtime_test_pixels"}, hw_arch=ARCH,
    )
    frame = np.arange(12, dtype=np.uint8).reshape(2, 2, 3) * 20
    wide = make_runtime().load(path, batch_size=1, priority=16)
    assert wide.inputs[0].dtype == np.float32 and wide.inputs[0].native_type == "UINT16"
    np.testing.assert_allclose((await wide.infer(frame))["pixels/out"], frame.reshape(-1).astype(np.float32), atol=1 / 64)
