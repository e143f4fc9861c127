"""Cut-point fidelity: our host parts around an emulated HEF reproduce the reference model.

For a CLIP and a SigLIP architecture (and the TinyCLIP and SigLIP2 cuts) a tiny randomly
initialised `transformers` model was built, saved with `save_pretrained`, its host weights exported
with scripts/export_clip_host_weights.py and exactly the HEF's share exported to ONNX by
scripts/make_test_fixtures.py; the model's own `get_text_features` / `get_image_features` for the
fixed inputs were stored next to them (tests/fixtures/clip/, no torch needed here). The test puts
the ONNX behind an emulated HEF with the real HEF's edge layout and 8/16-bit QPs calibrated on the
test inputs, loaded through the real runtime on the emulator. The worker's handlers (tokeniser ->
host part -> device -> host part, and Immich's crop -> device) must reproduce the stored features
after L2. The same check must catch the classic wrong cuts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml_target.catalog import BACKENDS, ClipBackend
from ml_target.config import Settings
from ml_target.hailo.runtime import Runtime
from ml_target.tasks.clip import clip_handlers
from ml_target.testing.clip_fidelity import write_image_hef, write_text_hef
from ml_target.testing.clip_fixtures import (
    BACKEND_IDS,
    FIXTURES_DIR,
    IMAGES,
    TEXTS,
    TINY_DIM,
    Reference,
    crop_digest,
    immich_crop,
    load_reference,
    pad_token,
    reference_ids,
)
from ml_target.testing.clip_float_network import FloatHefNetwork
from ml_target.text.encoder import embed_tokens
from ml_target.text.host_weights import load_host_weights

QUANTISED = 0.999
FLOAT = 0.99999
WRONG = 0.995  # a wrong cut must stay clearly below the quantised threshold


def squash(image: np.ndarray, size: int) -> np.ndarray:
    """The wrong transform (pitfall 6): resize to size x size regardless of aspect."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


@dataclasses.dataclass
class Rig:
    """A tiny reference model behind emulated HEFs, and the worker's handlers on top of them."""

    backend: ClipBackend
    reference: Reference
    models_dir: Path
    runtime: Runtime
    ref_ids: np.ndarray

    def handlers(self, backend: ClipBackend | None = None, *, float_networks: bool = False):
        backend = backend or self.backend
        if float_networks:
            image = FloatHefNetwork(self.models_dir / f"{backend.image_hef}.hef")
            text = FloatHefNetwork(self.models_dir / f"{backend.text_hef}.hef")
        else:
            image = self.runtime.load(self.models_dir / f"{backend.image_hef}.hef", batch_size=8, priority=16)
            text = self.runtime.load(self.models_dir / f"{backend.text_hef}.hef", batch_size=8, priority=24)
        return clip_handlers(backend, image, text, backend.host_dir(self.models_dir))

    def reference_text(self) -> np.ndarray:
        return self.reference.text_features

    def reference_images(self) -> np.ndarray:
        return self.reference.image_features


def build_rig(backend_id: str, root: Path) -> Rig:
    fixture = FIXTURES_DIR / backend_id
    backend = dataclasses.replace(BACKENDS[backend_id], dim=TINY_DIM)  # the toy projection size
    models_dir = root / "models"
    shutil.copytree(fixture / "host", backend.host_dir(models_dir))
    reference = load_reference(fixture)
    tokenizer_dir = backend.host_dir(models_dir)
    pad = pad_token(tokenizer_dir)
    ids = np.stack([reference_ids(tokenizer_dir / "tokenizer.json", t, backend, pad) for t in TEXTS])
    np.testing.assert_array_equal(ids, reference.ids, err_msg="the tokenizer library changed: regenerate the fixtures")
    crops = np.stack([immich_crop(i, backend.image_size) for i in IMAGES])
    assert tuple(crop_digest(c) for c in crops) == reference.crop_sha256, "Pillow's resize changed: regenerate the fixtures"

    weights = load_host_weights(backend.host_dir(models_dir), backend=backend.id)
    calibration = np.stack([embed_tokens(i, weights, add_positions=backend.text_cut.positions == "host") for i in ids])
    write_text_hef(fixture / "text_hef.onnx", backend, models_dir, calibration)
    write_image_hef(fixture / "image_hef.onnx", backend, models_dir, crops)
    runtime = Runtime(Settings(hailo_device="emulator", hailo_emulator_profile="none", models_dir=models_dir))
    return Rig(backend, reference, models_dir, runtime, ids)


@pytest.fixture(scope="module", params=BACKEND_IDS)
def rig(request, tmp_path_factory):
    rig = build_rig(request.param, tmp_path_factory.mktemp(request.param))
    yield rig
    rig.runtime.close()


def text_vectors(textual, texts=TEXTS) -> np.ndarray:
    async def run():
        return [(await textual.run(t, textual.parse_options({}), None)).vector for t in texts]

    return np.stack(asyncio.run(run()))


