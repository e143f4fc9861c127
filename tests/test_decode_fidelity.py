"""`bench decode-fidelity`: the arithmetic of the retrieval agreement, and the measurement end to end."""

from __future__ import annotations

import numpy as np

from ml_target.benchmarks import decode_fidelity as df
from ml_target.testing.clip_fixtures import FIXTURES_DIR


def test_top_k_overlap_counts_shared_neighbours_without_the_query():
    library = np.eye(8)[:, :8] + 0.01  # every item nearest to itself, then ties broken by index
    library[1] += 0.5 * library[0]
    exact = library / np.linalg.norm(library, axis=1, keepdims=True)
    assert df.top_k_overlap(exact, exact, exact, k=3).tolist() == [1.0] * 8
    fast = exact.copy()
    fast[1] = exact[5]  # item 1 now looks like item 5 to every query
    overlap = df.top_k_overlap(exact, exact, fast, k=1)
    assert overlap[0] == 0.0  # item 0's nearest neighbour (1) is no longer found


def test_measure_reports_a_perfect_path_as_perfect_and_a_worse_one_as_worse(monkeypatch):
    model = FIXTURES_DIR / "clip_vit_b_32" / "immich" / "visual" / "model.onnx"
    previews = df.preview_set()[:6]
    library = df.library_set(crops_per_photo=2)[:10]
    report = df.measure(model, previews, library)
    s = report["summary"]
    assert s["previews"] == 16 and s["library"] == 10
    assert 0.999 < s["cosine_min"] <= 1.0 + 1e-6 and s["top_k_overlap_mean"] <= 1.0
    assert s["fast_cpu_ms_median"] < s["exact_cpu_ms_median"]  # why the fast path exists
    monkeypatch.setattr(df, "reduced_crop", lambda jpeg, size: np.full((size, size, 3), 128, np.uint8))
    broken = df.measure(model, previews, library)["summary"]
    assert broken["cosine_min"] < s["cosine_min"] and broken["fast_is_good_enough"] is False
