"""Training datasets and their examples (issue 12), mixed into :class:`db.store.Store`.

A dataset is a row of ``datasets`` (name, content hash, format, origin — an imported ``file``, or a
``split`` / ``mix`` / ``trigger`` made from others — the ``operation`` that made it, its ``stats``) and,
once imported or made, its examples in ``dataset_examples`` (each example's JSON text, in order). A
dataset a study file registers has no stored examples until its file is imported: it is read from its
path. This module imports neither textual nor torch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from db.core import StoreCore
from db.errors import StoreError

if TYPE_CHECKING:
    from db.store import Page

_HEX = re.compile(r"[0-9a-f]{4,64}")
# a dataset's row as every query gives it (its stats, which may be long, only from get_dataset)
# shown_origin: where a dataset came from as a person reads it — a file a study names but nobody imported
# has no examples here: "study"
_COLUMNS = """d.id, d.name, d.origin, d.format, d.n_rows, d.content_hash, d.path, d.created_at, d.operation,
              EXISTS (SELECT 1 FROM dataset_examples e WHERE e.dataset_id = d.id) AS stored,
              CASE WHEN d.origin = 'file' AND NOT EXISTS (SELECT 1 FROM dataset_examples e WHERE e.dataset_id = d.id)
                   THEN 'study' ELSE d.origin END AS shown_origin"""


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class DatasetQueries(StoreCore):
    """Datasets: registered, imported and derived ones, and their examples."""

    def ensure_dataset(self, *, name: str, content_hash: str, path: str | None,
                       format: str = "chat-jsonl", n_rows: int | None = None) -> int:
        """A dataset by name and content hash, registered (without its examples) when new: a study
        file's dataset."""
        from db.store import utc_now

        row = self._one("SELECT id FROM datasets WHERE name = ? AND content_hash = ?", (name, content_hash))
        if row:
            return int(row["id"])
        return self._insert("datasets", {"name": name, "content_hash": content_hash, "path": path,
                                         "format": format, "n_rows": n_rows, "created_at": utc_now()})

    def list_datasets(self, *, limit: int = 200, offset: int = 0) -> Page:
        from db.store import Page

        rows = self._q(
            f"""SELECT {_COLUMNS},
                       (SELECT count(*) FROM conditions c WHERE c.dataset_id = d.id) AS n_conditions
                FROM datasets d ORDER BY d.id LIMIT ? OFFSET ?""", (limit, offset))
        return Page(rows, int(self._scalar("SELECT count(*) FROM datasets")), offset, limit)

    def get_dataset(self, dataset_id: int) -> dict[str, Any] | None:
        """A dataset's row with its ``stats`` (JSON text)."""
        return self._one(f"SELECT {_COLUMNS}, d.stats FROM datasets d WHERE d.id = ?", (dataset_id,))

    def find_datasets(self, ref: str) -> list[dict[str, Any]]:
        """The datasets named ``ref``; when none is, those whose content hash starts with ``ref`` (at least
        4 hex digits, ``sha256:`` or not). Oldest first."""
        rows = self._q(f"SELECT {_COLUMNS} FROM datasets d WHERE d.name = ? ORDER BY d.id", (ref,))
        digits = ref.lower().removeprefix("sha256:")
        if rows or not _HEX.fullmatch(digits):
            return rows
        prefix = "sha256:" + digits
        return self._q(f"""SELECT {_COLUMNS} FROM datasets d WHERE substr(d.content_hash, 1, ?) = ?
                           ORDER BY d.id""", (len(prefix), prefix))

    def resolve_dataset(self, ref: str) -> dict[str, Any]:
        """The one dataset ``ref`` names (by name or content-hash prefix); StoreError when none, or when it
        names datasets of different content (naming them). Rows of the same content are one dataset: the
        one with stored examples is taken."""
        rows = self.find_datasets(ref)
        if not rows:
            raise StoreError(f"no dataset named {ref!r}, nor one whose content hash starts so "
                             "(emtui data list shows them)")
        if len({r["content_hash"] for r in rows}) > 1:
            names = ", ".join(f"{r['name']} ({_short(r['content_hash'])})" for r in rows[:8])
            more = f" and {len(rows) - 8} more" if len(rows) > 8 else ""
            raise StoreError(f"{ref!r} names {len(rows)} datasets: {names}{more}; give a longer content hash")
        return next((r for r in rows if r["stored"]), rows[0])

    def dataset_examples(self, dataset_id: int) -> list[dict[str, Any]]:
        """A dataset's stored examples in order: idx, line (in the imported file; None when derived),
        example (its JSON text). Empty when none are stored."""
        return self._q("SELECT idx, line, example FROM dataset_examples WHERE dataset_id = ? ORDER BY idx",
                       (dataset_id,))

    def store_dataset(self, *, name: str, content_hash: str, format: str, examples: Sequence[tuple[int | None, str]],
                      origin: str = "file", path: str | None = None, operation: Mapping[str, Any] | None = None,
                      stats: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], bool]:
        """Store a dataset with its examples ((line, JSON text) each) in one transaction: all or nothing.
        Returns (the dataset, whether it was stored now). The same content stored before is returned as it
        is; a dataset a study registered with this content (no examples yet) gets them, under its name. A
        name already taken by other content is refused (StoreError)."""
        from db.store import dumps, utc_now

        if not examples:
            raise StoreError(f"dataset {name!r} has no examples to store")
        with self.transaction():
            same = self._q(f"SELECT {_COLUMNS} FROM datasets d WHERE d.content_hash = ? ORDER BY d.id",
                           (content_hash,))
            stored = next((r for r in same if r["stored"]), None)
            if stored is not None:
                return stored, False
            values = {"format": format, "n_rows": len(examples), "origin": origin, "operation": dumps(operation or {}),
                      "stats": dumps(stats or {})}
            registered = next((r for r in same if r["name"] == name), same[0] if same else None)
            if registered is not None:
                dataset_id = int(registered["id"])
                self.conn.execute(
                    """UPDATE datasets SET format = ?, n_rows = ?, origin = ?, operation = ?, stats = ?,
                              path = COALESCE(path, ?) WHERE id = ?""",
                    (*values.values(), path, dataset_id))
            else:
                taken = self._one("SELECT content_hash FROM datasets WHERE name = ? ORDER BY id LIMIT 1", (name,))
                if taken is not None:
                    raise StoreError(f"a dataset named {name!r} already holds other content (hash "
                                     f"{_short(taken['content_hash'])}); give another name (--name)")
                dataset_id = self._insert("datasets", {"name": name, "content_hash": content_hash, "path": path,
                                                       "created_at": utc_now(), **values})
            self.conn.executemany(
                "INSERT INTO dataset_examples (dataset_id, idx, line, example) VALUES (?, ?, ?, ?)",
                ((dataset_id, i, line, text) for i, (line, text) in enumerate(examples)))
            row = self.get_dataset(dataset_id)
        assert row is not None
        return row, True
