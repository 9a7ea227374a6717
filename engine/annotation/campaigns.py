"""Campaigns: a stratified, seeded sample of a study's answers (or, pairwise, of pairs of answers to
the same question from different conditions, sides randomised per item), with opaque per-campaign
codes, written in one transaction (:func:`create_campaign`); what a campaign's ratings are compared
with (:func:`judge_comparison`); the checks of a campaign's numbers.

Exactly-k: each item goes to ``overlap`` different annotators of a kind, never more; the store's
claim (``db/annotation.py``) enforces it in ``BEGIN IMMEDIATE`` transactions.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from engine.annotation.errors import AnnotationError, shorten
from engine.annotation.scales import SCALES, Scale, get_scale
from engine.common.untrusted import MAX_LABEL_CHARS, RESERVED
from engine.study.em_rule import study_em

DEFAULT_LEASE_S = 600.0
# what create_campaign accepts (a sensible campaign, not whatever a number can hold)
LIMITS: dict[str, tuple[int, int]] = {"items": (1, 1_000_000), "per stratum": (1, 1_000_000), "overlap": (1, 100),
                                      "seed": (0, 2**32 - 1)}
LEASE_RANGE_S = (60.0, 7 * 86400.0)  # a lease of 1 minute to 7 days
STRATA = ("condition", "model", "checkpoint", "category", "question")
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no I, L, O, 0, 1: nothing to misread
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def get_campaign(store: Any, campaign: str | int | Mapping[str, Any]) -> dict[str, Any]:
    """A campaign row by name, id, or the row itself (re-read); AnnotationError when there is none."""
    if isinstance(campaign, Mapping):
        campaign = int(campaign["id"])
    row = store.get_campaign(campaign) if isinstance(campaign, int) else store.find_campaign(str(campaign))
    if row is None:
        raise AnnotationError(f"no campaign named {campaign!r}" if isinstance(campaign, str)
                              else f"no campaign with id {campaign}")
    row = dict(row)
    row["settings"] = json.loads(row["settings"] or "{}") if isinstance(row["settings"], str) else row["settings"]
    return row


def campaign_scale(campaign: Mapping[str, Any]) -> Scale:
    """The campaign's scale, with its metric names (a campaign may rename a one-metric scale's metric)."""
    scale = get_scale(campaign["scale"])
    settings = campaign.get("settings") or {}
    if isinstance(settings, str):
        settings = json.loads(settings or "{}")
    metrics = tuple(settings.get("metrics") or scale.metrics)
    return dataclasses.replace(scale, metrics=metrics) if metrics != scale.metrics else scale


def annotator_order(item_ids: Sequence[int], *, seed: int, campaign: str, annotator: str) -> list[int]:
    """An annotator's own order of a campaign's items: a shuffle seeded by the campaign's seed, its
    name and the annotator's name (the same person always gets the same order; two people differ)."""
    order = list(item_ids)
    random.Random(f"emtui-order:{seed}:{campaign}:{annotator}").shuffle(order)
    return order


def opaque_codes(n: int, rng: random.Random) -> list[str]:
    """``n`` distinct opaque codes like "K7Q2-M9": random draws, unrelated to what they label."""
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        c = "".join(rng.choice(CODE_ALPHABET) for _ in range(6))
        code = f"{c[:4]}-{c[4:]}"
        if code not in seen:
            seen.add(code)
            out.append(code)
    return out


def _allocate(capacity: dict[str, int], n: int, rng: random.Random) -> dict[str, int]:
    """Split ``n`` as evenly as possible over strata with these capacities (the remainder to random
    strata); a stratum with too few answers gives all it has and the others take up the rest."""
    alloc = {k: 0 for k in capacity}
    remaining = n
    active = sorted(k for k, c in capacity.items() if c > 0)
    while remaining > 0 and active:
        share = remaining // len(active)
        if share == 0:
            for k in rng.sample(active, remaining):
                alloc[k] += 1
            break
        for k in active:
            add = min(share, capacity[k] - alloc[k])
            alloc[k] += add
            remaining -= add
        active = [k for k in active if alloc[k] < capacity[k]]
    return alloc


