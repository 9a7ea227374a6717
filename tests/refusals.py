"""Checks shared by the importer tests: a refused input is one line on stderr naming the file
(and the line or key), exit status 2, no traceback, and the database byte-identical (or absent)."""

from __future__ import annotations

from pathlib import Path


def db_state(db: Path) -> bytes | None:
    return db.read_bytes() if db.exists() else None


def assert_refused(run_cli, db: Path, *args: object, names: tuple[str, ...] = ()) -> str:
    """Run ``emtui --db DB *args``; it must be refused as bad input. Returns the one line."""
    before = db_state(db)
    r = run_cli("--db", db, *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert db_state(db) == before, "the database changed"
    return lines[0]
