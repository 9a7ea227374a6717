"""The columnar read of a study's scores.

A summary reads every score of a study: (metric, judge, answer, score). Fetched as Python
tuples that costs about a microsecond a row, all of it holding the GIL. Here SQLite builds
each column as one comma-separated text (``group_concat``, in C; Python's sqlite3 lets go of
the GIL while a statement runs) and numpy parses it, about a third of the cost, and the
caller's other threads keep running meanwhile. A large scan is read in parts of score
rowids, by threads with their own read-only connections; parts also keep each text far
below SQLite's 1 GB limit on a string.

Whole-number scores travel in that text. The others (a logprob-weighted mean, say) are
marked there and fetched exactly, as tuples, in the same read transaction. With each score
comes its kind: a score, missing, or missing with the judge's verdict a refusal (its raw
output, or the top token of its logprob dictionary, starts with REFUSAL; the verdict is only
looked at for missing scores).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The judge's verdict when there is no score: the per-metric raw output, else the judgment's.
# A logprob dictionary (a JSON object token -> probability, the EM paper's files) says its most likely token;
# our logprob judges' raw output ({"text", "top_logprobs", ...}: engine/judging/panel.py) says its reply's text,
# whose first token is the most likely one (judges are called at temperature 0).
VERDICT_SQL = """UPPER(TRIM(CASE WHEN json_valid(IFNULL(s.raw, j.raw_output))
                              AND json_type(IFNULL(s.raw, j.raw_output)) = 'object'
                         THEN CASE WHEN json_type(IFNULL(s.raw, j.raw_output), '$.top_logprobs') = 'object'
                                   THEN json_extract(IFNULL(s.raw, j.raw_output), '$.text')
                                   ELSE (SELECT e.key FROM json_each(IFNULL(s.raw, j.raw_output)) e
                                         ORDER BY e.value DESC LIMIT 1) END
                         ELSE IFNULL(s.raw, j.raw_output) END))"""

# A score's kind, carried in the low two bits of its metric code.
SCORED, MISSING, REFUSED, EXACT = 0, 1, 2, 3  # EXACT: a score that is not a whole number
_WHOLE = "s.score = CAST(s.score AS INTEGER)"

PLANS = ("scan", "index", "all")
PARALLEL_MIN_SCORES = 200_000  # below this many expected scores, one read in one thread
PART_ROWIDS = 4_000_000  # at most this many score rowids a part: each column's text stays < 100 MB


@dataclass
class ScoreColumns:
    """A study's scores, one array per column: ``metric`` (index into the metrics asked for),
    ``judge`` (judge id), ``generation`` (answer id), ``score`` (float, NaN when missing) and
    ``refused`` (missing, and the judge's verdict was a refusal)."""

    metric: Any
    judge: Any
    generation: Any
    score: Any
    refused: Any

    def __len__(self) -> int:
        return len(self.metric)

    @classmethod
    def concat(cls, parts: Sequence[ScoreColumns]) -> ScoreColumns:
        import numpy as np

        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ("metric", "judge", "generation", "score", "refused")))

    def select(self, mask: Any) -> ScoreColumns:
        """The scores where ``mask`` is true."""
        return ScoreColumns(self.metric[mask], self.judge[mask], self.generation[mask], self.score[mask],
                            self.refused[mask])

    def rows(self) -> list[tuple]:
        """(metric, judge, generation, score or None, refused) per score, sorted: for tests."""
        return sorted(zip(self.metric.tolist(), self.judge.tolist(), self.generation.tolist(),
                          [None if s != s else s for s in self.score.tolist()], self.refused.tolist(), strict=True),
                      key=repr)


