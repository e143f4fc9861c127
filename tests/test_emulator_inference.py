"""Inference through the emulated device: results per caller, formats and quantisation, buffer
validation, bounded queues, callbacks, jobs, activation, and the life cycle of configured models."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from emulator_helpers import IDENTITY, bind, marker, write_net
from hypothesis import given, settings
from hypothesis import strategies as st

from ml_target.hailo.emulator import hailo_platform as hp
from ml_target.hailo.emulator.hailo_platform.pyhailort import pyhailort as ph
from ml_target.hailo.emulator.models_dir import write_hef
from ml_target.hailo.emulator.quant import QuantInfo, dequantize, quantize

pytest_plugins = ["emulator_helpers.fixtures"]

WIDE = {"scale": 1 / 64, "zp": 32768.0, "min": -100.0, "max": 100.0}


def expected(frame: np.ndarray) -> np.ndarray:
    return 2 * frame.astype(np.int32) + 1


def test_every_caller_gets_its_own_result_from_concurrent_run_async(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    model.set_batch_size(4)
    with model.configure() as configured:
        lock = threading.Lock()

        def call(i: int) -> np.ndarray:
            bindings, out = bind(configured, model, marker(i))
            done = threading.Event()
            with lock:
                configured.wait_for_async_ready(2000)
                job = configured.run_async([bindings], lambda completion_info: done.set())
            job.wait(5000)
            assert done.is_set()
            return out

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(call, range(40)))
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out, expected(marker(i)))


def test_a_job_of_several_bindings_completes_once_with_every_output(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    model.set_batch_size(2)
    with model.configure() as configured:
        pairs = [bind(configured, model, marker(i)) for i in range(5)]
        calls = []
        job = configured.run_async([b for b, _ in pairs], lambda completion_info: calls.append(completion_info.exception))
        job.wait(5000)
    assert calls == [None]
    for i, (_, out) in enumerate(pairs):
        np.testing.assert_array_equal(out, expected(marker(i)))
    assert emu.counters()["networks"]["net"]["burst_sizes"] == {2: 2, 1: 1}


def test_float32_user_format_quantises_inputs_and_dequantises_outputs(vdevice, tmp_path):
    path = write_net(tmp_path, "wide", shape=(6,), in_type="UINT16", out_type="UINT16",
                     in_quant=WIDE, out_quant=WIDE, compute=IDENTITY)
    model = vdevice.create_infer_model(path)
    model.input().set_format_type(hp.FormatType.FLOAT32)
    model.output().set_format_type(hp.FormatType.FLOAT32)
    x = np.array([0.5 / 64, 1.5 / 64, -2.5 / 64, 3.14159, 250.0, -250.0], np.float32)
    with model.configure() as configured:
        bindings, out = bind(configured, model, x, out_dtype=np.float32)
        configured.run([bindings], 5000)
    # round half to even: 0.5 -> 0, 1.5 -> 2, -2.5 -> -2; limvals clip to +-100
    np.testing.assert_array_equal(out, np.array([0, 2 / 64, -2 / 64, 201 / 64, 100, -100], np.float32))


def test_native_formats_pass_raw_values_both_ways(vdevice, tmp_path):
    path = write_net(tmp_path, "wide", shape=(3,), in_type="UINT16", out_type="UINT16",
                     in_quant=WIDE, out_quant=WIDE, compute=IDENTITY)
    model = vdevice.create_infer_model(path)
    assert model.input().format.type == hp.FormatType.UINT16
    raw = np.array([32768, 32769, 40000], np.uint16)
    with model.configure() as configured:
        bindings, out = bind(configured, model, raw, out_dtype=np.uint16)
        configured.run([bindings], 5000)
    np.testing.assert_array_equal(out, [32768, 32769, 39168])  # 40000 -> 113.0 -> clipped to limval 100


def test_uint8_pixels_with_float32_output_are_dequantised_with_the_edge_qp(vdevice, tmp_path):
    quant = {"scale": 0.5, "zp": 10.0, "min": -5.0, "max": 122.5}
    model = vdevice.create_infer_model(write_net(tmp_path, "net", shape=(2, 2, 3), out_quant=quant, compute=IDENTITY))
    model.output().set_format_type(hp.FormatType.FLOAT32)
    pixels = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3) * 20  # a batch axis is fine: only nbytes counts
    with model.configure() as configured:
        bindings, out = bind(configured, model, pixels, out_dtype=np.float32)
        configured.run([bindings], 5000)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out.reshape(-1), np.minimum(pixels.reshape(-1).astype(np.float32), 122.5))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e4, 1e4, allow_nan=False, width=32), min_size=1, max_size=16),
    st.floats(1 / 4096, 4.0),
    st.integers(0, 255),
)
def test_quantise_then_dequantise_is_within_half_a_step(values, scale, zp):
    quant = QuantInfo(zp, scale, (0 - zp) * scale, (255 - zp) * scale)
    x = np.array(values, np.float32)
    q = quantize(x, quant, np.dtype(np.uint8))
    back = dequantize(q, quant)
    clipped = np.clip(x, np.float32(quant.limvals_min), np.float32(quant.limvals_max))
    assert np.all(np.abs(back - clipped) <= quant.qp_scale / 2 * (1 + 1e-4) + 1e-6)
    np.testing.assert_array_equal(quantize(back, quant, np.dtype(np.uint8)), q)


def test_set_buffer_requires_c_contiguous_arrays(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net", shape=(4, 4, 3)))
    with model.configure() as configured:
        bindings = configured.create_bindings()
        strided = np.zeros((4, 8, 3), np.uint8)[:, ::2]
        with pytest.raises(hp.HailoRTException, match="C_CONTIGUOUS"):
            bindings.input().set_buffer(strided)
        assert bindings.input().get_buffer() is None
        frame = np.ascontiguousarray(strided)
        bindings.input().set_buffer(frame)
        assert bindings.input() is bindings.input("net/in")
        assert bindings.input().get_buffer() is frame


def test_wrong_buffer_size_fails_at_run_async_and_shuts_the_model_down(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    with model.configure() as configured:
        bad = configured.create_bindings(input_buffers={"net/in": np.zeros(9, np.uint8)},
                                         output_buffers={"net/out": np.zeros(8, np.uint8)})
        with pytest.raises(ph.HailoRTInvalidOperationException) as caught:
            configured.run_async([bad])
        assert "Input buffer size 9 is different than expected 8" in str(caught.value.__cause__)
        good, _ = bind(configured, model, marker(1))
        with pytest.raises(ph.HailoRTStreamAborted):
            configured.run_async([good])
        with pytest.raises(ph.HailoRTStreamAborted):
            configured.wait_for_async_ready(100)


def test_missing_buffer_is_not_found_and_shuts_the_model_down(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    with model.configure() as configured:
        partial = configured.create_bindings(input_buffers={"net/in": marker(0)})
        with pytest.raises(ph.HailoRTNotFoundException):
            configured.run_async([partial])
        with pytest.raises(ph.HailoRTStreamAborted):
            configured.run_async([bind(configured, model, marker(1))[0]])


def test_unknown_binding_names_are_not_found(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    with model.configure() as configured, pytest.raises(ph.HailoRTNotFoundException):
        configured.create_bindings(input_buffers={"net/nope": marker(0)})


def test_full_queue_raises_82_and_shuts_down_while_wait_for_async_ready_times_out(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "net", max_queue_size=2))
    with model.configure() as configured:
        assert configured.get_async_queue_size() == 2
        emu.stall("net", 0.3)
        jobs = [configured.run_async([bind(configured, model, marker(i))[0]]) for i in range(2)]
        with pytest.raises(ph.HailoRTTimeout):
            configured.wait_for_async_ready(50)
        with pytest.raises(hp.HailoRTException, match=r"\b82\b.*HAILO_QUEUE_IS_FULL"):
            configured.run_async([bind(configured, model, marker(3))[0]])
        for job in jobs:
            job.wait(2000)
        with pytest.raises(ph.HailoRTStreamAborted):
            configured.wait_for_async_ready(50)


def test_asking_for_more_frames_than_the_queue_holds_always_times_out(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net", max_queue_size=4))
    with model.configure() as configured:
        configured.wait_for_async_ready(100, frames_count=4)
        with pytest.raises(ph.HailoRTTimeout):
            configured.wait_for_async_ready(30, frames_count=5)


def test_callbacks_run_on_one_thread_per_model_with_the_completion_info_keyword(vdevice, tmp_path):
    threads: dict[str, set[int]] = {"a": set(), "b": set()}
    models = {g: vdevice.create_infer_model(write_net(tmp_path, g)) for g in threads}
    configured = {g: m.configure() for g, m in models.items()}
    jobs = []
    for i in range(6):
        for group, idents in threads.items():
            def callback(*, completion_info, idents=idents):
                assert completion_info.exception is None
                idents.add(threading.get_ident())
            jobs.append(configured[group].run_async([bind(configured[group], models[group], marker(i))[0]], callback))
    for job in jobs:
        job.wait(5000)
    assert len(threads["a"]) == 1 and len(threads["b"]) == 1
    assert threads["a"] != threads["b"] and threading.get_ident() not in threads["a"] | threads["b"]
    for c in configured.values():
        c.__exit__(None, None, None)


def test_job_wait_times_out_and_the_job_still_completes_later(vdevice, tmp_path, emu):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    with model.configure() as configured:
        emu.stall("net", 0.3)
        bindings, out = bind(configured, model, marker(4))
        job = configured.run_async([bindings])
        with pytest.raises(ph.HailoRTTimeout):
            job.wait(20)
        job.wait(3000)
        np.testing.assert_array_equal(out, expected(marker(4)))


def test_a_callback_that_raises_does_not_stop_later_callbacks(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    seen = []
    with model.configure() as configured:
        def bad(completion_info):
            raise RuntimeError("user bug")
        configured.run_async([bind(configured, model, marker(0))[0]], bad).wait(2000)
        configured.run_async([bind(configured, model, marker(1))[0]], lambda completion_info: seen.append(1)).wait(2000)
    assert seen == [1]


def test_exited_configured_model_raises_attribute_error(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    with model.configure() as configured:
        bindings, _ = bind(configured, model, marker(0))
    with pytest.raises(AttributeError):
        configured.run_async([bindings])
    with pytest.raises(AttributeError):
        configured.create_bindings()
    with pytest.raises(AttributeError):
        configured.wait_for_async_ready(10)


def test_without_scheduler_inference_needs_activation_and_one_model_is_active(emu, tmp_path):
    with hp.VDevice() as vd:
        a = vd.create_infer_model(write_net(tmp_path, "a"))
        b = vd.create_infer_model(write_net(tmp_path, "b"))
        with a.configure() as ca, b.configure() as cb:
            with pytest.raises(ph.HailoRTInvalidOperationException):
                cb.set_scheduler_priority(20)
            cb.activate()
            with pytest.raises(ph.HailoRTInvalidOperationException):
                ca.activate()
            with pytest.raises(hp.HailoRTException, match=r"\b72\b.*HAILO_STREAM_NOT_ACTIVATED"):
                ca.run_async([bind(ca, a, marker(0))[0]])
            bindings, out = bind(cb, b, marker(2))
            cb.run([bindings], 3000)
            np.testing.assert_array_equal(out, expected(marker(2)))
            cb.deactivate()


def test_with_scheduler_activate_is_refused_and_setters_validate(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net", multi_context=True))
    model.set_batch_size(4)
    with model.configure() as configured:
        with pytest.raises(ph.HailoRTInvalidOperationException):
            configured.activate()
        with pytest.raises(ph.HailoRTInvalidArgumentException):
            configured.set_scheduler_priority(32)
        with pytest.raises(ph.HailoRTInvalidArgumentException):
            configured.set_scheduler_threshold(5)
        configured.set_scheduler_priority(31)
        configured.set_scheduler_threshold(4)
        configured.set_scheduler_timeout(100)


def test_synthetic_compute_is_deterministic_input_sensitive_and_in_range(vdevice, tmp_path):
    quant = {"scale": 0.1, "zp": 128.0, "min": -12.8, "max": 12.7}
    path = write_hef(tmp_path / "syn.hef", network_group="syn",
                     inputs=[{"name": "syn/in", "shape": [16], "type": "UINT8", "order": "NC",
                              "quant": {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": 255.0}}],
                     outputs=[{"name": "syn/out", "shape": [64], "type": "UINT8", "order": "NC", "quant": quant}],
                     compute={"kind": "synthetic", "seed": 7})
    model = vdevice.create_infer_model(str(path))
    model.output().set_format_type(hp.FormatType.FLOAT32)
    frames = [marker(0, 16), marker(0, 16), marker(0, 16).copy()]
    frames[2][15] += 1
    with model.configure() as configured:
        pairs = [bind(configured, model, f, out_dtype=np.float32) for f in frames]
        configured.run([b for b, _ in pairs], 5000)
    first, again, changed = (out for _, out in pairs)
    np.testing.assert_array_equal(first, again)
    assert np.mean(first != changed) > 0.9
    assert first.min() >= -12.8 - 1e-6 and first.max() <= 12.7 + 1e-6 and first.std() > 3.0


def test_run_is_run_async_plus_wait(vdevice, tmp_path):
    model = vdevice.create_infer_model(write_net(tmp_path, "net"))
    with model.configure() as configured:
        bindings, out = bind(configured, model, marker(9))
        started = time.monotonic()
        configured.run([bindings], 3000)
        assert time.monotonic() - started < 3.0
    np.testing.assert_array_equal(out, expected(marker(9)))


def test_transform_utils_quantise_and_dequantise_with_a_quant_info():
    quant = ph.QuantInfo(128.0, 0.5, -64.0, 63.5)
    raw = np.array([0, 128, 255, 130], np.uint8)
    floats = np.zeros(4, np.float32)
    ph.HailoRTTransformUtils.dequantize_output_buffer(raw, floats, 4, quant)
    np.testing.assert_array_equal(floats, [-64.0, 0.0, 63.5, 1.0])
    back = np.zeros(4, np.uint8)
    ph.HailoRTTransformUtils.quantize_input_buffer(np.array([-100.0, 0.25, 0.75, 1.0], np.float32), back, 4, quant)
    np.testing.assert_array_equal(back, [0, 128, 130, 130])  # clip; 0.5 -> 0 and 1.5 -> 2 (half to even)
    with pytest.raises(ph.HailoRTInvalidArgumentException, match="per-feature"):
        ph.HailoRTTransformUtils.dequantize_output_buffer(raw, floats, 4, ph.QuantInfo())


def test_bindings_need_names_when_a_model_has_several_outputs(vdevice, tmp_path):
    path = write_hef(tmp_path / "two.hef", network_group="two",
                     inputs=[{"name": "two/in", "shape": [2], "type": "UINT8", "order": "NC",
                              "quant": {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": 255.0}}],
                     outputs=[{"name": f"two/o{i}", "shape": [2], "type": "UINT8", "order": "NC",
                               "quant": {"scale": 1.0, "zp": 0.0, "min": 0.0, "max": 255.0}} for i in range(2)])
    model = vdevice.create_infer_model(str(path))
    with model.configure() as configured:
        bindings = configured.create_bindings()
        assert bindings.input() is bindings.input("two/in")
        with pytest.raises(ph.HailoRTInvalidOperationException):
            bindings.output()
        with pytest.raises(ph.HailoRTNotFoundException):
            bindings.output("two/o2")


def test_concurrent_callers_on_two_networks_each_get_their_own_networks_result(vdevice, tmp_path, emu):
    emu.set_profile("hailo8")
    models = {
        "affine": vdevice.create_infer_model(write_net(tmp_path, "affine", timing=(0.5, 0.1))),
        "ident": vdevice.create_infer_model(write_net(tmp_path, "ident", compute=IDENTITY, timing=(0.5, 0.1))),
    }
    for model in models.values():
        model.set_batch_size(4)
    configured = {name: model.configure() for name, model in models.items()}
    locks = {name: threading.Lock() for name in models}

    def call(i: int) -> tuple[str, int, np.ndarray]:
        name = ("affine", "ident")[i % 2]
        bindings, out = bind(configured[name], models[name], marker(i))
        with locks[name]:
            configured[name].wait_for_async_ready(2000)
            job = configured[name].run_async([bindings])
        job.wait(5000)
        return name, i, out

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, range(48)))
    for name, i, out in results:
        want = expected(marker(i)) if name == "affine" else marker(i)
        np.testing.assert_array_equal(out, want)
    networks = emu.counters()["networks"]
    assert networks["affine"]["frames"] == networks["ident"]["frames"] == 24
    for c in configured.values():
        c.shutdown()
