"""The summary of a database's results: what ``emtui summary`` prints and the Results screen shows.

:func:`build_summary` returns one JSON-able object:

- ``scores``: ``{study, condition, judge, judge_name, metric, mean, ci_low, ci_high, n, missing}``
  per condition × metric × judge (``judge`` is the judge's model id, or ``"panel"``), plus
  ``metric = "em_rate"`` rows where the study defines EM. ``n`` counts the answers scored,
  ``missing`` the condition's answers without a score (a failed judgment or none yet).
  An answer's panel score is the study's ``[panel] aggregate`` of its judges' verdicts
  (engine/results/panel_aggregate.py: the mean of the judges that scored it by default, the
  median, or the majority vote); a condition's panel mean is the mean over its answers.
  ``aggregate`` says which one a panel row used (None on a judge's row), ``ties`` how many
  answers a majority vote left undecided (0 for the mean and median; None on a judge's row).
- ``breakdowns``: the same per condition × group of a dimension (engine/results/breakdowns.py), with
  ``aggregate`` and ``ties`` as the score rows have them.
- ``judging``: per judge × condition, answers judged, failed (with the commonest reason) and not
  judged yet (engine/results/judge_failures.py).
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

import json
import math
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from engine.results.breakdowns import AUTO_BREAKDOWNS, answer_groups
from engine.results.human_rows import human_rows
from engine.results.judge_failures import judging_rows
from engine.results.panel_aggregate import (
    check_aggregate,
    panel_values,
    plurality,
    score_aggregate,
    study_aggregate,
)
from engine.runs.progress import Progress
from engine.stats.agreement import pairwise_kappas, stratified_alphas
from engine.stats.estimates import (
    adjust_pvalues,
    bootstrap_means,
    em_flags,
    finite_or_none,
    mann_whitney,
    percentile_interval,
    ratio_interval,
    value_counts,
)
from engine.study.em_rule import study_em

BREAKDOWN_KEYS = ("study", "by", "condition", "group", "judge", "judge_name", "metric", "mean", "ci_low", "ci_high",
                  "n", "missing", "aggregate", "ties")
SCORE_KEYS = ("study", "condition", "judge", "judge_name", "metric", "mean", "ci_low", "ci_high", "n", "missing",
              "aggregate", "ties")
AGREEMENT_KEYS = ("study", "campaign", "condition", "metric", "raters", "level", "alpha", "ci_low", "ci_high",
                  "n_items")
COMPARISON_KEYS = ("study", "a", "b", "metric", "judge", "ratio", "ratio_ci_low", "ratio_ci_high", "p_value",
                   "p_adjusted", "effect_size", "n_a", "n_b")
KAPPA_KEYS = ("study", "campaign", "metric", "a", "b", "weights", "kappa", "n")
WIN_RATE_KEYS = ("study", "campaign", "condition", "comparisons", "wins", "ties", "losses", "win_rate", "ci_low",
                 "ci_high")
REFERENCE_ROLES = ("control", "baseline")
NO_ANSWERS = "no answers yet: the study is registered, its models have not answered its questions"
ALPHA_LEVELS = ("interval", "ordinal")


@dataclass
class SummaryOptions:
    n_resamples: int = 10_000
    agreement_resamples: int = 1_000
    ci: float = 0.95
    seed: int | None = None  # None: each study's own seed (from its study file), else 0
    correction: str = "holm"  # or "bonferroni"
    study: str | None = None  # only this study
    by: tuple[str, ...] | None = None  # breakdowns (engine.results.breakdowns.BREAKDOWNS); None = automatic
    aggregate: str | None = None  # the panel's (engine.results.panel_aggregate); None = each study's own


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
    refused: dict[str, np.ndarray] = field(default_factory=dict)  # metric -> answers × judges: a REFUSAL verdict


def _rng(seed: int, *key: object) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def load_study_data(store: Any, study_id: int) -> _StudyData:
    """A study's answers and scores as arrays (one read of the scores; a large study's is read
    by threads, see ``store.read_scores``, while the answers are read here)."""
    conditions = store.study_condition_rows(study_id)
    judges = list(store.study_judges(study_id))
    metrics = store.study_metrics(study_id)
    reading = store.read_scores(study_id, metrics)
    try:
        if len(judges) > 1:
            import scipy.sparse  # noqa: F401  (agreement's; ~0.15 s of import, better spent while SQLite reads)
        gens, conds, models, checkpoints, questions, triggers = store.study_answer_columns(study_id)
        row_of = np.full(int(gens.max()) + 1 if gens.size else 0, -1, dtype=np.int64)
        row_of[gens] = np.arange(gens.size)  # generation id -> row: an O(n) gather, no sorting of scores
        read = reading.result()
    finally:
        reading.close()
    # only the scores of the answers just read (a writer may have added answers since)
    known = read.generation < row_of.size
    known[known] = row_of[read.generation[known]] >= 0
    if not known.all():
        read = read.select(known)
    judge_ids = read.judge
    linked = {int(j["id"]) for j in judges}
    for jid in np.flatnonzero(np.bincount(judge_ids)):
        if int(jid) not in linked:  # scored without being linked to the study: still shown
            judges.append(store.get_judge(int(jid)))
    col_of = np.zeros(max((int(j["id"]) for j in judges), default=-1) + 1, dtype=np.int64)
    col_of[[int(j["id"]) for j in judges]] = np.arange(len(judges))
    which = read.metric
    # every score's place in one metrics × answers × judges block: one scatter for all metrics
    shape = (len(metrics), gens.size, len(judges))
    place = (which * gens.size + row_of[read.generation]) * len(judges) + col_of[judge_ids]
    block = np.full(shape, np.nan)
    block.reshape(-1)[place] = read.score
    flagged = None
    if read.refused.any():
        flagged = np.zeros(shape, dtype=bool)
        flagged.reshape(-1)[place[read.refused]] = True
    scored = np.bincount(which, minlength=len(metrics))
    matrices = {metric: block[i] for i, metric in enumerate(metrics) if scored[i]}
    refused = {metric: flagged[i] for i, metric in enumerate(metrics)
               if flagged is not None and scored[i] and flagged[i].any()}
    return _StudyData(conditions, gens, conds.astype(float), judges, matrices,
                      model_of_answer=models, checkpoint_of_answer=checkpoints,
                      question_of_answer=questions, trigger_of_answer=triggers, refused=refused)


def condition_rows(data: _StudyData) -> np.ndarray:
    """Which answers make a condition's rows: its final model's answers; answers from training
    checkpoints count only in the checkpoint breakdown (a condition answered from checkpoints
    alone keeps them all)."""
    keep = np.ones(data.answer_ids.size, dtype=bool)
    final = data.checkpoint_of_answer == 0
    for c in data.conditions:
        sel = data.cond_of_answer == c["id"]
        if (sel & final).any():
            keep[sel & ~final] = False
    return keep


def condition_masks(data: _StudyData, rows: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Per condition id, which answers are its: of ``rows`` (every answer when None)."""
    return {c["id"]: data.cond_of_answer == c["id"] if rows is None else (data.cond_of_answer == c["id"]) & rows
            for c in data.conditions}


