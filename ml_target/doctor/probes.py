"""End-to-end probes with real meaning: what a correctly configured real model must reproduce.

Each probe sends Immich's own requests with bundled inputs (`assets/`, see
scripts/make_doctor_assets.py) and judges the answers against what is true of those inputs, not
against another model's numbers, so it needs no Immich model cache:

- faces: SCRFD finds the one face of each portrait within IOU_MIN of its hand-labelled box, with
  its five landmarks in the right places; the recogniser gives the same person (the portrait
  rescaled and re-framed) a clearly higher cosine than the other person.
- OCR: every line of a printed page is read exactly; a coloured page reads no worse in the
  configured recogniser channel order than swapped.
- smart search: discs of five colours and "a <colour> circle" match one to one in both
  directions (real CLIP/SigLIP models do this reliably; a wrong text cut or swapped colour
  channels do not); photographs and their captions likewise (skipped on the emulator, whose
  stand-in knows only colours).

Where a probe fails, it tries the likely causes it can test (channels swapped, classes shifted by
one) and names the one that explains the failure.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from ml_target.doctor.client import Client
from ml_target.doctor.report import Check, Verdict

ASSETS = Path(__file__).resolve().parent / "assets"
IOU_MIN = 0.5
LANDMARK_TOLERANCE = 0.15  # of the labelled box's width
SAME_PERSON_MARGIN = 0.2
COLOURS = {"red": (215, 35, 35), "green": (40, 165, 65), "blue": (40, 70, 215), "yellow": (240, 220, 40),
           "purple": (135, 45, 170)}
IMMICH_OCR = {"detection": {"options": {"minScore": 0.5, "maxResolution": 736}},
              "recognition": {"options": {"minScore": 0.8}}}
JPEG_QUALITY = 90
OCR_SMALL_PAGE = (640, 480)  # (width, height): Immich's detector input for it (480x640) fits the HEF's 544x960
SMALL_PAGE_LABEL = "at 640x480 (Immich's own detector input)"
COLOUR_SCORE_MARGIN = 0.02  # mean text score by which the swapped order must win to count as better


@dataclass(frozen=True)
class Served:
    """The Immich model names to ask for, per task (None: the task is not served)."""

    clip: str | None
    faces: str | None
    faces_recognition: bool
    ocr: str | None
    ocr_channels: str
    emulated: bool


def manifest() -> dict[str, Any]:
    return json.loads((ASSETS / "probes.json").read_text(encoding="utf-8"))


def jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def asset_bytes(name: str) -> bytes:
    return (ASSETS / name).read_bytes()


def asset_pixels(name: str) -> np.ndarray:
    return np.asarray(Image.open(ASSETS / name).convert("RGB"))


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _error(answer: tuple[int, Any]) -> str:
    status, body = answer
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return f"HTTP {status}: {str(detail)[:300]}"


# ---- faces ----

async def face_detection(client: Client, model: str) -> Check:
    """Each portrait: one face, box IoU >= IOU_MIN with the label, landmarks near the labelled ones."""
    found, problems = {}, []
    for name, label in manifest()["faces"].items():
        answer = await client.predict({"facial-recognition": {"detection": {"modelName": model}}},
                                      image=asset_bytes(name))
        if answer[0] != 200:
            return Check("faces: detection", Verdict.FAIL, f"{name}: {_error(answer)}",
                         "see the worker's log; the SCRFD HEF did not answer")
        result = answer[1]["facial-recognition"]
        boxes, landmarks = result["boxes"], result["landmarks"]
        scores = [round(iou(box, label["box"]), 3) for box in boxes]
        best = int(np.argmax(scores)) if scores else None
        found[name] = {"faces": len(boxes), "iou": scores}
        if len(boxes) != 1 or best is None or scores[best] < IOU_MIN:
            problems.append(f"{name} ({label['person']}): {len(boxes)} face(s), IoU with the label {scores}")
            continue
        offsets = np.linalg.norm(np.array(landmarks[best]) - np.array(label["landmarks"]), axis=1)
        width = label["box"][2] - label["box"][0]
        found[name]["landmark_error"] = round(float(offsets.max() / width), 3)
        if offsets.max() > LANDMARK_TOLERANCE * width:
            problems.append(f"{name}: landmarks off by up to {offsets.max() / width:.0%} of the face width")
    if problems:
        return Check(
            "faces: detection", Verdict.FAIL, "; ".join(problems),
            "boxes or landmarks decode wrongly: compare `python -m ml_target inspect <scrfd>.hef` with "
            "docs/hardware-evidence.md (score/box/landmark heads, channel layout of the two anchors)",
            data=found,
        )
    detail = ", ".join(f"{n}: IoU {v['iou'][0]}, landmarks within {v['landmark_error']:.0%}" for n, v in found.items())
    return Check("faces: detection", Verdict.PASS, f"one face per portrait where it is: {detail}", data=found)


def reframed(pixels: np.ndarray) -> np.ndarray:
    """The same portrait at 70 % size on a wider canvas, shifted: a new photo of the same face."""
    h, w = pixels.shape[:2]
    small = cv2.resize(pixels, (int(w * 0.7), int(h * 0.7)), interpolation=cv2.INTER_AREA)
    canvas = np.full((h, int(w * 1.2), 3), 96, np.uint8)
    canvas[h - small.shape[0]:, int(w * 0.4):int(w * 0.4) + small.shape[1]] = small
    return canvas


async def face_recognition(client: Client, model: str) -> Check:
    """Cosines of the recogniser's embeddings: same person (original vs re-framed) vs different people."""
    embeddings: dict[tuple[str, str], np.ndarray] = {}
    entries = {"facial-recognition": {"detection": {"modelName": model, "options": {"minScore": 0.7}},
                                      "recognition": {"modelName": model}}}
    for name in manifest()["faces"]:
        pixels = asset_pixels(name)
        for variant, image in (("original", asset_bytes(name)), ("re-framed", jpeg(reframed(pixels)))):
            answer = await client.predict(entries, image=image)
            if answer[0] != 200:
                return Check("faces: recognition", Verdict.FAIL, f"{name} {variant}: {_error(answer)}",
                             "see the worker's log")
            faces = answer[1]["facial-recognition"]
            if len(faces) != 1:
                return Check("faces: recognition", Verdict.FAIL, f"{name} {variant}: {len(faces)} faces detected, 1 expected",
                             "fix the detection probe first")
            vector = np.array(json.loads(faces[0]["embedding"]), dtype=np.float64)
            embeddings[(name, variant)] = vector / np.linalg.norm(vector)
    names = list(manifest()["faces"])
    same = [float(embeddings[(n, "original")] @ embeddings[(n, "re-framed")]) for n in names]
    different = [float(embeddings[(a, va)] @ embeddings[(b, vb)]) for i, a in enumerate(names) for b in names[i + 1:]
                 for va in ("original", "re-framed") for vb in ("original", "re-framed")]
    data = {"same_person": [round(c, 4) for c in same], "different_people": [round(c, 4) for c in different]}
    detail = f"same person cosine {min(same):.3f}-{max(same):.3f}, different people {min(different):.3f}-{max(different):.3f}"
    if min(same) - max(different) < SAME_PERSON_MARGIN:
        return Check("faces: recognition", Verdict.FAIL, detail + f" (needs a margin of {SAME_PERSON_MARGIN})",
                     "the embeddings do not separate people: check the recogniser's input (RGB, 112x112 aligned "
                     "crop) and output dequantisation against docs/hardware-evidence.md", data=data)
    return Check("faces: recognition", Verdict.PASS, detail, data=data)


