"""``emtui data``: training datasets from the command line (engine/training/datasets.py).

``validate`` reads each file whole and prints every problem with its file and line (up to
``--max-problems`` a file), like a linter: one line each on standard output, then a line per
file that is good; exit status 2 when any file has a problem. Nothing is written anywhere.
"""

from __future__ import annotations

import argparse
import json

from emtui.streams import say


def data(args: argparse.Namespace) -> int:
    return {"validate": validate}[args.action](args)


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
