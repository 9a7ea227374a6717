"""Queueing a study's judging as a ``judge`` job: what ``emtui judge`` calls (and a generation run that names
judges to run afterwards). Checked whole first — the study, the judges (the study's panel by default), the
rubric (the study's by default), the budget — and counted: how many calls the panel would make now.

With ``batch`` settings it is a ``judge-batch`` job instead (engine/judging/bedrock_batch.py): Bedrock judges
only, each with no calls to make or at least the minimum a batch job takes (100), no budget (a batch job is
paid whole: its dry run says what it would cost)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.judging.panel import PanelSpec
from engine.runs.queue import not_queued_because

if TYPE_CHECKING:
    from engine.judging.bedrock_batch import BatchSettings


class JudgeQueueError(ValueError):
    """A judging run that cannot be queued (one line)."""


@dataclass
class QueuedJudging:
    job_id: int | None = None
    spec: PanelSpec | None = None
    calls: int = 0                     # calls the panel would make now (answers still to come not counted)
    spent_usd: float = 0.0             # what the study's judging has cost so far
    skipped: str | None = None
    warnings: list[str] = field(default_factory=list)
    kind: str = "judge"
    per_judge: dict[str, int] = field(default_factory=dict)   # judge name -> calls (records of a batch)


def _rubric(store: Any, study: dict[str, Any], name: str | None) -> dict[str, Any]:
    if name is None:
        spec = json.loads(study.get("spec_json") or "{}")
        digest = (spec.get("rubric") or {}).get("content_hash")
        found = store.find_rubric(content_hash=digest) if digest else None
        if found is None:
            raise JudgeQueueError(f"study {study['name']!r} names no rubric: give --rubric NAME (emtui list rubrics)")
        return dict(found)
    found = store.find_rubric(name=name)
    if found is None:
        rows = [r for r in store.list_rubrics() if str(r["content_hash"]).split(":")[-1].startswith(name)]
        found = rows[0] if len(rows) == 1 else None
    if found is None:
        raise JudgeQueueError(f"no rubric {name!r} (emtui list rubrics)")
    return dict(found)


def queue_judging(store: Any, *, study: str, judges: Sequence[str] | None = None, rubric: str | None = None,
                  budget_usd: float | None = None, after: Sequence[int] = (), dry_run: bool = False,
                  again: bool = False, max_attempts: int = 6, timeout_s: float = 120.0,
                  batch: BatchSettings | None = None) -> QueuedJudging:
    """One ``judge`` job over every answer of ``study`` its judges (all of the study's, or those named) have not
    judged on the rubric yet — answers written by jobs in ``after`` included: it runs once they are done.
    ``batch``: a ``judge-batch`` job through Bedrock batch inference instead (see the module's doc)."""
    from engine.judging.rubric_prompts import call_units, stored_rubric

    found = store.find_study(study)
    if found is None:
        raise JudgeQueueError(f"no study {study!r} (emtui list studies)")
    study_id = int(found["id"])
    panel = [dict(j) for j in store.study_judges(study_id)]
    if judges:
        by_name = {str(j["name"]): j for j in panel}
        missing = [n for n in judges if n not in by_name]
        if missing:
            raise JudgeQueueError(f"study {study!r} has no judge {missing[0]!r} (judges: "
                                  f"{', '.join(by_name) or 'none'})")
        panel = [by_name[n] for n in judges]
    panel = [j for j in panel if j["provider"] != "import"]
    if not panel:
        raise JudgeQueueError(f"study {study!r} has no judge that can be called (its judges are imported scores)")
    if budget_usd is not None and not (isinstance(budget_usd, (int, float)) and budget_usd > 0):
        raise JudgeQueueError(f"--budget must be a positive number of USD, not {budget_usd!r}")
    if batch is not None:
        batch = _batch_settings(batch, panel, budget_usd)
    row = _rubric(store, found, rubric)
    parsed = stored_rubric(row)
    units = call_units(parsed)
    if not units:
        raise JudgeQueueError(f"rubric {row['name']!r} has no prompt to send a judge")
    out = QueuedJudging(spent_usd=store.study_judging_spent(study_id), kind="judge" if batch is None else "judge-batch")
    if budget_usd is not None:
        from engine.judging.prices import price_of

        unpriced = [str(j["name"]) for j in panel if price_of(str(j["provider"]), str(j["model"])) is None]
        if unpriced:
            out.warnings.append(f"no price for {', '.join(unpriced)} in data/prices.toml: their calls do not count "
                                "against the budget")
    for region in sorted({str(json.loads(j.get("params") or "{}").get("region") or "")
                          for j in panel if j["provider"] == "bedrock"}):
        from engine.judging.bedrock import check_credentials  # boto3: only when a Bedrock judge is queued

        check = check_credentials(region or None)
        if not check.ok:  # a worker elsewhere may have credentials: say it, queue anyway
            out.warnings.append(f"Bedrock on this machine: {check.message} — a worker without them leaves the "
                                "Bedrock judges' answers unjudged (its job fails, saying so) until they are set; "
                                "no AWS account: a local judge (provider = \"local\", model = a folder)")
    for judge in panel:
        if judge["provider"] == "local" and json.loads(judge.get("params") or "{}").get("logprobs"):
            from engine.judging.local_judge import split_numbers_warning

            said = split_numbers_warning(store, judge, parsed)
            if said:
                out.warnings.append(said)
    if budget_usd is not None and out.spent_usd >= budget_usd:
        raise JudgeQueueError(f"study {study!r} has spent ${out.spent_usd:.2f} on judging already: a budget of "
                              f"${budget_usd:.2f} leaves nothing")
    spec = PanelSpec(study_id=study_id, study=str(found["name"]), study_hash=str(found["spec_hash"]),
                     judges=tuple(int(j["id"]) for j in panel), rubric_id=int(row["id"]), budget_usd=budget_usd,
                     max_attempts=max_attempts, timeout_s=timeout_s)
    out.spec = spec
    for judge in panel:
        n = sum(store.pending_judge_count(study_id, int(judge["id"]), int(row["id"]), unit or parsed.metrics[0].name)
                for unit in units)
        out.per_judge[str(judge["name"])] = n
        out.calls += n
        if batch is not None and 0 < n < batch.min_records:
            raise JudgeQueueError(f"judge {judge['name']!r} has {n} calls to make: a Bedrock batch job takes at least "
                                  f"{batch.min_records} records; judge them on demand (emtui judge without --batch)")
    payload = spec.as_payload()
    if batch is not None:
        payload["batch"] = batch.as_payload()
    out.skipped = not_queued_because(store, out.kind, payload, dry_run=dry_run, again=again)
    if out.skipped is not None:
        return out
    if out.calls == 0 and not after:
        out.warnings.append("every answer is judged already on this rubric by these judges: the job has "
                            "nothing to do")
    out.job_id = store.enqueue_job(out.kind, payload, study_hash=spec.study_hash, depends_on=list(after),
                                   resources={"gpu": 0})
    return out


def _batch_settings(batch: BatchSettings, panel: Sequence[dict[str, Any]], budget_usd: float | None) -> BatchSettings:
    from engine.judging.bedrock_batch import BatchError

    try:
        checked = batch.check()
    except BatchError as exc:
        raise JudgeQueueError(str(exc)) from None
    for judge in panel:
        if judge["provider"] != "bedrock":
            raise JudgeQueueError(f"judge {judge['name']!r} is {judge['provider']}: batch inference is Bedrock's "
                                  "(leave it out with --judge, or judge without --batch)")
        if json.loads(judge.get("params") or "{}").get("logprobs"):
            raise JudgeQueueError(f"judge {judge['name']!r} asks for logprobs, which Bedrock does not give")
    if budget_usd is not None:
        raise JudgeQueueError("--budget stops on-demand calls; a batch job is paid whole once submitted: see its "
                              "estimated cost with --dry-run instead")
    return checked
