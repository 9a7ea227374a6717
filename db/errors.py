"""Errors of the store, importable without loading SQLite helpers."""

from __future__ import annotations


class StoreError(Exception):
    """A problem with the database a person can act on (bad path, newer schema, ...)."""


def describe_sqlite_error(exc: BaseException, path: object, busy_timeout_ms: int | None = None) -> str:
    """One line a person can act on for an operational SQLite fault (locked, read-only, full
    disk, not a database), naming the database file."""
    msg = str(exc)
    low = msg.lower()
    if "locked" in low or "busy" in low:
        waited = (f" (waited {busy_timeout_ms / 1000:g} s; the busy_timeout_s setting ($EMTUI_BUSY_TIMEOUT_S) "
                  "sets how long)") if busy_timeout_ms is not None else ""
        return f"{path}: the database is locked by another process{waited}; try again when it is done"
    if "readonly" in low or "read-only" in low:
        return f"{path}: the database file or its folder is read-only, and this command writes to it"
    if "disk is full" in low or "database or disk is full" in low:
        return f"{path}: the disk is full (or a file-size limit was reached); nothing more was written"
    if "not a database" in low or "disk image is malformed" in low or "file is encrypted" in low:
        return f"{path}: not a SQLite database, or a damaged one ({msg})"
    if "unable to open" in low:
        return f"{path}: cannot open the database file (check the file's and its folder's permissions)"
    if "disk i/o error" in low:
        return f"{path}: disk I/O error while using the database (a full disk or a file-size limit?)"
    return f"{path}: database error: {msg}"


def database_fault(exc: BaseException, path: object, busy_timeout_s: float | None = None) -> str | None:
    """:func:`describe_sqlite_error`'s line for an SQLite error, None for any other exception.
    ``busy_timeout_s``: the timeout the store was opened with (None: what ``db.store`` would use)."""
    import sqlite3

    if not isinstance(exc, sqlite3.Error):
        return None
    from db.store import busy_timeout_ms

    try:
        timeout: int | None = busy_timeout_ms(busy_timeout_s)
    except StoreError:
        timeout = None
    return describe_sqlite_error(exc, path, timeout)
