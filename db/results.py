"""Queries over results: generations, judgments and their scores.

:class:`ResultsQueries` is a mixin of :class:`db.store.Store` built on the store's core
(:class:`db.core.StoreCore`: ``_q``/``_one``/``_scalar``/``_insert``, ``db``, ``conn``, ``_lock``,
``transaction``).
Importers write through it now; the generation and judging engines later.

Conventions the writers keep and the readers rely on:
- a generation's identity is (question, model, checkpoint, settings hash, seed, sample
  index); inserting one that exists is a no-op, so re-running never duplicates;
- a judgment's identity is (generation, judge, rubric), likewise;
- a judgment writes one ``judgment_scores`` row per metric of its rubric, with a NULL
  score when that metric is missing (a failed or unparseable score), never a zero.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from db import score_read
from db.core import StoreCore, inserted_id

if TYPE_CHECKING:
    from db.store import Page

GENERATION_COLUMNS = ("question_id", "condition_id", "model_id", "checkpoint_id", "settings", "settings_hash",
                      "seed", "sample_index", "variant", "prompt", "response", "n_tokens", "study_hash", "job_id",
                      "created_at")


def identity_key(row: dict[str, Any]) -> tuple[Any, ...]:
    """A generation's identity, as the ``generations_identity`` index sees it."""
    cp, seed = row.get("checkpoint_id"), row.get("seed")
    return (int(row["question_id"]), int(row["model_id"]), 0 if cp is None else int(cp),
            str(row["settings_hash"]), -1 if seed is None else int(seed), int(row.get("sample_index") or 0),
            str(row.get("variant") or ""))



# the summary's judging rows (engine/results/judge_failures.py); also read by the tests that check which
# indexes serve them (EXPLAIN QUERY PLAN). {judges}: one ? per judge id, then the study id twice.
JUDGING_COUNTS = """
    SELECT a.judge_id, a.condition_id, a.answers - IFNULL(f.failed, 0) AS judged, IFNULL(f.failed, 0) AS failed
    FROM (SELECT k.id AS judge_id, c.id AS condition_id,
                 sum(EXISTS (SELECT 1 FROM judgments j WHERE j.generation_id = g.id AND j.judge_id = k.id)) AS answers
          FROM judges k, conditions c JOIN generations g ON g.condition_id = c.id
          WHERE k.id IN ({judges}) AND c.study_id = ?
          GROUP BY k.id, c.name) a
    LEFT JOIN (SELECT j.judge_id, g.condition_id, count(DISTINCT j.generation_id) AS failed
               FROM conditions c JOIN generations g ON g.condition_id = c.id
               JOIN judgments j ON j.generation_id = g.id
               WHERE c.study_id = ? AND j.status = 'failed'
               GROUP BY j.judge_id, g.condition_id) f
    ON f.judge_id = a.judge_id AND f.condition_id = a.condition_id
    ORDER BY a.judge_id, a.condition_id"""
FAILURE_ERRORS = """
    SELECT j.judge_id, g.condition_id, j.error, count(*) AS n
    FROM conditions c JOIN generations g ON g.condition_id = c.id
    JOIN judgments j ON j.generation_id = g.id
    WHERE c.study_id = ? AND j.status = 'failed'
    GROUP BY j.judge_id, g.condition_id, j.error"""

