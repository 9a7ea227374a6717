"""The ``emtui`` command line. Fast to start: only argparse at import; each command
imports what it needs when it runs. Errors are handled in one place (:func:`main`):
a person sees one line per problem and exit status 2, never a traceback."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

TYPE_CHECKING = False  # typing itself is not imported at startup
if TYPE_CHECKING:
    from typing import NoReturn

DEFAULT_DB = "emtui.db"  # engine.settings.Settings.db's default, said in --help without importing it
INTERACTIVE = (None, "annotate", "serve", "worker", "demo")  # they handle their own ending (a TUI, a server, ...)
COMMANDS = ("init", "run", "status", "data", "train", "runs", "worker", "jobs", "list", "summary", "import", "export",
            "figures", "campaign", "annotate", "study", "serve", "tiny-model", "keys", "settings", "doctor", "merge",
            "demo")


class UsageError(Exception):
    """Bad input from the person at the keyboard; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse prints usage + message; we print one line
        if "invalid choice" in message and "COMMAND" in message:
            bad = message.split("invalid choice:", 1)[1].split("(", 1)[0].strip()
            message = f"unknown command {bad} (commands: {', '.join(COMMANDS)})"
        raise UsageError(f"{self.prog}: {message} (see '{self.prog} --help')")


SEED_MAX = 2**63 - 1
RESAMPLES = (100, 100_000)


