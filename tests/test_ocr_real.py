"""OCR on a real scan (scikit-image's `page`) against Immich's pipeline on the same PP-OCRv5 weights."""

from __future__ import annotations

from ml_target.testing.ocr_real import PAGE_TEXT, compare, real_images


async def test_scanned_page_reads_like_immichs_pipeline() -> None:
    """The enlarged scan: every line found, the long lines read exactly (they are read in windows
    with room after the text: without it "the two extreme parts of the" read "thetw eemepatsf h"),
    and at least Immich's character accuracy less 0.01. At the shipped size the detector misses the
    line Immich finds at box score 0.53 (ours 0.49): measured, not yet fixed (README)."""
    images = {image.name: image for image in real_images()}
    enlarged, shipped = await compare([images["scikit-image page, 2x"], images["scikit-image page"]])
    assert len(enlarged.worker_lines) == len(PAGE_TEXT)
    assert set(PAGE_TEXT[1:6]) <= set(enlarged.worker_lines)
    assert enlarged.exact >= 6 and enlarged.lines == 7
    assert enlarged.worker_accuracy >= enlarged.immich_accuracy - 0.01
    assert set(PAGE_TEXT[:4]) | {PAGE_TEXT[5]} <= set(shipped.worker_lines)
