#!/usr/bin/env python3
"""Write the probe inputs `python -m ml_target doctor` ships with (ml_target/doctor/assets/).

Photographs come from packages, all public domain or CC0: NASA's portrait of Eileen Collins and
Chelsea the cat, the coffee cup and SpaceX's DSCOVR launch from scikit-image; the US Navy's
portrait of Grace Hopper from matplotlib's sample data. The text page is drawn with Pillow's
built-in font. Face boxes and landmarks were labelled by hand on these exact pixels (SCRFD's box
convention: forehead to chin, cheek to cheek). Needs scikit-image and matplotlib (the emulator and
verify extras); the files it writes are committed, so users and CI never run it.

    python scripts/make_doctor_assets.py [--out ml_target/doctor/assets]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OUT = Path(__file__).resolve().parents[1] / "ml_target" / "doctor" / "assets"
QUALITY = 90
FACES = {
    "astronaut.jpg": {
        "person": "Eileen Collins",
        "source": "scikit-image data.astronaut (NASA, public domain)",
        "box": [178, 75, 272, 180],
        "landmarks": [[203, 102], [248, 102], [225, 127], [208, 145], [242, 145]],
    },
    "hopper.jpg": {
        "person": "Grace Hopper",
        "source": "matplotlib sample_data/grace_hopper.jpg (US Navy, public domain)",
        "box": [165, 140, 360, 332],
        "landmarks": [[223, 188], [308, 187], [263, 240], [237, 275], [297, 275]],
    },
}
PHOTOS = {
    "chelsea.jpg": ("a photo of a cat", "scikit-image data.chelsea (CC0, Stefan van der Walt)"),
    "coffee.jpg": ("a cup of coffee", "scikit-image data.coffee (CC0, Rachel Michetti)"),
    "rocket.jpg": ("a rocket launch", "scikit-image data.rocket (SpaceX, public domain)"),
    "astronaut.jpg": ("an astronaut in an orange space suit", "see the faces"),
}
PAGE_LINES = ("HAILO DOCTOR PROBE", "Invoice 2024-0815 total 129.95", "The quick brown fox jumps", "Open daily 08:00 to 22:00")
PAGE_SIZE, FONT_SIZE, MARGIN = (1280, 960), 44, 80
# Coloured lines for the OCR colour-order probe: text and band differ strongly in brightness in
# both channel orders, so detection finds them either way and only the recogniser's reading differs.
COLOUR_LINES = (
    ("Coloured probe 4711", (140, 20, 20), (255, 250, 200)),
    ("Station Nord 08:15", (20, 60, 140), (200, 255, 230)),
    ("Fresh bread daily", (30, 110, 30), (255, 220, 240)),
)


def photographs() -> dict[str, np.ndarray]:
    import matplotlib.cbook
    import skimage.data

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))
    return {
        "astronaut.jpg": skimage.data.astronaut(),
        "hopper.jpg": hopper,
        "chelsea.jpg": skimage.data.chelsea(),
        "coffee.jpg": skimage.data.coffee(),
        "rocket.jpg": skimage.data.rocket(),
    }


def page() -> Image.Image:
    image = Image.new("RGB", PAGE_SIZE, (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_SIZE)
    step = (PAGE_SIZE[1] - 2 * MARGIN) // len(PAGE_LINES)
    for i, line in enumerate(PAGE_LINES):
        draw.text((MARGIN, MARGIN + i * step), line, font=font, fill=(0, 0, 0))
    return image


def colour_page() -> Image.Image:
    image = Image.new("RGB", PAGE_SIZE, (245, 245, 245))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=FONT_SIZE)
    step = (PAGE_SIZE[1] - 2 * MARGIN) // len(COLOUR_LINES)
    for i, (line, ink, band) in enumerate(COLOUR_LINES):
        top = MARGIN + i * step
        draw.rectangle((MARGIN // 2, top - 20, PAGE_SIZE[0] - MARGIN // 2, top + FONT_SIZE + 30), fill=band)
        draw.text((MARGIN, top), line, font=font, fill=ink)
    return image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    out = parser.parse_args(argv).out
    out.mkdir(parents=True, exist_ok=True)
    for name, pixels in photographs().items():
        Image.fromarray(pixels).save(out / name, quality=QUALITY)
    page().save(out / "page.png", optimize=True)
    colour_page().save(out / "colour_page.png", optimize=True)
    manifest = {
        "faces": FACES,
        "photos": {name: {"caption": caption, "source": source} for name, (caption, source) in PHOTOS.items()},
        "page": {"file": "page.png", "lines": list(PAGE_LINES), "source": "drawn with Pillow's built-in font"},
        "colour_page": {"file": "colour_page.png", "lines": [line for line, _, _ in COLOUR_LINES],
                        "source": "drawn with Pillow's built-in font"},
    }
    (out / "probes.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {len(list(out.iterdir()))} files to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
