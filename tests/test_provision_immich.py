"""fetch-models provisions Immich's own files, with no torch: the face recogniser and the CLIP text side.

A loopback server plays Immich's Hugging Face organisation (`<url>/<model>/resolve/main/<file>`,
large files redirected to a CDN path as Hugging Face does) and the Model Zoo. The published files
are built here without torch: a recogniser and a textual ONNX in Immich's interfaces
(`ml_target.testing.face_models`, `ml_target.testing.textual_onnx`) and tokenizer files from
`tokenizers`. Covered: fresh download, re-run, interrupted downloads and `.part` resume, wrong
files, checksums, offline, a local copy of Immich's cache, and the Hailo ArcFace opt-in.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ml_target import provision
from ml_target.catalog import BACKENDS
from ml_target.immich_models import recogniser_path
from ml_target.testing import face_models
from ml_target.testing.clip_tokenizers import CLIP_EOS, clip_like_tokenizer, write_tokenizer
from ml_target.testing.textual_onnx import textual_model
from ml_target.text.host_weights import TextHostWeights, load_host_weights, save_host_weights
from ml_target.text.tokenizer import ImmichTokenizer
from tests.fixture_server import Zoo, serve_zoo
from tests.test_provision import fake_hef

CLIP = BACKENDS["clip_vit_b_32"]
MODEL = "ViT-B-32__openai"
HEFS = ("clip_vit_b_32_image_encoder", "clip_vit_b_32_text_encoder", "scrfd_10g")
RECOGNISER = str(recogniser_path("buffalo_l"))
HOST_FILES = sorted(
    f"clip_vit_b_32/{name}"
    for name in (
        "host.json", "token_embedding.npy", "position_embedding.npy", "final_ln_weight.npy", "final_ln_bias.npy",
        "text_projection.npy", "tokenizer.json", "tokenizer_config.json",
    )
)


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, bytes]:
    """Immich's files by repository path (`<model>/<file>`), and the weights the textual model holds."""
    tokenizer_dir = tmp_path_factory.mktemp("tokenizer")
    tokenizer = clip_like_tokenizer()
    write_tokenizer(tokenizer_dir, tokenizer, pad_token=CLIP_EOS, context_length=77)
    model, weights = textual_model(vocab=tokenizer.get_vocab_size(), width=16, dim=16)
    files = {
        "buffalo_l/recognition/model.onnx": face_models.recogniser_model().SerializeToString(),
        f"{MODEL}/textual/model.onnx": model.SerializeToString(),
        f"{MODEL}/textual/tokenizer.json": (tokenizer_dir / "tokenizer.json").read_bytes(),
        f"{MODEL}/textual/tokenizer_config.json": (tokenizer_dir / "tokenizer_config.json").read_bytes(),
    }
    return {"files": files, "weights": weights}


LFS = ("buffalo_l/recognition/model.onnx", f"{MODEL}/textual/model.onnx")


def hf_path(repo_file: str) -> str:
    model, file = repo_file.split("/", 1)
    return f"/hf/{model}/resolve/main/{file}"


def cdn_path(repo_file: str) -> str:
    return f"/cdn/{hashlib.sha256(repo_file.encode()).hexdigest()}"


@pytest.fixture
def hub(published):
    """The loopback server with the Zoo's HEFs and Immich's files (the ONNX ones behind a redirect)."""
    with serve_zoo() as zoo:
        for i, name in enumerate(HEFS):
            zoo.files[f"/zoo/hailo8/{name}.hef"] = fake_hef("hailo8p", seed=i, payload_size=1000)
        for repo_file, data in published["files"].items():
            if repo_file in LFS:
                zoo.redirects[hf_path(repo_file)] = cdn_path(repo_file)
                zoo.files[cdn_path(repo_file)] = data
            else:
                zoo.files[hf_path(repo_file)] = data
        zoo.hf_url = f"{zoo.origin}/hf"
        yield zoo


def fetch(zoo: Zoo, models: Path, *extra: str, env: dict | None = None, sleeps: list | None = None) -> tuple[int, str]:
    err = io.StringIO()
    environment = {"MODELS_DIR": str(models), "TASKS": "clip,faces", "HAILO_ARCH": "hailo8", **(env or {})}
    argv = ["--base-url", zoo.base_url, "--immich-url", zoo.hf_url, "--retries", "3", *extra]
    code = provision.main(argv, env=environment, stderr=err, sleep=(sleeps if sleeps is not None else []).append)
    return code, err.getvalue()


def hub_requests(zoo: Zoo) -> list[str]:
    return [path for path, _ in zoo.requests if path.startswith(("/hf/", "/cdn/"))]


def sums(models: Path) -> dict[str, str]:
    lines = (models / "SHA256SUMS").read_text().splitlines()
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in lines}


