"""A photo library in miniature for `bench --library`: stated shares of faces and text.

Immich's library scan sends every asset's preview (shorter side 1440 px, JPEG q80) to Smart Search,
Face Detection and OCR. What a photo costs depends on what it shows: faces add recogniser frames,
text adds recogniser windows, and the detector runs on every photo whether it holds text or not.
So the mix states its shares, and the report prints them next to the rates:

- orientation: 4:3 landscape (1920x1440), 4:3 portrait (1440x1920), 3:2 landscape (2160x1440);
- faces: none, one to three, or a group of five (the astronaut's photographed head pasted onto
  another photograph, which the emulator's stand-in detector finds);
- text: none, some (a sign of two or three short lines, or a real scanned page held up in the
  photo: scikit-image's `page`), or a document page (a rendered page of phrases, or the real
  scan at preview size).

Every picture is public domain (scikit-image's bundled photographs, its `page` scan) or rendered
here, so the mix is the same on every machine.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import cv2
import numpy as np

from ml_target.benchmarks.photos import HEAD, _skimage_photo, encode_jpeg

ORIENTATIONS = {"4:3 landscape": (1440, 1920), "4:3 portrait": (1920, 1440), "3:2 landscape": (1440, 2160)}
# Photographs used as backgrounds: none of them holds a face or text the detectors would find.
BACKGROUNDS = ("coffee", "chelsea", "rocket", "camera", "hubble_deep_field", "coins", "brick", "retina")
FACE_KINDS = ("none", "1-3", "group")
TEXT_KINDS = ("none", "some", "document")
GROUP_FACES = 5
SIGN_LINES = (
    ("Platform 4  Trains to Airport", "Departures every 15 min"),
    ("OPEN 9 - 18", "Mon to Sat", "Closed Sundays"),
    ("Fresh coffee 2.50", "Croissant 1.80"),
)


@dataclass(frozen=True)
class LibraryPhoto:
    """One photo of the mix: what it shows, and its preview as Immich sends it."""

    name: str
    orientation: str
    faces: str
    face_count: int
    text: str
    jpeg: bytes


@dataclass(frozen=True)
class Mix:
    """How many of `photos` photos show each kind of content (counts, in the order of the kinds)."""

    photos: int = 20
    faces: tuple[int, int, int] = (10, 7, 3)  # none, 1-3, group
    text: tuple[int, int, int] = (14, 4, 2)  # none, some, document
    orientation: tuple[int, int, int] = (10, 6, 4)  # 4:3 landscape, 4:3 portrait, 3:2 landscape

    def __post_init__(self) -> None:
        for label, counts in (("faces", self.faces), ("text", self.text), ("orientation", self.orientation)):
            if sum(counts) != self.photos or min(counts) < 0:
                raise ValueError(f"{label} counts {counts} must be non-negative and add up to {self.photos}")
        if self.text[2] > self.faces[0]:
            raise ValueError("every document page needs a faceless photo: more documents than photos without faces")

    def shares(self) -> dict[str, dict[str, float]]:
        """Share of photos of each kind, for the report."""
        return {
            "faces": dict(zip(FACE_KINDS, (c / self.photos for c in self.faces))),
            "text": dict(zip(TEXT_KINDS, (c / self.photos for c in self.text))),
            "orientation": dict(zip(ORIENTATIONS, (c / self.photos for c in self.orientation))),
        }


def _kinds(counts: tuple[int, ...], kinds: tuple[str, ...], seed: int) -> list[str]:
    """`counts[i]` copies of `kinds[i]` in a fixed shuffled order (one seed per property, so the
    properties do not line up: every group photo is not also a portrait)."""
    order = [kind for kind, count in zip(kinds, counts) for _ in range(count)]
    random.Random(seed).shuffle(order)
    return order


def _faceless_documents(faces: list[str], texts: list[str]) -> None:
    """Swap face kinds so that document pages show no face (a scanned page holds none)."""
    for i, text in enumerate(texts):
        if text == "document" and faces[i] != "none":
            j = next(j for j, f in enumerate(faces) if f == "none" and texts[j] != "document")
            faces[i], faces[j] = faces[j], faces[i]


def fill(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the aspect of `size` (height, width), then resize to it (bicubic)."""
    height, width = pixels.shape[:2]
    target_h, target_w = size
    scale = max(target_h / height, target_w / width)
    crop_h, crop_w = min(height, round(target_h / scale)), min(width, round(target_w / scale))
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return cv2.resize(pixels[top : top + crop_h, left : left + crop_w], (target_w, target_h), interpolation=cv2.INTER_CUBIC)


