"""Inputs for `verify`: the user's images and queries, or a small built-in set.

Built-in images: five public-domain / CC0 photographs bundled with scikit-image (NASA's astronaut
portrait and rocket, the Hubble deep field; CC0 coffee cup and cat "Chelsea"), generated scenes of
awkward aspect ratios (portrait, panorama, a thin strip: a squash resize cannot hide there), and
rendered text pages with known lines for OCR. They are encoded as JPEG at quality 80, as Immich's
server encodes the previews it sends, so the worker's JPEG decoding is part of what is measured
(both sides decode the same bytes); a user's files are sent byte for byte.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
PREVIEW_QUALITY = 80  # Immich's default preview JPEG quality (immich-protocol.md §3.2)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field")
QUERIES = (
    "a photo of an astronaut",
    "a cup of coffee on a table",
    "a cat",
    "a rocket on the launch pad",
    "stars and galaxies in the night sky",
    "a portrait of a person smiling",
    "colourful abstract pattern",
    "a document with printed text",
    "an invoice with a total amount",
    "opening hours on a sign",
    "a dog playing on the beach at sunset",
    "snow covered mountains",
    "a birthday party with friends",
    "a busy city street at night",
    "Grandma's garden: roses & tulips!",
    "red and blue stripes",
)
# Text pages: short lines (within the 320 x 48 recogniser frame of the Hailo HEF), then long ones,
# which Immich reads in one wide frame and a fixed-size HEF must split or squash.
PAGES = (
    ((1280, 960), 34, ("Hello World", "Total 129.95", "Call before 9 pm")),
    ((960, 1280), 30, ("Open daily", "Room B4 at 10:30", "Keep door closed")),
    (
        (1600, 900),
        36,
        (
            "Invoice 2024-0815 total 129.95",
            "Meeting room B4 at 10:30",
            "The quick brown fox jumps",
        ),
    ),
)
SHORT_LINE_PAGES = 2
WORD_GAP = 0.7  # font heights between words


@dataclass(frozen=True)
class Sample:
    """One input image: a name for the report and the exact bytes both sides receive."""

    name: str
    data: bytes

    def rgb(self) -> np.ndarray:
        """Decoded as Immich decodes: Pillow, RGB, no EXIF transpose."""
        with Image.open(io.BytesIO(self.data)) as image:
            return np.asarray(image.convert("RGB"))


def jpeg(array: np.ndarray, quality: int = PREVIEW_QUALITY) -> bytes:
    """JPEG bytes as Immich's preview encoder would produce them (default quality 80)."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def scene(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random colour scene (a few plane waves) with sensor-like noise."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    out = np.zeros((height, width, 3))
    for _ in range(6):
        fx, fy = rng.uniform(-12, 12, 2)
        phase = 2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi)
        out += np.cos(phase)[..., None] * rng.uniform(-80, 80, 3)
    return np.clip(out + 128 + rng.normal(0, 8, out.shape), 0, 255).astype(np.uint8)


def text_page(
    size: tuple[int, int], font_px: int, lines: tuple[str, ...]
) -> np.ndarray:
    """Black lines of text on white, 2.5 font heights apart, words drawn with clear gaps.

    The default font's own spaces are narrow enough that JPEG noise decides whether a recogniser
    sees them; generous word gaps make the expected text unambiguous, so the page measures the
    pipelines rather than the font.
    """
    image = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_px)
    for i, line in enumerate(lines):
        x, y = font_px * 1.5, int(font_px * (1.5 + 2.5 * i))
        for word in line.split(" "):
            draw.text((int(x), y), word, font=font, fill=(0, 0, 0))
            x += font.getlength(word) + WORD_GAP * font_px
    return np.asarray(image)


def builtin_images(
    *, photos: bool = True, scenes: int = 5, pages: int = len(PAGES)
) -> list[Sample]:
    """The built-in set; the keyword arguments let tests take a smaller one."""
    samples = []
    if photos:
        try:
            from skimage import data
        except (
            ImportError
        ):  # a production image without scikit-image: generated images only
            warnings.warn(
                "scikit-image is not installed: the built-in photographs are left out",
                stacklevel=2,
            )
        else:
            samples += [Sample(name, jpeg(getattr(data, name)())) for name in PHOTOS]
    rng = np.random.default_rng(20261124)
    shapes = ((427, 640), (640, 427), (300, 900), (97, 300), (1440, 1920))
    samples += [
        Sample(f"scene-{h}x{w}", jpeg(scene(rng, h, w))) for h, w in shapes[:scenes]
    ]
    samples += [Sample(f"page-{i}", jpeg(text_page(*PAGES[i]))) for i in range(pages)]
    return samples


def load_images(directory: Path) -> list[Sample]:
    """Every JPEG/PNG/WebP file under `directory` (recursively), sorted by path."""
    directory = Path(directory)
    files = sorted(
        p
        for p in directory.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not files:
        raise FileNotFoundError(
            f"no {'/'.join(IMAGE_SUFFIXES)} files under {directory}"
        )
    return [Sample(str(p.relative_to(directory)), p.read_bytes()) for p in files]


def load_queries(path: Path) -> list[str]:
    """One query per non-empty line."""
    queries = [
        line.strip()
        for line in Path(path).read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if not queries:
        raise ValueError(f"{path} holds no queries (one per line)")
    return queries
