"""`verify` end to end on the emulator: agreement near 1 when configured right, the right task named when not.

An Immich-style cache is built from tiny random `transformers` CLIP/SigLIP models (full visual and
textual ONNX, as Immich would download them) plus ocrspine's PP-OCRv5 mobile; the worker runs the
same models as emulated HEFs of the backend's cut with calibrated quantisation, through its real
service path. Then the deliberate breakages: squash resize, positions added twice, missing
projection, OCR boxes in pixels.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml_target.results import Embedding, TextLines
from ml_target.tasks.clip import ClipVisualHandler, unit_vector
from ml_target.tasks.ocr import OcrRecognition
from ml_target.testing.verify_rig import VerifyRig, build_verify_rig
from ml_target.verify import add_arguments, run
from ml_target.verify.cache import ImmichCache
from ml_target.verify.compare import Plan, run_verification
from ml_target.verify.report import Report
from ml_target.verify.samples import QUERIES, SHORT_LINE_PAGES, builtin_images
from ml_target.verify.worker import claimed_models, serve_in_process

IMAGES = builtin_images()
PAGES = builtin_images(photos=False, scenes=0)[
    :SHORT_LINE_PAGES
]  # lines within the HEF's 320 px frame


@pytest.fixture(scope="module", params=["clip_vit_b_32", "siglip_b_16"])
def rig(request, tmp_path_factory):
    rig = build_verify_rig(
        tmp_path_factory.mktemp(request.param),
        IMAGES,
        list(QUERIES),
        backend_id=request.param,
    )
    yield rig
    rig.close()


@pytest.fixture(scope="module")
def base_rig(tmp_path_factory):
    """The default backend's rig, for the tasks that do not depend on the CLIP backend."""
    rig = build_verify_rig(tmp_path_factory.mktemp("base"), IMAGES, list(QUERIES))
    yield rig
    rig.close()


def verify(rig: VerifyRig, handlers, tasks: tuple[str, ...], images=IMAGES) -> Report:
    plan = Plan(images=images, queries=list(QUERIES), tasks=tasks)

    async def go() -> Report:
        async with serve_in_process(rig.settings, handlers) as worker:
            return await run_verification(
                ImmichCache(rig.cache), worker, claimed_models(handlers), plan
            )

    return asyncio.run(go())


def statuses(report: Report) -> dict[str, str]:
    return {t.task: t.status for t in report.tasks}


def test_a_correct_clip_configuration_agrees_near_one(rig, tmp_path: Path) -> None:
    report = verify(rig, rig.clip_handlers(), ("clip",))
    assert statuses(report) == {
        "clip.visual": "pass",
        "clip.textual": "pass",
        "clip.retrieval": "pass",
    }
    for task in ("clip.visual", "clip.textual"):
        measured = report.task(task).measures["cosine"]
        assert measured["count"] == (
            len(IMAGES) if task == "clip.visual" else len(QUERIES)
        )
        assert (
            measured["min"] >= 0.999
        )  # only the emulated 8/16-bit quantisation separates the two
    assert report.task("clip.retrieval").measures["top-5 overlap"]["mean"] >= 0.9
    assert report.exit_code() == 0
    written = {p.name for p in report.write(tmp_path)}
    assert written == {"report.json", "report.txt", "cosines.png"}
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["verdict"] == "pass" and saved["thresholds"]["clip.visual"] == {
        "cosine mean": 0.99,
        "cosine p5": 0.98,
    }
    assert Image.open(tmp_path / "cosines.png").size[0] > 0


class SquashVisual(ClipVisualHandler):
    """Pitfall 6: the image squashed to S x S instead of Immich's short-side resize + centre crop."""

    async def run(self, payload, options, upstream):
        size = self.backend.image_size
        pixels = getattr(
            payload, "pixels", payload
        )  # the decoder may hand over a reduced-scale decode
        frame = np.asarray(
            Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC)
        )
        return Embedding(unit_vector(await self._infer(frame), "image"))


def test_squash_instead_of_crop_fails_the_image_side(rig) -> None:
    visual, textual = rig.clip_handlers()
    squash = SquashVisual(visual.backend, visual.network)
    report = verify(rig, [squash, textual], ("clip",))
    assert statuses(report)["clip.visual"] == "fail"
    assert statuses(report)["clip.textual"] == "pass"
    assert report.exit_code() == 1 and "clip.visual" in report.failed


def _wrong_cut(rig: VerifyRig, **change) -> Report:
    cut = dataclasses.replace(rig.backend.text_cut, **change)
    return verify(
        rig,
        rig.clip_handlers(dataclasses.replace(rig.backend, text_cut=cut)),
        ("clip",),
    )


def test_positions_added_twice_fail_the_text_side(rig) -> None:
    report = _wrong_cut(rig, positions="host")
    assert statuses(report)["clip.textual"] == "fail"
    assert statuses(report)["clip.visual"] == "pass"
    assert report.task("clip.textual").measures["cosine"]["mean"] < 0.99