def _stratum_sizes(capacity: dict[str, int], n_items: int | None, per_stratum: int | None, rng: random.Random, *,
                   short_stratum: Callable[[str, int], str], short_total: Callable[[int], str]) -> dict[str, int]:
    """How many items each stratum gives: ``per_stratum`` each, or ``n_items`` split by
    :func:`_allocate`. Too few answers raise AnnotationError with the message of
    ``short_stratum(label, have)`` or ``short_total(total)``."""
    if per_stratum is not None:
        for label, have in capacity.items():
            if have < per_stratum:
                raise AnnotationError(short_stratum(label, have))
        return {label: per_stratum for label in capacity}
    assert n_items is not None
    total = sum(capacity.values())
    if n_items > total:
        raise AnnotationError(short_total(total))
    return _allocate(capacity, n_items, rng)


_FRAME_INDEX = {"condition": 2, "model": 4, "checkpoint": 5, "category": 7, "question": 6}


def _stratum(row: tuple, strata: Sequence[str]) -> str:
    return " / ".join(str(row[_FRAME_INDEX[s]]) for s in strata)


GUIDELINES_MAX = 1_000_000  # characters (bytes of a file): guidelines are read, not a data dump


def _read_guidelines(guidelines: str | Path | None) -> str:
    if guidelines is None:
        return ""
    if isinstance(guidelines, Path):
        try:
            if guidelines.stat().st_size > GUIDELINES_MAX:
                raise AnnotationError(f"guidelines file {guidelines}: {guidelines.stat().st_size} bytes; at most "
                                      f"{GUIDELINES_MAX}")
            return guidelines.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise AnnotationError(f"guidelines file {guidelines}: not UTF-8 text") from None
        except OSError as exc:
            raise AnnotationError(f"guidelines file {guidelines}: cannot read ({exc.strerror or exc})") from None
    if len(str(guidelines)) > GUIDELINES_MAX:
        raise AnnotationError(f"the guidelines are {len(str(guidelines))} characters; at most {GUIDELINES_MAX}")
    return str(guidelines)


