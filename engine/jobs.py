"""The job runner behind ``emtui worker``: claims queued jobs from the database and runs them.

Jobs live in the ``jobs`` table, so they outlive the process that queued them and
the terminal that started the worker. A worker holds a lease on its job and renews
it as it reports progress; a job whose worker died is reclaimed once the lease
expires. Handlers must be idempotent per row (generations and judgments have
unique keys), so a resumed job neither loses nor duplicates rows.

Handlers register by kind; the training, generation and judging engines add theirs.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.text import one_line

LEASE_S = 120.0


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled or its lease taken by another worker."""


@dataclass
class JobContext:
    store: Any
    job: dict[str, Any]
    owner: str

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.job["payload"] or "{}")

    def progress(self, done: int) -> None:
        """Report progress and renew the lease; raises JobCancelled if the job is no longer ours."""
        if not self.store.renew_lease(self.job["id"], self.owner, lease_s=LEASE_S, progress_done=done):
            raise JobCancelled(self.job["id"])


Handler = Callable[[JobContext], None]
_HANDLERS: dict[str, Handler] = {}


def register(kind: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        _HANDLERS[kind] = fn
        return fn
    return deco


def handlers() -> dict[str, Handler]:
    return dict(_HANDLERS)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_one(store: Any, owner: str, kinds: list[str] | None = None) -> dict[str, Any] | None:
    """Claim and run one job; returns the job row as it ended, or None when nothing was queued."""
    table = handlers()
    job = store.claim_job(owner, kinds=kinds or sorted(table), lease_s=LEASE_S)
    if job is None:
        return None
    ctx = JobContext(store, job, owner)
    try:
        table[job["kind"]](ctx)
    except JobCancelled:
        pass  # cancelled or reclaimed: whoever owns it now records the outcome
    except Exception as exc:  # a failed job is recorded, not raised: the worker goes on
        store.finish_job(job["id"], owner=owner, error=one_line(f"{type(exc).__name__}: {exc}", 1000))
    else:
        store.finish_job(job["id"], owner=owner)
    return store.get_job(job["id"])


def run_worker(store: Any, *, owner: str | None = None, once: bool = False, poll_s: float = 2.0,
               stop: threading.Event | None = None,
               on_job: Callable[[dict[str, Any]], None] | None = None) -> int:
    """Run jobs until ``stop`` is set (or, with ``once``, until the queue is empty). Returns jobs run."""
    owner = owner or worker_name()
    stop = stop or threading.Event()
    ran = 0
    while not stop.is_set():
        job = run_one(store, owner)
        if job is None:
            if once:
                break
            stop.wait(poll_s)
            continue
        ran += 1
        if on_job:
            on_job(job)
    return ran
