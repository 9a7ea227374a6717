"""``emtui summary --format table``: the report as rich tables that fit an 80-column terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from engine.report_format import fmt_ci, fmt_p, judges_of, score_grid


def _ci(mean, low, high, *, percent: bool = False) -> Text:
    """A CI cell, without the space after the comma: three of them fit 80 columns."""
    return Text(fmt_ci(mean, low, high, percent=percent, compact=True))


def _table(title: str, *columns: str) -> Table:
    t = Table(title=title, title_justify="left", title_style="bold", show_edge=False, pad_edge=False,
              header_style="bold", expand=False)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i == 0 else "right", overflow="fold")
    return t


def score_table(report: dict[str, Any], study: str, judge: str, label: str) -> Table:
    conditions, metrics, grid = score_grid(report, study, judge)
    scored = [m for m in metrics if m != "em_rate"]
    t = _table(f"{'Panel' if judge == 'panel' else 'Judge ' + label}: mean [95% CI]", "condition", *metrics,
               "n/missing")
    for c in conditions:
        cells = []
        for m in metrics:
            r = grid.get((c, m))
            cells.append(Text("—") if r is None else
                         _ci(r["mean"], r["ci_low"], r["ci_high"], percent=m == "em_rate"))
        # scored / missing answers per metric, in the columns' order; one pair when they agree
        pairs = [f"{grid[(c, m)]['n']}/{grid[(c, m)]['missing']}" for m in scored if (c, m) in grid]
        t.add_row(Text(c), *cells, Text(pairs[0] if len(set(pairs)) == 1 else " ".join(pairs) or "—"))
    return t


def agreement_table(report: dict[str, Any], study: str) -> Table | None:
    rows = [r for r in report["agreement"] if r["study"] == study]
    if not rows:
        return None
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    t = _table("Agreement among judges: Krippendorff α [95% CI]; interval, then ordinal",
               "condition", *metrics)
    by = {(r["condition"], r["metric"], r["level"]): r for r in rows}
    for c in dict.fromkeys(r["condition"] for r in rows):
        for level in ("interval", "ordinal"):
            cells = []
            for m in metrics:
                r = by.get((c, m, level))
                cells.append(_ci(r["alpha"], r["ci_low"], r["ci_high"]) if r else Text("—"))
            t.add_row(Text(c if level == "interval" else "  ordinal", style="" if level == "interval" else "dim"),
                      *cells)
    return t


def comparison_table(report: dict[str, Any], study: str) -> Table | None:
    rows = [r for r in report["comparisons"] if r["study"] == study and r["judge"] == "panel"]
    if not rows:
        return None
    t = _table("Comparisons (panel): ratio a/b [95% CI], p adjusted, rank-biserial r",
               "a vs b", "metric", "ratio", "p adj", "r")
    for r in rows:
        t.add_row(Text(f"{r['a']} vs {r['b']}"), Text(r["metric"]),
                  _ci(r["ratio"], r["ratio_ci_low"], r["ratio_ci_high"]),
                  Text(fmt_p(r["p_adjusted"])), Text("—" if r["effect_size"] is None else f"{r['effect_size']:+.2f}"))
    return t


def render(report: dict[str, Any], console: Console) -> None:
    if not report["studies"]:
        console.print("No studies in this database: emtui init STUDY.toml, or emtui import ...")
        return
    for st in report["studies"]:
        name = st["name"]
        parts: list[Any] = [Text(f"{name}", style="bold underline"),
                            Text(f"origin {st['origin']}, hash {st['hash'].split(':')[-1][:12]}", style="dim")]
        judges = judges_of(report, name)
        if not judges:
            parts.append(Text("no judged answers yet"))
        for judge, label in [j for j in judges if j[0] == "panel"] + [j for j in judges if j[0] != "panel"]:
            parts.append(score_table(report, name, judge, label))
        for extra in (agreement_table(report, name), comparison_table(report, name)):
            if extra is not None:
                parts.append(extra)
        console.print(Group(*parts))
        console.print()