# ---- OCR ----

async def ocr_page(client: Client, model: str, dictionary: Path | None) -> Check:
    """The bundled page's lines, read exactly (order-insensitive); a class shift is diagnosed.

    Read twice: as bundled (1280x960, a frame scaled into the detector input) and at 640x480,
    which fits at Immich's own detector size and so goes through the detector's level table
    (`vision.ocr_levels`), which relies on the HEF's compiled-in normalisation.
    """
    page = manifest()["page"]
    entries = {"ocr": {kind: {"modelName": model, **spec} for kind, spec in IMMICH_OCR.items()}}
    pixels = asset_pixels(page["file"])
    small = np.asarray(Image.fromarray(pixels).resize(OCR_SMALL_PAGE, Image.Resampling.LANCZOS))
    expected = page["lines"]
    data: dict[str, Any] = {"expected": expected}
    for label, image in (("as bundled", asset_bytes(page["file"])), (SMALL_PAGE_LABEL, jpeg(small))):
        answer = await client.predict(entries, image=image)
        if answer[0] != 200:
            return Check("ocr: page", Verdict.FAIL, f"{label}: {_error(answer)}", "see the worker's log")
        read = answer[1]["ocr"]["text"]
        data[label] = {"read": read, "text_scores": answer[1]["ocr"]["textScore"]}
        boxes = np.asarray(answer[1]["ocr"]["box"], dtype=np.float64)
        if boxes.size and not (0.0 <= boxes.min() and boxes.max() <= 1.0):
            return Check("ocr: page", Verdict.FAIL, "boxes are not normalised to 0..1", "a worker bug: report it", data=data)
        if sorted(read) == sorted(expected):
            continue
        missing = [line for line in expected if line not in read]
        fix = "compare the recogniser HEF with docs/hardware-evidence.md (input colour order, class layout)"
        if label == SMALL_PAGE_LABEL:
            fix = ("read as bundled but not at Immich's input size, whose frame goes through the level table "
                   "(vision/ocr_levels.py): compare the detector HEF's input normalisation with "
                   "docs/hardware-evidence.md §1.15")
        shift = _class_shift(missing, read, dictionary)
        if shift:
            fix = (f"the text matches the page with every character shifted by {shift:+d} in the dictionary: the "
                   "recogniser's class layout differs from blank + ppocrv5_dict.txt + space")
        return Check("ocr: page", Verdict.FAIL, f"{label}: {len(missing)} of {len(expected)} lines not read exactly: "
                     f"read {read}", fix, data=data)
    return Check("ocr: page", Verdict.PASS, f"all {len(expected)} lines read exactly, as bundled and {SMALL_PAGE_LABEL}",
                 data=data)


