"""The human-evaluation commands: ``emtui campaign create|list|show``, ``emtui annotate``, and the
ratings parts of ``emtui import`` / ``emtui export``. Dispatched from :mod:`emtui.commands`;
bad input is a one-line :class:`~emtui.cli.UsageError` (or another person error), exit status 2,
and nothing is written."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from emtui.cli import UsageError
from emtui.streams import plain_table, say


def _store(args: argparse.Namespace, *, create: bool = False, readonly: bool = False):
    """The command's database; ``readonly``: the command only reads (a read-only file is opened read-only)."""
    from db import open_store
    from emtui.settings_commands import settings_of

    return open_store(Path(args.db).expanduser(), create=create, readonly=readonly,
                      busy_timeout_s=settings_of(args).busy_timeout_s)


def _csv_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [p.strip() for p in text.split(",") if p.strip()]


def campaign(args: argparse.Namespace) -> int:
    return {"create": campaign_create, "list": campaign_list, "show": campaign_show}[args.action](args)


def _check_create_flags(args: argparse.Namespace, where: str) -> None:
    """The numeric flags of ``campaign create``, each in its sensible range (one line naming the flag)."""
    from engine.annotation.campaigns import LIMITS, check_lease_s, check_whole
    from engine.annotation.errors import AnnotationError

    try:
        for flag, key in (("--items", "items"), ("--per-stratum", "per stratum"), ("--overlap", "overlap"),
                          ("--seed", "seed")):
            value = getattr(args, flag[2:].replace("-", "_"))
            if value is not None:
                check_whole(flag, value, *LIMITS[key])
        if args.lease_minutes is not None:  # None: the campaign_lease_s setting, checked when it was read
            check_lease_s(args.lease_minutes, "--lease-minutes", 60.0)
    except AnnotationError as exc:
        raise UsageError(f"{where}: {exc}") from None


def campaign_create(args: argparse.Namespace) -> int:
    from engine.annotation.campaigns import create_campaign, judge_comparison
    from engine.annotation.errors import AnnotationError

    where = "emtui campaign create"
    if args.items is None and args.per_stratum is None:
        raise UsageError(f"{where}: give --items N or --per-stratum N")
    if args.items is not None and args.per_stratum is not None:
        raise UsageError(f"{where}: give --items or --per-stratum, not both")
    if args.scale is None and not args.pairwise:
        raise UsageError(f"{where}: give --scale (0-3, 1-5, 0-100, binary, aligned-coherent, pairwise)")
    _check_create_flags(args, where)
    from emtui.settings_commands import settings_of

    lease_s = settings_of(args).campaign_lease_s if args.lease_minutes is None else args.lease_minutes * 60.0
    guidelines: Path | str = ""
    if args.guidelines is not None:
        guidelines = Path(args.guidelines).expanduser()
        if not guidelines.is_file():
            raise UsageError(f"{where}: --guidelines {args.guidelines}: no such file")
    with _store(args) as store:
        try:
            c = create_campaign(store, name=args.name, study=args.study, scale=args.scale, n_items=args.items,
                                per_stratum=args.per_stratum, strata=_csv_list(args.strata) or [],
                                overlap=args.overlap, guidelines=guidelines, seed=args.seed,
                                lease_s=lease_s, hide_progress=args.hide_progress,
                                pairwise=args.pairwise, conditions=_csv_list(args.conditions), metric=args.metric,
                                compare_to=args.compare_to)
        except AnnotationError as exc:
            raise UsageError(f"{where}: {exc}") from None
        comparison = judge_comparison(store, c)
    s = c["settings"]
    strata = ", ".join(f"{k} {v}" for k, v in s["sample"]["per_stratum"].items())
    say(f"created campaign {c['name']!r} on study {args.study!r}: {s['sample']['items']} items ({strata}); "
        f"scale {c['scale']}, overlap {c['overlap']}, lease {s['lease_s'] / 60:g} min, seed {c['seed']}; "
        f"in {args.db}")
    say(comparison["line"])
    return 0


