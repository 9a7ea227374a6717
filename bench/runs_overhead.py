"""Benchmark: what the run layer costs per job.

In the same run, on a fresh database:

- claim latency: ``store.claim_job`` (one BEGIN IMMEDIATE transaction: give back expired leases,
  then take the first runnable job — kind, GPUs, every dependency done — by priority) with
  ``--queued`` jobs waiting, a third of them behind a dependency that is not done; median and
  p95 over 200 claims (each claimed job is finished at once); baseline: a primary-key read of a
  job (``store.get_job``);
- a trivial job end to end through ``emtui worker --once``: ``--jobs`` echo jobs, the wall time of
  the whole command, minus the same command on an empty queue (the worker's own start), per
  job; and inside the worker, per job, from its claim to its outcome in the database (the
  ``claimed`` and ``done`` events): the cost of a process per job (start Python, open the
  database, import the handler, record the outcome); baseline: the echo handler called in
  this process.

Usage: python bench/runs_overhead.py [--queued 10000] [--jobs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db import open_store  # noqa: E402


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
    return f"median {statistics.median(values) * 1000:7.2f} ms   p95 {p95 * 1000:7.2f} ms"


def claim_latency(folder: Path, queued: int) -> None:
    with open_store(folder / "claims.db") as store:
        blocker = store.enqueue_job("never", {})
        with store.transaction():
            for i in range(queued):
                store.enqueue_job("echo", {"i": i}, priority=i % 5, depends_on=[blocker] if i % 3 == 0 else ())
        claims, reads = [], []
        for _ in range(200):
            t0 = time.perf_counter()
            job = store.claim_job("bench", kinds=["echo", "sleep"], lease_s=60, gpus=0)
            claims.append(time.perf_counter() - t0)
            store.finish_job(job["id"], owner="bench", result={"ok": True})
            t0 = time.perf_counter()
            store.get_job(job["id"])
            reads.append(time.perf_counter() - t0)
        print(f"claim_job with {queued:,} queued jobs:  {ms(claims)}")
        print(f"get_job (baseline):               {ms(reads)}")


def worker_overhead(folder: Path, n_jobs: int) -> None:
    db = folder / "worker.db"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "CUDA_VISIBLE_DEVICES": "", "EMTUI_WORKER_POLL_S": "0.05"}
    cmd = [sys.executable, "-m", "emtui", "--db", str(db), "worker", "--once"]
    open_store(db).close()
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    empty = time.perf_counter() - t0
    with open_store(db) as store:
        ids = [store.enqueue_job("echo", {"i": i}) for i in range(n_jobs)]
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    full = time.perf_counter() - t0
    with open_store(db) as store:
        inside = []
        for j in ids:
            events = {e["event"]: e["at"] for e in store.job_events(j)}
            inside.append(events["done"] - events["claimed"])
        assert all(store.get_job(j)["status"] == "done" for j in ids)

        from engine.runs.builtin_kinds import echo
        from engine.runs.context import JobContext
        from engine.runs.progress import Progress

        job = store.get_job(ids[0])
        calls = []
        for _ in range(200):
            t0 = time.perf_counter()
            echo(JobContext(job=job, store=store, progress=Progress(), db_path=db))
            calls.append(time.perf_counter() - t0)
    print(f"emtui worker --once, empty queue:  {empty * 1000:7.0f} ms (the worker's own start)")
    print(f"emtui worker --once, {n_jobs} echo jobs: {full * 1000:7.0f} ms -> "
          f"{(full - empty) / n_jobs * 1000:.0f} ms a job, end to end")
    print(f"claim -> outcome recorded, per job: {ms(inside)}")
    print(f"the echo handler in-process:      {ms(calls)}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queued", type=int, default=10_000)
    ap.add_argument("--jobs", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        claim_latency(Path(tmp), args.queued)
        worker_overhead(Path(tmp), args.jobs)


if __name__ == "__main__":
    main()
