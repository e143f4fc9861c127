"""OCR on a real scan (scikit-image's `page`) against Immich's pipeline on the same PP-OCRv5 weights.

A floor for what the worker reads today, not the issue's target (exact-line agreement >= 0.95, see
README "Real scans against Immich's pipeline"): on the enlarged scan every line is found, all but
one read as Immich reads them (Immich reads "objet", the worker "object") and the character accuracy
is Immich's. At the shipped size one line's DB box scores 0.49 against Immich's 0.53 and is lost;
the long lines are read right since windows begin and end in blank columns.

OpenCV's book page has lines of about 90 characters, read by the worker in three or four 320-px
windows and by Immich in one crop: the worker gives Immich's search index the same words on 12 of
its 13 lines (the 13th is Immich's "stil" for "still"); exact agreement is lower, since either side
now and then reads a leading space the other does not.
"""

from __future__ import annotations

import pytest

from ml_target.testing.ocr_real import BOOK_TEXT, PAGE_TEXT, compare, missing_real_text, real_images


async def test_scanned_page_reads_nearly_like_immichs_pipeline() -> None:
    images = {image.name: image for image in real_images()}
    enlarged, shipped = await compare([images["scikit-image page, 2x"], images["scikit-image page"]])
    assert len(enlarged.worker_lines) == len(PAGE_TEXT) and enlarged.lines == 7
    assert enlarged.exact >= 6
    assert set(PAGE_TEXT[:6]) <= set(enlarged.worker_lines)
    assert enlarged.worker_accuracy >= enlarged.immich_accuracy
    assert len(shipped.worker_lines) == len(PAGE_TEXT) and set(PAGE_TEXT[:4]) <= set(shipped.worker_lines)
    assert shipped.exact >= 4
    assert shipped.worker_accuracy >= shipped.immich_accuracy
    assert enlarged.immich_alone <= 6 and shipped.immich_alone <= 6  # Immich disagrees with itself


async def test_a_book_page_of_long_lines_gives_immichs_search_the_same_words() -> None:
    if missing := missing_real_text():
        pytest.skip(f"OpenCV's sample pages are not fetched ({', '.join(missing)}): run scripts/fetch-real-text.sh")
    images = {image.name: image for image in real_images()}
    page, rotated = await compare([images["OpenCV imageTextN"], images["OpenCV imageTextR"]])
    assert [line.strip() for line in page.worker_lines] == list(BOOK_TEXT)
    assert page.lines == 13 and page.same_tokens >= 12 and page.exact >= 8
    assert page.worker_accuracy >= page.immich_accuracy
    assert len(rotated.worker_lines) == 13 and rotated.same_tokens == rotated.exact == 13
    assert rotated.worker_accuracy >= rotated.immich_accuracy


async def test_immich_reads_its_own_lines_differently_beside_other_lines() -> None:
    """Immich's self-agreement, each line alone against its batch, is under the issue's 0.95
    exact-line target on these images: a ceiling no fixed-width recogniser can be held above."""
    results = await compare()
    alone, lines = sum(r.immich_alone for r in results), sum(len(r.immich_lines) for r in results)
    assert lines >= 14 and alone < 0.95 * lines
