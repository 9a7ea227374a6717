"""``emtui demo [--db PATH] [--no-tui]``: the offline demo behind ``make run``.

Builds the tiny model next to the database when it is missing, registers the demo studies shipped in
data/studies (``demo`` and its judge adapter's ``demo-judge``), queues the demo's chain as ``emtui run`` does
(:func:`engine.runs.demo_chain.queue_demo`: only what is missing), starts a detached worker when work is
waiting and none is alive, and opens the TUI (3 shows the Train screen). Run again, it queues nothing and
reopens the TUI on the demo as it stands (running or done). Its database is ``demo.db`` in the current folder
unless ``--db`` says otherwise: never the research database a person opens with plain ``emtui``.
"""

from __future__ import annotations

import argparse
import sys

from emtui.cli import UsageError
from emtui.streams import say

DEMO_DB = "demo.db"


def demo(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from emtui.study_run_commands import plan_lines
    from engine.common.text import strip_control
    from engine.models.locate import ensure_tiny, tiny_folder
    from engine.runs.demo_chain import OtherDemo, queue_demo
    from engine.runs.study_chain import ChainError

    with _store(args) as store:
        try:
            plan = queue_demo(store)
        except (ChainError, OtherDemo) as exc:
            raise UsageError(f"emtui demo: {strip_control(str(exc))}") from None
        if not (tiny_folder(store.path) / "model.safetensors").exists():  # built once the chain is queued
            say(f"building the tiny random model in {ensure_tiny(store.path)}")
        for warning in dict.fromkeys(plan.warnings):
            print(f"emtui demo: warning: {strip_control(warning)}", file=sys.stderr)
        for line in plan_lines(plan, args.db):
            say(line)
        if not plan.queued_jobs():
            say(f"to start the demo again: delete {args.db} and its {args.db}.runs folder")
        if _pending(store):
            from emtui.streams import start_worker_for

            start_worker_for(store, args.no_worker, f"the TUI (emtui --db {args.db}) or emtui jobs")
    if args.no_tui:
        return 0
    return _open_tui(args)


def _pending(store) -> bool:
    counts = store.job_status_counts()
    return bool(counts.get("queued") or counts.get("running"))


def _open_tui(args: argparse.Namespace) -> int:
    from emtui.commands import open_tui

    return open_tui(args)
