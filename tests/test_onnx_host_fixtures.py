"""The CLIP text files fetch-models extracts from Immich's textual ONNX equal the checkpoint export.

The committed fixtures (scripts/make_test_fixtures.py) hold, for each tiny reference model, both
an Immich-style export (`immich/textual/model.onnx` + tokenizer files, as Immich downloads them)
and the host files `scripts/export_clip_host_weights.py` writes from the checkpoint (`host/`).
(1) Every file `fetch-models --immich-cache` writes is compared with the checkpoint export, and
(2) `verify` runs the whole text path with the extracted files. No torch: the models were made
once, by the generator. The graph-level checks of the extraction are in tests/test_onnx_host.py.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ml_target.catalog import BACKENDS
from ml_target.provision.clip_host import provision_clip_host
from ml_target.provision.immich import ImmichSource
from ml_target.testing import verify_rig as rig_module
from ml_target.testing.clip_fixtures import FIXTURES_DIR
from ml_target.verify.cache import ImmichCache
from ml_target.verify.compare import Plan, run_verification
from ml_target.verify.samples import QUERIES, builtin_images
from ml_target.verify.worker import claimed_models, serve_in_process

# The tiny reference models stand for one backend of each architecture the fixtures cover.
IMMICH_BACKENDS = [b for b in BACKENDS.values() if b.immich_names and (FIXTURES_DIR / b.id / "immich").is_dir()]


@pytest.mark.parametrize("backend", IMMICH_BACKENDS, ids=lambda b: b.id)
def test_extracted_files_equal_the_checkpoint_export(tmp_path: Path, backend) -> None:
    rig_module.write_immich_clip(tmp_path / "cache", backend.immich_names[0], backend.id)
    exported = FIXTURES_DIR / backend.id / "host"
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
