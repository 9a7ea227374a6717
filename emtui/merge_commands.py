"""``emtui merge OTHER.db [--dry-run]``: another box's database brought into this one (db/merge.py does it, in one
transaction), and what was added per table. Paths and hosts come from the other file: control sequences are
stripped (``say``), and JSON is escaped."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from db.merge import NOT_MERGED, TABLES, MergeResult
from emtui.streams import plain_table, say


def merge(args: argparse.Namespace) -> int:
    from db import open_store
    from emtui.settings_commands import settings_of

    other = Path(args.other).expanduser()
    with open_store(Path(args.db).expanduser(), create=not args.dry_run,
                    busy_timeout_s=settings_of(args).busy_timeout_s) as store:
        result = store.merge_from(other, dry_run=args.dry_run)
    if args.format == "json":
        from engine.common.text import json_safe

        print(json_safe(json.dumps(as_json(result), indent=2, ensure_ascii=False)))
        return 0
    for line in report(result, args.db):
        say(line)
    return 0


def as_json(r: MergeResult) -> dict[str, Any]:
    return {"source": r.source, "source_uid": r.source_uid, "source_version": r.source_version,
            "source_hosts": r.source_hosts, "dry_run": r.dry_run, "merge_id": r.merge_id, "added": r.added,
            "already_here": r.present, "filled": r.filled, "not_merged": list(NOT_MERGED)}


def report(r: MergeResult, db: str) -> list[str]:
    """The lines a person reads: where it came from, then per table what was (or would be) added."""
    box = ", ".join(r.source_hosts) or "no worker recorded"
    uid = f"database {r.source_uid[:12]}" if r.source_uid else "a database from an older emtui"
    verb = "would add" if r.dry_run else "added"
    head = (f"{'dry run: ' if r.dry_run else ''}{r.source} ({uid}, schema {r.source_version}, hosts: {box}) "
            f"into {db}: {verb} {r.total_added:,} rows" + (f" as merge #{r.merge_id}" if r.merge_id else ""))
    rows = [[t, f"{r.added[t]:,}", f"{r.present[t]:,}"] for t in TABLES if r.added[t] or r.present[t]]
    lines = [head]
    if rows:
        lines.append(plain_table(["table", verb, "already here"], rows))
    for what, n in r.filled.items():
        table, col = what.split(".", 1)
        lines.append(f"{table}: {n:,} given their {col.removesuffix('_id').replace('_', ' ')} from the other box "
                     "(none was here)")
    lines.append(f"not merged: {', '.join(NOT_MERGED)} (they belong to the box that ran them)")
    if r.dry_run:
        lines.append("nothing was written (--dry-run)")
    elif r.merge_id is None:
        lines.append("nothing new: every row of it is here already; nothing was written")
    elif r.total_added:
        lines.append("models and checkpoints trained there keep their paths on that box: emtui runs marks them remote")
    return lines
