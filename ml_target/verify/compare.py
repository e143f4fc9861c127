"""Running every task through Immich's reference and through the worker, and measuring agreement."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ml_target.verify import metrics
from ml_target.verify.cache import ImmichCache, MissingModel
from ml_target.verify.report import FACES_CAVEAT, FACES_COMPATIBLE_NOTE, Report, TaskResult
from ml_target.verify.samples import Sample
from ml_target.verify.worker import (
    IMMICH_FACE_SCORE,
    IMMICH_OCR_OPTIONS,
    IMMICH_OCR_REC_SCORE,
    WorkerClient,
    WorkerError,
)

TOP_K = 5  # retrieval depth; the clip.retrieval threshold is stated for it
FACE_PAIR_IOU = 0.1  # below this two boxes are not the same face
IMMICH_SAME_FACE_IOU = 0.5  # Immich's server keeps a stored face whose new box overlaps it more than this
MAX_EXAMPLES = 10  # differing OCR lines quoted in the report


@dataclass(frozen=True)
class Plan:
    """What to compare: the inputs, the tasks, and optional model-name overrides."""

    images: Sequence[Sample]
    queries: Sequence[str]
    tasks: tuple[str, ...] = ("clip", "faces", "ocr")
    models: dict[str, str] = field(default_factory=dict)


def _pick(
    task: str, claimed: list[str] | None, cache: ImmichCache, override: str | None
) -> tuple[str | None, str | None]:
    """(model, reason to skip): the override, else the first claimed model present in the cache."""
    if claimed is None:
        return None, f"the worker does not serve {task} (TASKS setting)"
    if override:
        return override, None
    if not claimed:
        return (
            None,
            f"the worker's {task} backend serves no Immich model faithfully; pass a model name to measure anyway",
        )
    present = [name for name in claimed if name in cache.models(task)]
    return (present or claimed)[0], None


def _skipped(tasks: Sequence[str], model: str | None, reason: str) -> list[TaskResult]:
    return [
        TaskResult(t, model, claimed=False, notes=[f"skipped: {reason}"], skipped=True)
        for t in tasks
    ]


async def verify_clip(
    cache: ImmichCache, worker: WorkerClient, claims: dict, plan: Plan
) -> list[TaskResult]:
    from ml_target.verify.reference_clip import ImmichClip

    names = ("clip.visual", "clip.textual", "clip.retrieval")
    model, reason = _pick("clip", claims["clip"], cache, plan.models.get("clip"))
    if model is None:
        return _skipped(names, None, reason)
    try:
        reference = ImmichClip(cache.clip(model))
    except MissingModel as exc:
        return _skipped(names, model, str(exc))
    claimed = model in (claims["clip"] or [])
    results = [TaskResult(n, model, claimed) for n in names]
    try:
        ours_img = np.stack(
            [await worker.clip_image(model, s.data) for s in plan.images]
        )
        ours_txt = np.stack([await worker.clip_text(model, q) for q in plan.queries])
    except WorkerError as exc:
        for r in results:
            r.failed, r.notes = True, [str(exc)]
        return results
    ref_img = np.stack([reference.encode_image(_pil(s)) for s in plan.images])
    ref_txt = np.stack([reference.encode_text(q) for q in plan.queries])
    for result, ours, ref, unit in (
        (results[0], ours_img, ref_img, plan.images),
        (results[1], ours_txt, ref_txt, plan.queries),
    ):
        if ours.shape != ref.shape:
            result.failed = True
            result.notes.append(
                f"dimension differs: worker {ours.shape[-1]}, Immich {ref.shape[-1]}"
            )
            continue
        cos = metrics.cosines(ours, ref)
        summary = metrics.summarise(cos)
        result.measures = {"cosine": summary.to_dict(), "worst": _worst(cos, unit)}
        result.distributions = {"cosine": cos.tolist()}
        result.judge({"cosine mean": summary.mean, "cosine p5": summary.p5})
    retrieval = results[2]
    if ours_img.shape == ref_img.shape and ours_txt.shape == ref_txt.shape:
        overlap = metrics.top_k_overlap(ref_txt, ref_img, ours_txt, ours_img, TOP_K)
        k = min(TOP_K, len(plan.images))
        retrieval.measures = {
            f"top-{k} overlap": metrics.summarise(overlap).to_dict(),
            "images": len(plan.images),
        }
        retrieval.judge({"top-5 overlap mean": float(overlap.mean())})
        retrieval.notes.append(
            "depends on both encoders: read it together with clip.visual and clip.textual"
        )
    else:
        retrieval.failed = True
    if len(plan.images) <= TOP_K:
        retrieval.notes.append(
            f"only {len(plan.images)} images: top-{TOP_K} overlap is trivially 1; add images"
        )
    return results


def _worst(values: np.ndarray, items: Sequence) -> str:
    i = int(np.argmin(values))
    item = items[i]
    return getattr(item, "name", str(item))[:60]


def _pil(sample: Sample) -> Image.Image:
    """The sample as Immich opens it (Pillow; converted to RGB by the reference)."""
    return Image.open(io.BytesIO(sample.data))


async def verify_faces(
    cache: ImmichCache, worker: WorkerClient, claims: dict, plan: Plan
) -> list[TaskResult]:
    from ml_target.verify.reference_faces import Face, ImmichFaces

    model, reason = _pick("faces", claims["faces"], cache, plan.models.get("faces"))
    if model is None:
        return _skipped(["facial-recognition"], None, reason)
    try:
        reference = ImmichFaces(cache.faces(model))
    except MissingModel as exc:
        return _skipped(["facial-recognition"], model, str(exc))
    mode = claims["faces_recognition"]
    recognition = mode is not None and model in claims["faces_recognition_models"]
    compatible = recognition and mode == "immich-compatible"
    result = TaskResult(
        "facial-recognition", model, claimed=compatible, notes=[FACES_COMPATIBLE_NOTE if compatible else FACES_CAVEAT]
    )
    if not recognition:
        served = ", ".join(claims["faces_recognition_models"]) or "none"
        result.notes.append(f"recognition not compared: the worker's recogniser serves {served}, not {model}")
    ious, kept, end_to_end, same_crop, counts = [], 0, [], [], [0, 0]
    try:
        for sample in plan.images:
            rgb = sample.rgb()
            ref_faces = reference.detect(rgb, IMMICH_FACE_SCORE)
            detected = await worker.faces(model, sample.data, recognition=False)
            ours = await worker.faces(model, sample.data, recognition=True) if recognition else detected
            counts[0] += len(ref_faces)
            counts[1] += len(ours)
            if recognition and ours:
                # Immich's recogniser on the worker's own landmarks: the same crop, so the same vector.
                on_our_crops = reference.embed(rgb, [Face(f.box, f.score, f.landmarks) for f in detected])
                same_crop += [
                    float(metrics.cosines(o.embedding[None], r.embedding[None])[0]) for o, r in zip(ours, on_our_crops)
                ]
                ref_faces = reference.embed(rgb, ref_faces)
            if not ref_faces or not ours:
                continue
            overlap = np.array(
                [[metrics.box_iou(r.box, o.box) for o in ours] for r in ref_faces]
            )
            for i, j in metrics.greedy_pairs(overlap, FACE_PAIR_IOU):
                ious.append(float(overlap[i, j]))
                kept += int(overlap[i, j] > IMMICH_SAME_FACE_IOU)
                if recognition:
                    end_to_end.append(
                        float(metrics.cosines(ours[j].embedding[None], ref_faces[i].embedding[None])[0])
                    )
    except WorkerError as exc:
        result.failed = compatible
        result.notes.append(str(exc))
        return [result]
    result.measures = {
        "faces Immich": counts[0],
        "faces worker": counts[1],
        "faces matched": len(ious),
        f"faces Immich would keep (IoU > {IMMICH_SAME_FACE_IOU})": kept,
        "box IoU": metrics.summarise(ious).to_dict(),
    }
    result.distributions = {"box IoU": ious}
    if recognition:
        result.measures["embedding cosine end to end"] = metrics.summarise(end_to_end).to_dict()
        result.distributions["embedding cosine end to end"] = end_to_end
    if compatible:
        result.measures["same-crop cosine"] = metrics.summarise(same_crop).to_dict()
        result.distributions["same-crop cosine"] = same_crop
        result.judge({"same-crop cosine min": min(same_crop) if same_crop else float("nan")})
    if counts[0] == 0:
        result.notes.append(
            "Immich's detector found no face in these images: add photos with faces"
        )
    if counts[1] == 0 and compatible:
        result.notes.append("the worker found no face in these images, so its recogniser was not compared")
    return [result]


async def verify_ocr(
    cache: ImmichCache, worker: WorkerClient, claims: dict, plan: Plan
) -> list[TaskResult]:
    from ml_target.verify.reference_ocr import ImmichOcr

    model, reason = _pick("ocr", claims["ocr"], cache, plan.models.get("ocr"))
    if model is None:
        return _skipped(["ocr"], None, reason)
    try:
        reference = ImmichOcr(cache.ocr(model))
    except MissingModel as exc:
        return _skipped(["ocr"], model, str(exc))
    result = TaskResult("ocr", model, claimed=model in (claims["ocr"] or []))
    exact, lines, ious, normalised, worker_lines = 0, 0, [], 0, 0
    differences: list[str] = []
    try:
        for sample in plan.images:
            ref = reference.read(
                sample.rgb(),
                det_score=IMMICH_OCR_OPTIONS["minScore"],
                max_resolution=IMMICH_OCR_OPTIONS["maxResolution"],
                rec_score=IMMICH_OCR_REC_SCORE,
            )
            ours = await worker.ocr(model, sample.data)
            worker_lines += len(ours.text)
            normalised += int(sum(np.all((q >= 0.0) & (q <= 1.0)) for q in ours.quads))
            agreement = metrics.match_lines(
                [r.quad for r in ref],
                [r.text for r in ref],
                list(ours.quads),
                ours.text,
            )
            exact += agreement.exact
            lines += max(agreement.reference_lines, agreement.worker_lines)
            ious += agreement.ious
            if agreement.only_reference or agreement.only_worker:
                differences.append(
                    f"{sample.name}: Immich only {agreement.only_reference}, worker only {agreement.only_worker}"
                )
    except WorkerError as exc:
        result.failed, result.notes = True, [str(exc)]
        return [result]
    if lines == 0:
        result.skipped = True
        result.notes.append(
            "skipped: neither side read any text in these images; add images with text"
        )
        return [result]
    iou = metrics.summarise(ious)
    match_rate = exact / lines
    share_normalised = normalised / worker_lines if worker_lines else 1.0
    result.measures = {
        "lines": lines,
        "box IoU": iou.to_dict(),
        "differences": differences[:MAX_EXAMPLES],
    }
    result.distributions = {"box IoU": ious}
    result.judge(
        {
            "exact-line match": match_rate,
            "box IoU mean": iou.mean,
            "boxes normalised": share_normalised,
        }
    )
    result.notes += [f"read differently: {d}" for d in differences[:3]]
    if share_normalised < 1.0:
        result.notes.append(
            "some boxes lie outside 0..1: Immich stores OCR boxes normalised by the image size"
        )
    return [result]


async def run_verification(
    cache: ImmichCache, worker: WorkerClient, claims: dict, plan: Plan
) -> Report:
    """Every planned task, in Immich's order: CLIP, faces, OCR."""
    steps = {"clip": verify_clip, "faces": verify_faces, "ocr": verify_ocr}
    tasks: list[TaskResult] = []
    for task in plan.tasks:
        tasks += await steps[task](cache, worker, claims, plan)
    meta = {
        "cache": str(cache.root),
        "images": len(plan.images),
        "queries": len(plan.queries),
        "claimed": {k: v for k, v in claims.items() if k in ("clip", "faces", "ocr")},
    }
    return Report(tasks, meta)
