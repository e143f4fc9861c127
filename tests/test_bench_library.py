"""`bench --library`: the scan projection's arithmetic, the photo mix, and how a window is read."""

from __future__ import annotations

import io
from collections import Counter

import pytest
from PIL import Image

from ml_target.benchmarks.library import limit_of, per_photo
from ml_target.benchmarks.library_photos import FACE_KINDS, GROUP_FACES, TEXT_KINDS, Mix, library_photos
from ml_target.benchmarks.scan_projection import device_floor_s, host_floor_s, next_phase, project

ALL = frozenset("abc")
RATES = {ALL: {"a": 10.0, "b": 5.0, "c": 1.0}, frozenset("bc"): {"b": 10.0, "c": 2.0}, frozenset("c"): {"c": 4.0}}


def test_scan_runs_in_phases_each_at_the_rates_of_the_jobs_still_running() -> None:
    # 100 photos. Phase 1: a is done after 10 s (b has 50 left, c 90). Phase 2 without a: b is done
    # after 5 s more (c has 80 left). Phase 3, c alone at 4/s: 20 s more.
    projection = project(100, "abc", lambda running: RATES[running])
    assert [(sorted(p.running), p.seconds, sorted(p.finished)) for p in projection.phases] == [
        (["a", "b", "c"], 10.0, ["a"]),
        (["b", "c"], 5.0, ["b"]),
        (["c"], 20.0, ["c"]),
    ]
    assert projection.done_s == {"a": 10.0, "b": 15.0, "c": 35.0}
    assert projection.total_s == 35.0
    assert projection.photos_per_hour() == pytest.approx(100 * 3600 / 35)


def test_jobs_finishing_together_end_one_phase() -> None:
    projection = project(60, "ab", lambda running: {"a": 3.0, "b": 3.0})
    assert len(projection.phases) == 1 and projection.done_s == {"a": 20.0, "b": 20.0}


def test_next_phase_names_the_job_sets_the_scan_goes_through() -> None:
    assert next_phase(100, "abc", {}) == ALL
    assert next_phase(100, "abc", {ALL: RATES[ALL]}) == frozenset("bc")
    assert next_phase(100, "abc", {ALL: RATES[ALL], frozenset("bc"): RATES[frozenset("bc")]}) == frozenset("c")
    assert next_phase(100, "abc", RATES) is None


def test_a_job_without_progress_is_an_error_not_an_endless_scan() -> None:
    with pytest.raises(ValueError, match="b"):
        project(10, "ab", lambda running: {"a": 1.0, "b": 0.0})


def test_floors() -> None:
    # 300,000 photos of 96 device ms: 8 h of a device that never idles.
    assert device_floor_s(300_000, {"clip": 16.0, "ocr": 80.0}) == pytest.approx(8 * 3600)
    assert host_floor_s(1000, {"clip": 10.0, "ocr": 30.0}, cores=2) == pytest.approx(20.0)


def test_device_time_is_attributed_to_each_jobs_networks() -> None:
    window = {"device": {"networks": {"n1": {"busy_ms": 300.0}, "n2": {"busy_ms": 50.0}, "n3": {"busy_ms": 40.0}}}}
    jobs = {"x": {"requests": 10}, "y": {"requests": 4}}
    result = per_photo(window, jobs, {"x": ("n1", "n2"), "y": ("n3", "absent")})
    assert result["x"] == {"device_ms": {"n1": 30.0, "n2": 5.0}, "device_ms_total": 35.0}
    assert result["y"] == {"device_ms": {"n3": 10.0}, "device_ms_total": 10.0}


@pytest.mark.parametrize(
    ("utilisation", "server", "verdict"),
    [(0.95, 0.5, "device"), (0.6, 1.9, "host CPU"), (0.6, 1.0, "job concurrency (device and host both have time left)")],
)
def test_limit_verdicts(utilisation: float, server: float, verdict: str) -> None:
    window = {"device": {"utilisation": utilisation}, "cpu_cores": {"server": server, "worker": server, "emulator": 0.0}}
    assert limit_of(window, cores=2)["verdict"] == verdict


def test_mix_counts_must_add_up_and_documents_need_faceless_photos() -> None:
    with pytest.raises(ValueError, match="add up"):
        Mix(photos=10, faces=(5, 3, 1), text=(7, 2, 1), orientation=(5, 3, 2))
    with pytest.raises(ValueError, match="document"):
        Mix(photos=4, faces=(1, 2, 1), text=(1, 1, 2), orientation=(2, 1, 1))
    shares = Mix().shares()
    assert shares["text"] == {"none": 0.7, "some": 0.2, "document": 0.1}
    assert all(sum(kinds.values()) == pytest.approx(1.0) for kinds in shares.values())


def test_library_photos_follow_the_mix() -> None:
    mix = Mix(photos=6, faces=(3, 2, 1), text=(3, 2, 1), orientation=(3, 2, 1))
    photos = library_photos(mix)
    assert Counter(p.faces for p in photos) == Counter(dict(zip(FACE_KINDS, mix.faces)))
    assert Counter(p.text for p in photos) == Counter(dict(zip(TEXT_KINDS, mix.text)))
    assert all(p.face_count == 0 for p in photos if p.text == "document")
    assert {p.face_count for p in photos if p.faces == "group"} == {GROUP_FACES}
    sizes = Counter(Image.open(io.BytesIO(p.jpeg)).size for p in photos)
    assert sizes == Counter({(1920, 1440): 3, (1440, 1920): 2, (2160, 1440): 1})
    assert all(Image.open(io.BytesIO(p.jpeg)).format == "JPEG" for p in photos)


def test_library_report_states_the_projection_and_draws_the_chart(tmp_path) -> None:
    """The committed hailo8 report, written again: the tables carry its numbers."""
    import json
    from pathlib import Path

    from ml_target.benchmarks.library_report import write_library_reports

    report = json.loads((Path(__file__).parent.parent / "docs/bench/library/hailo8/library.json").read_text())
    paths = write_library_reports(report, tmp_path)
    text = paths[1].read_text()
    assert f"**300,000 photos: {report['total_hours']:.2f} h**" in text
    phases = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |") or line.startswith("| 3 |")]
    assert len(phases) == len(report["phases"])
    assert "OCR | 1 |" in text  # the OCR job alone at Immich's concurrency
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _library_args(argv: list[str]):
    import argparse

    from ml_target.benchmarks.options import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_library_options_and_the_recorded_command_line() -> None:
    from ml_target.benchmarks.options import library_options_from, options_from

    args = _library_args(["--library", "--library-jobs", "8,2,4", "--library-seconds", "20", "--faces", "hailo-arcface",
                          "--out", "/tmp/scan"])
    library, options = library_options_from(args), options_from(args)
    assert library.jobs == (8, 2, 4) and library.seconds == 20.0 and library.size == 300000
    line = library.command_line(options)
    assert "--library-jobs 8,2,4" in line and "--faces hailo-arcface" in line and line.endswith("--out /tmp/scan")
    again = _library_args(line.split()[4:])
    assert library_options_from(again).jobs == library.jobs and options_from(again).faces == "hailo-arcface"
    assert "--faces" not in library_options_from(_library_args([])).command_line(options_from(_library_args([])))


@pytest.mark.parametrize("jobs", ["2,2", "2,0,1", "a,b,c"])
def test_library_jobs_must_be_three_positive_concurrencies(jobs: str) -> None:
    from ml_target.benchmarks.options import library_options_from

    with pytest.raises(SystemExit):
        library_options_from(_library_args(["--library", "--library-jobs", jobs]))
