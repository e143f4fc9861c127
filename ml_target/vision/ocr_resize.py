"""Fitting a received image into the detector's fixed input, and mapping boxes back.

Immich resizes the image so that its shorter side is at most `maxResolution` (never enlarging),
rounds both sides to multiples of 32 (which stretches it slightly), resizes it with Pillow's Lanczos
filter and runs DBNet at that size. The Hailo detector has one fixed input (544x960). When Immich's
size fits in it, the frame is exactly Immich's input: the same size and filter, and pixel levels
that give the network Immich's input values (`ocr_levels`), at the top-left corner on black
padding (the padding is cut off the probability map before post-processing). Otherwise the image
is scaled to fit with OpenCV, keeping the aspect ratio, never beyond the scale Immich would use,
and its levels are left as they are: measured on rendered pages (README), Immich's levels there
read small text better but lost spaces and repeated digits in larger text.

A portrait page fits only 544 px of height: a 1440x1920 preview lands at 408x544 and small text
is lost; even a 4:3 landscape preview lands at 725x544, below the 992x736 Immich would use.
Images that gain enough scale from it are therefore cut into up to `MAX_TILES` horizontal bands
of full width that overlap by a quarter of a band, each detected at the larger scale of a band.
Measured on rendered pages (README) this recovers small text; rotating a portrait page 90° into
the input instead was worse (the detector reads sideways text less well). A box touching a band's
inner edge is left to the neighbouring band, and boxes found in both bands of an overlap are merged
(see `dbnet.drop_duplicates`). Each band is a detector run: `max_tiles=1` trades small text for
device time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

MAX_RESOLUTION_CAP = 16384  # any larger request changes nothing: the detector input is far smaller
MAX_TILES = 3
MIN_TILE_GAIN = 1.2  # bands must enlarge the image this much over one frame to be worth their cost
TILE_OVERLAP = 0.25  # of a band's height
EDGE_MARGIN_PX = 2  # input pixels: a box this close to a band's inner edge was cut by it


def _round32(value: int) -> int:
    """Python's round-half-to-even of value/32, times 32, at least 32 (as Immich sizes its input)."""
    return max(32, int(round(value / 32) * 32))


def immich_input_size(height: int, width: int, max_resolution: int) -> tuple[int, int]:
    """(height, width) of the detector input Immich would use for this image."""
    ratio = min(max_resolution / min(height, width), 1.0)
    return _round32(int(height * ratio)), _round32(int(width * ratio))


