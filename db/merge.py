"""Merging another box's database into this one (``emtui merge OTHER.db``, issue 15).

Researchers run conditions on different GPU boxes, each with its own database. A merge brings in what the other
database holds — studies, datasets and their examples, models, eval sets, rubrics, judges, training runs with their
metrics and checkpoints, answers, judgments with their scores and calls, annotators, campaigns and their ratings —
in one transaction, all or nothing. Jobs, workers and their leases are not merged: they belong to the box.

Ids are assigned by each box, so every row is matched by what it is, never by its id: a study by its name (and it
must have the same file hash here), a dataset by name and content hash, a model by name and source, an answer by its
identity (question, model, checkpoint, settings hash, seed, sample, variant), a judgment by (answer, judge, rubric),
and rows without a unique key of their own (runs, judge calls, ratings, ...) by their content, timestamps included.
A row already here is left as it is, so merging twice adds nothing, and A into B gives the content B into A gives.

Provenance: each merge is a row of ``merges`` (the other file's path, its database uid, content hash, schema
version and the hosts its workers ran on), and each row it added a row of ``merged_rows`` (table, id here, id there).
A merged run also says in its ``provenance`` JSON which box and job made it. A model trained on the other box keeps
its path there: :meth:`MergeQueries.merged_from` tells it is remote.

The other database is opened read-only and never written; one with an older schema is migrated in a temporary copy.
This module imports neither textual nor torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from db.core import StoreCore
from db.errors import StoreError, describe_sqlite_error
from db.identity import check_identity
from db.schema import SCHEMA_VERSION

NOT_MERGED = ("jobs", "job_deps", "job_events", "workers",  # they belong to the box, as do the AWS batch jobs
              "judge_batches", "judge_batch_records")  # it polls (their results are judgments, merged)
# this database's own bookkeeping: its identity, its merges, its change counter
OWN_TABLES = ("database_identity", "merges", "merged_rows", "data_changes")
_TRAINED_SOURCE = re.compile(r"^train_run:(\d+)((?::step\d+)?)$")


@dataclass(frozen=True)
class Rule:
    """How one table's rows are matched and brought in.

    ``key``: the columns (after ids are remapped) that say two rows are the same row; ``key_sql`` a WHERE clause
    over them when the unique index is on expressions. ``refs``: column -> the table its id points into (remapped;
    a reference nothing maps is an error). ``drop``: columns emptied (they point at what is not merged: jobs).
    ``later``: references filled once the table they point into is merged (a NULL here is filled then).
    ``pk``: the table has no id column (its key is its primary key): rows are inserted or left, nothing is mapped.
    ``origin``: the key is content that two boxes may well write alike (a run of the same condition started the
    same second, on two copies of one database): a row here is that row only when it also has the same origin —
    the database that made it (its uid) and its id there."""

    table: str
    key: tuple[str, ...]
    refs: dict[str, str] = field(default_factory=dict)
    drop: tuple[str, ...] = ()
    later: dict[str, str] = field(default_factory=dict)
    key_sql: str | None = None
    pk: bool = False
    where: str = "1"  # which of the other database's rows this rule takes
    origin: bool = False  # no unique key: the same content is the same row only when made by the same database


GENERATION_KEY = ("question_id = ? AND model_id = ? AND IFNULL(checkpoint_id, 0) = IFNULL(?, 0) AND settings_hash = ? "
                  "AND IFNULL(seed, -1) = IFNULL(?, -1) AND sample_index = ? AND variant = ?")
TRAINED = "source GLOB 'train_run:*'"

# in dependency order: a table comes after every table its rows point into (``later`` breaks the two cycles:
# a condition's and a run's model is made by the run)
RULES: tuple[Rule, ...] = (
    Rule("datasets", ("name", "content_hash")),
    Rule("dataset_examples", ("dataset_id", "idx"), refs={"dataset_id": "datasets"}, pk=True),
    Rule("models", ("name", "source"), refs={"base_model_id": "models"}, where=f"NOT ({TRAINED})"),
    Rule("eval_sets", ("name", "content_hash")),
    Rule("questions", ("eval_set_id", "key", "paraphrase"), refs={"eval_set_id": "eval_sets"}),
    Rule("rubrics", ("content_hash",)),
    Rule("judges", ("provider", "model", "params_hash")),
    Rule("studies", ("name",)),
    Rule("conditions", ("study_id", "name"),
         refs={"study_id": "studies", "dataset_id": "datasets", "base_model_id": "models"},
         later={"model_id": "models"}),
    Rule("study_eval_sets", ("study_id", "eval_set_id"), refs={"study_id": "studies", "eval_set_id": "eval_sets"},
         pk=True),
    Rule("study_judges", ("study_id", "judge_id"), refs={"study_id": "studies", "judge_id": "judges"}, pk=True),
    Rule("study_em_rules", ("study_id", "em", "source", "set_at"), refs={"study_id": "studies"}, origin=True),
    Rule("train_runs", ("condition_id", "recipe_hash", "seed", "study_hash", "created_at"),
         refs={"condition_id": "conditions", "base_model_id": "models", "dataset_id": "datasets"},
         drop=("job_id",), later={"output_model_id": "models"}, origin=True),
    Rule("train_metrics", ("train_run_id", "step", "name"), refs={"train_run_id": "train_runs"}, pk=True),
    Rule("models", ("name", "source"), refs={"base_model_id": "models"}, where=TRAINED),
    Rule("checkpoints", ("train_run_id", "step"), refs={"train_run_id": "train_runs", "model_id": "models"}),
    Rule("generations", ("question_id", "model_id", "checkpoint_id", "settings_hash", "seed", "sample_index",
                         "variant"),
         refs={"question_id": "questions", "condition_id": "conditions", "model_id": "models",
               "checkpoint_id": "checkpoints"}, drop=("job_id",), key_sql=GENERATION_KEY),
    Rule("judgments", ("generation_id", "judge_id", "rubric_id"),
         refs={"generation_id": "generations", "judge_id": "judges", "rubric_id": "rubrics"}, drop=("job_id",)),
    Rule("judgment_scores", ("judgment_id", "metric"), refs={"judgment_id": "judgments"}, pk=True),
    Rule("judge_calls", ("judge_id", "generation_id", "rubric_id", "metric", "attempt", "outcome", "at"),
         refs={"judge_id": "judges", "generation_id": "generations", "rubric_id": "rubrics"}, drop=("job_id",),
         origin=True),
    Rule("annotators", ("name",)),
    Rule("campaigns", ("name",), refs={"study_id": "studies", "rubric_id": "rubrics"}),
    Rule("campaign_items", ("campaign_id", "code"),
         refs={"campaign_id": "campaigns", "generation_id": "generations", "generation_b_id": "generations"}),
    Rule("campaign_annotators", ("campaign_id", "annotator_id"),
         refs={"campaign_id": "campaigns", "annotator_id": "annotators"}, pk=True),
    Rule("annotator_orders", ("campaign_id", "annotator_id", "rank"),
         refs={"campaign_id": "campaigns", "annotator_id": "annotators", "item_id": "campaign_items"}, pk=True),
    Rule("assignments", ("campaign_id", "code", "annotator_id", "item_id", "generation_id"),
         refs={"campaign_id": "campaigns", "generation_id": "generations", "annotator_id": "annotators",
               "item_id": "campaign_items"}),
    Rule("ratings", ("campaign_id", "item_id", "generation_id", "annotator_id", "metric", "created_at"),
         refs={"assignment_id": "assignments", "campaign_id": "campaigns", "generation_id": "generations",
               "annotator_id": "annotators", "item_id": "campaign_items"}, origin=True),
    Rule("rating_edits", ("rating_id", "annotator_id", "at", "new_score", "new_note", "new_flagged", "new_choice"),
         refs={"rating_id": "ratings", "annotator_id": "annotators"}, origin=True),
    Rule("adjudications", ("campaign_id", "item_id", "metric", "lead_annotator_id", "created_at"),
         refs={"campaign_id": "campaigns", "item_id": "campaign_items", "lead_annotator_id": "annotators"},
         origin=True),
)
# what a person reads in the summary, in this order (models once, though two rules bring them in)
TABLES = tuple(dict.fromkeys(r.table for r in RULES))
# the tables other rows point into: only their ids are kept in memory while merging (not every judge call's)
REFERENCED = frozenset(t for r in RULES for t in (*r.refs.values(), *r.later.values()))


@dataclass
class MergeResult:
    """What a merge added (or, dry, would add): rows per table, rows already here, references filled in."""

    source: str
    source_uid: str | None
    source_version: int
    source_hosts: list[str]
    added: dict[str, int]
    present: dict[str, int]
    filled: dict[str, int]
    merge_id: int | None = None
    dry_run: bool = False

    @property
    def total_added(self) -> int:
        return sum(self.added.values())


class Refused(StoreError):
    """The other database cannot be merged (one line; nothing was written)."""


class _DryRun(Exception):
    """Rolls a dry run's transaction back."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


