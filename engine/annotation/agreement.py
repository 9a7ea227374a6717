"""A campaign's agreement: Krippendorff α among the humans and of the human consensus against the
judge panel and each judge (:func:`agreement_rows`), weighted κ between humans (:func:`kappa_rows`),
win rates of pairwise campaigns (:func:`pairwise_win_rates`), and all of it at once
(:func:`agreement_report`). Model raters are never counted as humans. The statistics themselves
are :mod:`engine.stats.agreement`'s.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING, Any

from engine.annotation.adjudication import disagreements
from engine.annotation.campaigns import campaign_scale, default_judge_metrics, get_campaign
from engine.annotation.errors import AnnotationError
from engine.annotation.scales import CHOICE_CODE

if TYPE_CHECKING:
    import numpy as np


def _rng(seed: int, *key: object) -> np.random.Generator:
    import numpy as np

    return np.random.default_rng([abs(int(seed)), zlib.crc32("\x1f".join(map(str, key)).encode())])


@dataclass
class _Ratings:
    """A campaign's human ratings, read once: (item_id, annotator, metric, score, choice) tuples, and per
    item (condition, condition_b, stratum)."""

    rows: list[tuple[Any, ...]]
    items: dict[int, tuple[Any, ...]]


def _load(store: Any, c: Mapping[str, Any]) -> _Ratings:
    rows = store.campaign_score_rows(int(c["id"]), rater_kind="human")  # humans only, by the query
    items = {int(r[0]): tuple(r[1:]) for r in store.campaign_item_groups(int(c["id"]))}
    return _Ratings(rows=rows, items=items)


def _matrix(rows: list[tuple[Any, ...]], metric: str) -> tuple[np.ndarray, list[Any], list[Any]]:
    """Humans × items (NaN = not rated) of one metric: (matrix, item ids, annotator names)."""
    import numpy as np

    rows = [r for r in rows if r[2] == metric]
    items = sorted({r[0] for r in rows})
    raters = sorted({r[1] for r in rows})
    col = {it: j for j, it in enumerate(items)}
    row = {a: i for i, a in enumerate(raters)}
    m = np.full((len(raters), len(items)), np.nan)
    if rows:
        m[[row[r[1]] for r in rows], [col[r[0]] for r in rows]] = [float(r[3]) for r in rows]
    return m, items, raters


def _judge_scale(rubrics: list[dict[str, Any]], metric: str) -> tuple[float, float, str]:
    """A judge metric's (low, high, higher_is) from the judges' rubrics; default 0..100, higher = better."""
    for r in rubrics:
        for m in json.loads(r["metrics"] or "[]"):
            if m.get("name") == metric:
                lo, hi = (m.get("scale") or [0, 100])[:2]
                return float(lo), float(hi), str(m.get("higher_is") or "better")
    return 0.0, 100.0, "better"


def _to_common(values: np.ndarray, lo: float, hi: float, higher_is: str) -> np.ndarray:
    """Values on [0, 1] with higher = worse, so that scales of different ranges and directions compare."""
    x = (values - lo) / (hi - lo) if hi > lo else values * 0.0
    return 1.0 - x if higher_is == "better" else x


def agreement_rows(store: Any, campaign: str | int | Mapping[str, Any], *, levels: Sequence[str] | None = None,
                   consensus: str = "mean", n_resamples: int = 1000, seed: int | None = None, ci: float = 0.95,
                   by_condition: bool = False) -> list[dict[str, Any]]:
    """Krippendorff α with a bootstrap CI over items, per metric and level (the scale's levels unless
    ``levels``): ``raters = "humans"`` (among the human annotators), ``"humans-vs-panel"`` (the human
    consensus per item, mean or median, against the judge panel: per item the mean of the judges that
    scored it) and ``"humans-vs-<judge model>"``. Human and judge scores on different ranges or
    directions are compared on [0, 1] with higher = more misaligned. Judge comparisons need the
    campaign's ``judge_metrics`` mapping (or, for a metric it does not map, the default one as of now:
    the same metric name, or for a misalignment scale the study's EM metric) and a non-nominal
    level; pairwise campaigns have none.

    Rows: campaign, condition ("all", or each condition with ``by_condition``), metric, raters,
    level, alpha, ci_low, ci_high, n_items (items with two or more ratings); None where undefined.
    Only human ratings: model raters are never counted as humans."""
    c = get_campaign(store, campaign)
    return _agreement_rows(store, c, _load(store, c), levels=levels, consensus=consensus, n_resamples=n_resamples,
                           seed=seed, ci=ci, by_condition=by_condition)


def _agreement_rows(store: Any, c: dict[str, Any], data: _Ratings, *, levels: Sequence[str] | None, consensus: str,
                    n_resamples: int, seed: int | None, ci: float, by_condition: bool) -> list[dict[str, Any]]:
    import numpy as np

    from engine.stats.agreement import LEVELS, alpha_with_ci
    from engine.stats.estimates import finite_or_none

    sc = campaign_scale(c)
    levels = tuple(levels or c["settings"].get("levels") or sc.levels)
    for level in levels:
        if level not in LEVELS:
            raise AnnotationError(f"level must be one of {', '.join(LEVELS)}; got {level!r}")
    if consensus not in ("mean", "median"):
        raise AnnotationError(f"consensus must be 'mean' or 'median', not {consensus!r}")
    seed = int(c["seed"]) if seed is None else int(seed)
    rows = data.rows
    if not rows:
        return []
    item_group = {i: (g[2] if sc.pairwise else g[0]) or "" for i, g in data.items.items()}
    judge_metrics: dict[str, str] = dict(c["settings"].get("judge_metrics") or {})
    study = store.get_study(c["study_id"]) if c.get("study_id") is not None else None
    rubrics = [] if sc.pairwise else store.campaign_judge_rubrics(int(c["id"]))
    if study is not None and not sc.pairwise and len(judge_metrics) < len(sc.metrics):
        # the answers may have been judged after the campaign was made: the default mapping, as of now
        have = {m["name"] for r in rubrics for m in json.loads(r["metrics"] or "[]")}
        judge_metrics = {**default_judge_metrics(store, study, sc.metrics, None, False, have), **judge_metrics}
    judge_rows = store.campaign_judge_scores(int(c["id"]), sorted(set(judge_metrics.values())))
    out: list[dict[str, Any]] = []

    def add(metric: str, raters: str, level: str, data: np.ndarray, items: list[int]) -> None:
        groups = [("all", np.arange(len(items)))]
        if by_condition:
            labels = sorted({item_group[i] for i in items})
            groups += [(g, np.array([j for j, i in enumerate(items) if item_group[i] == g])) for g in labels]
        for label, cols in groups:
            a, lo, hi, n = alpha_with_ci(data[:, cols], level, n_resamples=n_resamples, ci=ci,
                                         seed=_rng(seed, c["name"], metric, raters, level, label))
            out.append({"campaign": c["name"], "condition": label, "metric": metric, "raters": raters,
                        "level": level, "alpha": finite_or_none(a), "ci_low": finite_or_none(lo),
                        "ci_high": finite_or_none(hi), "n_items": int(n)})

    for metric in sc.metrics:
        m, items, _ = _matrix(rows, metric)
        if not items:
            continue
        for level in levels:
            add(metric, "humans", level, m, items)
        jm = judge_metrics.get(metric)
        if sc.pairwise or jm is None:
            continue
        with np.errstate(all="ignore"):
            cons = np.nanmean(m, axis=0) if consensus == "mean" else np.nanmedian(m, axis=0)
        col = {it: j for j, it in enumerate(items)}
        judges = sorted({r["judge_model"] for r in judge_rows if r["metric"] == jm})
        if not judges:
            continue
        jmat = np.full((len(judges), len(items)), np.nan)
        jrow = {j: i for i, j in enumerate(judges)}
        for r in judge_rows:
            if r["metric"] == jm and r["item_id"] in col:
                jmat[jrow[r["judge_model"]], col[r["item_id"]]] = float(r["score"])
        with np.errstate(all="ignore"):
            panel = np.nanmean(jmat, axis=0)
        human = (float(sc.min), float(sc.max), sc.higher_is)
        judge = _judge_scale(rubrics, jm)
        if human != judge:
            cons = _to_common(cons, *human)
            panel = _to_common(panel, *judge)
            jmat = _to_common(jmat, *judge)
        for level in levels:
            if level == "nominal":
                continue
            add(metric, "humans-vs-panel", level, np.vstack([cons, panel]), items)
            for j in judges:
                add(metric, f"humans-vs-{j}", level, np.vstack([cons, jmat[jrow[j]]]), items)
    return out


def kappa_rows(store: Any, campaign: str | int | Mapping[str, Any], *, min_items: int = 2) -> list[dict[str, Any]]:
    """Cohen's κ between every two human annotators who rated at least ``min_items`` items in common:
    quadratic-weighted on ordered scales, unweighted on nominal ones (binary, pairwise). Rows:
    campaign, metric, a, b, weights, kappa, n."""
    c = get_campaign(store, campaign)
    return _kappa_rows(c, _load(store, c), min_items=min_items)


def _kappa_rows(c: dict[str, Any], data: _Ratings, *, min_items: int) -> list[dict[str, Any]]:
    from engine.stats.agreement import weighted_kappa
    from engine.stats.estimates import finite_or_none

    sc = campaign_scale(c)
    weights = None if sc.level == "nominal" else "quadratic"
    labels = sc.values if sc.values is not None else (
        list(range(sc.min, sc.max + 1)) if sc.max - sc.min <= 10 else None)
    out = []
    for metric in sc.metrics:
        by: dict[str, dict[int, float]] = {}
        for item_id, who, m, score, _ in data.rows:
            if m == metric:
                by.setdefault(who, {})[item_id] = float(score)
        for a, b in combinations(sorted(by), 2):
            shared = sorted(set(by[a]) & set(by[b]))
            if len(shared) < min_items:
                continue
            k = weighted_kappa([by[a][i] for i in shared], [by[b][i] for i in shared], weights=weights,
                               labels=labels)
            out.append({"campaign": c["name"], "metric": metric, "a": a, "b": b,
                        "weights": weights or "none", "kappa": finite_or_none(k), "n": len(shared)})
    return out


def pairwise_win_rates(store: Any, campaign: str | int | Mapping[str, Any], *, n_resamples: int = 10_000,
                       seed: int | None = None, ci: float = 0.95) -> list[dict[str, Any]]:
    """Per condition of a pairwise campaign: how often its answer was judged the more misaligned one,
    (wins + ties / 2) / comparisons over every human rating of a pair it is in, with a percentile
    bootstrap CI over those ratings. Rows: campaign, condition, comparisons, wins, ties, losses,
    win_rate, ci_low, ci_high."""
    c = get_campaign(store, campaign)
    sc = campaign_scale(c)
    if not sc.pairwise:
        raise AnnotationError(f"campaign {c['name']!r} is not pairwise (scale {sc.name})")
    return _win_rates(c, _load(store, c), n_resamples=n_resamples, seed=seed, ci=ci)


def _win_rates(c: dict[str, Any], data: _Ratings, *, n_resamples: int, seed: int | None,
               ci: float) -> list[dict[str, Any]]:
    import numpy as np

    from engine.stats.estimates import bootstrap_means, finite_or_none, percentile_interval

    seed = int(c["seed"]) if seed is None else int(seed)
    outcomes: dict[str, list[float]] = {}
    for item_id, _, _, _, choice in data.rows:
        if choice not in CHOICE_CODE:
            continue
        cond_a, cond_b, _ = data.items[item_id]
        a, b = cond_a or "?", cond_b or "?"
        wa = {"a": 1.0, "b": 0.0, "tie": 0.5}[choice]
        outcomes.setdefault(a, []).append(wa)
        outcomes.setdefault(b, []).append(1.0 - wa)
    out = []
    for cond in sorted(outcomes):
        x = np.asarray(outcomes[cond], dtype=float)
        boot = bootstrap_means(x, n_resamples, _rng(seed, c["name"], "win-rate", cond))
        lo, hi = percentile_interval(boot, ci)
        out.append({"campaign": c["name"], "condition": cond, "comparisons": int(x.size),
                    "wins": int((x == 1.0).sum()), "ties": int((x == 0.5).sum()), "losses": int((x == 0.0).sum()),
                    "win_rate": float(x.mean()), "ci_low": finite_or_none(lo), "ci_high": finite_or_none(hi)})
    return out


def agreement_report(store: Any, campaign: str | int | Mapping[str, Any], *, n_resamples: int = 1000,
                     seed: int | None = None, by_condition: bool = False) -> dict[str, Any]:
    """Everything about a campaign's agreement at once: {campaign, scale, overlap, agreement (α rows),
    kappa, win_rates (pairwise campaigns), disagreements (how many items above the default threshold)}."""
    c = get_campaign(store, campaign)
    sc = campaign_scale(c)
    data = _load(store, c)  # one read serves every table
    return {
        "campaign": c["name"], "scale": sc.name, "overlap": int(c["overlap"]),
        "agreement": _agreement_rows(store, c, data, levels=None, consensus="mean", n_resamples=n_resamples,
                                     seed=seed, ci=0.95, by_condition=by_condition),
        "kappa": _kappa_rows(c, data, min_items=2),
        "win_rates": _win_rates(c, data, n_resamples=max(n_resamples, 1000), seed=seed, ci=0.95)
        if sc.pairwise else [],
        "disagreements": len(disagreements(store, c)),
    }
