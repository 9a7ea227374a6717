"""One progress protocol for everything long.

Engine code reports through :class:`Progress` and never asks where the report goes:

- ``set_total(n | None)``: how much there is to do (it may change; None: unknown);
- ``advance(n=1)``: that much more is done;
- ``note(text)``: a phase, one short line ("loading the model", "epoch 2");
- ``metrics({...})``: the latest numbers (loss, tokens/s, cost);
- ``cancelled()``: whether to stop (check it between units of work; ``check()`` raises
  :class:`JobCancelled` instead).

Implementations: :class:`Progress` itself is the no-op (notebooks, tests, ``NullProgress``);
:class:`ConsoleProgress` is a rich progress bar on a terminal and plain lines otherwise, for
foreground command-line runs; :class:`JobProgress` (engine/runs/job_progress.py) writes a job's
progress to the database for the TUI. None of them ever blocks the caller on the database or
the terminal, so ``advance()`` is cheap enough to call per item, from a thread or an event loop.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import IO, Any, Self


class JobCancelled(BaseException):
    """Raised by :meth:`Progress.check` (and in a job's process on SIGTERM) when the work must stop.

    A BaseException, like asyncio's CancelledError, so a handler's ``except Exception`` does not
    swallow it."""


class Progress:
    """The protocol, and the no-op implementation of it."""

    def __init__(self) -> None:
        self.total: int | None = None
        self.done = 0

    def set_total(self, total: int | None) -> None:
        self.total = None if total is None else int(total)

    def advance(self, n: int = 1) -> None:
        self.done += int(n)

    def note(self, text: str) -> None:
        pass

    def metrics(self, values: Mapping[str, Any]) -> None:
        pass

    def cancelled(self) -> bool:
        return False

    def check(self) -> None:
        """Raise :class:`JobCancelled` when the work was cancelled."""
        if self.cancelled():
            raise JobCancelled()

    def close(self) -> None:
        """The work ended: write what is left."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


NullProgress = Progress


class RateMeter:
    """Progress per second over the last ``window_s`` seconds (None until a second has passed)."""

    def __init__(self, window_s: float = 30.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def sample(self, done: int, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        t0, d0 = self._samples[0]
        return (done - d0) / (now - t0) if now - t0 >= 1.0 else None


def eta_text(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``12s``; empty when unknown."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return ""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


class ConsoleProgress(Progress):
    """A foreground run's progress: a rich bar on a terminal (gone when the work ends), plain lines
    (at most every ``every_s`` seconds, and on each note) otherwise. Writes to standard error, so the
    command's output is unchanged."""

    def __init__(self, label: str, *, stream: IO[str] | None = None, every_s: float = 10.0) -> None:
        super().__init__()
        from engine.common.text import flat

        self.label = flat(label)
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self._note = ""
        self._metrics = ""
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._last_line = -math.inf
        self._bar: Any = None
        self._task: Any = None
        if getattr(self.stream, "isatty", lambda: False)():
            self._start_bar()

    def _start_bar(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        console = Console(file=self.stream)
        self._bar = Bar(SpinnerColumn(), TextColumn("{task.description}", markup=False), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
                        transient=True, redirect_stdout=False, redirect_stderr=False)
        self._task = self._bar.add_task(self.label, total=None)
        self._bar.start()

    def _describe(self) -> str:
        return " · ".join(p for p in (self.label, self._note, self._metrics) if p)

    def set_total(self, total: int | None) -> None:
        super().set_total(total)
        if self._bar is not None:
            self._bar.update(self._task, total=self.total)
        else:
            self._plain()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += int(n)
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif time.monotonic() - self._last_line >= self.every_s:
            self._plain()

    def note(self, text: str) -> None:
        from engine.common.text import flat

        self._note = flat(text)
        if self._bar is not None:
            self._bar.update(self._task, description=self._describe())
        else:
            self._plain(force=True)

    def metrics(self, values: Mapping[str, Any]) -> None:
        from engine.common.text import flat

        self._metrics = flat(", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in values.items()))
        if self._bar is not None:
            self._bar.update(self._task, description=self._describe())

    def _plain(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_line < self.every_s:
            return
        self._last_line = now
        count = f"{self.done}/{self.total}" if self.total else str(self.done)
        self.stream.write(f"{self._describe()}: {count} ({eta_text(now - self._start)})\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def console_progress(label: str, *, plain: bool = True, stream: IO[str] | None = None) -> Progress:
    """The progress of a foreground command: a bar on a terminal; when standard error is not a
    terminal, plain lines — or nothing with ``plain=False`` (a command whose output must stay as it is)."""
    stream = stream or sys.stderr
    if plain or getattr(stream, "isatty", lambda: False)():
        return ConsoleProgress(label, stream=stream)
    return Progress()