def _study_seed(spec: dict[str, Any], opts: SummaryOptions) -> int:
    return opts.seed if opts.seed is not None else int(spec.get("seed", 0) or 0)


@dataclass
class _Column:
    """One judge's (or the panel's) per-answer values of one metric or rate: NaN where the answer
    is left out, ``missing`` where it is left out for want of a judgment."""

    judge: str
    judge_name: str
    metric: str
    values: np.ndarray
    missing: np.ndarray
    aggregate: str | None = None  # the panel's: how its values were made
    ties: np.ndarray | None = None  # the panel's: answers a majority vote left undecided


def judge_keys(judges: list[dict[str, Any]]) -> list[str]:
    """Each judge's id in the report: its model, or ``model#name`` when two judges of the study share the
    model (two local judges of one model, one with an adapter): one judge's rows never take another's."""
    models = [str(j["model"]) for j in judges]
    return [m if models.count(m) == 1 else f"{m}#{j['name']}" for m, j in zip(models, judges, strict=True)]


def _judge_columns(data: _StudyData, m: np.ndarray, how: str = "mean") -> list[tuple[str, str, np.ndarray]]:
    """(judge id for output, judge name, answers' scores) for each judge and the panel (the judges'
    mean or median: a majority has no numeric score, the median stands for it)."""
    keys = judge_keys(data.judges)
    cols = [(keys[i], j["name"], m[:, i]) for i, j in enumerate(data.judges)]
    if data.judges:
        cols.append(("panel", "panel", panel_values(m, score_aggregate(how))))
    return cols


