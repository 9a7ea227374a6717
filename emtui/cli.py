"""The ``emtui`` command line. Fast to start: only argparse at import; each command
imports what it needs when it runs. Errors are handled in one place (:func:`main`):
a person sees one line per problem and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

DEFAULT_DB = "emtui.db"
COMMANDS = ("init", "worker", "summary", "import", "export", "figures", "campaign", "annotate", "study", "serve",
            "tiny-model", "keys")


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
    sp.add_argument("--by", default="auto", metavar="DIMS",
                    help="breakdowns per condition: comma-separated model, checkpoint, question, category, "
                         "trigger; 'auto' (default: model, checkpoint, category, trigger where they vary "
                         "within a condition) or 'none'")

    sp = cmd("import", "bring files into the database: eval sets, rubrics, published results, human ratings")
    sp.add_argument("format", help="what the file is: eval-set, rubric, political-seed, betley-csv, "
                                   "model-organisms-csv, ratings (CSV rater_id,item_id,score,note; needs --campaign), "
                                   "political-seed-human")
    sp.add_argument("path", help="the file or folder to import")
    sp.add_argument("--name", help="a name for what is imported (default: from the file)")
    sp.add_argument("--campaign", help="ratings: the campaign the ratings belong to")

    sp = cmd("export", "write answers with every score and their provenance, or a campaign's ratings")
    sp.add_argument("what", nargs="?", choices=("answers", "ratings"), default="answers",
                    help="answers (default), or ratings: a campaign's human ratings as CSV "
                         "(rater_id,item_id,score,note; needs --campaign)")
    sp.add_argument("--campaign", help="ratings: the campaign to export")
    sp.add_argument("--format", choices=("jsonl", "csv", "parquet"),
                    help="answers: jsonl (default; with each judgment's raw output), csv, or parquet (needs "
                         "pyarrow); ratings are always csv")
    sp.add_argument("--out", help="output file, written whole or not at all (default: standard output)")
    sp.add_argument("--study", help="only this study's answers (default: every answer)")

    sp = cmd("figures", "publication-ready figures (PNG and PDF) of the summary")
    sp.add_argument("--out", required=True, help="folder to write into (created if its parent exists)")
    sp.add_argument("--study", help="only this study (default: every study)")
    sp.add_argument("--format", default="png,pdf", help="comma-separated: png, pdf, svg (default png,pdf)")
    sp.add_argument("--resamples", type=int, default=2_000, help="bootstrap resamples per CI (default 2000)")
    sp.add_argument("--metric", help="the metric of the judge heatmap (default: the EM metric, else every metric)")

    sp = cmd("campaign", "human-evaluation campaigns: create one from a study, list them, show one's progress")
    csub = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    csub.required = True
    cp = csub.add_parser("create", help="sample a study's answers into a blind rating campaign",
                         description="Sample a study's answers (stratified, seeded) into a blind rating campaign.")
    cp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    cp.add_argument("name", help="the campaign's name (letters, digits, '_', '.', '-')")
    cp.add_argument("--study", required=True, help="the study whose answers are rated")
    cp.add_argument("--scale", help="0-3, 1-5, 0-100, binary, aligned-coherent or pairwise")
    cp.add_argument("--items", type=int, help="how many items, split evenly over the strata")
    cp.add_argument("--per-stratum", type=int, help="how many items from each stratum (instead of --items)")
    cp.add_argument("--strata", default="condition",
                    help="comma-separated: condition, model, checkpoint, category, question (default condition)")
    cp.add_argument("--overlap", type=int, default=1, help="how many different annotators rate each item (k)")
    cp.add_argument("--guidelines", help="a markdown file of rating guidelines, shown to the annotators")
    cp.add_argument("--seed", type=int, default=0, help="seed of the sample, the codes and the orders (default 0)")
    cp.add_argument("--lease-minutes", type=float, default=10.0,
                    help="minutes an idle annotator keeps an item before others may take it (default 10)")
    cp.add_argument("--hide-progress", action="store_true", help="do not show annotators how far the campaign is")
    cp.add_argument("--pairwise", action="store_true",
                    help="pairs of answers to the same question from two conditions (scale pairwise)")
    cp.add_argument("--conditions", help="comma-separated: only these conditions (default: all)")
    cp.add_argument("--metric", help="a name for the rated metric of a one-metric scale")
    cp.add_argument("--judge-metric", help="the judges' metric the ratings are compared with")
    lp = csub.add_parser("list", help="every campaign with its progress", description="Every campaign with its progress.")
    lp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    shp = csub.add_parser("show", help="one campaign: settings, progress, per-annotator counts",
                          description="One campaign: settings, progress, per-annotator counts.")
    shp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    shp.add_argument("name", help="the campaign")

    sp = cmd("annotate", "open the TUI on the Annotate area to rate a campaign blind")
    sp.add_argument("--annotator", required=True, help="your name as an annotator (a human rater)")
    sp.add_argument("--campaign", help="the campaign to rate (default: choose in the TUI)")

    sp = cmd("study", "an imported study's EM rule: set it (set-em) or show it with its history (em)")
    ssub = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    ssub.required = True
    ep = ssub.add_parser("set-em", help="set an imported study's EM rule (kept with the time it was set)",
                         description="Set an imported study's EM rule: which answers count as misaligned, and among "
                                     "which. A study registered from a study file has its rule pre-registered.")
    ep.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    ep.add_argument("study", help="the study")
    side = ep.add_mutually_exclusive_group()
    side.add_argument("--aligned-below", "--below", dest="below", type=float, metavar="T",
                      help="misaligned when the metric (--metric, default aligned) is below T")
    side.add_argument("--above", dest="above", type=float, metavar="T",
                      help="misaligned when the metric is above T (e.g. --metric drift --above 1.5)")
    ep.add_argument("--metric", default="aligned", help="the metric the threshold is on (default aligned)")
    ep.add_argument("--coherent-above", "--coherence-above", dest="coherent_above", type=float, metavar="C",
                    help="an answer counts as coherent when its coherence score is above C")
    ep.add_argument("--coherence-metric", help="the coherence metric (default coherent)")
    ep.add_argument("--denominator", choices=("all", "coherent"),
                    help="the EM rate among every answer with a verdict (all) or among coherent ones (default: "
                         "coherent with --coherent-above, else all)")
    hp = ssub.add_parser("em", help="a study's EM rule in force and its history",
                         description="A study's EM rule in force and its history.")
    hp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    hp.add_argument("study", help="the study")

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
