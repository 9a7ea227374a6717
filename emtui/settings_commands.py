"""``emtui settings`` (every setting, its value and where it came from) and ``emtui doctor`` (what this
machine — or a worker's — can do). The settings themselves live in :mod:`engine.settings`, the checks
in :mod:`engine.runs.doctor`."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from emtui.cli import UsageError
from emtui.streams import say
from engine.settings import Settings, load_settings

DOCTOR_KIND = "doctor"  # the job kind a worker runs with engine.runs.doctor:report
WORKER_TIMEOUT_S = 300.0  # --worker: a worker polls every few seconds, and the check takes seconds to minutes
WAIT_POLL_S = 0.5
FINISHED = ("done", "failed", "cancelled")
GIB = 1 << 30


def settings_of(args: argparse.Namespace) -> Settings:
    """The command's settings: what ``emtui.cli.main`` loaded, else (a command called from Python) read now."""
    settings = getattr(args, "settings", None)
    return settings if isinstance(settings, Settings) else load_settings()


# -- emtui settings ----------------------------------------------------------------------------------


def settings(args: argparse.Namespace) -> int:
    from engine.settings import markdown_table, rows

    current = settings_of(args)
    config = Path(current.config_file)
    if args.format == "markdown":
        say(markdown_table())
        return 0
    if args.format == "json":
        doc = {"config_file": str(config), "config_file_exists": config.is_file(), "settings": list(rows(current))}
        say(json.dumps(doc, indent=2))
        return 0
    say(f"# config file: {config}{'' if config.is_file() else ' (absent: defaults)'}")
    say(f"{'setting':24} {'from':8} value")
    for row in rows(current):
        say(f"{row['name']:24} {row['source']:8} {_value(row['value'], row['unit'])}")
    say("# $EMTUI_<NAME> sets NAME too (over the file); the README says what each does")
    return 0


def _value(value: Any, unit: str = "") -> str:
    if isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, int):
        text = f"{value:,}"
    else:
        return str(value)
    return f"{text} {unit}" if unit else text


# -- emtui doctor ------------------------------------------------------------------------------------


def doctor(args: argparse.Namespace) -> int:
    from engine.runs.doctor import DoctorError, report

    current = settings_of(args)
    if args.timeout is not None and not args.worker:
        raise UsageError("emtui doctor: --timeout goes with --worker (how long to wait for a worker's report)")
    if args.worker:
        result = on_worker(args, args.timeout if args.timeout is not None else WORKER_TIMEOUT_S)
    else:
        try:
            result = report(args.db, timeout_s=current.doctor_timeout_s)
        except DoctorError as exc:
            raise UsageError(f"emtui doctor: {exc}") from None
    if args.format == "json":
        from engine.common.text import json_safe

        say(json_safe(json.dumps(result, indent=2)))
    else:
        for line in doctor_table(result):
            say(line)
    return 0


def on_worker(args: argparse.Namespace, timeout_s: float) -> dict[str, Any]:
    """Queue a ``doctor`` job and wait for a worker's report (the job's JSON result). A job no worker
    finished in time is cancelled, so no worker runs it later for nobody."""
    from db import open_store
    from engine.common.safe_load import LoadError, json_loads

    where = "emtui doctor --worker"
    db = Path(args.db).expanduser()
    with open_store(db, create=False, busy_timeout_s=settings_of(args).busy_timeout_s) as store:
        job_id = store.enqueue_job(DOCTOR_KIND, {"db": str(db.absolute())}, priority=10)
        print(f"{where}: queued job {job_id}; waiting up to {timeout_s:g} s for a worker "
              f"(emtui --db {args.db} worker --detach starts one)", file=sys.stderr, flush=True)
        job: dict[str, Any] | None = None
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                job = store.get_job(job_id)
                if job is None or job["status"] in FINISHED or time.monotonic() >= deadline:
                    break
                time.sleep(WAIT_POLL_S)
        finally:  # a timeout, Ctrl+C or SIGTERM: nobody waits for this job any more
            if job is None or job["status"] not in FINISHED:
                store.cancel_job(job_id)
    if job is None:
        raise UsageError(f"{where}: job {job_id} is gone from {args.db}")
    if job["status"] == "queued":
        raise UsageError(f"{where}: no worker took job {job_id} within {timeout_s:g} s, so it was cancelled; "
                         f"start one (emtui --db {args.db} worker --detach) or wait longer (--timeout S)")
    if job["status"] == "running":
        raise UsageError(f"{where}: worker {job.get('lease_owner')} took job {job_id} but gave no report within "
                         f"{timeout_s:g} s, so it was cancelled; wait longer (--timeout S)")
    if job["status"] != "done":
        raise UsageError(f"{where}: job {job_id} {job['status']}" + (f": {job['error']}" if job.get("error") else ""))
    result = job.get("result")
    if isinstance(result, str):
        try:
            result = json_loads(result)
        except LoadError as exc:
            raise UsageError(f"{where}: job {job_id}'s result is not a report ({exc})") from None
    if not isinstance(result, dict) or "schema" not in result:
        raise UsageError(f"{where}: job {job_id} is done but left no report (a worker of an emtui whose jobs "
                         f"keep no results?)")
    return result


