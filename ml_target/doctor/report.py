"""`doctor`'s findings: one line per check, a verdict, what was measured and how to fix a failure."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any


class Verdict(str, Enum):
    """PASS and FAIL decide the exit code; WARN is worth reading; SKIP says why nothing was checked."""

    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    SKIP = "SKIP"


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    verdict: Verdict
    detail: str
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "verdict": self.verdict.value, "detail": self.detail, "fix": self.fix,
                "data": self.data}


def passed(checks: list[Check]) -> bool:
    return not any(check.verdict is Verdict.FAIL for check in checks)


def render(checks: list[Check], width: int = 110) -> str:
    """A plain-text table: verdict, check, what was found; the fix under each failing or warning line."""
    name_width = max([len(c.name) for c in checks] + [5])
    lines = [f"{'':4}  {'check':<{name_width}}  result", "-" * width]
    body_width = max(30, width - name_width - 8)
    for check in checks:
        detail = textwrap.wrap(check.detail, body_width) or [""]
        lines.append(f"{check.verdict.value:<4}  {check.name:<{name_width}}  {detail[0]}")
        lines += [f"{'':4}  {'':<{name_width}}  {rest}" for rest in detail[1:]]
        if check.fix and check.verdict in (Verdict.FAIL, Verdict.WARN):
            for i, part in enumerate(textwrap.wrap(check.fix, body_width - 5)):
                lines.append(f"{'':4}  {'':<{name_width}}  {'fix: ' if i == 0 else '     '}{part}")
    counts = {v: sum(c.verdict is v for c in checks) for v in Verdict}
    summary = ", ".join(f"{n} {v.value.lower()}" for v, n in counts.items() if n)
    lines += ["-" * width, f"{'doctor: OK' if passed(checks) else 'doctor: FAILED'} ({summary})"]
    return "\n".join(lines)


def write_json(checks: list[Check], path: Path, context: dict[str, Any]) -> None:
    """The report as JSON, for a bug report or a script."""
    document = {"passed": passed(checks), **context, "checks": [c.to_dict() for c in checks]}
    Path(path).write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