def _ranged(convert, what: str, lo: float, hi: float, show):
    """An argparse type: ``convert(text)`` within ``lo``..``hi`` (a NaN fails every comparison);
    anything else is a one-line usage error."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what} from {show(lo)} to {show(hi)}, not {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be from {show(lo)} to {show(hi)}, not {text}")
        return value
    return parse


def int_in(lo: int, hi: int):
    return _ranged(int, "an integer", lo, hi, lambda v: f"{v:,}")


def float_in(lo: float, hi: float):
    return _ranged(float, "a number", lo, hi, lambda v: f"{v:g}")


def build_parser() -> argparse.ArgumentParser:
    db_help = f"the database file (default: the db setting: $EMTUI_DB, the config file, or ./{DEFAULT_DB})"
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
    sp.add_argument("study", nargs="?", help="the study file (study.toml), or builtin:insecure-code for the "
                                             "example study shipped with emtui")
    sp.add_argument("--check", action="store_true", help="validate only; write nothing")
    sp.add_argument("--example", metavar="DIR", help="write the commented example study into DIR (to edit), "
                                                     "register nothing")

    sp = cmd("train", "queue fine-tuning runs of a study's conditions (or resume one); a worker trains them")
    sp.add_argument("--study", help="the study whose trained conditions to queue")
    sp.add_argument("--condition", help="only this condition")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a recipe key (repeatable): --set learning_rate=2e-5 --set preset=betley")
    sp.add_argument("--again", action="store_true", help="queue a condition even when a run with the same recipe "
                                                         "is queued, running or done")
    sp.add_argument("--resume", type=int_in(1, 2**62), metavar="RUN",
                    help="queue a failed or cancelled run again: it continues from its newest complete checkpoint")
    sp.add_argument("--no-worker", action="store_true", help="do not start a worker (default: start a detached "
                                                             "one when none is alive)")

    sp = cmd("generate", "queue answers of a study's models (the base, each fine-tune, their checkpoints) to its "
             "eval questions; a worker makes them")
    sp.add_argument("--study", required=True, help="the study whose models answer")
    sp.add_argument("--condition", action="append", metavar="NAME", help="only this condition's model (repeatable; "
                    "default: every condition)")
    sp.add_argument("--model", action="append", metavar="NAME", help="also (or, without --condition: only) this "
                    "model, by its name in emtui list models (repeatable)")
    sp.add_argument("--eval-set", action="append", metavar="NAME", help="only this eval set of the study "
                    "(repeatable; default: all)")
    sp.add_argument("--samples", type=int_in(1, 1_000_000), metavar="N",
                    help="answers per question wording (default: the question's own count, else the study's)")
    sp.add_argument("--checkpoints", action="store_true",
                    help="also every checkpoint of each condition's latest training run (curves over steps)")
    trig = sp.add_mutually_exclusive_group()
    trig.add_argument("--trigger", action="store_true", default=None,
                      help="ask every question with and without the study's trigger (default when it sets one)")
    trig.add_argument("--no-trigger", dest="trigger", action="store_false", help="only without the trigger")
    sp.add_argument("--set", action="append", metavar="KEY=VALUE",
                    help="override a generation setting (repeatable): temperature, top_p, top_k, max_new_tokens, "
                         "batch_size, seed, system_prompt, trigger, trigger_position")
    sp.add_argument("--backend", choices=("transformers", "openai"), default="transformers",
                    help="transformers (default: a worker loads the models) or openai (any OpenAI-compatible "
                         "completions server, e.g. vllm serve)")
    sp.add_argument("--base-url", metavar="URL", help="openai: the server's http://HOST:PORT/v1")
    sp.add_argument("--served-name", action="append", metavar="MODEL=NAME",
                    help="openai: the name the server serves a model under (default: an adapter by its name "
                         "in emtui, the base by its source)")
    sp.add_argument("--concurrency", type=int_in(1, 4096), default=64, metavar="N",
                    help="openai: requests in flight (default 64; vLLM batches what is in flight)")
    sp.add_argument("--4bit", dest="four_bit", action="store_true", help="load the base in 4 bits (nf4)")
    sp.add_argument("--again", action="store_true", help="queue even when the same run is queued or running")
    sp.add_argument("--dry-run", action="store_true", help="check the run and say what it would answer with; "
                                                           "queue nothing")
    sp.add_argument("--no-worker", action="store_true", help="do not start a worker (default: start a detached "
                                                             "one when none is alive)")

    sp = cmd("judge", "queue judging of a study's answers by its panel (every answer not judged yet on the rubric); "
             "a worker runs it")
    sp.add_argument("--study", required=True, help="the study whose answers are judged")
    sp.add_argument("--judge", action="append", metavar="NAME", help="only this judge of the study (repeatable; "
                    "default: the study's panel)")
    sp.add_argument("--rubric", metavar="NAME", help="the rubric, by name or content-hash prefix (default: the "
                    "study's)")
    sp.add_argument("--budget", type=float_in(0.0001, 10**9), metavar="USD",
                    help="stop cleanly once the study's judge calls have cost this much (everything done is kept)")
    sp.add_argument("--dry-run", action="store_true", help="say how many calls the panel would make; queue nothing")
    sp.add_argument("--again", action="store_true", help="queue even when the same run is queued or running")
    sp.add_argument("--no-worker", action="store_true", help="do not start a worker (default: start a detached "
                                                             "one when none is alive)")
    sp.add_argument("--batch", action="store_true", help="through Bedrock batch inference (half price, hours, at "
                    "least 100 calls a judge): needs --s3 and --role-arn")
    sp.add_argument("--s3", metavar="S3_URI", help="--batch: where the jobs' input and output go (s3://BUCKET/PREFIX)")
    sp.add_argument("--role-arn", metavar="ARN", help="--batch: the IAM service role Bedrock runs the jobs as")

    sp = cmd("answers", "stored answers: list a job's, show one, or regenerate one from its record")
    sp.add_argument("action", choices=("list", "show", "regenerate"),
                    help="list --job J: a job's answers; show ID: one answer with its settings and seed; "
                         "regenerate ID: make it again, alone, and compare")
    sp.add_argument("target", nargs="?", type=int_in(1, 2**62), metavar="ID", help="show / regenerate: the "
                    "answer's id")
    sp.add_argument("--job", type=int_in(1, 2**62), metavar="J", help="list: the generate job")
    sp.add_argument("--limit", type=int_in(1, 1_000_000), default=50, help="list: at most N answers")
    sp.add_argument("--offset", type=int_in(0, 2**62), default=0, help="list: skip the first N")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--base-url", metavar="URL", help="regenerate: where the endpoint of an answer made through "
                    "one is now")

    sp = cmd("worker", "run queued jobs, each in a process of its own (run, the default); status; stop")
    sp.add_argument("action", nargs="?", choices=("run", "status", "stop"),
                    help="run (default): run jobs until stopped; status: every worker of the database; stop: "
                         "stop this host's workers of the database (each queues its job again)")
    sp.add_argument("--once", action="store_true", help="run what is queued and runnable, then exit")
    sp.add_argument("--max-jobs", type=int_in(1, 10**9), metavar="N", help="exit after N jobs")
    sp.add_argument("--kinds", metavar="K,...", help="only these job kinds (default: every kind known)")
    sp.add_argument("--gpus", metavar="0,1,...", help="one worker per GPU, each with CUDA_VISIBLE_DEVICES set "
                    "(default: one worker offering the GPUs it finds)")
    sp.add_argument("--poll", type=float_in(0.01, 3600), default=None,
                    help="seconds between looks at an empty queue (default: the worker_poll_s setting, 2)")
    sp.add_argument("--detach", action="store_true",
                    help="run in the background, in a new session, so it survives a dropped SSH session "
                         "(pidfile and log next to the database)")
    sp.add_argument("--as-detached", action="store_true", help=argparse.SUPPRESS)
    sp.add_argument("--format", choices=("table", "json"), default="table", help="status: table or json")
    sp.add_argument("--wait", type=float_in(0, 86_400), metavar="S",
                    help="stop: seconds to wait for the workers to end (default: twice the cancel grace + 10)")

    sp = cmd("jobs", "the job queue: list it (default), cancel, retry or read a job (log), queue one (add)")
    sp.add_argument("action", nargs="?", choices=("list", "cancel", "retry", "log", "add"),
                    help="list (default); cancel ID; retry ID; log ID (history, traceback, log tail); add KIND")
    sp.add_argument("target", nargs="?", metavar="ID|KIND", help="the job's id, or the kind of job to add")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--status", choices=("queued", "running", "done", "failed", "cancelled"),
                    help="list: only jobs in this state")
    sp.add_argument("--limit", type=int_in(1, 1_000_000), default=50, help="list: the newest N jobs (default 50)")
    sp.add_argument("--lines", type=int_in(0, 100_000), default=40, help="log: lines of the job's log (default 40)")
    sp.add_argument("--payload", metavar="JSON", help="add: the job's payload, a JSON object")
    sp.add_argument("--after", metavar="ID,...", help="add: run after these jobs are done (fail if one fails)")
    sp.add_argument("--gpu", type=int_in(0, 64), default=0, help="add: GPUs the job needs (default 0)")
    sp.add_argument("--priority", type=int_in(-10**6, 10**6), default=0, help="add: higher runs first")
    sp.add_argument("--max-attempts", type=int_in(1, 1000), metavar="N",
                    help="add: tries when its worker dies (default: $EMTUI_JOB_MAX_ATTEMPTS or 3)")

    sp = cmd("runs", "fine-tuning runs with their last metrics and checkpoints; show ID: one run in full")
    sp.add_argument("action", nargs="?", choices=("list", "show"), help="list (default); show ID: its "
                    "configuration, provenance, checkpoints and last metrics")
    sp.add_argument("target", nargs="?", metavar="ID", help="show: the run's id")
    sp.add_argument("--study", help="list: only this study's runs")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--limit", type=int_in(1, 1_000_000), default=200, help="list: the newest N runs (default 200)")

    sp = cmd("merge", "bring in the studies, runs, answers, judgments and ratings of another box's database "
             "(idempotent; jobs and workers stay there)")
    sp.add_argument("other", metavar="OTHER.db", help="the other box's database (a copy: sqlite3 x.db \".backup "
                    "y.db\"); opened read-only, never written")
    sp.add_argument("--dry-run", action="store_true", help="say what would be added per table; write nothing")
    sp.add_argument("--format", choices=("table", "json"), default="table")

    sp = cmd("summary", "EM rates, scores and agreement with confidence intervals")
    sp.add_argument("--format", choices=("table", "json", "csv", "markdown"), default="table")
    sp.add_argument("--study", help="only this study (default: every study)")
    sp.add_argument("--resamples", type=int_in(*RESAMPLES), default=10_000,
                    help=f"bootstrap resamples per CI ({RESAMPLES[0]:,} to {RESAMPLES[1]:,}; default 10,000)")
    sp.add_argument("--seed", type=int_in(0, SEED_MAX), help="bootstrap seed (default: each study's own seed)")
    sp.add_argument("--correction", choices=("holm", "bonferroni"), default="holm",
                    help="multiple-comparison correction of the p-values")
    sp.add_argument("--by", default="auto", metavar="DIMS",
                    help="breakdowns per condition: comma-separated model, checkpoint, question, category, "
                         "trigger; 'auto' (default: model, checkpoint, category, trigger where they vary "
                         "within a condition) or 'none'")
    sp.add_argument("--aggregate", choices=("mean", "median", "majority"),
                    help="the panel's score for this look only (default: each study's [panel] aggregate, else mean)")

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
    sp.add_argument("--resamples", type=int_in(*RESAMPLES), default=2_000,
                    help=f"bootstrap resamples per CI ({RESAMPLES[0]:,} to {RESAMPLES[1]:,}; default 2,000)")
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
    cp.add_argument("--lease-minutes", type=float,
                    help="minutes an idle annotator keeps an item before others may take it (default: the "
                         "campaign_lease_s setting, 10 minutes)")
    cp.add_argument("--hide-progress", action="store_true", help="do not show annotators how far the campaign is")
    cp.add_argument("--pairwise", action="store_true",
                    help="pairs of answers to the same question from two conditions (scale pairwise)")
    cp.add_argument("--conditions", help="comma-separated: only these conditions (default: all)")
    cp.add_argument("--metric", help="a name for the rated metric of a one-metric scale")
    cp.add_argument("--compare-to", "--judge-metric", dest="compare_to", metavar="METRIC",
                    help="the judges' metric the ratings are compared with (one of the study's rubrics' metrics; "
                         "default: the same name, or the EM metric for a misalignment scale)")
    lp = csub.add_parser("list", help="every campaign with its progress",
                         description="Every campaign with its progress.")
    lp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    shp = csub.add_parser("show", help="one campaign: settings, progress, per-annotator counts",
                          description="One campaign: settings, progress, per-annotator counts.")
    shp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    shp.add_argument("name", help="the campaign")

    sp = cmd("annotate", "rate campaigns blind in a closed room: the campaigns, the rating screen, the guidelines; "
                         "nothing of the workbench")
    sp.add_argument("--annotator", help="your name as an annotator (a human rater)")
    sp.add_argument("--ask-name", action="store_true", help="ask for the name first (instead of --annotator)")
    sp.add_argument("--campaign", help="the campaign to rate (default: choose in the TUI)")

    sp = cmd("data", "training datasets: check (validate), import, list, split, mix, tag with a trigger, export")
    dsub = sp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    dsub.required = True
    vp = dsub.add_parser("validate", help="check chat JSONL or prompt/completion JSONL files: every problem with "
                                          "its line (exit 2 when there is one)",
                         description="Check training datasets line by line: JSON, roles, turn order, empty "
                                     "assistant turns, one format per file. Lists up to --max-problems problems a "
                                     "file; exit status 2 when any file has one.")
    vp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    vp.add_argument("files", nargs="+", metavar="FILE", help="dataset files (.jsonl)")
    vp.add_argument("--max-problems", type=int_in(1, 100_000), default=20, help="problems shown a file (default 20)")
    vp.add_argument("--format", choices=("table", "json"), default="table")
    tp = dsub.add_parser("stats", help="what datasets hold: examples, turns, lengths (tokens with --tokenizer), "
                                       "duplicates, examples over --max-length tokens",
                         description="What training datasets hold: examples, assistant turns, multi-turn and system "
                                     "examples, exact duplicates, prompt and response lengths in characters, and with "
                                     "--tokenizer the tokens of each example through the tokenizer's chat template "
                                     "(what the trainer sees) and the lines over --max-length.")
    tp.add_argument("--db", default=argparse.SUPPRESS, help=db_help)
    tp.add_argument("files", nargs="+", metavar="NAME|FILE",
                    help="dataset files (.jsonl), or datasets of the database by name or content hash (a file wins)")
    tp.add_argument("--tokenizer", metavar="DIR", help="a local model or tokenizer folder with a chat template")
    tp.add_argument("--max-length", type=int_in(1, 10_000_000), metavar="N",
                    help="with --tokenizer: list the examples longer than N tokens")
    tp.add_argument("--format", choices=("table", "json"), default="table")
    from emtui.dataset_commands import add_parsers as add_dataset_parsers  # light: argparse only

    add_dataset_parsers(dsub, db_help)

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
    sp.add_argument("--port", type=int_in(1, 65535), default=8000, help="port to listen on (default 8000)")
    sp.add_argument("--annotate", action="store_true",
                    help="serve only the closed rating room (emtui annotate; a name is asked for first)")

    sp = cmd("demo", "the offline demo: a tiny-model study trained, answered, judged and summarised by a worker "
                     "while the TUI shows it (database: ./demo.db unless --db)")
    sp.add_argument("--no-tui", action="store_true", help="queue the demo and start its worker; open no TUI")
    sp.add_argument("--no-worker", action="store_true", help="start no worker (emtui worker runs the chain)")

    sp = cmd("tiny-model", "build the tiny offline Qwen2-architecture model used by demos and tests")
    sp.add_argument("out", help="folder to write the model and tokenizer into")
    sp.add_argument("--seed", type=int_in(0, SEED_MAX), default=0)

    from emtui.list_commands import add_parser as add_list_parser  # light: argparse and a table of lists
    from emtui.study_run_commands import add_parsers as add_study_run_parsers  # light: argparse only

    add_study_run_parsers(cmd)

    add_list_parser(sub, cmd)

    cmd("keys", "list every key binding with its id (for the keymap file)")

    sp = cmd("settings", "every setting: its value and where it came from (default, config file, environment)")
    sp.add_argument("--format", choices=("table", "json", "markdown"), default="table")

    sp = cmd("doctor", "what this machine can do: Python, torch, CUDA, GPUs, bitsandbytes 4-bit, AWS, free disk")
    sp.add_argument("--format", choices=("table", "json"), default="table")
    sp.add_argument("--worker", action="store_true",
                    help="run the check as a job on a worker (whose environment may differ) and print its report")
    sp.add_argument("--timeout", type=float_in(1, 86400), metavar="S",
                    help="with --worker: seconds to wait for a worker's report (1 to 86,400; default 300)")
    return p


def fault_line(exc: BaseException, db: str | None, busy_timeout_s: float | None = None) -> str | None:
    """The one line a person sees for an operational fault (a locked or read-only database, a full
    disk, an unreadable file); None for anything else, which is a bug and keeps its traceback."""
    import json

    from db.errors import database_fault
    from engine.common.text import strip_control

    line = database_fault(exc, db or "the database", busy_timeout_s)
    if line is not None:
        pass
    elif isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else (db or "")
        line = f"{where}: {exc.strerror}" if where else exc.strerror
    elif isinstance(exc, MemoryError):
        line = "out of memory"
    elif isinstance(exc, json.JSONDecodeError):  # files are parsed by loaders that name them: this is stored JSON
        line = f"{db or 'the database'}: a value stored in the database is not valid JSON (a damaged database?)"
    else:
        return None
    return " ".join(strip_control(line).split())


def main(argv: Sequence[str] | None = None) -> int:
    from emtui import commands  # argparse-free, still light
    from emtui.streams import ending_signals, named_stdout, tolerant_stdout

    tolerant_stdout()
    try:
        args = build_parser().parse_args(argv)
        if args.version:
            from emtui import __version__
            print(f"emtui {__version__}")
            return 0
        if args.db == "":
            raise UsageError("emtui: --db needs a file name")
        from engine.settings import load_settings

        args.settings = load_settings()  # the environment over the config file over the defaults
        args.db = args.db or ("demo.db" if args.command == "demo" else args.settings.db)  # the demo's own db
        if args.command in INTERACTIVE:
            return commands.dispatch(args)
        with ending_signals(), named_stdout():
            return commands.dispatch(args)
    except BrokenPipeError:  # `emtui keys | head`
        sys.stderr.close()
        return 0
    except UsageError as exc:
        _say_error(exc, prefix="")
        return 2
    except commands.PersonError as exc:
        _say_error(exc)
        return 2
    except Exception as exc:  # operational faults: one line naming what failed, never a traceback
        known = args if "args" in locals() else None
        settings = getattr(known, "settings", None)
        line = fault_line(exc, getattr(known, "db", None), settings.busy_timeout_s if settings else None)
        if line is None:
            raise
        _say_error(line)
        return 2
    except KeyboardInterrupt:
        return 130


def _say_error(error: BaseException | str, *, prefix: str = "emtui: ") -> None:
    """Print an error, one problem a line; names and values in it may come from files, so
    terminal control sequences and bidirectional overrides are stripped (see emtui.streams)."""
    from emtui.streams import error_lines

    for line in error_lines(error) or [""]:
        print(f"{prefix}{line}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
