"""What a job's handler gets, and the rules it keeps.

A handler is ``def handler(ctx: JobContext) -> result`` or ``async def handler(ctx)``; the
result (anything JSON can hold, or None) is stored with the job. It runs in a process of its
own, started by the worker for this job alone, so it may load a model, use all of a GPU, or
crash, without touching the worker or the next job.

- Report through ``ctx.progress`` (engine/runs/progress.py): ``set_total``, ``advance``,
  ``note``, ``metrics``; check ``ctx.progress.cancelled()`` (or call ``check()``) between units
  of work and return (or let :class:`JobCancelled` rise) when it is true. A handler that never
  checks is stopped with SIGTERM (raised in it as :class:`JobCancelled`) after the grace period,
  then killed.
- Be idempotent per row: a job whose worker died runs again from the start (generations and
  judgments have unique keys, so a rerun neither loses nor duplicates rows).
- Write through ``ctx.store`` (thread-safe). In an ``async`` handler, never call the store on
  the event loop: ``await ctx.write(ctx.store.insert_judgments, rows)`` runs the write in a
  thread, so hundreds of concurrent API calls are not held up by the database.
- Raise to fail: the job fails with the exception's one-line message and its full traceback.
  What the handler prints goes to the job's log (``ctx.log_path``; ``emtui jobs log ID``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from engine.runs.progress import JobCancelled, Progress

T = TypeVar("T")

__all__ = ["JobCancelled", "JobContext"]


@dataclass
class JobContext:
    job: dict[str, Any]       # the job's row as it was claimed
    store: Any                # db.Store, on the job's database
    progress: Progress
    db_path: Path

    @property
    def job_id(self) -> int:
        return int(self.job["id"])

    @property
    def kind(self) -> str:
        return str(self.job["kind"])

    @property
    def payload(self) -> dict[str, Any]:
        return dict(json.loads(self.job["payload"] or "{}"))

    @property
    def attempt(self) -> int:
        """1 on the first run, 2 when a worker died during the first, ..."""
        return int(self.job["attempts"])

    @property
    def log_path(self) -> Path | None:
        return Path(self.job["log_path"]) if self.job.get("log_path") else None

    def work_dir(self) -> Path:
        """A folder of this job's own next to the database (made on first use): for its outputs."""
        from engine.runs.paths import job_dir

        folder = job_dir(self.db_path, self.job_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    async def write(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run a (database) write in a thread, so the event loop goes on."""
        return await asyncio.to_thread(fn, *args, **kwargs)
