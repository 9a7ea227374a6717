"""``emtui list WHAT [--format table|json]``: every list the TUI shows, from the command line — for
scripts (JSON: every field, one object per row) and for a quick look (a table that fits 80 columns).

Jobs and workers have their own commands (``emtui jobs``, ``emtui worker status``), which take
``--format json`` too; they are listed here as well so that one command covers everything."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emtui.cli import UsageError

PAGE = 500


@dataclass(frozen=True)
class Listing:
    """One list: how to read every row (in pages where the store pages it), and the table's columns."""

    about: str
    rows: Callable[[Any, argparse.Namespace], Iterator[dict[str, Any]]]
    columns: tuple[str, ...]
    needs: str | None = None  # the option naming what the list is of (--study, --eval-set)


def _paged(method: str) -> Callable[[Any, argparse.Namespace], Iterator[dict[str, Any]]]:
    def rows(store: Any, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            page = getattr(store, method)(limit=PAGE, offset=offset)
            yield from page.rows
            offset += len(page.rows)
            if not page.rows or offset >= page.total:
                return
    return rows


def _whole(method: str) -> Callable[[Any, argparse.Namespace], Iterator[dict[str, Any]]]:
    def rows(store: Any, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
        yield from getattr(store, method)()
    return rows


def _conditions(store: Any, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    study = store.find_study(args.study)
    if study is None:
        raise UsageError(f"emtui list conditions: no study named {args.study!r} in {args.db}")
    for row in store.study_conditions(int(study["id"])):
        yield {"study": study["name"], **row}


def _questions(store: Any, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    found = [e for e in _paged("list_eval_sets")(store, args) if e["name"] == args.eval_set]
    if not found:
        raise UsageError(f"emtui list questions: no eval set named {args.eval_set!r} in {args.db}")
    set_id = int(found[0]["id"])
    offset = 0
    while True:
        page = store.list_questions(set_id, limit=PAGE, offset=offset)
        yield from ({"eval_set": args.eval_set, **r} for r in page.rows)
        offset += len(page.rows)
        if not page.rows or offset >= page.total:
            return


def _workers(store: Any, args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    from engine.runs.detach import worker_rows

    yield from worker_rows(store)


LISTS: dict[str, Listing] = {
    "studies": Listing("every study", _paged("list_studies"),
                       ("id", "name", "origin", "n_conditions", "n_generations", "created_at")),
    "conditions": Listing("a study's conditions (--study)", _conditions,
                          ("id", "name", "n_generations", "dataset", "base_model", "model"), needs="study"),
    "datasets": Listing("training datasets", _paged("list_datasets"),
                        ("id", "name", "format", "n_rows", "n_conditions")),
    "models": Listing("base models, fine-tunes and imported models", _paged("list_models"),
                      ("id", "name", "kind", "source", "base")),
    "eval-sets": Listing("evaluation question sets", _paged("list_eval_sets"),
                         ("id", "name", "n_keys", "n_questions", "source")),
    "questions": Listing("an eval set's questions (--eval-set)", _questions,
                         ("id", "key", "paraphrase", "category", "text"), needs="eval_set"),
    "judges": Listing("the judges and their judgments", _paged("list_judges"),
                      ("id", "name", "provider", "model", "n_judgments", "n_failed")),
    "rubrics": Listing("judge rubrics (by content hash)", _whole("list_rubrics"),
                       ("id", "name", "content_hash", "n_judgments")),
    "runs": Listing("fine-tuning runs", _paged("list_train_runs"),
                    ("id", "condition", "base_model", "dataset", "status", "last_step", "n_checkpoints")),
    "campaigns": Listing("human-evaluation campaigns", _whole("list_campaigns"),
                         ("id", "name", "study", "scale", "overlap", "n_items", "n_ratings", "done_pct")),
    "annotators": Listing("annotators (human and model raters)", _whole("list_annotators"),
                          ("id", "name", "kind", "n_ratings")),
    "jobs": Listing("the job queue (also: emtui jobs)", _paged("list_jobs"),
                    ("id", "kind", "status", "progress_done", "progress_total", "attempts", "error")),
    "workers": Listing("the workers of this database (also: emtui worker status)", _workers,
                       ("name", "slot", "n_gpus", "job_id", "status", "alive")),
}


def add_parser(sub: Any, cmd: Callable[[str, str], argparse.ArgumentParser]) -> None:
    sp = cmd("list", "every list the TUI shows, as a table or JSON: " + ", ".join(LISTS))
    sp.add_argument("what", choices=tuple(LISTS), metavar="WHAT", help="; ".join(f"{k}: {v.about}"
                                                                                 for k, v in LISTS.items()))
    sp.add_argument("--format", choices=("table", "json"), default="table",
                    help="table (fits 80 columns; long cells cut) or json (every field of every row)")
    sp.add_argument("--study", help="conditions: the study")
    sp.add_argument("--eval-set", help="questions: the eval set (its name)")


def list_(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from emtui.streams import plain_table, say

    listing = LISTS[args.what]
    for option in ("study", "eval_set"):
        given = getattr(args, option, None) is not None
        if listing.needs == option and not given:
            raise UsageError(f"emtui list {args.what}: give --{option.replace('_', '-')} NAME")
        if listing.needs != option and given:
            raise UsageError(f"emtui list: --{option.replace('_', '-')} is for "
                             f"{'conditions' if option == 'study' else 'questions'}, not {args.what}")
    if not Path(args.db).expanduser().exists():
        raise UsageError(f"emtui list: no database at {args.db}")
    with _store(args, create=False, readonly=True) as store:
        rows = list(listing.rows(store, args))
    if args.format == "json":
        import sys

        from engine.common.text import json_safe

        sys.stdout.write(json_safe(json.dumps(rows, ensure_ascii=False, default=str, indent=1)) + "\n")
        return 0
    if not rows:
        say(f"no {args.what} in {args.db}")
        return 0
    say(plain_table(list(listing.columns), [["" if r.get(c) is None else str(r.get(c)) for c in listing.columns]
                                            for r in rows], width=_width()))
    return 0


def _width() -> int:
    import shutil

    return max(40, shutil.get_terminal_size((80, 24)).columns)
