"""The test cache as Immich's own libraries load it, and `verify`'s references against them.

Immich's ML service reads OCR models through RapidOCR (which takes the recogniser's characters from
the model's metadata) and face packs through insightface 0.7.3 (`RetinaFace`, `ArcFaceONNX`,
`norm_crop`). Those libraries are not part of this project's environment, so they run in a
separate one (`IMMICH_LIBS_PYTHON`, which scripts/run-tests.sh makes: insightface, rapidocr and
onnxruntime at Immich's pins) through tests/immich_libraries_check.py. The test builds the cache
exactly as `verify`'s rig does, then requires:

- RapidOCR loads the recogniser (no `dict_url` download) and reads, on the same line crops, exactly
  the texts of `verify`'s reference OCR pipeline (scores within 1e-3);
- insightface loads the pack and finds the same faces as `verify`'s reference detector (boxes and
  landmarks within 1 px), and its recogniser on its own `norm_crop` gives the reference's embedding
  (cosine >= 0.99999).

Skipped, saying so, when `IMMICH_LIBS_PYTHON` is not set.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from ml_target.testing import face_models
from ml_target.testing.face_rig import RIG_FACES
from ml_target.testing.verify_rig import OCR_MODEL, write_immich_ocr
from ml_target.verify.cache import ImmichCache
from ml_target.verify.reference_faces import ImmichFaces
from ml_target.verify.reference_ocr import ImmichOcr, crop_line
from ml_target.verify.samples import builtin_images

PYTHON = os.environ.get("IMMICH_LIBS_PYTHON")
CHECK = Path(__file__).with_name("immich_libraries_check.py")
ASSETS = Path(__file__).resolve().parents[1] / "ml_target" / "doctor" / "assets"
pytestmark = pytest.mark.skipif(
    not PYTHON, reason="IMMICH_LIBS_PYTHON is not set: no environment with Immich's insightface and rapidocr "
    "(scripts/run-tests.sh makes one in .venv-immich-libs)"
)


@pytest.fixture(scope="module")
def answers(tmp_path_factory):
    root = tmp_path_factory.mktemp("immich-libs")
    cache = root / "cache"
    write_immich_ocr(cache)
    face_models.write_face_pack(cache, face_models.scrfd_heads(RIG_FACES), "buffalo_l")
    immich = ImmichCache(cache)

    ocr, pages = ImmichOcr(immich.ocr(OCR_MODEL)), [s for s in builtin_images(photos=False, scenes=0, pages=2)]
    crops, expected, count = [], [], 0
    for page in pages:
        rgb = page.rgb()
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        quads = [q for q, _ in ocr.detect(rgb, min_score=0.5, max_resolution=736)]
        crops.append([])
        for quad, read in zip(quads, ocr.recognise(bgr, quads)):
            path = root / f"crop{count}.png"
            count += 1
            cv2.imwrite(str(path), crop_line(bgr, quad))
            crops[-1].append(str(path))
            expected.append(read)

    images = [ASSETS / "astronaut.jpg", ASSETS / "hopper.jpg"]
    faces = ImmichFaces(immich.faces("buffalo_l"))
    reference = []
    for path in images:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        reference.append(faces.embed(rgb, faces.detect(rgb, 0.7)))

    job = {
        "ocr": {"recognition": str(immich.ocr(OCR_MODEL).recognition), "pages": crops},
        "faces": {"detection": str(immich.faces("buffalo_l").detection), "recognition": str(immich.faces("buffalo_l").recognition),
                  "images": [str(p) for p in images], "min_score": 0.7},
    }
    (root / "job.json").write_text(json.dumps(job))
    proc = subprocess.run([PYTHON, str(CHECK), str(root / "job.json")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), expected, reference


def test_rapidocr_reads_the_lines_the_reference_reads(answers):
    got, expected, _ = answers
    assert len(expected) >= 6
    assert got["ocr"]["text"] == [text for text, _ in expected]
    np.testing.assert_allclose(got["ocr"]["score"], [score for _, score in expected], atol=1e-3)


def test_insightface_finds_the_reference_faces_and_embeds_them_alike(answers):
    got, _, reference = answers
    for image, faces in zip(got["faces"]["images"], reference):
        assert len(image["boxes"]) == len(faces) == len(RIG_FACES)
        order = np.argsort([-f.score for f in faces])
        boxes = np.array([faces[i].box for i in order])
        np.testing.assert_allclose(np.array(image["boxes"])[:, :4], boxes, atol=1.0)
        np.testing.assert_allclose(np.array(image["landmarks"]), np.array([faces[i].keypoints for i in order]), atol=1.0)
        for embedding, i in zip(image["embeddings"], order):
            ours = faces[i].embedding / np.linalg.norm(faces[i].embedding)
            theirs = np.asarray(embedding) / np.linalg.norm(embedding)
            assert float(ours @ theirs) >= 0.99999
