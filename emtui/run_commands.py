"""``emtui worker`` (run, status, stop) and ``emtui jobs`` (list, cancel, retry, log, add).
Dispatched from :mod:`emtui.commands`; the work is engine/runs'."""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from emtui.cli import UsageError
from emtui.streams import say

PAYLOAD_MAX = 1_000_000  # characters of a --payload


@contextmanager
def _person_errors(command: str) -> Iterator[None]:
    """The run layer's own errors about what a person asked, as one line (exit status 2)."""
    from engine.runs.config import RunSettingsError
    from engine.runs.kinds import KindError
    from engine.runs.worker import WorkerError

    try:
        yield
    except (KindError, RunSettingsError, WorkerError) as exc:
        raise UsageError(f"emtui {command}: {exc}") from None


def _open(args: argparse.Namespace, *, readonly: bool = False) -> Any:
    from db import open_store
    from emtui.settings_commands import settings_of

    return open_store(Path(args.db).expanduser(), create=False, readonly=readonly,
                      busy_timeout_s=settings_of(args).busy_timeout_s)


def _dumps(value: Any) -> str:
    from engine.common.text import json_safe

    return json_safe(json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False))


def _refuse_options(args: argparse.Namespace, command: str, allowed: set[str], options: dict[str, Any]) -> None:
    for name, default in options.items():
        if name not in allowed and getattr(args, name, default) != default:
            raise UsageError(f"emtui {command}: --{name.replace('_', '-')} does not go with "
                             f"{args.action or 'this command'}")


# -- emtui worker -------------------------------------------------------------------------------------

WORKER_OPTIONS = {"once": False, "detach": False, "gpus": None, "kinds": None, "max_jobs": None, "poll": None,
                  "format": "table", "wait": None, "as_detached": False}


def worker(args: argparse.Namespace) -> int:
    action = args.action or "run"
    allowed = {"run": {"once", "detach", "gpus", "kinds", "max_jobs", "poll", "as_detached"},
               "status": {"format"}, "stop": {"wait"}}[action]
    _refuse_options(args, "worker", allowed, WORKER_OPTIONS)
    with _person_errors("worker"):
        if action == "status":
            return worker_status(args)
        if action == "stop":
            return worker_stop(args)
        return worker_run(args)


def worker_run(args: argparse.Namespace) -> int:
    from engine.runs.config import run_settings
    from engine.runs.detach import start_detached
    from engine.runs.gpus import parse_gpus
    from engine.runs.kinds import check_kind
    from engine.runs.paths import pidfile, slot_name, worker_log
    from engine.runs.worker import Worker, WorkerSpec

    settings = run_settings()
    if args.poll is not None:
        settings = replace(settings, worker_poll_s=args.poll)
    try:
        gpus = parse_gpus(args.gpus) if args.gpus is not None else None
    except ValueError as exc:
        raise UsageError(f"emtui worker: {exc}") from None
    kinds = [check_kind(k.strip()) for k in args.kinds.split(",") if k.strip()] if args.kinds else None
    if args.kinds is not None and not kinds:
        raise UsageError("emtui worker: --kinds needs at least one job kind")
    db = Path(args.db).expanduser().resolve()
    _open(args).close()  # no database, or not emtui's: one line now, not in a log later
    if args.detach:
        for group in ([[g] for g in gpus] if gpus else [None]):
            started = start_detached(db, gpus=group, kinds=kinds, once=args.once, max_jobs=args.max_jobs,
                                     poll_s=args.poll)
            if started.already:
                say(f"a worker already runs as {started.slot} (pid {started.pid}); log: {started.log}")
            else:
                say(f"worker started in the background as {started.slot} (pid {started.pid}); log: {started.log}; "
                    "stop it with: emtui worker stop")
        return 0
    if gpus is not None and len(gpus) > 1:
        return _workers_per_gpu(args, db, gpus)
    slot = slot_name(",".join(gpus) if gpus else None, kinds)
    spec = WorkerSpec(db_path=db, kinds=kinds, gpus=gpus, once=args.once, max_jobs=args.max_jobs, settings=settings,
                      slot=slot)
    if args.as_detached:  # started by start_detached: its output is its log, and it holds the pidfile
        spec.pidfile, spec.log_path = pidfile(db, slot), worker_log(db, slot)
    Worker(spec, say=lambda text: say(text, flush=True)).run()
    return 0