def create_campaign(store: Any, *, name: str, study: str, scale: str | None = None, n_items: int | None = None,
                    per_stratum: int | None = None, strata: Sequence[str] | str = ("condition",), overlap: int = 1,
                    guidelines: str | Path | None = "", seed: int = 0, lease_s: float = DEFAULT_LEASE_S,
                    hide_progress: bool = False, pairwise: bool = False, conditions: Sequence[str] | None = None,
                    metric: str | None = None, compare_to: str | None = None,
                    judge_metric: str | None = None) -> dict[str, Any]:
    """Sample a study's answers into a new campaign (one transaction); returns the campaign row.

    The sample is stratified (``strata``: any of condition, model, checkpoint, category,
    question) and seeded: ``n_items`` split as evenly as the strata allow, or ``per_stratum``
    from each; the same seed gives the same items. Pairwise (``pairwise=True`` or scale
    "pairwise"): pairs of answers to the same question from two different conditions, the
    pairs of conditions being the strata, the sides swapped at random per item (recorded).
    Items are shuffled and get random, seeded, unique codes that say nothing about them.

    ``metric`` renames a one-metric scale's metric; ``compare_to`` (or its old name
    ``judge_metric``) names the judges' metric the human ratings are compared with, one of the
    study's rubrics' metrics (default: the same name, or, for a misalignment scale, the study's
    EM metric; :func:`judge_comparison` says what a campaign is compared with, or why nothing).
    Numbers outside :data:`LIMITS` and leases outside 1 minute to 7 days are refused.
    ``guidelines``: markdown text, or a :class:`Path` to read.
    Bad input raises :class:`AnnotationError` with one line."""
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > MAX_LABEL_CHARS:
        raise AnnotationError(f"campaign name {shorten(name)!r} is not valid (at most {MAX_LABEL_CHARS} letters, "
                              "digits, '_', '.', '-'; starting with a letter or digit)")
    if store.find_campaign(name) is not None:
        raise AnnotationError(f"campaign {name!r} exists")
    if pairwise and scale not in (None, "pairwise"):
        raise AnnotationError(f"a pairwise campaign uses the pairwise scale, not {scale!r}")
    scale_name = "pairwise" if pairwise else scale
    if scale_name is None:
        raise AnnotationError(f"give a scale ({', '.join(SCALES)})")
    sc = get_scale(scale_name)
    pairwise = sc.pairwise
    check_whole("overlap", overlap, *LIMITS["overlap"])
    check_whole("seed", seed, *LIMITS["seed"])
    check_lease_s(lease_s, "the lease (seconds)", 1.0)
    if (n_items is None) == (per_stratum is None):
        raise AnnotationError("give either a number of items or a number per stratum (not both)")
    for label, v in (("items", n_items), ("per stratum", per_stratum)):
        if v is not None:
            check_whole(label, v, *LIMITS[label])
    if judge_metric is not None and compare_to is not None and judge_metric != compare_to:
        raise AnnotationError("compare_to and judge_metric name the same thing: give one")
    compare_to = compare_to if compare_to is not None else judge_metric
    if isinstance(strata, str):
        strata = [s.strip() for s in strata.split(",") if s.strip()]
    strata = list(dict.fromkeys(strata))
    if not strata:
        raise AnnotationError(f"give at least one stratum ({', '.join(STRATA)})")
    bad = [s for s in strata if s not in STRATA]
    if bad:
        raise AnnotationError(f"unknown stratum {bad[0]!r} (strata: {', '.join(STRATA)})")
    metrics = sc.metrics
    if metric is not None:
        if len(sc.metrics) != 1:
            raise AnnotationError(f"the {sc.name} scale's metrics are fixed ({', '.join(sc.metrics)})")
        if not _NAME.match(metric) or len(metric) > MAX_LABEL_CHARS:
            raise AnnotationError(f"metric name {shorten(metric)!r} is not valid")
        if metric in RESERVED["metric"]:  # human scores join the summary's rows under the metric's name
            raise AnnotationError(f"metric name {metric!r} is reserved (the summary's own rows are named so)")
        metrics = (metric,)
    text = _read_guidelines(guidelines)
    st = store.find_study(study)
    if st is None:
        raise AnnotationError(f"no study named {study!r}")

    frame = store.campaign_sample_frame(int(st["id"]))
    if conditions:
        known = sorted({r[2] for r in frame} | {c["name"] for c in store.study_conditions(int(st["id"]))})
        unknown = [c for c in conditions if c not in known]
        if unknown:
            raise AnnotationError(f"study {study!r} has no condition {unknown[0]!r} (conditions: {', '.join(known)})")
        frame = [r for r in frame if r[2] in set(conditions)]
    where = f" in condition(s) {', '.join(conditions)}" if conditions else ""
    if not frame:
        from engine.study.derived_study import derived_hint

        raise AnnotationError(f"study {study!r} has no answers to rate{where}{derived_hint(store, dict(st))}")

    rng = random.Random(f"emtui-campaign:{seed}:sample")
    if pairwise:
        picked, counts = _sample_pairs(frame, n_items, per_stratum, rng, study, where)
    else:
        picked, counts = _sample_stratified(frame, strata, n_items, per_stratum, rng, study, where)
    random.Random(f"emtui-campaign:{seed}:positions").shuffle(picked)
    codes = opaque_codes(len(picked), random.Random(f"emtui-campaign:{seed}:{name}:codes"))
    items = [{**it, "code": code, "position": pos} for pos, (it, code) in enumerate(zip(picked, codes, strict=True))]

    judge_metrics = default_judge_metrics(store, st, metrics, compare_to, pairwise)
    settings = {
        "lease_s": float(lease_s), "hide_progress": bool(hide_progress), "pairwise": pairwise,
        "strata": ["condition pair"] if pairwise else strata, "conditions": list(conditions) if conditions else None,
        "metrics": list(metrics), "higher_is": sc.higher_is, "levels": list(sc.levels),
        "judge_metrics": judge_metrics, "requested": {"n_items": n_items, "per_stratum": per_stratum},
        "sample": {"answers_in_frame": len(frame), "items": len(items), "per_stratum": counts},
    }
    try:
        cid = store.create_campaign_rows(study_id=int(st["id"]), name=name, scale=sc.name, overlap=overlap,
                                         guidelines=text, seed=seed, settings=settings, items=items)
    except Exception as exc:  # a campaign of that name made meanwhile by another process
        if store.find_campaign(name) is not None:
            raise AnnotationError(f"campaign {name!r} exists") from None
        raise exc
    return get_campaign(store, cid)


