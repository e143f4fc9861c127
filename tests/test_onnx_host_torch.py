"""The CLIP text files fetch-models extracts from Immich's textual ONNX equal the checkpoint export.

NEEDS TORCH (skipped without it): tiny randomly initialised `transformers` CLIP/SigLIP models are
exported as Immich exports its models (`ml_target.testing.verify_rig.write_immich_clip`), then
(1) every file `fetch-models --immich-cache` writes is compared with what
`scripts/export_clip_host_weights.py`'s code writes from the checkpoint, and (2) `verify` runs the
whole text path with the extracted files. The torch-free checks of the extraction are in
tests/test_onnx_host.py and tests/test_provision_immich.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="builds and exports tiny transformers models (torch); see test_onnx_host.py")

from ml_target.catalog import BACKENDS  # noqa: E402
from ml_target.provision.clip_host import provision_clip_host  # noqa: E402
from ml_target.provision.immich import ImmichSource  # noqa: E402
from ml_target.testing import verify_rig as rig_module  # noqa: E402
from ml_target.text.host_export import export_host_assets  # noqa: E402
from ml_target.verify.cache import ImmichCache  # noqa: E402
from ml_target.verify.compare import Plan, run_verification  # noqa: E402
from ml_target.verify.samples import QUERIES, builtin_images  # noqa: E402
from ml_target.verify.worker import claimed_models, serve_in_process  # noqa: E402


@pytest.mark.parametrize("backend_id", ["clip_vit_b_32", "siglip_b_16"])
def test_extracted_files_equal_the_checkpoint_export(tmp_path: Path, backend_id: str) -> None:
    backend = BACKENDS[backend_id]
    model, tokenizer, pad = rig_module._tiny_model(backend)
    checkpoint = tmp_path / "checkpoint"
    model.save_pretrained(checkpoint)
    rig_module.write_tokenizer(checkpoint, tokenizer, pad_token=pad, context_length=backend.context_length)
    rig_module.write_immich_clip(tmp_path / "cache", backend.immich_names[0], model, backend, checkpoint)

    exported = tmp_path / "exported" / backend.id
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    export_host_assets(state, backend, exported, tokenizer_dir=checkpoint,
                       layer_norm_eps=float(model.config.text_config.layer_norm_eps), source="checkpoint")
    models = tmp_path / "models"
    outcome = provision_clip_host(models, backend, ImmichSource(cache=tmp_path / "cache"), offline=True)
    assert outcome == {f"{backend.id}/": f"extracted from {backend.immich_names[0]}'s textual model (copied from the Immich cache)"}

    extracted = backend.host_dir(models)
    assert sorted(p.name for p in extracted.iterdir()) == sorted(p.name for p in exported.iterdir())
    for path in exported.iterdir():
        if path.name == "host.json":
            ours, theirs = (json.loads(p.read_text()) for p in (extracted / path.name, path))
            assert {k: v for k, v in ours.items() if k != "source"} == {k: v for k, v in theirs.items() if k != "source"}
            assert ours["source"].startswith(f"immich-app/{backend.immich_names[0]} textual/model.onnx sha256:")
        else:
            assert (extracted / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.slow
@pytest.mark.parametrize("backend_id", ["clip_vit_b_32", "siglip_b_16"])
def test_the_whole_text_path_matches_with_the_extracted_files(tmp_path: Path, backend_id: str) -> None:
    images, queries = builtin_images(photos=False, scenes=3, pages=0), list(QUERIES)
    rig = rig_module.build_verify_rig(tmp_path, images, queries, backend_id=backend_id, host_files="immich")
    try:
        plan = Plan(images=images, queries=queries, tasks=("clip",))
        handlers = rig.clip_handlers()

        async def go():
            async with serve_in_process(rig.settings, handlers) as worker:
                return await run_verification(ImmichCache(rig.cache), worker, claimed_models(handlers), plan)

        report = asyncio.run(go())
    finally:
        rig.close()
    assert report.task("clip.textual").status == "pass", report.table()
    assert report.task("clip.textual").measures["cosine"]["min"] >= 0.999
    assert report.task("clip.textual").measures["cosine"]["count"] == len(queries)
