"""The Results screen's numbers, computed in a child process.

A summary at 1M scores runs numpy for seconds. In a thread of the TUI's own process it holds the
GIL for long stretches — its first import of numpy alone holds it ~0.2 s, and many array operations
do not let go — so the UI thread, waiting for the GIL, stalls: bench/tui_stall.py measured 310 ms
with the summary in a thread. A child process shares no GIL with the UI. It opens the database
itself, computes, and pickles the result back on its stdout; the parent (a thread worker of the
screen) waits for it, and kills it when its worker is cancelled (the work superseded, the app
closed).

    python -m emtui.summary_process    (a pickled (database path, what, arguments) on stdin)
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from db.errors import StoreError

CHECK_S = 0.1  # how often the waiting thread asks whether its work is still wanted


class ComputeFailed(Exception):
    """The computation failed (not the database): the message is shown where the numbers would be."""


class Cancelled(Exception):
    """The work was no longer wanted: the child was killed."""


def _summary(store: Any, options: dict[str, Any]) -> Any:
    from engine.results.summary import SummaryOptions, build_summary

    return build_summary(store, SummaryOptions(**options))


def _breakdowns(store: Any, study: str, by: tuple[str, ...], options: dict[str, Any]) -> Any:
    from engine.results.summary import SummaryOptions, study_breakdowns

    return study_breakdowns(store, study, by, SummaryOptions(**options))


WHAT: dict[str, Callable[..., Any]] = {"summary": _summary, "breakdowns": _breakdowns}


def compute(path: str | os.PathLike[str], what: str, *args: Any,
            cancelled: Callable[[], bool] = lambda: False) -> Any:
    """``WHAT[what](store, *args)`` in a child process on the database at ``path``. Raises
    :class:`StoreError` for a database fault (its one line), :class:`ComputeFailed` for any other
    failure, :class:`Cancelled` when ``cancelled()`` said so while it ran (the child is killed)."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    proc = subprocess.Popen([sys.executable, "-m", "emtui.summary_process"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    payload: bytes | None = pickle.dumps((str(path), what, args))
    while True:
        try:
            out, err = proc.communicate(payload, timeout=CHECK_S)
            break
        except subprocess.TimeoutExpired:
            payload = None  # sent with the first call
            if cancelled():
                proc.kill()
                proc.communicate()
                raise Cancelled() from None
        except BaseException:
            proc.kill()
            raise
    try:
        kind, value = pickle.loads(out)  # our own child's answer
    except Exception:  # noqa: BLE001 - it died before answering (out of memory, killed)
        last = (err.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
        raise ComputeFailed(f"the {what} process ended with status {proc.returncode}"
                            + (f": {last}" if last else "")) from None
    if kind == "fault":
        raise StoreError(value)
    if kind == "error":
        raise ComputeFailed(value)
    return value


def main() -> int:
    from db import open_store
    from emtui.faults import fault_line

    path, what, args = pickle.load(sys.stdin.buffer)
    try:
        with open_store(path, create=False, readonly=True) as store:
            answer: tuple[str, Any] = ("ok", WHAT[what](store, *args))
    except Exception as exc:  # noqa: BLE001 - every failure is answered, as a line
        line = fault_line(exc, path)
        answer = ("fault", line) if line is not None else ("error", f"{type(exc).__name__}: {exc}")
    sys.stdout.buffer.write(pickle.dumps(answer))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
