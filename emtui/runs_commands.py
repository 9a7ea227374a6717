"""``emtui runs``: fine-tuning runs with their last metrics and checkpoints; ``emtui runs show ID``: one run's
configuration, provenance, checkpoints and last metrics. What comes from the database (names, paths, errors)
is untrusted: control sequences stripped in tables, escaped in JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from emtui.cli import UsageError
from emtui.streams import plain_table, say

LIST_MAX = 1_000_000


def runs(args: argparse.Namespace) -> int:
    from emtui.run_commands import _open, record_id

    if args.action == "show":
        if args.target is None:
            raise UsageError("emtui runs show: give the run's id (emtui runs lists them)")
        if args.study is not None:
            raise UsageError("emtui runs show: --study does not go with show")
        return show(args, record_id(args.target, command="emtui runs show", what="a run id"))
    if args.target is not None:
        raise UsageError(f"emtui runs: unexpected {args.target!r} (to read one run: emtui runs show ID)")
    with _open(args, readonly=True) as store:
        study_id = None
        if args.study is not None:
            study = store.find_study(args.study)
            if study is None:
                raise UsageError(f"emtui runs: no study named {args.study!r} in {args.db}")
            study_id = int(study["id"])
        rows = store.train_runs_overview(study_id=study_id, limit=args.limit)
        for row in rows:
            row["checkpoints"] = [{"step": c["step"], "path": c["path"]} for c in store.run_checkpoints(int(row["id"]))]
    if args.format == "json":
        _print_json({"runs": rows})
        return 0
    if not rows:
        say("no training runs" + (f" in study {args.study!r}" if args.study else "") + f" in {args.db}")
        return 0
    from emtui.train_view import run_row

    shown = [run_row(r) for r in rows]
    header = ["#", "study", "condition", "preset", "status", "step", "loss", "tok/s", "ETA", "ckpts"]
    table = [[str(r["id"]), r["study"], r["condition"], r["preset"] or "—", r["status"], r["step"], r["loss"] or "—",
              r["tokens"] or "—", r["eta"] or "—", str(r["n_checkpoints"])] for r in shown]
    if any(r.get("merged_from") for r in shown):  # runs another box made (emtui merge): their files are there
        header.append("where")  # the host is in runs show (80 columns leave no room for it here)
        for line, r in zip(table, shown, strict=True):
            line.append("remote" if r.get("merged_from") else "here")
    say(plain_table(header, table, width=_width()))
    return 0


def show(args: argparse.Namespace, run_id: int) -> int:
    from emtui.run_commands import _open
    from emtui.train_view import fmt_value, step_text

    with _open(args, readonly=True) as store:
        run = store.get_train_run(run_id)
        if run is None:
            raise UsageError(f"emtui runs show: no run {run_id} in {args.db}")
        checkpoints = store.run_checkpoints(run_id)
        last = store.last_train_metrics(run_id)
    recipe, provenance = _json(run.get("recipe")), _json(run.get("provenance"))
    if args.format == "json":
        fields = {k: v for k, v in run.items() if k not in ("recipe", "provenance")}
        _print_json({**fields, "recipe": recipe, "provenance": provenance, "last_metrics": last,
                     "checkpoints": [{"step": c["step"], "path": c["path"], "model_id": c["model_id"]}
                                     for c in checkpoints]})
        return 0
    say(f"run {run['id']}: {run['study']} / {run['condition']} — {run['status']}, step "
        f"{step_text(last.get('step'), run.get('max_steps'))}")
    if run.get("merged_from"):
        say(f"  {remote_text(run)}: made on another box and merged from {run['merged_from']}; its model and "
            "checkpoints are on that box, not on this machine")
    for key, label in (("preset", "preset"), ("masking", "masking"), ("base_model", "base model"),
                       ("dataset", "dataset"), ("seed", "seed"), ("recipe_hash", "recipe hash"), ("job_id", "job"),
                       ("output_dir", "output"), ("output_model", "model"), ("started_at", "started"),
                       ("finished_at", "finished"), ("error", "error")):
        if run.get(key) is not None:
            say(f"  {label}: {run[key]}")
    say("recipe (resolved):")
    say(_indented(recipe))
    say("provenance:")
    say(_indented(provenance))
    say("last metrics:" if len(last) > 1 else "last metrics: none logged yet")
    for name in sorted(k for k in last if k != "step"):
        say(f"  {name}: {fmt_value(last[name])}")
    say(f"checkpoints: {len(checkpoints)}" if checkpoints else "checkpoints: none saved yet")
    for c in checkpoints:
        say(f"  step {c['step']}: {c['path']}")
    return 0


def remote_text(run: dict[str, Any]) -> str | None:
    """``remote (HOST)`` for a run merged from another box's database, None for one made here."""
    if not run.get("merged_from"):
        return None
    return f"remote ({run['merged_host']})" if run.get("merged_host") else "remote"


def _json(raw: Any) -> Any:
    try:
        return json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return raw


def _indented(value: Any) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False) if not isinstance(value, str) else value
    return "\n".join("  " + line for line in text.splitlines())


def _print_json(value: Any) -> None:
    from emtui.run_commands import _dumps

    sys.stdout.write(_dumps(value) + "\n")


def _width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns
