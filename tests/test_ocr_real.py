"""OCR on a real scan (scikit-image's `page`) against Immich's pipeline on the same PP-OCRv5 weights.

A floor for what the worker reads today, not the issue's target (exact-line agreement >= 0.95, see
README "Real scans against Immich's pipeline"): on the enlarged scan every line is found, all but
one read as Immich reads them (Immich reads "objet", the worker "object") and the character accuracy
is Immich's. At the shipped size one line's DB box scores 0.49 against Immich's 0.53 and is lost;
the long lines are read right since windows begin and end in blank columns.
"""

from __future__ import annotations

from ml_target.testing.ocr_real import PAGE_TEXT, compare, real_images


async def test_scanned_page_reads_nearly_like_immichs_pipeline() -> None:
    images = {image.name: image for image in real_images()}
    enlarged, shipped = await compare([images["scikit-image page, 2x"], images["scikit-image page"]])
    assert len(enlarged.worker_lines) == len(PAGE_TEXT) and enlarged.lines == 7
    assert enlarged.exact >= 6
    assert set(PAGE_TEXT[:6]) <= set(enlarged.worker_lines)
    assert enlarged.worker_accuracy >= enlarged.immich_accuracy
    assert len(shipped.worker_lines) >= 6 and set(PAGE_TEXT[:4]) <= set(shipped.worker_lines)
    assert shipped.exact >= 4
