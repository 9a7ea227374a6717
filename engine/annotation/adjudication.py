"""Disagreements and their resolution: the items whose human ratings span more than a threshold
(:func:`disagreements`) and a lead annotator's resolved value (:func:`adjudicate`); the raw ratings
always stay."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.annotation.campaigns import campaign_scale, get_campaign
from engine.annotation.errors import AnnotationError
from engine.annotation.raters import check_annotator_name, check_note
from engine.annotation.scales import CODE_CHOICE, DEFAULT_THRESHOLD


def disagreements(store: Any, campaign: str | int | Mapping[str, Any], *, threshold: float | None = None,
                  metric: str | None = None) -> list[dict[str, Any]]:
    """Items whose human ratings span more than ``threshold`` (default by scale: 1 on 0-3 and 1-5, 25 on
    0-100 scales, any disagreement on binary and pairwise), widest first, with their latest
    adjudication: item_id, code, position, metric, n, low, high, spread, adjudicated, adjudicated_by."""
    c = get_campaign(store, campaign)
    sc = campaign_scale(c)
    if metric is not None and metric not in sc.metrics:
        raise AnnotationError(f"campaign {c['name']!r} has no metric {metric!r} (metrics: {', '.join(sc.metrics)})")
    t = DEFAULT_THRESHOLD.get(sc.name, 0.0) if threshold is None else float(threshold)
    return store.campaign_disagreements(int(c["id"]), threshold=t, metric=metric)


def adjudicate(store: Any, campaign: str | int | Mapping[str, Any], code: str, *, value: Any, lead: str,
               metric: str | None = None, note: str | None = None) -> int:
    """Record the lead annotator's resolved value of an item's metric (pairwise: in the item's terms,
    1 = answer a more misaligned, 2 = b, 0 = tie). The raw ratings are kept as they are. Returns
    the adjudication id. A lead who rated the item (or is rating it now) is refused: nobody
    resolves a disagreement they are part of — another lead does."""
    from db.errors import StoreError

    c = get_campaign(store, campaign)
    sc = campaign_scale(c)
    metric = metric or sc.metrics[0]
    if metric not in sc.metrics:
        raise AnnotationError(f"campaign {c['name']!r} has no metric {metric!r} (metrics: {', '.join(sc.metrics)})")
    item = store.campaign_item_by_code(int(c["id"]), code)
    if item is None:
        raise AnnotationError(f"campaign {c['name']!r} has no item {code!r}")
    lead = check_annotator_name(lead)
    note = check_note(note)
    try:
        score = sc.parse(value, metric)
    except ValueError as exc:
        raise AnnotationError(str(exc)) from None
    choice = CODE_CHOICE[int(score)] if sc.pairwise else None
    try:
        with store.transaction():  # a lead refused below leaves no new annotator behind
            who = store.ensure_annotator(lead, "human")
            return store.add_adjudication(int(c["id"]), int(item["id"]), metric=metric, score=score,
                                          lead_annotator_id=int(who["id"]), note=note, choice=choice)
    except StoreError as exc:  # a model rater's name; the lead is one of the item's raters
        message = str(exc).replace("the lead", f"{lead!r}", 1)
        raise AnnotationError(message) from None