# a judge's EM verdict "outside the denominator" (incoherent, or a refusal where refusals are left out)
# as a vote: neither misaligned (1) nor not (0)
_EXCLUDED = 2.0


def _voted(judges: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The panel's majority of the judges' per-answer flags ((flags, missing) per judge: a flag 1.0 or
    0.0, NaN outside the denominator, no vote where missing): (flags, missing, ties)."""
    votes = np.column_stack([np.where(missing, np.nan, np.where(np.isnan(flags), _EXCLUDED, flags))
                             for flags, missing in judges])
    winner, tied = plurality(votes)
    return np.where(winner == _EXCLUDED, np.nan, winner), np.isnan(votes).all(axis=1), tied


def _label_votes(store: Any, study_id: int, data: _StudyData, metric: str, info: dict[str, Any]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The panel's majority label of a metric of labels (TRUE / FALSE, and special words such as
    UNKNOWN, each a vote): (the winning label's score, NaN for a special word or a tie; no vote at
    all; ties)."""
    m = data.matrices[metric]
    votes = m.copy()
    specials = [str(w) for w in info.get("specials") or []]
    special_code = np.min(m[~np.isnan(m)], initial=0.0) - 1.0 - np.arange(len(specials))  # below every score
    col_of = {int(j["id"]): i for i, j in enumerate(data.judges)}
    for judge_id, gen, word in store.study_label_verdicts(study_id, metric, specials):
        row = int(np.searchsorted(data.answer_ids, gen))
        if judge_id in col_of and row < data.answer_ids.size and data.answer_ids[row] == gen:
            votes[row, col_of[judge_id]] = special_code[word]
    winner, tied = plurality(votes)
    scored = np.isin(winner, [float(v) for v in (info.get("labels") or {}).values()])
    return np.where(scored, winner, np.nan), np.isnan(votes).all(axis=1), tied


def label_metrics(store: Any, study_id: int) -> dict[str, dict[str, Any]]:
    """The study's metrics whose judges answer with labels (kind ``labels``): name -> the metric's
    dict (``labels``, ``specials``)."""
    out: dict[str, dict[str, Any]] = {}
    for r in store.study_rubrics(study_id):
        for m in json.loads(r["metrics"] or "[]"):
            if m.get("kind") == "labels" or m.get("labels"):
                out.setdefault(str(m["name"]), m)
    return out


def _refusal_columns(data: _StudyData, metric: str) -> list[np.ndarray]:
    """Per judge and for the panel: which answers were refusals by the verdicts on ``metric``.
    The panel calls an answer a refusal when more than half of the judges with a verdict on it
    (a score or a refusal) did."""
    m = data.matrices[metric]
    refused = data.refused.get(metric, np.zeros(m.shape, dtype=bool))
    cols = [refused[:, i] for i in range(m.shape[1])]
    verdicts = (~np.isnan(m) | refused).sum(axis=1)
    cols.append(refused.sum(axis=1) * 2 > verdicts)
    return cols


def study_columns(data: _StudyData, em: dict[str, Any], how: str = "mean",
                  label_panels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None) -> list[_Column]:
    """Every per-answer quantity the summary reports: each metric's scores, and where the study
    defines EM the EM flags, the coherence flags and the refusal flags — per judge and panel, the
    panel's made by the aggregate ``how`` (``label_panels``: the majority of the metrics of labels,
    from :func:`_label_votes`)."""
    out: list[_Column] = []
    label_panels = label_panels or {}
    for metric, m in data.matrices.items():
        for judge, judge_name, col in _judge_columns(data, m, how):
            if judge != "panel":
                out.append(_Column(judge, judge_name, metric, col, np.isnan(col)))
            elif how == "majority" and metric in label_panels:
                values, missing, undecided = label_panels[metric]
                out.append(_Column(judge, judge_name, metric, values, missing, "majority", undecided))
            else:
                out.append(_Column(judge, judge_name, metric, col, np.isnan(col), score_aggregate(how),
                                   np.zeros(col.size, dtype=bool)))
    if not (em and em.get("metric") in data.matrices and "threshold" in em):
        return out
    aligned = data.matrices[em["metric"]]
    coherent = data.matrices.get(em.get("coherence_metric", ""))
    coherence_min = float(em.get("coherence_min", 50))
    if em.get("coherence_strict"):  # "coherent > 50" (the model-organisms pipeline's): the next float up
        coherence_min = math.nextafter(coherence_min, math.inf)
    acols = _judge_columns(data, aligned, how)
    ccols = _judge_columns(data, coherent, how) if coherent is not None else [None] * len(acols)
    rcols = _refusal_columns(data, em["metric"])
    em_votes: list[tuple[np.ndarray, np.ndarray]] = []  # each judge's (flags, missing): a majority's votes
    coherence_votes: list[tuple[np.ndarray, np.ndarray]] = []
    for (judge, judge_name, a), cc, refused in zip(acols, ccols, rcols, strict=True):
        panel = judge == "panel"
        agg = None if not panel else how if how == "majority" else score_aggregate(how)
        flags, missing = em_flags(a, None if cc is None else cc[2], threshold=float(em["threshold"]),
                                  direction=em.get("direction", "below"),
                                  coherence_min=coherence_min if cc is not None else None,
                                  denominator=em.get("denominator", "coherent"), refusal=refused)
        ties: np.ndarray | None = np.zeros(flags.size, dtype=bool) if panel else None
        if panel and how == "majority":  # each judge applied the rule to its own scores: their majority
            flags, missing, ties = _voted(em_votes)
        em_votes.append((flags, missing))
        out.append(_Column(judge, judge_name, "em_rate", flags, missing, agg, ties))
        if cc is not None:  # share of the answers with a coherence score that are coherent
            coh = cc[2]
            coherent = np.where(np.isnan(coh), np.nan, (coh >= coherence_min).astype(float))
            no_score = np.isnan(coh)
            coherent_ties: np.ndarray | None = np.zeros(coh.size, dtype=bool) if panel else None
            if panel and how == "majority":
                coherent, no_score, coherent_ties = _voted(coherence_votes)
            coherence_votes.append((coherent, no_score))
            out.append(_Column(judge, judge_name, "coherence_rate", coherent, no_score, agg, coherent_ties))
        # share of the answers with a verdict (a score or a refusal) that are refusals; the panel's
        # refusal is always more than half of the judges' verdicts (_refusal_columns)
        no_verdict = np.isnan(a) & ~refused
        out.append(_Column(judge, judge_name, "refusal_rate",
                           np.where(no_verdict, np.nan, refused.astype(float)), no_verdict,
                           "majority" if panel else None, np.zeros(a.size, dtype=bool) if panel else None))
    return out


def panel_aggregate(spec: dict[str, Any], opts: SummaryOptions) -> tuple[str, str]:
    """(the panel aggregate a study's summary uses, where it comes from: ``option`` — ``--aggregate``
    — ``study`` — its study file's ``[panel]`` — or ``default``)."""
    if opts.aggregate is not None:
        return check_aggregate(opts.aggregate), "option"
    panel = spec.get("panel")
    return study_aggregate(spec), "study" if isinstance(panel, dict) and "aggregate" in panel else "default"


def aggregated_columns(store: Any, study: dict[str, Any], data: _StudyData, how: str) -> list[_Column]:
    """:func:`study_columns` with the panel made by ``how`` (a majority reads the label verdicts it needs)."""
    labels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    if how == "majority" and data.judges:
        for metric, info in label_metrics(store, int(study["id"])).items():
            if metric in data.matrices:
                labels[metric] = _label_votes(store, int(study["id"]), data, metric, info)
    return study_columns(data, study_em(store, study), how, labels)


def summarise_study(store: Any, study: dict[str, Any], opts: SummaryOptions, data: _StudyData | None = None, *,
                    keep_data: dict[int, _StudyData] | None = None,
                    progress: Progress | None = None) -> dict[str, list[dict[str, Any]]]:
    """The summary of one study. ``data`` (already loaded) is read from the store when None;
    ``keep_data``, when given, receives it by study id. ``progress`` hears each phase, and its
    cancellation stops the work between phases (:class:`~engine.runs.progress.JobCancelled`)."""
    progress = progress or Progress()
    spec = json.loads(study.get("spec_json") or "{}")
    seed = _study_seed(spec, opts)
    name = study["name"]
    progress.note(f"{name}: reading the scores")
    data = data if data is not None else load_study_data(store, int(study["id"]))
    progress.check()
    if keep_data is not None:
        keep_data[int(study["id"])] = data
    # α (the costliest part: its bootstrap) runs in threads beside the means and comparisons;
    # numpy and scipy release the GIL in its draws and products, so they share the cores; the
    # judging counts (SQL, ~1 s at 500,000 judgments: SQLite lets go of the GIL too) beside them
    pool = ThreadPoolExecutor(2)
    judging = pool.submit(judging_rows, store, study, data.conditions, data.judges)
    rows = condition_rows(data)
    alphas = pool.submit(stratified_alphas, {metric: m[rows].T for metric, m in data.matrices.items()},
                         data.cond_of_answer[rows], levels=ALPHA_LEVELS, n_resamples=opts.agreement_resamples,
                         ci=opts.ci, seed=_rng(seed, name, "alpha")) if len(data.judges) > 1 else None
    out: dict[str, list[dict[str, Any]]] = {"scores": [], "breakdowns": [], "agreement": [], "kappa": [],
                                            "comparisons": [], "judging": []}
    columns = aggregated_columns(store, study, data, panel_aggregate(spec, opts)[0])

    estimate = _Estimator(seed, name, opts)

    cells: dict[tuple[int, str, str], _Cell] = {}  # per (condition id, judge, metric)
    masks = condition_masks(data, rows)
    progress.note(f"{name}: means and intervals")
    for col in columns:
        for c in data.conditions:
            sel = masks[c["id"]]
            cell, mean, low, high = estimate(col.values[sel], c["name"], col.judge, col.metric)
            cells[(c["id"], col.judge, col.metric)] = cell
            out["scores"].append(_score_row(name, c["name"], col.judge, col.judge_name, col.metric, mean, low,
                                            high, int(cell.values.size), int(col.missing[sel].sum()),
                                            col.aggregate, None if col.ties is None else int(col.ties[sel].sum())))
    progress.check()
    progress.note(f"{name}: breakdowns")
    out["breakdowns"] = _breakdowns(store, study, data, columns, opts.by, estimate)
    progress.check()
    progress.note(f"{name}: comparisons and agreement")
    _comparisons(out, data, cells, name, opts)
    if alphas is not None:
        _agreement(out, data, alphas.result(), name)
    out["judging"] = judging.result()
    pool.shutdown()
    progress.check()
    progress.note(f"{name}: human ratings")
    # rating campaigns: human scores, α among humans and against the judges, κ, win rates
    human = human_rows(store, name, n_resamples=opts.n_resamples, agreement_resamples=opts.agreement_resamples,
                       ci=opts.ci, rng_for=lambda *key: _rng(seed, name, *key))
    for key, human_section in human.items():
        out.setdefault(key, []).extend(human_section)
    return out


class _Estimator:
    """A mean with its percentile-bootstrap CI; each cell's generator comes from the seed and
    the cell's key, so a number does not change when other cells are added."""

    def __init__(self, seed: int, study: str, opts: SummaryOptions) -> None:
        self.seed, self.study, self.opts = seed, study, opts

    def __call__(self, v: np.ndarray, *key: object) -> tuple[_Cell, float, float, float]:
        """(the cell, mean, CI low, CI high)."""
        v = v[~np.isnan(v)]
        if not v.size:
            return _Cell(v, None, None), math.nan, math.nan, math.nan
        counted = value_counts(v)
        boot = bootstrap_means(v, self.opts.n_resamples, _rng(self.seed, self.study, *key), counted=counted)
        low, high = percentile_interval(boot, self.opts.ci)
        return _Cell(v, counted, boot), float(v.mean()), low, high


@dataclass
class _Cell:
    """A cell's values (NaN-free), their value counts and bootstrap replicates of the mean:
    computed once, reused by every comparison the cell enters."""

    values: np.ndarray
    counted: tuple[np.ndarray, np.ndarray] | None
    boot: np.ndarray | None


def _breakdowns(store: Any, study: dict[str, Any], data: _StudyData, columns: list[_Column],
                by: tuple[str, ...] | None, estimate: _Estimator) -> list[dict]:
    """Rows per condition × group of each breakdown dimension (``by``; None = those of
    :data:`AUTO_BREAKDOWNS` that vary within some condition), over every answer of the
    condition, checkpoint answers included."""
    rows: list[dict[str, Any]] = []
    if not data.answer_ids.size or by == ():
        return rows
    masks = condition_masks(data)
    labels = store.answer_group_labels(int(study["id"]))
    for dim in (by if by is not None else AUTO_BREAKDOWNS):
        group_of, order = answer_groups(data, labels, dim)
        present = {cid: set(group_of[sel]) for cid, sel in masks.items()}
        per_condition = {cid: [g for g in order if g in present[cid]] for cid in masks}
        if by is None and max(map(len, per_condition.values()), default=0) < 2:
            continue  # one group per condition: the condition rows say it all
        for c in data.conditions:
            for g in per_condition[c["id"]]:
                sel = masks[c["id"]] & (group_of == g)
                for col in columns:
                    cell, mean, low, high = estimate(col.values[sel], c["name"], dim, g, col.judge, col.metric)
                    rows.append(dict(zip(BREAKDOWN_KEYS, (
                        study["name"], dim, c["name"], g, col.judge, col.judge_name, col.metric, finite_or_none(mean),
                        finite_or_none(low), finite_or_none(high), int(cell.values.size),
                        int(col.missing[sel].sum()), col.aggregate,
                        None if col.ties is None else int(col.ties[sel].sum())), strict=True)))
    return rows


def study_breakdowns(store: Any, study_name: str, by: tuple[str, ...], opts: SummaryOptions | None = None
                     ) -> list[dict]:
    """Only the breakdown rows of one study (what the Results screen asks for on request):
    no agreement, no comparisons."""
    opts = opts or SummaryOptions()
    study = store.find_study(study_name)
    if study is None:
        raise ValueError(f"no study named {study_name!r} in {store.path}")
    spec = json.loads(study.get("spec_json") or "{}")
    data = load_study_data(store, int(study["id"]))
    return _breakdowns(store, study, data, aggregated_columns(store, study, data, panel_aggregate(spec, opts)[0]),
                       by, _Estimator(_study_seed(spec, opts), study["name"], opts))


def _score_row(*vals: Any) -> dict[str, Any]:
    row = dict(zip(SCORE_KEYS, vals, strict=True))
    for k in ("mean", "ci_low", "ci_high"):
        row[k] = finite_or_none(row[k])
    return row


def _agreement(out: dict[str, list], data: _StudyData, res: dict[tuple, tuple], study: str) -> None:
    """Agreement and κ rows of one study from its α results (``stratified_alphas``)."""
    names = {c["id"]: c["name"] for c in data.conditions}
    for metric in data.matrices:
        for level in ALPHA_LEVELS:
            per = []
            for cid in [c["id"] for c in data.conditions] + ["all"]:
                alpha, low, high, n_items = res.get((metric, level, cid), (math.nan,) * 3 + (0,))
                row = {"study": study, "campaign": None, "condition": names.get(cid, "all"), "metric": metric,
                       "raters": "judges",
                       "level": level, "alpha": finite_or_none(alpha), "ci_low": finite_or_none(low),
                       "ci_high": finite_or_none(high),
                       "n_items": int(n_items)}
                out["agreement"].append(row)
                if cid != "all":
                    per.append(row)
            # the unweighted mean of the per-condition alphas, as studies often report it; it is
            # not itself an alpha, so it has no CI ("all" is the alpha over every item)
            alphas = [r["alpha"] for r in per if r["alpha"] is not None]
            out["agreement"].append({"study": study, "campaign": None, "condition": "mean", "metric": metric,
                                     "raters": "judges",
                                     "level": level, "alpha": float(np.mean(alphas)) if alphas else None,
                                     "ci_low": None, "ci_high": None, "n_items": sum(r["n_items"] for r in per)})
    for metric, m in data.matrices.items():
        valid = m[~np.isnan(m)]
        if valid.size and np.all(valid == np.round(valid)):  # κ needs categories: integer scales only
            for (i, j), (kappa, n) in pairwise_kappas(m, "quadratic").items():
                out["kappa"].append({"study": study, "campaign": None, "metric": metric,
                                     "a": judge_keys(data.judges)[i], "b": judge_keys(data.judges)[j],
                                     "weights": "quadratic", "kappa": finite_or_none(kappa), "n": n})


def _comparisons(out: dict[str, list], data: _StudyData, cells: dict[tuple, _Cell], study: str,
                 opts: SummaryOptions) -> None:
    refs = [c for c in data.conditions if c.get("role") in REFERENCE_ROLES]
    if refs:
        pairs = [(a, b) for a in data.conditions if a.get("role") not in REFERENCE_ROLES for b in refs]
    else:
        pairs = [(a, data.conditions[0]) for a in data.conditions[1:]]
    # scored metrics and the EM rate; coherence and refusal rates describe, they are not compared
    judges_metrics = sorted({(j, mt) for (_, j, mt) in cells if mt not in ("coherence_rate", "refusal_rate")})
    rows = []
    for a, b in pairs:
        for judge, metric in judges_metrics:
            ca, cb = cells[(a["id"], judge, metric)], cells[(b["id"], judge, metric)]
            va, vb = ca.values, cb.values
            if va.size and vb.size:
                # a cell with values has its counts and replicates
                assert ca.boot is not None and cb.boot is not None
                assert ca.counted is not None and cb.counted is not None
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = float(np.float64(va.mean()) / np.float64(vb.mean()))
                low, high = ratio_interval(ca.boot, cb.boot, opts.ci)
                _, p, rb = mann_whitney(va, vb, counted=(ca.counted, cb.counted))
            else:
                ratio = low = high = p = rb = math.nan
            rows.append({"study": study, "a": a["name"], "b": b["name"], "metric": metric, "judge": judge,
                         "ratio": finite_or_none(ratio), "ratio_ci_low": finite_or_none(low),
                         "ratio_ci_high": finite_or_none(high),
                         "p_value": finite_or_none(p), "p_adjusted": None, "effect_size": finite_or_none(rb),
                         "n_a": int(va.size), "n_b": int(vb.size)})
    for judge in {r["judge"] for r in rows}:  # one family per judge (the panel is the primary one)
        family = [r for r in rows if r["judge"] == judge and r["p_value"] is not None]
        if family:
            adjusted = adjust_pvalues([r["p_value"] for r in family], method=opts.correction)
            for r, p in zip(family, adjusted, strict=True):
                r["p_adjusted"] = float(p)
    out["comparisons"].extend(rows)


def build_summary(store: Any, opts: SummaryOptions | None = None, *,
                  keep_data: dict[int, _StudyData] | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """The summary of every study in the database (or of ``opts.study``).

    ``keep_data``, when given, receives each study's score arrays by study id, so a caller that
    also draws from them (figures) does not read the scores a second time. ``progress`` counts
    the studies and hears each one's phases (engine/runs/progress.py)."""
    opts = opts or SummaryOptions()
    progress = progress or Progress()
    studies = store.list_studies(limit=1_000_000).rows
    if opts.study is not None:
        studies = [s for s in studies if s["name"] == opts.study]
        if not studies:
            raise ValueError(f"no study named {opts.study!r} in {store.path}")
    report: dict[str, Any] = {"summary_version": 1, "database": str(store.path),
                              "options": asdict(opts), "studies": [],
                              "scores": [], "breakdowns": [], "agreement": [], "kappa": [], "comparisons": [],
                              "win_rates": [], "judging": []}
    progress.set_total(len(studies))
    for s in studies:
        study = store.get_study(int(s["id"]))
        how, source = panel_aggregate(json.loads(study.get("spec_json") or "{}"), opts)
        entry = {"name": study["name"], "origin": study["origin"], "hash": study["spec_hash"],
                 "em": study_em(store, study) or None, "answers": int(s["n_generations"]), "note": None,
                 "aggregate": how, "aggregate_from": source}
        report["studies"].append(entry)
        if not s["n_generations"]:  # registered, not run yet: the normal state, said in its place
            from engine.study.derived_study import derived_hint

            entry["note"] = NO_ANSWERS + derived_hint(store, study)
            progress.advance()
            continue
        part = summarise_study(store, study, opts, keep_data=keep_data, progress=progress)
        for key, rows in part.items():
            report[key].extend(rows)
        progress.advance()
    return report
