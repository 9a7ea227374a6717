"""A job's progress in the database: what the TUI and ``emtui jobs`` show.

The handler's calls only change numbers in memory; a background thread writes them at most
every ``flush_s`` seconds (and once more at :meth:`JobProgress.close`), computing a recent rate
the queue screen turns into an ETA. The same thread learns whether the job is still ours (it was
cancelled, or its lease taken over), which is what :meth:`cancelled` answers — without ever
blocking the caller, so ``advance()`` may be called per item, in a thread or an event loop.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

from engine.runs.progress import Progress, RateMeter


class JobProgress(Progress):
    def __init__(self, store: Any, job_id: int, owner: str, *, flush_s: float = 0.5,
                 total: int | None = None, log: Any = None) -> None:
        super().__init__()
        self.store, self.job_id, self.owner = store, job_id, owner
        self.total = total
        self.flush_s = flush_s
        self.log = log if log is not None else sys.stdout
        self._lock = threading.Lock()
        self._note: str | None = None
        self._note_written: str | None = None
        self._metrics: dict[str, Any] | None = None
        self._dirty = True
        self._cancelled = threading.Event()
        self._stop = threading.Event()
        self._rate = RateMeter()
        self._thread = threading.Thread(target=self._run, name=f"job-{job_id}-progress", daemon=True)
        self._thread.start()

    # -- the protocol: memory only ----------------------------------------------------------------

    def set_total(self, total: int | None) -> None:
        with self._lock:
            self.total = None if total is None else int(total)
            self._dirty = True

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += int(n)
            self._dirty = True

    def note(self, text: str) -> None:
        from engine.common.text import one_line

        line = one_line(text, 500)
        with self._lock:
            self._note = line
            self._dirty = True
        self._say(f"note: {line}")

    def metrics(self, values: Mapping[str, Any]) -> None:
        with self._lock:
            self._metrics = dict(values)
            self._dirty = True

    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def close(self) -> None:
        """Stop the writer and write what is left (in the caller's thread)."""
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join()
            self._flush()

    # -- the writer -------------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        try:
            self.log.write(f"{time.strftime('%H:%M:%S')} {text}\n")
            self.log.flush()
        except (OSError, ValueError):
            pass

    def _run(self) -> None:
        while not self._stop.wait(self.flush_s):
            try:
                if not self._flush():
                    self._check()
            except Exception as exc:  # noqa: BLE001 - a locked database: try again next time, never kill the job
                self._say(f"progress not written: {type(exc).__name__}: {exc}")

    def _flush(self) -> bool:
        """Write the progress if it changed; False when there was nothing to write."""
        with self._lock:
            if not self._dirty:
                return False
            done, total, note, metrics = self.done, self.total, self._note, self._metrics
            new_note = note != self._note_written
            self._dirty = False
        rate = self._rate.sample(done)
        ours = self.store.report_progress(self.job_id, self.owner, done=done, total=total, note=note,
                                          metrics=metrics, rate=rate, new_note=new_note)
        if ours:
            self._note_written = note
        else:
            self._cancelled.set()
        return True

    def _check(self) -> None:
        state = self.store.job_state(self.job_id)
        if state is None or state["status"] != "running" or state["lease_owner"] != self.owner:
            self._cancelled.set()
