"""The start-up probe of a text HEF's cut: positions and output stage read from the network itself.

Unit level: the LayerNorm and spread statistics on arrays with known answers. Network level: the
colour stand-in's text encoder (`ml_target.testing.clip_stand_in`) in every variant a real HEF
might turn out to be (position table inside or not, pooled or per-token output), for every backend.
Service level: emulated HEFs of those variants behind the real runtime, where the worker must
follow what the HEF does and say where that contradicts the catalog. The real transformers
architecture is covered in tests/test_clip_fidelity.py.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from ml_target import catalog
from ml_target.catalog import BACKENDS
from ml_target.config import Settings
from ml_target.hailo.runtime import Runtime
from ml_target.tasks.clip import create_clip_handlers
from ml_target.testing import clip_stand_in as stand_in
from ml_target.text import cut_probe
from ml_target.text.cut_probe import ProbeInputs, layer_norm_score, probe_text_cut
from ml_target.text.encoder import layer_norm
from ml_target.text.tokenizer import ImmichTokenizer

RNG = np.random.default_rng(3)
EXPECTED_STAGE = {"clip_vit_b_32": "normalised", "clip_vit_b_16": "normalised", "tinyclip_vit_39m": "residual",
                  "siglip_b_16": "projected", "siglip2_b_32_256": "projected"}


def test_an_exact_layer_norm_output_scores_zero_and_other_vectors_do_not():
    width = 512
    gamma, beta = 1 + RNG.normal(0, 0.3, width), RNG.normal(0, 0.3, width)
    x = RNG.normal(0, 3, (20, width)) + 5
    normalised = layer_norm(x, gamma, beta, 1e-5)
    assert layer_norm_score(normalised, gamma, beta) < 1e-4
    assert layer_norm_score(x, gamma, beta) > cut_probe.NOT_LN_ABOVE
    # With a near-identity LayerNorm, a rotated LayerNorm output almost passes as one: this is why the
    # two LayerNorm hypotheses are told apart by the ratio of their scores, not by a fixed cut-off.
    gamma, beta = 1 + RNG.normal(0, 0.02, width), RNG.normal(0, 0.02, width)
    rotation, _ = np.linalg.qr(RNG.normal(size=(width, width)))
    rotated = layer_norm_score(layer_norm(x, gamma, beta, 1e-5) @ rotation, gamma, beta)
    assert cut_probe.LN_BELOW < rotated < cut_probe.NOT_LN_ABOVE


def test_the_inverse_projection_recovers_a_layer_norm_output():
    width = 64
    gamma, beta = 1 + RNG.normal(0, 0.2, width), RNG.normal(0, 0.2, width)
    normalised = layer_norm(RNG.normal(size=(6, width)), gamma, beta, 1e-5)
    projection, bias = RNG.normal(size=(width, width)), RNG.normal(size=width)
    before = cut_probe.unproject(normalised @ projection + bias, projection, bias)
    np.testing.assert_allclose(before, normalised, atol=1e-8)
    assert cut_probe.unproject(normalised, RNG.normal(size=(width, 32)), None) is None  # not square


@pytest.mark.parametrize(("spread", "verdict"), [(0.0, "host"), (0.009, "host"), (0.03, None), (0.051, "hef"), (1.2, "hef")])
def test_spread_verdicts_keep_a_margin(spread, verdict):
    assert cut_probe.classify_spread(spread) == verdict


def probe_stand_in(backend_id: str, *, positions: bool, per_token: bool | None, declared=None, tmp_path):
    """Run the probe on the stand-in's text function directly (float, no quantisation)."""
    backend = BACKENDS[backend_id]
    s = stand_in.stand_in(backend_id)
    stand_in.write_host_assets(tmp_path, backend_id)
    tokenizer = ImmichTokenizer.from_files(backend.host_dir(tmp_path), context_length=backend.context_length,
                                           eos_token=backend.eos_token)
    weights = stand_in.host_weights(backend_id, stand_in.tokenizer_for(backend)[0])
    shape = stand_in.text_output_shape(backend_id, per_token=per_token)

    async def run(frame):
        rows = frame.reshape(s.context, s.width).astype(np.float64)
        return stand_in.text_output(rows, s, positions=positions, per_token=per_token).reshape(shape)

    queries = tuple(tokenizer.encode(q).ids for q in cut_probe.PROBE_QUERIES)
    inputs = ProbeInputs(backend.context_length, backend.text_network.inputs[0].shape, shape, tokenizer.pad_id, queries)
    return asyncio.run(probe_text_cut(run, declared or backend.text_cut, weights, inputs, tokenizer_family=backend.tokenizer))


@pytest.mark.parametrize("backend_id", list(BACKENDS))
@pytest.mark.parametrize("positions", [True, False])
@pytest.mark.parametrize("per_token", [None, True])
def test_the_probe_finds_positions_and_stage_of_every_variant(backend_id, positions, per_token, tmp_path):
    evidence = probe_stand_in(backend_id, positions=positions, per_token=per_token, tmp_path=tmp_path)
    backend = BACKENDS[backend_id]
    assert evidence.positions == ("hef" if positions else "host")
    assert evidence.stage == EXPECTED_STAGE[backend_id]
    pooled_hef = backend.text_cut.pooling == "hef" and not per_token
    assert evidence.per_token is not pooled_hef
    expected_pooling = "hef" if pooled_hef else ("first_eos" if backend.tokenizer == "clip-bpe" else "last")
    assert evidence.resolved.pooling == expected_pooling
    assert evidence.resolved.positions == evidence.positions
    assert ("positions" in " ".join(evidence.contradictions)) is (not positions)
    assert ("pooling" in " ".join(evidence.contradictions)) is (backend.text_cut.pooling == "hef" and bool(per_token))


