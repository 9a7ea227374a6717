"""The columnar read of a study's scores, and its parallel form.

A summary reads every score of a study: (metric index, judge_id, generation_id, score) per
score, which costs Python about a microsecond a row to turn into tuples — one core's work. A
large study is therefore read in parts by reader processes (``python -m db.score_read``),
one per core, each part a range of score rowids written as packed doubles to a temporary
file; the caller is free meanwhile (the summary draws its agreement resamples). A reader that
fails to start or exits with an error has its part read in-process instead, so the result
never depends on the processes.

Missing scores come back as :data:`MISSING_SENTINEL`, or :data:`REFUSAL_SENTINEL` when the
judge's verdict was a refusal (its raw output, or the top token of its logprob dictionary,
starts with REFUSAL); the verdict is only looked at for missing scores.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MISSING_SENTINEL = -1.0e308  # a NULL score comes back as this, so rows convert to floats in one go
REFUSAL_SENTINEL = -1.5e308  # ... and a NULL score whose judge output was the word REFUSAL as this

# The judge's verdict when there is no score: the per-metric raw output, else the judgment's.
# A logprob dictionary (a JSON object token -> probability) says its most likely token.
VERDICT_SQL = """UPPER(TRIM(CASE WHEN json_valid(IFNULL(s.raw, j.raw_output))
                              AND json_type(IFNULL(s.raw, j.raw_output)) = 'object'
                         THEN (SELECT e.key FROM json_each(IFNULL(s.raw, j.raw_output)) e
                               ORDER BY e.value DESC LIMIT 1)
                         ELSE IFNULL(s.raw, j.raw_output) END))"""

PLANS = ("scan", "index")
# below this many expected scores a study is read in-process: a reader costs ~50 ms to start
PARALLEL_MIN_SCORES = 200_000
_BATCH = 65_536


def score_query(study_id: int, metrics: Sequence[str], plan: str,
                rowids: tuple[int, int] | None = None) -> tuple[str, tuple[Any, ...]]:
    """SQL and parameters of a study's scores of ``metrics`` (the index is the metric's
    position in ``metrics``); ``rowids`` (first, last) restricts the scan plan to a range
    of score rowids.

    Two plans for one result. "scan": one sequential pass over the scores (rows of other
    studies are dropped inside SQLite, cheaply), for a study with a fair share of the
    database; "index": from the study's conditions down, which costs about twice as much a
    row but touches only the study's rows. CROSS JOIN fixes SQLite's join order."""
    if plan not in PLANS:
        raise ValueError(f"plan must be 'scan' or 'index', got {plan!r}")
    case = " ".join("WHEN ? THEN ?" for _ in metrics)
    params: list[Any] = [v for i, m in enumerate(metrics) for v in (m, i)]
    params += [REFUSAL_SENTINEL, MISSING_SENTINEL, study_id, *metrics]
    marks = ",".join("?" * len(metrics))
    if plan == "scan":
        source = """FROM judgment_scores s
                    CROSS JOIN judgments j ON j.id = s.judgment_id
                    CROSS JOIN generations g ON g.id = j.generation_id
                    WHERE g.condition_id IN (SELECT id FROM conditions WHERE study_id = ?)"""
    else:
        source = """FROM judgment_scores s
                    JOIN judgments j ON j.id = s.judgment_id
                    JOIN generations g ON g.id = j.generation_id
                    JOIN conditions c ON c.id = g.condition_id
                    WHERE c.study_id = ?"""
    sql = f"""SELECT CASE s.metric {case} END, j.judge_id, j.generation_id,
                     IFNULL(s.score, CASE WHEN {VERDICT_SQL} LIKE 'REFUSAL%' THEN ? ELSE ? END)
              {source} AND s.metric IN ({marks})"""
    if rowids is not None:
        sql += " AND s.rowid BETWEEN ? AND ?"
        params += list(rowids)
    return sql, tuple(params)


def read_part(conn: sqlite3.Connection, sql: str, params: Sequence[Any], out: Any = None) -> array:
    """The rows of ``sql`` as packed doubles, batch by batch (written to the binary file
    ``out`` as they come when given, so memory stays flat); returns what was not written."""
    cur = conn.cursor()
    cur.row_factory = None
    cur.execute(sql, params)
    values = array("d")
    while rows := cur.fetchmany(_BATCH):
        values.extend(itertools.chain.from_iterable(rows))
        if out is not None:
            values.tofile(out)
            del values[:]
    return values


class ScoreRead:
    """A read of a study's scores under way: :meth:`result` returns them as packed doubles,
    four per score. ``parts`` are (first, last) score rowid ranges of the scan plan, each
    given to a reader process; with none, the whole read happens in :meth:`result`."""

    def __init__(self, conn: sqlite3.Connection, lock: Any, path: str, study_id: int, metrics: Sequence[str],
                 plan: str, parts: Sequence[tuple[int, int]] = ()) -> None:
        self._conn, self._lock = conn, lock  # the store's connection and the lock that guards it
        self._study, self._metrics, self._plan = study_id, list(metrics), plan
        self._readers: list[tuple[tuple[int, int], subprocess.Popen | None, Any]] = []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])])}
        for part in parts:
            out = tempfile.TemporaryFile()
            args = json.dumps({"path": path, "study": study_id, "metrics": self._metrics, "rowids": part})
            try:
                proc = subprocess.Popen([sys.executable, "-m", "db.score_read", args], stdout=out,
                                        stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env,
                                        close_fds=False)  # lets Python use posix_spawn: ~10x faster
            except OSError:
                proc = None  # read in-process in result()
            self._readers.append((part, proc, out))

    @property
    def processes(self) -> int:
        """How many reader processes were started."""
        return sum(proc is not None for _, proc, _ in self._readers)

    def close(self) -> None:
        """Stop the readers whose result will not be asked for (idempotent)."""
        for _, proc, out in self._readers:
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
            out.close()
        self._readers = []

    def result(self) -> array:
        if not self._metrics:
            return array("d")
        if not self._readers:  # no parts given (or closed): the whole read, here
            with self._lock:
                return read_part(self._conn, *score_query(self._study, self._metrics, self._plan))
        values = array("d")
        for part, proc, out in self._readers:
            with out:
                if proc is not None and proc.wait() == 0 and out.tell() % 32 == 0:
                    out.seek(0)
                    values.frombytes(out.read())
                else:  # the reader failed: its part, here
                    with self._lock:
                        values.extend(read_part(self._conn, *score_query(self._study, self._metrics, "scan", part)))
        self._readers = []
        return values


def split_rowids(first: int, last: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous (first, last) ranges covering first..last."""
    step = -(-(last - first + 1) // parts)
    return [(lo, min(last, lo + step - 1)) for lo in range(first, last + 1, step)]


def main(argv: Sequence[str] | None = None) -> int:
    """Reader process: one part of a study's scores as packed doubles on stdout."""
    args = json.loads((argv if argv is not None else sys.argv[1:])[0])
    conn = sqlite3.connect(Path(args["path"]).resolve().as_uri() + "?mode=ro", uri=True)  # escapes ? and #
    try:
        sql, params = score_query(args["study"], args["metrics"], "scan", tuple(args["rowids"]))
        read_part(conn, sql, params, out=sys.stdout.buffer)
        sys.stdout.buffer.flush()
    finally:
        conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
