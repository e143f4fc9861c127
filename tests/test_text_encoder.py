"""The generic host text pipeline interprets a declared cut: lookup, layout, pooling, LayerNorm, projection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml_target.catalog import TextCut
from ml_target.errors import ConfigurationError
from ml_target.testing.clip_fixtures import FIXTURES_DIR, HOST_OPS
from ml_target.testing.clip_tokenizers import CLIP_EOS, clip_like_tokenizer, siglip_like_tokenizer, write_tokenizer
from ml_target.text.encoder import HostTextEncoder, embed_tokens, layer_norm, pool, project
from ml_target.text.host_weights import TextHostWeights, load_host_weights, save_host_weights
from ml_target.text.tokenizer import ImmichTokenizer, TokenIds

RNG = np.random.default_rng(3)
WIDTH = 6


def weights(vocab: int, context: int, dim: int = 4) -> TextHostWeights:
    return TextHostWeights(
        token_embedding=RNG.normal(size=(vocab, WIDTH)).astype(np.float32),
        position_embedding=RNG.normal(size=(context, WIDTH)).astype(np.float32),
        final_ln_weight=RNG.normal(1, 0.3, WIDTH).astype(np.float32),
        final_ln_bias=RNG.normal(0, 0.3, WIDTH).astype(np.float32),
        text_projection=RNG.normal(size=(WIDTH, dim)).astype(np.float32),
        text_projection_bias=RNG.normal(size=dim).astype(np.float32),
    )


def test_embed_tokens_looks_up_rows_and_adds_positions_only_when_asked():
    w = weights(10, 5)
    ids = np.array([3, 1, 4, 1, 5])
    np.testing.assert_array_equal(embed_tokens(ids, w, add_positions=False), w.token_embedding[ids])
    np.testing.assert_allclose(embed_tokens(ids, w, add_positions=True), w.token_embedding[ids] + w.position_embedding, rtol=1e-6)


def test_pooling_picks_the_first_eos_row_the_last_row_or_everything():
    hidden = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    tokens = TokenIds(ids=np.array([0, 7, 9, 9, 9]), eos_id=9)  # EOS also pads, as in Immich's CLIP
    np.testing.assert_array_equal(pool(hidden, tokens, "first_eos"), hidden[2])
    np.testing.assert_array_equal(pool(hidden, tokens, "last"), hidden[4])
    np.testing.assert_array_equal(pool(hidden[:1], tokens, "hef"), hidden[0])


def test_layer_norm_and_projection_match_torch():
    """Against torch.nn.functional.layer_norm / linear on the same inputs (stored by scripts/make_test_fixtures.py)."""
    ops = {k: np.asarray(v, np.float32) if isinstance(v, list) else v
           for k, v in json.loads((FIXTURES_DIR / HOST_OPS).read_text()).items()}
    x = ops["x"]
    np.testing.assert_allclose(layer_norm(x, ops["weight"], ops["bias"], ops["eps"]), ops["layer_norm"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(project(x, ops["projection"], ops["projection_bias"]), ops["linear"], rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def siglip_tokenizer(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tok")
    write_tokenizer(directory, siglip_like_tokenizer(), pad_token="</s>", context_length=64)
    return ImmichTokenizer.from_files(directory, context_length=64, eos_token="</s>")


def test_siglip_layout_is_row_major_8x8_tokens_and_pooled_output_passes_through(siglip_tokenizer):
    w = weights(siglip_tokenizer.vocab_size, 64)
    cut = TextCut(positions="hef", pooling="hef", final_layer_norm=False, projection=False)
    encoder = HostTextEncoder(cut, w, siglip_tokenizer, canonicalize=True, input_shape=(8, 8, WIDTH), output_shape=(1, 1, WIDTH), dim=WIDTH)
    frame, tokens = encoder.prepare("A Dog, on the BEACH!")
    assert frame.shape == (8, 8, WIDTH) and frame.dtype == np.float32
    assert tokens.ids.tolist() == siglip_tokenizer.encode("a dog on the beach").ids.tolist()  # canonicalised
    np.testing.assert_array_equal(frame.reshape(64, WIDTH), w.token_embedding[tokens.ids])
    np.testing.assert_array_equal(frame[1, 2], w.token_embedding[tokens.ids[8 + 2]])
    output = RNG.normal(size=(1, 1, WIDTH)).astype(np.float32)
    np.testing.assert_array_equal(encoder.finish(output, tokens), output.ravel())


def test_clip_cut_pools_the_eos_row_then_normalises_and_projects(tmp_path):
    write_tokenizer(tmp_path, clip_like_tokenizer(), pad_token=CLIP_EOS, context_length=77)
    tokenizer = ImmichTokenizer.from_files(tmp_path, context_length=77, eos_token=CLIP_EOS)
    w = weights(tokenizer.vocab_size, 77)
    cut = TextCut(positions="host", pooling="first_eos", final_layer_norm=True, projection=True)
    encoder = HostTextEncoder(cut, w, tokenizer, canonicalize=False, input_shape=(1, 77, WIDTH), output_shape=(1, 77, WIDTH), dim=4)
    frame, tokens = encoder.prepare("a dog")
    eos_at = int(np.flatnonzero(tokens.ids == tokenizer.eos_id)[0])
    np.testing.assert_allclose(frame[0], w.token_embedding[tokens.ids] + w.position_embedding, rtol=1e-6)
    hidden = RNG.normal(size=(1, 77, WIDTH)).astype(np.float32)
    expected = project(layer_norm(hidden[0, eos_at], w.final_ln_weight, w.final_ln_bias, 1e-5), w.text_projection, w.text_projection_bias)
    np.testing.assert_allclose(encoder.finish(hidden, tokens), expected, rtol=1e-6)
    assert 0 < eos_at < 76


@pytest.mark.parametrize(
    ("cut", "input_shape", "output_shape", "dim", "message"),
    [
        (TextCut("hef", "hef", False, False), (8, 8, WIDTH + 1), (1, 1, WIDTH), WIDTH, "does not hold 64 tokens"),
        (TextCut("hef", "hef", False, False), (8, 8, WIDTH), (1, 1, 5), WIDTH, "not the backend's dimension"),
        (TextCut("hef", "first_eos", False, True), (8, 8, WIDTH), (1, 63, WIDTH), 4, "not per token"),
        (TextCut("hef", "first_eos", False, True), (8, 8, WIDTH), (1, 64, WIDTH), 5, r"text_projection is not \(6, 5\)"),
    ],
)
def test_shapes_that_do_not_fit_the_cut_fail_at_start_up(siglip_tokenizer, cut, input_shape, output_shape, dim, message):
    w = weights(siglip_tokenizer.vocab_size, 64)
    with pytest.raises(ConfigurationError, match=message):
        HostTextEncoder(cut, w, siglip_tokenizer, canonicalize=True, input_shape=input_shape, output_shape=output_shape, dim=dim)


def test_missing_weights_for_the_cut_fail_at_start_up(siglip_tokenizer):
    bare = TextHostWeights(token_embedding=weights(siglip_tokenizer.vocab_size, 64).token_embedding)
    with pytest.raises(ConfigurationError, match="final LayerNorm"):
        HostTextEncoder(TextCut("hef", "hef", True, False), bare, siglip_tokenizer, canonicalize=True,
                        input_shape=(8, 8, WIDTH), output_shape=(1, 1, WIDTH), dim=WIDTH)
    with pytest.raises(ConfigurationError, match="positions on the host"):
        HostTextEncoder(TextCut("host", "hef", False, False), bare, siglip_tokenizer, canonicalize=True,
                        input_shape=(8, 8, WIDTH), output_shape=(1, 1, WIDTH), dim=WIDTH)
    small = TextHostWeights(token_embedding=np.zeros((10, WIDTH), np.float32))
    with pytest.raises(ConfigurationError, match="different checkpoints"):
        HostTextEncoder(TextCut("hef", "hef", False, False), small, siglip_tokenizer, canonicalize=True,
                        input_shape=(8, 8, WIDTH), output_shape=(1, 1, WIDTH), dim=WIDTH)


def test_host_weights_round_trip_and_token_table_is_memory_mapped(tmp_path):
    w = weights(12, 8)
    save_host_weights(tmp_path, w, backend="clip_vit_b_32")
    loaded = load_host_weights(tmp_path, backend="clip_vit_b_32")
    assert isinstance(loaded.token_embedding, np.memmap)
    for name in ("token_embedding", "position_embedding", "final_ln_weight", "final_ln_bias", "text_projection", "text_projection_bias"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(w, name))
    with pytest.raises(ConfigurationError, match="holds weights for 'clip_vit_b_32', not 'siglip_b_16'"):
        load_host_weights(tmp_path, backend="siglip_b_16")


def test_missing_host_weights_say_how_to_produce_them(tmp_path):
    with pytest.raises(ConfigurationError, match=r"host\.json is missing.*export_clip_host_weights\.py"):
        load_host_weights(tmp_path, backend="clip_vit_b_32")