@contextlib.contextmanager
def open_other(path: Path, *, local: Path | None) -> Iterator[tuple[sqlite3.Connection, dict[str, Any]]]:
    """The other database, read-only, at this emtui's schema (an older one migrated in a temporary copy, the file
    itself never written), inside one read transaction (a consistent snapshot while its box goes on writing),
    with what it says of itself: ``version``, ``uid``, ``sha256``, ``hosts``. Refuses a file that is not an emtui
    database, one with a newer schema, and this database itself."""
    if not path.is_file():
        raise Refused(f"{path}: no such database file")
    if local is not None and local.exists() and os.path.samefile(path, local):
        raise Refused(f"{path} is this database itself; give the other box's copy")
    sha = file_sha256(path)
    # a copy made with .backup has no -wal file: read as it is (immutable), or SQLite would leave an empty -wal
    # and a -shm beside it; one with a -wal (a live database) is read through it, in one snapshot
    immutable = "" if Path(f"{path}-wal").exists() else "&immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{immutable}", uri=True, isolation_level=None)
    except sqlite3.Error as exc:
        raise Refused(describe_sqlite_error(exc, path)) from None
    tmp: str | None = None
    try:
        try:
            kind = check_identity(conn, path)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except StoreError:
            raise Refused(f"{path} is not an emtui database (it holds another program's tables); nothing was "
                          "merged") from None
        except sqlite3.DatabaseError as exc:
            raise Refused(f"{path} is not an emtui database ({exc}); nothing was merged") from None
        if kind == "empty":
            raise Refused(f"{path} is not an emtui database (it holds no tables); nothing was merged")
        if version > SCHEMA_VERSION:
            raise Refused(f"{path} has schema version {version}, newer than this emtui understands "
                          f"({SCHEMA_VERSION}); upgrade emtui here before merging it")
        uid = _uid(conn)
        if version < SCHEMA_VERSION:  # migrate a copy (the backup API copies a consistent snapshot, WAL included)
            from db.store import open_store

            tmp = tempfile.mkdtemp(prefix="emtui-merge-")
            copy = Path(tmp) / "other.db"
            dst = sqlite3.connect(copy)
            try:
                conn.backup(dst)
            finally:
                dst.close()
            conn.close()
            open_store(copy).close()
            conn = sqlite3.connect(f"{copy.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("BEGIN")
        hosts = sorted({str(r[0]) for r in conn.execute(
            "SELECT worker_host FROM jobs WHERE worker_host IS NOT NULL UNION SELECT host FROM workers")})
        yield conn, {"version": version, "uid": uid, "sha256": sha, "hosts": hosts}
    finally:
        conn.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _uid(conn: sqlite3.Connection) -> str | None:
    has = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'database_identity'").fetchone()
    if not has:
        return None
    row = conn.execute("SELECT uid FROM database_identity WHERE id = 1").fetchone()
    return None if row is None else str(row[0])


class MergeQueries(StoreCore):
    """Merging, and the provenance of merged rows; mixed into :class:`db.store.Store`."""

    def database_uid(self) -> str | None:
        found = self._scalar("SELECT uid FROM database_identity WHERE id = 1")
        return None if found is None else str(found)

    def merge_from(self, path: str | os.PathLike[str], *, dry_run: bool = False) -> MergeResult:
        """Bring the database at ``path`` into this one, all or nothing (``dry_run``: say what would be added,
        write nothing). Raises :class:`Refused` (nothing written) for a file that is not an emtui database, a newer
        schema, or a study whose file hash differs from this database's study of that name."""
        other_path = Path(os.path.abspath(path))
        with open_other(other_path, local=getattr(self, "_file_path", None)) as (other, about):
            self._check_studies(other, other_path)
            merge = _Merge(self, other, other_path, about)
            try:
                with self.transaction(), self._lock:
                    merge.run()
                    if dry_run:
                        raise _DryRun
                    if any(merge.added.values()) or merge.filled:  # a merge that brings nothing leaves no trace
                        merge.record()
            except _DryRun:
                pass
            except sqlite3.IntegrityError as exc:  # two rows one key here would need: name the table
                raise Refused(f"{other_path}: a row of {merge.table} clashes with one here ({exc}); nothing was "
                              "merged") from None
        return MergeResult(source=str(other_path), source_uid=about["uid"], source_version=about["version"],
                           source_hosts=about["hosts"], added=merge.added, present=merge.present,
                           filled=merge.filled, merge_id=merge.merge_id, dry_run=dry_run)

    def copy_rows_raw(self, path: str | os.PathLike[str]) -> int:
        """The baseline ``bench/merge_speed.py`` measures a merge against: every row of the tables a merge takes,
        copied from the database at ``path`` as it is — ``ATTACH`` + one ``INSERT … SELECT`` per table, in the
        merge's table order, in one transaction — with no matching, no id mapping and no provenance (the columns a
        merge empties, which point at jobs, are emptied too). Only into a
        database that holds none of those rows (the ids are copied too). Returns the number of rows copied."""
        uri = f"{Path(os.path.abspath(path)).as_uri()}?mode=ro"
        copied = 0
        with self._lock:
            self.conn.execute("ATTACH DATABASE ? AS other", (uri,))
            try:
                with self.transaction():
                    self.conn.execute("PRAGMA defer_foreign_keys = ON")  # a model before the base it names
                    for table in TABLES:
                        cols = [str(r[1]) for r in self.conn.execute(f"PRAGMA main.table_info([{table}])")]
                        drop = {c for r in RULES if r.table == table for c in r.drop}  # jobs are not copied
                        picked = ", ".join("NULL" if c in drop else f"[{c}]" for c in cols)
                        copied += self.conn.execute(f"INSERT INTO main.[{table}] ({', '.join(f'[{c}]' for c in cols)}) "
                                                    f"SELECT {picked} FROM other.[{table}]").rowcount
            finally:
                self.conn.execute("DETACH DATABASE other")
        return copied

    def _check_studies(self, other: sqlite3.Connection, other_path: Path) -> None:
        for row in other.execute("SELECT name, spec_hash FROM studies ORDER BY id"):
            here = self._one("SELECT spec_hash FROM studies WHERE name = ?", (row["name"],))
            if here is not None and here["spec_hash"] != row["spec_hash"]:
                raise Refused(
                    f"{other_path}: study {row['name']!r} has file hash {_short(row['spec_hash'])} there and "
                    f"{_short(here['spec_hash'])} here; a pre-registered study must be the same file on every box "
                    "(register the changed one under a new name): nothing was merged")

    def merged_from(self, table: str, local_id: int) -> dict[str, Any] | None:
        """Where a row a merge added came from: the merge (its source path, uid, hosts, when), the row's id
        there (``source_id``) and the database that made it (``origin_uid``, ``origin_id``: the source itself unless
        it had merged the row from a third); None for a row made here."""
        return self._one(
            """SELECT r.source_id, r.origin_uid, r.origin_id, m.id AS merge_id, m.source_path, m.source_uid,
                      m.source_hosts, m.merged_at
               FROM merged_rows r JOIN merges m ON m.id = r.merge_id WHERE r.tbl = ? AND r.local_id = ?""",
            (table, int(local_id)))

    def merged_trained_model(self, model_id: int) -> dict[str, Any] | None:
        """A model trained on another box and merged here (None: trained here, or not trained): its ``path``
        there, the database it was merged from (``source_path``, ``source_hosts``) and the host its training
        job ran on (``host``; None when that box did not record it)."""
        return self._one(
            f"""SELECT m.id, m.name, m.path, g.source_path, g.source_hosts,
                       COALESCE((SELECT json_extract(r.provenance, '$.merged_from.host') FROM train_runs r
                                 WHERE r.output_model_id = m.id),
                                (SELECT json_extract(r.provenance, '$.merged_from.host') FROM checkpoints k
                                 JOIN train_runs r ON r.id = k.train_run_id WHERE k.model_id = m.id)) AS host
                FROM models m JOIN merged_rows x ON x.tbl = 'models' AND x.local_id = m.id
                JOIN merges g ON g.id = x.merge_id
                WHERE m.id = ? AND m.{TRAINED}""", (int(model_id),))

    def list_merges(self) -> list[dict[str, Any]]:
        return self._q("""SELECT id, source_path, source_uid, source_sha256, source_version, source_hosts, added,
                                 merged_at FROM merges ORDER BY id""")


def _short(digest: str | None) -> str:
    return str(digest or "").split(":", 1)[-1][:12]


class _Merge:
    """One merge in progress: the other database's ids mapped to this one's, table by table."""

    def __init__(self, store: StoreCore, other: sqlite3.Connection, other_path: Path, about: dict[str, Any]) -> None:
        self.store, self.conn, self.other = store, store.conn, other
        self.path, self.about = other_path, about
        self.ids: dict[str, dict[int, int]] = {t: {} for t in TABLES}
        self.added: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.present: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.filled: dict[str, int] = {}
        self.new_rows: list[tuple[str, int, int]] = []  # (table, id here, id there)
        self.pending: list[tuple[str, int, str, str, int]] = []  # (table, id here, column, table, id there)
        self.merge_id: int | None = None
        self.table = ""  # the table being merged
        self.uid = store.conn.execute("SELECT uid FROM database_identity WHERE id = 1").fetchone()[0]
        self.other_origins: dict[tuple[str, int], tuple[str | None, int]] = {
            (str(r[0]), int(r[1])): (r[2], int(r[3])) for r in other.execute(
                "SELECT tbl, local_id, origin_uid, origin_id FROM merged_rows")}
        self.columns = {t: [r[1] for r in self.conn.execute(f"PRAGMA table_info([{t}])")] for t in TABLES}

    def run(self) -> None:
        for rule in RULES:
            self.merge_table(rule)
            if rule.table == "models" and rule.where == TRAINED:
                self.fill_later()

    def merge_table(self, rule: Rule) -> None:
        self.table = rule.table
        cols = self.columns[rule.table]
        order = ", ".join(rule.key) if rule.pk else "id"
        selected = self.other.cursor()
        if rule.table != "models":  # plain tuples, cheaper than sqlite3.Row (models are ordered by name below)
            selected.row_factory = None
        selected.execute(f"SELECT * FROM [{rule.table}] WHERE {rule.where} ORDER BY {order}")
        # the other database's columns this one has, by position (looked up once, not by name for every row)
        take = [(i, d[0]) for i, d in enumerate(selected.description) if d[0] in cols]
        rows: Iterable[sqlite3.Row] = selected
        if rule.table == "models":  # a base before the models made from it
            rows = _bases_first(list(rows))
        key_sql = rule.key_sql or " AND ".join(f"[{k}] IS ?" for k in rule.key)
        find = f"SELECT {'1' if rule.pk else 'id'} FROM [{rule.table}] WHERE {key_sql} LIMIT 1"
        if rule.origin:  # every row of that content, each with its origin (merged_rows), in one statement
            assert rule.key_sql is None
            find = (f"SELECT t.id, r.origin_uid, r.origin_id FROM [{rule.table}] t LEFT JOIN merged_rows r "
                    f"ON r.tbl = ? AND r.local_id = t.id WHERE " + " AND ".join(f"t.[{k}] IS ?" for k in rule.key))
        inserts: dict[tuple[str, ...], str] = {}
        # the per-row work below runs for every row of the other database: what it needs is looked up once here
        whole = [i for i, _ in take] == list(range(len(selected.description)))
        taken = [c for _, c in take]
        refs = [(col, target, self.ids[target]) for col, target in rule.refs.items()]
        for src in rows:
            row = dict(zip(taken, src, strict=True)) if whole else {c: src[i] for i, c in take}
            there = None if rule.pk else int(row.pop("id"))
            for col, target, mapped in refs:
                value = row.get(col)
                # a known id is mapped here; None and an id it does not know are ref()'s (the latter an error)
                row[col] = mapped.get(value) if value is not None and value in mapped else self.ref(
                    rule.table, col, target, value)
            for col in rule.drop:
                row[col] = None
            later = {col: row.pop(col, None) for col in rule.later}
            self.adjust(rule.table, row, there)
            if rule.origin:
                want = self.origin_there(rule.table, there)
                found = next((f for f in self.conn.execute(find, [rule.table, *(row[k] for k in rule.key)]).fetchall()
                              if _same_origin(_origin(self.uid, f), want)), None)
            else:
                found = self.conn.execute(find, [row[k] for k in rule.key]).fetchone()
            if found is not None:
                self.present[rule.table] += 1
                if there is not None:
                    if rule.table in REFERENCED:
                        self.ids[rule.table][there] = int(found[0])
                    self.check_same(rule.table, row, int(found[0]))
                    self.defer(rule, int(found[0]), later)
                continue
            names = tuple(row)
            insert = inserts.get(names)
            if insert is None:  # every row of a table has the same columns: its text is built once
                insert = inserts[names] = (f"INSERT INTO [{rule.table}] ({', '.join(f'[{c}]' for c in names)}) "
                                           f"VALUES ({', '.join('?' * len(names))})")
            cur = self.conn.execute(insert, list(row.values()))
            self.added[rule.table] += 1
            if there is not None:
                here = int(cur.lastrowid or 0)
                if rule.table in REFERENCED:
                    self.ids[rule.table][there] = here
                self.new_rows.append((rule.table, here, there))
                self.defer(rule, here, later)

    def origin_there(self, table: str, there: int | None) -> tuple[str | None, int]:
        """The database that made the other database's row (its uid: None for one from before uids) and its id
        there: the other database itself, unless it had merged the row from a third."""
        assert there is not None
        return self.other_origins.get((table, there), (self.about["uid"], there))

    def ref(self, table: str, col: str, target: str, value: Any) -> int | None:
        if value is None:
            return None
        mapped = self.ids[target].get(int(value))
        if mapped is None:
            raise Refused(f"{self.path}: {table}.{col} points at {target} row {value}, which that database does not "
                          "hold (a damaged database?); nothing was merged")
        return mapped

    def defer(self, rule: Rule, here: int, later: dict[str, Any]) -> None:
        for col, value in later.items():
            if value is not None:
                self.pending.append((rule.table, here, col, rule.later[col], int(value)))

    def fill_later(self) -> None:
        """References to models made by training runs: a NULL here is filled (a condition trained on the other
        box evaluates its fine-tune here too); a value here is kept."""
        new = {(t, h) for t, h, _ in self.new_rows if t in ("conditions", "train_runs")}
        for table, here, col, target, there in self.pending:
            mapped = self.ids[target].get(there)
            if mapped is None:
                continue
            cur = self.conn.execute(f"UPDATE [{table}] SET [{col}] = ? WHERE id = ? AND [{col}] IS NULL",
                                    (mapped, here))
            if cur.rowcount and (table, here) not in new:
                self.filled[f"{table}.{col}"] = self.filled.get(f"{table}.{col}", 0) + 1
        self.pending.clear()

    def adjust(self, table: str, row: dict[str, Any], there: int | None) -> None:
        """What a row says of the other box's ids, said in this database's: a trained model's name and source
        name its run; a run keeps which box and job made it. What belongs to the box stays there: a judge's pause,
        an annotator's lease on an item."""
        if table == "models":
            m = _TRAINED_SOURCE.match(str(row.get("source") or ""))
            run = None if m is None else self.ids["train_runs"].get(int(m.group(1)))
            if m is not None and run is not None:
                old = int(m.group(1))
                row["source"] = f"train_run:{run}{m.group(2)}"
                row["name"] = re.sub(rf"/run{old}(?=(/step\d+)?$)", f"/run{run}", str(row["name"]))
                prov = _json(row.get("provenance"))
                if prov.get("train_run") == old:
                    prov["train_run"] = run
                row["provenance"] = _dumps(prov)
        elif table == "judges":
            row["paused"] = 0  # paused on the other box's Judges screen: that box's business
        elif table == "assignments" and row.get("status") == "leased":
            row["status"], row["lease_expires"] = "open", None  # a lease there is given back here
        elif table == "train_runs" and there is not None:
            src = self.other.execute("SELECT r.job_id, j.worker_host FROM train_runs r LEFT JOIN jobs j "
                                     "ON j.id = r.job_id WHERE r.id = ?", (there,)).fetchone()
            prov = _json(row.get("provenance"))
            prov["merged_from"] = {"database": str(self.path), "uid": self.about["uid"], "train_run": there,
                                   "job_id": src["job_id"], "host": src["worker_host"]}
            row["provenance"] = _dumps(prov)

    def check_same(self, table: str, row: dict[str, Any], here: int) -> None:
        """A campaign of the same name must be the same campaign (its items are matched by code). A dataset a study
        registered here without its examples, which the other box imported, takes what the import recorded (its
        examples follow)."""
        if table == "datasets":
            self.fill_dataset(row, here)
        if table != "campaigns":
            return
        mine = self.conn.execute("SELECT study_id, scale, seed, created_at FROM campaigns WHERE id = ?",
                                 (here,)).fetchone()
        if tuple(mine) != (row["study_id"], row["scale"], row["seed"], row["created_at"]):
            raise Refused(f"{self.path}: campaign {row['name']!r} there is not the campaign of that name here (its "
                          "study, scale, seed or creation differ); rename one of them first: nothing was merged")

    def fill_dataset(self, row: dict[str, Any], here: int) -> None:
        has = "SELECT EXISTS (SELECT 1 FROM dataset_examples WHERE dataset_id = ?)"
        there = self.other.execute("SELECT id FROM datasets WHERE name = ? AND content_hash = ?",
                                   (row["name"], row["content_hash"])).fetchone()
        if self.conn.execute(has, (here,)).fetchone()[0] or not self.other.execute(has, (there[0],)).fetchone()[0]:
            return
        self.conn.execute("""UPDATE datasets SET format = ?, n_rows = ?, origin = ?, operation = ?, stats = ?,
                                    path = COALESCE(path, ?) WHERE id = ?""",
                          (row["format"], row["n_rows"], row["origin"], row["operation"], row["stats"], row["path"],
                           here))
        self.filled["datasets.examples"] = self.filled.get("datasets.examples", 0) + 1

    def record(self) -> None:
        from db.store import utc_now

        added = {t: n for t, n in self.added.items() if n}
        cur = self.conn.execute(
            """INSERT INTO merges (source_path, source_uid, source_sha256, source_version, source_hosts, added,
                                   merged_at) VALUES (?, ?, ?, ?, ?, ?, ?)""",
            (str(self.path), self.about["uid"], self.about["sha256"], self.about["version"],
             _dumps(self.about["hosts"]), _dumps({"added": added, "filled": self.filled}), utc_now()))
        self.merge_id = int(cur.lastrowid or 0)
        self.conn.executemany(
            """INSERT INTO merged_rows (tbl, local_id, merge_id, source_id, origin_uid, origin_id)
               VALUES (?, ?, ?, ?, ?, ?)""",
            ((t, here, self.merge_id, there, *self.origin_there(t, there)) for t, here, there in self.new_rows))


def _origin(uid: str, found: Sequence[Any]) -> tuple[str | None, int]:
    """The database that made a row here, and its id there, from (id, merged_rows' origin_uid and origin_id): this
    database itself when no merge brought the row."""
    return (uid, int(found[0])) if found[2] is None else (found[1], int(found[2]))


def _same_origin(a: tuple[str | None, int], b: tuple[str | None, int]) -> bool:
    """Made by the same database with the same id. A database from before uids (None) is taken at its word on
    the id: merged again once its box has upgraded (and has a uid), its rows are not taken for new ones."""
    return a[1] == b[1] and (a[0] == b[0] or a[0] is None or b[0] is None)


def _bases_first(rows: Sequence[sqlite3.Row]) -> list[sqlite3.Row]:
    """Models ordered so that each comes after the model it is made from (ids may not say so)."""
    ids = {int(r["id"]) for r in rows}
    placed: set[int] = set()
    out: list[sqlite3.Row] = []
    left = list(rows)
    while left:
        ready = [r for r in left if r["base_model_id"] is None or int(r["base_model_id"]) in placed
                 or int(r["base_model_id"]) not in ids]
        if not ready:  # a cycle cannot be placed: left as it is (ref() names the row)
            ready = left
        out += ready
        placed |= {int(r["id"]) for r in ready}
        left = [r for r in left if int(r["id"]) not in placed]
    return out


def _json(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _dumps(value: Any) -> str:
    from db.store import dumps

    return dumps(value)
