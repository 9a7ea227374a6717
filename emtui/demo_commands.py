"""``emtui demo [--db PATH] [--no-tui]``: the offline demo behind ``make run``.

Builds the tiny model next to the database when it is missing, registers the demo studies shipped in
data/studies (``demo`` and its judge adapter's ``demo-judge``), queues the whole chain once
(:func:`engine.runs.demo_chain.queue_demo_chain`), starts a detached worker when work is waiting and none
is alive, and opens the TUI (3 shows the Train screen). Run again, it queues nothing and reopens the TUI on the
demo as it stands (running or done). Its database is ``demo.db`` in the current folder unless ``--db``
says otherwise: never the research database a person opens with plain ``emtui``.
"""

from __future__ import annotations

import argparse
import sys

from emtui.cli import UsageError
from emtui.streams import say

DEMO_DB = "demo.db"


def demo(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from engine.common.text import strip_control
    from engine.generation.queueing import GenerateQueueError
    from engine.judging.queueing import JudgeQueueError
    from engine.models.locate import ensure_tiny, tiny_folder
    from engine.runs.demo_chain import OtherDemo
    from engine.training.queueing import QueueError

    with _store(args) as store:
        try:
            chain = _queue(store)
        except (QueueError, GenerateQueueError, JudgeQueueError, OtherDemo) as exc:
            raise UsageError(f"emtui demo: {strip_control(str(exc))}") from None
        if not (tiny_folder(store.path) / "model.safetensors").exists():  # built once the chain is queued
            say(f"building the tiny random model in {ensure_tiny(store.path)}")
        for name in chain.registered:
            say(f"registered study {name!r} (data/studies)")
        for warning in chain.warnings:
            print(f"emtui demo: warning: {strip_control(warning)}", file=sys.stderr)
        if chain.already:
            say(f"the demo is queued already in {args.db}: nothing new queued (delete {args.db} and its "
                f"{args.db}.runs folder to start it again)")
        else:
            say(f"queued the demo chain: jobs {', '.join(map(str, chain.jobs))} (adapter judge training, "
                "2 fine-tunes, answers, judging)")
        if _pending(store):
            from emtui.streams import start_worker_for

            start_worker_for(store, args.no_worker, f"the TUI (emtui --db {args.db}) or emtui jobs")
    if args.no_tui:
        return 0
    return _open_tui(args)


def _queue(store):
    # until `emtui run` (engine.runs.study_chain.queue_study) is merged, the demo queues its own chain
    from engine.runs.demo_chain import queue_demo_chain

    return queue_demo_chain(store)


def _pending(store) -> bool:
    counts = store.job_status_counts()
    return bool(counts.get("queued") or counts.get("running"))


def _open_tui(args: argparse.Namespace) -> int:
    from emtui.commands import open_tui

    return open_tui(args)