def _workers_per_gpu(args: argparse.Namespace, db: Path, gpus: list[str]) -> int:
    """``--gpus 0,1`` in the foreground: one worker process per GPU; a signal reaches them all."""
    from engine.common.signals import handling
    from engine.runs.worker import child_env

    base = [sys.executable, "-m", "emtui", "--db", str(db), "worker"]
    for flag, value in (("--kinds", args.kinds), ("--max-jobs", args.max_jobs), ("--poll", args.poll)):
        if value is not None:
            base += [flag, str(value)]
    if args.once:
        base.append("--once")
    procs = [subprocess.Popen([*base, "--gpus", g], env=child_env(), stdin=subprocess.DEVNULL) for g in gpus]

    def forward(signum: int, frame: Any) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM if signum == signal.SIGHUP else signum)

    with handling(("SIGTERM", "SIGINT", "SIGHUP"), forward):
        codes = [p.wait() for p in procs]
    return max((c for c in codes if c > 0), default=0)


def _ago(seconds: float | None) -> str:
    from engine.runs.progress import eta_text

    return "" if seconds is None else (eta_text(max(0.0, seconds)) or "0s") + " ago"


def worker_status(args: argparse.Namespace) -> int:
    from engine.runs.config import run_settings
    from engine.runs.detach import worker_rows

    with _open(args, readonly=True) as store:
        rows = worker_rows(store, run_settings())
    for w in rows:
        w["kinds"] = json.loads(w["kinds"])
    if args.format == "json":
        sys.stdout.write(_dumps({"workers": rows}) + "\n")
        return 0
    if not rows:
        say(f"no worker is registered for {args.db}; start one with: emtui worker --detach")
        return 0
    say(f"{'worker':24} {'slot':14} {'GPUs':5} {'job':14} {'heartbeat':11} state")
    for w in rows:
        job = f"{w['job_id']} {w['job_kind'] or ''}".strip() if w["job_id"] else "—"
        gpus = str(w["n_gpus"]) if w["n_gpus"] else "—"
        state = "alive" if w["alive"] else "stale"
        say(f"{_cut(w['name'], 24):24} {_cut(w['slot'], 14):14} {gpus:5} {_cut(job, 14):14} "
            f"{_ago(w['heartbeat_age_s']):11} {state}")
    return 0


def worker_stop(args: argparse.Namespace) -> int:
    from engine.runs.config import run_settings
    from engine.runs.detach import stop_workers

    wait_s = args.wait if args.wait is not None else 2 * run_settings().job_cancel_grace_s + 10
    with _open(args, readonly=True) as store:
        stopped = stop_workers(args.db, store, wait_s=wait_s)
    if not stopped:
        say(f"no worker of {args.db} runs on this host")
        return 0
    for pid, slot, ended in stopped:
        name = "worker" if slot == "worker" else f"worker {slot}"  # a --gpus worker's slot: gpu0, gpu1, ...
        say(f"{name} (pid {pid}) stopped" if ended else f"{name} (pid {pid}) is still stopping after {wait_s:g} s")
    return 0 if all(ended for _, _, ended in stopped) else 1


# -- emtui jobs -----------------------------------------------------------------------------------------

JOBS_OPTIONS = {"format": "table", "status": None, "limit": 50, "lines": 40, "payload": None, "after": None,
                "gpu": 0, "priority": 0, "max_attempts": None}


def jobs(args: argparse.Namespace) -> int:
    action = args.action or "list"
    allowed = {"list": {"format", "status", "limit"}, "cancel": set(), "retry": set(), "log": {"format", "lines"},
               "add": {"format", "payload", "after", "gpu", "priority", "max_attempts"}}[action]
    _refuse_options(args, "jobs", allowed, JOBS_OPTIONS)
    if action == "list":
        if args.target is not None:
            raise UsageError(f"emtui jobs: unexpected {args.target!r} (to read one job: emtui jobs log ID)")
        return jobs_list(args)
    if args.target is None:
        raise UsageError(f"emtui jobs {action}: give the job's {'kind' if action == 'add' else 'id'}")
    with _person_errors(f"jobs {action}"):
        if action == "add":
            return jobs_add(args)
        job_id = _job_id(args)
        return {"cancel": jobs_cancel, "retry": jobs_retry, "log": jobs_log}[action](args, job_id)


def _job_id(args: argparse.Namespace) -> int:
    return record_id(args.target, command=f"emtui jobs {args.action}", what="a job id")


def record_id(target: Any, *, command: str, what: str) -> int:
    """A row's id typed on the command line (a number, at most 18 digits), else a one-line usage error."""
    text = str(target).strip()
    if not text.isdigit() or len(text) > 18:
        raise UsageError(f"{command}: {what} is a number, not {target!r}")
    return int(text)


