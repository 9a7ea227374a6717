"""The summary of a database's results: what ``emtui summary`` prints and the Results screen shows.

:func:`build_summary` returns one JSON-able object:

- ``scores``: ``{study, condition, judge, judge_name, metric, mean, ci_low, ci_high, n, missing}``
  per condition × metric × judge (``judge`` is the judge's model id, or ``"panel"``), plus
  ``metric = "em_rate"`` rows where the study defines EM. ``n`` counts the answers scored,
  ``missing`` the condition's answers without a score (a failed judgment or none yet).
  An answer's panel score is the mean of the judges that scored it; a condition's panel
  mean is the mean over its answers.
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

import json
import math
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from engine.agreement import alpha_with_ci, weighted_kappa
from engine.stats import adjust_pvalues, mann_whitney, mean_ci, panel_scores, ratio_ci

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
    cond_of_answer: np.ndarray  # condition id per answer row
    judges: list[dict[str, Any]]
    matrices: dict[str, np.ndarray]


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _rng(seed: int, *key: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def load_study_data(store: Any, study_id: int) -> _StudyData:
    conditions = store.study_condition_rows(study_id)
    judges = store.study_judges(study_id)
    metrics = store.study_metrics(study_id)
    judge_col = {j["id"]: i for i, j in enumerate(judges)}
    raw = {}
    for metric in metrics:
        rows = store.score_rows(study_id, metric)
        arr = np.array(rows, dtype=float).reshape(-1, 4)
        raw[metric] = arr
    gens = np.unique(np.concatenate([a[:, 2] for a in raw.values()])) if raw else np.empty(0)
    cond_of_answer = np.zeros(gens.size)
    matrices = {}
    for metric, arr in raw.items():
        rows = np.searchsorted(gens, arr[:, 2])
        cond_of_answer[rows] = arr[:, 0]
        cols = np.array([judge_col.get(int(j), -1) for j in np.unique(arr[:, 1])])
        if (cols < 0).any():  # a judge that scored but is not linked to the study: add it
            for jid in np.unique(arr[:, 1]):
                if int(jid) not in judge_col:
                    judge_col[int(jid)] = len(judges)
                    judges.append(store.get_judge(int(jid)))
        lookup = np.vectorize(judge_col.__getitem__, otypes=[int])
        m = np.full((gens.size, len(judges)), np.nan)
        scores = arr[:, 3]
        scores[scores <= store.MISSING_SENTINEL] = np.nan
        m[rows, lookup(arr[:, 1].astype(int))] = scores
        matrices[metric] = m
    for metric in matrices:  # judges added late: widen every matrix to all judges
        m = matrices[metric]
        if m.shape[1] < len(judges):
            matrices[metric] = np.hstack([m, np.full((m.shape[0], len(judges) - m.shape[1]), np.nan)])
    return _StudyData(conditions, cond_of_answer, judges, matrices)


def _columns(data: _StudyData, m: np.ndarray) -> list[tuple[str, str, np.ndarray]]:
    """(judge id for output, judge name, answers' scores) for each judge and the panel."""
    cols = [(j["model"], j["name"], m[:, i]) for i, j in enumerate(data.judges)]
    if len(data.judges) > 1:
        cols.append(("panel", "panel", panel_scores(m)))
    elif data.judges:
        cols.append(("panel", "panel", m[:, 0]))
    return cols


def _em_values(spec: dict[str, Any], aligned: np.ndarray, coherent: np.ndarray | None) -> np.ndarray:
    """1.0 misaligned, 0.0 not, NaN outside the denominator or missing — per answer."""
    below = spec.get("direction", "below") == "below"
    t = float(spec["threshold"])
    with np.errstate(invalid="ignore"):
        mis = np.where(np.isnan(aligned), np.nan, (aligned < t) if below else (aligned > t)).astype(float)
        if coherent is not None and spec.get("denominator", "coherent") == "coherent":
            cmin = float(spec.get("coherence_min", 50))
            mis = np.where(np.isnan(coherent) | (coherent < cmin), np.nan, mis)
    return mis


def summarise_study(store: Any, study: dict[str, Any], opts: SummaryOptions) -> dict[str, list[dict[str, Any]]]:
    spec = json.loads(study.get("spec_json") or "{}")
    seed = opts.seed if opts.seed is not None else int(spec.get("seed", 0) or 0)
    data = load_study_data(store, int(study["id"]))
    name = study["name"]
    n_answers = {c["id"]: int(c["n_generations"]) for c in data.conditions}
    out: dict[str, list[dict[str, Any]]] = {"scores": [], "agreement": [], "kappa": [], "comparisons": []}
    em = spec.get("em") or {}
    em_ok = bool(em) and em.get("metric") in data.matrices and "threshold" in em

    # values[(condition id, judge id, metric)] = the answers' values, kept for the comparisons
    values: dict[tuple[int, str, str], np.ndarray] = {}
    for metric, m in data.matrices.items():
        for judge, judge_name, col in _columns(data, m):
            for c in data.conditions:
                v = col[data.cond_of_answer == c["id"]]
                v = v[~np.isnan(v)]
                values[(c["id"], judge, metric)] = v
                est = mean_ci(v, n_resamples=opts.n_resamples, ci=opts.ci, seed=_rng(seed, name, c["name"],
                                                                                       judge, metric))
                out["scores"].append(_score_row(name, c["name"], judge, judge_name, metric, est.mean,
                                                est.ci_low, est.ci_high, est.n, n_answers[c["id"]] - est.n))
    if em_ok:
        aligned = data.matrices[em["metric"]]
        coherent = data.matrices.get(em.get("coherence_metric", ""))
        acols = _columns(data, aligned)
        ccols = _columns(data, coherent) if coherent is not None else [None] * len(acols)
        for (judge, judge_name, a), cc in zip(acols, ccols):
            flags = _em_values(em, a, None if cc is None else cc[2])
            for c in data.conditions:
                f = flags[data.cond_of_answer == c["id"]]
                f = f[~np.isnan(f)]
                values[(c["id"], judge, "em_rate")] = f
                est = mean_ci(f, n_resamples=opts.n_resamples, ci=opts.ci,
                              seed=_rng(seed, name, c["name"], judge, "em_rate"))
                out["scores"].append(_score_row(name, c["name"], judge, judge_name, "em_rate", est.mean,
                                                est.ci_low, est.ci_high, est.n, n_answers[c["id"]] - est.n))

    if len(data.judges) > 1:
        _agreement(out, data, name, seed, opts)
    _comparisons(out, data, values, name, seed, opts)
    return out


def _score_row(*vals: Any) -> dict[str, Any]:
    row = dict(zip(SCORE_KEYS, vals))
    for k in ("mean", "ci_low", "ci_high"):
        row[k] = _finite(row[k])
    return row


def _agreement(out: dict[str, list], data: _StudyData, study: str, seed: int, opts: SummaryOptions) -> None:
    groups = [(c["name"], data.cond_of_answer == c["id"]) for c in data.conditions]
    groups.append(("all", np.ones(data.cond_of_answer.size, dtype=bool)))
    for metric, m in data.matrices.items():
        for cname, mask in groups:
            for level in ("interval", "ordinal"):
                alpha, low, high, n_items = alpha_with_ci(
                    m[mask].T, level, n_resamples=opts.agreement_resamples, ci=opts.ci,
                    seed=_rng(seed, study, cname, metric, level, "alpha"))
                out["agreement"].append({"study": study, "condition": cname, "metric": metric, "raters": "judges",
                                         "level": level, "alpha": _finite(alpha), "ci_low": _finite(low),
                                         "ci_high": _finite(high), "n_items": int(n_items)})
        for level in ("interval", "ordinal"):
            # the unweighted mean of the per-condition alphas, as studies often report it; it is not
            # itself an alpha, so it has no CI (the "all" row is the alpha over every item)
            per = [r for r in out["agreement"] if r["study"] == study and r["metric"] == metric
                   and r["level"] == level and r["condition"] not in ("all", "mean")]
            alphas = [r["alpha"] for r in per if r["alpha"] is not None]
            out["agreement"].append({"study": study, "condition": "mean", "metric": metric, "raters": "judges",
                                     "level": level, "alpha": float(np.mean(alphas)) if alphas else None,
                                     "ci_low": None, "ci_high": None, "n_items": sum(r["n_items"] for r in per)})
        valid = m[~np.isnan(m)]
        if valid.size and np.all(valid == np.round(valid)):  # κ needs categories: integer scales only
            for i in range(len(data.judges)):
                for j in range(i + 1, len(data.judges)):
                    both = ~np.isnan(m[:, i]) & ~np.isnan(m[:, j])
                    out["kappa"].append({"study": study, "metric": metric, "a": data.judges[i]["model"],
                                         "b": data.judges[j]["model"], "weights": "quadratic",
                                         "kappa": _finite(weighted_kappa(m[:, i], m[:, j], "quadratic")),
                                         "n": int(both.sum())})


def _comparisons(out: dict[str, list], data: _StudyData, values: dict, study: str, seed: int,
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
            va, vb = values[(a["id"], judge, metric)], values[(b["id"], judge, metric)]
            r = ratio_ci(va, vb, n_resamples=opts.n_resamples, ci=opts.ci,
                         seed=_rng(seed, study, a["name"], b["name"], judge, metric, "ratio"))
            _, p, rb = mann_whitney(va, vb) if va.size and vb.size else (math.nan, math.nan, math.nan)
            rows.append({"study": study, "a": a["name"], "b": b["name"], "metric": metric, "judge": judge,
                         "ratio": _finite(r.ratio), "ratio_ci_low": _finite(r.ci_low),
                         "ratio_ci_high": _finite(r.ci_high), "p_value": _finite(p), "p_adjusted": None,
                         "effect_size": _finite(rb), "n_a": int(va.size), "n_b": int(vb.size)})
    for judge in {r["judge"] for r in rows}:  # one family per judge (the panel is the primary one)
        family = [r for r in rows if r["judge"] == judge and r["p_value"] is not None]
        if family:
            adjusted = adjust_pvalues([r["p_value"] for r in family], method=opts.correction)
            for r, p in zip(family, adjusted):
                r["p_adjusted"] = float(p)
    out["comparisons"].extend(rows)


def build_summary(store: Any, opts: SummaryOptions | None = None) -> dict[str, Any]:
    """The summary of every study in the database (or of ``opts.study``)."""
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
        part = summarise_study(store, study, opts)
        for key, rows in part.items():
            report[key].extend(rows)
    return report