def test_a_missing_projection_fails_the_text_side(rig) -> None:
    if not rig.backend.text_cut.projection:
        pytest.skip(
            "the SigLIP text HEF projects in-network; there is no host projection to miss"
        )
    report = _wrong_cut(rig, projection=False)
    assert statuses(report)["clip.textual"] == "fail"
    assert statuses(report)["clip.visual"] == "pass"


def test_a_model_the_worker_does_not_claim_is_reported_not_judged(
    rig, tmp_path: Path
) -> None:
    other = "ViT-L-14__openai"  # in Immich's cache, not served by this backend
    cache = tmp_path / "cache"
    shutil.copytree(
        rig.cache / "clip" / rig.backend.immich_names[0], cache / "clip" / other
    )
    plan = Plan(
        images=IMAGES[:2],
        queries=list(QUERIES[:2]),
        tasks=("clip",),
        models={"clip": other},
    )
    handlers = rig.clip_handlers()

    async def go() -> Report:
        async with serve_in_process(rig.settings, handlers) as worker:
            return await run_verification(
                ImmichCache(cache), worker, claimed_models(handlers), plan
            )

    report = asyncio.run(go())
    assert set(statuses(report).values()) == {"report-only"} and report.exit_code() == 0
    assert other in report.task("clip.visual").notes[0]  # the worker's refusal, quoted


def test_ocr_agrees_on_rendered_pages(base_rig) -> None:
    report = verify(base_rig, base_rig.ocr_handlers(), ("ocr",), images=PAGES)
    ocr = report.task("ocr")
    assert ocr.status == "pass", report.table()
    checks = {c.name: c.value for c in ocr.checks}
    assert (
        checks["exact-line match"] >= 0.8
        and checks["box IoU mean"] >= 0.5
        and checks["boxes normalised"] == 1.0
    )
    assert ocr.measures["lines"] >= 6  # two pages of three lines


@dataclasses.dataclass(frozen=True)
class PixelLines(TextLines):
    """Pitfall 3: boxes sent in received-image pixels instead of normalised to 0..1."""

    def to_wire(self):
        wire = super().to_wire()
        wire["box"] = np.asarray(self.detections.quads, np.float32).ravel()
        return wire


class PixelOcrRecognition(OcrRecognition):
    async def run(self, payload, options, upstream):
        lines = await super().run(payload, options, upstream)
        return PixelLines(lines.detections, lines.text, lines.text_scores)


def test_ocr_boxes_in_pixels_fail_ocr(base_rig) -> None:
    detection, recognition = base_rig.ocr_handlers()
    broken = PixelOcrRecognition(recognition.network, recognition.dictionary)
    report = verify(base_rig, [detection, broken], ("ocr",), images=PAGES)
    ocr = report.task("ocr")
    checks = {c.name: c for c in ocr.checks}
    assert ocr.status == "fail" and report.failed == ["ocr"]
    assert checks["exact-line match"].passed  # the text is right ...
    assert (
        not checks["box IoU mean"].passed and not checks["boxes normalised"].passed
    )  # ... the boxes are not
    assert any("normalised" in note for note in ocr.notes)


def test_the_command_runs_from_the_environment(
    base_rig, tmp_path: Path, monkeypatch, capsys
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    (images / "page.jpg").write_bytes(PAGES[0].data)
    (images / "notes.txt").write_text("not an image")
    for name, value in {
        "HAILO_DEVICE": "emulator",
        "HAILO_EMULATOR_PROFILE": "none",
        "MODELS_DIR": str(base_rig.models),
        "TASKS": "ocr",
        "REQUEST_THREADS": "1",
    }.items():
        monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    out = tmp_path / "out"
    code = run(
        parser.parse_args(
            [
                "--immich-cache",
                str(base_rig.cache),
                "--images",
                str(images),
                "--tasks",
                "ocr,clip",
                "--out",
                str(out),
            ]
        )
    )
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "verdict: PASS" in printed and "the worker does not serve clip" in printed
    saved = json.loads((out / "report.json").read_text())
    assert (
        saved["meta"]["device"] == "emulator" and "EMULATED" in saved["meta"]["warning"]
    )
    assert [t["status"] for t in saved["tasks"]] == [
        "pass",
        "skipped",
        "skipped",
        "skipped",
    ]


def test_the_command_explains_a_bad_cache(tmp_path: Path, capsys) -> None:
    (tmp_path / "page.jpg").write_bytes(PAGES[0].data)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    code = run(
        parser.parse_args(
            ["--immich-cache", str(tmp_path / "missing"), "--images", str(tmp_path)]
        )
    )
    assert code == 2
    assert "docker cp immich_machine_learning:/cache" in capsys.readouterr().err
