"""Queries of Bedrock batch judging (issue 14; engine/judging/bedrock_batch.py): one ``judge_batches`` row per
AWS batch job — written, with the keys it covers (``judge_batch_records``), *before* the job is created — its
AWS state as last polled, and whether its output has been read into ``judgment_scores``.

A batch is *open* until its output is in (``ingested = 0``): the keys of an open batch are not pending
(db/judging.py's ``PENDING``), so neither another batch nor the on-demand panel sends them again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from db.core import StoreCore

BATCH_FIELDS = ("job_id", "arn", "status", "message", "processed", "ingested", "stop_asked")


class JudgeBatchQueries(StoreCore):
    """Batch judging queries, mixed into :class:`db.store.Store`."""

    def add_judge_batch(self, *, study_id: int, judge_id: int, rubric_id: int, job_id: int | None, name: str,
                        model: str, invocation: str, region: str | None, role_arn: str, input_uri: str,
                        output_uri: str, records: Iterable[tuple[str, int, str]]) -> int:
        """A batch about to be submitted, and its (record id, generation id, metric) keys, in one transaction."""
        from db.store import utc_now

        rows = list(records)
        now = utc_now()
        with self.transaction(), self._lock:
            cur = self.conn.execute(
                """INSERT INTO judge_batches (study_id, judge_id, rubric_id, job_id, name, model, invocation, region,
                                              role_arn, input_uri, output_uri, records, created_at, updated_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                (study_id, judge_id, rubric_id, job_id, name, model, invocation, region, role_arn, input_uri,
                 output_uri, len(rows), now, now))
            batch_id = int(cur.lastrowid or 0)
            self.conn.executemany(
                "INSERT INTO judge_batch_records (batch_id, record_id, generation_id, metric) VALUES (?, ?, ?, ?)",
                [(batch_id, rid, int(gid), metric) for rid, gid, metric in rows])
        return batch_id

    def update_judge_batch(self, batch_id: int, **fields: Any) -> None:
        """Set some of :data:`BATCH_FIELDS` of a batch (its ARN once created, its status as polled, ...)."""
        from db.store import utc_now

        unknown = [k for k in fields if k not in BATCH_FIELDS]
        if unknown:
            raise ValueError(f"judge_batches has no settable field {unknown[0]!r}")
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self.transaction(), self._lock:
            self.conn.execute(f"UPDATE judge_batches SET {sets}, updated_at = ? WHERE id = ?",
                              (*fields.values(), utc_now(), batch_id))

    def get_judge_batch(self, batch_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM judge_batches WHERE id = ?", (batch_id,))

    def open_judge_batches(self, study_id: int, judge_id: int, rubric_id: int) -> list[dict[str, Any]]:
        """The judge's batches on this study and rubric whose output is not in yet (oldest first)."""
        return self._q("""SELECT * FROM judge_batches WHERE study_id = ? AND judge_id = ? AND rubric_id = ?
                          AND ingested = 0 ORDER BY id""", (study_id, judge_id, rubric_id))

    def judge_batch_records(self, batch_id: int) -> list[dict[str, Any]]:
        """A batch's keys: record id, generation id, metric."""
        return self._q("""SELECT record_id, generation_id, metric FROM judge_batch_records WHERE batch_id = ?
                          ORDER BY generation_id, metric""", (batch_id,))

    def judge_items(self, generation_ids: Sequence[int]) -> list[dict[str, Any]]:
        """What a judge is shown of these answers (as :meth:`pending_judge_items` gives it), judged or not: a
        batch's input made again."""
        ids = [int(g) for g in generation_ids]
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):  # SQLite's limit on bound parameters
            chunk = ids[start:start + 500]
            out += self._q(
                f"""SELECT g.id AS generation_id, q.text AS question, g.variant, g.settings, g.response
                    FROM generations g JOIN questions q ON q.id = g.question_id
                    WHERE g.id IN ({','.join('?' * len(chunk))}) ORDER BY g.id""", chunk)
        return out

    def latest_judge_batches(self, judge_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """Per judge, its latest batch (an open one before any ended one): what the Judges screen says of it."""
        ids = [int(j) for j in judge_ids]
        if not ids:
            return {}
        rows = self._q(
            f"""SELECT judge_id, id, arn, name, status, message, records, processed, ingested FROM judge_batches
                WHERE judge_id IN ({','.join('?' * len(ids))}) ORDER BY ingested DESC, id""", ids)
        return {int(r["judge_id"]): r for r in rows}  # the last row of each judge wins