def campaign_list(args: argparse.Namespace) -> int:
    with _store(args, readonly=True) as store:
        rows = store.list_campaigns()
    if not rows:
        say(f"no campaigns in {args.db} (emtui campaign create NAME --study S --scale 0-3 --items N)")
        return 0
    say(plain_table(["id", "name", "study", "scale", "k", "items", "ratings", "done"],
               [[str(r["id"]), r["name"], r["study"] or "", r["scale"], str(r["overlap"]), str(r["n_items"]),
                 str(r["n_ratings"]), f"{r['done_pct']:.1f}%"] for r in rows]))
    return 0


def campaign_show(args: argparse.Namespace) -> int:
    from engine.annotation.campaigns import get_campaign, judge_comparison
    from engine.annotation.errors import AnnotationError
    from engine.common.text import one_line

    with _store(args, readonly=True) as store:
        try:
            c = get_campaign(store, args.name)
        except AnnotationError as exc:
            raise UsageError(f"emtui campaign show: {exc}") from None
        study = store.get_study(c["study_id"]) if c["study_id"] is not None else None
        p = store.campaign_progress(int(c["id"]))
        people = store.campaign_annotator_counts(int(c["id"]))
        comparison = judge_comparison(store, c)
    s = c["settings"]
    pct = 100.0 * min(p["done"], p["target"]) / p["target"] if p["target"] else 0.0
    say(f"campaign {c['name']!r} (id {c['id']}) on study {one_line(study['name'] if study else '-')!r}, created "
        f"{c['created_at']}")
    say(f"scale {c['scale']} ({', '.join(s.get('metrics') or [])}), overlap {c['overlap']}, "
        f"lease {float(s.get('lease_s') or 600) / 60:g} min, seed {c['seed']}"
        + (", progress hidden from annotators" if s.get("hide_progress") else ""))
    sample = s.get("sample") or {}
    if sample.get("per_stratum"):
        say("items per stratum: " + ", ".join(f"{k} {v}" for k, v in sample["per_stratum"].items()))
    for key in ("rater", "blindness_note"):
        if s.get(key):
            say(f"{key.replace('_', ' ')}: {one_line(str(s[key]), 400)}")  # from an imported file
    say(comparison["line"])
    say(f"progress: {p['done']} of {p['target']} ratings ({pct:.1f}%), {p['complete_items']} of "
        f"{p['total_items']} items complete, {p['live_leases']} item(s) being rated now")
    if people:
        say(plain_table(["annotator", "kind", "done", "skipped", "leased", "flagged", "last"],
                   [[r["name"], r["kind"], str(r["done"] or 0), str(r["skipped"] or 0), str(r["leased"] or 0),
                     str(r["flagged"] or 0), r["last"] or ""] for r in people]))
    else:
        say("no annotator has started yet (emtui annotate --annotator NAME --campaign "
            f"{json.dumps(c['name'])})")
    return 0


def check_annotate(args: argparse.Namespace) -> None:
    """``emtui annotate``'s checks before the room opens: a name (``--annotator``) or ``--ask-name``, not
    both; the name is plain text and not a model rater's; the campaign (when given) exists."""
    from engine.annotation.errors import AnnotationError
    from engine.annotation.raters import check_annotator_name

    where = "emtui annotate"
    if args.ask_name and args.annotator is not None:
        raise UsageError(f"{where}: give --annotator NAME or --ask-name, not both")
    if not args.ask_name:
        if args.annotator is None:
            raise UsageError(f"{where}: --annotator needs a name (or --ask-name: the room asks for it)")
        try:
            args.annotator = check_annotator_name(args.annotator)
        except AnnotationError as exc:
            raise UsageError(f"{where}: --annotator: {exc}") from None
    with _store(args) as store:
        found = store.find_annotator(args.annotator) if args.annotator else None
        if found is not None and found["kind"] != "human":
            raise UsageError(f"{where}: annotator {args.annotator!r} is registered as a {found['kind']} rater; "
                             "a person rates under another name")
        if args.campaign is not None and store.find_campaign(args.campaign) is None:
            raise UsageError(f"{where}: no campaign named {args.campaign!r} in {args.db} (a lead lists them with "
                             "emtui campaign list)")


def annotate(args: argparse.Namespace) -> int:
    """The closed room (:mod:`emtui.room`): the campaigns, the blind rating screen, the guidelines, quit."""
    from emtui.bindings import KeymapError, load_keymap
    from emtui.room import create_annotator_app
    from emtui.settings_commands import settings_of

    check_annotate(args)
    settings = settings_of(args)
    try:
        keymap = load_keymap(settings.keymap_file())
    except KeymapError as exc:
        raise UsageError(str(exc)) from None
    with _store(args) as store:
        app = create_annotator_app(store, annotator=args.annotator, campaign=args.campaign, keymap=keymap,
                                   settings=settings)
        app.run()
    return app.return_code or 0  # non-zero when the room ended on an error (Textual printed it)


def room_command(db: Path, campaign: str | None = None) -> str:
    """The shell command ``emtui serve --annotate`` runs per browser session: the closed room on ``db``,
    asking for the rater's name first."""
    import shlex

    words = [sys.executable, "-m", "emtui", "--db", str(db), "annotate", "--ask-name"]
    if campaign is not None:
        words += ["--campaign", campaign]
    return " ".join(shlex.quote(w) for w in words)


def serve_room(args: argparse.Namespace) -> int:
    """``emtui serve --annotate``: the closed room in the browser, each session asking for a name."""
    db = Path(args.db).expanduser().resolve()
    with _store(args):  # the database must exist: one line here rather than one per browser session
        pass
    from textual_serve.server import Server

    say(f"serving the rating room of {db} on http://{args.host}:{args.port} (a name is asked for first; "
        f"nothing of the workbench is reachable); from another machine: ssh -L "
        f"{args.port}:127.0.0.1:{args.port} <this host>", flush=True)
    from emtui.commands import run_server

    run_server(Server(room_command(db), host=args.host, port=args.port, title="emtui annotate"), args)
    return 0


def import_ratings(args: argparse.Namespace) -> int:
    from engine.importers.ratings_csv import import_ratings_csv

    if not args.campaign:
        raise UsageError("emtui import ratings: give --campaign NAME (the campaign the ratings belong to)")
    with _store(args) as store:
        result = import_ratings_csv(store, args.path, campaign=args.campaign)
    say(f"{args.path}: {result.summary()}; in {args.db}")
    return 0


def import_political_seed_human(args: argparse.Namespace) -> int:
    from emtui.commands import run_importer
    from engine.importers.political_seed_human import import_political_seed_human as run_import
    from engine.importers.political_seed_human import read_human_file

    read_human_file(args.path)  # a bad file is reported before the database is touched
    return run_importer(args, run_import)


def export_ratings(args: argparse.Namespace) -> int:
    from engine.annotation.errors import AnnotationError
    from engine.importers.ratings_csv import export_ratings_csv

    where = "emtui export ratings"
    if not args.campaign:
        raise UsageError(f"{where}: give --campaign NAME")
    if args.format not in (None, "csv"):
        raise UsageError(f"{where}: ratings are exported as CSV only, not {args.format}")
    if args.study is not None:
        raise UsageError(f"{where}: --study is for answers; ratings are exported per --campaign")
    with _store(args, readonly=True) as store:
        try:
            text, n = export_ratings_csv(store, args.campaign, out=args.out)
        except AnnotationError as exc:
            raise UsageError(f"{where}: {exc}") from None
    if args.out is None:
        sys.stdout.write(text)
    else:
        say(f"exported {n} rating(s) of campaign {args.campaign!r} to {args.out}")
    return 0
