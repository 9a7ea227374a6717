"""The ``emtui`` command line. Fast to start: only argparse at import; each command
imports what it needs when it runs. Errors are handled in one place (:func:`main`):
a person sees one line per problem and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

DEFAULT_DB = "emtui.db"
COMMANDS = ("init", "worker", "summary", "import", "export", "figures", "serve", "tiny-model", "keys")


class UsageError(Exception):
    """Bad input from the person at the keyboard; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse prints usage + message; we print one line
        if "invalid choice" in message and "COMMAND" in message:
            bad = message.split("invalid choice:", 1)[1].split("(", 1)[0].strip()
            message = f"unknown command {bad} (commands: {', '.join(COMMANDS)})"
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


def default_db() -> str:
    return os.environ.get("EMTUI_DB") or DEFAULT_DB


def build_parser() -> argparse.ArgumentParser:
    db_help = f"the database file (default: $EMTUI_DB or ./{DEFAULT_DB})"
    p = _Parser(prog="emtui", description="A terminal workbench for emergent-misalignment research. "
                "With no command, opens the TUI on the database.")
    p.add_argument("--db", help=db_help)
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def cmd(name: str, help: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        # --db is accepted after the command too
        sp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
        return sp

    sp = cmd("init", "validate a study file and register it (pre-registration) in the database")
    sp.add_argument("study", help="the study file (study.toml); see data/studies/ for an example")
    sp.add_argument("--check", action="store_true", help="validate only; write nothing")

    sp = cmd("worker", "run queued jobs (training, generation, judging) until stopped")
    sp.add_argument("--once", action="store_true", help="exit when the queue is empty")
    sp.add_argument("--poll", type=float, default=2.0, help="seconds between looks at an empty queue")
    sp.add_argument("--detach", action="store_true",
                    help="run in the background, in a new session, so it survives a dropped SSH session")

    sp = cmd("summary", "EM rates, scores and agreement with confidence intervals")
    sp.add_argument("--format", choices=("table", "json", "csv", "markdown"), default="table")
    sp.add_argument("--study", help="only this study (default: every study)")
    sp.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples per CI (default 10000)")
    sp.add_argument("--seed", type=int, help="bootstrap seed (default: each study's own seed)")
    sp.add_argument("--correction", choices=("holm", "bonferroni"), default="holm",
                    help="multiple-comparison correction of the p-values")

    sp = cmd("import", "bring files into the database: eval sets, published results (ratings next)")
    sp.add_argument("format", help="what the file is: eval-set, political-seed, betley-csv, ratings")
    sp.add_argument("path", help="the file or folder to import")
    sp.add_argument("--name", help="a name for what is imported (default: from the file)")

    sp = cmd("export", "write answers with every score and their provenance")
    sp.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl",
                    help="jsonl (with each judgment's raw output), csv, or parquet (needs pyarrow)")
    sp.add_argument("--out", help="output file, written whole or not at all (default: standard output)")
    sp.add_argument("--study", help="only this study's answers (default: every answer)")

    sp = cmd("figures", "publication-ready figures (PNG and PDF) of the summary")
    sp.add_argument("--out", required=True, help="folder to write into (created if its parent exists)")
    sp.add_argument("--study", help="only this study (default: every study)")
    sp.add_argument("--format", default="png,pdf", help="comma-separated: png, pdf, svg (default png,pdf)")
    sp.add_argument("--resamples", type=int, default=2_000, help="bootstrap resamples per CI (default 2000)")
    sp.add_argument("--metric", help="the metric of the judge heatmap (default: the EM metric, else every metric)")

    sp = cmd("serve", "serve the TUI in a browser (textual-serve)")
    sp.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: use ssh -L)")
    sp.add_argument("--port", type=int, default=8000)

    sp = cmd("tiny-model", "build the tiny offline Qwen2-architecture model used by demos and tests")
    sp.add_argument("out", help="folder to write the model and tokenizer into")
    sp.add_argument("--seed", type=int, default=0)

    cmd("keys", "list every key binding with its id (for the keymap file)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from emtui import commands  # argparse-free, still light

    try:
        args = build_parser().parse_args(argv)
        if args.version:
            from emtui import __version__
            print(f"emtui {__version__}")
            return 0
        args.db = args.db or default_db()
        return commands.dispatch(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except commands.PersonError as exc:
        for line in str(exc).splitlines() or [""]:
            print(f"emtui: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `emtui keys | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
