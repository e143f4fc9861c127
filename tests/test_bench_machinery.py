"""The service benchmark's machinery: bounds, statistics, CPU accounting, request bodies, reports."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
from starlette.requests import Request

from ml_target.benchmarks.http import HttpError, Pool, parse_head, request_bytes
from ml_target.benchmarks.load import Stream, count_faces, drive, multipart, predict_requests
from ml_target.benchmarks.options import MIN_SEARCHES, add_arguments, command_line, options_from
from ml_target.benchmarks.procstat import (
    EMULATOR_GROUP,
    MAIN_GROUP,
    RECOGNISER_GROUP,
    cpu_by_group,
    group_of,
    parse_stat,
)
from ml_target.benchmarks.report import markdown, write_reports
from ml_target.benchmarks.server import FrameCache
from ml_target.benchmarks.service import stream_summary
from ml_target.benchmarks.summary import (
    arrival_wait_quantile,
    bound_and_ratio,
    cpu_per_request,
    device_delta,
    latency_ratio,
    measured_frames,
    percentiles,
    verdict,
)
from ml_target.benchmarks.workloads import (
    device_bound_rps,
    device_ms_per_request,
    hef_for_group,
    workloads,
)
from ml_target.config import Settings


def test_clip_image_bound_is_full_bursts_of_eight():
    assert math.isclose(device_bound_rps({"clip_vit_b_32_image_encoder": 1.0}, "hailo8"), 8000 / (27.2 + 1.94 * 8))


def test_faces_bound_adds_three_arcface_frames_and_a_switch_per_burst():
    per_request = device_ms_per_request({"scrfd_2.5g": 1.0, "arcface_r50": 3.0}, "hailo8")
    expected = 0.946 + 3 * (7.19 + 1.66 * 8) / 8 + 0.5 * (1 / 8 + 3 / 8)  # networks.py, hailo8 profile
    assert math.isclose(per_request, expected)
    assert math.isclose(device_bound_rps({"scrfd_2.5g": 1.0, "arcface_r50": 3.0}, "hailo8"), 1000 / expected)


def test_workloads_name_the_configured_networks_and_immich_entries():
    hailo = Settings(
        clip_backend="vit-b-32", face_detector="scrfd_10g", face_recogniser="arcface_mobilefacenet",
        face_serve_any_model_name=True,
    )
    assert dict(workloads(hailo)["faces"].frames) == {"scrfd_10g": 1.0, "arcface_mobilefacenet": 3.0}
    jobs = workloads(Settings(clip_backend="vit-b-32", face_detector="scrfd_2.5g"))
    assert dict(jobs["faces"].frames) == {"scrfd_2.5g": 1.0}  # compatible mode: recognition on the host CPU
    assert json.loads(jobs["clip-image"].entries) == {"clip": {"visual": {"modelName": "ViT-B-32__openai"}}}
    assert jobs["clip-text"].payload == "text" and jobs["ocr"].frames == {}


def test_network_group_maps_back_to_its_hef():
    assert hef_for_group("scrfd_2_5g") == "scrfd_2.5g"
    with pytest.raises(KeyError):
        hef_for_group("no_such_group")


def test_percentiles_are_milliseconds_and_nan_without_samples():
    result = percentiles([0.001 * i for i in range(1, 101)])
    assert math.isclose(result["p50_ms"], 50.5) and math.isclose(result["p95_ms"], 95.05)
    assert all(math.isnan(v) for v in percentiles([]).values())


def test_device_delta_gives_utilisation_frames_and_bursts_per_network():
    before = {"networks": {"arcface_r50": {"frames": 8, "bursts": 1, "busy_ms": 35.18}}, "switch_ms": 1.0}
    after = {
        "networks": {
            "arcface_r50": {"frames": 88, "bursts": 11, "busy_ms": 386.98},
            "scrfd_2_5g": {"frames": 30, "bursts": 10, "busy_ms": 75.9},
            "clip_vit_b_32_image_encoder": {"frames": 0, "bursts": 0, "busy_ms": 0.0},
        },
        "switch_ms": 11.0,
    }
    delta = device_delta(before, after, wall_s=0.5)
    assert set(delta["networks"]) == {"arcface_r50", "scrfd_2.5g"}
    arcface = delta["networks"]["arcface_r50"]
    assert arcface["frames"] == 80 and arcface["mean_burst"] == 8.0
    assert math.isclose(arcface["utilisation"], 351.8 / 500)
    assert math.isclose(delta["utilisation"], (351.8 + 75.9 + 10.0) / 500)
    assert measured_frames(delta, 10) == {"arcface_r50": 8.0, "scrfd_2.5g": 3.0}


def test_bound_and_ratio_compare_the_measured_rate():
    result = bound_and_ratio({"clip_vit_b_32_text_encoder": 1.0}, "hailo8", 100.0)
    assert math.isclose(result["device_bound_rps"], 8000 / (27.0 + 3.93 * 8))
    assert math.isclose(result["ratio_to_bound"], 100.0 / result["device_bound_rps"])
    assert math.isnan(bound_and_ratio({}, "hailo8", 5.0)["ratio_to_bound"])


def test_arrival_wait_quantile_of_uniform_residuals():
    device = {
        "networks": {
            "clip_vit_b_32_image_encoder": {"utilisation": 0.5, "busy_ms": 100.0, "bursts": 2},
            "clip_vit_b_32_text_encoder": {"utilisation": 0.4, "busy_ms": 80.0, "bursts": 1},
        }
    }
    # Half the time inside 50 ms bursts: P(wait > w) = 0.5 * (1 - w / 50) = 0.05 at w = 45.
    assert math.isclose(arrival_wait_quantile(device, 0.95, exclude=["clip_vit_b_32_text_encoder"]), 45.0, abs_tol=1e-6)
    assert arrival_wait_quantile(device, 0.4, exclude=["clip_vit_b_32_text_encoder"]) == 0.0


def test_proc_stat_line_with_spaces_and_parentheses_in_the_name():
    fields = ["S"] + ["0"] * 10 + ["250", "50"] + ["0"] * 30
    line = "1234 (a (weird) name) " + " ".join(fields)
    assert math.isclose(parse_stat(line), 300 / __import__("os").sysconf("SC_CLK_TCK"))


def test_cpu_is_grouped_by_python_thread_name():
    before = {1: ("python", 1.0), 2: ("python", 0.5)}
    after = {1: ("python", 1.5), 2: ("python", 0.75), 3: ("python", 0.25), 4: ("python", 0.1)}
    names = {2: "hailo-emulated-device", 3: "decode_0", 1: "MainThread"}
    spent = cpu_by_group(before, after, names)
    assert math.isclose(spent[EMULATOR_GROUP], 0.25)
    assert math.isclose(spent["decode pool"], 0.25)
    assert math.isclose(spent[MAIN_GROUP], 0.5 + 0.1)
    assert group_of("asyncio_3").startswith("to_thread")
    assert group_of("face-recogniser_1") == group_of("face-recogniser") == RECOGNISER_GROUP  # /proc cuts at 15
    per = cpu_per_request(spent, 10)
    assert math.isclose(per["emulator_ms"], 25.0) and math.isclose(per["worker_ms"], 85.0)


def test_multipart_body_parses_as_the_worker_reads_it():
    body, headers = multipart('{"clip":{"visual":{}}}', image=b"\xff\xd8jpeg\r\n--x")

    async def parse():
        sent = False

        async def receive():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        scope = {"type": "http", "method": "POST", "headers": [(b"content-type", headers["content-type"].encode())]}
        form = await Request(scope, receive).form()
        return form["entries"], await form["image"].read(), form["image"].filename

    entries, image, filename = asyncio.run(parse())
    assert entries == '{"clip":{"visual":{}}}' and image == b"\xff\xd8jpeg\r\n--x" and filename == "blob"


def test_stream_summary_counts_answers_inside_the_window_only():
    stream = Stream("faces", [], check=count_faces)
    stream.samples += [
        (0.0, 0.5, 200, 3),
        (1.0, 1.1, 200, 3),
        (1.0, 1.3, 200, 2),
        (1.2, 1.4, 503, 0),
        (1.5, 3.5, 200, 3),
    ]
    summary = stream_summary(stream, (1.0, 2.0))
    assert summary["requests"] == 2 and summary["errors"] == 1 and summary["error_statuses"] == [503]
    assert math.isclose(summary["rps"], 2.0) and math.isclose(summary["items_per_request"], 2.5)
    assert math.isclose(summary["p50_ms"], 200.0)


def test_count_faces_reads_the_facial_recognition_list():
    assert count_faces(b'{"facial-recognition":[{"score":0.9},{"score":0.8}],"imageHeight":1,"imageWidth":1}') == 2


def test_frame_cache_computes_each_distinct_frame_once():
    calls = []

    def compute(inputs):
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"].sum(axis=(1, 2), keepdims=True) * 2}

    cache = FrameCache(compute, capacity=2)
    frames = np.stack([np.full((2, 2), v, np.float32) for v in (1, 2, 1)])
    first = cache({"x": frames})
    assert first["y"].ravel().tolist() == [8.0, 16.0, 8.0]
    assert cache.misses == 2 and cache.hits == 1 and calls == [1, 1]
    first["y"][:] = 0  # callers own their outputs: the cache is not affected
    assert cache({"x": frames[:1]})["y"].ravel().tolist() == [8.0]
    cache({"x": np.full((1, 2, 2), 3, np.float32)})  # evicts the least recently used frame (2)
    cache({"x": frames[1:2]})
    assert cache.misses == 4


def _ratio(value, low, high, n, n_reference):
    return {"value": value, "low": low, "high": high, "n": n, "n_reference": n_reference, "confidence": 0.95}


def _report():
    row = {
        "workload": "clip-image",
        "concurrency": 16,
        "requests": 800,
        "errors": 0,
        "rps": 160.0,
        "p50_ms": 90.0,
        "p95_ms": 130.0,
        "p99_ms": 140.0,
        "device_bound_rps": 187.3,
        "ratio_to_bound": 160 / 187.3,
        "device": {
            "networks": {"clip_vit_b_32_image_encoder": {"utilisation": 0.93, "mean_burst": 7.5}},
            "utilisation": 0.94,
        },
        "cpu_ms": {
            "by_thread": {"decode pool": 2.6, EMULATOR_GROUP: 0.2},
            "worker_ms": 2.6,
            "emulator_ms": 0.2,
            "client_ms": 1.1,
        },
    }
    text = {"rps": 1.0, "p50_ms": 50.0, "p95_ms": 60.0, "p99_ms": 61.0, "errors": 0, "requests": 30}
    return {
        "rows": [row, {**row, "concurrency": 1, "rps": 20.0, "ratio_to_bound": float("nan")}],
        "immich_default": {
            "jobs_concurrency": {"faces": 2},
            "text_interval_s": 1.0,
            "target_ratio": 1.5,
            "min_searches": 50,
            "text_idle": {**text, "p50_ms": 40.0},
            "scan_only": {"jobs": {"faces": {**text, "rps": 20.0}}, "scan_rps": 20.0},
            "phases": {
                "without search sessions": {
                    "jobs": {"faces": {**text, "rps": 18.0}},
                    "text_loaded": {**text, "p95_ms": 72.0},
                    "p95_loaded_over_p50_idle": _ratio(1.8, 1.6, 2.1, 61, 60),
                    "p95_loaded_over_p95_idle": _ratio(1.2, 1.1, 1.4, 61, 60),
                    "verdict": "misses",
                    "scan_rate_of_scan_only": 0.9,
                    "burst_wait_p95_ms": 25.0,
                    "device": {"utilisation": 0.9},
                },
                "with search sessions": {
                    "jobs": {"faces": {**text, "rps": 2.5}},
                    "text_loaded": text,
                    "p95_loaded_over_p50_idle": _ratio(1.5, 1.3, 1.7, 30, 60),
                    "p95_loaded_over_p95_idle": _ratio(1.0, 0.9, 1.1, 30, 60),
                    "verdict": "too few samples",
                    "scan_rate_of_scan_only": 0.125,
                    "device": {"utilisation": 0.1},
                },
            },
            "headline": "with search sessions",
        },
        "decode": {
            "coffee": {
                "exact_ms": 30.0,
                "draft_ms": 5.0,
                "mean_abs_diff": 0.5,
                "max_abs_diff": 10.0,
                "psnr_db": 49.3,
                "jpeg_q80_psnr_db": 48.6,
            }
        },
        "meta": {"command": "python -m ml_target bench --quick", "cores": 2, "profile": "hailo8"},
    }


def test_markdown_holds_the_numbers():
    text = markdown(_report())
    assert "| clip-image | 16 | 160.0 | 90.0 | 130.0 | 140.0 | 0 | 187.3 | 85% | 2.6 | 0.2 | 1.1 |" in text
    assert "clip_vit_b_32_image_encoder 93% (B=7.5)" in text
    assert "| clip-image | 1 | 20.0 |" in text and "| - |" in text
    assert "| scan only | faces | 2 | 20.0 |" in text and "| with search sessions | faces | 2 | 2.5 |" in text
    assert "| without search sessions | text search | open loop | 1.00 | 50.0 | 72.0 |" in text
    assert (
        "- with search sessions: text query p95 / idle p50 = **1.50x** [95% CI 1.30-1.70] (30 searches under load, "
        "one every 1 s on average; 60 idle): too few searches for a verdict (needs 50 on each side)"
    ) in text
    assert (
        "- without search sessions: text query p95 / idle p50 = 1.80x [95% CI 1.60-2.10] (61 searches under load, "
        "one every 1 s on average; 60 idle): misses the 1.5x target; / idle p95 1.20x [95% CI 1.10-1.40]"
    ) in text
    assert "the scan ran at 12% of its rate without searches" in text
    assert "about idle p50 + that = 65.0 ms" in text
    assert "| coffee | 30.00 | 5.00 | 0.50 | 10 | 49.3 | 48.6 |" in text
    assert "`python -m ml_target bench --quick`" in text


def test_reports_are_written_as_strict_json_markdown_and_png(tmp_path):
    paths = write_reports(_report(), tmp_path / "out")
    data = json.loads(paths[0].read_text())
    assert data["rows"][1]["ratio_to_bound"] is None and data["rows"][0]["rps"] == 160.0
    assert paths[1].read_text().startswith("# Service benchmark")
    assert paths[2].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_a_short_run_against_a_worker_subprocess_measures_the_server(tmp_path):
    from ml_target.benchmarks.service import Options, run

    options = Options(
        workloads=("clip-text",), concurrency=(4,), seconds=1.0, warmup_s=0.5, immich_default=False, out=tmp_path
    )
    report = run(options)
    (row,) = report["rows"]
    assert row["requests"] > 0 and row["errors"] == 0
    assert row["frames_per_request"]["clip_vit_b_32_text_encoder"] == pytest.approx(1.0, abs=0.2)
    assert 0.0 < row["device"]["utilisation"] <= 1.05
    assert row["cpu_ms"]["worker_ms"] > 0 and row["cpu_ms"]["server_ms"] >= row["cpu_ms"]["worker_ms"]
    assert 0.0 < row["ratio_to_bound"] <= 1.1
    assert (tmp_path / "bench.md").read_text().count("| clip-text | 4 |") == 1


def test_request_bytes_and_response_head():
    request = request_bytes("POST", "/predict", "127.0.0.1:3003", b"abc", {"content-type": "text/plain"})
    assert request == (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1:3003\r\nContent-Length: 3\r\ncontent-type: text/plain\r\n\r\nabc"
    )
    assert parse_head(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12\r\nConnection: close\r\n\r\n") == (
        503,
        12,
        False,
    )
    with pytest.raises(HttpError, match="Content-Length"):
        parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")


async def test_pool_keeps_connections_alive_and_reconnects_after_close():
    connections = []

    async def serve(reader, writer):
        connections.append(writer)
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
            close = body == b"bye"
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (
                len(body) * 2,
                b"Connection: close\r\n" if close else b"",
                body * 2,
            )
            writer.write(reply)
            await writer.drain()
            if close or body == b"then-idle-timeout":  # the latter: closed without telling, like a keep-alive timeout
                writer.close()
                return

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = Pool(f"http://127.0.0.1:{port}")
    assert await pool.send(request_bytes("POST", "/", pool.authority, b"ab")) == (200, b"abab")
    assert await pool.send(request_bytes("POST", "/", pool.authority, b"bye")) == (200, b"byebye")
    assert await pool.send(request_bytes("POST", "/", pool.authority, b"c")) == (200, b"cc")
    assert len(connections) == 2  # one kept alive for two requests, a new one after Connection: close
    assert await pool.send(request_bytes("POST", "/", pool.authority, b"then-idle-timeout")) == (
        200,
        b"then-idle-timeout" * 2,
    )
    await asyncio.sleep(0.05)
    assert await pool.send(request_bytes("POST", "/", pool.authority, b"d")) == (200, b"dd")
    assert len(connections) == 3  # the silently closed connection was replaced and the request resent
    pool.close()
    server.close()
    await server.wait_closed()


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_options_quick_explicit_and_device_mode(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    quick = options_from(_parse(["--quick"]))
    assert quick.concurrency == (1, 16) and quick.seconds == 1.0 and quick.default_seconds == 5.0
    assert quick.searches == 0  # a quick run does not wait for enough searches: it gives no verdict
    full = options_from(_parse([]))
    assert full.searches == 120 >= MIN_SEARCHES and full.default_seconds == 60.0
    explicit = options_from(_parse(["--quick", "--concurrency", "2,8", "--seconds", "3", "--workload", "faces"]))
    assert explicit.concurrency == (2, 8) and explicit.seconds == 3.0 and explicit.workloads == ("faces",)
    assert options_from(_parse([])).concurrency == (1, 2, 4, 8, 16, 32)
    device = _parse(["device", "--callers", "4", "--network", "arcface_r50"])
    assert device.mode == "device" and device.callers == 4 and device.network == "arcface_r50"
    with pytest.raises(SystemExit, match="unknown workload"):
        options_from(_parse(["--workload", "clip-image,videos"]))


def test_only_the_immich_default_load_writes_no_chart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = options_from(_parse(["--workload", "none"]))
    assert options.workloads == () and "--workload none" in command_line(options)
    report = {**_report(), "rows": []}
    assert [p.name for p in write_reports(report, tmp_path / "out")] == ["bench.json", "bench.md"]


def test_recorded_command_line_runs_the_same_options(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = options_from(
        _parse(["--workload", "faces,ocr", "--concurrency", "16", "--no-immich-default", "--seconds", "4"])
    )
    line = command_line(options)
    assert line.startswith("python -m ml_target bench ")
    assert options_from(_parse(line.split()[4:])) == options
    hailo = options_from(_parse(["--workload", "faces", "--faces", "hailo-arcface"]))
    assert hailo.faces == "hailo-arcface" and "--faces hailo-arcface" in command_line(hailo)
    assert options_from(_parse(command_line(hailo).split()[4:])) == hailo
    assert options.faces == "immich"  # the worker's own default


def test_reports_go_to_a_fresh_directory_and_never_over_an_earlier_one_unasked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = options_from(_parse(["--quick"])).out
    assert first.parent == Path("bench-out") and not first.exists()
    first.mkdir(parents=True)
    assert options_from(_parse(["--quick"])).out != first  # the same second: a suffix, not the same directory
    committed = tmp_path / "docs" / "bench"
    committed.mkdir(parents=True)
    (committed / "bench.md").write_text("measured on a quiet machine")
    with pytest.raises(SystemExit, match=r"already holds bench.md: pass --overwrite"):
        options_from(_parse(["--quick", "--out", str(committed)]))
    assert options_from(_parse(["--quick", "--out", str(committed), "--overwrite"])).overwrite
    assert (committed / "bench.md").read_text() == "measured on a quiet machine"  # nothing written by parsing


def test_latency_ratio_has_counts_and_a_bootstrap_interval_around_the_value():
    rng = np.random.default_rng(5)
    loaded, idle = rng.normal(60.0, 6.0, 200), rng.normal(40.0, 2.0, 200)
    ratio = latency_ratio(loaded, 0.95, idle, 0.5)
    assert (ratio["n"], ratio["n_reference"], ratio["confidence"]) == (200, 200, 0.95)
    assert ratio["value"] == pytest.approx(np.quantile(loaded, 0.95) / np.quantile(idle, 0.5))
    assert ratio["low"] < ratio["value"] < ratio["high"] and ratio["high"] - ratio["low"] < 0.25
    few = latency_ratio(loaded[:8], 0.95, idle[:8], 0.5)
    assert few["high"] - few["low"] > ratio["high"] - ratio["low"]  # fewer samples, wider interval
    assert latency_ratio(loaded, 0.95, idle, 0.5) == ratio  # seeded: the same report twice
    assert np.isnan(latency_ratio([], 0.95, idle, 0.5)["value"])


@pytest.mark.parametrize(
    ("low", "high", "n", "expected"),
    [(1.1, 1.3, 60, "meets"), (1.6, 2.0, 60, "misses"), (1.3, 1.7, 60, "inconclusive"), (1.1, 1.2, 49, "too few samples")],
)
def test_verdict_needs_samples_and_an_interval_on_one_side(low, high, n, expected):
    assert verdict(_ratio(1.2, low, high, n, 60), 1.5, 50) == expected


async def test_a_window_waits_for_enough_answers_of_a_stream():
    async def serve(reader, writer):
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:
                return
            await reader.readexactly(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    pool = Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}")
    stream = Stream("sparse", predict_requests([(b"x", {})], pool), interval_s=0.1)

    async def nothing(label):
        return None

    start, end = await drive(pool, [stream], warmup_s=0.0, seconds=0.3, on_window=nothing, min_answers=(stream, 8))
    assert len(stream.completed(start, end)) >= 8 and 0.3 < end - start <= 0.9 + 0.1
    pool.close()
    server.close()
    await server.wait_closed()
