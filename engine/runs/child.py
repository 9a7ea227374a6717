"""The process that runs one job: ``python -m engine.runs.child DB JOB_ID OWNER WORKER_PID``.

The worker starts one per job, so a crash, a leak or CUDA memory stays with the job. It dies
with its worker: ``PR_SET_PDEATHSIG`` sends it SIGTERM when the worker dies (and a watchdog
checks its parent, where that is not available), it records where it was and gives the job back
("worker ... died"), so no orphan goes on running a job another worker takes over.

Exit status: 0 the outcome was recorded (or the job is no longer ours), 1 the job failed and
that was recorded, 75 it was stopped (cancelled, or its worker stops or died) — anything else
(a signal, a crash) the worker records as a death of the job's process.
"""

from __future__ import annotations

import asyncio
import faulthandler
import inspect
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from engine.runs.progress import JobCancelled

STOPPED = 75


class _Interrupted(JobCancelled):
    """SIGTERM arrived in the middle of a job: the handler is unwound (finally blocks run; a
    BaseException, so ``except Exception`` in a handler does not swallow it)."""


def _die_with(parent_pid: int, grace_s: float) -> bool:
    """SIGTERM when the parent dies (Linux), and a watchdog that leaves for good ``grace_s`` after.
    False when the parent is gone already."""
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # it died before the line above
        return False

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        if not sys.platform.startswith("linux"):
            os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        os._exit(STOPPED)  # the handler would not stop: go anyway

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return True


def run_handler(handler: Any, ctx: Any) -> Any:
    """Call a plain or ``async`` handler (a coroutine runs in its own event loop)."""
    result = handler(ctx)
    return _run_async(result) if inspect.isawaitable(result) else result


def _run_async(awaitable: Any) -> Any:
    """Run a coroutine to its end; SIGTERM cancels it (raised as :class:`_Interrupted`)."""
    main_thread = threading.current_thread() is threading.main_thread()

    async def main() -> Any:
        task = asyncio.current_task()
        if task is not None and main_thread:
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await awaitable
        except asyncio.CancelledError:
            raise _Interrupted() from None

    before = signal.getsignal(signal.SIGTERM)
    try:
        return asyncio.run(main())
    finally:  # the loop puts the default action back when it closes
        if main_thread:
            signal.signal(signal.SIGTERM, before)


def main(argv: list[str]) -> int:
    from engine.runs.config import run_settings

    db_path, job_id, owner, parent_pid = Path(argv[0]), int(argv[1]), argv[2], int(argv[3])
    settings = run_settings()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is the worker's to act on

    def on_term(signum: int, frame: Any) -> None:
        # once: the death signal can come twice (when the thread that started this process ends, and
        # again when the rest of the worker does), and a second one must not cut the giving back short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Interrupted()

    signal.signal(signal.SIGTERM, on_term)
    faulthandler.enable()  # a segfault leaves its stack in the job's log
    store = None
    try:
        parent_alive = _die_with(parent_pid, settings.job_cancel_grace_s)
        from db import open_store

        store = open_store(db_path, create=False)
        if not parent_alive:
            raise _Interrupted()
        return _run(store, db_path, job_id, owner, parent_pid, settings.job_progress_flush_s)
    except _Interrupted:  # before the handler started
        if store is not None and _worker_died(store, job_id, owner, parent_pid):
            store.release_job(job_id, owner=owner, reason=f"worker {owner} died")
        return STOPPED


def _run(store: Any, db_path: Path, job_id: int, owner: str, parent_pid: int, flush_s: float) -> int:
    from db import StoreError
    from engine.common.text import one_line
    from engine.runs.context import JobContext
    from engine.runs.job_progress import JobProgress
    from engine.runs.kinds import resolve

    job = store.get_job(job_id)
    if job is None or job["status"] != "running" or job["lease_owner"] != owner:
        return 0  # cancelled or taken over before it started
    progress = JobProgress(store, job_id, owner, flush_s=flush_s, total=job["progress_total"])
    ctx = JobContext(job=job, store=store, progress=progress, db_path=db_path)
    started = time.monotonic()
    print(f"{time.strftime('%H:%M:%S')} job {job_id} ({job['kind']}) attempt {job['attempts']} by {owner} "
          f"(pid {os.getpid()})", flush=True)
    try:
        result = run_handler(resolve(job["kind"]), ctx)
    except (_Interrupted, JobCancelled):
        progress.close()
        stack = traceback.format_exc()
        if _worker_died(store, job_id, owner, parent_pid):
            store.release_job(job_id, owner=owner, reason=f"worker {owner} died", traceback=stack)
            print(f"worker {owner} died: job {job_id} given back\n{stack}", flush=True)
        else:
            print(f"{time.strftime('%H:%M:%S')} job {job_id} stopped", flush=True)
        return STOPPED
    except Exception as exc:  # noqa: BLE001 - any failure of the handler is the job's outcome
        progress.close()
        stack = traceback.format_exc()
        print(stack, file=sys.stderr, flush=True)
        store.finish_job(job_id, owner=owner, error=one_line(f"{type(exc).__name__}: {exc}", 1000), traceback=stack)
        return 1
    progress.close()
    try:
        recorded = store.finish_job(job_id, owner=owner, result=result)
    except (TypeError, ValueError, StoreError) as exc:  # not JSON (NaN is a StoreError)
        error = one_line(f"the job's result could not be stored as JSON: {type(exc).__name__}: {exc}", 1000)
        store.finish_job(job_id, owner=owner, error=error)
        print(error, file=sys.stderr, flush=True)
        return 1
    took = f"{time.monotonic() - started:.1f} s"
    print(f"{time.strftime('%H:%M:%S')} job {job_id} " + (f"done in {took}" if recorded else
          f"ended after {took}, no longer this worker's (cancelled or taken over): its result was not recorded"),
          flush=True)
    return 0


def _worker_died(store: Any, job_id: int, owner: str, parent_pid: int, wait_s: float = 1.0) -> bool:
    """Was the SIGTERM this process got its worker's death (not a cancel, nor the worker stopping)?
    The death signal comes when the thread that started this process ends, which may be a moment
    before the rest of the worker: while the job is still ours, wait that moment for the worker to go."""
    from engine.runs.worker import pid_alive

    state = store.job_state(job_id)
    if state is None or state["status"] != "running" or state["lease_owner"] != owner:
        return False  # cancelled or taken over: nothing to give back
    deadline = time.monotonic() + wait_s
    while os.getppid() == parent_pid and pid_alive(parent_pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
