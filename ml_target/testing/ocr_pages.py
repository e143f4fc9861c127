"""Rendered test pages with known text, and how to score OCR output against them.

Pages are drawn with Pillow's built-in scalable font (`ImageFont.load_default(size=...)`), so
tests need no font files and every phrase's position is known exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ml_target.results import TextLines

PHRASES = (
    "Hello World",
    "Invoice 2024-0815 total 129.95",
    "The quick brown fox jumps over the lazy dog",
    "Call 555 0123 before 9 pm",
    "Meeting room B4 at 10:30",
    "Open daily 08:00 to 22:00",
    "Order number 7350 4412 9981",
    "Please keep this door closed",
)


@dataclass(frozen=True)
class Phrase:
    """A drawn phrase and the pixel box (x0, y0, x1, y1) its ink occupies."""

    text: str
    box: tuple[int, int, int, int]


def render_page(
    width: int, height: int, lines: list[tuple[str, int, int, int]], background: int = 255
) -> tuple[np.ndarray, list[Phrase]]:
    """An RGB page with each (text, x, y, font size) drawn in black; returns the page and phrases."""
    image = Image.new("RGB", (width, height), (background,) * 3)
    draw = ImageDraw.Draw(image)
    phrases = []
    for text, x, y, size in lines:
        font = ImageFont.load_default(size=size)
        draw.text((x, y), text, font=font, fill=(0, 0, 0))
        phrases.append(Phrase(text, tuple(int(v) for v in draw.textbbox((x, y), text, font=font))))
    return np.asarray(image), phrases


def text_page(width: int, height: int, size: int, margin: int = 40) -> tuple[np.ndarray, list[Phrase]]:
    """A page filled with PHRASES in rows (cycling), `size` px font, line spacing 2.2 x size."""
    lines = []
    y = margin
    index = 0
    while y + size * 1.5 < height - margin:
        text = PHRASES[index % len(PHRASES)]
        font = ImageFont.load_default(size=size)
        if font.getlength(text) + margin < width - margin:
            lines.append((text, margin, y, size))
        index += 1
        y += int(size * 2.2)
    return render_page(width, height, lines)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_accuracy(expected: str, got: str) -> float:
    """1 - edit distance / expected length, floored at 0."""
    return max(0.0, 1.0 - edit_distance(expected, got) / len(expected))


def quad_centres(lines: TextLines) -> np.ndarray:
    """(N, 2) pixel centres of the recognised lines' quads."""
    return lines.detections.quads.reshape(-1, 4, 2).mean(axis=1)


def read_phrases(phrases: list[Phrase], lines: TextLines) -> list[str]:
    """For each phrase, the recognised text of the lines centred inside its box, left to right."""
    centres = quad_centres(lines)
    found = []
    for phrase in phrases:
        x0, y0, x1, y1 = phrase.box
        inside = [
            i for i, (cx, cy) in enumerate(centres) if x0 - 2 <= cx <= x1 + 2 and y0 - 2 <= cy <= y1 + 2
        ]
        inside.sort(key=lambda i: centres[i][0])
        found.append(" ".join(lines.text[i] for i in inside))
    return found


def page_accuracy(phrases: list[Phrase], lines: TextLines) -> float:
    """Character accuracy over all phrases of a page (a phrase not found counts as all wrong)."""
    got = read_phrases(phrases, lines)
    total = sum(len(p.text) for p in phrases)
    errors = sum(min(len(p.text), edit_distance(p.text, g)) for p, g in zip(phrases, got))
    return 1.0 - errors / total