def _source(study_id: int, metrics: Sequence[str], plan: str, rowids: tuple[int, int] | None
            ) -> tuple[str, list[Any]]:
    """FROM ... WHERE of a study's scores of ``metrics``, and its parameters (``rowids``: a
    range of score rowids, for the plans that scan).

    Three plans for one result. "scan": one sequential pass over the scores (rows of other
    studies are dropped inside SQLite, cheaply), optionally a range of score rowids, for a
    study with a fair share of the database; "all": the same pass without the study filter,
    for a study that holds every answer in the database (the usual case; a fifth less work);
    "index": from the study's conditions down, which costs about twice as much a row but
    touches only the study's rows. CROSS JOIN fixes SQLite's join order."""
    if plan not in PLANS:
        raise ValueError(f"plan must be one of {', '.join(PLANS)}; got {plan!r}")
    marks = ",".join("?" * len(metrics))
    params: list[Any] = [study_id, *metrics]
    if plan == "all":
        sql = """FROM judgment_scores s CROSS JOIN judgments j ON j.id = s.judgment_id WHERE 1"""
        params = list(metrics)
    elif plan == "scan":
        sql = """FROM judgment_scores s
                 CROSS JOIN judgments j ON j.id = s.judgment_id
                 CROSS JOIN generations g ON g.id = j.generation_id
                 WHERE g.condition_id IN (SELECT id FROM conditions WHERE study_id = ?)"""
    else:
        sql = """FROM judgment_scores s
                 JOIN judgments j ON j.id = s.judgment_id
                 JOIN generations g ON g.id = j.generation_id
                 JOIN conditions c ON c.id = g.condition_id
                 WHERE c.study_id = ?"""
    sql += f" AND s.metric IN ({marks})"
    if rowids is not None:
        sql += " AND s.rowid BETWEEN ? AND ?"
        params += list(rowids)
    return sql, params


def _metric_index(metrics: Sequence[str]) -> tuple[str, list[Any]]:
    return "CASE s.metric " + " ".join("WHEN ? THEN ?" for _ in metrics) + " END", \
        [v for i, m in enumerate(metrics) for v in (m, i)]


def int_columns(conn: sqlite3.Connection, select: str, params: Sequence[Any], names: Sequence[str]) -> list:
    """The integer columns ``names`` of the query ``select`` (none of them NULL), as int64
    arrays in one row order: SQLite concatenates each column into one text and numpy parses it."""
    import numpy as np

    texts = ", ".join(f"group_concat({c})" for c in names)
    n, *columns = conn.execute(f"SELECT count(*), {texts} FROM ({select})", tuple(params)).fetchone()
    arrays = [np.fromstring(t, dtype=np.int64, sep=",") if n else np.zeros(0, np.int64) for t in columns]
    if any(len(a) != n for a in arrays):  # a NULL (left out by group_concat) or a value that is not an integer
        raise RuntimeError(f"columnar read: {n} rows but columns of {[len(a) for a in arrays]} values")
    return arrays


def columns_query(study_id: int, metrics: Sequence[str], plan: str, rowids: tuple[int, int] | None = None
                  ) -> tuple[str, tuple[Any, ...]]:
    """A study's scores as integer columns: ``code`` (metric index × 4 + kind), ``judge``,
    ``gen`` and ``score`` (whole-number scores; 0 where there is none)."""
    index, params = _metric_index(metrics)
    source, where = _source(study_id, metrics, plan, rowids)
    sql = f"""SELECT {index} * 4 + CASE WHEN s.score IS NULL
                                        THEN CASE WHEN {VERDICT_SQL} LIKE 'REFUSAL%' THEN {REFUSED}
                                                  ELSE {MISSING} END
                                        WHEN {_WHOLE} THEN {SCORED} ELSE {EXACT} END AS code,
                     j.judge_id AS judge, j.generation_id AS gen,
                     CASE WHEN {_WHOLE} THEN CAST(s.score AS INTEGER) ELSE 0 END AS score
              {source}"""
    return sql, tuple(params + where)


def exact_query(study_id: int, metrics: Sequence[str], plan: str, rowids: tuple[int, int] | None = None
                ) -> tuple[str, tuple[Any, ...]]:
    """(metric index, judge id, generation id, score) of the scores that are not whole numbers."""
    index, params = _metric_index(metrics)
    source, where = _source(study_id, metrics, plan, rowids)
    return (f"SELECT {index}, j.judge_id, j.generation_id, s.score {source} AND NOT {_WHOLE}",
            tuple(params + where))


