"""Does `FAST_JPEG_DECODE` move CLIP image embeddings, and does it change what search finds?

Pixel differences of the 224-px crop (`ml_target.benchmarks.decoding`) say little about the
embedding: what matters is how far a real-size image encoder's output moves, and whether rankings
built from fast-decoded embeddings agree with those of the exact decode. This runs an Immich-style
visual ONNX (input `image` 1x3xSxS float32, CLIP normalisation applied here as Immich applies it;
Immich's own `ViT-B-32__openai/visual/model.onnx` when you have its cache, else the randomly
initialised real-size network of scripts/make_random_clip_visual.py) on a varied set of previews,
both ways, and reports:

- cosine between the exact and the fast embedding of each preview (min, 5th percentile, mean);
- retrieval agreement on a library of distinct pictures (seeded crops of every photograph, as
  previews): each picture's exact embedding as a query against the library embedded exactly and
  embedded fast; the share of the top-k both rankings agree on (mean and min over queries). Near
  duplicates (the same picture at two qualities) are kept out of the library: their order is
  decided by differences of 1e-6 either way and would measure ties, not the decode;
- the decode + crop CPU time of both paths.

The cosine set: every benchmark photograph and the doctor's photographs as Immich previews (1440 px
short side, q80, 4:2:0), each also at 720 px, as a centre-cut portrait, as q95 4:4:4, as an RGB
greyscale picture and as a one-channel greyscale JPEG.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ml_target.benchmarks.decoding import exact_crop, reduced_crop
from ml_target.benchmarks.photos import encode_jpeg, preview_pixels, to_preview_size

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
TOP_K = 5
CROPS_PER_PHOTO = 8
CROP_SEED = 20261203
THRESHOLDS = {"cosine_min": 0.9999, "top_k_overlap_mean": 0.99}  # issue 20: below either, exact is the default


@dataclass(frozen=True)
class Preview:
    name: str
    jpeg: bytes


def _grey_jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)).save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _high_quality(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=95, subsampling="4:4:4")
    return buffer.getvalue()


def photographs() -> dict[str, np.ndarray]:
    """The benchmark's scikit-image photographs and the doctor's bundled ones, at preview size."""
    pictures = dict(preview_pixels())
    assets = Path(__file__).resolve().parents[1] / "doctor" / "assets"
    for path in sorted(assets.glob("*.jpg")):
        pictures.setdefault(path.stem, to_preview_size(np.asarray(Image.open(path).convert("RGB"))))
    return pictures


def preview_set() -> list[Preview]:
    """Six variants of every photograph (module docstring)."""
    previews = []
    for name, pixels in photographs().items():
        height, width = pixels.shape[:2]
        portrait = pixels[:, max(0, (width - height * 2 // 3) // 2):][:, : height * 2 // 3]
        grey = np.repeat(cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
        previews += [
            Preview(f"{name}", encode_jpeg(pixels)),
            Preview(f"{name}/720", encode_jpeg(to_preview_size(pixels, 720))),
            Preview(f"{name}/portrait", encode_jpeg(np.ascontiguousarray(portrait))),
            Preview(f"{name}/q95-444", _high_quality(pixels)),
            Preview(f"{name}/grey-rgb", encode_jpeg(grey)),
            Preview(f"{name}/grey-1ch", _grey_jpeg(pixels)),
        ]
    return previews


def library_set(crops_per_photo: int = CROPS_PER_PHOTO) -> list[Preview]:
    """Distinct pictures for the retrieval test: seeded windows (45-85 % of each side) of every photograph."""
    rng = np.random.default_rng(CROP_SEED)
    library = []
    for name, pixels in photographs().items():
        height, width = pixels.shape[:2]
        for i in range(crops_per_photo):
            h, w = (int(side * rng.uniform(0.45, 0.85)) for side in (height, width))
            top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
            window = to_preview_size(np.ascontiguousarray(pixels[top:top + h, left:left + w]))
            library.append(Preview(f"{name}/crop{i}", encode_jpeg(window)))
    return library


class VisualModel:
    """An Immich-style visual ONNX: crops in, float32 embeddings out."""

    def __init__(self, path: Path, size: int = 224) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.size = size

    def embed(self, crop: np.ndarray) -> np.ndarray:
        x = (crop.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
        out = self.session.run(None, {self.input: x.transpose(2, 0, 1)[None]})[0].reshape(-1)
        return out / np.linalg.norm(out)


def _timed(fn: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    started = time.process_time()
    result = fn()
    return result, 1000.0 * (time.process_time() - started)


def top_k_overlap(queries: np.ndarray, exact: np.ndarray, fast: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """Per query: |top-k(exact library) ∩ top-k(fast library)| / k, the query itself left out."""
    overlaps = []
    for i, query in enumerate(queries):
        others = np.delete(np.arange(len(exact)), i)
        best_exact = set(others[np.argsort(-(exact[others] @ query))[:k]])
        best_fast = set(others[np.argsort(-(fast[others] @ query))[:k]])
        overlaps.append(len(best_exact & best_fast) / k)
    return np.array(overlaps)


def _both_ways(model: VisualModel, previews: list[Preview]) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    exact, fast, rows = [], [], []
    for preview in previews:
        exact_pixels, ms_exact = _timed(lambda: exact_crop(preview.jpeg, model.size))
        fast_pixels, ms_fast = _timed(lambda: reduced_crop(preview.jpeg, model.size))
        e, f = model.embed(exact_pixels), model.embed(fast_pixels)
        exact.append(e)
        fast.append(f)
        rows.append({"preview": preview.name, "cosine": float(e @ f), "exact_cpu_ms": ms_exact, "fast_cpu_ms": ms_fast,
                     "max_pixel_diff": int(np.abs(exact_pixels.astype(int) - fast_pixels).max())})
    return np.stack(exact), np.stack(fast), rows


def measure(visual_onnx: Path, previews: list[Preview] | None = None, library: list[Preview] | None = None) -> dict[str, object]:
    """Embeddings of every preview and library picture both ways; the figures of the module docstring."""
    model = VisualModel(visual_onnx)
    previews = previews or preview_set()
    library = library or library_set()
    exact, fast, per_preview = _both_ways(model, previews)
    library_exact, library_fast, library_rows = _both_ways(model, library)
    cosines = np.concatenate([np.sum(exact * fast, axis=1), np.sum(library_exact * library_fast, axis=1)])
    overlap = top_k_overlap(library_exact, library_exact, library_fast)
    exact_ms = [row["exact_cpu_ms"] for row in per_preview + library_rows]
    fast_ms = [row["fast_cpu_ms"] for row in per_preview + library_rows]
    per_preview = per_preview + library_rows
    summary = {
        "previews": len(previews) + len(library),
        "library": len(library),
        "cosine_min": float(cosines.min()),
        "cosine_p5": float(np.percentile(cosines, 5)),
        "cosine_mean": float(cosines.mean()),
        "top_k": TOP_K,
        "top_k_overlap_mean": float(overlap.mean()),
        "top_k_overlap_min": float(overlap.min()),
        "exact_cpu_ms_median": float(np.median(exact_ms)),
        "fast_cpu_ms_median": float(np.median(fast_ms)),
        "thresholds": THRESHOLDS,
    }
    summary["fast_is_good_enough"] = (summary["cosine_min"] >= THRESHOLDS["cosine_min"]
                                      and summary["top_k_overlap_mean"] >= THRESHOLDS["top_k_overlap_mean"])
    worst = sorted(per_preview, key=lambda row: row["cosine"])[:5]
    return {"model": str(visual_onnx), "summary": summary, "worst": worst, "per_preview": per_preview}


def write_report(report: dict[str, object], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "decode-fidelity.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    s = report["summary"]
    lines = [
        f"# FAST_JPEG_DECODE against the exact decode ({s['previews']} previews, model {report['model']})",
        "",
        "| cosine min | cosine p5 | cosine mean | top-5 overlap mean | top-5 overlap min | CPU ms exact | CPU ms fast |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {s['cosine_min']:.6f} | {s['cosine_p5']:.6f} | {s['cosine_mean']:.6f} | {s['top_k_overlap_mean']:.3f} | "
        f"{s['top_k_overlap_min']:.2f} | {s['exact_cpu_ms_median']:.1f} | {s['fast_cpu_ms_median']:.1f} |",
        "",
        "Lowest cosines: " + ", ".join(f"{w['preview']} {w['cosine']:.6f}" for w in report["worst"]),
        "",
        f"Fast decode keeps cosine >= {THRESHOLDS['cosine_min']} and top-5 overlap >= {THRESHOLDS['top_k_overlap_mean']}: "
        f"{'yes' if s['fast_is_good_enough'] else 'no'}",
    ]
    (out / "decode-fidelity.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
