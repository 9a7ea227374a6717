"""Training runs, their metrics and checkpoints (issue 12), mixed into :class:`db.store.Store`.

A run's metrics are long rows of ``train_metrics`` keyed by (run, step, name): a resumed run logs
again the steps between its last checkpoint and the kill, and :meth:`TrainingQueries.log_train_metrics`
upserts them, so nothing is duplicated. This module imports neither textual nor torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from db.core import StoreCore
from db.errors import StoreError

# A run's status as it is: a job cancelled before it started, or failed for good (its worker died on
# every try) never got to write the run's own status.
EFFECTIVE_STATUS = ("CASE WHEN r.status IN ('queued', 'running') AND j.status IN ('failed', 'cancelled') "
                    "THEN j.status ELSE r.status END")
# a run with its condition, study, base model, dataset and job (the aliases the queries below use)
RUN_JOINS = """FROM train_runs r
               JOIN conditions c ON c.id = r.condition_id
               JOIN studies s ON s.id = c.study_id
               JOIN models b ON b.id = r.base_model_id
               JOIN datasets d ON d.id = r.dataset_id
               LEFT JOIN jobs j ON j.id = r.job_id"""
# a run another box made (emtui merge): the database it was merged from, and the host its job ran on there
# (NULL: made here). Its checkpoints and model are on that box.
REMOTE = """(SELECT m.source_path FROM merged_rows x JOIN merges m ON m.id = x.merge_id
             WHERE x.tbl = 'train_runs' AND x.local_id = r.id) AS merged_from,
            json_extract(r.provenance, '$.merged_from.host') AS merged_host"""
# what a run's list row shows of its last logged step
SUMMARY_METRICS = ("loss", "learning_rate", "grad_norm", "tokens_per_s", "eta_s", "kl", "epoch")


class TrainingQueries(StoreCore):
    """Training runs, metrics, checkpoints."""

    def add_train_run(self, *, condition_id: int, base_model_id: int, dataset_id: int, recipe: dict[str, Any],
                      recipe_hash: str, seed: int, study_hash: str, status: str = "queued",
                      output_dir: str | None = None, preset: str | None = None, job_id: int | None = None) -> int:
        from db.store import dumps, utc_now

        return self._insert("train_runs", {
            "condition_id": condition_id, "base_model_id": base_model_id, "dataset_id": dataset_id,
            "recipe": dumps(recipe), "recipe_hash": recipe_hash, "seed": seed, "study_hash": study_hash,
            "status": status, "output_dir": output_dir, "preset": preset, "job_id": job_id,
            "created_at": utc_now()})

    def get_model(self, model_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM models WHERE id = ?", (model_id,))

    def set_condition_model(self, condition_id: int, model_id: int) -> None:
        """The model a trained condition evaluates: its fine-tune, once trained."""
        with self.transaction():
            self.conn.execute("UPDATE conditions SET model_id = ? WHERE id = ?", (model_id, condition_id))

    def condition_train_runs(self, condition_id: int) -> list[dict[str, Any]]:
        return self._q("SELECT id, status, recipe_hash, job_id FROM train_runs WHERE condition_id = ? ORDER BY id",
                       (condition_id,))

    def find_study_dataset(self, study_id: int, name: str) -> int | None:
        """The dataset a study declares under ``name`` (its registered content hash), by id."""
        found = self._scalar(
            """SELECT d.id FROM datasets d, studies s
               WHERE s.id = ? AND d.name = ?
                 AND d.content_hash = json_extract(s.spec_json, '$.datasets."' || ? || '".content_hash')""",
            (study_id, name, name.replace('"', "")))
        return None if found is None else int(found)

    def set_train_run_job(self, run_id: int, job_id: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE train_runs SET job_id = ? WHERE id = ?", (job_id, run_id))

    def get_train_run(self, run_id: int) -> dict[str, Any] | None:
        return self._one(
            f"""SELECT r.id, r.condition_id, r.base_model_id, r.dataset_id, r.output_model_id, r.recipe, r.recipe_hash,
                      r.seed, r.study_hash, r.output_dir, r.started_at, r.finished_at, r.created_at, r.job_id,
                      r.preset, r.max_steps, r.masking, r.provenance, r.status AS own_status,
                      {EFFECTIVE_STATUS} AS status, COALESCE(r.error, j.error) AS error,
                      c.name AS condition, c.study_id, s.name AS study, b.name AS base_model,
                      b.source AS base_source, b.path AS base_path, d.name AS dataset,
                      d.content_hash AS dataset_hash, o.name AS output_model, {REMOTE}
               {RUN_JOINS}
               LEFT JOIN models o ON o.id = r.output_model_id
               WHERE r.id = ?""", (run_id,))

    def start_train_run(self, run_id: int, *, max_steps: int, output_dir: str, masking: str,
                        provenance: Mapping[str, Any]) -> None:
        """The run is training (again, when resumed: started_at is kept from the first start)."""
        from db.store import dumps, utc_now

        with self.transaction():
            self.conn.execute(
                """UPDATE train_runs SET status = 'running', max_steps = ?, output_dir = ?, masking = ?,
                          provenance = ?, error = NULL, finished_at = NULL,
                          started_at = COALESCE(started_at, ?) WHERE id = ?""",
                (max_steps, output_dir, masking, dumps(dict(provenance)), utc_now(), run_id))

    def set_train_run_max_steps(self, run_id: int, max_steps: int) -> None:
        with self.transaction():
            self.conn.execute("UPDATE train_runs SET max_steps = ? WHERE id = ?", (max_steps, run_id))

    def finish_train_run(self, run_id: int, *, status: str, error: str | None = None,
                         output_model_id: int | None = None) -> None:
        from db.store import utc_now

        if status not in ("done", "failed", "cancelled", "queued"):
            raise StoreError(f"a run cannot finish as {status!r}")
        with self.transaction():
            self.conn.execute(
                """UPDATE train_runs SET status = ?, error = ?, finished_at = ?,
                          output_model_id = COALESCE(?, output_model_id) WHERE id = ?""",
                (status, error, None if status == "queued" else utc_now(), output_model_id, run_id))

    def log_train_metrics(self, run_id: int, step: int, values: Mapping[str, float]) -> None:
        """One logging step's metrics. A step logged again (a resumed run) replaces its values.
        Non-finite values (a diverged loss) are kept out: SQLite has no NaN."""
        from db.store import utc_now

        now = utc_now()
        rows = [(run_id, step, name, float(v), now) for name, v in values.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
        if not rows:
            return
        with self.transaction():
            self.conn.executemany(
                """INSERT INTO train_metrics (train_run_id, step, name, value, at) VALUES (?, ?, ?, ?, ?)
                   ON CONFLICT (train_run_id, step, name) DO UPDATE SET value = excluded.value, at = excluded.at""",
                rows)

    def train_metric_series(self, run_ids: Sequence[int], names: Sequence[str] | None = None,
                            *, after_step: int = -1) -> dict[int, dict[str, list[tuple[int, float]]]]:
        """Per run, per metric, the (step, value) points in step order; only steps after ``after_step``
        (a screen that polls reads only what is new)."""
        out: dict[int, dict[str, list[tuple[int, float]]]] = {int(r): {} for r in run_ids}
        if not run_ids:
            return out
        marks = ",".join("?" * len(run_ids))
        sql = (f"SELECT train_run_id, name, step, value FROM train_metrics "
               f"WHERE train_run_id IN ({marks}) AND step > ?")
        params: list[Any] = [*run_ids, after_step]
        if names:
            sql += f" AND name IN ({','.join('?' * len(names))})"
            params += list(names)
        for run_id, name, step, value in self._tuples(sql + " ORDER BY train_run_id, name, step", params):
            out[run_id].setdefault(name, []).append((step, value))
        return out

    def last_train_metrics(self, run_id: int) -> dict[str, Any]:
        """The newest value of every metric the run logged, and the step it was logged at."""
        return self.last_train_metrics_of([run_id])[run_id]

    def last_train_metrics_of(self, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """:meth:`last_train_metrics` of several runs in one pass over their rows (SQLite takes a bare
        column of a ``max()`` aggregate from the row that has the maximum)."""
        out: dict[int, dict[str, Any]] = {int(r): {"step": None} for r in run_ids}
        if not run_ids:
            return out
        marks = ",".join("?" * len(run_ids))
        for run_id, name, value, step in self._tuples(
                f"""SELECT train_run_id, name, value, max(step) FROM train_metrics
                    WHERE train_run_id IN ({marks}) GROUP BY train_run_id, name""", list(run_ids)):
            last = out[run_id]
            last[name] = value
            last["step"] = step if last["step"] is None else max(last["step"], step)
        return out

    def add_checkpoint(self, *, train_run_id: int, step: int, path: str, model_id: int | None = None) -> int:
        """A saved checkpoint of a run; the same (run, step) twice returns the existing one."""
        from db.store import utc_now

        found = self._one("SELECT id FROM checkpoints WHERE train_run_id = ? AND step = ?", (train_run_id, step))
        if found:
            return int(found["id"])
        return self._insert("checkpoints", {"train_run_id": train_run_id, "step": step, "path": path,
                                            "model_id": model_id, "created_at": utc_now()})

    def run_checkpoints(self, run_id: int) -> list[dict[str, Any]]:
        return self._q("SELECT id, step, path, model_id, created_at FROM checkpoints "
                       "WHERE train_run_id = ? ORDER BY step", (run_id,))

    def train_runs_overview(self, *, study_id: int | None = None, limit: int = 200,
                            offset: int = 0) -> list[dict[str, Any]]:
        """Runs, newest first, with their last metrics (``SUMMARY_METRICS``) and checkpoint count."""
        where, params = ("WHERE c.study_id = ?", [study_id]) if study_id is not None else ("", [])
        rows = self._q(
            f"""SELECT r.id, s.name AS study, c.name AS condition, r.preset, b.name AS base_model,
                       d.name AS dataset, {EFFECTIVE_STATUS} AS status, r.seed, r.recipe_hash, r.max_steps,
                       r.masking, r.job_id, COALESCE(r.error, j.error) AS error, r.output_dir, r.started_at,
                       r.finished_at, r.created_at,
                       (SELECT count(*) FROM checkpoints k WHERE k.train_run_id = r.id) AS n_checkpoints,
                       (SELECT max(step) FROM train_metrics t WHERE t.train_run_id = r.id) AS last_step, {REMOTE}
                {RUN_JOINS}
                {where}
                ORDER BY r.id DESC LIMIT ? OFFSET ?""", [*params, limit, offset])
        lasts = self.last_train_metrics_of([int(row["id"]) for row in rows])
        for row in rows:
            last = lasts[int(row["id"])]
            row["metrics"] = {k: last[k] for k in SUMMARY_METRICS if k in last}
        return rows

    def list_train_runs(self, *, limit: int = 200, offset: int = 0) -> Any:
        """Runs as a :class:`db.store.Page` (for listings): newest first."""
        from db.store import Page

        rows = self._q(
            f"""SELECT r.id, c.name AS condition, b.name AS base_model, d.name AS dataset,
                       {EFFECTIVE_STATUS} AS status, r.seed, r.recipe_hash, r.started_at, r.finished_at,
                       (SELECT count(*) FROM checkpoints k WHERE k.train_run_id = r.id) AS n_checkpoints,
                       (SELECT max(step) FROM train_metrics t WHERE t.train_run_id = r.id) AS last_step
                {RUN_JOINS}
                ORDER BY r.id DESC LIMIT ? OFFSET ?""", (limit, offset))
        return Page(rows, int(self._scalar("SELECT count(*) FROM train_runs")), offset, limit)
