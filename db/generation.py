"""Queries of the generation engine (issue 13): what a run must write, what it wrote, one stored answer's
record (to regenerate it), and a job's answers page by page (the Eval queue screen)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from db.core import StoreCore
from db.results import identity_key

if TYPE_CHECKING:
    from db.store import Page


class GenerationQueries(StoreCore):
    """Generation queries, mixed into :class:`db.store.Store`."""

    def existing_generation_keys(self, model_ids: Sequence[int], settings_hash: str) -> set[tuple[Any, ...]]:
        """The identities (as ``identity_key`` makes them) of the answers stored for these models under one
        settings hash: a resumed run writes everything else."""
        found: set[tuple[Any, ...]] = set()
        ids = sorted({int(m) for m in model_ids})
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._q(
                    f"""SELECT question_id, model_id, checkpoint_id, settings_hash, seed, sample_index, variant
                        FROM generations WHERE settings_hash = ? AND model_id IN ({marks})""",
                    [settings_hash, *chunk]):
                found.add(identity_key(row))
        return found

    def questions_of_sets(self, eval_set_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Every question row (one per wording) of these sets, in set / file order."""
        ids = [int(e) for e in eval_set_ids]
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        return self._q(f"""SELECT q.id, q.eval_set_id, e.name AS eval_set, q.key, q.paraphrase, q.category,
                                  q.system_prompt, q.text, q.meta
                           FROM questions q JOIN eval_sets e ON e.id = q.eval_set_id
                           WHERE q.eval_set_id IN ({marks}) ORDER BY q.eval_set_id, q.id""", ids)

    def condition_checkpoints(self, condition_id: int) -> list[dict[str, Any]]:
        """The checkpoints (each registered as a model) of the condition's latest finished training run,
        by step: what a checkpoint-wise evaluation answers with."""
        run = self._one("""SELECT id FROM train_runs WHERE condition_id = ? AND status = 'done'
                           ORDER BY id DESC LIMIT 1""", (condition_id,))
        if run is None:
            return []
        return self._q("""SELECT k.id, k.step, k.path, k.model_id, k.train_run_id FROM checkpoints k
                          WHERE k.train_run_id = ? AND k.model_id IS NOT NULL ORDER BY k.step""", (run["id"],))

    def active_train_jobs(self, condition_ids: Sequence[int]) -> dict[int, int]:
        """condition id -> the job of its newest queued or running training run (a generation job waits
        for it)."""
        out: dict[int, int] = {}
        for cid in condition_ids:
            row = self._one("""SELECT r.job_id FROM train_runs r JOIN jobs j ON j.id = r.job_id
                               WHERE r.condition_id = ? AND j.status IN ('queued', 'running')
                               ORDER BY r.id DESC LIMIT 1""", (int(cid),))
            if row is not None:
                out[int(cid)] = int(row["job_id"])
        return out

    def generation_record(self, generation_id: int) -> dict[str, Any] | None:
        """One stored answer with everything needed to make it again: its question, prompt, seed,
        settings, model (kind, path, source, base) and checkpoint."""
        return self._one(
            """SELECT g.id, g.question_id, g.condition_id, g.model_id, g.checkpoint_id, g.settings, g.settings_hash,
                      g.seed, g.sample_index, g.variant, g.prompt, g.response, g.n_tokens, g.study_hash, g.job_id,
                      q.key AS question_key, q.paraphrase, q.text AS question, q.system_prompt,
                      m.name AS model, m.kind AS model_kind, m.source AS model_source, m.path AS model_path,
                      m.base_model_id, b.name AS base_model, b.source AS base_source, b.path AS base_path
               FROM generations g JOIN questions q ON q.id = g.question_id
               JOIN models m ON m.id = g.model_id LEFT JOIN models b ON b.id = m.base_model_id
               WHERE g.id = ?""", (generation_id,))

    def job_answers_page(self, job_id: int, *, limit: int = 50, offset: int = 0) -> Page:
        """The answers a job wrote, in the order it wrote them: question, answer, model, settings, seed."""
        from db.store import Page

        rows = self._q(
            """SELECT g.id AS generation_id, q.key AS question_key, q.paraphrase, q.text AS question,
                      g.variant, g.sample_index, g.seed, g.settings, g.settings_hash, g.n_tokens, g.prompt,
                      g.response, m.name AS model, k.step AS checkpoint_step
               FROM generations g JOIN questions q ON q.id = g.question_id JOIN models m ON m.id = g.model_id
               LEFT JOIN checkpoints k ON k.id = g.checkpoint_id
               WHERE g.job_id = ? ORDER BY g.id LIMIT ? OFFSET ?""", (job_id, limit, offset))
        total = int(self._scalar("SELECT count(*) FROM generations WHERE job_id = ?", (job_id,)))
        return Page(rows, total, offset, limit)

    def job_answer_count(self, job_id: int) -> int:
        return int(self._scalar("SELECT count(*) FROM generations WHERE job_id = ?", (job_id,)))

    def active_jobs_like(self, kind: str, payload: dict[str, Any]) -> list[int]:
        """Queued or running jobs of ``kind`` with exactly this payload (the same run asked twice)."""
        from db.store import dumps

        payload_json = dumps(payload)
        return [int(r["id"]) for r in self._q(
            "SELECT id FROM jobs WHERE kind = ? AND payload = ? AND status IN ('queued', 'running') ORDER BY id",
            (kind, payload_json))]

    def job_metrics(self, job_ids: Sequence[int]) -> dict[int, str]:
        """job id -> the metrics JSON it last reported (tokens/s, batch size, model), for the jobs that reported
        any: the Eval queue's Tok/s column (list_jobs leaves the JSON out)."""
        ids = sorted({int(j) for j in job_ids})
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {int(r["id"]): str(r["metrics"]) for r in self._q(
            f"SELECT id, metrics FROM jobs WHERE id IN ({marks}) AND metrics IS NOT NULL", ids)}
