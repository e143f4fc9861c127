"""The ("clip", "visual") and ("clip", "textual") handlers on the emulated device, every backend.

The models directory holds the emulator's Model Zoo HEFs with the colour-aware CLIP stand-ins of
`clip_stand_in` (HEFs and host files), loaded through the real runtime by `create_clip_handlers`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ml_target.catalog import BACKENDS, backend_for_setting
from ml_target.config import CLIP_BACKENDS, Settings
from ml_target.errors import BadRequest, ConfigurationError, DeviceError, ModelNotServed
from ml_target.hailo.emulator.models_dir import write_emulated_models
from ml_target.hailo.runtime import Runtime
from ml_target.hailo.types import EdgeInfo, QuantInfo
from ml_target.networks import TEXT_PRIORITY
from ml_target.tasks.clip import ClipVisualHandler, create_clip_handlers
from ml_target.testing.clip_stand_in import write_emulated_clip_models, write_host_assets

IMAGE = np.random.default_rng(1).integers(0, 256, (300, 451, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("models")
    write_emulated_models(directory, onnx_ocr=False)
    write_emulated_clip_models(directory)
    return directory


def settings(models_dir: Path, **overrides) -> Settings:
    return Settings(hailo_device="emulator", hailo_emulator_profile="none", models_dir=models_dir, **overrides)


@pytest.fixture(scope="module", params=list(CLIP_BACKENDS))
def handlers(request, models_dir):
    config = settings(models_dir, clip_backend=request.param)
    runtime = Runtime(config)
    yield backend_for_setting(request.param), *create_clip_handlers(config, runtime)
    runtime.close()


async def embed(handler, payload, options=None):
    return (await handler.run(payload, handler.parse_options(options or {}), None)).vector


async def test_vectors_have_the_backends_dimension_and_unit_norm(handlers):
    backend, visual, textual = handlers
    for vector in (await embed(visual, IMAGE), await embed(textual, "a photo of a dog")):
        assert vector.shape == (backend.dim,) and vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5
    wire = json.loads((await textual.run("a dog", None, None)).to_wire())
    assert len(wire) == backend.dim


async def test_text_vectors_follow_the_text(handlers):
    backend, _, textual = handlers
    dog, cat = await embed(textual, "a photo of a dog"), await embed(textual, "a photo of a cat")
    assert float(dog @ cat) < 0.99
    np.testing.assert_array_equal(await embed(textual, "  a photo\tof a   dog "), dog)  # whitespace collapsed
    if backend.canonicalize:
        np.testing.assert_array_equal(await embed(textual, "A Photo of a Dog!"), dog)
    else:
        assert float(await embed(textual, "A Photo of a Dog!") @ dog) < 0.999999


async def test_language_is_accepted_and_ignored(handlers):
    _, _, textual = handlers
    np.testing.assert_array_equal(await embed(textual, "a dog", {"language": "de"}), await embed(textual, "a dog"))
    with pytest.raises(BadRequest, match="language must be a string"):
        textual.parse_options({"language": 3})
    with pytest.raises(BadRequest, match="options must be an object"):
        textual.parse_options(["de"])


async def test_image_vectors_follow_the_centre_crop(handlers):
    _, visual, _ = handlers
    first = await embed(visual, IMAGE)
    np.testing.assert_array_equal(await embed(visual, IMAGE.copy()), first)
    border = IMAGE.copy()
    border[:, :8] = 0  # the 451-wide image loses its sides to the crop: the border is never seen
    np.testing.assert_array_equal(await embed(visual, border), first)
    centre = IMAGE.copy()
    centre[140:160, 215:235] = 255
    assert float(await embed(visual, centre) @ first) < 0.999999


def test_model_names(handlers):
    backend, visual, textual = handlers
    for handler in (visual, textual):
        for name in backend.immich_names:
            handler.check_model(name)
        other = "ViT-B-16-SigLIP__webli" if backend.dim == 512 else "ViT-B-32__openai"
        with pytest.raises(ModelNotServed, match=f"CLIP_BACKEND={backend.setting}"):
            handler.check_model(other)
    assert visual.describe() == {
        "backend": backend.id,
        "network": backend.image_hef,
        "dim": backend.dim,
        "model_names": list(backend.immich_names),
        "serve_any_model_name": False,
    }


def test_the_opt_in_serves_same_dimension_names_only(models_dir):
    config = settings(models_dir, clip_backend="tinyclip", clip_serve_any_model_name=True)
    runtime = Runtime(config)
    try:
        visual, textual = create_clip_handlers(config, runtime)
        visual.check_model("ViT-B-32__openai")
        textual.check_model("ViT-B-32__openai")
        with pytest.raises(ModelNotServed, match="stores 768-d vectors"):
            textual.check_model("ViT-B-16-SigLIP__webli")
        assert textual.describe()["serve_any_model_name"] is True
    finally:
        runtime.close()


class RecordingRuntime:
    """Records `load` calls, then delegates to a real runtime (or fails when there is none)."""

    def __init__(self, inner: Runtime | None = None) -> None:
        self.inner = inner
        self.calls: list[tuple[str, int, int]] = []

    def load(self, hef_path: Path, *, batch_size: int, priority: int):
        self.calls.append((Path(hef_path).name, batch_size, priority))
        if self.inner is None:
            raise AssertionError("no HEF should have been loaded")
        return self.inner.load(hef_path, batch_size=batch_size, priority=priority)


def test_text_encoders_load_with_the_higher_priority(models_dir):
    config = settings(models_dir, clip_backend="siglip")
    runtime = RecordingRuntime(Runtime(config))
    try:
        create_clip_handlers(config, runtime)
    finally:
        runtime.inner.close()
    backend = BACKENDS["siglip_b_16"]
    assert runtime.calls == [(f"{backend.image_hef}.hef", 8, 16), (f"{backend.text_hef}.hef", 8, TEXT_PRIORITY)]
    assert TEXT_PRIORITY > 16


def test_missing_hef_names_the_file_and_how_to_fetch_it(tmp_path):
    write_host_assets(tmp_path, "clip_vit_b_32")
    with pytest.raises(ConfigurationError, match=r"clip_vit_b_32_image_encoder\.hef is missing: download it with `ml-target fetch-models`"):
        create_clip_handlers(settings(tmp_path), RecordingRuntime())


def test_missing_host_assets_name_the_export_script(tmp_path):
    with pytest.raises(ConfigurationError, match=r"clip_vit_b_16/host\.json is missing.*export_clip_host_weights\.py"):
        create_clip_handlers(settings(tmp_path, clip_backend="vit-b-16"), RecordingRuntime())


def test_stand_in_assets_are_marked_as_such(models_dir):
    for backend in BACKENDS.values():
        meta = json.loads((backend.host_dir(models_dir) / "host.json").read_text())
        assert meta["stand_in"] is True and meta["backend"] == backend.id


class ZeroNetwork:
    """A device that answers with all zeros, as a wedged accelerator might."""

    name = "zeros"
    batch_size = 1
    inputs = (EdgeInfo("zeros/input_layer1", (224, 224, 3), np.dtype(np.uint8), QuantInfo(1.0, 0.0, 0.0, 255.0)),)
    outputs = (EdgeInfo("zeros/output_layer1", (1, 1, 512), np.dtype(np.float32), QuantInfo(1 / 64, 128.0, -2.0, 2.0)),)

    async def infer(self, frame, *, timeout=None):
        return {self.outputs[0].name: np.zeros(self.outputs[0].shape, np.float32)}


async def test_a_zero_vector_from_the_device_is_a_device_error_not_a_nan_embedding():
    visual = ClipVisualHandler(BACKENDS["clip_vit_b_32"], ZeroNetwork())
    with pytest.raises(DeviceError, match="image encoder returned a zero or non-finite vector"):
        await visual.run(IMAGE, None, None)
