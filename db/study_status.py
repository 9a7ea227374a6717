"""Queries of a study's progress through its chain (``emtui run`` / ``emtui status``): its jobs, its answers
and judge results per condition, why results failed, and what its judge calls cost. Read-only."""

from __future__ import annotations

from typing import Any

from db.core import StoreCore


class StudyStatusQueries(StoreCore):
    """A study's progress, mixed into :class:`db.store.Store`."""

    def study_jobs(self, study_hash: str, *, limit: int = 200) -> list[dict[str, Any]]:
        """The jobs queued for the study (by its hash), oldest first: kind, state, attempts, error, dependencies
        (comma-separated ids), payload and result."""
        rows = self._q(
            """SELECT j.id, j.kind, j.status, j.attempts, j.max_attempts, j.error, j.failed_because_of, j.payload,
                      j.result, j.progress_done, j.progress_total, j.created_at, j.finished_at,
                      (SELECT group_concat(d.depends_on) FROM job_deps d WHERE d.job_id = j.id) AS depends_on
               FROM jobs j WHERE j.study_hash = ? ORDER BY j.id DESC LIMIT ?""", (study_hash, limit))
        return rows[::-1]

    def latest_summary_job(self, study_hash: str) -> dict[str, Any] | None:
        """The study's newest finished ``summary`` job (the chain's last stage): id, when, its stored result."""
        return self._one(
            """SELECT id, finished_at, result FROM jobs
               WHERE status = 'done' AND kind = 'summary' AND study_hash = ? ORDER BY id DESC LIMIT 1""",
            (study_hash,))

    def study_answer_counts(self, study_id: int) -> dict[int, int]:
        """Answers stored per condition id."""
        return {int(r["condition_id"]): int(r["n"]) for r in self._q(
            """SELECT g.condition_id, count(*) AS n FROM generations g JOIN conditions c ON c.id = g.condition_id
               WHERE c.study_id = ? GROUP BY g.condition_id""", (study_id,))}

    def study_result_counts_by_judge(self, study_id: int, rubric_id: int) -> list[dict[str, Any]]:
        """Per (condition, judge): the judge's results on the rubric (one per answer and metric) and how many of
        them failed (no score: the reply is kept with the reason)."""
        return self._q(
            """SELECT g.condition_id, j.judge_id, count(*) AS results, sum(s.score IS NULL) AS failed
               FROM judgment_scores s JOIN judgments j ON j.id = s.judgment_id
               JOIN generations g ON g.id = j.generation_id JOIN conditions c ON c.id = g.condition_id
               WHERE c.study_id = ? AND j.rubric_id = ? GROUP BY g.condition_id, j.judge_id""",
            (study_id, rubric_id))

    def study_failure_reasons(self, study_id: int, rubric_id: int) -> list[dict[str, Any]]:
        """Per condition, why results failed (the error text) and how often, commonest first."""
        return self._q(
            """SELECT g.condition_id, IFNULL(s.error, IFNULL(j.error, 'no score')) AS reason, count(*) AS n
               FROM judgment_scores s JOIN judgments j ON j.id = s.judgment_id
               JOIN generations g ON g.id = j.generation_id JOIN conditions c ON c.id = g.condition_id
               WHERE c.study_id = ? AND j.rubric_id = ? AND s.score IS NULL
               GROUP BY g.condition_id, reason ORDER BY n DESC, reason""", (study_id, rubric_id))

    def study_judge_call_totals(self, study_id: int) -> dict[str, Any]:
        """The study's judge calls: attempts, those sent (paid), tokens and cost in USD."""
        row = self._one(
            """SELECT count(*) AS calls, IFNULL(sum(k.sent), 0) AS sent,
                      IFNULL(sum(k.input_tokens), 0) + IFNULL(sum(k.output_tokens), 0) AS tokens,
                      IFNULL(sum(k.cost_usd), 0.0) AS cost_usd
               FROM judge_calls k JOIN generations g ON g.id = k.generation_id
               JOIN conditions c ON c.id = g.condition_id WHERE c.study_id = ?""", (study_id,))
        return dict(row or {"calls": 0, "sent": 0, "tokens": 0, "cost_usd": 0.0})

    def latest_train_runs(self, study_id: int) -> dict[int, dict[str, Any]]:
        """Each condition's newest training run: id, status (its job's when it has one), planned steps, error."""
        rows = self._q(
            """SELECT r.id, r.condition_id, r.max_steps, r.recipe_hash,
                      CASE WHEN r.status IN ('queued', 'running') AND jb.status IN ('failed', 'cancelled')
                           THEN jb.status ELSE r.status END AS status,
                      COALESCE(r.error, jb.error) AS error
               FROM train_runs r JOIN conditions c ON c.id = r.condition_id LEFT JOIN jobs jb ON jb.id = r.job_id
               WHERE c.study_id = ? ORDER BY r.id""", (study_id,))
        return {int(r["condition_id"]): r for r in rows}
