"""The SQLite store: connection settings, migrations, and every query emtui runs.

No SQL lives outside ``db/``. This module imports neither textual nor torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from db.annotation import AnnotationQueries
from db.core import file_id
from db.datasets import DatasetQueries
from db.errors import StoreError, describe_sqlite_error
from db.generation import GenerationQueries
from db.identity import APPLICATION_ID, check_identity
from db.jobs import JobQueries
from db.judge_batches import JudgeBatchQueries
from db.judging import JudgingQueries
from db.merge import MergeQueries
from db.results import ResultsQueries
from db.schema import MIGRATIONS, SCHEMA_VERSION
from db.study_status import StudyStatusQueries
from db.training import TrainingQueries

BUSY_TIMEOUT_MS = 30_000


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def dumps(value: Any) -> str:
    """Canonical JSON for stored blobs (sorted keys, so equal specs hash equally). NaN and
    infinities are refused: SQLite's JSON functions reject them, so one stored NaN would break
    every later summary and export."""
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise StoreError("a value to store holds NaN or an infinite number, which the database cannot keep "
                         "as JSON") from None


@dataclass(frozen=True)
class Page:
    """One page of a listing: the rows, and how many rows the whole listing has."""

    rows: list[dict[str, Any]]
    total: int
    offset: int
    limit: int


def open_store(path: str | os.PathLike[str], *, create: bool = True, upto: int | None = None,
               readonly: bool = False, busy_timeout_s: float | None = None) -> Store:
    """Open (and migrate) the database at ``path``.

    ``create=False`` refuses to make a new file. ``readonly=True`` is for commands that only
    read: where the file or its folder cannot be written, the database is opened read-only
    instead of failing. ``upto`` stops migrating at that version (tests use it to build an
    old database). A file that is not emtui's is refused and never touched.
    ``busy_timeout_s``: how long a write waits for another process's lock (the CLI passes the
    ``busy_timeout_s`` setting; None: ``$EMTUI_BUSY_TIMEOUT_S``, else 30 s).
    """
    p = Path(path)
    if str(path) != ":memory:":
        if p.is_dir():
            raise StoreError(f"database path is a folder, not a file: {p}")
        if p.exists() and not p.is_file():
            raise StoreError(f"database path is not a regular file (a device, a pipe?): {p}")
        if not p.parent.exists():
            raise StoreError(f"database folder does not exist: {p.parent}")
        if not create and not p.exists():
            raise StoreError(f"no database at {p}")
    return Store(p, upto=upto, readonly=readonly, create=create, busy_timeout_s=busy_timeout_s)


def _writable(path: Path) -> bool:
    """Can this process write the file and create its -wal / -shm files beside it?"""
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)


def busy_timeout_ms(seconds: float | None = None) -> int:
    """How long a write waits for another process's lock: ``seconds`` as the caller's settings say
    (engine.settings, which db/ does not import), else ``$EMTUI_BUSY_TIMEOUT_S`` seconds (a notebook),
    else 30."""
    if seconds is not None:
        if not 0 <= seconds <= 3600:  # NaN fails too
            raise StoreError(f"the busy timeout must be between 0 and 3600 seconds, not {seconds!r}")
        return int(seconds * 1000)
    raw = os.environ.get("EMTUI_BUSY_TIMEOUT_S")
    try:
        seconds = float(raw) if raw else BUSY_TIMEOUT_MS / 1000
    except ValueError:
        raise StoreError(f"EMTUI_BUSY_TIMEOUT_S must be a number of seconds, not {raw!r}") from None
    if not 0 <= seconds <= 3600:
        raise StoreError(f"EMTUI_BUSY_TIMEOUT_S must be between 0 and 3600 seconds, not {raw!r}")
    return int(seconds * 1000)


class Store(ResultsQueries, AnnotationQueries, JobQueries, TrainingQueries, DatasetQueries, GenerationQueries,
            JudgingQueries, JudgeBatchQueries, MergeQueries, StudyStatusQueries):
    """A connection to one emtui database. Thread-safe: calls are serialised by a lock.
    The connection, transactions and query helpers are :class:`db.core.StoreCore`'s, the base of
    every query mixin."""

    def __init__(self, path: Path, *, upto: int | None = None, readonly: bool = False, create: bool = True,
                 busy_timeout_s: float | None = None) -> None:
        self.path = path
        self._lock = threading.RLock()
        memory = str(path) == ":memory:"
        # a file this open makes is removed again if the command fails (see __exit__)
        self.created = not memory and not path.exists()
        self.readonly = readonly and not memory and not self.created and not _writable(path)
        self.busy_timeout_ms = busy_timeout_ms(busy_timeout_s)
        try:
            self.conn = conn = self._connect(path)
            conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            identity = check_identity(conn, path)
            if identity == "empty" and not create and not self.created:
                raise StoreError(f"{path} is an empty file, not an emtui database yet")
            conn.execute("PRAGMA foreign_keys = ON")
            if not memory and not self.readonly:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute("PRAGMA synchronous = NORMAL")
            # the file this connection writes to: a write after it was deleted or replaced would be lost
            # (inside the try: a SIGTERM here, too, removes the file just made)
            file_path = None if memory else Path(os.path.abspath(path))
            self._file_path, self._file_id = file_path, None if file_path is None else file_id(file_path)
            target = SCHEMA_VERSION if upto is None else upto
        except sqlite3.Error as exc:
            self._discard_created()
            raise StoreError(describe_sqlite_error(exc, path, self.busy_timeout_ms)) from None
        except BaseException:  # a StoreError, or the command ended (SIGTERM) while the file was being made
            self._discard_created()
            raise
        if self.readonly:
            if self.user_version < target:
                conn.close()
                raise StoreError(f"{path} is read-only and was made by an older emtui: open it once where it "
                                 "can be written, so it is upgraded")
            return
        try:
            self._migrate(target, mark=upto is None)
        except sqlite3.Error as exc:
            conn.close()
            self._discard_created()
            raise StoreError(describe_sqlite_error(exc, path, self.busy_timeout_ms)) from None
        except BaseException:
            conn.close()
            self._discard_created()
            raise

    def _connect(self, path: Path) -> sqlite3.Connection:
        common: dict[str, Any] = dict(timeout=self.busy_timeout_ms / 1000, isolation_level=None,
                                      check_same_thread=False)
        if self.readonly:
            # nothing can write where the folder is read-only and no -wal file exists: then the
            # file is immutable and SQLite needs no -shm file to read it
            frozen = not os.access(path.parent, os.W_OK) and not Path(f"{path}-wal").exists()
            uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if frozen else "")
            conn = sqlite3.connect(uri, uri=True, **common)
        else:
            conn = sqlite3.connect(str(path), **common)
        conn.row_factory = sqlite3.Row
        return conn

    def _discard_created(self) -> None:
        """Remove the database file (and its -wal / -shm) that this open created."""
        if not self.created:
            return
        with contextlib.suppress(Exception):
            self.conn.close()
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError, PermissionError):
                os.unlink(f"{self.path}{suffix}")

    # -- connection and transactions -------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self.close()
        if exc_type is not None:  # a command that failed leaves no database it created behind
            self._discard_created()

    # -- schema ------------------------------------------------------------------------

    @property
    def user_version(self) -> int:
        return int(self._scalar("PRAGMA user_version"))

    def _migrate(self, target: int, *, mark: bool = True) -> None:
        current = self.user_version
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"database {self.path} has schema version {current}, newer than this emtui "
                f"understands ({SCHEMA_VERSION}); upgrade emtui")
        for version in range(current + 1, target + 1):
            # executescript commits first, so run each migration's statements inside one
            # explicit transaction: a crash mid-migration leaves the old version intact.
            statements = [s for s in _split_sql(MIGRATIONS[version - 1]) if s.strip()]
            with self._lock:
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    if self.user_version >= version:  # another process migrated meanwhile
                        self.conn.execute("ROLLBACK")
                        continue
                    for stmt in statements:
                        self.conn.execute(stmt)
                    self.conn.execute(f"PRAGMA user_version = {version}")
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.rollback()
                    raise
        if mark and int(self._scalar("PRAGMA application_id")) != APPLICATION_ID:
            with self._lock:  # emtui's mark: a database made before it had none
                self.conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")

    def table_names(self) -> list[str]:
        return [r[0] for r in self._tuples("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")]

    def columns(self, table: str) -> list[str]:
        if table not in self.table_names():
            raise StoreError(f"no table {table!r}")
        return [r[1] for r in self._tuples(f"PRAGMA table_info([{table}])")]

    def count(self, table: str) -> int:
        if table not in self.table_names():
            raise StoreError(f"no table {table!r}")
        return int(self._scalar(f"SELECT count(*) FROM [{table}]"))

    def counts(self) -> dict[str, int]:
        return {t: self.count(t) for t in self.table_names()}

    def data_version(self) -> dict[str, int]:
        """What a summary's numbers come from, as counters that change with every write of it, by this
        process or another: per table (``generations``, ``judgments``, ``judgment_scores``, ``ratings``,
        ``adjudications``, ``study_em_rules``, ``conditions``) its highest rowid — they are written by
        inserts — and ``changes``, every update or delete of those tables (counted by trigger, migration
        5). Cheap: one index lookup each. Equal versions: nothing a summary reads has changed."""
        tables = ("generations", "judgments", "judgment_scores", "ratings", "adjudications", "study_em_rules",
                  "conditions")
        row = self._tuples("SELECT " + ", ".join(f"(SELECT max(rowid) FROM {t})" for t in tables)
                           + ", (SELECT n FROM data_changes)")[0]
        return dict(zip((*tables, "changes"), (int(v or 0) for v in row), strict=True))

    # -- studies -------------------------------------------------------------------------

    def find_study(self, name: str) -> dict[str, Any] | None:
        return self._one("SELECT * FROM studies WHERE name = ?", (name,))

    def studies_whose_file_starts_with(self, text: str) -> list[str]:
        """The names of the studies registered from a study file that begins with ``text``, oldest first (a
        derived study's first comment names the study it came from: engine/study/derived_study.py)."""
        return [str(r["name"]) for r in self._q(
            "SELECT name FROM studies WHERE substr(spec_toml, 1, ?) = ? ORDER BY id", (len(text), text))]

    def get_study(self, study_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM studies WHERE id = ?", (study_id,))

    def add_study(self, *, name: str, description: str, origin: str, spec_hash: str,
                  spec: dict[str, Any], spec_toml: str | None = None,
                  source_path: str | None = None) -> int:
        return self._insert("studies", {
            "name": name, "description": description, "origin": origin,
            "source_path": source_path, "spec_toml": spec_toml, "spec_json": dumps(spec),
            "spec_hash": spec_hash, "created_at": utc_now(),
        })

    def list_studies(self, *, limit: int = 200, offset: int = 0) -> Page:
        rows = self._q(
            """SELECT s.id, s.name, s.origin, s.spec_hash, s.created_at, s.description,
                      (SELECT count(*) FROM conditions c WHERE c.study_id = s.id) AS n_conditions,
                      (SELECT count(*) FROM generations g JOIN conditions c ON g.condition_id = c.id
                        WHERE c.study_id = s.id) AS n_generations
               FROM studies s ORDER BY s.id LIMIT ? OFFSET ?""", (limit, offset))
        return Page(rows, self.count("studies"), offset, limit)

    def study_conditions(self, study_id: int) -> list[dict[str, Any]]:
        return self._q(
            """SELECT c.id, c.name, c.description, c.recipe, c.dataset_id, c.base_model_id, c.model_id,
                      -- an imported condition names its dataset in its recipe (the data is not here)
                      COALESCE(d.name, json_extract(c.recipe, '$.dataset')) AS dataset,
                      b.name AS base_model, b.source AS base_source, m.name AS model, m.kind AS model_kind,
                      (SELECT count(*) FROM generations g WHERE g.condition_id = c.id) AS n_generations
               FROM conditions c
               LEFT JOIN datasets d ON d.id = c.dataset_id
               LEFT JOIN models b ON b.id = c.base_model_id
               LEFT JOIN models m ON m.id = c.model_id
               WHERE c.study_id = ? ORDER BY c.id""", (study_id,))

    def study_judges(self, study_id: int) -> list[dict[str, Any]]:
        return self._q(
            """SELECT j.* FROM judges j JOIN study_judges sj ON sj.judge_id = j.id
               WHERE sj.study_id = ? ORDER BY j.id""", (study_id,))

    def study_eval_sets(self, study_id: int) -> list[dict[str, Any]]:
        return self._q(
            """SELECT e.id, e.name, e.source, e.content_hash, se.samples_per_question,
                      (SELECT count(*) FROM questions q WHERE q.eval_set_id = e.id) AS n_questions,
                      (SELECT count(DISTINCT q.key) FROM questions q WHERE q.eval_set_id = e.id) AS n_keys
               FROM eval_sets e JOIN study_eval_sets se ON se.eval_set_id = e.id
               WHERE se.study_id = ? ORDER BY e.id""", (study_id,))

    def link_study_eval_set(self, study_id: int, eval_set_id: int, samples_per_question: int) -> None:
        with self._lock:
            self.db["study_eval_sets"].insert(
                {"study_id": study_id, "eval_set_id": eval_set_id,
                 "samples_per_question": samples_per_question}, replace=True)

    def link_study_judge(self, study_id: int, judge_id: int) -> None:
        with self._lock:
            self.db["study_judges"].insert({"study_id": study_id, "judge_id": judge_id}, replace=True)

    # -- conditions and models (datasets: db/datasets.py, DatasetQueries) ---------------------------------

    def add_condition(self, *, study_id: int, name: str, description: str = "",
                      dataset_id: int | None = None, base_model_id: int | None = None,
                      model_id: int | None = None, recipe: dict[str, Any] | None = None,
                      recipe_hash: str | None = None) -> int:
        return self._insert("conditions", {
            "study_id": study_id, "name": name, "description": description,
            "dataset_id": dataset_id, "base_model_id": base_model_id, "model_id": model_id,
            "recipe": dumps(recipe or {}), "recipe_hash": recipe_hash,
        })

    def ensure_model(self, *, name: str, kind: str, source: str, base_model_id: int | None = None,
                     path: str | None = None, provenance: dict[str, Any] | None = None) -> int:
        row = self._one("SELECT id FROM models WHERE name = ? AND source = ?", (name, source))
        if row:
            return int(row["id"])
        return self._insert("models", {
            "name": name, "kind": kind, "source": source, "base_model_id": base_model_id,
            "path": path, "provenance": dumps(provenance or {}), "created_at": utc_now()})

    def list_models(self, *, limit: int = 200, offset: int = 0) -> Page:
        rows = self._q(
            """SELECT m.id, m.name, m.kind, m.source, b.name AS base, m.path, m.created_at
               FROM models m LEFT JOIN models b ON b.id = m.base_model_id
               ORDER BY m.id LIMIT ? OFFSET ?""", (limit, offset))
        return Page(rows, self.count("models"), offset, limit)

    # -- eval sets and questions ---------------------------------------------------------------

    def ensure_eval_set(self, *, name: str, source: str, content_hash: str,
                        questions: Sequence[dict[str, Any]]) -> int:
        """Store an eval set and its questions once per content hash."""
        row = self._one("SELECT id FROM eval_sets WHERE name = ? AND content_hash = ?", (name, content_hash))
        if row:
            return int(row["id"])
        with self.transaction():
            set_id = self._insert("eval_sets", {"name": name, "source": source,
                                                "content_hash": content_hash, "created_at": utc_now()})
            self.db["questions"].insert_all(
                ({"eval_set_id": set_id, "key": q["key"], "paraphrase": q.get("paraphrase", 0),
                  "category": q.get("category", ""), "system_prompt": q.get("system_prompt"),
                  "text": q["text"], "meta": dumps(q.get("meta", {}))} for q in questions),
                batch_size=500)
        return set_id

    def find_eval_sets(self, *, name: str | None = None, content_hash: str | None = None) -> list[dict[str, Any]]:
        """Eval sets with this name and/or content hash (without their questions), oldest first."""
        where, params = [], []
        for col, value in (("name", name), ("content_hash", content_hash)):
            if value is not None:
                where.append(f"{col} = ?")
                params.append(value)
        return self._q(f"""SELECT id, name, source, content_hash, created_at FROM eval_sets
                           {"WHERE " + " AND ".join(where) if where else ""} ORDER BY id""", params)

    def list_eval_sets(self, *, limit: int = 200, offset: int = 0) -> Page:
        rows = self._q(
            """SELECT e.id, e.name, e.source, e.content_hash, e.created_at,
                      (SELECT count(*) FROM questions q WHERE q.eval_set_id = e.id) AS n_questions,
                      (SELECT count(DISTINCT q.key) FROM questions q WHERE q.eval_set_id = e.id) AS n_keys
               FROM eval_sets e ORDER BY e.id LIMIT ? OFFSET ?""", (limit, offset))
        return Page(rows, self.count("eval_sets"), offset, limit)

    def list_questions(self, eval_set_id: int, *, limit: int = 200, offset: int = 0) -> Page:
        rows = self._q(
            """SELECT id, key, paraphrase, category, system_prompt, text FROM questions
               WHERE eval_set_id = ? ORDER BY id LIMIT ? OFFSET ?""", (eval_set_id, limit, offset))
        total = int(self._scalar("SELECT count(*) FROM questions WHERE eval_set_id = ?", (eval_set_id,)))
        return Page(rows, total, offset, limit)

    # -- rubrics and judges ---------------------------------------------------------------------

    def ensure_rubric(self, *, name: str, content_hash: str, body: str,
                      metrics: list[dict[str, Any]]) -> int:
        row = self._one("SELECT id FROM rubrics WHERE content_hash = ?", (content_hash,))
        if row:
            return int(row["id"])
        return self._insert("rubrics", {"name": name, "content_hash": content_hash, "body": body,
                                        "metrics": dumps(metrics), "created_at": utc_now()})

    def find_rubric(self, *, content_hash: str | None = None, name: str | None = None) -> dict[str, Any] | None:
        """The rubric with this content hash, else the first one with this name (None when neither)."""
        if content_hash is not None:
            return self._one("SELECT * FROM rubrics WHERE content_hash = ?", (content_hash,))
        return self._one("SELECT * FROM rubrics WHERE name = ? ORDER BY id LIMIT 1", (name,))

    def list_rubrics(self) -> list[dict[str, Any]]:
        return self._q(
            """SELECT r.id, r.name, r.content_hash, r.metrics, r.created_at,
                      (SELECT count(*) FROM judgments j WHERE j.rubric_id = r.id) AS n_judgments
               FROM rubrics r ORDER BY r.id""")

    def ensure_judge(self, *, name: str, provider: str, model: str, params: dict[str, Any],
                     params_hash: str) -> int:
        row = self._one("SELECT id FROM judges WHERE provider = ? AND model = ? AND params_hash = ?",
                        (provider, model, params_hash))
        if row:
            return int(row["id"])
        return self._insert("judges", {"name": name, "provider": provider, "model": model,
                                       "params": dumps(params), "params_hash": params_hash,
                                       "created_at": utc_now()})

    def ensure_import_judge(self, *, name: str, model: str, params: dict[str, Any]) -> int:
        """Find or create the judge that produced imported scores (provider ``'import'``).

        Identified like every judge by (provider, model, params hash); the hash is the one
        ``engine.common.hashing.json_hash`` computes."""
        params_hash = "sha256:" + hashlib.sha256(dumps(params).encode("utf-8")).hexdigest()
        return self.ensure_judge(name=name, provider="import", model=model, params=params,
                                 params_hash=params_hash)

    def get_judge(self, judge_id: int) -> dict[str, Any] | None:
        return self._one("SELECT * FROM judges WHERE id = ?", (judge_id,))

    def list_judges(self, *, limit: int = 200, offset: int = 0) -> Page:
        rows = self._q(
            """SELECT j.id, j.name, j.provider, j.model, j.params, j.created_at,
                      (SELECT count(*) FROM judgments x WHERE x.judge_id = j.id) AS n_judgments,
                      (SELECT count(*) FROM judgments x WHERE x.judge_id = j.id AND x.status = 'failed')
                        AS n_failed
               FROM judges j ORDER BY j.id LIMIT ? OFFSET ?""", (limit, offset))
        return Page(rows, self.count("judges"), offset, limit)

    # -- training: db/training.py (TrainingQueries) -------------------------------------------------

    # -- the job queue and the workers: db/jobs.py (JobQueries) ---------------------------------------

    # -- results overview ---------------------------------------------------------------------------

    def condition_overview(self, *, limit: int = 200, offset: int = 0) -> Page:
        """Per condition, counted in answers (so none exceeds ``n_generations``): answers, answers
        with an ok judgment (``n_judged``), with a failed judgment (``n_failed``), and with a human
        rating (``n_rated``) — what the Results screen's counts view lists."""
        rows = self._q(
            """SELECT c.id, s.name AS study, c.name AS condition,
                      (SELECT count(*) FROM generations g WHERE g.condition_id = c.id) AS n_generations,
                      (SELECT count(*) FROM generations g WHERE g.condition_id = c.id AND EXISTS
                         (SELECT 1 FROM judgments j WHERE j.generation_id = g.id AND j.status = 'ok')) AS n_judged,
                      (SELECT count(*) FROM generations g WHERE g.condition_id = c.id AND EXISTS
                         (SELECT 1 FROM judgments j WHERE j.generation_id = g.id AND j.status = 'failed'))
                        AS n_failed,
                      (SELECT count(*) FROM generations g WHERE g.condition_id = c.id AND EXISTS
                         (SELECT 1 FROM ratings r WHERE r.generation_id = g.id AND r.rater_kind = 'human'))
                        AS n_rated
               FROM conditions c JOIN studies s ON s.id = c.study_id
               ORDER BY s.id, c.id LIMIT ? OFFSET ?""", (limit, offset))
        return Page(rows, self.count("conditions"), offset, limit)

    # -- annotation ------------------------------------------------------------------------------------

    # list_campaigns and the other campaign queries: db/annotation.py (AnnotationQueries)

    def list_annotators(self) -> list[dict[str, Any]]:
        return self._q(
            """SELECT a.id, a.name, a.kind, a.created_at,
                      (SELECT count(*) FROM ratings r WHERE r.annotator_id = a.id) AS n_ratings
               FROM annotators a ORDER BY a.id""")


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (our migrations hold no ';' inside literals)."""
    out, buf = [], []
    for line in script.splitlines():
        code = line.split("--", 1)[0]
        buf.append(code)
        if code.rstrip().endswith(";"):
            out.append("\n".join(buf))
            buf = []
    if "".join(buf).strip():
        out.append("\n".join(buf))
    return out
