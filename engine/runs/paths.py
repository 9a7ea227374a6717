"""Where the run layer keeps its files: one folder next to the database, ``<db>.runs/``.

- ``<slot>.pid`` and ``<slot>.log``: a detached worker's pidfile (locked while it lives) and its
  log (``worker``, ``worker-gpu0``, ``worker-gpu1``, ...);
- ``jobs/<id>.log``: what a job's process wrote, every attempt appended;
- ``jobs/<id>/``: a job's own folder for its outputs (made when a handler asks for it).
"""

from __future__ import annotations

import re
from pathlib import Path


def run_dir(db_path: str | Path) -> Path:
    db = Path(db_path).expanduser().resolve()
    return db.with_name(db.name + ".runs")


def job_log_dir(db_path: str | Path) -> Path:
    return run_dir(db_path) / "jobs"


def job_dir(db_path: str | Path, job_id: int) -> Path:
    return job_log_dir(db_path) / str(job_id)


def slot_name(gpus: str | None, kinds: list[str] | None) -> str:
    """``worker``, ``worker-gpu0``, ``worker-judge``: names a detached worker's pidfile and log."""
    name = "worker" + (f"-gpu{gpus.replace(',', '-')}" if gpus else "")
    if kinds:
        name += "-" + "+".join(sorted(kinds))
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name)[:120]


def pidfile(db_path: str | Path, slot: str) -> Path:
    return run_dir(db_path) / f"{slot}.pid"


def worker_log(db_path: str | Path, slot: str) -> Path:
    return run_dir(db_path) / f"{slot}.log"
