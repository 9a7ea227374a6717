"""The human side of the summary: what a study's rating campaigns add to ``emtui summary``.

Per campaign of the study (human raters only — a model rater is never counted as a human):

- ``scores`` rows with ``judge = "human"``: per condition, the mean over its rated answers of
  each answer's mean human rating (the panel's definition, with people as the judges), with a
  bootstrap CI; ``judge_name`` names the campaign;
- ``agreement`` rows: Krippendorff α among the humans, and of the human consensus against
  the judge panel and each judge (:func:`engine.annotation.agreement.agreement_rows`), overall and per
  condition, each with its campaign;
- ``kappa`` rows: weighted Cohen's κ between every two annotators;
- ``win_rates`` rows of pairwise campaigns: per condition, how often its answer was judged the
  more misaligned one, with a CI.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.annotation.agreement import agreement_rows, kappa_rows, pairwise_win_rates
from engine.annotation.campaigns import campaign_scale, get_campaign
from engine.stats.estimates import bootstrap_means, finite_or_none, percentile_interval


def study_campaigns(store: Any, study: str) -> list[dict[str, Any]]:
    return [c for c in store.list_campaigns() if c.get("study") == study]


def human_rows(store: Any, study: str, *, n_resamples: int, agreement_resamples: int, ci: float,
               rng_for: Callable[..., np.random.Generator]) -> dict[str, list[dict[str, Any]]]:
    """Rows for the summary's sections from every campaign of ``study``; ``rng_for(*key)`` gives
    each CI its own seeded generator (the summary's, so numbers do not move when others are added)."""
    out: dict[str, list[dict[str, Any]]] = {"scores": [], "agreement": [], "kappa": [], "win_rates": []}
    for c in study_campaigns(store, study):
        if not c["n_ratings"]:
            continue
        scale = campaign_scale(get_campaign(store, int(c["id"])))
        ratings = store.campaign_rating_rows(int(c["id"]), rater_kind="human")
        if scale.pairwise:
            for r in pairwise_win_rates(store, c["name"], n_resamples=n_resamples):
                out["win_rates"].append({"study": study, **r})
        else:
            items: dict[str, int] = {}
            for it in store.campaign_items(int(c["id"])):
                items[it["condition"] or ""] = items.get(it["condition"] or "", 0) + 1
            out["scores"] += _score_rows(study, c["name"], scale.metrics, ratings, items, n_resamples, ci, rng_for)
        for r in agreement_rows(store, c["name"], n_resamples=agreement_resamples, by_condition=True, ci=ci):
            out["agreement"].append({"study": study, **r})
        for r in kappa_rows(store, c["name"]):
            out["kappa"].append({"study": study, **r})
    return out


def _score_rows(study: str, campaign: str, metrics: tuple[str, ...], ratings: list[dict[str, Any]],
                items: dict[str, int], n_resamples: int, ci: float, rng_for: Callable[..., np.random.Generator]
                ) -> list[dict[str, Any]]:
    """``missing``: the campaign's items of the condition without a human rating yet."""
    rows = []
    for metric in metrics:
        per_answer: dict[tuple[str, int], list[float]] = {}
        for r in ratings:
            if r["metric"] == metric and r["score"] is not None:
                per_answer.setdefault((r["condition"] or "", int(r["generation_id"])), []).append(float(r["score"]))
        for cond in sorted({k[0] for k in per_answer}):
            v = np.array([np.mean(s) for k, s in per_answer.items() if k[0] == cond])
            boot = bootstrap_means(v, n_resamples, rng_for(cond, "human", campaign, metric))
            low, high = percentile_interval(boot, ci)
            rows.append({"study": study, "condition": cond, "judge": "human", "judge_name": f"humans ({campaign})",
                         "metric": metric, "mean": finite_or_none(float(v.mean())), "ci_low": finite_or_none(low),
                         "ci_high": finite_or_none(high), "n": int(v.size),
                         "missing": max(0, items.get(cond, 0) - v.size)})
    return rows
