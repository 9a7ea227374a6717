"""``emtui data``: training datasets from the command line (engine/training/datasets.py).

``validate`` reads each file whole and prints every problem with its file and line (up to
``--max-problems`` a file), like a linter: one line each on standard output, then a line per
file that is good; exit status 2 when any file has a problem. Nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emtui.cli import UsageError
from emtui.streams import say
from engine.common.text import strip_control


def data(args: argparse.Namespace) -> int:
    from emtui.dataset_commands import ACTIONS, run

    if args.action in ACTIONS:  # the datasets of the database
        return run(args)
    return {"validate": validate, "stats": stats}[args.action](args)


def validate(args: argparse.Namespace) -> int:
    from engine.common.text import json_safe, strip_control
    from engine.common.untrusted import path_text
    from engine.training.datasets import check_dataset

    checks = [check_dataset(f, max_problems=args.max_problems) for f in args.files]
    if args.format == "json":
        say(json_safe(json.dumps({"files": [
            {"path": path_text(c.path), "format": c.format, "examples": c.n_examples, "ok": c.ok,
             "n_problems": c.n_problems,
             "problems": [{"line": p.line, "message": p.message} for p in c.problems]} for c in checks]},
            ensure_ascii=False, indent=2)))
    else:
        for c in checks:
            for p in c.problems:
                say(strip_control(str(p)))  # a key or value quoted from the file is data: no escapes reach the terminal
            if c.n_problems > len(c.problems):
                say(f"{strip_control(path_text(c.path))}: {c.n_problems - len(c.problems):,} more problem(s) "
                    f"(--max-problems {c.n_problems} shows them all)")
            if c.ok:
                say(f"{strip_control(path_text(c.path))}: ok, {c.n_examples:,} example(s), {c.format}")
        bad = [c for c in checks if not c.ok]
        if bad:
            say(f"{sum(c.n_problems for c in bad):,} problem(s) in {len(bad)} of {len(checks)} file(s)")
    return 2 if any(not c.ok for c in checks) else 0


def _dist(label: str, d) -> str:
    if d is None:
        return f"  {label:<18} —"
    return (f"  {label:<18} min {d.min:,}  median {d.median:,.0f}  p95 {d.p95:,.0f}  max {d.max:,}  "
            f"mean {d.mean:,.0f}")


def stats(args: argparse.Namespace) -> int:
    from engine.common.text import json_safe, strip_control
    from engine.common.untrusted import path_text
    from engine.training.dataset_stats import dataset_stats, load_tokenizer
    from engine.training.datasets import DatasetError

    if args.max_length is not None and not args.tokenizer:
        raise UsageError("emtui data stats: --max-length counts tokens: give --tokenizer DIR too")
    tokenizer = None
    if args.tokenizer:
        try:
            tokenizer = load_tokenizer(args.tokenizer)
        except ValueError as exc:
            raise UsageError(f"emtui data stats: {exc}") from None
    results = []
    for f in args.files:
        try:
            if Path(f).exists():
                _say_file_wins(args, f)
                results.append(dataset_stats(f, tokenizer=tokenizer, tokenizer_name=args.tokenizer,
                                             max_length=args.max_length))
            else:
                results.append(_stored_stats(args, f, tokenizer))
        except DatasetError as exc:
            raise UsageError(f"emtui data stats: {exc} (emtui data validate lists every problem)") from None
    if args.format == "json":
        say(json_safe(json.dumps({"files": [r.as_json() for r in results]}, ensure_ascii=False, indent=2)))
        return 0
    for r in results:
        if r.path is None:
            say(f"{r.dataset}  (stored dataset, {r.format})")
        else:
            say(f"{strip_control(path_text(r.path))}  ({r.format})")
        say(f"  examples {r.examples:,} · assistant turns {r.assistant_turns:,} · multi-turn {r.multi_turn:,} · "
            f"with a system message {r.with_system:,} · exact duplicates {r.duplicates:,}")
        say(_dist("prompt chars", r.characters.get("prompt")))
        say(_dist("response chars", r.characters.get("response")))
        if r.tokens is not None:
            say(_dist("tokens (template)", r.tokens))
        if r.max_length is not None:
            lines = ", ".join(map(str, r.over_max[:20])) + (", ..." if len(r.over_max) > 20 else "")
            where = "lines" if r.path is not None else "examples"
            say(f"  over {r.max_length:,} tokens: {len(r.over_max):,}" + (f" ({where} {lines})" if r.over_max else ""))
    return 0


def _say_file_wins(args: argparse.Namespace, ref: str) -> None:
    """A file ``ref`` that a dataset of the database is also named: say that the file is used."""
    from db import StoreError, open_store

    db = Path(args.db).expanduser()
    if not db.is_file():
        return
    try:  # only a note: a database that cannot be read (another program's file) does not stop a file's stats
        with open_store(db, create=False, readonly=True) as store:
            named = bool(store.find_datasets(ref))
    except StoreError:
        return
    if named:
        print(f"emtui data stats: {strip_control(ref)}: the file (a dataset of the database is named so too: "
              "give its content hash to use it)", file=sys.stderr)


def _stored_stats(args: argparse.Namespace, ref: str, tokenizer):
    """The statistics of a dataset of the database, named ``ref`` (name or content hash)."""
    from emtui.dataset_commands import stored_examples

    db = Path(args.db).expanduser()
    if not db.is_file():
        raise UsageError(f"emtui data stats: {ref}: no such file, and no database at {args.db} to find a dataset so "
                         "named")
    from db import StoreError, open_store
    from engine.training.dataset_stats import examples_stats

    with open_store(db, create=False, readonly=True) as store:
        try:
            dataset = store.resolve_dataset(ref)
        except StoreError as exc:
            raise UsageError(f"emtui data stats: {ref}: no such file, and {exc}") from None
        examples = stored_examples(store, dataset)
    return examples_stats(examples, None, dataset=dataset["name"], tokenizer=tokenizer, tokenizer_name=args.tokenizer,
                          max_length=args.max_length)