def assert_host_dir_holds(models: Path, published) -> None:
    weights = load_host_weights(models / "clip_vit_b_32", backend="clip_vit_b_32")
    for name, array in published["weights"].items():
        np.testing.assert_array_equal(getattr(weights, name), array, err_msg=name)
    assert weights.text_projection_bias is None and not weights.stand_in
    digest = hashlib.sha256(published["files"][f"{MODEL}/textual/model.onnx"]).hexdigest()
    assert weights.source == f"immich-app/{MODEL} textual/model.onnx sha256:{digest}"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        assert (models / "clip_vit_b_32" / name).read_bytes() == published["files"][f"{MODEL}/textual/{name}"]
    tokenizer = ImmichTokenizer.from_files(models / "clip_vit_b_32", context_length=77, eos_token=CLIP_EOS)
    assert tokenizer.eos_id == tokenizer.pad_id


def test_a_fresh_fetch_provisions_immichs_recogniser_and_the_clip_text_files(hub: Zoo, published, tmp_path: Path):
    code, log = fetch(hub, tmp_path)
    assert code == 0, log
    assert (tmp_path / RECOGNISER).read_bytes() == published["files"]["buffalo_l/recognition/model.onnx"]
    assert_host_dir_holds(tmp_path, published)
    recorded = sums(tmp_path)
    assert sorted(recorded) == sorted([*(f"{n}.hef" for n in HEFS), RECOGNISER, *HOST_FILES])
    for name, digest in recorded.items():
        assert hashlib.sha256((tmp_path / name).read_bytes()).hexdigest() == digest
    # The textual ONNX was only a source: nothing of it, nor of the staging, is left behind.
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.suffix == ".part" or "textual" in str(p)]
    assert leftovers == []
    assert f"{RECOGNISER}: downloaded" in log and "clip_vit_b_32/: extracted from ViT-B-32__openai" in log
    # Hugging Face's layout, the large files through the CDN redirect.
    assert hf_path("buffalo_l/recognition/model.onnx") in hub_requests(hub)
    assert cdn_path(f"{MODEL}/textual/model.onnx") in hub_requests(hub)
    if shutil.which("sha256sum"):
        check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr


def test_a_second_run_verifies_without_asking_immich_again(hub: Zoo, tmp_path: Path):
    assert fetch(hub, tmp_path)[0] == 0
    before = len(hub.requests)
    code, log = fetch(hub, tmp_path)
    assert code == 0, log
    assert len(hub.requests) == before
    assert f"{RECOGNISER}: verified" in log and "clip_vit_b_32/: verified" in log


@pytest.mark.parametrize("repo_file", LFS)
def test_an_interrupted_download_resumes_with_range(hub: Zoo, published, tmp_path: Path, repo_file: str):
    hub.faults[cdn_path(repo_file)] = ["drop"]
    sleeps: list[float] = []
    code, log = fetch(hub, tmp_path, sleeps=sleeps)
    assert code == 0, log
    ranges = [rng for path, rng in hub.requests if path == cdn_path(repo_file)]
    assert ranges == [None, f"bytes={len(published['files'][repo_file]) // 3}-"]
    assert sleeps == [1.0] and "connection closed after" in log
    assert (tmp_path / RECOGNISER).read_bytes() == published["files"]["buffalo_l/recognition/model.onnx"]
    assert_host_dir_holds(tmp_path, published)


def test_a_partial_textual_download_from_an_earlier_run_is_resumed(hub: Zoo, published, tmp_path: Path):
    data = published["files"][f"{MODEL}/textual/model.onnx"]
    part = tmp_path / ".immich-downloads" / MODEL / "textual" / "model.onnx.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(data[:777])
    assert fetch(hub, tmp_path)[0] == 0
    assert (cdn_path(f"{MODEL}/textual/model.onnx"), "bytes=777-") in hub.requests
    assert_host_dir_holds(tmp_path, published)


def test_transient_errors_are_retried_with_backoff(hub: Zoo, tmp_path: Path):
    hub.faults[hf_path(f"{MODEL}/textual/tokenizer.json")] = ["500", "500"]
    sleeps: list[float] = []
    code, log = fetch(hub, tmp_path, sleeps=sleeps)
    assert code == 0, log
    assert sleeps == [1.0, 2.0] and "HTTP 500" in log


def test_a_file_immich_does_not_publish_is_a_clear_error_and_not_retried(hub: Zoo, tmp_path: Path):
    del hub.redirects[hf_path("buffalo_l/recognition/model.onnx")]
    sleeps: list[float] = []
    code, log = fetch(hub, tmp_path, sleeps=sleeps)
    assert code == 1 and sleeps == []
    assert "buffalo_l/resolve/main/recognition/model.onnx answered HTTP 404" in log
    assert not (tmp_path / RECOGNISER).exists()


