"""Cut-point fidelity: our host parts around an emulated HEF reproduce the reference model.

For a CLIP and a SigLIP architecture (and the TinyCLIP and SigLIP2 cuts) a tiny randomly
initialised `transformers` model is built, saved with `save_pretrained`, its host weights exported
with scripts/export_clip_host_weights.py, exactly the HEF's share exported to ONNX behind an emulated
HEF with the real HEF's edge layout and calibrated 8/16-bit QPs, and loaded through the real runtime
on the emulator. The worker's handlers (tokeniser -> host part -> device -> host part, and Immich's
crop -> device) must reproduce `get_text_features` / `get_image_features` after L2. The same check
must catch the classic wrong cuts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import string
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tokenizers import Tokenizer

from ml_target.catalog import BACKENDS, ClipBackend
from ml_target.config import Settings
from ml_target.hailo.runtime import Runtime
from ml_target.tasks.clip import clip_handlers
from ml_target.testing import clip_reference as ref
from ml_target.testing.clip_fidelity import immich_pixels, write_image_hef, write_text_hef
from ml_target.testing.clip_float_network import FloatHefNetwork
from ml_target.testing.clip_tokenizers import CLIP_BOS, CLIP_EOS, clip_like_tokenizer, siglip_like_tokenizer, write_tokenizer
from ml_target.text.encoder import embed_tokens
from ml_target.text.host_weights import load_host_weights

QUANTISED = 0.999
FLOAT = 0.99999
WRONG = 0.995  # a wrong cut must stay clearly below the quantised threshold

TEXTS = (
    "a photo of a dog on the beach",
    "Grandma's  garden: Roses & Tulips!",
    "snow\tcovered   mountains\n",
    "x",
    "the Eiffel Tower in Paris, 2019 - holiday trip " * 12,  # longer than any context: truncated
    "zebra quokka",  # out of the tiny vocabulary: byte / character fallback
)
SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_clip_host_weights.py"


def photo(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random scene (a few random plane waves in colour) plus sensor noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    out = np.zeros((height, width, 3))
    for _ in range(6):
        fx, fy = rng.uniform(-12, 12, 2)
        out += np.cos(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))[..., None] * rng.uniform(-80, 80, 3)
    return np.clip(out + 128 + rng.normal(0, 8, out.shape), 0, 255).astype(np.uint8)


_rng = np.random.default_rng(7)
IMAGES = tuple(photo(_rng, h, w) for h, w in ((301, 517), (640, 427), (97, 300), (480, 640)))


def immich_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Immich's transform from its documented algorithm (immich-protocol.md §6.1)."""
    pil = Image.fromarray(image)
    w, h = pil.size
    new = (size, int(h / w * size)) if w < h else (int(w / h * size), size)
    pil = pil.resize(new, Image.Resampling.BICUBIC)
    left, top = int(new[0] / 2 - size / 2), int(new[1] / 2 - size / 2)
    return np.asarray(pil.crop((left, top, left + size, top + size)))


def squash(image: np.ndarray, size: int) -> np.ndarray:
    """The wrong transform (pitfall 6): resize to size x size regardless of aspect."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC))


def reference_ids(tokenizer_file: Path, text: str, backend: ClipBackend, pad_token: str) -> np.ndarray:
    """Immich's text preprocessing written out from its documentation (§6.2), independent of ours."""
    text = " ".join(text.split())
    if backend.canonicalize:
        text = "".join(c for c in text if c not in string.punctuation).lower()
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.enable_truncation(max_length=backend.context_length)
    ids = tokenizer.encode(text).ids
    return np.array(ids + [tokenizer.token_to_id(pad_token)] * (backend.context_length - len(ids)))


def export_host_weights(checkpoint: Path, backend: ClipBackend, out: Path) -> None:
    spec = importlib.util.spec_from_file_location("export_clip_host_weights", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--checkpoint", str(checkpoint), "--backend", backend.id, "--out", str(out)]) == 0


@dataclasses.dataclass
class Rig:
    """A tiny reference model behind emulated HEFs, and the worker's handlers on top of them."""

    backend: ClipBackend
    model: object
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
        return ref.text_features(self.model, self.ref_ids)

    def reference_images(self, images=IMAGES) -> np.ndarray:
        crops = np.stack([immich_crop(i, self.backend.image_size) for i in images])
        return ref.image_features(self.model, immich_pixels(crops, self.backend))


def build_rig(backend_id: str, root: Path) -> Rig:
    backend = BACKENDS[backend_id]
    checkpoint, models_dir = root / "checkpoint", root / "models"
    if backend.tokenizer == "clip-bpe":
        tokenizer, pad_token = clip_like_tokenizer(), CLIP_EOS
        eos = tokenizer.token_to_id(CLIP_EOS)
        model = ref.tiny_clip(
            vocab_size=tokenizer.get_vocab_size(), bos_id=tokenizer.token_to_id(CLIP_BOS), eos_id=eos, pad_id=eos,
            image_size=backend.image_size,
        )
    else:
        tokenizer, pad_token = siglip_like_tokenizer(eos=backend.eos_token), backend.pad_token
        patch = 32 if "b_32" in backend.id else 16
        model = ref.tiny_siglip(
            vocab_size=tokenizer.get_vocab_size(), pad_id=tokenizer.token_to_id(pad_token), eos_id=1,
            image_size=backend.image_size, patch_size=patch,
        )
    model.save_pretrained(checkpoint)
    write_tokenizer(checkpoint, tokenizer, pad_token=pad_token, context_length=backend.context_length)
    export_host_weights(checkpoint, backend, backend.host_dir(models_dir))
    backend = dataclasses.replace(backend, dim=ref.TINY["hidden_size"])  # the toy projection size

    ids = np.stack([reference_ids(checkpoint / "tokenizer.json", t, backend, pad_token) for t in TEXTS])
    weights = load_host_weights(backend.host_dir(models_dir), backend=backend.id)
    calibration = np.stack([embed_tokens(i, weights, add_positions=backend.text_cut.positions == "host") for i in ids])
    write_text_hef(model, backend, models_dir, calibration)
    write_image_hef(model, backend, models_dir, np.stack([immich_crop(i, backend.image_size) for i in IMAGES]))
    runtime = Runtime(Settings(hailo_device="emulator", hailo_emulator_profile="none", models_dir=models_dir))
    return Rig(backend, model, models_dir, runtime, ids)


@pytest.fixture(scope="module", params=["clip_vit_b_32", "tinyclip_vit_39m", "siglip_b_16", "siglip2_b_32_256"])
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
