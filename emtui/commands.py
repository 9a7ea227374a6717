"""What each ``emtui`` subcommand does. Heavy libraries are imported inside the command
that needs them, never at module level."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import sys
from pathlib import Path

from db import StoreError
from emtui.cli import UsageError
from emtui.streams import say
from engine.annotation.errors import AnnotationError
from engine.importers import ImportFormatError
from engine.settings import SettingsError
from engine.study.eval_sets import EvalSetError
from engine.study.rubrics import RubricError
from engine.study.study_file import StudyError

# Errors that describe a person's bad input: printed one line each, exit status 2.
PersonError = (UsageError, StoreError, StudyError, EvalSetError, RubricError, ImportFormatError, AnnotationError,
               SettingsError)

IMPORT_FORMATS = {
    "eval-set": "an eval question set (.toml, the EM paper's .yaml, or a .json list)",
    "rubric": "judge prompts as a rubric (a judges file {metric: prompt}, the EM paper's judge_prompts, or .toml)",
    "political-seed": "result files of the political-content EM study (a folder)",
    "betley-csv": "a result CSV of the original EM paper",
    "model-organisms-csv": "the model-organisms pipeline's response CSVs (a file, or a folder as one study)",
    "ratings": "human ratings as CSV (rater_id,item_id,score,note) into a campaign (--campaign NAME)",
    "political-seed-human": "the political-content EM study's human rating file (a JSON file)",
}
NOT_YET = 1  # exit status of a command whose engine a later issue builds


def dispatch(args: argparse.Namespace) -> int:
    handler = {
        None: open_tui, "init": init, "worker": worker, "summary": summary, "import": import_,
        "export": export, "figures": figures, "serve": serve, "tiny-model": tiny_model, "keys": keys,
        "campaign": campaign, "annotate": annotate, "study": study, "settings": settings, "doctor": doctor,
        "jobs": jobs, "list": list_, "data": data, "train": train, "runs": runs,
        "generate": generate, "answers": answers, "judge": judge, "merge": merge, "run": run_study,
        "status": study_status, "demo": demo,
    }[args.command]
    return handler(args)


def demo(args: argparse.Namespace) -> int:
    from emtui.demo_commands import demo as run

    return run(args)


def _store(args: argparse.Namespace, *, create: bool = True, readonly: bool = False):
    """The command's database. ``readonly``: the command only reads, so a read-only file or folder
    is opened read-only instead of refused."""
    from db import open_store
    from emtui.settings_commands import settings_of

    return open_store(Path(args.db).expanduser(), create=create, readonly=readonly,
                      busy_timeout_s=settings_of(args).busy_timeout_s)


def _check_study(store, args: argparse.Namespace, command: str) -> None:
    """``--study NAME`` must name a study of the database."""
    if args.study is not None and store.find_study(args.study) is None:
        raise UsageError(f"emtui {command}: no study named {args.study!r} in {args.db}")


def open_tui(args: argparse.Namespace) -> int:
    from emtui.app import create_app
    from emtui.bindings import KeymapError, load_keymap
    from emtui.settings_commands import settings_of

    settings = settings_of(args)
    try:
        keymap = load_keymap(settings.keymap_file())
    except KeymapError as exc:
        raise UsageError(str(exc)) from None
    store = _store(args)
    app = create_app(store, keymap=keymap, settings=settings)
    app.run()
    store.close()
    return app.return_code or 0  # non-zero when the app ended on an error (Textual printed it)


def annotate(args: argparse.Namespace) -> int:
    """``emtui annotate --annotator NAME | --ask-name [--campaign NAME]``: the closed rating room."""
    from emtui.annotate_commands import annotate as run

    return run(args)


def campaign(args: argparse.Namespace) -> int:
    from emtui.annotate_commands import campaign as run

    return run(args)


def data(args: argparse.Namespace) -> int:
    from emtui.data_commands import data as run

    return run(args)


def generate(args: argparse.Namespace) -> int:
    from emtui.generate_commands import generate as run

    return run(args)


def judge(args: argparse.Namespace) -> int:
    from emtui.judge_commands import judge as run

    return run(args)


def run_study(args: argparse.Namespace) -> int:
    from emtui.study_run_commands import run

    return run(args)


def study_status(args: argparse.Namespace) -> int:
    from emtui.study_run_commands import status

    return status(args)


def answers(args: argparse.Namespace) -> int:
    from emtui.generate_commands import answers as run

    return run(args)


def merge(args: argparse.Namespace) -> int:
    from emtui.merge_commands import merge as run

    return run(args)


def train(args: argparse.Namespace) -> int:
    from emtui.train_commands import train as run

    return run(args)


def study(args: argparse.Namespace) -> int:
    from emtui.study_commands import study as run

    return run(args)


def settings(args: argparse.Namespace) -> int:
    from emtui.settings_commands import settings as run

    return run(args)


def doctor(args: argparse.Namespace) -> int:
    from emtui.settings_commands import doctor as run

    return run(args)


def init(args: argparse.Namespace) -> int:
    from engine.common.hashing import short
    from engine.study.study_file import AlreadyRegistered, load_study, register_study

    if args.example is not None:
        return write_example_study(args)
    if args.study is None:
        raise UsageError("emtui init: give a study file (or builtin:insecure-code, or --example DIR to write a "
                         "copy of the example study to edit)")
    study = load_study(args.study)  # validate before the database is touched
    n_questions = sum(len(es.questions) for es, _ in study.eval_sets)
    what = (f"{len(study.conditions)} conditions, {len(study.eval_sets)} eval set(s) "
            f"({n_questions} questions), {len(study.judges)} judge(s)")
    if args.check:
        say(f"{args.study}: valid study {study.name!r} (hash {short(study.spec_hash)}): {what}")
        return 0
    with _store(args) as store:
        try:
            register_study(store, study)
        except AlreadyRegistered:
            say(f"study {study.name!r} is already registered with this exact content "
                f"(hash {short(study.spec_hash)}) in {args.db}")
            return 0
    say(f"registered study {study.name!r} (hash {short(study.spec_hash)}) in {args.db}: {what}")
    return 0


def write_example_study(args: argparse.Namespace) -> int:
    """``emtui init --example DIR``: a copy of the commented example study, to edit and register."""
    from engine.common.atomic import atomic_file
    from engine.common.resources import data_path

    if args.study is not None or args.check:
        raise UsageError("emtui init: --example DIR writes the example study; give no study file or --check with it")
    folder = Path(args.example).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"emtui init: --example {folder}: is a file, not a folder")
    if not folder.exists() and not folder.parent.is_dir():
        raise UsageError(f"emtui init: --example {folder}: its parent folder {folder.parent} does not exist")
    target = folder / "insecure_code.toml"
    if target.exists():
        raise UsageError(f"emtui init: {target} exists already; nothing was written")
    created = not folder.exists()
    folder.mkdir(exist_ok=True)
    try:
        with atomic_file(target, "wb") as f:  # whole or not at all
            f.write(data_path("studies", "insecure_code.toml").read_bytes())
    except OSError as exc:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise OSError(exc.errno, exc.strerror, str(target)) from None
    say(f"wrote the example study to {target}; edit it, then register it: emtui init {shlex.quote(str(target))}")
    return 0


def worker(args: argparse.Namespace) -> int:
    from emtui.run_commands import worker as run

    return run(args)


def list_(args: argparse.Namespace) -> int:
    from emtui.list_commands import list_ as run

    return run(args)


def runs(args: argparse.Namespace) -> int:
    from emtui.runs_commands import runs as run

    return run(args)


def jobs(args: argparse.Namespace) -> int:
    from emtui.run_commands import jobs as run

    return run(args)


def _not_yet(what: str, issue: str) -> int:
    print(f"emtui {what}: not built yet ({issue}); nothing was done", file=sys.stderr)
    return NOT_YET


def summary(args: argparse.Namespace) -> int:
    from engine.results.breakdowns import parse_breakdowns
    from engine.results.report_format import to_csv, to_json, to_markdown
    from engine.results.summary import SummaryOptions, build_summary

    try:
        by = parse_breakdowns(args.by)
    except ValueError as exc:
        raise UsageError(f"emtui summary: --by: {exc}") from None
    opts = SummaryOptions(n_resamples=args.resamples, seed=args.seed, correction=args.correction,
                          study=args.study, by=by, aggregate=args.aggregate)
    from engine.runs.progress import console_progress

    with _store(args, create=False, readonly=True) as store:
        _check_study(store, args, "summary")
        with console_progress("summary", plain=False) as progress:  # a bar on a terminal's stderr only
            report = build_summary(store, opts, progress=progress)
    if args.format == "table":
        from emtui.summary_table import PipeConsole, render

        render(report, PipeConsole())  # COLUMNS is respected; 80 when piped
        return 0
    text = {"json": to_json, "csv": to_csv, "markdown": to_markdown}[args.format](report)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def export(args: argparse.Namespace) -> int:
    if getattr(args, "what", "answers") == "ratings":
        from emtui.annotate_commands import export_ratings

        return export_ratings(args)
    if getattr(args, "campaign", None) is not None:
        raise UsageError("emtui export: --campaign is for 'emtui export ratings'")
    from engine.results.export import ExportError, export_answers

    with _store(args, create=False, readonly=True) as store:
        try:
            result = export_answers(store, args.format or "jsonl", out=args.out, study=args.study)
        except ExportError as exc:
            raise UsageError(f"emtui export: {exc}") from None
    if result.path is not None:
        n_scores = sum(c.startswith("score.") for c in result.columns)
        say(f"exported {result.rows} answer(s) with {n_scores} score column(s) to {result.path}")
    return 0


def figures(args: argparse.Namespace) -> int:
    from engine.results.figures import FigureError, FigureOptions, make_figures

    try:
        opts = FigureOptions.parse(formats=args.format, n_resamples=args.resamples, metric=args.metric)
        out = FigureOptions.out_dir(args.out)
    except FigureError as exc:
        raise UsageError(f"emtui figures: {exc}") from None
    with _store(args, create=False, readonly=True) as store:
        _check_study(store, args, "figures")
        from engine.runs.progress import console_progress

        try:
            with console_progress("figures", plain=False) as progress:  # a bar on a terminal's stderr only
                result = make_figures(store, out, study=args.study, opts=opts, on_note=say, progress=progress)
        except FigureError as exc:
            raise UsageError(f"emtui figures: {exc}") from None
    for path in result.written:
        say(path)
    say(f"{len(result.written)} file(s) written to {out}")
    return 0


def run_importer(args: argparse.Namespace, run_import) -> int:
    """Run one importer of published results into the database: all or nothing, a no-op twice."""
    from engine.importers import AlreadyImported

    with _store(args) as store:
        try:
            result = run_import(store, args.path, name=args.name)
        except AlreadyImported as exc:
            say(f"{args.path}: {exc} in {args.db}; nothing was done")
            return 0
    say(f"{result.summary()}; into {args.db}")
    return 0


def import_(args: argparse.Namespace) -> int:
    if args.format not in IMPORT_FORMATS:
        known = "; ".join(f"{k}: {v}" for k, v in IMPORT_FORMATS.items())
        raise UsageError(f"emtui import: unknown format {args.format!r} (known: {known})")
    if not Path(args.path).exists():
        raise UsageError(f"emtui import: {args.path}: no such file or folder")
    if getattr(args, "campaign", None) is not None and args.format != "ratings":
        raise UsageError(f"emtui import: --campaign is for ratings, not {args.format}")
    if args.format == "ratings":
        from emtui.annotate_commands import import_ratings

        return import_ratings(args)
    if args.format == "political-seed-human":
        from emtui.annotate_commands import import_political_seed_human

        return import_political_seed_human(args)
    from emtui.import_commands import import_files

    return import_files(args)


def serve(args: argparse.Namespace) -> int:
    if args.annotate:
        from emtui.annotate_commands import serve_room

        return serve_room(args)
    db = Path(args.db).expanduser().resolve()
    from db import open_store
    from emtui.settings_commands import settings_of

    # fail here, with one line, rather than inside every browser session
    open_store(db, busy_timeout_s=settings_of(args).busy_timeout_s).close()
    from textual_serve.server import Server

    command = f"{shlex.quote(sys.executable)} -m emtui --db {shlex.quote(str(db))}"
    say(f"serving emtui on http://{args.host}:{args.port} (database {db}); "
        f"from your machine: ssh -L {args.port}:127.0.0.1:{args.port} <this host>")
    run_server(Server(command, host=args.host, port=args.port, title="emtui"), args)
    return 0


def run_server(server, args: argparse.Namespace) -> None:
    """Serve until stopped; an address that can't be bound (a host that does not resolve, a port in
    use) is one line naming --host and --port, not the database."""
    try:
        server.serve()
    except OSError as exc:
        raise UsageError(f"emtui serve: --host {args.host} --port {args.port}: {exc.strerror or exc}") from None


def tiny_model(args: argparse.Namespace) -> int:
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise UsageError(f"emtui tiny-model: {out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"emtui tiny-model: {out} exists and is not empty")
    if not out.parent.exists():
        raise UsageError(f"emtui tiny-model: folder {out.parent} does not exist")
    from engine.common.atomic import atomic_folder
    from engine.models.tiny_model import build_tiny_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        with atomic_folder(out) as folder:  # the model appears whole or not at all
            build_tiny_model(folder, seed=args.seed)
    except Exception as exc:  # the tokenizer and safetensors write in Rust: "... (os error 27)"
        code = re.search(r"\(os error (\d+)\)", str(exc))
        if code is None or isinstance(exc, OSError):
            raise
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(out)) from None
    say(f"tiny model written to {out}")
    return 0


def keys(args: argparse.Namespace) -> int:
    from emtui.bindings import all_bindings, key_label
    from emtui.settings_commands import settings_of

    say(f"# keymap file: {settings_of(args).keymap_file()}  (TOML: binding-id = \"key[,key]\")")
    for area, binding_id, key, description in all_bindings():
        say(f"{binding_id:22} {key_label(key):10} {area:9} {description}")
    return 0