def test_a_captive_portal_page_instead_of_the_recogniser_is_rejected(hub: Zoo, tmp_path: Path):
    hub.faults[cdn_path("buffalo_l/recognition/model.onnx")] = ["html"]
    code, log = fetch(hub, tmp_path)
    assert code == 1
    assert f"{RECOGNISER} is unusable and was deleted" in log and "not an ONNX model" in log
    assert not list((tmp_path / "facial-recognition").rglob("*.onnx*"))


def test_an_onnx_that_is_not_a_recogniser_is_rejected(hub: Zoo, published, tmp_path: Path):
    hub.files[cdn_path("buffalo_l/recognition/model.onnx")] = published["files"][f"{MODEL}/textual/model.onnx"]
    code, log = fetch(hub, tmp_path)
    assert code == 1 and "is not a face recogniser" in log and not (tmp_path / RECOGNISER).exists()


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data, files: data[: len(data) // 2], "not an ONNX model"),
        (lambda data, files: files["buffalo_l/recognition/model.onnx"], "not the text encoder this backend needs"),
    ],
    ids=["truncated", "another-model"],
)
def test_a_wrong_textual_model_is_rejected_and_deleted(hub: Zoo, published, tmp_path: Path, damage, message):
    path = cdn_path(f"{MODEL}/textual/model.onnx")
    hub.files[path] = damage(hub.files[path], published["files"])
    code, log = fetch(hub, tmp_path)
    assert code == 1
    assert message in log and "the downloaded files were deleted" in log and "the worker will not start" in log
    assert not (tmp_path / "clip_vit_b_32").exists() and not (tmp_path / ".immich-downloads" / MODEL).exists()
    assert not list(tmp_path.glob(".*.staging"))


def test_a_tokenizer_larger_than_the_token_table_is_rejected(hub: Zoo, published, tmp_path: Path):
    small, _ = textual_model(vocab=10)
    hub.files[cdn_path(f"{MODEL}/textual/model.onnx")] = small.SerializeToString()
    code, log = fetch(hub, tmp_path)
    assert code == 1 and "do not fit its text encoder" in log and "token_embedding 10 rows" in log


def test_a_changed_recogniser_on_disk_is_caught_by_its_checksum(hub: Zoo, tmp_path: Path):
    assert fetch(hub, tmp_path)[0] == 0
    face_models.write_recogniser(tmp_path, model=face_models.recogniser_model(seed=1))  # a valid, other model
    code, log = fetch(hub, tmp_path)
    assert code == 1 and "does not match its SHA-256" in log and "Delete model.onnx" in log


def test_damaged_text_files_are_rebuilt_and_a_changed_immich_model_is_refused(hub: Zoo, published, tmp_path: Path):
    assert fetch(hub, tmp_path)[0] == 0
    (tmp_path / "clip_vit_b_32" / "text_projection.npy").write_bytes(b"garbage")
    code, log = fetch(hub, tmp_path)
    assert code == 0, log
    assert_host_dir_holds(tmp_path, published)  # rebuilt from Immich's model, matching the recorded sums
    other, _ = textual_model(vocab=400, width=16, dim=16, seed=9)  # Immich republishes different weights
    hub.files[cdn_path(f"{MODEL}/textual/model.onnx")] = other.SerializeToString()
    shutil.rmtree(tmp_path / "clip_vit_b_32")
    code, log = fetch(hub, tmp_path)
    assert code == 1 and "differ from the SHA-256 pinned" in log and "clip_vit_b_32/token_embedding.npy" in log


def test_offline_verifies_a_complete_directory_without_any_request(hub: Zoo, tmp_path: Path):
    assert fetch(hub, tmp_path)[0] == 0
    before = len(hub.requests)
    code, log = fetch(hub, tmp_path, "--offline")
    assert code == 0, log
    assert len(hub.requests) == before and "clip_vit_b_32/: verified" in log


def test_offline_names_whatever_is_missing(hub: Zoo, tmp_path: Path):
    assert fetch(hub, tmp_path)[0] == 0
    (tmp_path / RECOGNISER).unlink()
    shutil.rmtree(tmp_path / "clip_vit_b_32")
    before = len(hub.requests)
    code, log = fetch(hub, tmp_path, "--offline")
    assert code == 1 and len(hub.requests) == before
    assert f"{tmp_path / RECOGNISER} is missing" in log
    assert "host.json is missing" in log and "only be rebuilt from a copy of Immich's cache" in log


