"""``emtui generate`` (queue an evaluation run: engine/generation/queueing.py) and ``emtui answers`` (a job's
answers, one answer, one answer made again from its record)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from emtui.cli import UsageError
from emtui.streams import plain_table, say, start_worker_for


def _served_names(items: list[str] | None) -> dict[str, str]:
    out = {}
    for item in items or []:
        model, sep, name = item.partition("=")
        if not sep or not model.strip() or not name.strip():
            raise UsageError(f"emtui generate: --served-name {item!r}: expected MODEL=NAME")
        out[model.strip()] = name.strip()
    return out


def generate(args: argparse.Namespace) -> int:
    from emtui.commands import _store
    from engine.common.text import strip_control
    from engine.generation.queueing import GenerateQueueError, queue_generation
    from engine.generation.settings import SettingsError, parse_setting

    try:
        overrides = dict(parse_setting(s) for s in args.set or [])
    except SettingsError as exc:
        raise UsageError(f"emtui generate: {exc}") from None
    if args.backend != "openai" and (args.base_url or args.served_name):
        raise UsageError("emtui generate: --base-url and --served-name go with --backend openai")
    if args.backend == "openai" and args.four_bit:
        raise UsageError("emtui generate: --4bit goes with the transformers backend (the server loads the model)")
    served = _served_names(args.served_name)
    with _store(args, create=False) as store:
        try:
            queued = queue_generation(
                store, study=args.study, conditions=args.condition, models=args.model, eval_sets=args.eval_set,
                samples=args.samples, checkpoints=args.checkpoints, trigger=args.trigger, overrides=overrides,
                backend=args.backend, base_url=args.base_url, served_names=served,
                quantization="nf4" if args.four_bit else None, again=args.again, concurrency=args.concurrency,
                dry_run=args.dry_run)
        except GenerateQueueError as exc:
            raise UsageError(f"emtui generate: {strip_control(str(exc))}") from None
        for warning in queued.warnings:
            print(f"emtui generate: warning: {strip_control(warning)}", file=sys.stderr)
        if queued.spec is None:  # every model is on another box
            say(f"not queued: {queued.skipped}")
            return 0
        if args.dry_run:
            _say_plan(store, queued)
            return 0
        if queued.job_id is None:
            say(f"not queued: {queued.skipped} (--again queues it anyway)")
            return 0
        spec = queued.spec
        assert spec is not None
        after = f", after training job(s) {', '.join(map(str, queued.after_jobs))}" if queued.after_jobs else ""
        variants = " with and without the trigger" if "trigger" in spec.variants else ""
        checkpoints = " + checkpoints" if spec.checkpoints else ""
        say(f"queued job {queued.job_id}: {queued.answers:,} answers{checkpoints}{variants} "
            f"({spec.backend}{after}); answers already stored are skipped")
        if queued.judge_job_id is not None:
            say(f"queued job {queued.judge_job_id}: judging the answers once job {queued.job_id} is done")
        start_worker_for(store, args.no_worker, "emtui jobs or the Eval queue screen")
    return 0


def _say_plan(store: Any, queued: Any) -> None:
    """What a run would answer with (``--dry-run``)."""
    from engine.common.hashing import short
    from engine.generation.settings import hashed_settings, settings_hash

    spec = queued.spec
    conditions = {int(c["id"]): c for c in store.study_conditions(spec.study_id)}
    say(f"would queue {queued.answers:,} answers for study {spec.study} ({queued.skipped}):")
    for cid in spec.conditions:
        c = conditions[cid]
        say(f"  condition {c['name']}: {c.get('model') or 'its model once trained'}"
            + (" + every checkpoint" if spec.checkpoints and c.get("dataset_id") is not None else ""))
    for mid in spec.models:
        say(f"  model {(store.get_model(mid) or {}).get('name')}")
    sets = {int(e["id"]): e for e in store.study_eval_sets(spec.study_id)}
    names = [str(sets[e]["name"]) if e in sets else f"eval set {e}" for e in spec.eval_sets]
    say(f"  eval sets: {', '.join(names)}; samples: {spec.samples or 'per question / the study'}; "
        f"variants: {' and '.join(v or 'as asked' for v in spec.variants)}")
    shown = {k: v for k, v in hashed_settings(spec.settings).items() if k != "sampler"}
    say(f"  settings {short(settings_hash(spec.settings))}: {json.dumps(shown, sort_keys=True)}")
    if queued.after_jobs:
        say(f"  after training job(s) {', '.join(map(str, queued.after_jobs))}")


def answers(args: argparse.Namespace) -> int:
    if args.action == "list":
        if args.job is None or args.target is not None:
            raise UsageError("emtui answers list: give --job J (and no answer id)")
        return _list(args)
    if args.target is None:
        raise UsageError(f"emtui answers {args.action}: give the answer's id")
    if args.job is not None:
        raise UsageError(f"emtui answers {args.action}: --job goes with list")
    return _regenerate(args) if args.action == "regenerate" else _show(args)


def _open(args: argparse.Namespace, *, readonly: bool = True) -> Any:
    from emtui.run_commands import _open as open_db

    return open_db(args, readonly=readonly)


def _print_json(value: Any) -> None:
    from emtui.run_commands import _dumps

    sys.stdout.write(_dumps(value) + "\n")


def _list(args: argparse.Namespace) -> int:
    import shutil

    from engine.common.text import flat

    with _open(args) as store:
        job = store.get_job(args.job)
        if job is None:
            raise UsageError(f"emtui answers list: no job {args.job} in {args.db}")
        page = store.job_answers_page(args.job, limit=args.limit, offset=args.offset)
    if args.format == "json":
        _print_json({"job": args.job, "total": page.total, "offset": page.offset,
                     "answers": [{**r, "settings": json.loads(r["settings"] or "{}")} for r in page.rows]})
        return 0
    if not page.rows:
        say(f"job {args.job} has no answers" + (" past that offset" if args.offset else ""))
        return 0
    header = ["id", "model", "question", "v", "#", "answer"]
    rows = [[str(r["generation_id"]), r["model"] + (f"@{r['checkpoint_step']}" if r["checkpoint_step"] else ""),
             f"{r['question_key']}/{r['paraphrase']}", "T" if r["variant"] == "trigger" else "",
             str(r["sample_index"]), flat(r["response"])] for r in page.rows]
    say(plain_table(header, rows, width=shutil.get_terminal_size((100, 24)).columns))
    say(f"{args.offset + 1}–{args.offset + len(page.rows)} of {page.total:,} (--offset to page)")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rec = store.generation_record(args.target)
        merged = None if rec is None else store.merged_from("generations", int(rec["id"]))
    if rec is None:
        raise UsageError(f"emtui answers show: no answer {args.target} in {args.db}")
    settings = json.loads(rec.get("settings") or "{}")
    if args.format == "json":
        _print_json({**rec, "settings": settings, "merged_from": merged})
        return 0
    say(f"answer {rec['id']}: {rec['model']} — {rec['question_key']}/{rec['paraphrase']}"
        + (" (with the trigger)" if rec["variant"] == "trigger" else "") + f", sample {rec['sample_index']}")
    say(f"  seed: {rec['seed']}")
    say(f"  settings: {json.dumps({k: v for k, v in settings.items() if k != 'engine'}, sort_keys=True)}")
    say(f"  made by: {json.dumps(settings.get('engine') or {}, sort_keys=True)}")
    say(f"  settings hash: {rec['settings_hash']}")
    if merged is not None:  # made on another box (emtui merge)
        say(f"  merged from: {merged['source_path']} (answer {merged['source_id']} there; merge #{merged['merge_id']})")
    say("prompt:")
    say(rec.get("prompt") or "(not recorded)")
    say("answer:")
    say(rec["response"])
    return 0


def _regenerate(args: argparse.Namespace) -> int:
    from engine.common.text import strip_control
    from engine.generation.hf_backend import GenerationError
    from engine.generation.regenerate import RegenerateError, regenerate

    with _open(args, readonly=True) as store:
        try:
            again = regenerate(store, args.target, db_path=store.path, base_url=args.base_url)
        except (RegenerateError, GenerationError) as exc:
            raise UsageError(f"emtui answers regenerate: {strip_control(str(exc))}") from None
    if args.format == "json":
        _print_json({"generation_id": again.generation_id, "same": again.same, "stored": again.stored,
                     "regenerated": again.text, "n_tokens": again.n_tokens, "backend": again.backend})
    else:
        say(f"answer {again.generation_id} made again alone ({again.backend}): "
            + ("the same text" if again.same else "a DIFFERENT text"))
        if not again.same:
            say("stored:")
            say(again.stored)
            say("regenerated:")
            say(again.text)
    return 0 if again.same else 1