def test_a_declaration_of_host_positions_would_add_them_twice(tmp_path):
    declared = dataclasses.replace(BACKENDS["clip_vit_b_32"].text_cut, positions="host")
    evidence = probe_stand_in("clip_vit_b_32", positions=True, per_token=None, declared=declared, tmp_path=tmp_path)
    assert evidence.resolved.positions == "hef"
    assert evidence.contradictions == (
        "positions: the catalog adds them on the host, the HEF shows they belong inside the HEF "
        "(they would have been added twice)",
    )


def test_a_wrong_stage_declaration_is_corrected(tmp_path):
    declared = dataclasses.replace(BACKENDS["tinyclip_vit_39m"].text_cut, final_layer_norm=False)
    evidence = probe_stand_in("tinyclip_vit_39m", positions=True, per_token=None, declared=declared, tmp_path=tmp_path)
    assert (evidence.resolved.final_layer_norm, evidence.resolved.projection) == (True, True)
    assert evidence.contradictions == (
        "output stage: the catalog declares the HEF ends at the normalised stage, its output is the residual stage",
    )


def test_a_network_that_reveals_nothing_leaves_the_declaration_standing():
    """Rows 3 % apart (between "identical" and "different") and no LayerNorm weights to test with."""
    backend = BACKENDS["clip_vit_b_32"]
    weights = dataclasses.replace(stand_in.host_weights(backend.id, stand_in.tokenizer_for(backend)[0]),
                                  final_ln_weight=None, final_ln_bias=None)
    ramp = 1.0 + 0.03 * np.arange(77)[:, None] / 76

    async def run(frame):
        return np.broadcast_to(ramp, (77, 512)).reshape(1, 77, 512)

    inputs = ProbeInputs(77, (1, 77, 512), (1, 77, 512), 1, (np.ones(77, dtype=np.int64),))
    evidence = asyncio.run(probe_text_cut(run, backend.text_cut, weights, inputs, tokenizer_family="clip-bpe"))
    assert evidence.positions is None and evidence.stage is None
    assert evidence.resolved == backend.text_cut and evidence.contradictions == ()
    assert len(evidence.notes) == 2


# ---- through the emulator ----

def colour_ranks(visual, textual, colours=("red", "green", "blue", "yellow", "purple")) -> np.ndarray:
    import cv2

    def disc(rgb):
        image = np.full((300, 400, 3), 128, np.uint8)
        cv2.circle(image, (200, 150), 80, tuple(int(c) for c in rgb), -1)
        return image

    async def run():
        images = [(await visual.run(disc(stand_in.PALETTE[c]), None, None)).vector for c in colours]
        texts = [(await textual.run(f"a {c} circle", None, None)).vector for c in colours]
        return np.stack(images) @ np.stack(texts).T

    return asyncio.run(run()).argmax(axis=1)


@pytest.fixture
def emulated(tmp_path):
    def build(backend_id: str, setting: str, **variant):
        stand_in.write_stand_in_models(tmp_path, backend_id, **variant)
        config = Settings(hailo_device="emulator", hailo_emulator_profile="none", models_dir=tmp_path,
                          clip_backend=setting, tasks=("clip",))
        runtime = Runtime(config)
        runtimes.append(runtime)
        return create_clip_handlers(config, runtime)

    runtimes: list[Runtime] = []
    yield build
    for runtime in runtimes:
        runtime.close()


def test_the_right_configuration_is_confirmed_by_the_probe(emulated):
    visual, textual = emulated("clip_vit_b_32", "vit-b-32")
    report = textual.describe()["text_cut_probe"]
    assert report["contradictions"] == [] and report["positions"] == "hef" and report["output_stage"] == "normalised"
    assert textual.describe()["text_cut"] == dataclasses.asdict(BACKENDS["clip_vit_b_32"].text_cut)
    assert list(colour_ranks(visual, textual)) == [0, 1, 2, 3, 4]


def test_a_hef_without_positions_gets_them_from_the_host(emulated):
    visual, textual = emulated("clip_vit_b_32", "vit-b-32", positions=False)
    assert textual.encoder.cut.positions == "host"
    assert "they would have been missing" in textual.describe()["text_cut_probe"]["contradictions"][0]
    assert list(colour_ranks(visual, textual)) == [0, 1, 2, 3, 4]


def test_a_per_token_siglip2_output_is_pooled_on_the_host(emulated):
    visual, textual = emulated("siglip2_b_32_256", "siglip2", per_token=True)
    assert textual.encoder.cut.pooling == "last"
    assert list(colour_ranks(visual, textual)) == [0, 1, 2, 3, 4]


def test_positions_declared_on_the_host_are_not_added_twice(emulated, monkeypatch):
    backend = BACKENDS["clip_vit_b_16"]
    wrong = dataclasses.replace(backend, text_cut=dataclasses.replace(backend.text_cut, positions="host"))
    monkeypatch.setitem(catalog.BACKENDS, backend.id, wrong)
    visual, textual = emulated("clip_vit_b_16", "vit-b-16")
    assert textual.encoder.cut.positions == "hef"
    assert "added twice" in textual.describe()["text_cut_probe"]["contradictions"][0]
    assert list(colour_ranks(visual, textual)) == [0, 1, 2, 3, 4]


def test_a_swapped_colour_order_breaks_the_colour_ranking(emulated):
    visual, textual = emulated("clip_vit_b_32", "vit-b-32", channels="bgr")
    ranks = colour_ranks(visual, textual)
    assert ranks[0] == 2 and ranks[2] == 0  # red seen as blue and blue as red
