"""The CLIP/SigLIP backends this worker can run and the Immich model names each serves faithfully.

A backend is a pair of Model Zoo HEFs (names in `ml_target.networks.NETWORKS`) plus host-side text
weights. Every property that decides whether our vectors land in the same embedding space as
Immich's ONNX models is declared here, in one place: image size, context length, text cleaning,
pad token, and the *text cut* — which parts of the text encoder run on the host before and after
the HEF. One generic text pipeline (`ml_target.text.encoder`) interprets the cut; nothing else
branches on the backend.

The declarations follow the evidence in docs/hardware-evidence.md; what no public source settles is
recorded in each entry's `open_questions`. Positions and the output stage of each text HEF are also
measured on the HEF at start-up (`ml_target.text.cut_probe`), which overrides a declaration it
contradicts and reports the contradiction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ml_target.config import CLIP_BACKENDS
from ml_target.errors import ModelNotServed
from ml_target.networks import NETWORKS, NetworkSpec

PositionSite = Literal["hef", "host"]
Pooling = Literal["hef", "first_eos", "last"]


@dataclass(frozen=True)
class TextCut:
    """Where the text HEF starts and ends, as seen from the host.

    Before the HEF the host always looks up token embeddings; it adds the position table too when
    `positions == "host"`. After the HEF: `pooling` picks the sentence row from a per-token output
    (`first_eos`: row of the first EOS token, CLIP; `last`: the last row, SigLIP) or `hef` when the
    HEF already pools; then the optional final LayerNorm, the optional projection, and always L2.
    Pooling before the LayerNorm is exact because LayerNorm acts on each token separately.
    """

    positions: PositionSite
    pooling: Pooling
    final_layer_norm: bool
    projection: bool


@dataclass(frozen=True)
class ClipBackend:
    """One selectable CLIP backend (`CLIP_BACKEND`) and everything needed to serve it faithfully."""

    id: str
    image_hef: str
    text_hef: str
    dim: int
    image_size: int
    context_length: int
    tokenizer: Literal["clip-bpe", "sentencepiece"]
    canonicalize: bool
    pad_token: str
    eos_token: str
    text_cut: TextCut
    immich_names: tuple[str, ...]
    checkpoint: str
    open_questions: tuple[str, ...] = ()

    @property
    def setting(self) -> str:
        """The `CLIP_BACKEND` value that selects this backend."""
        return next(key for key, value in CLIP_BACKENDS.items() if value == self.id)

    @property
    def image_network(self) -> NetworkSpec:
        return NETWORKS[self.image_hef]

    @property
    def text_network(self) -> NetworkSpec:
        return NETWORKS[self.text_hef]

    def host_dir(self, models_dir: Path) -> Path:
        """Directory of the host-side text assets (see `ml_target.text.host_weights`)."""
        return Path(models_dir) / self.id


_CLIP_CUT = TextCut(positions="hef", pooling="first_eos", final_layer_norm=False, projection=True)
_SIGLIP_CUT = TextCut(positions="hef", pooling="hef", final_layer_norm=False, projection=False)
_POSITIONS_OPEN = (
    "Position embeddings are added inside the HEF by every Zoo recipe (the embeddings Add takes a constant "
    "table; calibration data is token embeddings only); the start-up probe measures it on the HEF."
)

# What every backend of one tokenizer family shares (Immich's text settings for that family).
_CLIP_BPE_TEXT = {
    "context_length": 77,
    "tokenizer": "clip-bpe",
    "canonicalize": False,
    "pad_token": "<|endoftext|>",
    "eos_token": "<|endoftext|>",
}
_SIGLIP_TEXT = {"context_length": 64, "tokenizer": "sentencepiece", "canonicalize": True}


def _hef_pair(stem: str) -> dict[str, str]:
    """The Model Zoo names the two HEFs of a backend `<stem>_image_encoder` / `<stem>_text_encoder`."""
    return {"image_hef": f"{stem}_image_encoder", "text_hef": f"{stem}_text_encoder"}


BACKENDS: dict[str, ClipBackend] = {
    backend.id: backend
    for backend in (
        ClipBackend(
            id="clip_vit_b_32",
            **_hef_pair("clip_vit_b_32"),
            dim=512,
            image_size=224,
            **_CLIP_BPE_TEXT,
            text_cut=_CLIP_CUT,
            immich_names=("ViT-B-32__openai",),
            checkpoint="openai/clip-vit-base-patch32",
            open_questions=(
                _POSITIONS_OPEN,
                "The output layer `normalization25` is the final LayerNorm (12 blocks x 2 + 1), so the host "
                "applies none; the start-up probe checks the LayerNorm statistics of the output.",
            ),
        ),
        ClipBackend(
            id="clip_vit_b_16",
            **_hef_pair("clip_vit_b_16"),
            dim=512,
            image_size=224,
            **_CLIP_BPE_TEXT,
            text_cut=_CLIP_CUT,
            immich_names=("ViT-B-16__openai",),
            checkpoint="openai/clip-vit-base-patch16",
            open_questions=(
                _POSITIONS_OPEN,
                "Same parser cut as B/32 (Add_1 -> Add_1515), so it ends at the final LayerNorm; never dumped, "
                "the start-up probe checks it.",
            ),
        ),
        ClipBackend(
            id="siglip_b_16",
            **_hef_pair("siglip_b_16"),
            dim=768,
            image_size=224,
            **_SIGLIP_TEXT,
            pad_token="</s>",
            eos_token="</s>",
            text_cut=_SIGLIP_CUT,
            immich_names=("ViT-B-16-SigLIP__webli",),
            checkpoint="google/siglip-base-patch16-224",
            open_questions=(
                _POSITIONS_OPEN,
                "Pad token `</s>` (id 1), as a hardware-run worker uses; the tokenizer_config.json in use "
                "decides, as in Immich. It matters: SigLIP pools the last position.",
            ),
        ),
        ClipBackend(
            id="siglip2_b_32_256",
            **_hef_pair("siglip2_b_32_256"),
            dim=768,
            image_size=256,
            **_SIGLIP_TEXT,
            pad_token="<pad>",
            eos_token="<eos>",
            text_cut=_SIGLIP_CUT,
            immich_names=("ViT-B-32-SigLIP2-256__webli",),
            checkpoint="google/siglip2-base-patch32-256",
            open_questions=(
                _POSITIONS_OPEN,
                "Pooled (1x1x768) on balance of evidence, but the Zoo yaml says 1x64x768: a per-token output is "
                "pooled on the host (last row) and the probe decides whether LayerNorm and head follow.",
                "SigLIP2 uses the Gemma tokenizer; the pad/EOS tokens listed here are expectations, "
                "the tokenizer_config.json copied from Immich's model decides.",
            ),
        ),
        ClipBackend(
            id="tinyclip_vit_39m",
            **_hef_pair("tinyclip_vit_39m_16_text_19m_yfcc15m"),
            dim=512,
            image_size=224,
            **_CLIP_BPE_TEXT,
            text_cut=TextCut(positions="hef", pooling="first_eos", final_layer_norm=True, projection=True),
            immich_names=(),
            checkpoint="wkcn/TinyCLIP-ViT-39M-16-Text-19M-YFCC15M",
            open_questions=(
                _POSITIONS_OPEN,
                "The cut ends at the last block's residual Add, before `final_layer_norm`, so the host "
                "applies it; Hailo's own post-process does not. The start-up probe tells a LayerNorm output "
                "from the residual stream and follows the HEF.",
            ),
        ),
    )
}

# Immich v3.1.0 CLIP_MODEL_INFO: model name -> embedding dimension (immich-protocol.md §6.3). The
# server creates `smart_search.embedding vector(dim)` from it, so a vector of another length fails.
IMMICH_CLIP_DIMS: dict[str, int] = {
    "ViT-B-32__openai": 512,
    "RN101__openai": 512,
    "RN101__yfcc15m": 512,
    "RN50__cc12m": 1024,
    "RN50__openai": 1024,
    "RN50__yfcc15m": 1024,
    "RN50x4__openai": 640,
    "RN50x16__openai": 768,
    "RN50x64__openai": 1024,
    "ViT-B-16__openai": 512,
    "ViT-B-16__laion400m_e31": 512,
    "ViT-B-16__laion400m_e32": 512,
    "ViT-B-16-plus-240__laion400m_e31": 640,
    "ViT-B-16-plus-240__laion400m_e32": 640,
    "ViT-B-32__laion2b-s34b-b79k": 512,
    "ViT-B-32__laion2b_e16": 512,
    "ViT-B-32__laion400m_e31": 512,
    "ViT-B-32__laion400m_e32": 512,
    "ViT-L-14__openai": 768,
    "ViT-L-14__laion400m_e31": 768,
    "ViT-L-14__laion400m_e32": 768,
    "ViT-L-14-quickgelu__dfn2b": 768,
    "ViT-L-14__laion2b-s32b-b82k": 768,
    "ViT-L-14-336__openai": 768,
    "ViT-H-14__laion2b-s32b-b79k": 1024,
    "ViT-g-14__laion2b-s12b-b42k": 1024,
    "ViT-H-14-quickgelu__dfn5b": 1024,
    "ViT-H-14-378-quickgelu__dfn5b": 1024,
    "XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k": 512,
    "XLM-Roberta-Large-ViT-H-14__frozen_laion5b_s13b_b90k": 1024,
    "ViT-B-16-SigLIP__webli": 768,
    "ViT-B-16-SigLIP-256__webli": 768,
    "ViT-B-16-SigLIP-384__webli": 768,
    "ViT-B-16-SigLIP-512__webli": 768,
    "ViT-B-16-SigLIP-i18n-256__webli": 768,
    "ViT-L-16-SigLIP-256__webli": 1024,
    "ViT-L-16-SigLIP-384__webli": 1024,
    "ViT-SO400M-14-SigLIP-384__webli": 1152,
    "ViT-B-16-SigLIP2__webli": 768,
    "ViT-B-32-SigLIP2-256__webli": 768,
    "ViT-L-16-SigLIP2-256__webli": 1024,
    "ViT-L-16-SigLIP2-384__webli": 1024,
    "ViT-L-16-SigLIP2-512__webli": 1024,
    "ViT-SO400M-14-SigLIP2__webli": 1152,
    "ViT-SO400M-14-SigLIP2-378__webli": 1152,
    "ViT-SO400M-16-SigLIP2-256__webli": 1152,
    "ViT-SO400M-16-SigLIP2-384__webli": 1152,
    "ViT-SO400M-16-SigLIP2-512__webli": 1152,
    "ViT-gopt-16-SigLIP2-256__webli": 1536,
    "ViT-gopt-16-SigLIP2-384__webli": 1536,
    "nllb-clip-base-siglip__v1": 768,
    "nllb-clip-base-siglip__mrl": 768,
    "nllb-clip-large-siglip__v1": 1152,
    "nllb-clip-large-siglip__mrl": 1152,
    "XLM-Roberta-Large-Vit-B-32": 512,
    "XLM-Roberta-Large-Vit-B-16Plus": 640,
    "XLM-Roberta-Large-Vit-L-14": 768,
    "LABSE-Vit-L-14": 768,
}


def backend_for_setting(setting: str) -> ClipBackend:
    """The backend a `CLIP_BACKEND` value selects (the value is validated by `config.py`)."""
    return BACKENDS[CLIP_BACKENDS[setting]]


def faithful_backend(model_name: str) -> ClipBackend | None:
    """The backend that serves `model_name` faithfully, if any."""
    return next((b for b in BACKENDS.values() if model_name in b.immich_names), None)


def check_model_name(backend: ClipBackend, model_name: str, *, serve_any_model_name: bool) -> None:
    """Refuse (ModelNotServed) unless `backend` may answer a request for `model_name`.

    Faithful names are always served. With the operator's opt-in any Immich name of the same
    dimension is served too (the vectors store, but live in another embedding space); a different
    or unknown dimension is refused even then, because Immich's insert would fail.
    """
    if model_name in backend.immich_names:
        return
    dim = IMMICH_CLIP_DIMS.get(model_name)
    if serve_any_model_name and dim == backend.dim:
        return
    raise ModelNotServed(_refusal(backend, model_name, dim, serve_any_model_name))


def _refusal(backend: ClipBackend, model_name: str, dim: int | None, serve_any: bool) -> str:
    served = ", ".join(backend.immich_names) or "no Immich model (TinyCLIP has no Immich twin)"
    head = (
        f"Immich asked for CLIP model {model_name!r}, but this worker runs CLIP_BACKEND={backend.setting} "
        f"({backend.id}, {backend.dim}-d), which faithfully serves: {served}."
    )
    if dim is None:
        return f"{head} {model_name!r} is not a CLIP model known to Immich v3.1; its dimension is unknown."
    if serve_any:
        return (
            f"{head} CLIP_SERVE_ANY_MODEL_NAME is set, but {model_name!r} stores {dim}-d vectors and this "
            f"backend produces {backend.dim}-d ones, so Immich's insert would fail."
        )
    fixes = []
    twin = faithful_backend(model_name)
    if twin is not None:
        fixes.append(f"set CLIP_BACKEND={twin.setting} on this worker")
    if backend.immich_names:
        fixes.append(
            f"change Immich's smart-search model to {backend.immich_names[0]} "
            "(Administration > Settings > Machine Learning > Smart Search) and re-run Smart Search for all assets"
        )
    if dim == backend.dim:
        fixes.append(
            "or, accepting vectors from a different embedding space than the stored ones, set "
            "CLIP_SERVE_ANY_MODEL_NAME=true and re-run Smart Search for all assets"
        )
    if not fixes:
        fixes.append("no Hailo backend serves it; choose a model listed above in Immich")
    return f"{head} To fix: {'; '.join(fixes)}."
