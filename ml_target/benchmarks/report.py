"""The service benchmark's outputs: bench.json (everything), bench.md (tables) and bench.png (chart)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

STAGE_WORKLOAD = "clip-image"
STAGE_CONCURRENCY = 16


def _f(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _pct(value: Any) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.0f}%"


def _utilisation(row: Mapping[str, Any]) -> str:
    device = row.get("device")
    if not device:
        return "-"
    parts = [f"{hef} {_pct(n['utilisation'])} (B={n['mean_burst']:.1f})" for hef, n in device["networks"].items()]
    return f"{_pct(device['utilisation'])}: " + ", ".join(parts)


def workload_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per workload and concurrency."""
    lines = [
        (
            "| workload | conc. | req/s | p50 ms | p95 ms | p99 ms | errors | device-bound req/s | of bound "
            "| worker CPU ms/req | emulator CPU ms/req | client CPU ms/req | device utilisation (mean burst) |"
        ),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        cpu = row.get("cpu_ms", {})
        lines.append(
            f"| {row['workload']} | {row['concurrency']} | {_f(row['rps'])} | {_f(row['p50_ms'])} | {_f(row['p95_ms'])} "
            f"| {_f(row['p99_ms'])} | {row['errors']} | {_f(row.get('device_bound_rps'))} "
            f"| {_pct(row.get('ratio_to_bound', float('nan')))} | {_f(cpu.get('worker_ms'))} "
            f"| {_f(cpu.get('emulator_ms'))} | {_f(cpu.get('client_ms'))} | {_utilisation(row)} |"
        )
    return "\n".join(lines)


def stage_table(rows: Sequence[Mapping[str, Any]], workload: str, concurrency: int) -> str:
    """Server CPU ms per request by thread group (what each stage costs) for one point."""
    chosen = [r for r in rows if r["workload"] == workload and r["concurrency"] == concurrency and r.get("cpu_ms")]
    if not chosen:
        return ""
    cpu = chosen[0]["cpu_ms"]
    lines = [
        f"Server CPU per request by thread, {workload} at concurrency {concurrency}:",
        "",
        "| thread group | CPU ms/request |",
        "|---|---:|",
    ]
    for group, ms in sorted(cpu["by_thread"].items(), key=lambda item: -item[1]):
        lines.append(f"| {group} | {_f(ms, 2)} |")
    lines.append(f"| **worker total (without emulator)** | **{_f(cpu['worker_ms'], 2)}** |")
    lines.append(f"| load generator (client process) | {_f(cpu['client_ms'], 2)} |")
    return "\n".join(lines)


def immich_default_table(result: Mapping[str, Any]) -> str:
    """The mixed load: the scan alone, then with searches under each session policy."""
    lines = [
        "| phase | stream | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]

    def row(phase: str, name: str, concurrency: str, stats: Mapping[str, Any], rate_digits: int = 1) -> None:
        lines.append(
            f"| {phase} | {name} | {concurrency} | {_f(stats['rps'], rate_digits)} | {_f(stats['p50_ms'])} "
            f"| {_f(stats['p95_ms'])} | {_f(stats['p99_ms'])} | {stats['errors']} |"
        )

    row("idle", "text search", "open loop", result["text_idle"], 2)
    concurrency = result["jobs_concurrency"]
    phases = {"scan only": result["scan_only"], **result["phases"]}
    for label, phase in phases.items():
        for name, job in phase["jobs"].items():
            row(label, name, str(concurrency[name]), job)
        if "text_loaded" in phase:
            row(label, "text search", "open loop", phase["text_loaded"], 2)
    idle_p50 = result["text_idle"]["p50_ms"]
    lines.append("")
    for label, phase in result["phases"].items():
        device = phase.get("device") or {}
        over_p50 = phase["p95_loaded_over_p50_idle"]
        ratio = f"{over_p50['value']:.2f}x"
        lines += [
            (
                f"- {label}: text query p95 / idle p50 = {f'**{ratio}**' if label == result['headline'] else ratio} "
                f"{_interval(over_p50)} ({over_p50['n']} searches under load, one every "
                f"{result['text_interval_s']:g} s on average; {over_p50['n_reference']} idle): "
                f"{_verdict(phase['verdict'], result)}; / idle p95 {phase['p95_loaded_over_p95_idle']['value']:.2f}x "
                f"{_interval(phase['p95_loaded_over_p95_idle'])}; the scan ran at "
                f"{_pct(phase['scan_rate_of_scan_only'])} of its rate without searches; device utilisation "
                f"{_pct(device.get('utilisation', float('nan')))}{_held(phase.get('search_sessions') or {})}."
            ),
        ]
    off = result["phases"].get("without search sessions")
    if off is not None and "burst_wait_p95_ms" in off:
        lines += [
            "",
            (
                "A burst on the device is not pre-empted: without sessions a search arriving at a random moment "
                f"waits for the rest of the background burst in progress, whose p95 at this load is "
                f"{_f(off['burst_wait_p95_ms'])} ms (from the measured bursts per network), so no scheduling of "
                f"those bursts can beat about idle p50 + that = {_f(idle_p50 + off['burst_wait_p95_ms'])} ms. "
                "Search sessions instead leave the device idle for the next search."
            ),
        ]
    return "\n".join(lines)


def _interval(ratio: Mapping[str, Any]) -> str:
    return f"[{100 * ratio['confidence']:.0f}% CI {_f(ratio['low'], 2)}-{_f(ratio['high'], 2)}]"


def _verdict(verdict: str, result: Mapping[str, Any]) -> str:
    target = f"{result['target_ratio']:g}x"
    return {
        "meets": f"meets the {target} target",
        "misses": f"misses the {target} target",
        "inconclusive": f"inconclusive: the interval spans the {target} target",
        "too few samples": f"too few searches for a verdict (needs {result['min_searches']} on each side)",
    }[verdict]


def _held(sessions: Mapping[str, Any]) -> str:
    if not sessions.get("background_held_s"):
        return ""
    return (
        f"; background held back {_f(sessions['background_held_s'])} s, {sessions['sessions']:g} session(s) started "
        "in the window (one open when the window began is not counted), "
        f"{sessions['starvation_grants']:g} burst(s) let through after waiting half the queue limit"
    )


def markdown(report: Mapping[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = report.get("meta", {})
    parts = [
        "# Service benchmark",
        "",
        (
            f"`{meta.get('command', 'python -m ml_target bench')}` on {meta.get('cores')} cores, timing profile "
            f"`{meta.get('profile')}`, {meta.get('seconds_per_point')} s per point, started {meta.get('started_utc')}."
        ),
        "",
        workload_table(report["rows"]),
        "",
        stage_table(report["rows"], STAGE_WORKLOAD, STAGE_CONCURRENCY),
    ]
    if "immich_default" in report:
        parts += ["", "## Immich default load", "", immich_default_table(report["immich_default"])]
    if "decode" in report:
        parts += ["", "## Reduced-scale JPEG decoding", "", decode_table(report["decode"])]
    return "\n".join(parts) + "\n"


def decode_table(results: Mapping[str, Any]) -> str:
    """Exact vs reduced-DCT-scale decode: CPU time and the pixel difference of the network input."""
    lines = [
        (
            "CLIP 224 px input from a 1440 px preview: exact path (full decode + bicubic resize) vs reduced-scale "
            "decode with the same geometry. The last column is the error the q80 preview itself already carries "
            "(exact crop of the JPEG vs of the pixels before encoding)."
        ),
        "",
        "| photo | exact CPU ms | reduced CPU ms | mean abs diff (0-255) | max abs diff | PSNR dB | q80 preview PSNR dB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {_f(r['exact_ms'], 2)} | {_f(r['draft_ms'], 2)} | {_f(r['mean_abs_diff'], 2)} "
            f"| {_f(r['max_abs_diff'], 0)} | {_f(r['psnr_db'], 1)} | {_f(r['jpeg_q80_psnr_db'], 1)} |"
        )
    return "\n".join(lines)


def chart(report: Mapping[str, Any], path: Path) -> None:
    """Throughput (with the device-bound limit) and device utilisation against concurrency, per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    names = list(dict.fromkeys(r["workload"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        points = sorted((r for r in rows if r["workload"] == name), key=lambda r: r["concurrency"])
        x = [r["concurrency"] for r in points]
        ax.plot(x, [r["rps"] for r in points], "o-", color="tab:blue", label="req/s")
        bound = [r.get("device_bound_rps", float("nan")) for r in points]
        ax.plot(x, bound, "--", color="tab:gray", label="device-bound req/s")
        ax.set_xscale("log", base=2)
        ax.set_xticks(x, [str(c) for c in x])
        ax.set_xlabel("concurrency")
        ax.set_ylabel("requests/s")
        ax.set_ylim(bottom=0)
        ax.set_title(name)
        util = ax.twinx()
        util.plot(
            x,
            [100 * (r.get("device") or {}).get("utilisation", float("nan")) for r in points],
            "s:",
            color="tab:red",
            label="device utilisation %",
        )
        util.set_ylim(0, 105)
        util.set_ylabel("device utilisation %", color="tab:red")
        handles = ax.get_legend_handles_labels()[0] + util.get_legend_handles_labels()[0]
        ax.legend(handles, [h.get_label() for h in handles], loc="lower right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _finite(value: Any) -> Any:
    """NaN and infinities become null, so bench.json is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def write_outputs(
    report: Mapping[str, Any],
    out: Path,
    stem: str,
    to_markdown: Callable[[Mapping[str, Any]], str],
    draw: Callable[[Mapping[str, Any], Path], None] | None,
) -> list[Path]:
    """`stem`.json (strict JSON), `stem`.md and, when there is something to `draw`, `stem`.png in `out` (created)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.json", out / f"{stem}.md"]
    paths[0].write_text(json.dumps(_finite(report), indent=1, sort_keys=True) + "\n")
    paths[1].write_text(to_markdown(report))
    if draw is not None:
        paths.append(out / f"{stem}.png")
        draw(report, paths[2])
    return paths


def write_reports(report: Mapping[str, Any], out: Path) -> list[Path]:
    """bench.json, bench.md and bench.png in `out` (created)."""
    return write_outputs(report, out, "bench", markdown, chart if report["rows"] else None)
