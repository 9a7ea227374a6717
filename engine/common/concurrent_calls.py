"""Many blocking calls (HTTP requests) at once, in order, stoppable at any moment.

A ``ThreadPoolExecutor`` cannot walk away from a call in flight: its threads are joined when the
interpreter exits, so a cancelled job would wait for its slowest request (up to its timeout). Here
the threads are daemons: once the caller stops (cancelled, or a call failed) no new call starts,
the caller returns at once, and a request still in flight ends with the process at the latest.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["POLL_S", "CallsCancelled", "run_concurrently"]

T = TypeVar("T")
POLL_S = 0.05  # how often the caller's thread asks cancelled() while calls are in flight


class CallsCancelled(Exception):
    """``cancelled()`` became true: the calls stopped early (a job raises its JobCancelled)."""


def run_concurrently(call: Callable[[int, threading.Event], T], n: int, *, concurrency: int,
                     cancelled: Callable[[], bool] | None = None,
                     on_result: Callable[[int, T], None] | None = None) -> list[T]:
    """``[call(0, stop), ..., call(n - 1, stop)]`` with up to ``concurrency`` calls at a time.

    ``stop`` is set when the work stops early; a call should give up when it is (a backoff sleep
    waits on it). ``cancelled`` and ``on_result(i, result)`` (as each call ends, in the order they
    end) run in the caller's thread only. The first exception of a call is raised here, and
    :class:`CallsCancelled` once ``cancelled()`` is true; either way no further call starts."""
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    results: list[T | None] = [None] * n
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for i in range(n):
        todo.put(i)
    done: queue.SimpleQueue[tuple[int, T | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((i, call(i, stop), None))
            except BaseException as exc:  # handed to the caller's thread, raised there
                stop.set()  # before this thread (or another) takes the next call
                done.put((i, None, exc))
                return

    for _ in range(min(concurrency, n)):
        threading.Thread(target=worker, name="emtui-call", daemon=True).start()
    remaining = n
    try:
        while remaining:
            if cancelled is not None and cancelled():
                raise CallsCancelled()
            try:
                i, result, error = done.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if error is not None:
                raise error
            results[i] = result
            remaining -= 1
            if on_result is not None:
                on_result(i, result)  # type: ignore[arg-type]
    finally:
        stop.set()
    return results  # type: ignore[return-value]