@dataclass(frozen=True)
class DetectionFit:
    """One detector frame: the band of rows [top, bottom) of the received image, resized to
    `resized` (height, width) at the input's top-left. `image` is the received (height, width);
    `immich_size` marks the frame that is exactly Immich's detector input (module doc)."""

    image: tuple[int, int]
    top: int
    bottom: int
    resized: tuple[int, int]
    immich_size: bool = False

    @property
    def scale(self) -> float:
        """Input pixels per received-image pixel (the smaller of the two axes)."""
        return min(self.resized[0] / (self.bottom - self.top), self.resized[1] / self.image[1])

    def to_image(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) x, y points from input pixels to received-image pixels (float32)."""
        rh, rw = self.resized
        factor = np.array([self.image[1] / rw, (self.bottom - self.top) / rh], dtype=np.float32)
        return (np.asarray(points, dtype=np.float32) * factor + np.array([0, self.top], np.float32)).astype(
            np.float32
        )

    def cut_by_band(self, quads: np.ndarray) -> np.ndarray:
        """(N,) bool: boxes (input pixels) touching an edge where the band meets another band."""
        if len(quads) == 0:
            return np.zeros((0,), dtype=bool)
        ys = quads[..., 1]
        cut = np.zeros(len(quads), dtype=bool)
        if self.top > 0:
            cut |= ys.min(axis=1) <= EDGE_MARGIN_PX
        if self.bottom < self.image[0]:
            cut |= ys.max(axis=1) >= self.resized[0] - 1 - EDGE_MARGIN_PX
        return cut


def _band_scale(height: int, width: int, input_hw: tuple[int, int], cap: float, bands: int) -> float:
    """Largest scale at which `bands` overlapping bands of full width cover the image."""
    in_h, in_w = input_hw
    coverage = bands - (bands - 1) * TILE_OVERLAP  # image height covered, in band heights
    return min(cap, in_w / width, in_h * coverage / height)


def plan_fit(
    height: int, width: int, input_hw: tuple[int, int], max_resolution: int, max_tiles: int = MAX_TILES
) -> list[DetectionFit]:
    """The detector frames for an image: one, or overlapping bands for a tall image.

    Immich's own input when it fits. Otherwise, bands are used only when they enlarge the image by
    `MIN_TILE_GAIN` or more (each band is a full detector run; a 16:9 image is already limited by
    its width), and then the fewest bands that reach 95% of the scale `max_tiles` bands would give.
    """
    cap_h, cap_w = immich_input_size(height, width, min(max_resolution, MAX_RESOLUTION_CAP))
    if cap_h <= input_hw[0] and cap_w <= input_hw[1]:
        return [DetectionFit((height, width), 0, height, (cap_h, cap_w), immich_size=True)]
    cap = min(cap_h / height, cap_w / width)
    best = _band_scale(height, width, input_hw, cap, max_tiles)
    single = _band_scale(height, width, input_hw, cap, 1)
    bands = 1
    if best >= MIN_TILE_GAIN * single:
        bands = next(n for n in range(2, max_tiles + 1) if _band_scale(height, width, input_hw, cap, n) >= 0.95 * best)
    scale = _band_scale(height, width, input_hw, cap, bands)
    resized_w = min(input_hw[1], max(1, round(width * scale)))
    if bands == 1:
        resized_h = min(input_hw[0], max(1, round(height * scale)))
        return [DetectionFit((height, width), 0, height, (resized_h, resized_w))]
    band = min(height, math.floor(input_hw[0] / scale))
    tops = [round(i * (height - band) / (bands - 1)) for i in range(bands)]
    return [
        DetectionFit((height, width), top, top + band, (min(input_hw[0], round(band * scale)), resized_w))
        for top in tops
    ]


def holds(fit: DetectionFit, top: float, bottom: float) -> bool:
    """Whether rows [top, bottom] lie inside the band with their own height to spare at each edge
    where another band takes over: a box there, grown at the band's larger scale, would be cut by
    the edge and dropped (`cut_by_band`), and then no frame would keep it."""
    margin = bottom - top
    above = top >= fit.top + (margin if fit.top > 0 else 0)
    below = bottom <= fit.bottom - (margin if fit.bottom < fit.image[0] else 0)
    return above and below


def bands_for_rows(bands: list[DetectionFit], rows: list[tuple[float, float]]) -> list[DetectionFit]:
    """The bands to run for rows (top, bottom) of small text, in the order of `bands`.

    Rows no band holds (`holds`) get every band they touch: each then holds the part of the text
    the others cut. Rows a band holds need only one such band: one already chosen, else the one
    that holds the most of the rows, the nearest to theirs on a tie. So never more bands than the
    rows touch, and a sign in the overlap of two bands costs one."""
    holding = [[i for i, fit in enumerate(bands) if holds(fit, top, bottom)] for top, bottom in rows]
    chosen: set[int] = set()
    for (top, bottom), held in sorted(zip(rows, holding), key=lambda row: len(row[1])):
        if not held:
            chosen.update(i for i, fit in enumerate(bands) if top < fit.bottom and bottom > fit.top)
        elif chosen.isdisjoint(held):
            middle = (top + bottom) / 2
            chosen.add(min(held, key=lambda i: (
                -sum(i in h for h in holding), abs((bands[i].top + bands[i].bottom) / 2 - middle)
            )))
    return [fit for i, fit in enumerate(bands) if i in chosen]


def _resize(band: np.ndarray, fit: DetectionFit) -> np.ndarray:
    rh, rw = fit.resized
    if band.shape[:2] == (rh, rw):
        return band
    if fit.immich_size:
        return np.asarray(Image.fromarray(band).resize((rw, rh), Image.Resampling.LANCZOS))
    shrinking = rh < band.shape[0] or rw < band.shape[1]
    return cv2.resize(band, (rw, rh), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def render_input(rgb: np.ndarray, fit: DetectionFit, input_hw: tuple[int, int], immich_levels: np.ndarray) -> np.ndarray:
    """The detector frame, in BGR (the detector's order, `tasks.ocr`): the band of the RGB image
    resized into the top-left of a black input; Immich's input (`fit.immich_size`) mapped through
    `immich_levels` (BGR order; module doc).

    The channels are reversed after the resize, on the small frame: resizing treats each channel
    alone, so the frame is the same as from a BGR copy of the whole image, which cost a preview's
    worth of memory traffic per request."""
    rh, rw = fit.resized
    resized = np.ascontiguousarray(_resize(rgb[fit.top : fit.bottom], fit)[..., ::-1])
    frame = np.zeros((*input_hw, rgb.shape[2]), dtype=np.uint8)
    frame[:rh, :rw] = cv2.LUT(resized, immich_levels) if fit.immich_size else resized
    return frame
