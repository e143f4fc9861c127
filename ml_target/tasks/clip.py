"""Immich's smart-search task on Hailo CLIP/SigLIP HEFs: ("clip", "visual") and ("clip", "textual").

The configured backend (`CLIP_BACKEND`, `ml_target.catalog`) fixes both halves. A request for an
Immich model the backend does not serve faithfully is refused with the fix in the message, unless
the operator opted in with `CLIP_SERVE_ANY_MODEL_NAME` (same dimension only). Image: Immich's
short-side bicubic resize and truncating centre crop, uint8 crop to the HEF (normalisation is
in-network), L2. Text: the backend's declared cut around the text HEF (`ml_target.text.encoder`), L2.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from ml_target.catalog import ClipBackend, backend_for_setting, check_model_name
from ml_target.config import Settings
from ml_target.errors import BadRequest, ConfigurationError, DeviceError
from ml_target.hailo.types import EdgeInfo, Network
from ml_target.networks import NetworkSpec
from ml_target.results import Embedding
from ml_target.text.clean import clean_text
from ml_target.text.cut_probe import PROBE_QUERIES, CutEvidence, ProbeInputs, probe_text_cut
from ml_target.text.encoder import HostTextEncoder
from ml_target.text.host_weights import EXPORT_HINT, TextHostWeights, load_host_weights
from ml_target.text.tokenizer import ImmichTokenizer
from ml_target.vision.clip_transform import clip_crop
from ml_target.vision.decode import ReducedImage

# Search texts up to this length are tokenised on the event loop (well under a millisecond); longer
# ones, which Immich accepts up to the form's 1 MiB field limit and truncates, in a thread.
INLINE_TEXT_CHARS = 2048

log = logging.getLogger(__name__)
T = TypeVar("T")


class Runtime(Protocol):
    """The part of `ml_target.hailo.runtime.Runtime` this module needs."""

    def load(self, hef_path: Path, *, batch_size: int, priority: int) -> Network: ...


def unit_vector(features: np.ndarray, what: str) -> np.ndarray:
    """L2-normalised float32 copy; a zero or non-finite vector means the device returned garbage."""
    features = np.asarray(features, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(features.astype(np.float64)))
    if not np.isfinite(norm) or norm == 0.0:
        raise DeviceError(f"the {what} encoder returned a zero or non-finite vector")
    return (features / norm).astype(np.float32)


def _only_edge(edges: tuple[EdgeInfo, ...], role: str, network: Network) -> EdgeInfo:
    if len(edges) != 1:
        raise ConfigurationError(f"{network.name}: expected one {role} edge, found {len(edges)}")
    return edges[0]


def _options(options: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(options, Mapping):
        raise BadRequest(f"clip options must be an object, got {type(options).__name__}")
    return options


class _ClipHandler:
    """What both halves share: the backend, the model-name policy and /health."""

    task = "clip"
    depends_on = None

    def __init__(
        self, backend: ClipBackend, network: Network, *, serve_any_model_name: bool, timeout: float | None
    ) -> None:
        self.backend = backend
        self.network = network
        self.serve_any_model_name = serve_any_model_name
        self.timeout = timeout
        self.output = _only_edge(network.outputs, "output", network)

    def check_model(self, model_name: str) -> None:
        check_model_name(self.backend, model_name, serve_any_model_name=self.serve_any_model_name)

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend.id,
            "network": self.network.name,
            "dim": self.backend.dim,
            "model_names": list(self.backend.immich_names),
            "serve_any_model_name": self.serve_any_model_name,
        }

    async def _infer(self, frame: np.ndarray) -> np.ndarray:
        outputs = await self.network.infer(frame, timeout=self.timeout)
        return outputs[self.output.name]


class ClipVisualHandler(_ClipHandler):
    """("clip", "visual"): image -> L2-normalised image embedding."""

    type = "visual"
    modality = "image"
    # The pipeline may decode JPEGs at a reduced DCT scale that still covers the crop (1/4 scale for
    # Immich's 1440 px previews): 5x less CPU than decode + resize from full size, and the crop differs
    # from the exact one by under 2/255 on average (PSNR 39-49 dB on the benchmark's photos, see
    # docs/bench/bench.md).
    decode_size: tuple[int, int]

    def announce(self) -> AbstractContextManager[None]:
        """Before decoding: this request's frame is coming (cross-request bursts at low concurrency)."""
        return self.network.announce()

    def __init__(
        self,
        backend: ClipBackend,
        network: Network,
        *,
        serve_any_model_name: bool = False,
        timeout: float | None = None,
    ) -> None:
        super().__init__(backend, network, serve_any_model_name=serve_any_model_name, timeout=timeout)
        expected = (backend.image_size, backend.image_size, 3)
        edge = _only_edge(network.inputs, "input", network)
        if tuple(edge.shape) != expected:
            raise ConfigurationError(f"{network.name}: input {edge.shape} is not {expected} for {backend.id}")
        if int(np.prod(self.output.shape)) != backend.dim:
            raise ConfigurationError(f"{network.name}: output {self.output.shape} is not {backend.dim}-d")
        self.decode_size = (backend.image_size, backend.image_size)

    def parse_options(self, options: Mapping[str, Any]) -> None:
        """Immich sends no options for images; anything given is accepted and unused."""
        _options(options)

    async def run(self, payload: np.ndarray | ReducedImage | str, options: Any, upstream: Any | None) -> Embedding:
        if isinstance(payload, ReducedImage):
            crop = await asyncio.to_thread(clip_crop, payload.pixels, self.backend.image_size, payload.full_size)
        else:
            crop = await asyncio.to_thread(clip_crop, payload, self.backend.image_size)
        return Embedding(unit_vector(await self._infer(crop), "image"))