def read_part(conn: sqlite3.Connection, study_id: int, metrics: Sequence[str], plan: str,
              rowids: tuple[int, int] | None = None) -> ScoreColumns:
    """One part of a study's scores, read in one transaction of ``conn``."""
    import numpy as np

    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")  # the exact scores below come from the same snapshot
    try:
        code, judge, gen, whole = int_columns(conn, *columns_query(study_id, metrics, plan, rowids),
                                              ("code", "judge", "gen", "score"))
        kind = code & 3
        score = whole.astype(float)
        score[(kind == MISSING) | (kind == REFUSED)] = np.nan
        out = ScoreColumns(code >> 2, judge, gen, score, kind == REFUSED)
        exact = kind == EXACT
        if exact.any():  # those rows are replaced by their exact scores
            exact_rows = np.array(conn.execute(*exact_query(study_id, metrics, plan, rowids)).fetchall(),
                                  dtype=float).reshape(-1, 4)
            ids = exact_rows[:, :3].astype(np.int64)
            out = ScoreColumns.concat([
                out.select(~exact),
                ScoreColumns(ids[:, 0], ids[:, 1], ids[:, 2], exact_rows[:, 3], np.zeros(len(ids), dtype=bool))])
        return out
    finally:
        if own:
            conn.execute("COMMIT")


class ScoreRead:
    """A read of a study's scores under way; :meth:`result` returns them as :class:`ScoreColumns`.

    ``parts`` are (first, last) score rowid ranges of the "scan" or "all" plan, each read by a thread with
    its own read-only connection to ``path``; with none, the whole read happens in
    :meth:`result` on the store's connection (guarded by its ``lock``)."""

    def __init__(self, conn: sqlite3.Connection, lock: Any, path: str, study_id: int, metrics: Sequence[str],
                 plan: str, parts: Sequence[tuple[int, int]] = (), threads: int = 1) -> None:
        self._conn, self._lock = conn, lock  # the store's connection and the lock that guards it
        self._study, self._metrics, self._plan = study_id, list(metrics), plan
        self._open: list[sqlite3.Connection] = []
        self._guard = threading.Lock()
        self._closed = False
        self._pool = pool = ThreadPoolExecutor(max(1, threads)) if parts else None
        self._futures: list[Future[ScoreColumns]] = ([pool.submit(self._read_rowids, path, p) for p in parts]
                                                     if pool else [])

    def _read_rowids(self, path: str, rowids: tuple[int, int]) -> ScoreColumns:
        conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True,  # as_uri escapes ? and #
                               isolation_level=None, check_same_thread=False)
        with self._guard:
            if self._closed:
                conn.close()
                raise RuntimeError("score read closed")
            self._open.append(conn)
        try:
            return read_part(conn, self._study, self._metrics, self._plan, rowids)
        finally:
            with self._guard:
                self._open.remove(conn)
            conn.close()

    @property
    def parts(self) -> int:
        """How many parts threads read (0: the whole read happens in :meth:`result`)."""
        return len(self._futures)

    def close(self) -> None:
        """Stop the parts whose result will not be asked for (idempotent)."""
        with self._guard:
            self._closed = True
            for conn in self._open:
                conn.interrupt()
        if self._pool is not None:
            for f in self._futures:
                f.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None

    def result(self) -> ScoreColumns:
        import numpy as np

        if not self._metrics:
            return ScoreColumns(*(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.int64, float, bool)))
        if self._futures:
            parts = [f.result() for f in self._futures]
            self.close()  # the threads are done: let them go
        else:
            with self._lock:
                parts = [read_part(self._conn, self._study, self._metrics, self._plan)]
        return ScoreColumns.concat(parts)


def split_rowids(first: int, last: int, parts: int) -> list[tuple[int, int]]:
    """At least ``parts`` contiguous (first, last) ranges covering first..last, none longer than
    :data:`PART_ROWIDS`."""
    parts = max(parts, -(-(last - first + 1) // PART_ROWIDS))
    step = -(-(last - first + 1) // parts)
    return [(lo, min(last, lo + step - 1)) for lo in range(first, last + 1, step)]


def default_threads() -> int:
    return min(4, os.cpu_count() or 1)
