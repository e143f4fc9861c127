"""Query cleaning and tokenisation as Immich does them (immich-protocol.md §6.2)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml_target.errors import ConfigurationError
from ml_target.testing.clip_tokenizers import (
    CLIP_BOS,
    CLIP_EOS,
    clip_like_tokenizer,
    siglip_like_tokenizer,
    write_tokenizer,
)
from ml_target.text.clean import clean_text
from ml_target.text.tokenizer import ImmichTokenizer


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  a\tphoto \n of   a dog  ", "a photo of a dog"),
        ("A Dog!", "A Dog!"),  # CLIP models: whitespace only, case and punctuation kept
    ],
)
def test_clean_collapses_whitespace_only_without_canonicalize(text, expected):
    assert clean_text(text, canonicalize=False) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Grandma's  Garden: Roses & Tulips!", "grandmas garden roses  tulips"),
        ("a - b", "a  b"),  # punctuation removed after the whitespace collapse: double space remains
        ("snake_case_name", "snakecasename"),  # `_` is removed, not turned into a space (unlike open_clip)
        ("Ünïcode — “quotes”", "ünïcode — “quotes”"),  # only ASCII string.punctuation goes
        ("&amp; is not unescaped", "amp is not unescaped"),
    ],
)
def test_canonicalize_removes_ascii_punctuation_then_lowercases(text, expected):
    assert clean_text(text, canonicalize=True) == expected


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("clip_tok")
    write_tokenizer(directory, clip_like_tokenizer(), pad_token=CLIP_EOS, context_length=77)
    return directory


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("siglip_tok")
    write_tokenizer(directory, siglip_like_tokenizer(), pad_token="</s>", context_length=64)
    return directory


def test_clip_ids_have_bos_eos_and_eos_padding(clip_dir):
    tokenizer = ImmichTokenizer.from_files(clip_dir, context_length=77, eos_token=CLIP_EOS)
    raw = clip_like_tokenizer().encode("a photo of a dog", add_special_tokens=False).ids
    ids = tokenizer.encode("a photo of a dog").ids
    bos, eos = clip_like_tokenizer().token_to_id(CLIP_BOS), tokenizer.eos_id
    assert ids.dtype == np.int32 and ids.shape == (77,)
    assert ids.tolist() == [bos, *raw, eos] + [eos] * (77 - len(raw) - 2)


def test_truncation_keeps_room_for_the_special_tokens(clip_dir):
    tokenizer = ImmichTokenizer.from_files(clip_dir, context_length=77, eos_token=CLIP_EOS)
    raw = clip_like_tokenizer().encode("boats in the harbour " * 40, add_special_tokens=False).ids
    ids = tokenizer.encode("boats in the harbour " * 40).ids
    assert len(raw) > 77
    assert ids.tolist() == [clip_like_tokenizer().token_to_id(CLIP_BOS), *raw[:75], tokenizer.eos_id]


def test_siglip_ids_end_with_eos_and_pad_with_the_configured_token(siglip_dir):
    tokenizer = ImmichTokenizer.from_files(siglip_dir, context_length=64, eos_token="</s>")
    ids = tokenizer.encode("a photo of a dog").ids
    raw = siglip_like_tokenizer().encode("a photo of a dog", add_special_tokens=False).ids
    assert tokenizer.pad_id == tokenizer.eos_id == 1  # `</s>`, as Immich's SigLIP config is expected to say
    assert ids.tolist() == [*raw, 1] + [1] * (64 - len(raw) - 1)
    long = tokenizer.encode("a photo of a dog " * 30).ids
    assert long.shape == (64,) and long[-1] == 1 and long[-2] != 1


def test_pad_token_given_as_added_token_object(tmp_path):
    write_tokenizer(tmp_path, siglip_like_tokenizer(), pad_token="<pad>", context_length=64)
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"pad_token": {"content": "<pad>", "special": True}}))
    tokenizer = ImmichTokenizer.from_files(tmp_path, context_length=64, eos_token="</s>")
    assert tokenizer.encode("dog").ids[-1] == 0


def test_pad_token_missing_from_the_vocabulary_is_refused(tmp_path):
    write_tokenizer(tmp_path, siglip_like_tokenizer(), pad_token="[PAD]", context_length=64)
    with pytest.raises(ConfigurationError, match=r"pad token '\[PAD\]'"):
        ImmichTokenizer.from_files(tmp_path, context_length=64, eos_token="</s>")


def test_missing_tokenizer_file_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(ConfigurationError, match=r"tokenizer\.json is missing; `python -m ml_target fetch-models` copies"):
        ImmichTokenizer.from_files(tmp_path, context_length=77, eos_token=CLIP_EOS)


def test_stand_in_tokenizers_are_reproducible():
    assert clip_like_tokenizer().to_str() == clip_like_tokenizer().to_str()
    assert siglip_like_tokenizer().to_str() == siglip_like_tokenizer().to_str()