class ClipTextualHandler(_ClipHandler):
    """("clip", "textual"): query text -> L2-normalised text embedding."""

    type = "textual"
    modality = "text"

    def __init__(
        self,
        backend: ClipBackend,
        network: Network,
        encoder: HostTextEncoder,
        *,
        serve_any_model_name: bool = False,
        timeout: float | None = None,
        cut_evidence: CutEvidence | None = None,
    ) -> None:
        super().__init__(backend, network, serve_any_model_name=serve_any_model_name, timeout=timeout)
        self.encoder = encoder
        self.cut_evidence = cut_evidence
        edge = _only_edge(network.inputs, "input", network)
        if tuple(edge.shape) != encoder.input_shape or tuple(self.output.shape) != encoder.output_shape:
            raise ConfigurationError(f"{network.name}: edges do not match the host text encoder of {backend.id}")

    def parse_options(self, options: Mapping[str, Any]) -> None:
        """`language` is accepted and ignored: it has had no effect in Immich since v2.2.0."""
        language = _options(options).get("language")
        if language is not None and not isinstance(language, str):
            raise BadRequest(f"clip option language must be a string, got {language!r}")

    def describe(self) -> dict[str, Any]:
        cut = dataclasses.asdict(self.encoder.cut)
        probe = self.cut_evidence.to_dict() if self.cut_evidence else None
        return {**super().describe(), "text_cut": cut, "text_cut_probe": probe}

    async def run(self, payload: np.ndarray | str, options: Any, upstream: Any | None) -> Embedding:
        if len(payload) > INLINE_TEXT_CHARS:  # tokenising a 1 MiB text takes ~1 s: not on the event loop
            frame, tokens = await asyncio.to_thread(self.encoder.prepare, payload)
        else:
            frame, tokens = self.encoder.prepare(payload)
        output = await self._infer(frame)
        return Embedding(unit_vector(self.encoder.finish(output, tokens), "text"))


