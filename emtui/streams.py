"""What the command line writes to the terminal, and how it ends.

- :func:`say`: a message on standard output. Paths and names in messages come from the command
  line and from files (a folder's file names), so terminal control sequences and bidirectional
  overrides are stripped, as on standard error.
- :func:`error_lines`: an error as the lines a person sees: one per problem (a study file lists
  each), a newline inside a problem (a path with one) written as ``\\n`` so a problem stays one line.
- :func:`tolerant_stdout`: a path whose bytes are not UTF-8 reaches Python as lone surrogates;
  standard output writes them as backslash escapes instead of failing in the middle of a command.
- :func:`named_stdout`: a write to standard output that fails (``> /dev/full``) is named as
  standard output's fault, not the database's.
- :func:`ending_signals`: SIGTERM and SIGHUP (a dropped SSH session) end a command as an
  exception does, so its transaction is rolled back and a database file or output file it was
  creating is removed (the default action kills the process on the spot).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_LINE_BREAKS = str.maketrans({"\n": "\\n", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def say(text: object = "", *, flush: bool = False) -> None:
    from engine.common.text import strip_control

    print(strip_control(str(text)), flush=flush)


def start_worker_for(store: Any, no_worker: bool, follow: str) -> None:
    """After queueing from the command line: start a detached worker unless one is alive (or ``--no-worker``),
    and say where to follow the work (``follow``: "emtui runs or the Train screen")."""
    if no_worker:
        say("no worker started (--no-worker): run one with emtui worker --detach")
        return
    from engine.runs.detach import ensure_worker

    pid = ensure_worker(store.path, store=store)
    say(f"started a worker in the background (pid {pid}); follow it with {follow}" if pid
        else f"a worker is running: it takes the work next; follow it with {follow}")


def plain_table(header: list[str], rows: list[list[str]], *, width: int | None = None) -> str:
    """A plain text table, columns two spaces apart. Cells come from the database (names from imported
    files): one line each, no control characters. With ``width``, the widest columns are cut (``…``)
    until the table fits."""
    from engine.common.text import one_line

    rows = [[one_line(c, 200) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    if width is not None:
        while sum(widths) + 2 * (len(widths) - 1) > width and max(widths) > 6:
            widths[widths.index(max(widths))] -= 1
        rows = [[one_line(c, w) for c, w in zip(r, widths, strict=True)] for r in rows]
        header = [one_line(h, w) for h, w in zip(header, widths, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def error_lines(error: BaseException | str) -> list[str]:
    from engine.common.text import strip_control

    problems = getattr(error, "problems", None)  # a study file: every problem found, one line each
    parts = [str(p) for p in problems] if problems else [str(error)]
    return [strip_control(p).strip("\n").translate(_LINE_BREAKS) for p in parts]


def tolerant_stdout() -> None:
    stream = sys.stdout
    if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="backslashreplace")


class _NamedStdout:
    """Standard output whose write faults name it: an OSError of a write has no file name, and the
    one line a person sees would otherwise blame the database."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise _named(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise _named(exc) from None

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _named(exc: OSError) -> OSError:
    if exc.filename is None:
        exc.filename = "standard output"
    with contextlib.suppress(OSError, ValueError):  # Python's flush at exit would report it again
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
    return exc


@contextlib.contextmanager
def named_stdout() -> Iterator[None]:
    before = sys.stdout
    sys.stdout = _NamedStdout(before)
    try:
        yield
    finally:
        sys.stdout = before


@contextlib.contextmanager
def ending_signals() -> Iterator[None]:
    from engine.common.signals import handling

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    with handling(("SIGTERM", "SIGHUP"), stop):
        yield
