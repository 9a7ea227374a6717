"""Queueing jobs and reading them back, for the command line, the TUI and notebooks.

The queue itself (claiming, leases, attempts, dependencies) is in db/jobs.py; this adds what
the store does not know: which kinds exist, the default attempt limit, and a job as plain JSON
(payload, result and metrics parsed; dependencies as a list).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from engine.runs.config import run_settings
from engine.runs.kinds import check_kind

JSON_FIELDS = ("payload", "result", "metrics", "resources")


def enqueue(store: Any, kind: str, payload: Mapping[str, Any] | None = None, *, after: Sequence[int] = (),
            gpu: int = 0, priority: int = 0, max_attempts: int | None = None, total: int | None = None,
            study_hash: str | None = None) -> int:
    """Queue a job of a known kind; it runs after every job in ``after`` is done, on a worker with
    ``gpu`` GPUs or more. Returns its id."""
    check_kind(kind)
    attempts = run_settings().job_max_attempts if max_attempts is None else max_attempts
    return int(store.enqueue_job(kind, dict(payload or {}), depends_on=list(after), resources={"gpu": gpu},
                                 priority=priority, max_attempts=attempts, progress_total=total,
                                 study_hash=study_hash))


def job_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A job row as JSON: stored JSON parsed, ``depends_on`` a list of ids."""
    out = dict(row)
    for key in JSON_FIELDS:
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    deps = out.get("depends_on")
    out["depends_on"] = [int(d) for d in str(deps).split(",")] if deps else []
    if "stale" in out:
        out["stale"] = bool(out["stale"])
    return out


def job_report(store: Any, job_id: int, *, lines: int = 40) -> dict[str, Any] | None:
    """Everything about one job: the job, its history (claims, notes, interruptions, the outcome)
    and the tail of its log. None when there is no such job."""
    from engine.runs.worker import log_tail

    row = store.get_job(job_id)
    if row is None:
        return None
    job = job_view(row)
    tail = log_tail(job.get("log_path"), lines)
    return {"job": job, "events": store.job_events(job_id), "log_tail": tail.splitlines() if tail else []}


def not_queued_because(store: Any, kind: str, payload: Mapping[str, Any], *, dry_run: bool, again: bool) -> str | None:
    """Why a run of ``kind`` with this payload is not queued now — a dry run, or the same run already queued or
    running (unless ``again``) — or None: queue it."""
    same = store.active_jobs_like(kind, dict(payload))
    if dry_run:
        return "a dry run" + (f" (job {same[-1]} is this run, already queued or running)" if same else "")
    if same and not again:
        return f"job {same[-1]} is this run, already queued or running"
    return None
