"""``emtui import`` for eval sets, rubrics and published results (``political-seed``,
``betley-csv``, ``model-organisms-csv``). Dispatched from :mod:`emtui.commands`.

Every file is read and checked before the database is opened, so bad input leaves the
database as it was (or absent); each problem is one line naming the file and the line or
key (exit status 2). Importing what is there already says so and writes nothing.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Any

from emtui.cli import UsageError
from emtui.streams import say

# format -> (module, reader, writer): read(path) checks the files, write(store, checked, name=) stores them
RESULT_IMPORTERS = {
    "political-seed": ("engine.importers.political_seed", "read_political_seed", "write_political_seed"),
    "betley-csv": ("engine.importers.betley_csv", "read_betley_csv", "write_betley_csv"),
    "model-organisms-csv": ("engine.importers.model_organisms_csv", "read_model_organisms_csv",
                            "write_model_organisms_csv"),
}
FORMATS = ("eval-set", "rubric", *RESULT_IMPORTERS)


def _store(args: argparse.Namespace):
    from db import open_store
    from emtui.settings_commands import settings_of

    return open_store(Path(args.db).expanduser(), create=True, busy_timeout_s=settings_of(args).busy_timeout_s)


def import_files(args: argparse.Namespace) -> int:
    if args.format == "eval-set":
        return import_eval_set(args)
    if args.format == "rubric":
        return import_rubric(args)
    module, read, write = RESULT_IMPORTERS[args.format]
    mod = importlib.import_module(module)
    return run_results_importer(args, getattr(mod, read), getattr(mod, write))


def run_results_importer(args: argparse.Namespace, read: Any, write: Any) -> int:
    """Check the files, then write them as a study: all or nothing, a no-op the second time."""
    from engine.importers import AlreadyImported
    from engine.runs.progress import console_progress

    with console_progress(f"import {args.format}", plain=False) as progress:  # a bar on a terminal's stderr only
        progress.note(f"reading {args.path}")
        checked = read(args.path)  # bad input is reported before the database is touched
        progress.note(f"writing into {args.db}")
        with _store(args) as store:
            try:
                result = write(store, checked, name=args.name)
            except AlreadyImported as exc:
                progress.close()
                say(f"{args.path}: {exc} in {args.db}; nothing was done")
                return 0
    say(f"{result.summary()}; into {args.db}")
    return 0


def _free_name(taken: Any, name: str, content_hash: str) -> str:
    """``name``, or when another content has it, ``name-<first hex digits of the content hash>``."""
    from engine.common.hashing import short

    if not taken(name):
        return name
    for n in (8, 12, 64):
        candidate = f"{name}-{short(content_hash, n)}"
        if not taken(candidate):
            return candidate
    raise UsageError(f"emtui import: no free name for {name!r}; choose one with --name")


def import_eval_set(args: argparse.Namespace) -> int:
    from engine.common.hashing import short
    from engine.study.eval_sets import load_eval_set

    es = load_eval_set(str(Path(args.path).resolve()), name=args.name)
    with _store(args) as store, store.transaction():  # look and write under one write lock
        # the same questions are the same eval set, whatever the file's name; --name asks for a copy
        same = store.find_eval_sets(content_hash=es.content_hash, name=args.name)
        if same:
            say(f"{args.path}: already imported as eval set {same[0]['name']!r} (hash {short(es.content_hash)}) "
                f"in {args.db}; nothing was done")
            return 0
        if args.name is not None and store.find_eval_sets(name=es.name):
            raise UsageError(f"emtui import: an eval set named {es.name!r} already holds other questions in "
                             f"{args.db}; choose another --name")
        name = _free_name(lambda n: bool(store.find_eval_sets(name=n)), es.name, es.content_hash)
        store.ensure_eval_set(name=name, source=es.source, content_hash=es.content_hash, questions=es.questions)
    renamed = (f" (an eval set named {es.name!r} already holds other questions, so this one is named after its "
               f"content hash)") if name != es.name else ""
    templates = sum(1 for q in es.questions if q["meta"].get("placeholders"))
    extra = f", {templates} of them templates with placeholders" if templates else ""
    say(f"imported eval set {name!r}{renamed}: {es.n_keys} questions, {len(es.questions)} wordings{extra}, "
        f"into {args.db}")
    return 0


def import_rubric(args: argparse.Namespace) -> int:
    from engine.common.hashing import short
    from engine.common.untrusted import label_problem
    from engine.study.rubrics import RubricError, load_rubric

    rubric = load_rubric(str(Path(args.path).resolve()))
    if args.name is not None and label_problem(args.name):
        raise RubricError(f"{args.path}: --name: {label_problem(args.name, 'the name')}")
    wanted = args.name or rubric.name
    if label_problem(wanted):
        raise RubricError(f"{args.path}: the file's name can't name a rubric ({label_problem(wanted, 'the name')}); "
                          "give it another name (--name)")
    with _store(args) as store, store.transaction():  # look and write under one write lock
        same = store.find_rubric(content_hash=rubric.content_hash)
        if same is not None:
            say(f"{args.path}: already imported as rubric {same['name']!r} (hash {short(rubric.content_hash)}) "
                f"in {args.db}; nothing was done")
            return 0
        if args.name is not None and store.find_rubric(name=wanted) is not None:
            raise UsageError(f"emtui import: a rubric named {wanted!r} already exists with other contents in "
                             f"{args.db}; choose another --name")
        name = _free_name(lambda n: store.find_rubric(name=n) is not None, wanted, rubric.content_hash)
        store.ensure_rubric(name=name, content_hash=rubric.content_hash, body=rubric.body,
                            metrics=[m.as_dict() for m in rubric.metrics])
    renamed = (f" (a rubric named {wanted!r} already exists with other contents, so this one is named after "
               "its content hash)") if name != wanted else ""
    metrics = ", ".join(f"{m.name} ({m.scale[0]:g}-{m.scale[1]:g})" for m in rubric.metrics)
    say(f"imported rubric {name!r}{renamed} (hash {short(rubric.content_hash)}): metrics {metrics}; into {args.db}")
    return 0