def _gib(n: Any) -> str:
    """Bytes as a person reads them: GiB, or MiB / KiB / B for small sizes."""
    if not isinstance(n, (int, float)):
        return "?"
    for unit, size in (("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{int(n)} B"


def doctor_table(r: dict[str, Any], width: int = 80) -> list[str]:
    """The report as lines of at most ``width`` columns: a label, then what it found."""
    from engine.common.text import flat
    from engine.runs.doctor import AWS_SOURCES

    py, plat, cpu, mem = r["python"], r["platform"], r["cpus"], r["memory"]
    torch, bnb, aws, disk, db = r["torch"], r["bitsandbytes"], r["aws"], r["disk"], r["database"]
    if torch.get("ok"):
        cuda = ("CUDA " + str(torch.get("cuda_build")) + (f", cuDNN {torch['cudnn']}" if torch.get("cudnn") else "")
                if torch.get("cuda_available") else
                "CUDA not available" + ("" if torch.get("cuda_build") else " (a CPU build of torch)"))
        torch_line = f"{torch['version']} · {cuda}" + (" · MPS available" if torch.get("mps_available") else "")
        if torch.get("problem"):
            torch_line += f" · {torch['problem']}"
    else:
        torch_line = f"not usable: {torch.get('problem')}"
    if torch.get("cuda_visible_devices") is not None:
        torch_line += f" · CUDA_VISIBLE_DEVICES={torch['cuda_visible_devices']}"
    gpus = [f"{g['index']}: {g['name']} (sm {g['capability']}), {_gib(g['free_bytes'])} free of "
            f"{_gib(g['total_bytes'])}" for g in r.get("gpus") or []]
    usable = f" ({cpu['usable']} usable)" if cpu.get("usable") not in (None, cpu.get("count")) else ""
    memory = f"{_gib(mem['total_bytes'])}" + (f" ({_gib(mem['available_bytes'])} available)"
                                               if mem.get("available_bytes") is not None else "")
    found = (f"credentials from {AWS_SOURCES.get(aws['source'], aws['source'])}" if aws.get("credentials")
             else "no credentials found")
    if aws.get("region"):
        found += f" · region {aws['region']}"
    if aws.get("problem"):
        found += f" · {aws['problem']}"
    elif not aws.get("region"):
        found += " · no region (AWS_DEFAULT_REGION or ~/.aws/config)"
    bnb_line = (f"{bnb['version']} · " if bnb.get("version") else "") + str(bnb.get("summary"))
    db_line = str(db["path"]) + (f" ({_gib(db['size_bytes'])})" if db.get("size_bytes") is not None
                                 else "" if db.get("exists") else " (not created yet)")
    items = [
        ("Host", f"{r['host']} · pid {r['pid']} · {r['checked_at']} · took {r['seconds']:g} s"),
        ("Python", f"{py['version']} ({py['implementation']}) {py['executable']}"),
        ("Platform", f"{plat['system']} {plat['release']} {plat['machine']}"),
        ("CPUs", f"{cpu['count']}{usable}"),
        ("Memory", memory),
        ("torch", torch_line),
        *[("GPU" if i == 0 else "", g) for i, g in enumerate(gpus or ["none"])],
        ("4-bit", bnb_line),
        ("AWS", found),
        ("Database", db_line),
        ("Disk", f"{_gib(disk['free_bytes'])} free of {_gib(disk['total_bytes'])} at {disk['path']}"),
    ]
    label = 10
    lines = []
    for name, text in items:
        wrapped = textwrap.wrap(flat(text), width=width - label, break_on_hyphens=False) or [""]
        lines.append(f"{name:<{label}}{wrapped[0]}")
        lines += [" " * label + more for more in wrapped[1:]]
    return lines
