"""``emtui settings`` (every setting, its value and where it came from) and ``emtui doctor`` (what this
machine — or a worker's — can do). The settings themselves live in :mod:`engine.settings`, the checks
in :mod:`engine.runs.doctor`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from emtui.cli import UsageError
from emtui.streams import say
from engine.settings import Settings, load_settings

WORKER_TIMEOUT_S = 300.0  # --worker: a worker polls every few seconds, and the check takes seconds to minutes
WAIT_POLL_S = 0.5
FINISHED = ("done", "failed", "cancelled")


def settings_of(args: argparse.Namespace) -> Settings:
    """The command's settings: what ``emtui.cli.main`` loaded, else (a command called from Python) read now."""
    settings = getattr(args, "settings", None)
    return settings if isinstance(settings, Settings) else load_settings()


# -- emtui settings ----------------------------------------------------------------------------------


def settings(args: argparse.Namespace) -> int:
    from engine.settings import markdown_table, rows

    current = settings_of(args)
    config = Path(current.config_file)
    if args.format == "markdown":
        say(markdown_table())
        return 0
    if args.format == "json":
        doc = {"config_file": str(config), "config_file_exists": config.is_file(), "settings": list(rows(current))}
        say(json.dumps(doc, indent=2))
        return 0
    say(f"# config file: {config}{'' if config.is_file() else ' (absent: defaults)'}")
    say(f"{'setting':24} {'from':8} value")
    for row in rows(current):
        say(f"{row['name']:24} {row['source']:8} {_value(row['value'], row['unit'])}")
    say("# $EMTUI_<NAME> sets NAME too (over the file); the README says what each does")
    return 0


def _value(value: Any, unit: str = "") -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        return str(value)
    return f"{text} {unit}" if unit else text


# -- emtui doctor ------------------------------------------------------------------------------------


def doctor(args: argparse.Namespace) -> int:
    from engine.runs.doctor import DoctorError, report

    current = settings_of(args)
    if args.timeout is not None and not args.worker:
        raise UsageError("emtui doctor: --timeout goes with --worker (how long to wait for a worker's report)")
    if args.worker:
        result = on_worker(args, args.timeout if args.timeout is not None else WORKER_TIMEOUT_S)
    else:
        try:
            result = report(args.db, timeout_s=current.doctor_timeout_s)
        except DoctorError as exc:
            raise UsageError(f"emtui doctor: {exc}") from None
    if args.format == "json":
        from engine.common.text import json_safe

        say(json_safe(json.dumps(result, indent=2)))
    else:
        from emtui.doctor_view import doctor_table

        for line in doctor_table(result):
            say(line)
    return 0


def on_worker(args: argparse.Namespace, timeout_s: float) -> dict[str, Any]:
    """Queue a ``doctor`` job and wait for a worker's report (the job's JSON result). A job no worker
    finished in time is cancelled, so no worker runs it later for nobody."""
    from db import open_store
    from engine.common.safe_load import LoadError, json_loads

    where = "emtui doctor --worker"
    db = Path(args.db).expanduser()
    with open_store(db, create=False, busy_timeout_s=settings_of(args).busy_timeout_s) as store:
        from engine.runs.builtin_kinds import DOCTOR_KIND

        job_id = store.enqueue_job(DOCTOR_KIND, {"db": str(db.absolute())}, priority=10)
        print(f"{where}: queued job {job_id}; waiting up to {timeout_s:g} s for a worker "
              f"(emtui --db {args.db} worker --detach starts one)", file=sys.stderr, flush=True)
        job: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                job = store.get_job(job_id)
                if job is None or job["status"] in FINISHED or time.monotonic() >= deadline:
                    break
                time.sleep(WAIT_POLL_S)
        finally:  # a timeout, Ctrl+C or SIGTERM: nobody waits for this job any more
            if job is None or job["status"] not in FINISHED:
                store.cancel_job(job_id)
    if job is None:
        raise UsageError(f"{where}: job {job_id} is gone from {args.db}")
    if job["status"] == "queued":
        raise UsageError(f"{where}: no worker took job {job_id} within {timeout_s:g} s, so it was cancelled; "
                         f"start one (emtui --db {args.db} worker --detach) or wait longer (--timeout S)")
    if job["status"] == "running":
        raise UsageError(f"{where}: worker {job.get('lease_owner')} took job {job_id} but gave no report within "
                         f"{timeout_s:g} s, so it was cancelled; wait longer (--timeout S)")
    if job["status"] != "done":
        raise UsageError(f"{where}: job {job_id} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
    result = job.get("result")
    if isinstance(result, str):
        try:
            result = json_loads(result)
        except LoadError as exc:
            raise UsageError(f"{where}: job {job_id}'s result is not a report ({exc})") from None
    if not isinstance(result, dict) or "schema" not in result:
        raise UsageError(f"{where}: job {job_id} is done but left no report (a worker of an emtui whose jobs "
                         f"keep no results?)")
    return result
