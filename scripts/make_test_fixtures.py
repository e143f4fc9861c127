"""Write the committed tiny CLIP/SigLIP reference fixtures under tests/fixtures/clip/ (needs torch).

The tests read these files and never need torch; regenerate them only when the tiny models, the
fixed inputs, or the export change:

    .venv/bin/pip install torch==2.13.0 transformers==5.23.0   # the CPU build of torch; see README
    .venv/bin/python scripts/make_test_fixtures.py [--out tests/fixtures/clip]

For every backend in ml_target.testing.clip_fixtures.BACKEND_IDS it builds the tiny randomly
initialised model (fixed seed), saves it as a Hugging Face checkpoint in a temporary directory,
exports its host weights with scripts/export_clip_host_weights.py, exports exactly the HEFs' share
and Immich's full visual/textual models to ONNX, computes the model's own features for the fixed
TEXTS and IMAGES, and finally writes SHA256SUMS over every file. The output is deterministic: the
same versions write the same bytes. `declared_files()` (no torch) lists what it writes; a test
checks that it matches SHA256SUMS and the files on disk.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ml_target.catalog import BACKENDS
from ml_target.testing.clip_fixtures import (
    BACKEND_IDS,
    FIXTURES_DIR,
    HOST_OPS,
    MANIFEST,
    fixture_files,
    manifest_lines,
)

EXPORT_SCRIPT = Path(__file__).resolve().parent / "export_clip_host_weights.py"


def declared_files() -> list[str]:
    """Every file the generator writes, relative to the output directory (SHA256SUMS excluded)."""
    per_backend = [f"{backend_id}/{name}" for backend_id in BACKEND_IDS for name in fixture_files(BACKENDS[backend_id])]
    return sorted([HOST_OPS, *per_backend])


def write_host_ops(path: Path) -> None:
    """torch's own LayerNorm and Linear on fixed random inputs: the reference for the host text ops."""
    import json

    import numpy as np
    import torch

    rng = np.random.default_rng(3)
    width, dim, eps = 6, 4, 1e-5
    x = (rng.normal(size=width) * 5 + 2).astype(np.float32)
    weight = rng.normal(1, 0.3, width).astype(np.float32)
    bias = rng.normal(0, 0.3, width).astype(np.float32)
    projection = rng.normal(size=(width, dim)).astype(np.float32)  # OpenAI orientation: x @ P
    projection_bias = rng.normal(size=dim).astype(np.float32)
    t = torch.from_numpy
    layer_norm = torch.nn.functional.layer_norm(t(x), (width,), t(weight), t(bias), eps).numpy()
    linear = torch.nn.functional.linear(t(x), t(projection.T.copy()), t(projection_bias)).numpy()

    def floats(a: np.ndarray) -> list:
        return np.asarray(a, np.float32).tolist()

    document = {
        "eps": eps, "x": floats(x), "weight": floats(weight), "bias": floats(bias),
        "projection": floats(projection), "projection_bias": floats(projection_bias),
        "layer_norm": floats(layer_norm), "linear": floats(linear),
    }
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def _export_script():
    spec = importlib.util.spec_from_file_location("export_clip_host_weights", EXPORT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_backend(backend_id: str, out: Path, work: Path) -> None:
    """One backend's fixture directory `out` (emptied first); `work` holds its checkpoint."""
    import dataclasses

    import numpy as np
    import torch

    from ml_target.testing import clip_reference as ref
    from ml_target.testing.clip_fidelity import immich_pixels
    from ml_target.testing.clip_fixtures import (
        IMAGES,
        TEXTS,
        TINY,
        TINY_DIM,
        Reference,
        crop_digest,
        immich_crop,
        reference_ids,
        reference_json,
    )
    from ml_target.testing.clip_tokenizers import write_tokenizer

    backend = BACKENDS[backend_id]
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    model, tokenizer, pad = ref.tiny_model_for(backend)
    checkpoint = work / f"tiny-{backend_id}"
    model.save_pretrained(checkpoint)
    write_tokenizer(checkpoint, tokenizer, pad_token=pad, context_length=backend.context_length)
    # A relative --checkpoint, so host.json's "source" names no temporary directory.
    cwd = Path.cwd()
    os.chdir(work)
    try:
        argv = ["--checkpoint", checkpoint.name, "--backend", backend_id, "--out", str(out / "host")]
        if _export_script().main(argv) != 0:
            raise SystemExit(f"host-weight export failed for {backend_id}")
    finally:
        os.chdir(cwd)

    toy = dataclasses.replace(backend, dim=TINY_DIM)
    width = TINY["hidden_size"]
    text_part = ref.TextHefPart(model, toy.text_cut, causal=toy.tokenizer == "clip-bpe").eval()
    ref.export_onnx(text_part, torch.zeros(1, toy.context_length, width), out / "text_hef.onnx")
    size = toy.image_size
    ref.export_onnx(ref.ImageHefPart(model).eval(), torch.zeros(1, 3, size, size), out / "image_hef.onnx")
    ref.export_immich_model(out / "immich", model, toy, checkpoint)

    ids = np.stack([reference_ids(checkpoint / "tokenizer.json", t, toy, pad) for t in TEXTS])
    crops = np.stack([immich_crop(image, size) for image in IMAGES])
    reference = Reference(
        ids=ids,
        text_features=ref.text_features(model, ids),
        crop_sha256=tuple(crop_digest(c) for c in crops),
        image_features=ref.image_features(model, immich_pixels(crops, toy)),
    )
    (out / "reference.json").write_text(reference_json(reference), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=FIXTURES_DIR, help="default tests/fixtures/clip")
    args = parser.parse_args(argv)
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        print(f"error: {exc.name} is missing; the generator needs torch and transformers (see the docstring)",
              file=sys.stderr)
        return 2
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_host_ops(out / HOST_OPS)
    with tempfile.TemporaryDirectory(prefix="ml_target-fixtures-") as work:
        for backend_id in BACKEND_IDS:
            write_backend(backend_id, out / backend_id, Path(work))
            print(f"wrote {out / backend_id}", file=sys.stderr)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != MANIFEST)
    if written != declared_files():
        print(f"error: wrote {sorted(set(written) ^ set(declared_files()))} unlike declared_files()", file=sys.stderr)
        return 1
    (out / MANIFEST).write_text("\n".join(manifest_lines(out, written)) + "\n", encoding="utf-8")
    total = sum((out / p).stat().st_size for p in written)
    print(f"{len(written)} files, {total / 1e6:.2f} MB; {out / MANIFEST} written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