async def ocr_colour_order(client: Client, model: str, configured: str) -> Check:
    """A coloured page read as sent and with red and blue swapped: the configured order must read no worse."""
    page = manifest()["colour_page"]
    pixels = asset_pixels(page["file"])
    entries = {"ocr": {kind: {"modelName": model, **spec} for kind, spec in IMMICH_OCR.items()}}
    readings = {}
    for label, image in (("as configured", pixels), ("swapped", np.ascontiguousarray(pixels[..., ::-1]))):
        answer = await client.predict(entries, image=jpeg(image))
        if answer[0] != 200:
            return Check("ocr: colour order", Verdict.FAIL, _error(answer), "see the worker's log")
        ocr = answer[1]["ocr"]
        exact = sum(line in ocr["text"] for line in page["lines"])
        readings[label] = {"exact": exact, "mean_score": float(np.mean(ocr["textScore"])) if ocr["textScore"] else 0.0,
                           "read": ocr["text"]}
    mine, other = readings["as configured"], readings["swapped"]
    detail = (f"OCR_RECOGNISER_CHANNELS={configured}: {mine['exact']}/{len(page['lines'])} lines exact, mean score "
              f"{mine['mean_score']:.3f}; channels swapped: {other['exact']}/{len(page['lines'])}, {other['mean_score']:.3f}")
    better = other["exact"] > mine["exact"] or (
        other["exact"] == mine["exact"] and other["mean_score"] > mine["mean_score"] + COLOUR_SCORE_MARGIN)
    if better:
        flipped = "rgb" if configured == "bgr" else "bgr"
        return Check("ocr: colour order", Verdict.FAIL, detail + " (the detector sees the swap too)",
                     f"set OCR_RECOGNISER_CHANNELS={flipped}, then run doctor again", data=readings)
    return Check("ocr: colour order", Verdict.PASS, detail, data=readings)


def _class_shift(missing: list[str], read: list[str], dictionary: Path | None) -> int | None:
    """k such that replacing each character by the dictionary entry k places further gives what was read."""
    if dictionary is None or not dictionary.is_file() or not missing:
        return None
    from ml_target.text.ocr_dictionary import load_dictionary

    classes = load_dictionary(dictionary)
    index = {c: i for i, c in enumerate(classes) if c}
    for shift in (-2, -1, 1, 2):
        def shifted(text: str) -> str:
            return "".join(classes[index[c] + shift] if c in index and 0 <= index[c] + shift < len(classes) else "?"
                           for c in text)
        if any(shifted(line) in read for line in missing):
            return shift
    return None


# ---- smart search ----

def colour_disc(rgb: tuple[int, int, int]) -> np.ndarray:
    image = np.full((300, 400, 3), 128, np.uint8)
    cv2.circle(image, (200, 150), 80, rgb, -1, lineType=cv2.LINE_AA)
    return image


