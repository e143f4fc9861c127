"""`verify`'s parts with known answers: cache reading, Immich's reference steps, metrics, verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml_target.errors import ConfigurationError
from ml_target.verify import metrics
from ml_target.verify.cache import ImmichCache, MissingModel, _table
from ml_target.verify.reference_clip import clean_text, immich_crop
from ml_target.verify.reference_faces import decode_scrfd, letterbox_top_left, nms
from ml_target.verify.reference_ocr import ctc_greedy, db_boxes, detector_size
from ml_target.verify.report import Report, TaskResult


def _clip_cache(
    root: Path, name: str = "ViT-B-16-SigLIP__webli", skip: str | None = None
) -> Path:
    base = root / "clip" / name
    files = {
        "config.json": {
            "embed_dim": 768,
            "vision_cfg": {"image_size": 224},
            "text_cfg": {
                "context_length": 64,
                "tokenizer_kwargs": {"clean": "canonicalize"},
            },
        },
        "visual/preprocess_cfg.json": {
            "size": [256, 256],
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
        },
        "visual/model.onnx": None,
        "textual/model.onnx": None,
        "textual/tokenizer.json": {},
        "textual/tokenizer_config.json": {"pad_token": "</s>"},
    }
    for relative, content in files.items():
        if relative == skip:
            continue
        path = base / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("onnx" if content is None else json.dumps(content))
    return root


def test_cache_reads_immichs_clip_settings(tmp_path: Path) -> None:
    files = ImmichCache(_clip_cache(tmp_path)).clip("ViT-B-16-SigLIP__webli")
    assert (
        files.image_size,
        files.context_length,
        files.canonicalize,
        files.embed_dim,
    ) == (256, 64, True, 768)
    assert files.mean == (0.5, 0.5, 0.5) and files.textual.name == "model.onnx"


def test_a_missing_cache_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match=r"docker cp immich_machine_learning:/cache"
    ):
        ImmichCache(tmp_path / "nowhere")


def test_a_model_immich_never_loaded_is_named_with_the_fix(tmp_path: Path) -> None:
    cache = ImmichCache(_clip_cache(tmp_path))
    with pytest.raises(MissingModel) as caught:
        cache.clip("ViT-B-32__openai")
    message = str(caught.value)
    assert str(tmp_path / "clip" / "ViT-B-32__openai") in message
    assert "ViT-B-16-SigLIP__webli" in message  # what the cache does hold
    assert "Smart Search" in message


def test_a_missing_file_is_named_by_path_and_role(tmp_path: Path) -> None:
    cache = ImmichCache(_clip_cache(tmp_path, skip="textual/tokenizer.json"))
    with pytest.raises(
        MissingModel,
        match=r"textual/tokenizer\.json is missing \(tokenizer of clip model",
    ):
        cache.clip("ViT-B-16-SigLIP__webli")


def test_both_dictionary_layouts_give_the_same_characters() -> None:
    paddle = "\u3000\na\nb\n"
    ocrspine = "blank\n\u3000\na\nb\n \n"
    assert _table(paddle) == _table(ocrspine) == ("\u3000", "a", "b")


def test_immich_cleaning_keeps_its_double_spaces() -> None:
    assert (
        clean_text("Grandma's  garden: Roses & Tulips!", canonicalize=True)
        == "grandmas garden roses  tulips"
    )
    assert clean_text(" a\tB  c\n", canonicalize=False) == "a B c"


def test_immich_crop_truncates_the_long_side_and_the_offset() -> None:
    # 517 x 301 -> long side int(517 / 301 * 224) = 384, left = int(384 / 2 - 112) = 80.
    image = Image.fromarray(
        np.random.default_rng(0).integers(0, 255, (301, 517, 3), dtype=np.uint8)
    )
    expected = image.resize((384, 224), Image.Resampling.BICUBIC).crop(
        (80, 0, 304, 224)
    )
    np.testing.assert_array_equal(
        np.asarray(immich_crop(image, 224)), np.asarray(expected)
    )


def test_ocr_detector_size_follows_immich() -> None:
    assert detector_size(1440, 1920, 736) == (
        736,
        992,
    )  # immich-protocol.md §6.5 example
    assert detector_size(100, 200, 736) == (96, 192)  # never upscaled, rounded to 32


def test_db_boxes_find_a_text_bar_in_image_pixels() -> None:
    prob = np.zeros((64, 128), np.float32)
    prob[10:20, 20:60] = 0.9
    ((box, score),) = db_boxes(prob, width=256, height=128, min_score=0.5)
    # the 2x2 dilation grows the 10 x 40 bar to 11 x 41: DB's fast score averages over that box
    assert score == pytest.approx(0.9 * 400 / 451, abs=1e-4)
    centre = box.mean(axis=0)
    np.testing.assert_allclose(centre, [2 * 40, 2 * 15], atol=2.0)
    assert box[0][0] < box[1][0] and box[0][1] < box[3][1]  # TL, TR, BR, BL
    # unclip distance = 40 * 10 * 1.6 / 100 = 6.4 map px on each side, doubled to image px
    assert 2 * (40 + 12.8) - 5 <= box[1][0] - box[0][0] <= 2 * (40 + 12.8) + 5


def test_ctc_collapses_repeats_drops_blanks_and_adds_the_space() -> None:
    table = ("a", "b", "c", "d", "e")  # classes: blank=0, a..e=1..5, space=6
    steps = [0, 5, 5, 0, 5, 6, 2]
    probs = np.full((len(steps), 7), 0.01, np.float32)
    maxima = [0.9, 0.8, 0.7, 0.9, 0.6, 0.95, 0.5]
    for t, (c, p) in enumerate(zip(steps, maxima)):
        probs[t, c] = p
    text, score = ctc_greedy(probs, table)
    assert text == "ee b"
    assert score == pytest.approx(np.mean([0.8, 0.6, 0.95, 0.5]), abs=1e-5)


def test_letterbox_is_top_left_with_insightfaces_size_rule() -> None:
    canvas, scale = letterbox_top_left(np.full((800, 600, 3), 255, np.uint8))
    assert scale == 0.8 and canvas.shape == (640, 640, 3)
    assert canvas[:, :480].min() == 255 and canvas[:, 480:].max() == 0


def test_scrfd_decode_recovers_a_known_face() -> None:
    from ml_target.testing.face_models import scrfd_heads

    heads = scrfd_heads([((212.0, 75.0, 350.0, 212.0), 16, 1)])
    (face,) = decode_scrfd(heads, min_score=0.7, det_scale=1.25)
    # the heads hold distances on the HEF's 0.05 grid: y1 = 144 - 4.30 * 16 = 75.2 -> 60.16 -> 60
    np.testing.assert_array_equal(
        face.box, np.round(np.array([212.0, 75.0, 350.0, 212.0]) / 1.25)
    )
    assert face.score == pytest.approx(242 / 255)
    assert decode_scrfd(heads, min_score=0.96, det_scale=1.25) == []


def test_nms_keeps_the_better_of_two_overlapping_faces() -> None:
    boxes = np.array(
        [[0, 0, 100, 100], [10, 10, 110, 110], [300, 300, 400, 400]], float
    )
    assert nms(boxes, np.array([0.8, 0.9, 0.7])) == [1, 2]


def test_summary_and_retrieval_overlap() -> None:
    s = metrics.summarise(np.linspace(0, 1, 21))
    assert (s.count, s.mean, s.p5, s.min) == (
        21,
        pytest.approx(0.5),
        pytest.approx(0.05),
        0.0,
    )
    images = np.eye(4)
    text = np.array([[4.0, 3, 2, 1]])
    assert metrics.top_k_overlap(text, images, text, images, k=2).tolist() == [1.0]
    assert metrics.top_k_overlap(
        text, images, np.array([[1.0, 2, 3, 4]]), images, k=2
    ).tolist() == [0.0]


def test_quad_iou_and_line_matching() -> None:
    square = np.array([[0, 0], [2, 0], [2, 2], [0, 2]], float)
    assert metrics.quad_iou(square, square + [1, 0]) == pytest.approx(1 / 3)
    pixels = square * 100 + 100  # a line at x, y 100..300 px instead of 0.5..1.0
    agreement = metrics.match_lines(
        [square / 4, square / 4 + 0.5], ["Hello", "World"], [pixels], ["World"]
    )
    assert (agreement.exact, agreement.ious) == (
        1,
        [0.0],
    )  # paired by text, boxes in the wrong units
    assert agreement.only_reference == ["Hello"] and agreement.only_worker == []


def test_verdicts_and_exit_codes() -> None:
    good = TaskResult("clip.visual", "m", claimed=True)
    good.judge({"cosine mean": 0.995, "cosine p5": 0.985})
    bad = TaskResult("clip.textual", "m", claimed=True)
    bad.judge({"cosine mean": 0.97, "cosine p5": 0.9})
    unjudged = TaskResult("ocr", "m", claimed=True)
    unjudged.judge({})  # nothing measured is not a pass
    faces = TaskResult("facial-recognition", "buffalo_l", claimed=False)
    assert (good.status, bad.status, unjudged.status, faces.status) == (
        "pass",
        "fail",
        "fail",
        "report-only",
    )
    assert Report([good, faces], {}).exit_code() == 0
    assert Report([good, bad], {}).failed == ["clip.textual"]
    assert Report([good, bad], {}).exit_code() == 1
    assert (
        Report([TaskResult("ocr", None, claimed=False, skipped=True)], {}).exit_code()
        == 2
    )


def test_model_choice_prefers_a_claimed_model_that_immich_has_cached(
    tmp_path: Path,
) -> None:
    from ml_target.verify.compare import _pick

    cache = ImmichCache(_clip_cache(tmp_path))
    claimed = ["ViT-B-32__openai", "ViT-B-16-SigLIP__webli"]
    assert _pick("clip", claimed, cache, None) == ("ViT-B-16-SigLIP__webli", None)
    assert _pick("clip", ["ViT-B-32__openai"], cache, None) == (
        "ViT-B-32__openai",
        None,
    )  # -> named as missing
    assert _pick("clip", claimed, cache, "RN50__openai") == ("RN50__openai", None)
    model, reason = _pick("clip", [], cache, None)  # TinyCLIP: no Immich twin
    assert model is None and "serves no Immich model faithfully" in reason
    model, reason = _pick("ocr", None, cache, None)
    assert model is None and "TASKS" in reason