def _cut(text: Any, width: int) -> str:
    from engine.common.text import flat

    line = flat(text)
    return line if len(line) <= width else line[: width - 1] + "…"


def _progress_text(job: dict[str, Any]) -> str:
    done, total = job.get("progress_done") or 0, job.get("progress_total")
    if total:
        return f"{done}/{total} {min(100, int(100 * done / total))}%"
    return str(done) if done else ""


def _info(job: dict[str, Any]) -> str:
    from engine.runs.progress import eta_text

    if job["status"] == "running":
        return f"ETA {eta_text(job.get('eta_s'))}" if job.get("eta_s") is not None else ""
    if job["status"] == "queued" and job.get("depends_on"):
        return "after " + ",".join(map(str, job["depends_on"]))
    stamp = job.get("finished_at") or job.get("created_at") or ""
    return stamp[5:16].replace("T", " ")


def jobs_list(args: argparse.Namespace) -> int:
    from engine.runs.queue import job_view

    with _open(args, readonly=True) as store:
        page = store.list_jobs(status=args.status, limit=args.limit)
        counts = store.job_status_counts()
    rows = [job_view(r) for r in page.rows]
    if args.format == "json":
        sys.stdout.write(_dumps({"counts": counts, "total": page.total, "jobs": rows}) + "\n")
        return 0
    say("  ".join(f"{status} {n}" for status, n in counts.items()))
    if not rows:
        say("no job" + (f" is {args.status}" if args.status else " is queued") + f" in {args.db}")
        return 0
    say(f"{'#':>6} {'kind':12} {'status':9} {'progress':14} {'tries':5} {'worker':16} {'':11}")
    for j in rows:
        status = "stale" if j["stale"] else j["status"]
        tries = f"{j['attempts'] - j['attempts_before']}/{j['max_attempts']}"
        say(f"{j['id']:>6} {_cut(j['kind'], 12):12} {status:9} {_cut(_progress_text(j), 14):14} {tries:5} "
            f"{_cut(j['lease_owner'] or '', 16):16} {_cut(_info(j), 11)}")
        if j["status"] == "failed" and j.get("error"):
            say(f"{'':6} ↳ {_cut(j['error'], 71)}")
        elif j["status"] == "running" and j.get("note"):
            say(f"{'':6} · {_cut(j['note'], 71)}")
    if page.total > len(rows):
        say(f"(the newest {len(rows)} of {page.total}; --limit N for more)")
    return 0


def jobs_cancel(args: argparse.Namespace, job_id: int) -> int:
    with _open(args) as store:
        before = store.get_job(job_id)
        if before is None:
            raise UsageError(f"emtui jobs cancel: no job {job_id} in {args.db}")
        if not store.cancel_job(job_id):
            raise UsageError(f"emtui jobs cancel: job {job_id} is {before['status']}: only a queued or running job "
                             "can be cancelled")
        failed = _failed_by(store, job_id)
    how = " (its worker stops it)" if before["status"] == "running" else ""
    say(f"cancelled job {job_id}{how}" + (f"; {len(failed)} job(s) waiting on it failed" if failed else ""))
    return 0


def jobs_retry(args: argparse.Namespace, job_id: int) -> int:
    with _open(args) as store:
        job = store.get_job(job_id)
        if job is None:
            raise UsageError(f"emtui jobs retry: no job {job_id} in {args.db}")
        if job["status"] not in ("failed", "cancelled"):
            raise UsageError(f"emtui jobs retry: job {job_id} is {job['status']}: only a failed or cancelled job "
                             "can be retried")
        for dep in [int(d) for d in (job["depends_on"] or "").split(",") if d]:
            dep_status = (store.get_job(dep) or {}).get("status")
            if dep_status in ("failed", "cancelled"):
                raise UsageError(f"emtui jobs retry: job {job_id} waits on job {dep}, which {dep_status}: "
                                 f"retry job {dep} (it queues job {job_id} again with it)")
        with_it = _failed_by(store, job_id)
        store.retry_job(job_id)
    say(f"job {job_id} queued again"
        + (f", and job(s) {', '.join(map(str, with_it))} waiting on it" if with_it else ""))
    return 0


def _failed_by(store: Any, job_id: int) -> list[int]:
    """The jobs that failed because ``job_id`` did, transitively (a retry queues them again too)."""
    failed = store.list_jobs(status="failed", limit=1_000_000).rows
    found, todo = [], [job_id]
    while todo:
        todo = [r["id"] for r in failed if r["failed_because_of"] in todo]
        found += todo
    return sorted(found)


