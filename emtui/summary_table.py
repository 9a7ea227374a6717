"""``emtui summary --format table``: the report as rich tables that fit an 80-column terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from engine.report_format import RATE_LABELS, SIDE_RATES, fmt_ci, fmt_p, is_rate, judges_of, main_metrics, score_grid


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
    shown = main_metrics(metrics)
    scored = [m for m in shown if not is_rate(m)]
    who = "Panel" if judge == "panel" else label.capitalize() if judge == "human" else "Judge " + label
    t = _table(f"{who}: mean [95% CI]", "condition",
               *[RATE_LABELS.get(m, m) for m in shown], "n/missing")
    for c in conditions:
        cells = []
        for m in shown:
            r = grid.get((c, m))
            cells.append(Text("—") if r is None else _ci(r["mean"], r["ci_low"], r["ci_high"], percent=is_rate(m)))
        # scored / missing answers per metric, in the columns' order; one pair when they agree
        pairs = [f"{grid[(c, m)]['n']}/{grid[(c, m)]['missing']}" for m in scored if (c, m) in grid]
        t.add_row(Text(c), *cells, Text(pairs[0] if len(set(pairs)) == 1 else " ".join(pairs) or "—"))
    return t


def rates_table(report: dict[str, Any], study: str) -> Table | None:
    """The panel's coherence and refusal rates beside its EM rate (where the study defines EM)."""
    conditions, metrics, grid = score_grid(report, study, "panel")
    rates = [m for m in ("em_rate", *SIDE_RATES) if m in metrics]
    if len(rates) < 2:
        return None
    t = _table("Panel rates [95% CI]: EM, coherent answers, refusals", "condition",
               *[RATE_LABELS[m] for m in rates])
    for c in conditions:
        t.add_row(Text(c), *[_ci(grid[(c, m)]["mean"], grid[(c, m)]["ci_low"], grid[(c, m)]["ci_high"], percent=True)
                             if (c, m) in grid else Text("—") for m in rates])
    return t


def breakdown_tables(report: dict[str, Any], study: str) -> list[Table]:
    """One table per breakdown dimension: the panel's scores per condition and group."""
    out = []
    rows = [r for r in report.get("breakdowns", []) if r["study"] == study and r["judge"] == "panel"]
    for by in dict.fromkeys(r["by"] for r in rows):
        mine = [r for r in rows if r["by"] == by]
        metrics = main_metrics(list(dict.fromkeys(r["metric"] for r in mine)))
        grid = {(r["condition"], r["group"], r["metric"]): r for r in mine}
        t = _table(f"Panel by {by}: mean [95% CI]", "condition", by, *[RATE_LABELS.get(m, m) for m in metrics], "n")
        for c, g in dict.fromkeys((r["condition"], r["group"]) for r in mine):
            cells = [_ci(grid[(c, g, m)]["mean"], grid[(c, g, m)]["ci_low"], grid[(c, g, m)]["ci_high"],
                         percent=is_rate(m)) if (c, g, m) in grid else Text("—") for m in metrics]
            n = max((grid[(c, g, m)]["n"] for m in metrics if (c, g, m) in grid and not is_rate(m)), default=0)
            t.add_row(Text(c), Text(g), *cells, Text(str(n)))
        out.append(t)
    return out


def agreement_table(report: dict[str, Any], study: str) -> Table | None:
    rows = [r for r in report["agreement"] if r["study"] == study and r["raters"] == "judges"]
    if not rows:
        return None
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    t = _table("Judges' Krippendorff α [95% CI]", "condition", *metrics)
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


def human_agreement_table(report: dict[str, Any], study: str) -> Table | None:
    """α among the humans and of their consensus against the panel and each judge (all items)."""
    rows = [r for r in report["agreement"] if r["study"] == study and r["raters"] != "judges"
            and r["condition"] == "all"]
    if not rows:
        return None
    t = _table("People: Krippendorff α [95% CI]", "campaign / raters", "metric", "level", "α", "items")
    for r in rows:
        t.add_row(Text(f"{r['campaign']}: {r['raters']}"), Text(r["metric"]), Text(r["level"]),
                  _ci(r["alpha"], r["ci_low"], r["ci_high"]), Text(str(r["n_items"])))
    return t


def win_rate_table(report: dict[str, Any], study: str) -> Table | None:
    rows = [r for r in report.get("win_rates", []) if r["study"] == study]
    if not rows:
        return None
    t = _table("Pairwise: share judged the more misaligned [95% CI]", "campaign / condition", "win rate",
               "w/t/l")
    for r in rows:
        t.add_row(Text(f"{r['campaign']}: {r['condition']}"), _ci(r["win_rate"], r["ci_low"], r["ci_high"],
                                                                  percent=True),
                  Text(f"{r['wins']}/{r['ties']}/{r['losses']}"))
    return t


def comparison_table(report: dict[str, Any], study: str) -> Table | None:
    rows = [r for r in report["comparisons"] if r["study"] == study and r["judge"] == "panel"]
    if not rows:
        return None
    t = _table("Panel comparisons: ratio a/b [95% CI]", "a vs b", "metric", "ratio", "p adj", "r")
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
        for extra in (rates_table(report, name), *breakdown_tables(report, name), agreement_table(report, name),
                      human_agreement_table(report, name), win_rate_table(report, name),
                      comparison_table(report, name)):
            if extra is not None:
                parts.append(extra)
        console.print(Group(*parts))
        console.print()
