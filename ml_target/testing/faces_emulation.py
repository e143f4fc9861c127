"""Emulator stand-ins for the SCRFD and ArcFace HEFs, so faces run end to end without hardware.

No SCRFD or ArcFace weights ship inside a package we can install (OpenCV 5 wheels no longer carry
Haar cascades; the PyPI YuNet/SCRFD wrappers download weights at run time), so the emulated networks
compute something else with the right *shape of behaviour*. Both are for development and CI only,
and need scikit-image (for its bundled cascade); the cascade costs about 0.1 s of CPU per frame.

- SCRFD stand-in: scikit-image's bundled LBP frontal-face cascade (OpenCV's
  `lbpcascade_frontalface`) finds faces in the letterboxed frame; each face is written into the
  nine SCRFD heads at the stride, cell and anchor a real SCRFD would fire (one anchor per face, its
  sibling silent), as distances / offsets in stride units. The emulator then quantises the heads with
  the HEF's QPs, and the worker's real decoder turns them back into boxes and landmarks. The
  cascade gives no landmarks and no confidence: landmarks are fixed proportions of the face box and
  every face scores `FACE_SCORE`.
- ArcFace stand-in: NOT a face recogniser. It blurs the aligned 112 x 112 crop, shrinks it to a
  6 x 6 grey-level picture, removes its mean and brightness scale, and embeds that unit vector in
  512 dimensions with a fixed orthonormal projection, so the cosine of two embeddings is the
  correlation of the two coarse pictures: the same face re-detected in another image (shifted,
  rescaled) scores above 0.9, different faces markedly lower. It knows nothing about identity
  beyond pixels; lighting, expression or pose changes break it, and its embeddings mean nothing
  to a real ArcFace.

The compute functions are registered with the emulator as `callable` computes; `write_face_models`
writes emulated HEFs that use them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from ml_target.networks import NETWORKS, NetworkSpec
from ml_target.vision.scrfd import Level, match_heads

FACE_SCORE = 0.9
DETECT_SCALE = 0.5  # the cascade runs on a half-size frame: 4x cheaper, faces >= 48 px
MIN_FACE = 24
# Overlapping windows a detection needs: 8 rather than the cascade's 4 drops its false positives on
# doctor's portraits (the reflection in the astronaut's helmet) and keeps every face of the bench's photos.
MIN_NEIGHBOURS = 8
# Landmarks (left eye, right eye, nose, left and right mouth corner) as fractions of the cascade's
# square box (roughly brows to lower lip). Slightly inside the true eyes on skimage's astronaut, but
# of the proportions tried these align re-detections of one face most alike, which the stand-in
# embedding needs.
LANDMARK_FRACTIONS = np.array([[0.30, 0.40], [0.70, 0.40], [0.50, 0.62], [0.35, 0.82], [0.65, 0.82]])
# insightface's anchor sizes per (stride, anchor): a face is written where its size fits best.
ANCHOR_SIZES = {(8, 0): 16, (8, 1): 32, (16, 0): 64, (16, 1): 128, (32, 0): 256, (32, 1): 512}
DESCRIPTOR_SIDE = 6
DESCRIPTOR_BLUR = 3.0
EMBEDDING_SEED = 20240611
EMBEDDING_NORM = 12.0  # entries ~0.5 rms: well inside the `fc1` edge's range, far above its 0.02 step


def _compute_name(spec: NetworkSpec, layout: str = "anchor-major") -> str:
    return f"ml_target.faces.{spec.hef}" + ("" if layout == "anchor-major" else f".{layout}")


@functools.cache
def _cascade():
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


def detect_faces(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) and landmarks (N, 5, 2) of frontal faces in an RGB frame, in its pixels."""
    grey = cv2.cvtColor(np.clip(frame, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, None, fx=DETECT_SCALE, fy=DETECT_SCALE, interpolation=cv2.INTER_AREA)
    found = _cascade().detect_multi_scale(
        img=small, scale_factor=1.2, step_ratio=1, min_size=(MIN_FACE, MIN_FACE), max_size=small.shape[::-1],
        min_neighbor_number=MIN_NEIGHBOURS,
    )
    boxes = np.array(
        [[d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]] for d in found], dtype=np.float64
    ).reshape(-1, 4) / DETECT_SCALE
    sizes = (boxes[:, 2:] - boxes[:, :2])[:, None, :]
    landmarks = boxes[:, None, :2] + LANDMARK_FRACTIONS[None] * sizes
    return boxes, landmarks


def anchor_for(size: float) -> tuple[int, int]:
    """(stride, anchor) whose insightface anchor size is closest to `size` on a log scale."""
    return min(ANCHOR_SIZES, key=lambda key: abs(np.log(size / ANCHOR_SIZES[key])))


