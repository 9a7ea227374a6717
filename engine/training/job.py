"""The handler of job kind ``train``: one run, in the job's own process, or under ``torchrun`` when the
job asks for more than one GPU (each rank runs ``python -m engine.training.trainer``)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

from engine.runs.context import JobContext
from engine.runs.progress import JobCancelled


def train_job(ctx: JobContext) -> dict[str, Any]:
    from engine.training.trainer import train

    run_id = int(ctx.payload["train_run_id"])
    gpus = int(json.loads(ctx.job.get("resources") or "{}").get("gpu", 0) or 0)
    if gpus > 1:
        return _torchrun(ctx, run_id, gpus)
    return train(ctx.store, run_id, db_path=ctx.db_path, progress=ctx.progress).as_json()


def _torchrun(ctx: JobContext, run_id: int, n: int) -> dict[str, Any]:
    """Every GPU of the job trains: one process each, rank 0 writing to the database."""
    torchrun = shutil.which("torchrun") or os.path.join(os.path.dirname(sys.executable), "torchrun")
    cmd = [torchrun, f"--nproc_per_node={n}", "-m", "engine.training.trainer", "--db", str(ctx.db_path),
           "--train-run", str(run_id)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        while proc.poll() is None:
            if ctx.progress.cancelled():
                proc.terminate()
                proc.wait(timeout=60)
                ctx.store.finish_train_run(run_id, status="cancelled", error="cancelled")
                raise JobCancelled("cancelled")
            time.sleep(1.0)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = (proc.stdout.read() if proc.stdout else "").strip().splitlines()
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited with {proc.returncode} (see the job's log)")
    return dict(json.loads(out[-1])) if out else {"train_run_id": run_id}
