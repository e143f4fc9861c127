"""Verdicts against stated thresholds, and the report as a table, JSON and a PNG of distributions.

Thresholds (also in README.md):
- clip.visual / clip.textual: cosine to Immich's embedding, mean >= 0.99 and 5th percentile >= 0.98.
  Hailo HEFs are quantised (8/16-bit), so exact equality is impossible; below these values the
  worker's vectors would visibly drift from a library's stored ones.
- clip.retrieval: for each query, the overlap of the top-5 images ranked by Immich's vectors and
  by the worker's, mean >= 0.8: searches return mostly the same photos first.
- ocr: exact-line match >= 0.8 (identical text / max(lines found by either side)), box IoU of the
  matched lines mean >= 0.5 (the Hailo detector has a fixed input size, so boxes legitimately
  differ a little), and every box normalised to 0..1 as Immich stores it.
- facial-recognition, compatible mode (Immich's own recogniser on the host CPU): for every face the
  worker found, its embedding against Immich's recogniser on the same crop (the worker's landmarks,
  from a detection-only request), minimum >= 0.999: the same ONNX on the same crop must give the same
  vector, so anything lower is a wrong colour order, normalisation, alignment or model file. Box IoU
  and the end-to-end cosine (Immich's own detector's landmarks) are reported: they measure the
  Hailo detector, whose quantised SCRFD legitimately moves boxes a little. The Hailo ArcFace opt-in
  is reported, never judged: it is not the recogniser in any Immich pack, so its embeddings live in
  another space by construction.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

THRESHOLDS: dict[str, tuple[tuple[str, float], ...]] = {
    "clip.visual": (("cosine mean", 0.99), ("cosine p5", 0.98)),
    "clip.textual": (("cosine mean", 0.99), ("cosine p5", 0.98)),
    "clip.retrieval": (("top-5 overlap mean", 0.8),),
    "ocr": (
        ("exact-line match", 0.8),
        ("box IoU mean", 0.5),
        ("boxes normalised", 1.0),
    ),
    "facial-recognition": (("same-crop cosine min", 0.999),),
}
FACES_CAVEAT = (
    "Faces are reported, not judged: the worker runs the Hailo Model Zoo ArcFace (MS1MV3, the "
    "FACE_SERVE_ANY_MODEL_NAME opt-in), which is not the recogniser of Immich's packs (WebFace600K / "
    "Glint360K), so embedding cosines are expected to be low. A library switching to or from it must "
    "re-run face detection for all assets."
)
FACES_COMPATIBLE_NOTE = (
    "same-crop cosine: the worker's embedding against Immich's recogniser on the worker's own landmarks "
    "(judged); end-to-end cosine and box IoU: against Immich's detector too (reported; they measure the "
    "Hailo SCRFD). Immich keeps a re-detected face when its box overlaps the stored one by IoU > 0.5."
)
STATUSES = ("pass", "fail", "report-only", "skipped")


@dataclass(frozen=True)
class Check:
    """One measure against its threshold (always `value >= threshold`)."""

    name: str
    value: float
    threshold: float

    @property
    def passed(self) -> bool:
        return not math.isnan(self.value) and self.value >= self.threshold


@dataclass
class TaskResult:
    """What `verify` found for one task: measures, checks, notes and the raw distributions."""

    task: str
    model: str | None
    claimed: bool
    measures: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    distributions: dict[str, list[float]] = field(default_factory=dict)
    skipped: bool = False
    failed: bool = False  # set when the worker failed outright (e.g. refused the model)

    @property
    def status(self) -> str:
        if self.skipped:
            return "skipped"
        if not self.claimed:
            return "report-only"
        if self.failed or not all(c.passed for c in self.checks):
            return "fail"
        return "pass"

    def judge(self, values: dict[str, float]) -> None:
        """Attach the task's stated thresholds to the measured `values`."""
        self.checks = [
            Check(name, float(values.get(name, float("nan"))), limit)
            for name, limit in THRESHOLDS[self.task]
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "model": self.model,
            "status": self.status,
            "claimed_faithful": self.claimed,
            "measures": self.measures,
            "checks": [{**asdict(c), "passed": c.passed} for c in self.checks],
            "notes": self.notes,
        }


