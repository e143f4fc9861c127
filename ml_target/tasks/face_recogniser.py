"""Immich's own face recogniser, run on the host CPU: the compatible face mode.

The Hailo Model Zoo has no HEF of the recognisers inside Immich's packs (buffalo_l's `w600k_r50`
is a WebFace600K ResNet-50; the Zoo's ArcFaces are MS1MV3 models), and an embedding from another
recogniser lives in another space. So the worker runs the pack's very `recognition/model.onnx`
with onnxruntime, on crops made as Immich makes them, and its embeddings are Immich's own: stored
faces, people and clusters keep working, and switching between this worker and Immich's needs no
re-run. What it costs is host CPU (measured in /health and by `bench`).

What Immich v3.1 feeds the recogniser (immich-protocol.md §6.4; insightface 0.7.3's `ArcFaceONNX`,
whose `blobFromImages(..., swapRB=True)` turns Immich's BGR decode back into RGB): the 112 x 112
crop from `norm_crop` (5-point similarity onto the ArcFace template, bilinear, black border), in
RGB, NCHW float32, `(x - mean) / std` with insightface's rule for mean/std (0 and 1 when the graph
normalises itself, recognisable by `Sub` and `Mul` among its first nodes; else 127.5 and 127.5,
which is the case of every buffalo pack), all faces of a photo in one batch, and the raw output
rows (not L2-normalised) as embeddings.

Each request's faces run as one batch in a dedicated thread pool (`FACE_RECOGNITION_THREADS`
threads, onnxruntime limited to one thread per run), so the event loop never waits for it and
concurrent requests use the cores in parallel; the CPU time of every run is measured on its own
thread and reported per face.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from ml_target.errors import ConfigurationError
from ml_target.vision.align import ARCFACE_SIZE, align_face

THREAD_PREFIX = "face-recogniser"
FETCH_HINT = "run `python -m ml_target fetch-models` (it downloads Immich's own model or copies it from --immich-cache)"
_HEURISTIC_NODES = 8  # insightface looks at the first eight nodes of the graph


def insightface_normalisation(node_names: Sequence[str]) -> tuple[float, float]:
    """insightface's (mean, std) for a recogniser graph, from its first node names.

    A graph that starts with `Sub`/`_minus` and `Mul`/`_mul` nodes (MXNet exports) normalises its
    input itself and gets raw pixels (0, 1); every other graph gets (127.5, 127.5).
    """
    first = list(node_names)[:_HEURISTIC_NODES]
    subtracts = any(name.startswith(("Sub", "_minus")) for name in first)
    multiplies = any(name.startswith(("Mul", "_mul")) for name in first)
    return (0.0, 1.0) if subtracts and multiplies else (127.5, 127.5)


def recogniser_blob(crops: np.ndarray, mean: float, std: float) -> np.ndarray:
    """(N, 112, 112, 3) uint8 RGB crops -> (N, 3, 112, 112) float32 `(x - mean) / std`."""
    blob = (crops.astype(np.float32) - np.float32(mean)) / np.float32(std)
    return np.ascontiguousarray(blob.transpose(0, 3, 1, 2))


class HostRecogniser:
    """One pack's `recognition/model.onnx` on the CPU, with a thread pool and cost counters.

    Start-up refuses a missing file, an unreadable one, or one whose interface is not a
    recogniser's ((N, 3, 112, 112) in, (N, D) out), each with the fix.
    """

    def __init__(self, pack: str, path: Path, *, threads: int) -> None:
        import onnx
        import onnxruntime as ort

        self.pack = pack
        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigurationError(
                f"{self.path} is missing: Immich's face recogniser for {pack!r}, which the compatible face mode runs "
                f"on the CPU; {FETCH_HINT}. (To use the Hailo ArcFace instead, set FACE_SERVE_ANY_MODEL_NAME=true "
                "and re-run face detection for all assets.)"
            )
        try:
            graph = onnx.load(str(self.path), load_external_data=False).graph
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            # The batch is the photo's face count: an arena would keep the largest group photo's
            # buffers for the life of the process.
            options.enable_cpu_mem_arena = False
            options.log_severity_level = 3
            self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnx and onnxruntime raise many unrelated types
            raise ConfigurationError(f"{self.path} is not a loadable ONNX model ({exc}); delete it and {FETCH_HINT}") from None
        self.mean, self.std = insightface_normalisation([node.name for node in graph.node])
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        shape = inputs[0].shape if len(inputs) == 1 else None
        if shape is None or len(shape) != 4 or list(shape[1:]) != [3, ARCFACE_SIZE, ARCFACE_SIZE] or len(outputs) != 1:
            raise ConfigurationError(
                f"{self.path} is not a face recogniser: expected one input (N, 3, 112, 112) and one output, found "
                f"{[(i.name, i.shape) for i in inputs]} -> {[(o.name, o.shape) for o in outputs]}; delete it and {FETCH_HINT}"
            )
        self._input = inputs[0].name
        self.fixed_batch = shape[0] == 1  # some exports fix the batch at 1: then faces run one by one
        self.dim = outputs[0].shape[-1] if isinstance(outputs[0].shape[-1], int) else None
        self.threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._faces = self._runs = 0
        self._cpu_s = self._wall_s = 0.0

    async def embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """One embedding row (float32, as the ONNX returns it) per face's five landmarks."""
        if len(landmarks) == 0:
            return np.zeros((0, self.dim or 0), np.float32)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=THREAD_PREFIX)
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._embed, image, landmarks)

    def _embed(self, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        started_cpu, started = time.thread_time(), time.perf_counter()
        crops = np.stack([align_face(image, points) for points in landmarks])
        blob = recogniser_blob(crops, self.mean, self.std)
        batches = [blob[i : i + 1] for i in range(len(blob))] if self.fixed_batch else [blob]
        rows = [self._session.run(None, {self._input: batch})[0] for batch in batches]
        embeddings = np.ascontiguousarray(np.concatenate(rows).reshape(len(blob), -1), dtype=np.float32)
        with self._lock:
            self._faces += len(blob)
            self._runs += len(batches)
            self._cpu_s += time.thread_time() - started_cpu
            self._wall_s += time.perf_counter() - started
        return embeddings

    def stats(self) -> dict[str, Any]:
        """Faces embedded so far and what they cost: CPU ms per face (alignment included), wall ms per run."""
        with self._lock:
            faces, runs, cpu_s, wall_s = self._faces, self._runs, self._cpu_s, self._wall_s
        return {
            "faces": faces,
            "runs": runs,
            "cpu_ms_per_face": round(1000 * cpu_s / faces, 2) if faces else None,
            "wall_ms_per_run": round(1000 * wall_s / runs, 2) if runs else None,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "file": str(self.path),
            "input_normalisation": {"mean": self.mean, "std": self.std, "channels": "RGB"},
            "batch": 1 if self.fixed_batch else "all faces of a photo",
            "threads": self.threads,
            **self.stats(),
        }

    def close(self) -> None:
        """Release the thread pool (it is re-created if the recogniser is used again); called after the last request."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
