"""The committed reference fixtures (tests/fixtures/clip/) are exactly what the generator declares.

scripts/make_test_fixtures.py writes them with torch; the tests only read them. A file edited by
hand, left over from an older generator, or missing fails here with the command that rewrites them.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

from ml_target.testing.clip_fixtures import FIXTURES_DIR, MANIFEST

REPO = Path(__file__).resolve().parents[1]
GENERATOR = REPO / "scripts" / "make_test_fixtures.py"
REGENERATE = "regenerate with scripts/make_test_fixtures.py (README: Test fixtures)"
MAX_TOTAL_BYTES = 8_000_000  # README states the size; keep the suite's checkout small


def manifest() -> dict[str, str]:
    entries = {}
    for line in (FIXTURES_DIR / MANIFEST).read_text(encoding="utf-8").splitlines():
        digest, path = line.split("  ", 1)
        entries[path] = digest
    return entries


def generator():
    spec = importlib.util.spec_from_file_location("make_test_fixtures", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports torch only when it generates
    return module


def test_every_fixture_matches_its_manifest_hash() -> None:
    wrong = [p for p, digest in manifest().items() if hashlib.sha256((FIXTURES_DIR / p).read_bytes()).hexdigest() != digest]
    assert not wrong, f"fixtures differ from {MANIFEST}: {wrong}; {REGENERATE}"


def test_the_files_on_disk_are_the_manifest() -> None:
    on_disk = {str(p.relative_to(FIXTURES_DIR)) for p in FIXTURES_DIR.rglob("*") if p.is_file() and p.name != MANIFEST}
    listed = set(manifest())
    assert on_disk == listed, f"not in {MANIFEST}: {sorted(on_disk - listed)}; missing: {sorted(listed - on_disk)}"


def test_the_generator_declares_the_manifest() -> None:
    assert generator().declared_files() == sorted(manifest()), REGENERATE


def test_the_fixtures_stay_small() -> None:
    total = sum((FIXTURES_DIR / p).stat().st_size for p in manifest())
    assert total <= MAX_TOTAL_BYTES, f"{total} bytes of fixtures"
