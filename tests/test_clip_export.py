"""scripts/export_clip_host_weights.py on tiny `save_pretrained` checkpoints (no download).

The script loads checkpoints through transformers, so these tests need torch and transformers and
are skipped without them (the test install has neither). The committed fixtures' host/ folders
(tests/fixtures/clip/) were written by this script, and the fidelity tests check those end to end.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

for _module in ("torch", "transformers"):
    pytest.importorskip(
        _module, reason=f"{_module} is not installed: the export script loads checkpoints with transformers "
        "(pip install torch==2.13.0 transformers==5.23.0 to run these)"
    )

from ml_target.testing import clip_reference as ref  # noqa: E402
from ml_target.testing.clip_tokenizers import (  # noqa: E402
    CLIP_BOS,
    CLIP_EOS,
    clip_like_tokenizer,
    siglip_like_tokenizer,
    write_tokenizer,
)
from ml_target.text.host_weights import load_host_weights  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "export_clip_host_weights.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("export_clip_host_weights", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clip_ckpt")
    tokenizer = clip_like_tokenizer()
    eos = tokenizer.token_to_id(CLIP_EOS)
    model = ref.tiny_clip(vocab_size=tokenizer.get_vocab_size(), bos_id=tokenizer.token_to_id(CLIP_BOS), eos_id=eos, pad_id=eos)
    model.save_pretrained(directory)
    write_tokenizer(directory, tokenizer, pad_token=CLIP_EOS, context_length=77)
    return directory, {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def siglip_checkpoint(tmp_path_factory):
    directory = tmp_path_factory.mktemp("siglip_ckpt")
    tokenizer = siglip_like_tokenizer()
    model = ref.tiny_siglip(vocab_size=tokenizer.get_vocab_size(), pad_id=1, eos_id=1)
    model.save_pretrained(directory)
    write_tokenizer(directory, tokenizer, pad_token="</s>", context_length=64)
    return directory, {k: v.detach().numpy() for k, v in model.state_dict().items()}


def test_clip_export_holds_the_checkpoint_tables_in_openai_orientation(script, clip_checkpoint, tmp_path, capsys):
    checkpoint, state = clip_checkpoint
    assert script.main(["--checkpoint", str(checkpoint), "--backend", "clip_vit_b_32", "--out", str(tmp_path)]) == 0
    weights = load_host_weights(tmp_path, backend="clip_vit_b_32")
    np.testing.assert_array_equal(weights.token_embedding, state["text_model.embeddings.token_embedding.weight"])
    np.testing.assert_array_equal(weights.position_embedding, state["text_model.embeddings.position_embedding.weight"])
    np.testing.assert_array_equal(weights.final_ln_weight, state["text_model.final_layer_norm.weight"])
    np.testing.assert_array_equal(weights.text_projection, state["text_projection.weight"].T)
    assert weights.text_projection_bias is None and not weights.stand_in
    assert (tmp_path / "tokenizer.json").read_bytes() == (checkpoint / "tokenizer.json").read_bytes()
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["pad_token"] == "<|endoftext|>" and summary["eos_id"] == summary["pad_id"]


def test_siglip_export_takes_the_head_with_its_bias(script, siglip_checkpoint, tmp_path):
    checkpoint, state = siglip_checkpoint
    assert script.main(["--checkpoint", str(checkpoint), "--backend", "siglip_b_16", "--out", str(tmp_path)]) == 0
    weights = load_host_weights(tmp_path, backend="siglip_b_16")
    np.testing.assert_array_equal(weights.token_embedding, state["text_model.embeddings.token_embedding.weight"])
    np.testing.assert_array_equal(weights.text_projection, state["text_model.head.weight"].T)
    np.testing.assert_array_equal(weights.text_projection_bias, state["text_model.head.bias"])


def test_float16_token_table(script, clip_checkpoint, tmp_path):
    checkpoint, state = clip_checkpoint
    assert script.main(["--checkpoint", str(checkpoint), "--backend", "tinyclip_vit_39m", "--out", str(tmp_path), "--dtype", "float16"]) == 0
    table = load_host_weights(tmp_path, backend="tinyclip_vit_39m").token_embedding
    assert table.dtype == np.float16
    np.testing.assert_allclose(table, state["text_model.embeddings.token_embedding.weight"], rtol=1e-3, atol=1e-3)


def test_a_missing_tokenizer_fails_before_writing_anything(script, clip_checkpoint, tmp_path, capsys):
    checkpoint, _ = clip_checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "out"
    argv = ["--checkpoint", str(checkpoint), "--backend", "clip_vit_b_16", "--out", str(out), "--tokenizer-dir", str(empty)]
    assert script.main(argv) == 1
    assert "pass --tokenizer-dir with the `textual/` folder of Immich's model" in capsys.readouterr().err
    assert not out.exists()


def test_a_checkpoint_of_the_wrong_family_is_refused(script, siglip_checkpoint, tmp_path, capsys):
    checkpoint, _ = siglip_checkpoint
    assert script.main(["--checkpoint", str(checkpoint), "--backend", "clip_vit_b_32", "--out", str(tmp_path / "o")]) == 1
    assert "checkpoint has no 'text_projection.weight'" in capsys.readouterr().err