def jobs_log(args: argparse.Namespace, job_id: int) -> int:
    from engine.runs.progress import eta_text
    from engine.runs.queue import job_report

    with _open(args, readonly=True) as store:
        report = job_report(store, job_id, lines=args.lines)
    if report is None:
        raise UsageError(f"emtui jobs log: no job {job_id} in {args.db}")
    if args.format == "json":
        sys.stdout.write(_dumps(report) + "\n")
        return 0
    j = report["job"]
    say(f"job {j['id']} ({j['kind']}): {'stale (its worker is gone)' if j['stale'] else j['status']}; "
        f"attempt {j['attempts'] - j['attempts_before']} of {j['max_attempts']}"
        + (f" ({j['attempts']} in all)" if j["attempts_before"] else ""))
    lines = [("worker", f"{j['lease_owner']}" + (f" (pid {j['child_pid']} runs the job)" if j.get("child_pid") else ""))
             if j.get("lease_owner") else None,
             ("queued", j["created_at"]), ("started", j.get("started_at")), ("finished", j.get("finished_at")),
             ("needs", f"{j['gpu']} GPU(s)" if j["gpu"] else None),
             ("after", ", ".join(f"job {d}" for d in j["depends_on"]) or None),
             ("progress", _progress_text(j) + (f", {j['rate']:.3g}/s" if j.get("rate") else "")
              + (f", ETA {eta_text(j.get('eta_s'))}" if j.get("eta_s") is not None else "") or None),
             ("note", j.get("note")), ("metrics", json.dumps(j["metrics"]) if j.get("metrics") else None),
             ("error", j.get("error")), ("payload", json.dumps(j["payload"], ensure_ascii=False)),
             ("result", _result_line(j)), ("log", j.get("log_path"))]
    for item in lines:
        if item is not None and item[1]:
            say(f"{item[0]:>9}: {item[1]}")
    if report["events"]:
        say("history:")
        for e in report["events"]:
            stamp = time.strftime("%m-%d %H:%M:%S", time.localtime(e["at"]))
            say(f"  {stamp} {e['event']:9} {e['text']}")
    if j.get("traceback"):
        say("traceback:" + ("" if j["status"] == "failed" else " (of an interrupted attempt)"))
        for line in str(j["traceback"]).splitlines():
            say(f"  {line}")
    if report["log_tail"]:
        say(f"log (the last {len(report['log_tail'])} lines of {j['log_path']}):")
        for line in report["log_tail"]:
            say(f"  {line}")
    from emtui.summary_table import render_text, stored_summary

    summary = stored_summary(j, j.get("result"))
    if summary is not None:
        say("result:")
        say(render_text(summary, shutil.get_terminal_size().columns))
    return 0


def _result_line(job: dict[str, Any]) -> str | None:
    """The job's result on one line; a stored summary (hundreds of rows) is named here and printed as its
    tables below."""
    from emtui.summary_table import stored_summary

    if job.get("result") is None:
        return None
    if stored_summary(job, job["result"]) is not None:
        return (f"the summary of study {job['result'].get('study')!r} as the chain stored it (below; "
                f"--format json for all of it)")
    return json.dumps(job["result"], ensure_ascii=False)


def jobs_add(args: argparse.Namespace) -> int:
    from engine.runs.detach import worker_rows
    from engine.runs.queue import enqueue

    payload: Any = {}
    if args.payload is not None:
        if len(args.payload) > PAYLOAD_MAX:
            raise UsageError(f"emtui jobs add: --payload is over {PAYLOAD_MAX:,} characters")
        try:
            payload = json.loads(args.payload)
        except ValueError as exc:
            raise UsageError(f"emtui jobs add: --payload is not JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise UsageError("emtui jobs add: --payload must be a JSON object ({...})")
    after = []
    for part in (args.after or "").split(","):
        if part.strip():
            if not part.strip().isdigit():
                raise UsageError(f"emtui jobs add: --after takes job ids separated by commas, not {args.after!r}")
            after.append(int(part))
    with _open(args) as store:
        job_id = enqueue(store, args.target, payload, after=after, gpu=args.gpu, priority=args.priority,
                         max_attempts=args.max_attempts)
        status = store.get_job(job_id)["status"]
        alive = any(w["alive"] for w in worker_rows(store))
    if args.format == "json":
        sys.stdout.write(_dumps({"id": job_id, "status": status}) + "\n")
        return 0
    say(f"queued job {job_id} ({args.target})" + (f", after job(s) {', '.join(map(str, after))}" if after else "")
        + ("; it failed at once: a job it waits on failed" if status == "failed" else "")
        + ("" if alive else "; no worker is running: emtui worker --detach starts one"))
    return 0

