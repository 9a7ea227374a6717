"""Job kinds for trying a worker by hand and for the tests, and ``doctor``.

``emtui jobs add sleep --payload '{"seconds": 30}'`` then ``emtui worker --once``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

from engine.runs.context import JobContext


def echo(ctx: JobContext) -> dict[str, Any]:
    """Returns its payload as its result; ``{"steps": n}`` advances n times first."""
    payload = ctx.payload
    steps = int(payload.get("steps", 0))
    ctx.progress.set_total(steps or None)
    for _ in range(steps):
        ctx.progress.advance()
    return {"payload": payload, "attempt": ctx.attempt, "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


async def echo_async(ctx: JobContext) -> dict[str, Any]:
    """The async shape of a judging handler: ``{"tasks": n}`` concurrent waits, each reported."""
    n = int(ctx.payload.get("tasks", 3))
    ctx.progress.set_total(n)

    async def one(i: int) -> int:
        await asyncio.sleep(0.01 * (n - i))
        ctx.progress.advance()
        return i

    done = await asyncio.gather(*(one(i) for i in range(n)))
    state = await ctx.write(ctx.store.job_state, ctx.job_id)  # the store, off the event loop
    return {"done": sorted(done), "status_seen": state["status"]}


def sleep(ctx: JobContext) -> dict[str, Any]:
    """Sleeps ``{"seconds": s}``. ``"report": false``: not one progress call (the lease must hold by
    itself); ``"check": false``: reports but never looks at cancellation (SIGTERM stops it);
    ``"ignore_term": true``: ignores SIGTERM too (only SIGKILL stops it)."""
    payload = ctx.payload
    seconds = float(payload.get("seconds", 1.0))
    if payload.get("ignore_term"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    gpus = os.environ.get("CUDA_VISIBLE_DEVICES")
    if not payload.get("report", True):
        time.sleep(seconds)
        return {"slept": seconds, "cuda_visible_devices": gpus}
    ticks = max(1, int(seconds / 0.05))
    ctx.progress.set_total(ticks)
    ctx.progress.note(f"sleeping {seconds:g} s")
    for _ in range(ticks):
        if payload.get("check", True) and ctx.progress.cancelled():
            return {"slept": "cancelled", "cuda_visible_devices": gpus}
        time.sleep(seconds / ticks)
        ctx.progress.advance()
    return {"slept": seconds, "cuda_visible_devices": gpus}


def fail(ctx: JobContext) -> None:
    """Raises ``RuntimeError(payload["message"])`` after a note."""
    ctx.progress.note("about to fail")
    raise RuntimeError(ctx.payload.get("message", "this job fails on purpose"))


def crash(ctx: JobContext) -> None:
    """Kills its own process with ``{"signal": "SIGKILL"}`` (the default; SIGSEGV, ...), the way the
    kernel's OOM killer or a segfault would: no exception, no outcome written."""
    ctx.progress.note("about to crash")
    ctx.progress.close()
    os.kill(os.getpid(), getattr(signal, str(ctx.payload.get("signal", "SIGKILL"))))
    time.sleep(10)


DOCTOR_KIND = "doctor"  # emtui doctor --worker and the Eval queue's d queue it


def doctor(ctx: JobContext) -> dict[str, Any]:
    """What this machine can do, as the worker sees it: ``engine.runs.doctor.report(db_path)``."""
    from engine.runs.doctor import report

    ctx.progress.note("checking this machine")
    return dict(report(ctx.db_path))
