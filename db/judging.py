"""Queries of the judging engine (issue 14): what a panel still has to judge, its results one metric at a
time, every attempt it sent (each is paid), and the per-judge figures the Judges screen and a budget read."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from db.core import StoreCore

CALL_COLUMNS = ("judge_id", "generation_id", "rubric_id", "metric", "attempt", "outcome", "sent", "status", "error",
                "input_tokens", "output_tokens", "cost_usd", "latency_ms", "job_id", "at")


# what the judge_calls of a judge add up to: attempts by outcome, tokens, cost, the first and last attempt's time
CALL_FIGURES = """SELECT judge_id, count(*) AS calls, sum(outcome = 'ok') AS ok,
                         sum(outcome = 'throttled') AS throttled, sum(outcome = 'retryable') AS retryable,
                         sum(outcome = 'failed') AS failed,
                         sum(sent) AS sent, IFNULL(sum(input_tokens), 0) AS input_tokens,
                         IFNULL(sum(output_tokens), 0) AS output_tokens, IFNULL(sum(cost_usd), 0.0) AS cost_usd,
                         min(at) AS first_at, max(at) AS last_at
                  FROM judge_calls"""

# the study's answers with no result of one judge on one metric of one rubric, and in no unfinished Bedrock batch
# job of that judge (its reply is on the way, paid for) (params: judge, rubric, metric, study, judge, rubric, metric)
PENDING = """FROM generations g
             JOIN conditions c ON c.id = g.condition_id
             JOIN questions q ON q.id = g.question_id
             LEFT JOIN judgments j ON j.generation_id = g.id AND j.judge_id = ? AND j.rubric_id = ?
             LEFT JOIN judgment_scores s ON s.judgment_id = j.id AND s.metric = ?
             WHERE c.study_id = ? AND s.judgment_id IS NULL
               AND NOT EXISTS (SELECT 1 FROM judge_batch_records r JOIN judge_batches b ON b.id = r.batch_id
                               WHERE r.generation_id = g.id AND b.judge_id = ? AND b.rubric_id = ? AND r.metric = ?
                                     AND b.ingested = 0)"""


# what last_judge_errors asks: also read by the test that checks the index serves its order
LAST_ERRORS = """SELECT generation_id, metric, outcome, status, error, at FROM judge_calls
                 WHERE judge_id = ? AND outcome != 'ok' ORDER BY at DESC, id DESC LIMIT ?"""


class JudgingQueries(StoreCore):
    """Judging queries, mixed into :class:`db.store.Store`."""

    def pending_judge_items(self, study_id: int, judge_id: int, rubric_id: int, metric: str, *,
                            generation_ids: Sequence[int] | None = None) -> list[dict[str, Any]]:
        """The study's answers that ``judge_id`` has no result for on ``metric`` of ``rubric_id`` (a result: a
        score, or a recorded failure) and that no unfinished batch job of the judge covers, with what the judge
        is shown: the question, the variant and the
        generation settings (its trigger), the answer."""
        where, params = "", [judge_id, rubric_id, metric, study_id, judge_id, rubric_id, metric]
        if generation_ids is not None:
            ids = [int(g) for g in generation_ids]
            if not ids:
                return []
            where = f" AND g.id IN ({','.join('?' * len(ids))})"
            params += ids
        return self._q(
            f"""SELECT g.id AS generation_id, q.text AS question, g.variant, g.settings, g.response,
                       c.name AS condition
                {PENDING}{where}
                ORDER BY g.id""", params)

    def pending_judge_count(self, study_id: int, judge_id: int, rubric_id: int, metric: str) -> int:
        """How many answers :meth:`pending_judge_items` would give (without reading them)."""
        return int(self._scalar(f"SELECT count(*) {PENDING}",
                                (judge_id, rubric_id, metric, study_id, judge_id, rubric_id, metric)) or 0)

    def record_judge_results(self, results: Iterable[dict[str, Any]]) -> int:
        """Each metric's result for one (answer, judge, rubric) — ``score`` (None: missing), ``raw`` (the reply
        verbatim), ``error`` (why there is no score) and the tokens and latency of the call that gave it — in
        one transaction. The judgment row is made by its first metric; a failed metric marks it failed. A
        result that is there already is left as it is (returns how many were new)."""
        from db.store import utc_now

        now, new = utc_now(), 0
        with self.transaction(), self._lock:
            conn = self.conn
            for r in results:
                key = (int(r["generation_id"]), int(r["judge_id"]), int(r["rubric_id"]))
                conn.execute(
                    """INSERT INTO judgments (generation_id, judge_id, rubric_id, status, study_hash, job_id,
                                              input_tokens, output_tokens, latency_ms, created_at)
                       VALUES (?, ?, ?, 'ok', ?, ?, 0, 0, 0, ?)
                       ON CONFLICT (generation_id, judge_id, rubric_id) DO NOTHING""",
                    (*key, r.get("study_hash"), r.get("job_id"), now))
                jid = int(conn.execute("SELECT id FROM judgments WHERE generation_id = ? AND judge_id = ? "
                                       "AND rubric_id = ?", key).fetchone()[0])
                cur = conn.execute(
                    """INSERT INTO judgment_scores (judgment_id, metric, score, raw, error) VALUES (?, ?, ?, ?, ?)
                       ON CONFLICT (judgment_id, metric) DO NOTHING""",
                    (jid, str(r["metric"]), None if r.get("score") is None else float(r["score"]), r.get("raw"),
                     r.get("error")))
                if cur.rowcount != 1:
                    continue
                new += 1
                conn.execute(
                    """UPDATE judgments SET input_tokens = IFNULL(input_tokens, 0) + ?,
                              output_tokens = IFNULL(output_tokens, 0) + ?, latency_ms = IFNULL(latency_ms, 0) + ?,
                              raw_output = CASE WHEN raw_output IS NULL THEN ? ELSE raw_output END,
                              status = CASE WHEN ? IS NOT NULL THEN 'failed' ELSE status END,
                              error = CASE WHEN error IS NULL THEN ? ELSE error END
                       WHERE id = ?""",
                    (int(r.get("input_tokens") or 0), int(r.get("output_tokens") or 0), int(r.get("latency_ms") or 0),
                     r.get("raw"), r.get("error"), None if r.get("error") is None else f"{r['metric']}: {r['error']}",
                     jid))
        return new

    def log_judge_calls(self, calls: Sequence[dict[str, Any]]) -> None:
        """Every attempt sent (or tried) to a judge, as it ended."""
        if not calls:
            return
        rows = [tuple(c.get(k) for k in CALL_COLUMNS) for c in calls]
        with self.transaction(), self._lock:
            self.conn.executemany(
                f"INSERT INTO judge_calls ({', '.join(CALL_COLUMNS)}) VALUES ({', '.join('?' * len(CALL_COLUMNS))})",
                rows)

    def judge_call_stats(self, judge_ids: Sequence[int] | None = None, *, job_id: int | None = None,
                         since: float | None = None) -> dict[int, dict[str, Any]]:
        """Per judge: attempts by outcome, tokens, cost, the first and last attempt's time (for calls/s)."""
        where: list[str] = ["1"]
        params: list[Any] = []
        if judge_ids is not None:
            ids = [int(j) for j in judge_ids]
            if not ids:
                return {}
            where.append(f"judge_id IN ({','.join('?' * len(ids))})")
            params += ids
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        if since is not None:
            where.append("at >= ?")
            params.append(since)
        rows = self._q(f"{CALL_FIGURES} WHERE {' AND '.join(where)} GROUP BY judge_id", params)
        return {int(r["judge_id"]): r for r in rows}

    def last_judge_errors(self, judge_id: int, *, limit: int = 5) -> list[dict[str, Any]]:
        """The judge's latest failed or refused attempts, with the answer each belongs to. Ordered by when
        each ended (the id breaks ties): the index ``judge_calls_judge (judge_id, at)`` holds the rowid
        last, so it serves this order and the query reads only the rows it returns (ordered by id, SQLite
        sorted every one of the judge's calls in a temporary B-tree)."""
        return self._q(LAST_ERRORS, (judge_id, limit))

    def study_judging_spent(self, study_id: int) -> float:
        """USD spent on judge calls for the study's answers (every attempt sent, retries included)."""
        return float(self._scalar(
            """SELECT IFNULL(sum(k.cost_usd), 0) FROM judge_calls k JOIN generations g ON g.id = k.generation_id
               JOIN conditions c ON c.id = g.condition_id WHERE c.study_id = ?""", (study_id,)) or 0.0)

    def set_judge_paused(self, judge_id: int, paused: bool) -> bool:
        with self.transaction(), self._lock:
            cur = self.conn.execute("UPDATE judges SET paused = ? WHERE id = ?", (int(bool(paused)), judge_id))
        return cur.rowcount == 1

    def paused_judges(self, judge_ids: Sequence[int]) -> set[int]:
        ids = [int(j) for j in judge_ids]
        if not ids:
            return set()
        return {int(r["id"]) for r in self._q(
            f"SELECT id FROM judges WHERE paused = 1 AND id IN ({','.join('?' * len(ids))})", ids)}

    def get_rubric(self, rubric_id: int) -> dict[str, Any] | None:
        return self._one("SELECT id, name, content_hash, body, metrics FROM rubrics WHERE id = ?", (rubric_id,))

    def last_judge_unparsed(self, judge_id: int, *, limit: int = 5, window: int = 5000) -> list[dict[str, Any]]:
        """The judge's latest replies that gave a metric no score (the reply and why kept), with the answer each
        belongs to: among its last ``window`` judgments, so that a judge of a million judgments costs the
        Judges screen's poll the same as one of a thousand."""
        return self._q(
            """SELECT j.generation_id, s.metric, s.error, s.raw, j.created_at FROM judgment_scores s
               JOIN (SELECT id, generation_id, created_at FROM judgments WHERE judge_id = ?
                     ORDER BY id DESC LIMIT ?) j ON j.id = s.judgment_id
               WHERE s.score IS NULL AND s.error IS NOT NULL AND s.raw IS NOT NULL
               ORDER BY j.id DESC, s.metric LIMIT ?""", (judge_id, window, limit))

    def judges_page(self, *, limit: int = 100, offset: int = 0) -> Any:
        """A page (db.Page) of judges, as the Judges screen lists them: what each is and whether it is paused
        (no counts: the screen polls it while a panel runs)."""
        from db.store import Page

        rows = self._q("SELECT id, name, provider, model, params, paused FROM judges ORDER BY id LIMIT ? OFFSET ?",
                       (limit, offset))
        return Page(rows, int(self._scalar("SELECT count(*) FROM judges")), offset, limit)

    def judge_call_totals_after(self, after_id: int) -> tuple[int, dict[int, dict[str, Any]]]:
        """(the last call's id, per judge the calls logged after ``after_id``: attempts by outcome, tokens, cost,
        first and last time): what the Judges screen adds to the totals it holds, so that a poll while a
        panel logs thousands of calls a minute reads what is new, not every call ever made."""
        last = int(self._scalar("SELECT IFNULL(max(id), 0) FROM judge_calls") or 0)
        rows = self._q(f"{CALL_FIGURES} WHERE id > ? AND id <= ? GROUP BY judge_id", (after_id, last))
        return last, {int(r["judge_id"]): r for r in rows}
