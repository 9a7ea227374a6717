"""``emtui run`` (a study's whole chain, engine/runs/study_chain.py) and ``emtui status`` (where it stands,
engine/results/study_status.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emtui.cli import UsageError
from emtui.streams import say, start_worker_for

FOLLOW = "emtui status {study}, or emtui (the Studies, Train, Eval queue, Judges and Results screens)"


def add_parsers(cmd: Any) -> None:
    """``run`` and ``status`` in the parser (``cmd(name, help)`` makes a subcommand)."""
    sp = cmd("run", "run a whole study: register it if new, queue its chain (train, generate, judge, summary) as "
                    "dependent jobs, start a worker")
    sp.add_argument("study_file", nargs="?", metavar="STUDY.toml",
                    help="the study file (registered unless the same file is; builtin:insecure-code for the example)")
    sp.add_argument("--study", metavar="NAME", help="a registered study, by name (instead of a file)")
    sp.add_argument("--model", metavar="PATH", help="run the same study on this base model (a local folder or a hub "
                    "id): registers a derived study NAME--MODEL whose models name it; the study itself never changes")
    sp.add_argument("--checkpoints", action="store_true",
                    help="also answer with every checkpoint of each training run (curves over steps)")
    sp.add_argument("--dry-run", action="store_true", help="say what would be queued; write nothing")
    sp.add_argument("--no-worker", action="store_true", help="do not start a worker (default: start a detached "
                                                             "one when none is alive)")
    sp = cmd("status", "where a study stands: per condition trained / answers / judgments / failures, its jobs, "
                       "what judging cost")
    sp.add_argument("study", help="the study's name")
    sp.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from engine.common.text import strip_control
    from engine.runs.study_chain import ChainError, queue_study

    if (args.study_file is None) == (args.study is None):
        raise UsageError("emtui run: give a study file or --study NAME (one of them)")
    source: str | Path = args.study
    if args.study_file is not None:
        source = args.study_file if args.study_file.startswith("builtin:") else Path(args.study_file)
        if not str(source).startswith("builtin:"):
            from engine.study.study_file import load_study

            load_study(source)  # a bad file is said before the database is opened
    with _store(args, create=args.study is None) as store:
        try:
            plan = queue_study(store, source, model=args.model, checkpoints=args.checkpoints,
                               dry_run=args.dry_run)
        except ChainError as exc:
            raise UsageError(f"emtui run: {strip_control(str(exc))}") from None
        for warning in dict.fromkeys(plan.warnings):
            print(f"emtui run: warning: {strip_control(warning)}", file=sys.stderr)
        for line in plan_lines(plan, args.db):
            say(line)
        pending = plan.queued_jobs() or any(getattr(plan, s).waiting for s in plan.STAGES)
        if pending and not args.dry_run:  # queued now or before: a worker must be there to run it
            start_worker_for(store, args.no_worker, FOLLOW.format(study=plan.study))
        elif not args.dry_run:
            say(f"watch it: {FOLLOW.format(study=plan.study)}")
    return 0


def plan_lines(plan: Any, db: str) -> list[str]:
    """What ``emtui run`` says it queued (or would), one stage a line."""
    from engine.common.text import flat

    would = "would queue" if plan.dry_run else "queued"
    out = [f"{'would register' if plan.dry_run else 'registered'} study {flat(n)!r} in {db}" for n in plan.registered]
    if plan.derived_from:
        out.append(f"study {flat(plan.study)!r} is {flat(plan.derived_from)!r} on base model {flat(plan.base_model)}")
    if not plan.queued_jobs():
        out.append(f"nothing to queue for study {flat(plan.study)!r}: every stage is done or already queued")
    else:
        out.append(f"{would} the chain of study {flat(plan.study)!r} (hash {plan.study_hash[7:19]}):")
    details = {"adapters": f"run(s) {', '.join(map(str, plan.adapter_runs))}: a judge's trained adapter (the judge "
                           "stage waits for it)",
               "train": f"run(s) {', '.join(map(str, plan.train_runs))}" if plan.train_runs else "",
               "generate": f"{plan.answers:,} answers (stored ones are skipped)",
               "judge": (f"{plan.judge_calls:,} calls now, and " if plan.judge_calls else "")
               + "the panel on every answer as it comes",
               "summary": "the study's summary, stored with the job"}
    for name in plan.STAGES:
        stage = getattr(plan, name)
        if stage.queued:
            out.append(f"  {name:9} job {', '.join(map(str, stage.queued))}: {details[name]}")
        elif stage.waiting:
            out.append(f"  {name:9} job {', '.join(map(str, stage.waiting))} (queued or running already)")
        elif stage.skipped:
            out.append(f"  {name:9} nothing to do: {flat(stage.skipped)}")
    return out


def status(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from engine.results.study_status import StatusError, study_status

    with _store(args, create=False, readonly=True) as store:
        try:
            report = study_status(store, args.study)
        except StatusError as exc:
            raise UsageError(f"emtui status: {exc}") from None
    if args.format == "json":
        sys.stdout.write(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        return 0
    for line in status_lines(report):
        say(line)
    return 0


def _trained(t: dict[str, Any] | None) -> str:
    if t is None:
        return "base model"
    if t["run_id"] is None:
        return "not queued"
    steps = f", {t['steps'] or 0}/{t['max_steps']} steps" if t["max_steps"] else ""
    remote = t.get("remote")
    if remote:  # trained on another box: say where, and whether this box can answer with it
        where = f"; on box {remote['host'] or 'unknown'} (merged from {remote['database']})"
        steps += where + ("" if remote["model_here"] else ": its model is not on this box")
    return f"run {t['run_id']} {t['status']}{steps}"


def condition_rows(report: dict[str, Any]) -> list[list[str]]:
    """Condition, role, trained, answers, judgments per judge, failed (with the commonest reason)."""
    rows = []
    for c in report["conditions"]:
        judged = " · ".join(f"{j} {v['done']}/{v['planned']}" for j, v in c["judgments"].items()) or "no judge"
        f = c["failed"]
        failed = f"{f['n']}" + (f" ({f['reason_n']}× {f['reason']})" if f["reason"] else "")
        rows.append([c["name"], c["role"] or "", _trained(c["trained"]),
                     f"{c['answers']['done']}/{c['answers']['planned']}", judged, failed])
    return rows


def status_lines(report: dict[str, Any]) -> list[str]:
    from emtui.streams import plain_table

    cost = report["cost"]
    out = [f"study {report['study']!r} (hash {report['hash'][7:19]}): chain {report['state']}; judging cost "
           f"${cost['usd']:,.4f} ({cost['sent']:,} calls sent, {cost['tokens']:,} tokens)"]
    out.append(plain_table(["condition", "role", "trained", "answers", "judgments (per judge)", "failed"],
                           condition_rows(report)))
    if report["jobs"]:
        out.append("jobs:")
        for j in report["jobs"]:
            after = f" after {', '.join(map(str, j['depends_on']))}" if j["depends_on"] else ""
            err = f": {j['error']}" if j["error"] else ""
            out.append(f"  {j['id']:>5}  {j['kind']:9} {j['status']:9} attempt {j['attempts']}{after}{err}")
    elif report["derived"]:  # the user ran it with --model: that run is a study of its own
        out.append("no jobs of its own: it ran on another base model as "
                   + ", ".join(f"study {d!r} (emtui status {d})" for d in report["derived"]))
    else:
        out.append(f"no jobs yet: emtui run --study {report['study']}")
    if report["jobs"] and report["derived"]:
        out.append("also run on other base models: " + ", ".join(f"study {d!r}" for d in report["derived"]))
    if report["summary_job"] is not None:
        out.append(f"summary: job {report['summary_job']} (emtui summary --study {report['study']})")
    return out
