"""Files from Immich's own published models: from a copy of Immich's model cache, or downloaded.

Immich's service downloads `immich-app/<model>` from Hugging Face into `/cache/<task>/<model>/`
(`ml_target.immich_models`). `fetch-models` takes the same files from the same place: from
`--immich-cache DIR` (a copy of that `/cache`, e.g. `docker cp immich_machine_learning:/cache`)
when the file is there, else from `--immich-url` (default Immich's Hugging Face organisation,
`<url>/<model>/resolve/main/<file>`; a mirror laid out the same way works too). Downloads use the
HEFs' rules: retries with backoff, resume from `.part`, a content check before a file is
accepted, a SHA-256 in `SHA256SUMS` from the first download on, and `--offline` never touches the
network (it may still copy from `--immich-cache`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ml_target.immich_models import HUB_URL, hub_url
from ml_target.provision.checks import ProvisionError
from ml_target.vision.align import ARCFACE_SIZE


@dataclass(frozen=True)
class ImmichSource:
    """Where Immich's model files come from: a local copy of Immich's cache first, then a URL."""

    cache: Path | None = None
    base_url: str = HUB_URL

    def local(self, relative: str) -> Path | None:
        """The file in the Immich cache copy, if it holds it."""
        if self.cache is None:
            return None
        path = Path(self.cache) / relative
        return path if path.is_file() else None

    def url(self, model: str, file: str) -> str:
        return hub_url(model, file, self.base_url)


def _dims(value_info) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in value_info.type.tensor_type.shape.dim]


def check_recogniser(path: Path) -> None:
    """Raise unless `path` is an ONNX model with a recogniser's interface: (N, 3, 112, 112) -> one output."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf decode errors have no common public base
        raise ProvisionError(f"{path} is not an ONNX model ({type(exc).__name__}: {str(exc)[:200]})") from None
    initialisers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialisers]  # old IRs list weights as inputs too
    shape = _dims(inputs[0]) if len(inputs) == 1 else None
    if shape is None or len(shape) != 4 or shape[1:] != [3, ARCFACE_SIZE, ARCFACE_SIZE] or len(graph.output) != 1:
        raise ProvisionError(
            f"{path} is not a face recogniser (inputs {[(i.name, _dims(i)) for i in inputs]}, "
            f"{len(graph.output)} outputs; expected one (N, 3, 112, 112) input and one output)"
        )