@dataclass
class Report:
    """All tasks plus what was compared with what."""

    tasks: list[TaskResult]
    meta: dict[str, Any]

    def task(self, name: str) -> TaskResult:
        return next(t for t in self.tasks if t.task == name)

    @property
    def failed(self) -> list[str]:
        return [t.task for t in self.tasks if t.status == "fail"]

    def exit_code(self) -> int:
        """1 when a task the worker claims to serve faithfully falls short; 2 when nothing was verified."""
        if self.failed:
            return 1
        if all(t.status == "skipped" for t in self.tasks):
            return 2
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": "fail" if self.failed else "pass",
            "failed_tasks": self.failed,
            "thresholds": {k: dict(v) for k, v in THRESHOLDS.items()},
            "meta": self.meta,
            "tasks": [t.to_dict() for t in self.tasks],
        }

    def table(self) -> str:
        """A plain-text table: one block per task, one row per measure, then notes."""
        rows = [("task", "model", "status", "measure", "value", "threshold")]
        for t in self.tasks:
            judged = {c.name: c for c in t.checks}
            measures = _flat_measures(t.measures)
            names = list(judged) + [n for n in measures if n not in judged]
            if not names:
                rows.append((t.task, t.model or "-", t.status.upper(), "-", "-", "-"))
            for i, name in enumerate(names):
                value = judged[name].value if name in judged else measures[name]
                limit = f">= {judged[name].threshold:g}" if name in judged else ""
                mark = (
                    ""
                    if name not in judged
                    else (" ok" if judged[name].passed else " FAIL")
                )
                head = (
                    (t.task, t.model or "-", t.status.upper())
                    if i == 0
                    else ("", "", "")
                )
                rows.append((*head, name, f"{_fmt(value)}{mark}", limit))
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for t in self.tasks:
            lines += [f"{t.task}: {note}" for note in t.notes]
        verdict = "FAIL: " + ", ".join(self.failed) if self.failed else "PASS"
        lines.append(f"verdict: {verdict}")
        return "\n".join(lines)

    def write(self, out_dir: Path) -> list[Path]:
        """`report.json`, `report.txt` and (with matplotlib) `cosines.png` in `out_dir`."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [out_dir / "report.json", out_dir / "report.txt"]
        written[0].write_text(
            json.dumps(self.to_dict(), indent=2, default=float) + "\n", encoding="utf-8"
        )
        written[1].write_text(self.table() + "\n", encoding="utf-8")
        png = write_png(self, out_dir / "cosines.png")
        return written + ([png] if png else [])


def _flat_measures(measures: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for key, value in measures.items():
        if isinstance(value, dict):
            flat.update({f"{key} {k}": v for k, v in value.items() if k != "count"})
        elif isinstance(value, (int, float)):
            flat[key] = value
    return flat


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.4f}"


def write_png(report: Report, path: Path) -> Path | None:
    """Histograms of every per-item distribution, with the task's threshold marked; None without any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        (t, name, values)
        for t in report.tasks
        for name, values in t.distributions.items()
        if values
    ]
    if not panels:
        return None
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(7, 2.2 * len(panels)), squeeze=False
    )
    for ax, (task, name, values) in zip(axes[:, 0], panels):
        limit = dict(THRESHOLDS[task.task]).get(f"{name} mean")
        low = min(
            [*values, 0.0 if limit is None else limit]
        )  # zoomed in on cosines near 1
        low -= 0.02 * (1.0 - low) + 1e-4
        ax.hist(values, bins=40, range=(low, 1.0), color="tab:blue")
        if limit is not None:
            ax.axvline(
                limit,
                color="tab:red",
                linestyle="--",
                label=f"mean threshold {limit:g}",
            )
            ax.legend(loc="upper left", fontsize=8)
        ax.set_title(f"{task.task} {name} ({task.model}, {task.status})", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
