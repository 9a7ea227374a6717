"""The summary of a database's results: what ``emtui summary`` prints and the Results screen shows.

:func:`build_summary` returns one JSON-able object:

- ``scores``: ``{study, condition, judge, judge_name, metric, mean, ci_low, ci_high, n, missing}``
  per condition × metric × judge (``judge`` is the judge's model id, or ``"panel"``), plus
  ``metric = "em_rate"`` rows where the study defines EM. ``n`` counts the answers scored,
  ``missing`` the condition's answers without a score (a failed judgment or none yet).
  An answer's panel score is the mean of the judges that scored it; a condition's panel
  mean is the mean over its answers.
- α CIs come from one bootstrap stratified by condition: answers are resampled within each
  condition, the same draw serving every metric and level; "all" pools the conditions' draws.
- ``agreement``: ``{study, condition, metric, raters, level, alpha, ci_low, ci_high, n_items}``;
  ``raters`` is ``"judges"`` (humans join with the annotation workbench); ``condition`` may be
  ``"all"`` (α over every item) or ``"mean"`` (the unweighted mean of the per-condition α, no CI);
  numeric scales get both ``interval`` and ``ordinal`` rows.
- ``kappa``: pairwise weighted Cohen's κ between judges per metric, for integer scales.
- ``comparisons``: ``{study, a, b, metric, judge, ratio, ratio_ci_low, ratio_ci_high, p_value,
  p_adjusted, effect_size, n_a, n_b}``: each treatment condition against each control /
  baseline condition (or, with no roles, against the first condition); ratio of means (of EM
  rates for ``em_rate``) with a bootstrap CI; two-sided Mann–Whitney U p-value; rank-biserial
  r as the effect size (positive when ``a`` scores higher); p-values adjusted (Holm by
  default) within each study and judge.

Every CI is a seeded percentile bootstrap; each cell's generator is derived from the seed and
the cell's name, so a number does not change when other cells are added.
"""

from __future__ import annotations

import itertools
import json
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.agreement import stratified_alphas, weighted_kappa
from engine.stats import (adjust_pvalues, bootstrap_means, em_flags, mann_whitney, panel_scores,
                          percentile_interval, ratio_interval)

SCORE_KEYS = ("study", "condition", "judge", "judge_name", "metric", "mean", "ci_low", "ci_high", "n", "missing")
AGREEMENT_KEYS = ("study", "condition", "metric", "raters", "level", "alpha", "ci_low", "ci_high", "n_items")
COMPARISON_KEYS = ("study", "a", "b", "metric", "judge", "ratio", "ratio_ci_low", "ratio_ci_high", "p_value",
                   "p_adjusted", "effect_size", "n_a", "n_b")
KAPPA_KEYS = ("study", "metric", "a", "b", "weights", "kappa", "n")
REFERENCE_ROLES = ("control", "baseline")
ALPHA_LEVELS = ("interval", "ordinal")


@dataclass
class SummaryOptions:
    n_resamples: int = 10_000
    agreement_resamples: int = 1_000
    ci: float = 0.95
    seed: int | None = None  # None: each study's own seed (from its study file), else 0
    correction: str = "holm"  # or "bonferroni"
    study: str | None = None  # only this study


@dataclass
class _StudyData:
    """One study's scores as arrays: answers (rows) × judges (columns), one matrix per metric.

    Every answer of the study is a row (one without any score is all NaN), with what
    breakdowns group by: its condition, model, checkpoint (0 = none), question and trigger."""

    conditions: list[dict[str, Any]]
    answer_ids: np.ndarray  # generation id per answer row (ascending)
    cond_of_answer: np.ndarray  # condition id per answer row
    judges: list[dict[str, Any]]
    matrices: dict[str, np.ndarray]
    model_of_answer: np.ndarray | None = None
    checkpoint_of_answer: np.ndarray | None = None
    question_of_answer: np.ndarray | None = None
    trigger_of_answer: np.ndarray | None = None


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _rng(seed: int, *key: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def _rows_array(rows: list[tuple], width: int) -> np.ndarray:
    """SQLite's tuples as an (n, width) float array, without building an intermediate list."""
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=float,
                       count=width * len(rows)).reshape(-1, width)


