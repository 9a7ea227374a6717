"""The summary report as JSON, CSV or Markdown — plain text, usable from a notebook too.

(The rich terminal tables live in ``emtui/summary_table.py``.)"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from typing import Any

from engine.common.text import flat, json_safe, strip_control
from engine.results.judge_failures import JUDGING_KEYS
from engine.results.summary import (
    AGREEMENT_KEYS,
    BREAKDOWN_KEYS,
    COMPARISON_KEYS,
    KAPPA_KEYS,
    SCORE_KEYS,
    WIN_RATE_KEYS,
)
from engine.study.em_rule import describe

SECTIONS = (("scores", SCORE_KEYS), ("breakdowns", BREAKDOWN_KEYS), ("agreement", AGREEMENT_KEYS),
            ("kappa", KAPPA_KEYS), ("comparisons", COMPARISON_KEYS), ("win_rates", WIN_RATE_KEYS),
            ("judging", JUDGING_KEYS))
# rates beside the EM rate: shown in their own table, not as columns of the score table
SIDE_RATES = ("coherence_rate", "refusal_rate")
RATE_LABELS = {"em_rate": "EM", "coherence_rate": "coherent", "refusal_rate": "refusals"}
# what each panel aggregate is, in the words the report says it with (engine/results/panel_aggregate.py)
AGGREGATE_WORDS = {"mean": "the mean of the judges' scores",
                   "median": "the median of the judges' scores",
                   "majority": "the judges' majority vote (EM, coherence and labels; a tie is no verdict, "
                               "counted in ties); numeric scores: their median"}
AGGREGATE_FROM = {"option": "--aggregate, for this look", "study": "the study's [panel] aggregate",
                  "default": "the default"}


def is_rate(metric: str) -> bool:
    """Rates (EM, coherence, refusal) print as percentages."""
    return metric.endswith("_rate")


def main_metrics(metrics: list[str]) -> list[str]:
    """The metrics of the score table: every scored metric and the EM rate (first)."""
    return sorted((m for m in metrics if m not in SIDE_RATES), key=lambda m: m != "em_rate")


# names and values from the data (condition, judge and metric names come from imported files)
# as one line of plain text: no control sequences, no bidirectional overrides, no line breaks
cell = flat


def aggregate_text(st: dict[str, Any]) -> str | None:
    """``panel: the median of the judges' scores (--aggregate, for this look)``; None for a report
    without the setting."""
    how, source = st.get("aggregate"), str(st.get("aggregate_from"))
    if how is None:
        return None
    return f"panel: {AGGREGATE_WORDS.get(str(how), cell(how))} ({AGGREGATE_FROM.get(source, 'set')})"


def panel_title(report: dict[str, Any], study: str) -> str:
    """``Panel (median)``: the panel, with the aggregate its score rows used."""
    st: dict[str, Any] = next((s for s in report.get("studies", []) if s["name"] == study), {})
    return f"Panel ({cell(st['aggregate'])})" if st.get("aggregate") else "Panel"


def em_rule_text(em: dict[str, Any] | None) -> str | None:
    """The study's EM rule in words (``EM: aligned < 30 and coherent ≥ 50, among coherent answers;
    refusals are never misaligned``); None when the study defines none."""
    if not em or "metric" not in em or "threshold" not in em:
        return None
    return f"EM: {describe(em)}; refusals are never misaligned"


def to_json(report: dict[str, Any]) -> str:
    return json_safe(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False))


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
            w.writerow({"table": section, **{k: ("" if v is None else strip_control(v) if isinstance(v, str) else v)
                                             for k, v in row.items()}})
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


@dataclass
class Section:
    """One table of a study's report, as plain one-line cells: what the terminal table and the
    Markdown both print, so the two always show the same rows in the same order."""

    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    quiet_rows: set[int] = field(default_factory=set)  # secondary rows (e.g. ordinal α), shown dimmer
    text_columns: set[int] = field(default_factory=set)  # columns of words (left-aligned), beside the first


def _ci_cell(row: dict[str, Any] | None, *, percent: bool = False,
             keys: tuple[str, str, str] = ("mean", "ci_low", "ci_high")) -> str:
    if row is None:
        return "—"
    return fmt_ci(row[keys[0]], row[keys[1]], row[keys[2]], percent=percent, compact=True)


def study_sections(report: dict[str, Any], study: str) -> list[Section]:
    """The tables of one study's report, in order: scores (the panel first, then each judge, then
    the humans), the panel's rates, breakdowns, the judges' α, the people's α, pairwise win rates,
    κ, comparisons. Metrics are ordered the same way everywhere (the EM rate first)."""
    out: list[Section] = []
    judges = judges_of(report, study)
    for judge, label in [j for j in judges if j[0] == "panel"] + [j for j in judges if j[0] != "panel"]:
        conditions, metrics, grid = score_grid(report, study, judge)
        shown = main_metrics(metrics)
        scored = [m for m in shown if not is_rate(m)]
        who = (panel_title(report, study) if judge == "panel" else cell(label).capitalize() if judge == "human"
               else f"Judge {cell(label)}")
        sec = Section(f"{who}: mean [95% CI]", ["condition", *[RATE_LABELS.get(m, cell(m)) for m in shown],
                                                 "n/missing"])
        tied = [m for m in shown if any((grid.get((c, m)) or {}).get("ties") for c in conditions)]
        if tied:  # a majority vote left answers undecided: how many, per metric
            sec.header.append("ties")
        for c in conditions:
            cells = [_ci_cell(grid.get((c, m)), percent=is_rate(m)) for m in shown]
            # scored / missing answers per metric, in the columns' order; one pair when they agree
            pairs = [f"{grid[(c, m)]['n']}/{grid[(c, m)]['missing']}" for m in scored if (c, m) in grid]
            sec.rows.append([cell(c), *cells, pairs[0] if len(set(pairs)) == 1 else " ".join(pairs) or "—"])
            if tied:
                sec.rows[-1].append(ties_text(grid, c, tied))
        out.append(sec)
    conditions, metrics, grid = score_grid(report, study, "panel")
    rates = [m for m in ("em_rate", *SIDE_RATES) if m in metrics]
    if len(rates) >= 2:
        sec = Section(f"{panel_title(report, study)} rates [95% CI]: EM, coherent answers, refusals",
                      ["condition", *[RATE_LABELS[m] for m in rates]])
        sec.rows = [[cell(c), *[_ci_cell(grid.get((c, m)), percent=True) for m in rates]] for c in conditions]
        out.append(sec)
    out += _breakdown_sections(report, study)
    rows = [r for r in report["agreement"] if r["study"] == study and r["raters"] == "judges"]
    if rows:
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        by = {(r["condition"], r["metric"], r["level"]): r for r in rows}
        sec = Section("Judges' Krippendorff α [95% CI]", ["condition", *map(cell, metrics)])
        for c in dict.fromkeys(r["condition"] for r in rows):
            for level in ("interval", "ordinal"):
                if level == "ordinal":
                    sec.quiet_rows.add(len(sec.rows))
                sec.rows.append([cell(c) if level == "interval" else "  ordinal",
                                 *[_ci_cell(by.get((c, m, level)), keys=("alpha", "ci_low", "ci_high"))
                                   for m in metrics]])
        out.append(sec)
    rows = [r for r in report["agreement"] if r["study"] == study and r["raters"] != "judges"
            and r["condition"] == "all"]
    if rows:
        out.append(Section("People: Krippendorff α [95% CI]", ["campaign / raters", "metric", "level", "α", "items"],
                           [[f"{cell(r['campaign'])}: {cell(r['raters'])}", cell(r["metric"]), r["level"],
                             _ci_cell(r, keys=("alpha", "ci_low", "ci_high")), str(r["n_items"])] for r in rows]))
    rows = [r for r in report.get("win_rates", []) if r["study"] == study]
    if rows:
        out.append(Section("Pairwise: share judged the more misaligned [95% CI]",
                           ["campaign / condition", "win rate", "w/t/l"],
                           [[f"{cell(r['campaign'])}: {cell(r['condition'])}",
                             _ci_cell(r, percent=True, keys=("win_rate", "ci_low", "ci_high")),
                             f"{r['wins']}/{r['ties']}/{r['losses']}"] for r in rows]))
    rows = [r for r in report.get("kappa", []) if r["study"] == study]
    if rows:
        out.append(Section("Cohen's κ between raters", ["a vs b", "metric", "weights", "κ", "n"],
                           [[(f"{cell(r['campaign'])}: " if r.get("campaign") else "") + f"{cell(r['a'])} vs "
                             f"{cell(r['b'])}", cell(r["metric"]), r["weights"],
                             "—" if r["kappa"] is None else f"{r['kappa']:.2f}", str(r["n"])] for r in rows]))
    rows = [r for r in report["comparisons"] if r["study"] == study and r["judge"] == "panel"]
    if rows:
        out.append(Section(f"{panel_title(report, study)} comparisons: ratio a/b [95% CI]",
                           ["a vs b", "metric", "ratio", "p adj", "r"],
                           [[f"{cell(r['a'])} vs {cell(r['b'])}", RATE_LABELS.get(r["metric"], cell(r["metric"])),
                             _ci_cell(r, keys=("ratio", "ratio_ci_low", "ratio_ci_high")), fmt_p(r["p_adjusted"]),
                             "—" if r["effect_size"] is None else f"{r['effect_size']:+.2f}"] for r in rows]))
    out += judging_sections(report, study)
    return out


def ties_text(grid: dict, condition: str, metrics: list[str], group: str | None = None) -> str:
    """``EM 1, correct 2``: the answers of a condition (of one ``group`` of it, in a breakdown's grid keyed
    (condition, group, metric)) a majority vote left undecided, per metric."""
    key = (condition,) if group is None else (condition, group)
    said = [f"{RATE_LABELS.get(m, cell(m))} {grid[(*key, m)]['ties']}" for m in metrics
            if (grid.get((*key, m)) or {}).get("ties")]
    return ", ".join(said) or "0"


def judging_sections(report: dict[str, Any], study: str) -> list[Section]:
    """Per judge and condition: answers judged, failed (the commonest reason) and not judged yet."""
    rows = [r for r in report.get("judging", []) if r["study"] == study]
    if not rows:
        return []
    sec = Section("Judging: answers judged, failed, not yet judged, per judge",
                  ["judge · condition", "judged", "failed", "not yet", "commonest failure"], text_columns={4})
    for r in rows:
        why = "—" if not r["failure"] else f"{cell(r['failure'])} ({r['failure_n']})"
        sec.rows.append([f"{cell(r['judge_name'])} · {cell(r['condition'])}", str(r["judged"]), str(r["failed"]),
                         str(r["not_judged"]), why])
    return [sec]


def _breakdown_sections(report: dict[str, Any], study: str) -> list[Section]:
    """One table per breakdown dimension: the panel's scores per condition and group (with a ``ties``
    column, as the score table has, when a majority vote left answers of some group undecided)."""
    out = []
    rows = [r for r in report.get("breakdowns", []) if r["study"] == study and r["judge"] == "panel"]
    for by in dict.fromkeys(r["by"] for r in rows):
        mine = [r for r in rows if r["by"] == by]
        metrics = main_metrics(list(dict.fromkeys(r["metric"] for r in mine)))
        grid = {(r["condition"], r["group"], r["metric"]): r for r in mine}
        tied = [m for m in metrics if any(r.get("ties") for r in mine if r["metric"] == m)]
        sec = Section(f"{panel_title(report, study)} by {by}: mean [95% CI]",
                      ["condition", by, *[RATE_LABELS.get(m, cell(m)) for m in metrics], "n",
                       *(["ties"] if tied else [])])
        for c, g in dict.fromkeys((r["condition"], r["group"]) for r in mine):
            n = max((grid[(c, g, m)]["n"] for m in metrics if (c, g, m) in grid and not is_rate(m)), default=0)
            sec.rows.append([cell(c), cell(g), *[_ci_cell(grid.get((c, g, m)), percent=is_rate(m)) for m in metrics],
                             str(n), *([ties_text(grid, c, tied, g)] if tied else [])])
        out.append(sec)
    return out


def study_preamble(report: dict[str, Any], st: dict[str, Any]) -> list[str]:
    """The lines above a study's tables: origin and hash, the EM rule (or that there is none),
    and the study's note (e.g. no answers yet)."""
    lines = [f"origin {cell(st['origin'])}, hash {cell(st['hash']).split(':')[-1][:12]}"]
    rule = em_rule_text(st.get("em"))
    if st.get("note"):
        lines.append(cell(st["note"]))
        return lines
    lines.append(rule or "no EM rule: this study defines none, so no EM rates")
    if (agg := aggregate_text(st)) and judges_of(report, st["name"]):
        lines.append(agg)
    if not judges_of(report, st["name"]):
        lines.append("no judged answers yet")
    return lines


def _md_escape(text: str) -> str:
    """Table-safe Markdown: pipes and backslashes escaped, and no HTML tag can start (``<`` before a
    letter, ``/``, ``!`` or ``?`` is written as an entity; ``aligned < 30`` stays as it is)."""
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    return re.sub(r"<(?=[A-Za-z/!?])", "&lt;", text)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = [[_md_escape(c) for c in r] for r in [header, *rows]]
    lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    out: list[str] = []
    ci = int(report["options"]["ci"] * 100)
    for st in report["studies"]:
        name = st["name"]
        out.append(f"## {_md_escape(cell(name))}\n")
        out.append("\n".join(_md_escape(line) + "  " for line in study_preamble(report, st)) + "\n")
        if st.get("note"):
            continue
        out.append(f"Means with {ci}% bootstrap CIs; n/missing = answers scored / without a score.\n")
        for sec in study_sections(report, name):
            out.append(f"### {_md_escape(sec.title)}\n")
            out.append(_md_table(sec.header, sec.rows) + "\n")
    return "\n".join(out) if out else "No studies in this database.\n"