async def _embeddings(client: Client, model: str, images: list[bytes], texts: list[str]) -> tuple[np.ndarray, np.ndarray] | str:
    vectors = []
    for payload in [{"image": i} for i in images] + [{"text": t} for t in texts]:
        kind = "visual" if "image" in payload else "textual"
        answer = await client.predict({"clip": {kind: {"modelName": model}}}, **payload)
        if answer[0] != 200:
            return _error(answer)
        vectors.append(np.array(json.loads(answer[1]["clip"]), dtype=np.float64))
    matrix = np.stack(vectors)
    return matrix[: len(images)], matrix[len(images):]


def _matched(images: np.ndarray, texts: np.ndarray) -> tuple[bool, np.ndarray]:
    similarity = images @ texts.T
    n = len(images)
    return bool((similarity.argmax(1) == np.arange(n)).all() and (similarity.argmax(0) == np.arange(n)).all()), similarity


async def clip_colours(client: Client, model: str) -> Check:
    """Colour discs against "a <colour> circle"; on failure, the same with the channels swapped."""
    names = list(COLOURS)
    captions = [f"a {name} circle" for name in names]
    discs = [colour_disc(COLOURS[name]) for name in names]
    result = await _embeddings(client, model, [jpeg(d) for d in discs], captions)
    if isinstance(result, str):
        return Check("smart search: colours", Verdict.FAIL, result, "see the worker's log")
    ok, similarity = _matched(*result)
    data = {"captions": captions, "similarity": np.round(similarity, 4).tolist()}
    margin = float(np.min(np.diag(similarity) - np.sort(similarity, axis=1)[:, -2])) if ok else None
    if ok:
        return Check("smart search: colours", Verdict.PASS,
                     f"{len(names)} colour discs and captions match one to one (smallest margin {margin:.3f})", data=data)
    swapped = await _embeddings(client, model, [jpeg(np.ascontiguousarray(d[..., ::-1])) for d in discs], [])
    if not isinstance(swapped, str) and _matched(swapped[0], result[1])[0]:
        return Check("smart search: colours", Verdict.FAIL,
                     "captions do not match the discs, but do match the discs with red and blue swapped",
                     "the image HEF expects BGR channels where the catalog says RGB (docs/hardware-evidence.md)",
                     data=data)
    picked = [captions[i] for i in similarity.argmax(1)]
    return Check("smart search: colours", Verdict.FAIL, f"discs {names} matched captions {picked}",
                 "the text or image cut is wrong (positions, final LayerNorm, projection, crop): see "
                 "`text cut` above and docs/hardware-evidence.md", data=data)


async def clip_photos(client: Client, model: str, emulated: bool) -> Check:
    """Photographs against their captions; needs a real model."""
    if emulated:
        return Check("smart search: photos", Verdict.SKIP, "the emulator's stand-in CLIP knows colours, not objects")
    photos = manifest()["photos"]
    result = await _embeddings(client, model, [asset_bytes(n) for n in photos], [p["caption"] for p in photos.values()])
    if isinstance(result, str):
        return Check("smart search: photos", Verdict.FAIL, result, "see the worker's log")
    ok, similarity = _matched(*result)
    data = {"captions": [p["caption"] for p in photos.values()], "similarity": np.round(similarity, 4).tolist()}
    if ok:
        return Check("smart search: photos", Verdict.PASS, f"{len(photos)} photographs and captions match one to one", data=data)
    return Check("smart search: photos", Verdict.FAIL, "photographs and captions do not match one to one",
                 "the text or image cut is wrong: see docs/hardware-evidence.md", data=data)


async def run_probes(client: Client, served: Served, dictionary: Path | None) -> list[Check]:
    """Every probe the served tasks allow, in the order a reader would debug them."""
    checks = []
    if served.faces:
        checks.append(await face_detection(client, served.faces))
        if served.faces_recognition:
            checks.append(await face_recognition(client, served.faces))
        else:
            checks.append(Check("faces: recognition", Verdict.SKIP, "recognition is not served under Immich's names"))
    if served.ocr:
        checks.append(await ocr_page(client, served.ocr, dictionary))
        checks.append(await ocr_colour_order(client, served.ocr, served.ocr_channels))
    if served.clip:
        checks.append(await clip_colours(client, served.clip))
        checks.append(await clip_photos(client, served.clip, served.emulated))
    return checks