def encode_heads(
    boxes: np.ndarray,
    landmarks: np.ndarray,
    score: float,
    levels: tuple[Level, ...],
    heads: dict[str, np.ndarray],
    layout: str = "anchor-major",
) -> None:
    """Write faces (detector-input pixels) into zeroed SCRFD heads (h, w, c), one anchor per face.

    `layout`: "anchor-major" is SCRFD's (an anchor's 4 distances, then the next anchor's);
    "channel-major" interleaves the two anchors' values, the deliberately wrong output order
    `doctor` must notice.
    """
    by_stride = {level.stride: level for level in levels}
    for box, points in zip(boxes, landmarks):
        stride, anchor = anchor_for(float(max(box[2] - box[0], box[3] - box[1])))
        level = by_stride[stride]
        h, w = heads[level.scores].shape[:2]
        centre = (box[:2] + box[2:]) / 2
        col, row = (int(np.clip(np.rint(c / stride), 0, n - 1)) for c, n in zip(centre, (w, h)))
        anchor_xy = np.array([col, row], dtype=np.float64) * stride
        heads[level.scores][row, col, anchor] = score
        distances = np.concatenate([anchor_xy - box[:2], box[2:] - anchor_xy]) / stride
        offsets = ((points - anchor_xy) / stride).ravel()
        if layout == "channel-major":
            heads[level.boxes][row, col, anchor::2] = distances
            heads[level.keypoints][row, col, anchor::2] = offsets
        else:
            heads[level.boxes][row, col, 4 * anchor : 4 * anchor + 4] = distances
            heads[level.keypoints][row, col, 10 * anchor : 10 * anchor + 10] = offsets


def scrfd_compute(spec: NetworkSpec, layout: str = "anchor-major") -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The emulator `callable` for an SCRFD HEF: cascade faces encoded as SCRFD heads (in `layout`)."""
    (input_edge,) = spec.inputs
    input_name = spec.vstream(input_edge)
    shapes = {spec.vstream(edge): edge.shape for edge in spec.outputs}
    levels = match_heads(shapes.items(), input_edge.shape[:2])

    def compute(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frames = inputs[input_name]
        out = {name: np.zeros((len(frames), *shape), dtype=np.float32) for name, shape in shapes.items()}
        for i, frame in enumerate(frames):
            boxes, landmarks = detect_faces(frame)
            encode_heads(boxes, landmarks, FACE_SCORE, levels, {name: out[name][i] for name in shapes}, layout)
        return out

    return compute


def face_descriptor(crop: np.ndarray) -> np.ndarray:
    """A unit-norm, zero-mean, blurred 6 x 6 grey-level picture of an aligned face crop."""
    grey = cv2.cvtColor(np.clip(crop, 0, 255).astype(np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    grey = cv2.GaussianBlur(grey, (0, 0), DESCRIPTOR_BLUR)
    small = cv2.resize(grey, (DESCRIPTOR_SIDE, DESCRIPTOR_SIDE), interpolation=cv2.INTER_AREA).ravel()
    small -= small.mean()
    norm = float(np.linalg.norm(small))
    return small / norm if norm > 0 else small


@functools.cache
def _projection(dim_in: int, dim_out: int) -> np.ndarray:
    """A fixed (dim_out, dim_in) matrix with orthonormal columns: it preserves inner products."""
    q, _ = np.linalg.qr(np.random.default_rng(EMBEDDING_SEED).normal(size=(dim_out, dim_in)))
    return q


def stand_in_embedding(crop: np.ndarray, dim: int = 512) -> np.ndarray:
    """The crop's descriptor embedded in `dim` dimensions; cosines equal descriptor correlations."""
    descriptor = face_descriptor(crop)
    return (EMBEDDING_NORM * _projection(descriptor.size, dim) @ descriptor).astype(np.float32)


def arcface_compute(spec: NetworkSpec) -> Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """The emulator `callable` for an ArcFace HEF: the pixel-based stand-in embedding per crop."""
    (input_edge,), (output_edge,) = spec.inputs, spec.outputs
    input_name, output_name = spec.vstream(input_edge), spec.vstream(output_edge)
    dim = int(np.prod(output_edge.shape))

    def compute(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        crops = inputs[input_name]
        embeddings = np.stack([stand_in_embedding(crop, dim) for crop in crops])
        return {output_name: embeddings.reshape(len(crops), *output_edge.shape)}

    return compute


DETECTORS = ("scrfd_2.5g", "scrfd_10g")
LAYOUTS = ("anchor-major", "channel-major")
RECOGNISERS = ("arcface_r50", "arcface_mobilefacenet")


def register() -> None:
    """Register the stand-in computes for every SCRFD and ArcFace HEF with the emulator."""
    from ml_target.hailo.emulator import register_compute

    for hef in DETECTORS:
        for layout in LAYOUTS:
            register_compute(_compute_name(NETWORKS[hef], layout), scrfd_compute(NETWORKS[hef], layout))
    for hef in RECOGNISERS:
        register_compute(_compute_name(NETWORKS[hef]), arcface_compute(NETWORKS[hef]))


def write_face_models(models_dir: Path, arch: str | None = None, layout: str = "anchor-major") -> list[Path]:
    """Write emulated HEFs for every SCRFD and ArcFace network backed by the stand-ins; register them.

    `layout="channel-major"` writes the detectors with the broken head layout (see `encode_heads`).
    """
    from ml_target.hailo.emulator.models_dir import default_build, write_hef

    arch = arch or default_build()

    register()
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for hef in DETECTORS + RECOGNISERS:
        spec = NETWORKS[hef].for_arch(arch)
        path = models_dir / f"{hef}.hef"
        name = _compute_name(spec, layout if hef in DETECTORS else "anchor-major")
        write_hef(path, spec=spec, compute={"kind": "callable", "name": name}, hw_arch=arch)
        paths.append(path)
    return paths