def image_vectors(visual, images=IMAGES) -> np.ndarray:
    async def run():
        return [(await visual.run(i, visual.parse_options({}), None)).vector for i in images]

    return np.stack(asyncio.run(run()))


def cosines(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Row-wise cosine; both sides are checked to be unit vectors first (Immich stores unit vectors)."""
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    reference = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    return np.sum(ours * reference, axis=1)


def test_our_token_ids_are_immichs(rig):
    _, textual = rig.handlers()
    ours = np.stack([textual.encoder.prepare(t)[1].ids for t in TEXTS])
    np.testing.assert_array_equal(ours, rig.ref_ids)


def test_text_matches_the_reference_through_the_emulator(rig):
    _, textual = rig.handlers()
    assert cosines(text_vectors(textual), rig.reference_text()).min() >= QUANTISED


def test_text_matches_the_reference_without_quantisation(rig):
    _, textual = rig.handlers(float_networks=True)
    assert cosines(text_vectors(textual), rig.reference_text()).min() >= FLOAT


def test_image_matches_the_reference_through_the_emulator(rig):
    visual, _ = rig.handlers()
    assert cosines(image_vectors(visual), rig.reference_images()).min() >= QUANTISED


def test_image_matches_the_reference_without_quantisation(rig):
    visual, _ = rig.handlers(float_networks=True)
    assert cosines(image_vectors(visual), rig.reference_images()).min() >= FLOAT


def test_positions_added_twice_are_caught(rig):
    wrong = dataclasses.replace(rig.backend, text_cut=dataclasses.replace(rig.backend.text_cut, positions="host"))
    _, textual = rig.handlers(wrong)
    assert cosines(text_vectors(textual), rig.reference_text()).max() < WRONG


def test_wrong_final_layer_norm_is_caught(rig):
    cut = rig.backend.text_cut
    wrong = dataclasses.replace(rig.backend, text_cut=dataclasses.replace(cut, final_layer_norm=not cut.final_layer_norm))
    _, textual = rig.handlers(wrong)
    assert cosines(text_vectors(textual), rig.reference_text()).max() < WRONG


def test_missing_projection_is_caught(rig):
    if not rig.backend.text_cut.projection:
        pytest.skip("the SigLIP text HEF projects in-network; there is no host projection to miss")
    wrong = dataclasses.replace(rig.backend, text_cut=dataclasses.replace(rig.backend.text_cut, projection=False))
    _, textual = rig.handlers(wrong)
    assert cosines(text_vectors(textual), rig.reference_text()).max() < WRONG


def test_squash_instead_of_crop_is_caught(rig):
    visual, _ = rig.handlers()
    size = rig.backend.image_size

    async def squashed():
        outputs = [await visual.network.infer(squash(i, size)) for i in IMAGES]
        return np.stack([o[visual.output.name].ravel() / np.linalg.norm(o[visual.output.name]) for o in outputs])

    assert cosines(asyncio.run(squashed()), rig.reference_images()).max() < WRONG


def test_the_start_up_probe_reads_the_cut_of_the_real_architecture(rig):
    """The cut probe (`ml_target.text.cut_probe`) on the real transformers architecture, quantised
    like the HEF: it must find every declared property definitively, and agree with it."""
    _, textual = rig.handlers()
    tokenizer, weights = textual.encoder.tokenizer, textual.encoder.weights
    evidence = asyncio.run(_probe(textual.network, rig.backend, weights, tokenizer))
    assert evidence.positions == rig.backend.text_cut.positions
    assert evidence.stage is not None and evidence.contradictions == ()
    assert evidence.resolved == rig.backend.text_cut


def test_the_probe_corrects_a_wrong_declaration_of_the_real_architecture(rig):
    """Declared the other way round (positions and stage), the probe follows the network, and the
    resolved cut reproduces the reference model."""
    cut = rig.backend.text_cut
    wrong = dataclasses.replace(
        cut, positions="host", final_layer_norm=not cut.final_layer_norm,
    )
    wrong_backend = dataclasses.replace(rig.backend, text_cut=wrong)
    image = rig.runtime.load(rig.models_dir / f"{rig.backend.image_hef}.hef", batch_size=8, priority=16)
    text = rig.runtime.load(rig.models_dir / f"{rig.backend.text_hef}.hef", batch_size=8, priority=24)
    _, textual = clip_handlers(wrong_backend, image, text, rig.backend.host_dir(rig.models_dir), probe_cut=True)
    assert textual.encoder.cut == cut
    assert any("added twice" in c for c in textual.cut_evidence.contradictions)
    assert cosines(text_vectors(textual), rig.reference_text()).min() >= QUANTISED


async def _probe(network, backend, weights, tokenizer):
    from ml_target.tasks.clip import _probe_cut

    return await _probe_cut(backend, network, weights, tokenizer)
