"""CTC greedy decoding and Immich's line score on hand-made probability sequences."""

from __future__ import annotations

import numpy as np
import pytest

from ml_target.vision.ctc import decode, greedy_path, line_score

TABLE = ("blank", "a", "b", "l", " ")


def one_hot(ids: list[int], probs: list[float] | None = None, classes: int = len(TABLE)) -> np.ndarray:
    """(T, C) rows whose argmax is ids[t] with probability probs[t] (rest spread evenly)."""
    probs = probs or [0.9] * len(ids)
    out = np.zeros((len(ids), classes), dtype=np.float32)
    for t, (i, p) in enumerate(zip(ids, probs)):
        out[t, :] = (1 - p) / (classes - 1)
        out[t, i] = p
    return out


def test_repeats_collapse_and_blanks_separate_double_letters() -> None:
    # a a _ b l l _ l _ a: repeats collapse, the blank between the l's keeps both
    text, _ = decode(one_hot([1, 1, 0, 2, 3, 3, 0, 3, 0, 1]), TABLE)
    assert text == "ablla"


def test_space_is_the_last_class() -> None:
    text, _ = decode(one_hot([1, 4, 2]), TABLE)
    assert text == "a b"


def test_only_blanks_decode_to_empty_text_with_score_zero() -> None:
    assert decode(one_hot([0, 0, 0]), TABLE) == ("", 0.0)


def test_score_is_mean_of_kept_steps_rounded_to_5_decimals() -> None:
    # kept steps: 0.3456789 (first "a"), 0.9876543 ("b"); the repeated "a" and the blanks are not kept
    probs = [0.3456789, 0.99, 0.7, 0.9876543, 0.6]
    text, score = decode(one_hot([1, 1, 0, 2, 0], probs), TABLE)
    assert text == "ab"
    assert score == 0.66666  # (0.34568 + 0.98765) / 2 = 0.666665, numpy-rounded as Immich does



def test_path_keeps_the_step_of_each_kept_character() -> None:
    path = greedy_path(one_hot([0, 1, 1, 0, 2, 2, 2, 3]))
    assert path.classes.tolist() == [1, 2, 3]
    assert path.steps.tolist() == [1, 4, 7]
    assert np.allclose(path.probs, 0.9)


def test_line_score_rounds_each_step_before_the_mean() -> None:
    # per step: 0.96884 + 0.93889 + 0.91351 -> mean 0.94041; the unrounded mean 0.9404157 gives 0.94042
    assert line_score(np.array([0.968845, 0.938892, 0.91351])) == 0.94041


def test_decode_rejects_a_flat_vector() -> None:
    with pytest.raises(ValueError):
        decode(np.zeros(5, np.float32), TABLE)