class ResultsQueries(StoreCore):
    """Results queries, mixed into :class:`db.store.Store`."""

    # -- studies ------------------------------------------------------------------------------

    def find_study_by_hash(self, spec_hash: str, *, origin: str | None = None) -> dict[str, Any] | None:
        """The first study with this spec hash (and origin, when given), or None."""
        if origin is None:
            return self._one("SELECT * FROM studies WHERE spec_hash = ? ORDER BY id LIMIT 1", (spec_hash,))
        return self._one("SELECT * FROM studies WHERE spec_hash = ? AND origin = ? ORDER BY id LIMIT 1",
                         (spec_hash, origin))

    def add_em_rule(self, study_id: int, em: dict[str, Any], *, source: str) -> int:
        """Record an EM rule for a study (it is then the rule in force); returns its id."""
        from db.store import dumps, utc_now

        return self._insert("study_em_rules", {"study_id": study_id, "em": dumps(em),
                                               "source": source, "set_at": utc_now()})

    def em_rules(self, study_id: int) -> list[dict[str, Any]]:
        """A study's EM rules, oldest first: id, em (a dict), source, set_at. The last is in force."""
        import json

        rows = self._q("SELECT id, em, source, set_at FROM study_em_rules WHERE study_id = ? ORDER BY id",
                       (study_id,))
        for r in rows:
            r["em"] = json.loads(r["em"])
        return rows

    # -- generations ------------------------------------------------------------------------------

    def insert_generations(self, rows: Sequence[dict[str, Any]], *, return_ids: bool = True) -> list[int]:
        """Insert generations in bulk; returns their ids in the order given (``return_ids=False``: returns
        nothing and skips reading them back — the generation engine's batches, which would otherwise read
        every answer of the model again per batch).

        A row whose identity exists already is left as it is (its existing id is returned),
        so a re-import or a resumed job never duplicates. ``settings`` may be a dict (stored
        as canonical JSON). Run it inside the caller's transaction to make it all-or-nothing.
        """
        from db.store import dumps, utc_now

        if not rows:
            return []
        now = utc_now()
        clean: list[dict[str, Any]] = []
        for r in rows:
            unknown = set(r) - set(GENERATION_COLUMNS)
            if unknown:
                raise ValueError(f"insert_generations: unknown column(s) {', '.join(sorted(unknown))}")
            row = {k: r.get(k) for k in GENERATION_COLUMNS}
            if not isinstance(row["settings"], str):
                row["settings"] = dumps(row["settings"] or {})
            row["sample_index"] = row["sample_index"] or 0
            row["variant"] = row["variant"] or ""
            row["created_at"] = row["created_at"] or now
            clean.append(row)
        # a database kept at an older schema (tests of migrations write through it) has no variant column
        has_variant = any(c["name"] == "variant" for c in self._q("PRAGMA table_info(generations)"))
        if not has_variant:
            if any(r["variant"] for r in clean):
                raise ValueError("insert_generations: this database's schema has no answer variants")
            clean = [{k: v for k, v in r.items() if k != "variant"} for r in clean]
        with self.transaction():
            self.db["generations"].insert_all(clean, ignore=True, batch_size=500)
            if not return_ids:
                return []
            wanted = {identity_key(r) for r in clean}
            ids: dict[tuple[Any, ...], int] = {}
            model_ids = sorted({int(r["model_id"]) for r in clean})
            for start in range(0, len(model_ids), 500):
                chunk = model_ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                for g in self._q(
                        f"""SELECT id, question_id, model_id, checkpoint_id, settings_hash, seed, sample_index,
                                   {"variant" if has_variant else "''"} AS variant
                            FROM generations WHERE model_id IN ({marks})""", chunk):
                    key = identity_key(g)
                    if key in wanted:
                        ids[key] = int(g["id"])
        return [ids[identity_key(r)] for r in clean]

    # -- judgments ----------------------------------------------------------------------------------

    def insert_judgments(self, items: Iterable[dict[str, Any]]) -> list[int]:
        """Insert judgments with their per-metric scores; returns the judgment ids in order.

        Each item: ``generation_id``, ``judge_id``, ``rubric_id``, optional ``status``
        ('ok' | 'failed'), ``raw_output``, ``error``, ``study_hash``, ``job_id``,
        ``input_tokens``, ``output_tokens``, ``latency_ms``, and ``scores``: a mapping
        metric -> score, or metric -> (score, raw), where score None means missing.
        A judgment that exists already (same generation, judge, rubric) is left as it is.
        """
        import json

        from db.store import utc_now

        now = utc_now()
        out: list[int] = []
        rubric_metrics: dict[int, set[str]] = {}
        with self.transaction():
            with self._lock:
                conn = self.conn
                for item in items:
                    key = (int(item["generation_id"]), int(item["judge_id"]), int(item["rubric_id"]))
                    if key[2] not in rubric_metrics:
                        row = conn.execute("SELECT metrics FROM rubrics WHERE id = ?", (key[2],)).fetchone()
                        rubric_metrics[key[2]] = {m["name"] for m in json.loads(row[0] or "[]")} if row else set()
                    unknown = set(item.get("scores") or {}) - rubric_metrics[key[2]]
                    if unknown:
                        raise ValueError(f"insert_judgments: metric(s) {', '.join(sorted(map(str, unknown)))} "
                                         f"are not metrics of rubric {key[2]}")
                    cur = conn.execute(
                        """INSERT INTO judgments (generation_id, judge_id, rubric_id, status, raw_output, error,
                                                  study_hash, job_id, input_tokens, output_tokens, latency_ms,
                                                  created_at)
                           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                           ON CONFLICT (generation_id, judge_id, rubric_id) DO NOTHING""",
                        (*key, item.get("status", "ok"), item.get("raw_output"), item.get("error"),
                         item.get("study_hash"), item.get("job_id"), item.get("input_tokens"),
                         item.get("output_tokens"), item.get("latency_ms"), item.get("created_at") or now))
                    if cur.rowcount == 1:
                        jid = inserted_id(cur)
                        scores = []
                        for metric, value in (item.get("scores") or {}).items():
                            score, raw = value if isinstance(value, tuple) else (value, None)
                            scores.append((jid, str(metric), None if score is None else float(score), raw))
                        conn.executemany(
                            "INSERT INTO judgment_scores (judgment_id, metric, score, raw) VALUES (?, ?, ?, ?)",
                            scores)
                    else:
                        jid = int(conn.execute(
                            "SELECT id FROM judgments WHERE generation_id = ? AND judge_id = ? AND rubric_id = ?",
                            key).fetchone()[0])
                    out.append(jid)
        return out

    # -- reading results ------------------------------------------------------------------------------

    def answer_scores(self, study_id: int) -> list[dict[str, Any]]:
        """One row per (generation, judge, metric) score of a study: what statistics consume.

        Columns: generation_id, condition_id, condition, model_id, question_id, question_key,
        paraphrase, category, sample_index, judge_id, judge, judge_model, rubric_id,
        judgment_id, status, metric, score. A NULL score is a missing judgment (never a zero).
        A generation a judge has not judged yet has no rows for that judge.
        """
        return self._q(
            """SELECT g.id AS generation_id, c.id AS condition_id, c.name AS condition, g.model_id,
                      q.id AS question_id, q.key AS question_key, q.paraphrase, q.category, g.sample_index,
                      jd.id AS judge_id, jd.name AS judge, jd.model AS judge_model, j.rubric_id,
                      j.id AS judgment_id, j.status, s.metric, s.score
               FROM generations g
               JOIN conditions c ON c.id = g.condition_id
               JOIN questions q ON q.id = g.question_id
               JOIN judgments j ON j.generation_id = g.id
               JOIN judges jd ON jd.id = j.judge_id
               JOIN judgment_scores s ON s.judgment_id = j.id
               WHERE c.study_id = ?
               ORDER BY c.id, g.id, jd.id, s.metric""", (study_id,))

    def study_result_counts(self, study_id: int) -> dict[str, int]:
        """How much a study holds: conditions, answers, judges, judgments, scores, missing scores."""
        row = self._one(
            """SELECT
                 (SELECT count(*) FROM conditions c WHERE c.study_id = :s) AS conditions,
                 (SELECT count(*) FROM generations g JOIN conditions c ON c.id = g.condition_id
                   WHERE c.study_id = :s) AS answers,
                 (SELECT count(*) FROM study_judges sj WHERE sj.study_id = :s) AS judges,
                 (SELECT count(*) FROM judgments j JOIN generations g ON g.id = j.generation_id
                   JOIN conditions c ON c.id = g.condition_id WHERE c.study_id = :s) AS judgments,
                 (SELECT count(*) FROM judgments j JOIN generations g ON g.id = j.generation_id
                   JOIN conditions c ON c.id = g.condition_id
                   WHERE c.study_id = :s AND j.status = 'failed') AS failed_judgments,
                 (SELECT count(*) FROM judgment_scores x JOIN judgments j ON j.id = x.judgment_id
                   JOIN generations g ON g.id = j.generation_id JOIN conditions c ON c.id = g.condition_id
                   WHERE c.study_id = :s) AS scores,
                 (SELECT count(*) FROM judgment_scores x JOIN judgments j ON j.id = x.judgment_id
                   JOIN generations g ON g.id = j.generation_id JOIN conditions c ON c.id = g.condition_id
                   WHERE c.study_id = :s AND x.score IS NULL) AS missing_scores""", {"s": study_id})
        return {k: int(v) for k, v in (row or {}).items()}

    def generation_judgments(self, generation_id: int) -> list[dict[str, Any]]:
        """Every score of one answer with the raw outputs behind it: one row per (judgment, metric)
        with judge, judge_model, status, raw_output, error, metric, score, raw (NULL metric when a
        judgment recorded no scores)."""
        return self._q(
            """SELECT j.id AS judgment_id, jd.id AS judge_id, jd.name AS judge, jd.model AS judge_model,
                      j.rubric_id, j.status, j.raw_output, j.error, s.metric, s.score, s.raw
               FROM judgments j JOIN judges jd ON jd.id = j.judge_id
               LEFT JOIN judgment_scores s ON s.judgment_id = j.id
               WHERE j.generation_id = ? ORDER BY jd.id, j.id, s.metric""", (generation_id,))

    def answers_page(self, condition_id: int, *, limit: int = 50, offset: int = 0) -> Page:
        """One page of a condition's answers for drill-down.

        Each row: generation_id, question_key, paraphrase, category, question, sample_index,
        model, response, ``judgments`` (a list, by judge id, of {judge_id, judge, judge_model,
        status, raw_output, error, scores: {metric: score}}) and ``scores`` ({judge name:
        {metric: score}}; a judge name used twice is suffixed with '#<judge id>').
        """
        from db.store import Page

        rows = self._q(
            """SELECT g.id AS generation_id, q.key AS question_key, q.paraphrase, q.category, q.text AS question,
                      g.sample_index, m.name AS model, g.response
               FROM generations g
               JOIN questions q ON q.id = g.question_id
               JOIN models m ON m.id = g.model_id
               WHERE g.condition_id = ?
               ORDER BY q.category, q.key, q.paraphrase, g.sample_index, g.id LIMIT ? OFFSET ?""",
            (condition_id, limit, offset))
        total = int(self._scalar(
            "SELECT count(*) FROM generations WHERE condition_id = ?", (condition_id,)))
        by_gen: dict[int, dict[str, Any]] = {r["generation_id"]: r for r in rows}
        for r in rows:
            r["judgments"], r["scores"] = [], {}
        if by_gen:
            ids = list(by_gen)
            marks = ",".join("?" * len(ids))
            judgments = self._q(
                f"""SELECT j.id, j.generation_id, jd.id AS judge_id, jd.name AS judge, jd.model AS judge_model,
                           j.status, j.raw_output, j.error
                    FROM judgments j JOIN judges jd ON jd.id = j.judge_id
                    WHERE j.generation_id IN ({marks}) ORDER BY j.generation_id, jd.id, j.id""", ids)
            scores: dict[int, dict[str, float | None]] = {}
            for s in self._q(
                    f"""SELECT s.judgment_id, s.metric, s.score FROM judgment_scores s
                        JOIN judgments j ON j.id = s.judgment_id
                        WHERE j.generation_id IN ({marks}) ORDER BY s.metric""", ids):
                scores.setdefault(s["judgment_id"], {})[s["metric"]] = s["score"]
            names: dict[str, set[int]] = {}
            for j in judgments:
                names.setdefault(j["judge"], set()).add(j["judge_id"])
            for j in judgments:
                jscores = scores.get(j.pop("id"), {})
                row = by_gen[j.pop("generation_id")]
                row["judgments"].append({**j, "scores": jscores})
                label = j["judge"] if len(names[j["judge"]]) == 1 else f"{j['judge']}#{j['judge_id']}"
                row["scores"].setdefault(label, {}).update(jscores)
        return Page(rows, total, offset, limit)


    # -- columnar reads for statistics ------------------------------------------------------------


    def study_answer_columns(self, study_id: int) -> list:
        """Every answer of a study, by id, as six int64 arrays: generation id, condition id,
        model id, checkpoint id (0 = none), question id and trigger — what breakdowns group
        by. ``trigger`` is 1 for an answer to the question with the trigger: its variant is
        ``trigger`` (what the generation engine writes), or, in imported and synthetic rows, the
        generation settings name a trigger (``settings.trigger`` present and not false/empty)."""
        import numpy as np

        names = ("gen", "cond", "model", "ckpt", "question", "trig")
        with self._lock:
            columns = score_read.int_columns(self.conn, """
                SELECT g.id AS gen, g.condition_id AS cond, g.model_id AS model, IFNULL(g.checkpoint_id, 0) AS ckpt,
                       g.question_id AS question,
                       CASE WHEN g.variant = 'trigger' THEN 1
                            WHEN json_extract(g.settings, '$.sampler') IS NOT NULL THEN 0  -- ours: the variant says
                            WHEN IFNULL(json_extract(g.settings, '$.trigger'), 0) IN (0, '') THEN 0 ELSE 1 END AS trig
                FROM generations g JOIN conditions c ON c.id = g.condition_id WHERE c.study_id = ?""",
                (study_id,), names)
        order = np.argsort(columns[0], kind="stable")  # group_concat keeps no promised order
        return [c[order] for c in columns]

    def _study_answers(self, study_id: int) -> tuple[int, int]:
        """(the study's answers, every answer in the database)."""
        (n_study, n_all), = self._tuples(
            """SELECT (SELECT count(*) FROM generations g JOIN conditions c ON c.id = g.condition_id
                       WHERE c.study_id = ?), (SELECT count(*) FROM generations)""", (study_id,))
        return n_study, n_all

    def read_scores(self, study_id: int, metrics: Sequence[str], *, plan: str | None = None,
                    threads: int | None = None) -> score_read.ScoreRead:
        """Start reading a study's scores of ``metrics``; ``.result()`` gives them as
        :class:`~db.score_read.ScoreColumns` (metric index, judge, generation, score, refused).
        A study that holds every answer in the database is read by the "all" plan, one with at
        least a fifth of them by the "scan" plan, a smaller one by the "index" plan (``plan``
        overrides; see :func:`db.score_read._source`). Under the "all" plan, scores that a
        concurrent writer adds for another study's new answers come back too: callers keep
        the scores of the answers they know. A large scan (at least
        :data:`~db.score_read.PARALLEL_MIN_SCORES` scores expected) is read in parts by
        ``threads`` threads (default: one per CPU, at most 4) while the caller goes on;
        otherwise the read happens in ``result()``."""
        n_study, n_all = self._study_answers(study_id)
        share = n_study / n_all if n_all else 0.0
        plan = plan or ("all" if n_study == n_all else "scan" if share >= 0.2 else "index")
        if plan not in score_read.PLANS:
            raise ValueError(f"plan must be one of {', '.join(score_read.PLANS)}; got {plan!r}")
        parts: list[tuple[int, int]] = []
        n = threads if threads is not None else score_read.default_threads()
        if metrics and plan != "index" and str(self.path) != ":memory:":
            # one aggregate per query: SQLite then reads one end of the b-tree for each
            (first, last), = self._tuples(
                "SELECT (SELECT min(rowid) FROM judgment_scores), (SELECT max(rowid) FROM judgment_scores)")
            if first is not None and (last - first + 1) * share >= score_read.PARALLEL_MIN_SCORES:
                parts = score_read.split_rowids(first, last, n)
        return score_read.ScoreRead(self.conn, self._lock, str(self.path), study_id, metrics, plan,
                                    parts, threads=n)

    def answer_group_labels(self, study_id: int) -> dict[str, dict[int, Any]]:
        """Names of what a study's answers are grouped by in breakdowns: ``models`` id -> name,
        ``checkpoints`` id -> step, ``questions`` id -> (key, category)."""
        in_study = """SELECT DISTINCT g.{col} FROM generations g JOIN conditions c ON c.id = g.condition_id
                      WHERE c.study_id = ?"""
        models = self._q(f"SELECT id, name FROM models WHERE id IN ({in_study.format(col='model_id')})",
                         (study_id,))
        checkpoints = self._q(
            f"SELECT id, step FROM checkpoints WHERE id IN ({in_study.format(col='checkpoint_id')})", (study_id,))
        questions = self._q(
            f"""SELECT id, key, paraphrase, category FROM questions
                WHERE id IN ({in_study.format(col='question_id')})""", (study_id,))
        return {"models": {r["id"]: r["name"] for r in models},
                "checkpoints": {r["id"]: r["step"] for r in checkpoints},
                "questions": {r["id"]: (r["key"] if not r["paraphrase"] else f"{r['key']}#{r['paraphrase']}",
                                        r["category"]) for r in questions}}

    def study_judging_counts(self, study_id: int, judge_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Per judge (of ``judge_ids``) and condition of a study: ``judged`` (answers the judge has judgments
        of, none failed) and ``failed`` (answers with a failed judgment of the judge: no reply, or a reply a
        metric could not be read from). The condition's other answers are not judged yet by that judge.

        Read from indexes alone: whether a judge has any judgment of an answer is one seek into the
        judgments' unique index (answer, judge, rubric) per judge and answer, counted in the indexes' order
        (no sort, no row of the table read); the failed judgments come from their partial index
        ``judgments_failed``, which holds nothing else (see :data:`JUDGING_COUNTS`)."""
        if not judge_ids:
            return []
        marks = ", ".join("?" * len(judge_ids))
        return self._q(JUDGING_COUNTS.format(judges=marks), (*map(int, judge_ids), study_id, study_id))

    def study_failure_errors(self, study_id: int) -> list[dict[str, Any]]:
        """Per judge, condition and error text, how many of the study's judgments failed with it
        (``judge_id, condition_id, error, n``; the error is the judge's or the parser's words,
        untrusted). Only the failed judgments are read (their partial index ``judgments_failed``)."""
        return self._q(FAILURE_ERRORS, (study_id,))

    def study_label_verdicts(self, study_id: int, metric: str, words: Sequence[str]) -> list[tuple[int, int, int]]:
        """(judge id, generation id, index into ``words``) of each of the study's ``metric`` results that
        has no score because the judge answered one of ``words`` (a rubric's special words, such as
        UNKNOWN): the judge's reply, read as :data:`db.score_read.VERDICT_SQL` reads it, starts with
        the word. A result recorded as a failure (its own error) is not a verdict."""
        if not words:
            return []
        pick = " ".join(f"WHEN {score_read.VERDICT_SQL} LIKE ? ESCAPE '\\' THEN {i}" for i in range(len(words)))
        params = [w.upper().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for w in words]
        with self._lock:
            return [tuple(r) for r in self.conn.execute(
                f"""SELECT judge_id, generation_id, word FROM (
                      SELECT j.judge_id, j.generation_id, CASE {pick} END AS word
                      FROM judgment_scores s
                      JOIN judgments j ON j.id = s.judgment_id
                      JOIN generations g ON g.id = j.generation_id
                      JOIN conditions c ON c.id = g.condition_id
                      WHERE c.study_id = ? AND s.metric = ? AND s.score IS NULL AND s.error IS NULL)
                    WHERE word IS NOT NULL""", (*params, study_id, metric)).fetchall()]

    def study_metrics(self, study_id: int) -> list[str]:
        """The metrics of the rubrics a study's judgments used, in name order.

        A judgment's scores are always metrics of its rubric (``insert_judgments`` checks it),
        so this is every metric with scores, read from the few rubric rows instead of a scan
        of every score."""
        import json

        return sorted({m["name"] for r in self.study_rubrics(study_id) for m in json.loads(r["metrics"] or "[]")})

    def study_rubrics(self, study_id: int) -> list[dict[str, Any]]:
        """The rubrics a study's judgments used (their metrics carry scale and direction)."""
        n_study, n_all = self._study_answers(study_id)
        if n_study == n_all:  # every judgment is the study's: a rubric's first one will do
            return self._q(
                """SELECT r.* FROM rubrics r WHERE EXISTS (SELECT 1 FROM judgments j WHERE j.rubric_id = r.id)
                   ORDER BY r.id""")
        return self._q(
            """SELECT r.* FROM rubrics r WHERE r.id IN (
                 SELECT DISTINCT j.rubric_id FROM judgments j
                 JOIN generations g ON g.id = j.generation_id
                 JOIN conditions c ON c.id = g.condition_id WHERE c.study_id = ?) ORDER BY r.id""",
            (study_id,))

    def study_condition_rows(self, study_id: int) -> list[dict[str, Any]]:
        """A study's conditions with their role (from the recipe json) and answer counts."""
        return self._q(
            """SELECT c.id, c.name, json_extract(c.recipe, '$.role') AS role,
                      (SELECT count(*) FROM generations g WHERE g.condition_id = c.id) AS n_generations
               FROM conditions c WHERE c.study_id = ? ORDER BY c.id""", (study_id,))

    def scan_scores(self) -> int:
        """A bare scan of every score with its condition and judge: the baseline summaries are
        benchmarked against (bench/summary_scale.py). Returns the number of rows read."""
        rows = self._tuples("""SELECT g.condition_id, j.judge_id, j.generation_id, s.metric, s.score
                               FROM judgment_scores s
                               JOIN judgments j ON j.id = s.judgment_id
                               JOIN generations g ON g.id = j.generation_id""")
        return len(rows)

    # -- export and figures -------------------------------------------------------------------------

    def export_answers_page(self, *, study_id: int | None = None, after_id: int = 0,
                            limit: int = 500) -> list[dict[str, Any]]:
        """One page of answers with their provenance, for ``emtui export``: keyset pagination by
        generation id (pass the last row's ``generation_id`` as ``after_id``), so a million answers
        stream in constant memory. Only one study's answers with ``study_id``; otherwise every
        answer, those outside any study included (study and condition NULL).

        Columns: generation_id, study, study_hash (the hash the answer was made under, else its
        study's), condition, model, model_kind, model_source, checkpoint_step, checkpoint_path,
        settings (JSON text), settings_hash, seed, sample_index, variant, eval_set, question_key,
        paraphrase, category, system_prompt, question, prompt, response, n_tokens, created_at."""
        where = "g.id > ?"
        params: list[Any] = [after_id]
        if study_id is not None:
            where += " AND g.condition_id IN (SELECT id FROM conditions WHERE study_id = ?)"
            params.append(study_id)
        return self._q(
            f"""SELECT g.id AS generation_id, s.name AS study, COALESCE(g.study_hash, s.spec_hash) AS study_hash,
                       c.name AS condition, m.name AS model, m.kind AS model_kind, m.source AS model_source,
                       k.step AS checkpoint_step, k.path AS checkpoint_path, g.settings, g.settings_hash,
                       g.seed, g.sample_index, g.variant, e.name AS eval_set, q.key AS question_key, q.paraphrase,
                       q.category, q.system_prompt, q.text AS question, g.prompt, g.response, g.n_tokens,
                       g.created_at
                FROM generations g
                JOIN questions q ON q.id = g.question_id
                JOIN eval_sets e ON e.id = q.eval_set_id
                JOIN models m ON m.id = g.model_id
                LEFT JOIN checkpoints k ON k.id = g.checkpoint_id
                LEFT JOIN conditions c ON c.id = g.condition_id
                LEFT JOIN studies s ON s.id = c.study_id
                WHERE {where}
                ORDER BY g.id LIMIT ?""", (*params, limit))

    def export_judgments(self, generation_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Every judgment of these answers with its judge and rubric and, under ``scores``, a list
        of {metric, score, raw} (score None = missing). Ordered by generation, judge, judgment.

        Columns: judgment_id, generation_id, judge_id, judge, judge_provider, judge_model,
        judge_params_hash, rubric_id, rubric, rubric_hash, status, error, raw_output, created_at."""
        ids = [int(i) for i in generation_ids]
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._q(
                f"""SELECT j.id AS judgment_id, j.generation_id, jd.id AS judge_id, jd.name AS judge,
                           jd.provider AS judge_provider, jd.model AS judge_model,
                           jd.params_hash AS judge_params_hash, r.id AS rubric_id, r.name AS rubric,
                           r.content_hash AS rubric_hash, j.status, j.error, j.raw_output, j.created_at
                    FROM judgments j
                    JOIN judges jd ON jd.id = j.judge_id
                    JOIN rubrics r ON r.id = j.rubric_id
                    WHERE j.generation_id IN ({marks})
                    ORDER BY j.generation_id, jd.id, j.id""", chunk)
            by_id = {r["judgment_id"]: r for r in rows}
            for r in rows:
                r["scores"] = []
            if by_id:
                for s in self._q(
                        f"""SELECT s.judgment_id, s.metric, s.score, s.raw FROM judgment_scores s
                            JOIN judgments j ON j.id = s.judgment_id
                            WHERE j.generation_id IN ({marks}) ORDER BY s.judgment_id, s.metric""", chunk):
                    by_id[s.pop("judgment_id")]["scores"].append(s)
            out.extend(rows)
        return out

    def export_ratings(self, generation_ids: Sequence[int]) -> list[dict[str, Any]]:
        """Every rating (human or model) of these answers: rating_id, generation_id, annotator_id,
        annotator, rater_kind, campaign, metric, score, note, flagged, source, created_at."""
        ids = [int(i) for i in generation_ids]
        out: list[dict[str, Any]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            out.extend(self._q(
                f"""SELECT r.id AS rating_id, r.generation_id, a.id AS annotator_id, a.name AS annotator,
                           r.rater_kind, c.name AS campaign, r.metric, r.score, r.note, r.flagged, r.source,
                           r.created_at
                    FROM ratings r
                    JOIN annotators a ON a.id = r.annotator_id
                    LEFT JOIN campaigns c ON c.id = r.campaign_id
                    WHERE r.generation_id IN ({marks})
                    ORDER BY r.generation_id, a.id, r.id""", chunk))
        return out

    def export_score_keys(self, study_id: int | None = None) -> list[dict[str, Any]]:
        """The distinct (judge, rubric, metric) scores of a study's answers (or of every answer):
        judge_id, judge_model, rubric_id, rubric, metric — what the export's score columns are."""
        where, params = ("WHERE g.condition_id IN (SELECT id FROM conditions WHERE study_id = ?)", (study_id,)) \
            if study_id is not None else ("", ())
        return self._q(
            f"""SELECT DISTINCT jd.id AS judge_id, jd.model AS judge_model, r.id AS rubric_id, r.name AS rubric,
                       s.metric
                FROM judgment_scores s
                JOIN judgments j ON j.id = s.judgment_id
                JOIN judges jd ON jd.id = j.judge_id
                JOIN rubrics r ON r.id = j.rubric_id
                JOIN generations g ON g.id = j.generation_id
                {where}
                ORDER BY jd.id, s.metric, r.id""", params)

    def export_rating_keys(self, study_id: int | None = None) -> list[dict[str, Any]]:
        """The distinct (annotator, metric) of the ratings of a study's answers (or of every answer):
        annotator_id, annotator, rater_kind, metric."""
        where, params = ("WHERE g.condition_id IN (SELECT id FROM conditions WHERE study_id = ?)", (study_id,)) \
            if study_id is not None else ("", ())
        return self._q(
            f"""SELECT DISTINCT a.id AS annotator_id, a.name AS annotator, r.rater_kind, r.metric
                FROM ratings r
                JOIN annotators a ON a.id = r.annotator_id
                JOIN generations g ON g.id = r.generation_id
                {where}
                ORDER BY a.id, r.metric""", params)

    def study_train_metric_rows(self, study_id: int) -> list[dict[str, Any]]:
        """The training curves of a study's runs: condition, train_run_id, step, name, value,
        ordered by condition, run, metric name and step."""
        return self._q(
            """SELECT c.name AS condition, t.train_run_id, t.step, t.name, t.value
               FROM train_metrics t
               JOIN train_runs r ON r.id = t.train_run_id
               JOIN conditions c ON c.id = r.condition_id
               WHERE c.study_id = ?
               ORDER BY c.id, t.train_run_id, t.name, t.step""", (study_id,))

    def study_human_rating_rows(self, study_id: int) -> list[dict[str, Any]]:
        """Human ratings of a study's answers with a score: generation_id, condition_id, annotator_id,
        metric, score."""
        return self._q(
            """SELECT r.generation_id, g.condition_id, r.annotator_id, r.metric, r.score
               FROM ratings r
               JOIN generations g ON g.id = r.generation_id
               JOIN conditions c ON c.id = g.condition_id
               WHERE c.study_id = ? AND r.rater_kind = 'human' AND r.score IS NOT NULL
               ORDER BY r.generation_id, r.annotator_id""", (study_id,))

    def export_scores(self, generation_ids: Sequence[int]) -> list[tuple[int, int, int, str, float | None]]:
        """(generation_id, judge_id, rubric_id, metric, score) of every score of these answers, as plain
        tuples: the flat exports' fast path (no raw outputs). A missing score is None."""
        ids = [int(i) for i in generation_ids]
        out: list[tuple[int, int, int, str, float | None]] = []
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            with self._lock:
                out.extend(self.conn.execute(
                    f"""SELECT j.generation_id, j.judge_id, j.rubric_id, s.metric, s.score
                        FROM judgment_scores s JOIN judgments j ON j.id = s.judgment_id
                        WHERE j.generation_id IN ({marks})""", chunk).fetchall())
        return out

    # -- drill-down extras ------------------------------------------------------------------------

    def generation_ratings(self, generation_id: int) -> list[dict[str, Any]]:
        """Every rating of one answer, with the annotator and whether the rater is human."""
        return self._q(
            """SELECT r.id, a.name AS annotator, r.rater_kind, r.metric, r.score, r.note, r.flagged,
                      r.created_at
               FROM ratings r JOIN annotators a ON a.id = r.annotator_id
               WHERE r.generation_id = ? ORDER BY r.rater_kind, a.name, r.metric, r.id""", (generation_id,))

    def study_human_metrics(self, study_id: int) -> list[str]:
        """The metrics people (not model raters) have scored any of the study's answers on, by name."""
        return [r["metric"] for r in self._q(
            """SELECT DISTINCT r.metric FROM ratings r JOIN generations g ON g.id = r.generation_id
               JOIN conditions c ON c.id = g.condition_id
               WHERE c.study_id = ? AND r.rater_kind = 'human' AND r.score IS NOT NULL
               ORDER BY r.metric""", (study_id,))]

    def human_rating_means(self, generation_ids: Sequence[int], metric: str) -> dict[int, float]:
        """generation id -> the mean of its human ratings on ``metric`` (answers without one: absent)."""
        ids = [int(i) for i in generation_ids]
        out: dict[int, float] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._q(
                    f"""SELECT generation_id, avg(score) AS mean FROM ratings
                        WHERE generation_id IN ({marks}) AND metric = ? AND rater_kind = 'human'
                          AND score IS NOT NULL
                        GROUP BY generation_id""", (*chunk, metric)):
                out[int(r["generation_id"])] = float(r["mean"])
        return out

    def study_checkpoint_count(self, study_id: int) -> int:
        """How many checkpoints the study's training runs saved."""
        return int(self._scalar(
            """SELECT count(*) FROM checkpoints k JOIN train_runs t ON t.id = k.train_run_id
               JOIN conditions c ON c.id = t.condition_id WHERE c.study_id = ?""", (study_id,)))
