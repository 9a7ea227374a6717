"""Workers that outlive the terminal: start one detached, list them, stop them.

A detached worker is ``emtui worker`` started in a new session (``setsid``): no controlling
terminal, so a dropped SSH connection (SIGHUP to the terminal's session) never reaches it. It
holds a pidfile and writes a log next to the database (engine/runs/paths.py), and registers in
the database's ``workers`` table, where the TUI and ``emtui worker status`` see it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.runs.config import RunSettings, run_settings
from engine.runs.paths import pidfile, run_dir, slot_name, worker_log
from engine.runs.worker import (
    WorkerError,
    child_env,
    log_tail,
    pid_alive,
    pidfile_holder,
)

START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Detached:
    pid: int
    slot: str
    pidfile: Path
    log: Path
    already: bool  # it was running before: nothing was started


def worker_command(db_path: Path, *, gpus: list[str] | None = None, kinds: list[str] | None = None,
                   once: bool = False, max_jobs: int | None = None, poll_s: float | None = None) -> list[str]:
    """The command line of one detached worker (``emtui worker``, which takes its pidfile)."""
    cmd = [sys.executable, "-m", "emtui", "--db", str(db_path), "worker", "--as-detached"]
    if gpus:
        cmd += ["--gpus", ",".join(gpus)]
    if kinds:
        cmd += ["--kinds", ",".join(kinds)]
    if once:
        cmd.append("--once")
    if max_jobs is not None:
        cmd += ["--max-jobs", str(max_jobs)]
    if poll_s is not None:
        cmd += ["--poll", repr(poll_s)]
    return cmd


def start_detached(db_path: str | Path, *, gpus: list[str] | None = None, kinds: list[str] | None = None,
                   once: bool = False, max_jobs: int | None = None, poll_s: float | None = None,
                   timeout_s: float = START_TIMEOUT_S) -> Detached:
    """Start a worker in a new session and wait until it holds its pidfile. A worker already
    running for the same slot (GPUs and kinds) is left alone (``already``)."""
    db = Path(db_path).expanduser().resolve()
    slot = slot_name(",".join(gpus) if gpus else None, kinds)
    pf, log = pidfile(db, slot), worker_log(db, slot)
    holder = pidfile_holder(pf)
    if holder is not None:
        return Detached(holder, slot, pf, log, already=True)
    run_dir(db).mkdir(exist_ok=True)
    with open(log, "ab") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting a detached worker ({slot})\n".encode())
        out.flush()
        proc = subprocess.Popen(worker_command(db, gpus=gpus, kinds=kinds, once=once, max_jobs=max_jobs,
                                               poll_s=poll_s),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=child_env(),
                                cwd=str(db.parent), start_new_session=True, close_fds=True)
    # reap it when it ends, so a long-lived caller (the TUI) keeps no zombie
    threading.Thread(target=proc.wait, name=f"reap-{proc.pid}", daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pidfile_holder(pf) == proc.pid:
            return Detached(proc.pid, slot, pf, log, already=False)
        if proc.poll() is not None:
            last = log_tail(log, 1).strip() or f"it exited with status {proc.returncode}"
            raise WorkerError(f"the detached worker did not start: {last} (log: {log})")
        time.sleep(0.05)
    raise WorkerError(f"the detached worker (pid {proc.pid}) did not take its pidfile {pf} within "
                      f"{timeout_s:g} s (log: {log})")


def worker_rows(store: Any, settings: RunSettings | None = None) -> list[dict[str, Any]]:
    """Every registered worker, with ``alive``: its heartbeat is recent (and, on this host, its
    process is there). A worker that died without a word shows as not alive until it is forgotten."""
    settings = settings or run_settings()
    host = socket.gethostname()
    out = []
    for w in store.list_workers():
        fresh = w["heartbeat_age_s"] <= max(3 * settings.job_heartbeat_s, 30.0)
        here = w["host"] == host
        w["alive"] = bool(fresh and (not here or pid_alive(int(w["pid"]))))
        out.append(w)
    return out


def ensure_worker(db_path: str | Path, *, store: Any = None) -> int | None:
    """Start a detached worker for the database unless one is alive; the started worker's pid, or
    None when one was alive already. What the TUI calls when it queues work."""
    from db import open_store

    own = store is None
    store = store or open_store(Path(db_path), create=False)
    try:
        if any(w["alive"] for w in worker_rows(store)):
            return None
    finally:
        if own:
            store.close()
    started = start_detached(db_path)
    return None if started.already else started.pid


def _is_worker_process(pid: int) -> bool:
    """Does ``pid`` look like an emtui worker (so a recycled pid is never signalled)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return pid_alive(pid)  # no /proc here: trust the pidfile's lock and the registry
    return b"worker" in cmdline and any(b"emtui" in part for part in cmdline)


def stop_targets(db_path: str | Path, store: Any) -> dict[int, str]:
    """pid -> slot of every worker of this database on this host: by pidfile, and by registry."""
    db = Path(db_path).expanduser().resolve()
    found: dict[int, str] = {}
    folder = run_dir(db)
    if folder.is_dir():
        for pf in sorted(folder.glob("*.pid")):
            holder = pidfile_holder(pf)
            if holder is not None and holder > 0:
                found[holder] = pf.stem
    host = socket.gethostname()
    for w in store.list_workers():
        pid = int(w["pid"])
        if w["host"] == host and pid not in found and pid_alive(pid) and _is_worker_process(pid):
            found[pid] = w["slot"]
    return found


def stop_workers(db_path: str | Path, store: Any, *, wait_s: float = 60.0) -> list[tuple[int, str, bool]]:
    """SIGTERM every worker of this database on this host (each interrupts its job and queues it again),
    and wait up to ``wait_s`` for them to end. (pid, slot, ended) each."""
    targets = stop_targets(db_path, store)
    for pid in targets:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + wait_s
    pending = set(targets)
    while pending and time.monotonic() < deadline:
        pending = {pid for pid in pending if pid_alive(pid)}
        if pending:
            time.sleep(0.1)
    return [(pid, slot, pid not in pending) for pid, slot in targets.items()]