def immich_cache(root: Path, published, *, textual: bool = True) -> Path:
    """A copy of Immich's /cache holding buffalo_l and (optionally) ViT-B-32's textual files."""
    for repo_file, data in published["files"].items():
        model, file = repo_file.split("/", 1)
        task = "facial-recognition" if model == "buffalo_l" else "clip"
        if task == "clip" and not textual:
            continue
        target = root / task / model / file
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def test_an_immich_cache_is_used_instead_of_downloading(hub: Zoo, published, tmp_path: Path):
    cache = immich_cache(tmp_path / "cache", published)
    models = tmp_path / "models"
    code, log = fetch(hub, models, "--immich-cache", str(cache))
    assert code == 0, log
    assert hub_requests(hub) == []
    assert f"{RECOGNISER}: copied" in log and "copied from the Immich cache" in log
    assert_host_dir_holds(models, published)
    assert (cache / "clip" / MODEL / "textual" / "model.onnx").is_file()  # the cache itself is left alone


def test_offline_with_an_immich_cache_provisions_without_network(hub: Zoo, published, tmp_path: Path):
    cache = immich_cache(tmp_path / "cache", published)
    models = tmp_path / "models"
    assert fetch(hub, models)[0] == 0  # the HEFs, as an air-gapped machine would receive them
    (models / RECOGNISER).unlink()
    shutil.rmtree(models / "clip_vit_b_32")
    before = len(hub.requests)
    code, log = fetch(hub, models, "--offline", "--immich-cache", str(cache))
    assert code == 0, log
    assert len(hub.requests) == before
    assert_host_dir_holds(models, published)


def test_a_cache_without_the_text_encoder_downloads_only_that(hub: Zoo, published, tmp_path: Path):
    cache = immich_cache(tmp_path / "cache", published, textual=False)
    code, log = fetch(hub, tmp_path / "models", "--immich-cache", str(cache))
    assert code == 0, log
    assert all(f"/{MODEL}/" in path or path.startswith("/cdn/") for path in hub_requests(hub))
    assert cdn_path("buffalo_l/recognition/model.onnx") not in hub_requests(hub)


def test_a_missing_cache_directory_is_refused(hub: Zoo, tmp_path: Path):
    code, log = fetch(hub, tmp_path, "--immich-cache", str(tmp_path / "nowhere"))
    assert code == 1 and "is not a directory" in log


def stand_in(models: Path) -> None:
    weights = TextHostWeights(token_embedding=np.zeros((10, 4), np.float32), stand_in=True)
    save_host_weights(models / "clip_vit_b_32", weights, backend="clip_vit_b_32")


def test_stand_in_text_files_are_replaced_online_and_refused_offline(hub: Zoo, published, tmp_path: Path):
    stand_in(tmp_path)
    code, log = fetch(hub, tmp_path, "--offline")
    assert code == 1 and "stand-in text weights" in log
    code, log = fetch(hub, tmp_path)
    assert code == 0, log
    assert_host_dir_holds(tmp_path, published)


def test_an_exported_text_directory_is_kept_and_recorded(hub: Zoo, published, tmp_path: Path):
    """Files written by scripts/export_clip_host_weights.py are as good: kept, never replaced."""
    directory = tmp_path / "clip_vit_b_32"
    save_host_weights(directory, TextHostWeights(token_embedding=np.ones((400, 16), np.float32), source="ckpt"),
                      backend="clip_vit_b_32")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (directory / name).write_bytes(published["files"][f"{MODEL}/textual/{name}"])
    code, log = fetch(hub, tmp_path)
    assert code == 0, log
    assert "clip_vit_b_32/: recorded" in log and cdn_path(f"{MODEL}/textual/model.onnx") not in hub_requests(hub)
    assert load_host_weights(directory, backend="clip_vit_b_32").source == "ckpt"
    assert f"clip_vit_b_32/host.json" in sums(tmp_path)


def test_tinyclip_has_no_immich_model_and_says_how_to_export(hub: Zoo, tmp_path: Path):
    for i, name in enumerate(("tinyclip_vit_39m_16_text_19m_yfcc15m_image_encoder",
                              "tinyclip_vit_39m_16_text_19m_yfcc15m_text_encoder")):
        hub.files[f"/zoo/hailo8/{name}.hef"] = fake_hef("hailo8p", seed=10 + i, payload_size=1000)
    code, log = fetch(hub, tmp_path, env={"TASKS": "clip", "CLIP_BACKEND": "tinyclip"})
    assert code == 1 and "has no Immich model" in log and "export_clip_host_weights.py" in log
    assert hub_requests(hub) == []


def test_the_hailo_arcface_opt_in_fetches_its_hef_and_no_recogniser(hub: Zoo, tmp_path: Path):
    hub.files["/zoo/hailo8/arcface_r50.hef"] = fake_hef("hailo8p", seed=20, payload_size=1000)
    code, log = fetch(hub, tmp_path, env={"TASKS": "faces", "FACE_SERVE_ANY_MODEL_NAME": "true"})
    assert code == 0, log
    assert (tmp_path / "arcface_r50.hef").is_file() and not (tmp_path / "facial-recognition").exists()
    assert hub_requests(hub) == []
