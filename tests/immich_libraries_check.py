"""Run Immich's own OCR and face libraries (RapidOCR, insightface) on a test cache, as Immich builds them.

Executed by tests/test_immich_libraries.py with the Python of a separate environment that has the
libraries Immich's ML service runs (`IMMICH_LIBS_PYTHON`, made by scripts/run-tests.sh): this
project's environment does not have them, and must not need them. Reads a job description (JSON)
and prints the libraries' answers as JSON. Only the libraries' public classes are used, set up with
the arguments Immich's service passes (machine-learning/immich_ml/models/ocr/recognition.py,
facial_recognition/detection.py at v3.1.0).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
from insightface.model_zoo import ArcFaceONNX, RetinaFace
from insightface.utils.face_align import norm_crop
from rapidocr.ch_ppocr_rec import TextRecInput, TextRecognizer
from rapidocr.utils.typings import EngineType, LangRec


class OcrOptions(dict):
    """What Immich hands RapidOCR: a dict with `engine_type`, `lang_type` and `font_path` attributes."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.engine_type = EngineType.ONNXRUNTIME
        self.lang_type = LangRec.CH
        self.font_path = None


def session(path: str) -> ort.InferenceSession:
    return ort.InferenceSession(path, providers=["CPUExecutionProvider"])


def ocr(job: dict) -> dict:
    recogniser = TextRecognizer(OcrOptions(session=session(job["recognition"]), rec_batch_num=6, rec_img_shape=(3, 48, 320)))
    texts, scores = [], []
    for page in job["pages"]:  # one call per image, as Immich makes them (batches depend on the image's lines)
        crops = [cv2.imread(path) for path in page]  # BGR, as Immich hands them over (pil_to_cv2)
        result = recogniser(TextRecInput(img=crops))
        texts += list(result.txts)
        scores += [float(s) for s in result.scores]
    return {"text": texts, "score": scores}


def faces(job: dict) -> dict:
    detector = RetinaFace(model_file=job["detection"], session=session(job["detection"]))
    detector.prepare(ctx_id=0, det_thresh=job["min_score"], input_size=(640, 640))
    recogniser = ArcFaceONNX(model_file=job["recognition"], session=session(job["recognition"]))
    recogniser.prepare(ctx_id=0)
    answers = []
    for path in job["images"]:
        bgr = cv2.imread(path)
        boxes, landmarks = detector.detect(bgr)
        embeddings = [recogniser.get_feat(norm_crop(bgr, kps)).reshape(-1).tolist() for kps in landmarks]
        answers.append({"boxes": boxes.tolist(), "landmarks": landmarks.tolist(), "embeddings": embeddings})
    return {"images": answers}


if __name__ == "__main__":
    job = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps({"ocr": ocr(job["ocr"]), "faces": faces(job["faces"])}))
