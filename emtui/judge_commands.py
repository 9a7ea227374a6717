"""``emtui judge``: queue judging of a study's answers (engine/judging/queueing.py); ``--batch``: through Bedrock
batch inference (engine/judging/bedrock_batch.py)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from emtui.cli import UsageError
from emtui.streams import say, start_worker_for


def judge(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from engine.common.text import strip_control
    from engine.judging.queueing import JudgeQueueError, queue_judging

    batch = _batch_settings(args)
    with _store(args, create=False) as store:
        try:
            queued = queue_judging(store, study=args.study, judges=args.judge, rubric=args.rubric,
                                   budget_usd=args.budget, dry_run=args.dry_run, again=args.again, batch=batch)
        except JudgeQueueError as exc:
            raise UsageError(f"emtui judge: {strip_control(str(exc))}") from None
        for warning in queued.warnings:
            print(f"emtui judge: warning: {strip_control(warning)}", file=sys.stderr)
        spec = queued.spec
        assert spec is not None
        names = ", ".join(strip_control(str((store.get_judge(j) or {}).get("name"))) for j in spec.judges)
        if batch is not None:
            return _batch_said(args, store, queued)
        budget = f"; budget ${spec.budget_usd:,.2f}" if spec.budget_usd is not None else ""
        spent = f"; spent so far ${queued.spent_usd:,.4f}" if queued.spent_usd else ""
        if args.dry_run or queued.job_id is None:
            say(f"{'would make' if args.dry_run else 'not queued:'} {queued.calls:,} calls by {names}"
                f"{budget}{spent} ({queued.skipped})")
            return 0
        say(f"queued job {queued.job_id}: {queued.calls:,} calls by {names}{budget}{spent}")
        start_worker_for(store, args.no_worker, "emtui jobs or the Judges screen")
    return 0


def _batch_settings(args: argparse.Namespace) -> Any:
    if not args.batch:
        given = [flag for flag, value in (("--s3", args.s3), ("--role-arn", args.role_arn)) if value]
        if given:
            raise UsageError(f"emtui judge: {given[0]} is for --batch (Bedrock batch inference)")
        return None
    from engine.judging.bedrock_batch import BatchSettings

    if not args.s3:
        raise UsageError("emtui judge: --batch needs --s3 s3://BUCKET/PREFIX: where the batch jobs' input and output "
                         "go")
    return BatchSettings(s3_uri=args.s3, role_arn=args.role_arn or "")


def _batch_said(args: argparse.Namespace, store: Any, queued: Any) -> int:
    """What a batch run would send (per judge: records, estimated cost), or that it is queued."""
    from engine.common.text import strip_control
    from engine.judging.bedrock_batch import estimate_batches

    spec = queued.spec
    per_judge = ", ".join(f"{strip_control(name)} {n:,}" for name, n in queued.per_judge.items())
    if args.dry_run:
        estimates = estimate_batches(store, spec)
        known = [e.usd for e in estimates.values() if e.usd is not None]
        unpriced = [strip_control(str((store.get_judge(j) or {}).get("name"))) for j, e in estimates.items()
                    if e.usd is None and e.records]
        cost = (f"estimated batch cost at most ${sum(known):,.4f} (inputs at ~4 characters a token, every output "
                "at its max_tokens)" if known else "no estimated cost")
        if unpriced:
            cost += f"; no price for {', '.join(unpriced)}"
        say(f"would send {queued.calls:,} records to Bedrock batch inference ({per_judge}); {cost}"
            f" ({queued.skipped})")
        return 0
    if queued.job_id is None:
        say(f"not queued: {queued.calls:,} records ({per_judge}) ({queued.skipped})")
        return 0
    say(f"queued job {queued.job_id} (judge-batch): {queued.calls:,} records ({per_judge}) to Bedrock batch "
        f"inference under {strip_control(str(args.s3))}")
    start_worker_for(store, args.no_worker, "emtui jobs or the Judges screen")
    return 0