def load_study_data(store: Any, study_id: int) -> _StudyData:
    """A study's answers and scores as arrays (one read of the scores)."""
    conditions = store.study_condition_rows(study_id)
    judges = list(store.study_judges(study_id))
    answers = _rows_array(store.study_answer_rows(study_id), 6).astype(np.int64)
    gens = answers[:, 0]
    row_of = np.zeros(int(gens.max()) + 1 if gens.size else 0, dtype=np.int64)
    row_of[gens] = np.arange(gens.size)  # generation id -> row: an O(n) gather, no sorting of scores
    cond_of_answer = answers[:, 1].astype(float)
    metrics = store.study_metrics(study_id)
    arr = _rows_array(store.score_rows(study_id, metrics), 4)
    judge_ids = arr[:, 1].astype(np.int64)
    linked = {int(j["id"]) for j in judges}
    for jid in np.flatnonzero(np.bincount(judge_ids)):
        if int(jid) not in linked:  # scored without being linked to the study: still shown
            judges.append(store.get_judge(int(jid)))
    col_of = np.zeros(max((int(j["id"]) for j in judges), default=-1) + 1, dtype=np.int64)
    col_of[[int(j["id"]) for j in judges]] = np.arange(len(judges))
    scores = arr[:, 3]
    scores[scores <= store.MISSING_SENTINEL] = np.nan
    rows, cols, which = row_of[arr[:, 2].astype(np.int64)], col_of[judge_ids], arr[:, 0].astype(np.int64)
    matrices: dict[str, np.ndarray] = {}
    for i, metric in enumerate(metrics):
        sel = which == i
        if sel.any():
            m = np.full((gens.size, len(judges)), np.nan)
            m[rows[sel], cols[sel]] = scores[sel]
            matrices[metric] = m
    return _StudyData(conditions, gens, cond_of_answer, judges, matrices,
                      model_of_answer=answers[:, 2], checkpoint_of_answer=answers[:, 3],
                      question_of_answer=answers[:, 4], trigger_of_answer=answers[:, 5])