def clip_handlers(
    backend: ClipBackend,
    image_network: Network,
    text_network: Network,
    host_dir: Path,
    *,
    serve_any_model_name: bool = False,
    timeout: float | None = None,
    probe_cut: bool = False,
) -> tuple[ClipVisualHandler, ClipTextualHandler]:
    """Both handlers of `backend` on already loaded networks, with host text assets from `host_dir`.

    `probe_cut`: measure where the text HEF's cut lies (`ml_target.text.cut_probe`) and follow the
    measurement where it is definitive, instead of trusting the catalog's declaration alone.
    """
    weights = load_host_weights(host_dir, backend=backend.id)
    tokenizer = ImmichTokenizer.from_files(host_dir, context_length=backend.context_length, eos_token=backend.eos_token)
    text_in = _only_edge(text_network.inputs, "input", text_network)
    text_out = _only_edge(text_network.outputs, "output", text_network)
    evidence = None
    if probe_cut:
        evidence = _run_blocking(lambda: _probe_cut(backend, text_network, weights, tokenizer))
        _log_evidence(backend, evidence)
        backend = dataclasses.replace(backend, text_cut=evidence.resolved)
    encoder = HostTextEncoder(
        backend.text_cut,
        weights,
        tokenizer,
        canonicalize=backend.canonicalize,
        input_shape=tuple(text_in.shape),
        output_shape=tuple(text_out.shape),
        dim=backend.dim,
    )
    options = {"serve_any_model_name": serve_any_model_name, "timeout": timeout}
    return (
        ClipVisualHandler(backend, image_network, **options),
        ClipTextualHandler(backend, text_network, encoder, **options, cut_evidence=evidence),
    )


async def _probe_cut(
    backend: ClipBackend, network: Network, weights: TextHostWeights, tokenizer: ImmichTokenizer
) -> CutEvidence:
    output = _only_edge(network.outputs, "output", network)

    async def run(frame: np.ndarray) -> np.ndarray:
        return (await network.infer(frame))[output.name]

    queries = tuple(tokenizer.encode(clean_text(q, canonicalize=backend.canonicalize)).ids for q in PROBE_QUERIES)
    inputs = ProbeInputs(
        context=backend.context_length,
        input_shape=tuple(_only_edge(network.inputs, "input", network).shape),
        output_shape=tuple(output.shape),
        pad_id=tokenizer.pad_id,
        query_ids=queries,
    )
    try:
        return await probe_text_cut(run, backend.text_cut, weights, inputs, tokenizer_family=backend.tokenizer)
    except (DeviceError, ValueError) as exc:
        raise ConfigurationError(f"{network.name}: the start-up probe of the text cut failed: {exc}") from exc


def _log_evidence(backend: ClipBackend, evidence: CutEvidence) -> None:
    for contradiction in evidence.contradictions:
        log.error(
            "%s: the text HEF contradicts the catalog's declared cut, so the worker follows the HEF: %s. "
            "Please report this with `python -m ml_target doctor`'s output.", backend.id, contradiction
        )
    for note in evidence.notes:
        log.warning("%s: %s", backend.id, note)
    log.info("%s: text cut %s (probe: positions %s, output stage %s)", backend.id, evidence.resolved,
             evidence.positions or "not definitive", evidence.stage or "not definitive")


def _run_blocking(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous start-up code, inside an event loop or not."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(make()))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    thread = threading.Thread(target=target, name="clip-cut-probe")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def _load(runtime: Runtime, models_dir: Path, spec: NetworkSpec) -> Network:
    path = Path(models_dir) / f"{spec.hef}.hef"
    if not path.is_file():
        raise ConfigurationError(
            f"{path} is missing: download it with `ml-target fetch-models` (Model Zoo URL: "
            f"{spec.url('hailo8')}, or the hailo8l variant)"
        )
    return runtime.load(path, batch_size=spec.batch_size, priority=spec.priority)


def create_clip_handlers(settings: Settings, runtime: Runtime) -> tuple[ClipVisualHandler, ClipTextualHandler]:
    """Load the configured backend's two HEFs and host text assets; missing files fail start-up."""
    backend = backend_for_setting(settings.clip_backend)
    host_dir = backend.host_dir(settings.models_dir)
    if not (host_dir / "host.json").is_file():
        raise ConfigurationError(
            f"{host_dir / 'host.json'} is missing: the host-side text weights of {backend.id}; {EXPORT_HINT}"
        )
    image_network = _load(runtime, settings.models_dir, backend.image_network)
    text_network = _load(runtime, settings.models_dir, backend.text_network)
    return clip_handlers(
        backend,
        image_network,
        text_network,
        host_dir,
        serve_any_model_name=settings.clip_serve_any_model_name,
        timeout=settings.request_timeout_s,
        probe_cut=True,
    )
