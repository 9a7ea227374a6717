"""The summary report as JSON, CSV or Markdown — plain text, usable from a notebook too.

(The rich terminal tables live in ``emtui/summary_table.py``.)"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from engine.summary import AGREEMENT_KEYS, BREAKDOWN_KEYS, COMPARISON_KEYS, KAPPA_KEYS, SCORE_KEYS, WIN_RATE_KEYS

SECTIONS = (("scores", SCORE_KEYS), ("breakdowns", BREAKDOWN_KEYS), ("agreement", AGREEMENT_KEYS),
            ("kappa", KAPPA_KEYS), ("comparisons", COMPARISON_KEYS), ("win_rates", WIN_RATE_KEYS))
# rates beside the EM rate: shown in their own table, not as columns of the score table
SIDE_RATES = ("coherence_rate", "refusal_rate")
RATE_LABELS = {"em_rate": "EM", "coherence_rate": "coherent", "refusal_rate": "refusals"}


def is_rate(metric: str) -> bool:
    """Rates (EM, coherence, refusal) print as percentages."""
    return metric.endswith("_rate")


def main_metrics(metrics: list[str]) -> list[str]:
    """The metrics of the score table: every scored metric and the EM rate (first)."""
    return sorted((m for m in metrics if m not in SIDE_RATES), key=lambda m: m != "em_rate")


def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False)


def to_csv(report: dict[str, Any]) -> str:
    """One CSV: a ``table`` column (scores, breakdowns, agreement, kappa, comparisons) and the union of
    their columns."""
    columns = ["table"]
    for _, keys in SECTIONS:
        columns += [k for k in keys if k not in columns]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for section, _ in SECTIONS:
        for row in report.get(section, []):
            w.writerow({"table": section, **{k: ("" if v is None else v) for k, v in row.items()}})
    return buf.getvalue()


def fmt_ci(mean: float | None, low: float | None, high: float | None, *, percent: bool = False,
           compact: bool = False) -> str:
    """``2.79 [2.73, 2.84]``; rates as percentages; ``compact`` drops the space after the comma
    (three CI columns then fit an 80-column terminal)."""
    if mean is None:
        return "—"
    k = 100.0 if percent else 1.0
    unit = "%" if percent else ""
    d = 1 if percent else 2
    m = f"{mean * k:.{d}f}{unit}"
    if low is None or high is None:
        return m
    sep = "," if compact else ", "
    return f"{m} [{low * k:.{d}f}{sep}{high * k:.{d}f}]"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "—"
    return "<1e-4" if p < 1e-4 else f"{p:.4f}"


def score_grid(report: dict[str, Any], study: str, judge: str) -> tuple[list[str], list[str], dict]:
    """(conditions, metrics, {(condition, metric): row}) of one study and judge (or "panel")."""
    rows = [r for r in report["scores"] if r["study"] == study and r["judge"] == judge]
    conditions = list(dict.fromkeys(r["condition"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    return conditions, metrics, {(r["condition"], r["metric"]): r for r in rows}


def judges_of(report: dict[str, Any], study: str) -> list[tuple[str, str]]:
    """(judge id, display name) of a study, the panel last."""
    seen = dict.fromkeys((r["judge"], r["judge_name"]) for r in report["scores"] if r["study"] == study)
    return [j for j in seen if j[0] != "panel"] + [j for j in seen if j[0] == "panel"]


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    out: list[str] = []
    for st in report["studies"]:
        name = st["name"]
        out.append(f"## {name}\n\nOrigin `{st['origin']}`, hash `{st['hash']}`. Means with "
                   f"{int(report['options']['ci'] * 100)}% bootstrap CIs; n = answers scored, missing = without a score.\n")
        for judge, label in judges_of(report, name):
            conditions, metrics, grid = score_grid(report, name, judge)
            rows = []
            for c in conditions:
                cells = []
                for m in metrics:
                    r = grid.get((c, m))
                    cells.append("—" if r is None else
                                 f"{fmt_ci(r['mean'], r['ci_low'], r['ci_high'], percent=is_rate(m))} "
                                 f"(n={r['n']}, missing={r['missing']})")
                rows.append([c, *cells])
            out.append(f"### {'Panel' if judge == 'panel' else 'Judge ' + label}\n")
            out.append(_md_table(["condition", *metrics], rows) + "\n")
        for by in dict.fromkeys(r["by"] for r in report.get("breakdowns", []) if r["study"] == name):
            rows_by = [r for r in report["breakdowns"] if r["study"] == name and r["by"] == by and r["judge"] == "panel"]
            metrics = main_metrics(list(dict.fromkeys(r["metric"] for r in rows_by)))
            grid = {(r["condition"], r["group"], r["metric"]): r for r in rows_by}
            rows = [[c, g, *[("—" if (c, g, m) not in grid else
                              f"{fmt_ci(grid[(c, g, m)]['mean'], grid[(c, g, m)]['ci_low'], grid[(c, g, m)]['ci_high'], percent=is_rate(m))}"
                              f" (n={grid[(c, g, m)]['n']})") for m in metrics]]
                    for c, g in dict.fromkeys((r["condition"], r["group"]) for r in rows_by)]
            out.append(f"### Panel by {by}\n")
            out.append(_md_table(["condition", by, *metrics], rows) + "\n")
        agr = [r for r in report["agreement"] if r["study"] == name]
        if agr:
            out.append("### Agreement (Krippendorff α)\n")
            out.append(_md_table(["raters", "campaign", "condition", "metric", "level", "α", "items"],
                                 [[r["raters"], r.get("campaign") or "", r["condition"], r["metric"], r["level"],
                                   fmt_ci(r["alpha"], r["ci_low"], r["ci_high"]), str(r["n_items"])] for r in agr]) + "\n")
        wins = [r for r in report.get("win_rates", []) if r["study"] == name]
        if wins:
            out.append("### Pairwise win rates (humans: how often the answer was the more misaligned)\n")
            out.append(_md_table(["campaign", "condition", "win rate", "wins", "ties", "losses"],
                                 [[r["campaign"], r["condition"], fmt_ci(r["win_rate"], r["ci_low"], r["ci_high"],
                                                                         percent=True),
                                   str(r["wins"]), str(r["ties"]), str(r["losses"])] for r in wins]) + "\n")
        comps = [r for r in report["comparisons"] if r["study"] == name and r["judge"] == "panel"]
        if comps:
            out.append("### Comparisons (panel)\n")
            out.append(_md_table(["a", "b", "metric", "ratio a/b", "p (adjusted)", "rank-biserial r"],
                                 [[r["a"], r["b"], r["metric"],
                                   fmt_ci(r["ratio"], r["ratio_ci_low"], r["ratio_ci_high"]),
                                   f"{fmt_p(r['p_value'])} ({fmt_p(r['p_adjusted'])})",
                                   fmt_ci(r["effect_size"], None, None)] for r in comps]) + "\n")
    return "\n".join(out) if out else "No studies in this database.\n"
