"""``emtui train``: queue fine-tuning runs of a study's conditions (engine/training/queueing.py), or
resume one; a detached worker is started when none is alive, so the run starts at once and survives
a dropped SSH session."""

from __future__ import annotations

import argparse
import sys

from emtui.cli import UsageError
from emtui.streams import say, start_worker_for


def train(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from engine.common.text import strip_control
    from engine.training.queueing import QueueError, queue_runs, requeue_run
    from engine.training.recipes import RecipeError, parse_override

    if (args.study is None) == (args.resume is None):
        raise UsageError("emtui train: give --study NAME (queue its conditions) or --resume RUN")
    try:
        overrides = dict(parse_override(s) for s in args.set or [])
    except RecipeError as exc:
        raise UsageError(f"emtui train: {exc}") from None
    with _store(args, create=False) as store:
        try:
            if args.resume is not None:
                if overrides or args.condition or args.again:
                    raise UsageError("emtui train --resume RUN takes no --set, --condition or --again "
                                     "(a resumed run keeps its recipe)")
                job = requeue_run(store, args.resume)
                say(f"run {args.resume}: queued again as job {job}; it continues from its newest complete checkpoint")
            else:
                queued = queue_runs(store, study=args.study, condition=args.condition, overrides=overrides,
                                    again=args.again)
                for why in queued.skipped:
                    say(f"skipped {strip_control(why)} (--again queues it anyway)")
                for warning in queued.warnings:
                    print(f"emtui train: warning: {strip_control(warning)}", file=sys.stderr)
                for run_id in queued.runs:
                    run = store.get_train_run(run_id)
                    say(f"queued run {run_id}: {strip_control(run['condition'])} "
                        f"(job {run['job_id']}, recipe {run['recipe_hash'][7:19]})")
                if not queued.runs:
                    return 0
        except (QueueError, RecipeError) as exc:
            raise UsageError(f"emtui train: {strip_control(str(exc))}") from None
        start_worker_for(store, args.no_worker, "emtui runs or the Train screen")
    return 0
