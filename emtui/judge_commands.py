"""``emtui judge``: queue judging of a study's answers (engine/judging/queueing.py)."""

from __future__ import annotations

import argparse
import sys

from emtui.cli import UsageError
from emtui.streams import say, start_worker_for


def judge(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from engine.common.text import strip_control
    from engine.judging.queueing import JudgeQueueError, queue_judging

    with _store(args, create=False) as store:
        try:
            queued = queue_judging(store, study=args.study, judges=args.judge, rubric=args.rubric,
                                   budget_usd=args.budget, dry_run=args.dry_run, again=args.again)
        except JudgeQueueError as exc:
            raise UsageError(f"emtui judge: {strip_control(str(exc))}") from None
        for warning in queued.warnings:
            print(f"emtui judge: warning: {strip_control(warning)}", file=sys.stderr)
        spec = queued.spec
        assert spec is not None
        names = ", ".join(str((store.get_judge(j) or {}).get("name")) for j in spec.judges)
        budget = f"; budget ${spec.budget_usd:,.2f}" if spec.budget_usd is not None else ""
        spent = f"; spent so far ${queued.spent_usd:,.4f}" if queued.spent_usd else ""
        if args.dry_run or queued.job_id is None:
            say(f"{'would make' if args.dry_run else 'not queued:'} {queued.calls:,} calls by {names}"
                f"{budget}{spent} ({queued.skipped})")
            return 0
        say(f"queued job {queued.job_id}: {queued.calls:,} calls by {names}{budget}{spent}")
        start_worker_for(store, args.no_worker, "emtui jobs or the Judges screen")
    return 0
