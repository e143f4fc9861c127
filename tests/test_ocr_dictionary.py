"""The CTC class table from both dictionary layouts, checked against the recogniser's width."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ml_target.errors import ConfigurationError
from ml_target.testing.ocr_networks import ocrspine_file
from ml_target.text.ocr_dictionary import check_class_count, dictionary_problems, load_dictionary, parse_dictionary
from ml_target.vision.ctc import decode

CLASSES = 18385  # the PP-OCRv5 mobile recogniser's output channels


@pytest.fixture(scope="module")
def keys() -> tuple[str, ...]:
    return load_dictionary(ocrspine_file("ppocr_keys_v5.txt"))


@pytest.fixture(scope="module")
def paddle_dict(tmp_path_factory: pytest.TempPathFactory, keys: tuple[str, ...]) -> Path:
    """PaddleOCR's ppocrv5_dict.txt layout: the 18383 characters only, blank and space implicit."""
    path = tmp_path_factory.mktemp("dict") / "ppocrv5_dict.txt"
    path.write_text("\n".join(keys[1:-1]) + "\n", encoding="utf-8")
    return path


def probs_for(text: str, table: tuple[str, ...]) -> np.ndarray:
    """(T, C) probabilities spelling `text` with the given table, blanks between characters."""
    ids = []
    for ch in text:
        ids += [table.index(ch), 0]
    out = np.full((len(ids), len(table)), 1e-6, dtype=np.float32)
    out[np.arange(len(ids)), ids] = 0.99
    return out


def test_ocrspine_keys_are_blank_characters_space(keys: tuple[str, ...]) -> None:
    assert len(keys) == CLASSES
    assert keys[0] == "blank" and keys[-1] == " "
    assert keys[1] == "\u3000"  # an ideographic space: lines must not be stripped


def test_both_layouts_give_the_same_table(keys: tuple[str, ...], paddle_dict: Path) -> None:
    assert load_dictionary(paddle_dict) == keys


def test_hello_decodes_as_hello_not_shifted(keys: tuple[str, ...], paddle_dict: Path) -> None:
    probs = probs_for("Hello World", keys)
    assert decode(probs, load_dictionary(paddle_dict))[0] == "Hello World"
    shifted = ("blank", *keys[2:])  # a table missing one entry: every id lands one character early
    assert decode(probs, shifted + (" ",))[0] != "Hello World"


def test_a_table_one_short_fails_loudly(paddle_dict: Path) -> None:
    check_class_count(load_dictionary(paddle_dict), CLASSES)
    lines = paddle_dict.read_text(encoding="utf-8").split("\n")[1:]
    with pytest.raises(ConfigurationError, match="18384 CTC classes"):
        check_class_count(parse_dictionary("\n".join(lines)), CLASSES)
    with pytest.raises(ConfigurationError, match="18386 CTC classes"):
        check_class_count(parse_dictionary("x\n" + "\n".join(lines[:-1]) + "\nblank"), CLASSES)


def test_crlf_lines_and_missing_file(tmp_path: Path) -> None:
    assert parse_dictionary("a\r\nb\r\n") == ("blank", "a", "b", " ")
    with pytest.raises(ConfigurationError, match="ppocrv5_dict.txt"):
        load_dictionary(tmp_path / "ppocrv5_dict.txt")
    with pytest.raises(ConfigurationError, match="empty"):
        parse_dictionary("")


def test_dictionary_problems_for_provisioning(tmp_path: Path, paddle_dict: Path) -> None:
    assert "is missing" in dictionary_problems(tmp_path, CLASSES)[0]
    (tmp_path / "ppocrv5_dict.txt").write_bytes(paddle_dict.read_bytes())
    assert dictionary_problems(tmp_path, CLASSES) == []
    assert "18385 CTC classes" in dictionary_problems(tmp_path, CLASSES + 1)[0]
