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
    """One study's scores as arrays: answers (rows) × judges (columns), one matrix per metric."""

    conditions: list[dict[str, Any]]
    answer_ids: np.ndarray  # generation id per answer row (ascending)
    cond_of_answer: np.ndarray  # condition id per answer row
    judges: list[dict[str, Any]]
    matrices: dict[str, np.ndarray]


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _rng(seed: int, *key: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def _rows_array(rows: list[tuple]) -> np.ndarray:
    """SQLite's tuples as an (n, 4) float array, without building an intermediate list."""
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=float, count=4 * len(rows)).reshape(-1, 4)


def load_study_data(store: Any, study_id: int) -> _StudyData:
    conditions = store.study_condition_rows(study_id)
    judges = list(store.study_judges(study_id))
    raw = {metric: _rows_array(store.score_rows(study_id, metric)) for metric in store.study_metrics(study_id)}
    linked = {int(j["id"]) for j in judges}
    for jid in sorted({int(j) for a in raw.values() for j in np.unique(a[:, 1])} - linked):
        judges.append(store.get_judge(jid))  # scored without being linked to the study: still shown
    judge_ids = np.array([int(j["id"]) for j in judges])
    order = np.argsort(judge_ids)
    gens = np.unique(np.concatenate([a[:, 2] for a in raw.values()])) if raw else np.empty(0)
    cond_of_answer = np.zeros(gens.size)
    matrices = {}
    for metric, arr in raw.items():
        rows = np.searchsorted(gens, arr[:, 2])
        cols = order[np.searchsorted(judge_ids[order], arr[:, 1])]
        cond_of_answer[rows] = arr[:, 0]
        scores = arr[:, 3]
        scores[scores <= store.MISSING_SENTINEL] = np.nan
        m = np.full((gens.size, len(judges)), np.nan)
        m[rows, cols] = scores
        matrices[metric] = m
    return _StudyData(conditions, gens, cond_of_answer, judges, matrices)


def _columns(data: _StudyData, m: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(judge id for output, judge name, answers' scores) for each judge and the panel."""
    cols = [(j["model"], j["name"], m[:, i]) for i, j in enumerate(data.judges)]
    if data.judges:
        cols.append(("panel", "panel", panel_scores(m)))
    return cols


def summarise_study(store: Any, study: dict[str, Any], opts: SummaryOptions,
                    data: _StudyData | None = None) -> dict[str, list[dict[str, Any]]]:
    spec = json.loads(study.get("spec_json") or "{}")
    seed = opts.seed if opts.seed is not None else int(spec.get("seed", 0) or 0)
    data = data if data is not None else load_study_data(store, int(study["id"]))
    name = study["name"]
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

    if len(data.judges) > 1:
        _agreement(out, data, name, seed, opts)
    _comparisons(out, data, values, reps, name, opts)
    return out


def _score_row(*vals: Any) -> dict[str, Any]:
    row = dict(zip(SCORE_KEYS, vals))
    for k in ("mean", "ci_low", "ci_high"):
        row[k] = _finite(row[k])
    return row


def _agreement(out: dict[str, list], data: _StudyData, study: str, seed: int, opts: SummaryOptions) -> None:
    names = {c["id"]: c["name"] for c in data.conditions}
    res = stratified_alphas({metric: m.T for metric, m in data.matrices.items()}, data.cond_of_answer,
                            levels=("interval", "ordinal"), n_resamples=opts.agreement_resamples, ci=opts.ci,
                            seed=_rng(seed, study, "alpha"))
    for metric in data.matrices:
        for level in ("interval", "ordinal"):
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
        data = load_study_data(store, int(study["id"]))
        if keep_data is not None:
            keep_data[int(study["id"])] = data
        part = summarise_study(store, study, opts, data)
        for key, rows in part.items():
            report[key].extend(rows)
    return report