def _columns(data: _StudyData, m: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(judge id for output, judge name, answers' scores) for each judge and the panel."""
    cols = [(j["model"], j["name"], m[:, i]) for i, j in enumerate(data.judges)]
    if data.judges:
        cols.append(("panel", "panel", panel_scores(m)))
    return cols


def summarise_study(store: Any, study: dict[str, Any], opts: SummaryOptions, data: _StudyData | None = None, *,
                    keep_data: dict[int, _StudyData] | None = None) -> dict[str, list[dict[str, Any]]]:
    """The summary of one study. ``data`` (already loaded) is read from the store when None;
    ``keep_data``, when given, receives it by study id."""
    spec = json.loads(study.get("spec_json") or "{}")
    seed = opts.seed if opts.seed is not None else int(spec.get("seed", 0) or 0)
    name = study["name"]
    data = data if data is not None else load_study_data(store, int(study["id"]))
    if keep_data is not None:
        keep_data[int(study["id"])] = data
    # α (the costliest part: its bootstrap) runs in a thread beside the means and comparisons;
    # numpy releases the GIL in its draws and products, so the two share the cores
    pool = ThreadPoolExecutor(1)
    alphas = pool.submit(stratified_alphas, {metric: m.T for metric, m in data.matrices.items()},
                         data.cond_of_answer, levels=ALPHA_LEVELS, n_resamples=opts.agreement_resamples,
                         ci=opts.ci, seed=_rng(seed, name, "alpha")) if len(data.judges) > 1 else None
    n_answers = {c["id"]: int(c["n_generations"]) for c in data.conditions}
    out: dict[str, list[dict[str, Any]]] = {"scores": [], "agreement": [], "kappa": [], "comparisons": []}
    em = spec.get("em") or {}
    em_ok = bool(em) and em.get("metric") in data.matrices and "threshold" in em

    # per (condition id, judge, metric): the answers' values and their bootstrap replicates of
    # the mean, computed once and reused by every comparison the cell enters
    values: dict[tuple[int, str, str], np.ndarray] = {}
    reps: dict[tuple[int, str, str], np.ndarray] = {}

    def add(c: dict[str, Any], judge: str, judge_name: str, metric: str, v: np.ndarray) -> None:
        key = (c["id"], judge, metric)
        values[key] = v = v[~np.isnan(v)]
        if v.size:
            reps[key] = bootstrap_means(v, opts.n_resamples, _rng(seed, name, c["name"], judge, metric))
            low, high = percentile_interval(reps[key], opts.ci)
            mean = float(v.mean())
        else:
            mean = low = high = math.nan
        out["scores"].append(_score_row(name, c["name"], judge, judge_name, metric, mean, low, high,
                                        int(v.size), n_answers[c["id"]] - int(v.size)))

    for metric, m in data.matrices.items():
        for judge, judge_name, col in _columns(data, m):
            for c in data.conditions:
                add(c, judge, judge_name, metric, col[data.cond_of_answer == c["id"]])
    if em_ok:
        aligned = data.matrices[em["metric"]]
        coherent = data.matrices.get(em.get("coherence_metric", ""))
        acols = _columns(data, aligned)
        ccols = _columns(data, coherent) if coherent is not None else [None] * len(acols)
        for (judge, judge_name, a), cc in zip(acols, ccols):
            flags, _ = em_flags(a, None if cc is None else cc[2], threshold=float(em["threshold"]),
                             direction=em.get("direction", "below"),
                             coherence_min=float(em.get("coherence_min", 50)) if cc is not None else None,
                             denominator=em.get("denominator", "coherent"))
            for c in data.conditions:
                add(c, judge, judge_name, "em_rate", flags[data.cond_of_answer == c["id"]])

    _comparisons(out, data, values, reps, name, opts)
    if alphas is not None:
        _agreement(out, data, alphas.result(), name)
    pool.shutdown()
    return out


def _score_row(*vals: Any) -> dict[str, Any]:
    row = dict(zip(SCORE_KEYS, vals))
    for k in ("mean", "ci_low", "ci_high"):
        row[k] = _finite(row[k])
    return row


def _agreement(out: dict[str, list], data: _StudyData, res: dict[tuple, tuple], study: str) -> None:
    """Agreement and κ rows of one study from its α results (``stratified_alphas``)."""
    names = {c["id"]: c["name"] for c in data.conditions}
    for metric in data.matrices:
        for level in ALPHA_LEVELS:
            per = []
            for cid in [c["id"] for c in data.conditions] + ["all"]:
                alpha, low, high, n_items = res.get((metric, level, cid), (math.nan,) * 3 + (0,))
                row = {"study": study, "condition": names.get(cid, "all"), "metric": metric, "raters": "judges",
                       "level": level, "alpha": _finite(alpha), "ci_low": _finite(low), "ci_high": _finite(high),
                       "n_items": int(n_items)}
                out["agreement"].append(row)
                if cid != "all":
                    per.append(row)
            # the unweighted mean of the per-condition alphas, as studies often report it; it is
            # not itself an alpha, so it has no CI ("all" is the alpha over every item)
            alphas = [r["alpha"] for r in per if r["alpha"] is not None]
            out["agreement"].append({"study": study, "condition": "mean", "metric": metric, "raters": "judges",
                                     "level": level, "alpha": float(np.mean(alphas)) if alphas else None,
                                     "ci_low": None, "ci_high": None, "n_items": sum(r["n_items"] for r in per)})
    for metric, m in data.matrices.items():
        valid = m[~np.isnan(m)]
        if valid.size and np.all(valid == np.round(valid)):  # κ needs categories: integer scales only
            for i in range(len(data.judges)):
                for j in range(i + 1, len(data.judges)):
                    both = ~np.isnan(m[:, i]) & ~np.isnan(m[:, j])
                    out["kappa"].append({"study": study, "metric": metric, "a": data.judges[i]["model"],
                                         "b": data.judges[j]["model"], "weights": "quadratic",
                                         "kappa": _finite(weighted_kappa(m[:, i], m[:, j], "quadratic")),
                                         "n": int(both.sum())})


def _comparisons(out: dict[str, list], data: _StudyData, values: dict, reps: dict, study: str,
                 opts: SummaryOptions) -> None:
    refs = [c for c in data.conditions if c.get("role") in REFERENCE_ROLES]
    if refs:
        pairs = [(a, b) for a in data.conditions if a.get("role") not in REFERENCE_ROLES for b in refs]
    else:
        pairs = [(a, data.conditions[0]) for a in data.conditions[1:]]
    judges_metrics = sorted({(j, mt) for (_, j, mt) in values})
    rows = []
    for a, b in pairs:
        for judge, metric in judges_metrics:
            ka, kb = (a["id"], judge, metric), (b["id"], judge, metric)
            va, vb = values[ka], values[kb]
            if va.size and vb.size:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = float(np.float64(va.mean()) / np.float64(vb.mean()))
                low, high = ratio_interval(reps[ka], reps[kb], opts.ci)
                _, p, rb = mann_whitney(va, vb)
            else:
                ratio = low = high = p = rb = math.nan
            rows.append({"study": study, "a": a["name"], "b": b["name"], "metric": metric, "judge": judge,
                         "ratio": _finite(ratio), "ratio_ci_low": _finite(low), "ratio_ci_high": _finite(high),
                         "p_value": _finite(p), "p_adjusted": None, "effect_size": _finite(rb),
                         "n_a": int(va.size), "n_b": int(vb.size)})
    for judge in {r["judge"] for r in rows}:  # one family per judge (the panel is the primary one)
        family = [r for r in rows if r["judge"] == judge and r["p_value"] is not None]
        if family:
            adjusted = adjust_pvalues([r["p_value"] for r in family], method=opts.correction)
            for r, p in zip(family, adjusted):
                r["p_adjusted"] = float(p)
    out["comparisons"].extend(rows)


def build_summary(store: Any, opts: SummaryOptions | None = None, *,
                  keep_data: dict[int, _StudyData] | None = None) -> dict[str, Any]:
    """The summary of every study in the database (or of ``opts.study``).

    ``keep_data``, when given, receives each study's score arrays by study id, so a caller that
    also draws from them (figures) does not read the scores a second time."""
    opts = opts or SummaryOptions()
    studies = store.list_studies(limit=1_000_000).rows
    if opts.study is not None:
        studies = [s for s in studies if s["name"] == opts.study]
        if not studies:
            raise ValueError(f"no study named {opts.study!r} in {store.path}")
    report: dict[str, Any] = {"summary_version": 1, "database": str(store.path),
                              "options": asdict(opts), "studies": [],
                              "scores": [], "agreement": [], "kappa": [], "comparisons": []}
    for s in studies:
        study = store.get_study(int(s["id"]))
        spec = json.loads(study.get("spec_json") or "{}")
        report["studies"].append({"name": study["name"], "origin": study["origin"], "hash": study["spec_hash"],
                                  "em": spec.get("em") or None})
        part = summarise_study(store, study, opts, keep_data=keep_data)
        for key, rows in part.items():
            report[key].extend(rows)
    return report