def paste_faces(canvas: np.ndarray, count: int) -> None:
    """`count` copies of the astronaut's head along the middle of `canvas`, large enough to detect."""
    head = _skimage_photo("astronaut")[HEAD]
    height, width = canvas.shape[:2]
    size = min(0.9 * width / count, 0.6 * height)  # head width in pixels
    for i in range(count):
        copy = cv2.resize(head, None, fx=size / head.shape[1], fy=size / head.shape[1], interpolation=cv2.INTER_CUBIC)
        cx, cy = width * (i + 0.5) / count, height * (0.5 if count < 3 else 0.45 + 0.1 * (i % 2))
        top = int(np.clip(cy - copy.shape[0] / 2, 0, height - copy.shape[0]))
        left = int(np.clip(cx - copy.shape[1] / 2, 0, width - copy.shape[1]))
        canvas[top : top + copy.shape[0], left : left + copy.shape[1]] = copy


def _sign(canvas: np.ndarray, lines: tuple[str, ...]) -> None:
    """A light sign with short lines of large text in the top third of the photo."""
    from ml_target.testing.ocr_pages import render_page

    height, width = canvas.shape[:2]
    size = max(36, width // 30)
    sign_w, sign_h = int(width * 0.6), int(size * (1.8 * len(lines) + 1))
    sign, _ = render_page(sign_w, sign_h, [(text, size, int(size * (0.6 + 1.8 * i)), size) for i, text in enumerate(lines)], 235)
    top, left = height // 8, (width - sign_w) // 2
    canvas[top : top + sign_h, left : left + sign_w] = sign


def _held_page(canvas: np.ndarray) -> None:
    """scikit-image's real scanned page, at twice its size, in the lower part of the photo."""
    page = _skimage_photo("page")
    page = cv2.resize(page, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
    height, width = canvas.shape[:2]
    page = page[: min(page.shape[0], height // 2), : min(page.shape[1], width - 40)]
    top, left = height - page.shape[0] - 40, (width - page.shape[1]) // 2
    canvas[top : top + page.shape[0], left : left + page.shape[1]] = page


def _document(size: tuple[int, int], index: int) -> np.ndarray:
    """A document page at preview size: rendered phrases (even index) or the real scan (odd)."""
    from ml_target.testing.ocr_pages import text_page

    if index % 2 == 0:
        page, _ = text_page(size[1], size[0], 24)
        return page
    return fill(_skimage_photo("page"), size)


def library_photos(mix: Mix = Mix()) -> list[LibraryPhoto]:
    """The mix's photos, each an Immich preview (JPEG q80), in a fixed order."""
    orientations = _kinds(mix.orientation, tuple(ORIENTATIONS), 1)
    faces = _kinds(mix.faces, FACE_KINDS, 2)
    texts = _kinds(mix.text, TEXT_KINDS, 3)
    _faceless_documents(faces, texts)
    one_to_three = itertools.cycle((1, 2, 3))
    signs = itertools.cycle(SIGN_LINES)
    photos = []
    documents = 0
    for i, (orientation, face, text) in enumerate(zip(orientations, faces, texts)):
        size = ORIENTATIONS[orientation]
        if text == "document":
            canvas = _document(size, documents).copy()
            documents += 1
        else:
            canvas = fill(_skimage_photo(BACKGROUNDS[i % len(BACKGROUNDS)]), size).copy()
        count = {"none": 0, "1-3": next(one_to_three), "group": GROUP_FACES}[face]
        if count:
            paste_faces(canvas, count)
        if text == "some":
            if i % 3 == 2:
                _held_page(canvas)
            else:
                _sign(canvas, next(signs))
        name = f"{i:02d} {orientation}, faces {face}, text {text}"
        photos.append(LibraryPhoto(name, orientation, face, count, text, encode_jpeg(canvas)))
    return photos
