"""`bench --library` outputs: library.json (everything), library.md (tables), library.png (chart)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ml_target.benchmarks.library import JOB_NAMES
from ml_target.benchmarks.procstat import EMULATOR_GROUP
from ml_target.benchmarks.report import _f, _pct, write_outputs

EMULATOR_LABEL = "emulated device (not host work on a Hailo)"


def _jobs(names: list[str]) -> str:
    return " + ".join(JOB_NAMES[n] for n in names)


def mix_line(mix: Mapping[str, Mapping[str, float]]) -> str:
    parts = []
    for label, shares in mix.items():
        parts.append(f"{label}: " + ", ".join(f"{kind} {_pct(share)}" for kind, share in shares.items()))
    return "; ".join(parts)


def alone_table(report: Mapping[str, Any]) -> str:
    """Each job alone at its concurrency: rate, latency, device and host time per photo."""
    lines = [
        "| job (alone) | conc. | photos/s | photos/h | p50 / p95 ms | device ms/photo (by network) "
        "| worker CPU ms/photo | emulator CPU ms/photo | device busy | limit |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for job, phase in report["alone"].items():
        stats = phase["jobs"][job]
        photo = phase["per_photo"][job]
        networks = ", ".join(f"{hef} {_f(ms)}" for hef, ms in photo["device_ms"].items())
        lines.append(
            f"| {JOB_NAMES[job]} | {report['jobs_concurrency'][job]} | {_f(stats['rps'], 2)} | {_f(3600 * stats['rps'], 0)} "
            f"| {_f(stats['p50_ms'], 0)} / {_f(stats['p95_ms'], 0)} | **{_f(photo['device_ms_total'])}**: {networks} "
            f"| {_f(photo.get('worker_cpu_ms'))} | {_f(photo.get('emulator_cpu_ms'))} "
            f"| {_pct((phase.get('device') or {}).get('utilisation', float('nan')))} | {phase['limit']['verdict']} |"
        )
    return "\n".join(lines)


def phase_table(report: Mapping[str, Any]) -> str:
    """The scan's phases for the library size: jobs running, their rates, how long, what limits."""
    lines = [
        f"| phase | jobs running | photos/h per job | hours ({report['library_size']:,} photos) | then done "
        "| device busy | server CPU cores (worker + emulator) | limit |",
        "|---:|---|---|---:|---|---:|---:|---|",
    ]
    for i, phase in enumerate(report["phases"], 1):
        rates = ", ".join(f"{JOB_NAMES[j]} {_f(r, 0)}" for j, r in phase["rates_per_hour"].items())
        limit = phase["limit"]
        lines.append(
            f"| {i} | {_jobs(phase['running'])} | {rates} | {_f(phase['hours'], 2)} | {_jobs(phase['finished'])} "
            f"| {_pct(limit['device_utilisation'])} | {_f(limit.get('server'), 2)} ({_f(limit.get('worker'), 2)} + "
            f"{_f(limit.get('emulator'), 2)}) | {limit['verdict']} |"
        )
    return "\n".join(lines)


def summary_lines(report: Mapping[str, Any]) -> list[str]:
    done = ", ".join(f"{JOB_NAMES[j]} after {_f(h, 2)} h" for j, h in sorted(report["done_hours"].items(), key=lambda i: i[1]))
    return [
        (
            f"- **{report['library_size']:,} photos: {_f(report['total_hours'], 2)} h** "
            f"({_f(report['photos_per_hour'], 0)} photos/h through all three jobs); {done}."
        ),
        (
            f"- Floors: a device that never idles would need {_f(report['device_floor_hours'], 2)} h "
            f"({_f(sum(report['device_ms_per_photo'].values()))} device ms per photo); the worker's host CPU on all "
            f"{report['cores']} cores {_f(report['worker_cpu_floor_hours'], 2)} h "
            f"({_f(sum(report['worker_cpu_ms_per_photo'].values()))} CPU ms per photo, emulator excluded)."
        ),
    ]


def markdown(report: Mapping[str, Any]) -> str:
    meta = report.get("meta", {})
    load = meta.get("load_before"), meta.get("load_after")
    loads = " / ".join(", ".join(f"{v:.2f}" for v in values) for values in load if values)
    return "\n".join(
        [
            "# Library scan benchmark",
            "",
            (
                f"`{meta.get('command')}`, timing profile `{meta.get('profile')}`, {report['cores']} cores, "
                f"started {meta.get('started_utc')}, load average before / after: {loads}."
            ),
            "",
            f"Photo mix ({len(report['photos'])} previews, cycled): {mix_line(report['mix'])}.",
            "",
            alone_table(report),
            "",
            phase_table(report),
            "",
            *summary_lines(report),
            "",
            "![where each photo's device and host time goes](library.png)",
            "",
        ]
    )


def chart(report: Mapping[str, Any], path: Path) -> None:
    """Per job, stacked: device ms per photo by network, and worker CPU ms per photo by thread group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    jobs = list(report["alone"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))

    def host(photo: Mapping[str, Any]) -> dict[str, float]:
        # The emulator's share goes last, greyed: a Hailo does that work on the chip, not the host.
        parts = {k: v for k, v in photo.get("cpu_ms", {}).items() if k != EMULATOR_GROUP and v > 0}
        return {**dict(sorted(parts.items())), EMULATOR_LABEL: photo.get("cpu_ms", {}).get(EMULATOR_GROUP, 0.0)}

    panels = (
        ("device ms per photo (modelled)", lambda p: dict(sorted(p["device_ms"].items()))),
        ("host CPU ms per photo (worker, then the emulator)", host),
    )
    for ax, (title, parts_of) in zip(axes, panels):
        colours: dict[str, Any] = {}
        for y, job in enumerate(jobs):
            left = 0.0
            for part, value in parts_of(report["alone"][job]["per_photo"][job]).items():
                style = {"color": "lightgrey", "hatch": "//"} if part == EMULATOR_LABEL else {"color": colours.get(part)}
                bar = ax.barh(y, value, left=left, label=None if part in colours else part, **style)
                colours.setdefault(part, bar.patches[0].get_facecolor())
                left += value
        ax.set_yticks(range(len(jobs)), [JOB_NAMES[j] for j in jobs])
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.suptitle(f"{report['meta'].get('profile')}: {_f(report['total_hours'], 2)} h for {report['library_size']:,} photos", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_library_reports(report: Mapping[str, Any], out: Path) -> list[Path]:
    """library.json, library.md and library.png in `out` (created)."""
    return write_outputs(report, out, "library", markdown, chart)