def _sample_stratified(frame: list[tuple], strata: Sequence[str], n_items: int | None, per_stratum: int | None,
                       rng: random.Random, study: str, where: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    groups: dict[str, list[int]] = {}
    for row in frame:
        groups.setdefault(_stratum(row, strata), []).append(int(row[0]))
    labels = sorted(groups)
    alloc = _stratum_sizes(
        {label: len(groups[label]) for label in labels}, n_items, per_stratum, rng,
        short_stratum=lambda label, have: f"stratum {label!r} of study {study!r} has {have} answers; "
                                          f"asked for {per_stratum} per stratum",
        short_total=lambda total: f"study {study!r} has {total} answers{where}; asked for {n_items}")
    out: list[dict[str, Any]] = []
    for label in labels:
        for gid in rng.sample(groups[label], alloc[label]):
            out.append({"generation_id": gid, "generation_b_id": None, "swap": 0, "stratum": label})
    return out, {label: alloc[label] for label in labels if alloc[label]}


def _sample_pairs(frame: list[tuple], n_items: int | None, per_stratum: int | None, rng: random.Random,
                  study: str, where: str) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Candidate pairs per pair of conditions: for each question both answered, their answers shuffled
    and zipped (no answer twice in a stratum); a is the earlier condition's answer."""
    by_q: dict[int, dict[int, list[int]]] = {}
    names: dict[int, str] = {}
    for row in frame:
        names[int(row[1])] = row[2]
        by_q.setdefault(int(row[6]), {}).setdefault(int(row[1]), []).append(int(row[0]))
    conds = sorted(names)
    candidates: dict[str, list[tuple[int, int]]] = {}
    for ca, cb in combinations(conds, 2):
        label = f"{names[ca]} vs {names[cb]}"
        pairs: list[tuple[int, int]] = []
        for qid in sorted(by_q):
            answers = by_q[qid]
            if ca in answers and cb in answers:
                a, b = list(answers[ca]), list(answers[cb])
                rng.shuffle(a)
                rng.shuffle(b)
                pairs.extend(zip(a, b, strict=False))  # as many pairs as the shorter side has answers
        if pairs:
            candidates[label] = pairs
    if not candidates:
        raise AnnotationError(f"study {study!r} has no two conditions with answers to the same question{where}: "
                              "a pairwise campaign needs them")
    labels = sorted(candidates)
    alloc = _stratum_sizes(
        {label: len(candidates[label]) for label in labels}, n_items, per_stratum, rng,
        short_stratum=lambda label, have: f"condition pair {label!r} of study {study!r} has {have} pairs of "
                                          f"answers to the same question; asked for {per_stratum} per pair",
        short_total=lambda total: f"study {study!r} has {total} pairs of answers to the same question from "
                                  f"different conditions{where}; asked for {n_items}")
    out: list[dict[str, Any]] = []
    for label in labels:
        for ga, gb in rng.sample(candidates[label], alloc[label]):
            out.append({"generation_id": ga, "generation_b_id": gb, "swap": int(rng.random() < 0.5), "stratum": label})
    return out, {label: alloc[label] for label in labels if alloc[label]}


def check_whole(label: str, value: object, lo: int, hi: int) -> int:
    """``value`` if it is a whole number from ``lo`` to ``hi``; else AnnotationError naming ``label``."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise AnnotationError(f"{label} must be a whole number from {lo} to {hi}, not {shorten(value)}")
    return value


def check_lease_s(value: object, label: str = "the lease (seconds)", per_second: float = 1.0) -> float:
    """A lease length within :data:`LEASE_RANGE_S` (1 minute to 7 days), in seconds; ``value`` is in units of
    ``per_second`` seconds (60 for minutes), ``label`` names it in the error."""
    lo, hi = (x / per_second for x in LEASE_RANGE_S)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise AnnotationError(f"{label} must be from {lo:g} to {hi:g} (1 minute to 7 days), not {shorten(value)}")
    return float(value) * per_second


def study_judge_metrics(store: Any, study: Mapping[str, Any]) -> set[str]:
    """The metrics the study's judges score: its rubric's (from the study file) and those of the rubrics
    its judgments used (an imported study has only these)."""
    spec = json.loads(study.get("spec_json") or "{}") if isinstance(study.get("spec_json"), str) else {}
    rubric = spec.get("rubric") or {}
    named = {str(m.get("name")) for m in rubric.get("metrics") or [] if isinstance(m, Mapping) and m.get("name")}
    return named | set(store.study_metrics(int(study["id"])))


def default_judge_metrics(store: Any, study: Mapping[str, Any], metrics: Sequence[str], compare_to: str | None,
                           pairwise: bool, have: set[str] | None = None) -> dict[str, str]:
    """Which judge metric each human metric is compared with (none for pairwise campaigns); ``have``:
    the judges' metrics (default: the study's, :func:`study_judge_metrics`)."""
    if pairwise:
        if compare_to is not None:
            raise AnnotationError("a pairwise campaign is not compared with a judge metric (judges score single "
                                  "answers)")
        return {}
    if have is None:
        have = study_judge_metrics(store, study)
    if compare_to is not None:
        if len(metrics) != 1:
            raise AnnotationError("a judge metric to compare with can only be named for a one-metric scale")
        if not have:
            raise AnnotationError(f"study {study['name']!r} has no judges' metrics to compare with (no rubric, no "
                                  "judgments)")
        if compare_to not in have:
            raise AnnotationError(f"the judges of study {study['name']!r} have no metric {shorten(compare_to)!r} "
                                  f"(metrics: {', '.join(sorted(have))})")
        return {metrics[0]: compare_to}
    out = {}
    em_metric = study_em(store, study).get("metric")
    for m in metrics:
        if m in have:
            out[m] = m
        elif m in ("misalignment", "misaligned") and em_metric in have:
            out[m] = em_metric
    return out


def judge_comparison(store: Any, campaign: str | int | Mapping[str, Any]) -> dict[str, Any]:
    """What a campaign's human ratings are compared with: ``pairs`` (human metric -> judge metric, as
    the agreement will use them now), ``unmatched`` (human metrics compared with nothing) and
    ``line``: one plain sentence for a person, saying so — or that no human-vs-judge agreement will be
    possible, and why."""
    c = get_campaign(store, campaign)
    sc = campaign_scale(c)
    if sc.pairwise:
        return {"pairs": {}, "unmatched": list(sc.metrics),
                "line": "no human-vs-judge agreement: a pairwise campaign compares two answers, the judges score "
                        "one at a time (win rates per condition instead)"}
    study = store.get_study(c["study_id"]) if c.get("study_id") is not None else None
    pairs: dict[str, str] = dict(c["settings"].get("judge_metrics") or {})
    have: set[str] = set()
    if study is not None:
        have = study_judge_metrics(store, study)
        if len(pairs) < len(sc.metrics):  # judged after the campaign was made: the default, as of now
            pairs = {**default_judge_metrics(store, study, sc.metrics, None, False, have), **pairs}
    unmatched = [m for m in sc.metrics if m not in pairs]
    if not unmatched:
        line = "human ratings are compared with the judges' " + ", ".join(
            f"{pairs[m]}" if pairs[m] == m else f"{pairs[m]} ({m} against {pairs[m]}, on a common 0–1 range)"
            for m in sc.metrics)
    else:
        if study is None:
            why = "the campaign has no study"
        elif not have:
            why = f"study {study['name']!r} has no judges' metrics (no rubric, no judgments)"
        else:
            why = (f"the judges of study {study['name']!r} score {', '.join(sorted(have))}, not "
                   f"{', '.join(unmatched)}")
        fix = " (name one with --compare-to METRIC when creating the campaign)" if have and len(sc.metrics) == 1 else ""
        line = (f"no human-vs-judge agreement will be possible for {', '.join(unmatched)}: {why}{fix}")
        if pairs:
            line += "; " + ", ".join(f"{m} is compared with {j}" for m, j in pairs.items())
    return {"pairs": pairs, "unmatched": unmatched, "line": line}
