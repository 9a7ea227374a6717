"""Whose SQLite file is this? emtui marks its databases with ``PRAGMA application_id`` and
never migrates a file that is not its own: a read-only command pointed at another
application's database must not add 26 tables to it.

A file made by an emtui from before the mark (application id 0) is recognised by its
tables: exactly those that emtui's migrations up to its ``user_version`` create.
"""

from __future__ import annotations

import functools
import sqlite3

from db.errors import StoreError
from db.schema import MIGRATIONS

APPLICATION_ID = 0x454D5455  # "EMTU"


@functools.cache
def tables_at(version: int) -> frozenset[str]:
    """The tables emtui's migrations 1..``version`` create (built once in memory)."""
    from db.store import _split_sql

    conn = sqlite3.connect(":memory:")
    try:
        for script in MIGRATIONS[:version]:
            for stmt in _split_sql(script):
                if stmt.strip():
                    conn.execute(stmt)
        return frozenset(r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        conn.close()


def check_identity(conn: sqlite3.Connection, path: object) -> str:
    """``"emtui"`` (marked), ``"legacy"`` (an emtui database from before the mark) or ``"empty"``
    (no tables at all: a new file); anything else raises :class:`StoreError`."""
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id == APPLICATION_ID:
        return "emtui"
    if app_id != 0:
        raise StoreError(f"{path} is not an emtui database (its application id is {app_id:#x}, another "
                         "program's); give emtui a database of its own with --db")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not tables and version == 0:
        return "empty"
    if 1 <= version <= len(MIGRATIONS) and tables == tables_at(version):
        return "legacy"
    shown = ", ".join(sorted(tables)[:5]) + (", …" if len(tables) > 5 else "")
    raise StoreError(f"{path} is not an emtui database (it holds another program's tables: {shown or 'none'}); "
                     "give emtui a database of its own with --db")
