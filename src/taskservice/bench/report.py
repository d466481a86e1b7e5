"""Bench output: a row per measurement, printed as a table, written as JSON and charted."""

from __future__ import annotations

import json
import operator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    """`on` is "ratio" (to the ceiling, or to `Row.ratio_of`) or "value" (the absolute figure)."""

    on: str
    op: str
    threshold: float

    def met(self, row: Row) -> bool | None:
        figure = row.ratio if self.on == "ratio" else row.value
        return None if figure is None else bool(_OPS[self.op](figure, self.threshold))

    def __str__(self) -> str:
        return f"{'ratio' if self.on == 'ratio' else 'value'} {self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Row:
    name: str
    unit: str
    value: float | None
    ceiling: float | None = None  # the same load on the ceiling server (or what `ratio_of` names)
    target: Target | None = None
    note: str = ""
    ratio_of: str = "the ceiling"

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.ceiling:
            return None
        return self.value / self.ceiling

    def met(self) -> bool | None:
        if self.target and self.value is None:
            return False  # the scenario failed
        return self.target.met(self) if self.target else None

    def line(self) -> str:
        ratio = f" ratio {self.ratio:.2f}" if self.ratio is not None else ""
        return f"  {self.name}: {_num(self.value)} {self.unit}{ratio}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = str(self.target) if self.target else None
        data["ratio"] = self.ratio
        data["met"] = self.met()
        return data


def _num(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}"


def table(rows: list[Row], judged: bool) -> str:
    """A plain-text table: scenario, server, ceiling, ratio, target and whether it was met."""
    head = ("scenario", "server", "ceiling", "ratio", "target", "met", "notes")
    body = []
    for row in rows:
        met = row.met()
        verdict = "-" if met is None or not judged else ("yes" if met else "NO")
        body.append(
            (
                row.name,
                f"{_num(row.value)} {row.unit}",
                _num(row.ceiling),
                f"{row.ratio:.2f}" if row.ratio is not None else "-",
                str(row.target) if row.target else "-",
                verdict,
                row.note,
            )
        )
    widths = [max(len(str(r[i])) for r in (head, *body)) for i in range(len(head))]
    lines = [
        " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (head, *body)
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path: Path, rows: list[Row], meta: dict[str, Any]) -> None:
    judged = [row.met() for row in rows if row.met() is not None]
    data = {
        "meta": meta,
        "results": [row.to_json() for row in rows],
        "targets": {
            "met": sum(1 for m in judged if m),
            "judged": len(judged),
            "judged_run": not meta["quick"],
        },
    }
    path.write_text(json.dumps(data, indent=2) + "\n")


def write_chart(path: Path, rows: list[Row], title: str) -> bool:
    """A bar per ratio with its target marked; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    ratios = [row for row in rows if row.ratio is not None and row.unit not in ("ms", "MiB", "s")]
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(ratios) + 1.5))
    names = [row.name for row in ratios]
    values = [row.ratio or 0.0 for row in ratios]
    colors = [
        "tab:green" if row.met() else ("tab:red" if row.met() is False else "tab:gray") for row in ratios
    ]
    ax.barh(names, values, color=colors)
    for y, row in enumerate(ratios):
        if row.target and row.target.on == "ratio":
            ax.plot([row.target.threshold] * 2, [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.text((row.ratio or 0) + 0.01, y, f"{row.ratio:.2f}", va="center")
    ax.axvline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the do-nothing grpcio server in the same run (black tick: target)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
