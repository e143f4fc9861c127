"""The test rig's Immich cache has what Immich's libraries read, checked the way they read it.

(The libraries themselves run on it in tests/test_immich_libraries.py, where their environment exists.)
"""

from __future__ import annotations

import onnx
import onnxruntime as ort

from ml_target.testing import face_models
from ml_target.testing.face_rig import RIG_FACES
from ml_target.testing.verify_rig import OCR_MODEL, RAPIDOCR_CHARACTER_KEY, write_immich_ocr


def test_the_recogniser_carries_its_characters_as_rapidocr_reads_them(tmp_path):
    base = write_immich_ocr(tmp_path)
    session = ort.InferenceSession(str(base / "recognition" / "model.onnx"), providers=["CPUExecutionProvider"])
    characters = session.get_modelmeta().custom_metadata_map[RAPIDOCR_CHARACTER_KEY].splitlines()
    classes = session.get_outputs()[0].shape[-1]
    assert len(characters) + 2 == classes == 18385  # RapidOCR adds the CTC blank first and the space last
    assert characters[0] == "\u3000" and "blank" not in characters and characters[-1] != " "
    assert tmp_path.joinpath("ocr", OCR_MODEL) == base


def test_the_face_pack_has_insightfaces_layout_and_an_ir_immichs_onnxruntime_reads(tmp_path):
    base = face_models.write_face_pack(tmp_path, face_models.scrfd_heads(RIG_FACES), "buffalo_l")
    detector = onnx.load(str(base / "detection" / "model.onnx"))
    shapes = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in detector.graph.output]
    # buffalo_l's det_10g.onnx: scores, boxes, keypoints for strides 8/16/32, 2-D (anchors, channels)
    assert shapes == [[12800, 1], [3200, 1], [800, 1], [12800, 4], [3200, 4], [800, 4], [12800, 10], [3200, 10], [800, 10]]
    for path in (base / "detection" / "model.onnx", base / "recognition" / "model.onnx"):
        assert onnx.load(str(path)).ir_version <= 10  # as the OCR files; test_immich_libraries loads them with onnxruntime 1.23
