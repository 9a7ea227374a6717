"""The core every query class of the store builds on: the connection, its lock, transactions and
the small query helpers (``_q``, ``_one``, ``_scalar``, ``_tuples``, ``_insert``).
(``utc_now``, ``dumps`` and ``Page`` stay in :mod:`db.store`: the mixins look ``utc_now`` up
there at call time, which is how the demo database fixes the store's clock.)

:class:`StoreCore` is the base of each query mixin (:class:`db.results.ResultsQueries`,
:class:`db.annotation.AnnotationQueries`, :class:`db.jobs.JobQueries`) and of
:class:`db.store.Store`, which opens the connection and migrates. A base class rather than
composition: ``store.claim_job(...)`` stays what every caller writes, and type checkers know
what ``self`` has in a mixin. This module imports neither textual nor torch.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from db.errors import StoreError


def _import_sqlite_utils() -> Any:
    """sqlite-utils imports pandas eagerly (~0.4 s) only to map pandas types we never store.
    Hide pandas during that one import so opening the TUI stays fast; it imports normally later."""
    hide = "pandas" not in sys.modules
    if hide:
        sys.modules["pandas"] = None  # type: ignore[assignment]  # None in sys.modules: "cannot import"
    try:
        import sqlite_utils
    finally:
        if hide and sys.modules.get("pandas", 0) is None:
            del sys.modules["pandas"]
    return sqlite_utils


def file_id(path: Path) -> tuple[int, int] | None:
    """The file at ``path`` (device and inode), None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def inserted_id(cur: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT on ``cur`` made (sqlite3 types ``lastrowid`` as optional)."""
    if cur.lastrowid is None:
        raise StoreError("an insert made no row")
    return cur.lastrowid


class StoreCore:
    """A connection to one emtui database and the helpers every query uses. Thread-safe: calls are
    serialised by ``_lock``. :class:`db.store.Store` sets the attributes below when it opens."""

    path: Path
    conn: sqlite3.Connection
    _lock: threading.RLock
    # the file this connection writes to (None in memory): a write after it was deleted or replaced would be lost
    _file_path: Path | None
    _file_id: tuple[int, int] | None

    @functools.cached_property
    def db(self) -> Any:
        """sqlite-utils over the same connection, for inserts; imported on first use (~40 ms
        that a summary or the TUI's first screen need not pay)."""
        return _import_sqlite_utils().Database(self.conn, execute_plugins=False)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Self]:
        """All-or-nothing writes. ``BEGIN IMMEDIATE`` takes the write lock up front, so two
        processes never deadlock upgrading a read lock; nested blocks become savepoints."""
        with self._lock:
            if self.conn.in_transaction:
                with self.db.atomic():
                    yield self
                return
            self.check_file()
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self.conn.rollback()
                raise
            else:
                self.conn.execute("COMMIT")

    def check_file(self) -> None:
        """Raise :class:`StoreError` when the database file was deleted or replaced since it was opened:
        SQLite would go on writing to the old file, and everything written would be lost with it."""
        if self._file_path is not None and file_id(self._file_path) != self._file_id:
            raise StoreError(f"{self.path}: the database file was deleted or replaced while emtui had it open; "
                             "nothing was written (open it again)")

    def _q(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self.conn.execute(sql, params).fetchall()]

    def _tuples(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples (no sqlite3.Row objects): the columnar reads build arrays from
        millions of them."""
        with self._lock:
            cur = self.conn.cursor()
            cur.row_factory = None
            rows: list[tuple[Any, ...]] = cur.execute(sql, params).fetchall()
            return rows

    def _one(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> dict[str, Any] | None:
        with self._lock:
            row = self.conn.execute(sql, params).fetchone()
        return dict(row) if row is not None else None

    def _scalar(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        with self._lock:
            row = self.conn.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def _insert(self, table: str, row: dict[str, Any]) -> int:
        with self._lock:
            return int(self.db[table].insert(row).last_pk)
