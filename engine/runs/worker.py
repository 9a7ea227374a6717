"""The worker: claims jobs from the database and runs each in a process of its own.

One worker serves one slot — the GPUs it was given (``CUDA_VISIBLE_DEVICES``) or none — and the
job kinds it was told (default: every kind known). For each job it claims, it starts
``python -m engine.runs.child`` (engine/runs/child.py) with the job's log as its output, and
while that process runs:

- a heartbeat thread renews the job's lease and the worker's own row every
  ``job_heartbeat_s``, whatever the handler does (a model load longer than the lease is fine);
- the main thread watches the job's row: cancelled, or taken over by another worker, the job
  has ``job_cancel_grace_s`` to stop by itself (``progress.cancelled()``), then gets SIGTERM,
  then, as long again later, SIGKILL;
- when the process ends without recording an outcome (killed by the OOM killer, a segfault)
  the job is given back, and fails once that has happened ``max_attempts`` times.

Stopping (SIGTERM, SIGINT, SIGHUP, ``emtui worker stop``): the job in hand is interrupted
(SIGTERM, then SIGKILL after the grace period) and queued again without counting the attempt;
the worker then leaves its row and its pidfile. A second signal kills the job at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from engine.common.signals import handling
from engine.runs.config import RunSettings, run_settings
from engine.runs.paths import job_log_dir

WATCH_S = 0.25  # how often the main thread looks at the running job's row and process


class WorkerError(Exception):
    """A worker that cannot start (one line): its slot is taken, the database is missing, ..."""


def worker_name(pid: int | None = None) -> str:
    """The lease owner a worker claims as: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def package_root() -> str:
    """The folder holding ``engine`` (and ``db``): put on a job process's path."""
    return str(Path(__file__).resolve().parents[2])


def child_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if environ is None else environ)
    paths = [package_root(), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.pop("PYTHONSTARTUP", None)
    return env


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode} without recording an outcome"


def log_tail(path: str | Path | None, lines: int = 40, max_bytes: int = 64_000) -> str:
    """The last ``lines`` lines of a log (read from its end only)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class WorkerSpec:
    db_path: Path
    kinds: list[str] | None = None     # None: every kind this process knows
    gpus: list[str] | None = None      # the GPUs this worker runs on (CUDA_VISIBLE_DEVICES); None: as found
    once: bool = False                 # stop when nothing can run
    max_jobs: int | None = None        # stop after this many jobs
    settings: RunSettings = field(default_factory=run_settings)
    slot: str = "worker"
    log_path: Path | None = None       # its own log, when detached
    pidfile: Path | None = None        # held (locked) while it lives, when detached


class Worker:
    def __init__(self, spec: WorkerSpec, *, say: Callable[[str], None] | None = None) -> None:
        self.spec = spec
        self._say = say or (lambda text: print(text, flush=True))
        self.stop_requested = threading.Event()   # finish: interrupt and requeue the job in hand
        self.stop_now = threading.Event()         # a second request: kill the job's process at once
        self._beat_stop = threading.Event()
        self._current: int | None = None
        self.worker_id: int | None = None
        self.owner = worker_name()
        self.host = socket.gethostname()

    def say(self, text: str) -> None:
        from engine.common.text import strip_control

        with contextlib.suppress(OSError, ValueError):  # a terminal that went away
            self._say(strip_control(text))

    def request_stop(self) -> None:
        if self.stop_requested.is_set():
            self.stop_now.set()
        self.stop_requested.set()

    # -- the loop ---------------------------------------------------------------------------------

    def run(self) -> int:
        """Run jobs until stopped (or, with ``once``, until nothing can run). Returns the jobs run."""
        from db import open_store
        from engine.runs.gpus import visible_gpus
        from engine.runs.kinds import check_kind, kinds

        spec, s = self.spec, self.spec.settings
        kind_list = sorted(spec.kinds) if spec.kinds else sorted(kinds())
        for k in kind_list:
            check_kind(k)
        if spec.gpus is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(spec.gpus)  # the job processes inherit it
            n_gpus = len(spec.gpus)
        else:
            n_gpus = visible_gpus()
        store = open_store(spec.db_path, create=False)
        with contextlib.ExitStack() as stack:
            stack.callback(store.close)
            if spec.pidfile is not None:
                stack.enter_context(hold_pidfile(spec.pidfile))
            self._prune_dead(store)
            self.worker_id = store.register_worker(
                name=self.owner, host=self.host, pid=os.getpid(), slot=spec.slot,
                gpus=os.environ.get("CUDA_VISIBLE_DEVICES"), n_gpus=n_gpus, kinds=kind_list,
                log_path=None if spec.log_path is None else str(spec.log_path))
            stack.callback(lambda: store.remove_workers([self.worker_id or 0]))
            beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
            beat.start()
            stack.callback(beat.join)
            stack.callback(self._beat_stop.set)
            stack.enter_context(self._signals())
            gpu_text = f"{n_gpus} GPU(s) (CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')})" \
                if n_gpus else "no GPU"
            self.say(f"worker {self.owner} on {spec.db_path}: kinds {', '.join(kind_list)}; {gpu_text}; "
                     f"lease {s.job_lease_s:g} s" + ("" if spec.once or spec.pidfile else "; Ctrl+C stops it"))
            return self._loop(store, kind_list, n_gpus)
        return 0  # pragma: no cover - the with block returns

    def _loop(self, store: Any, kind_list: list[str], n_gpus: int) -> int:
        spec, s = self.spec, self.spec.settings
        log_dir = job_log_dir(spec.db_path)
        ran = errors = 0
        while not self.stop_requested.is_set():
            if spec.max_jobs is not None and ran >= spec.max_jobs:
                break
            try:
                job = store.claim_job(self.owner, kinds=kind_list, lease_s=s.job_lease_s, gpus=n_gpus,
                                      host=self.host, pid=os.getpid(), log_dir=str(log_dir))
            except Exception as exc:
                errors += 1
                self.say(f"could not claim a job ({type(exc).__name__}: {exc})")
                if errors >= 10:
                    raise
                self.stop_requested.wait(s.worker_poll_s)
                continue
            errors = 0
            if job is None:
                if spec.once:
                    break
                self.stop_requested.wait(s.worker_poll_s)
                continue
            self._run_job(store, job)
            ran += 1
        self.say(f"worker {self.owner} stopped after {ran} job(s)")
        return ran

    # -- one job ----------------------------------------------------------------------------------

    def _run_job(self, store: Any, job: dict[str, Any]) -> None:
        job_id, kind = int(job["id"]), str(job["kind"])
        log_path = Path(job["log_path"])
        log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        cmd = [sys.executable, "-m", "engine.runs.child", str(self.spec.db_path), str(job_id), self.owner,
               str(os.getpid())]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=child_env(), process_group=0, close_fds=True)
        store.set_job_child(job_id, self.owner, proc.pid)
        self._current = job_id
        self._say_state(store)  # the workers list shows the job now, not at the next heartbeat
        self.say(f"job {job_id} ({kind}): attempt {job['attempts']}, pid {proc.pid}, log {log_path}")
        try:
            interrupted, how = self._watch(store, job_id, proc)
        finally:
            self._current = None
            self._say_state(store)
        if how:
            store.add_job_event(job_id, "stopped", f"its process ({proc.pid}) {how}")
        state = store.job_state(job_id)
        if state is not None and state["status"] == "running" and state["lease_owner"] == self.owner:
            # the process ended without recording an outcome
            if interrupted:
                store.release_job(job_id, owner=self.owner, reason=f"worker {self.owner} stopped", counts=False)
            else:
                store.release_job(job_id, owner=self.owner, reason=describe_exit(proc.returncode),
                                  what="the job's process died", traceback=log_tail(log_path))
        final = store.get_job(job_id) or {}
        error = f": {final['error']}" if final.get("error") else ""
        self.say(f"job {job_id} ({kind}): {final.get('status')} after {time.monotonic() - started:.1f} s{error}")

    def _watch(self, store: Any, job_id: int, proc: subprocess.Popen[bytes]) -> tuple[bool, str]:
        """Wait for the job's process, stopping it when the job is cancelled or taken over, or the
        worker stops. (whether the worker's stop interrupted it, how a stopped process ended)."""
        grace = self.spec.settings.job_cancel_grace_s
        lost_at: float | None = None
        term_at: float | None = None
        killed = interrupted = False
        while True:
            try:
                proc.wait(timeout=WATCH_S)
            except subprocess.TimeoutExpired:
                pass
            else:
                if lost_at is None and not interrupted and self._lost(store.job_state(job_id)):
                    lost_at = time.monotonic()  # it saw the cancel before this loop did
                how = "" if lost_at is None and not interrupted else \
                    "was killed" if killed else "ended after SIGTERM" if term_at is not None else "stopped by itself"
                return interrupted, how
            now = time.monotonic()
            if self.stop_requested.is_set() and not interrupted:
                interrupted = True
                if lost_at is None:
                    self.say(f"job {job_id}: stopping it, to queue it again")
                    proc.send_signal(signal.SIGTERM)
                    term_at = now
            if lost_at is None and not interrupted:
                try:
                    state = store.job_state(job_id)
                except Exception:  # noqa: BLE001 - a busy database: look again next time
                    state = {"status": "running", "lease_owner": self.owner}
                if self._lost(state):
                    lost_at = now
                    why = "cancelled" if state and state["status"] == "cancelled" else "no longer this worker's"
                    self.say(f"job {job_id} is {why}: it has {grace:g} s to stop")
            if lost_at is not None and term_at is None and now - lost_at >= grace:
                self.say(f"job {job_id}: SIGTERM to pid {proc.pid}")
                proc.send_signal(signal.SIGTERM)
                term_at = now
            if not killed and ((term_at is not None and now - term_at >= grace) or self.stop_now.is_set()):
                self.say(f"job {job_id}: SIGKILL to pid {proc.pid}")
                proc.kill()
                killed = True

    def _lost(self, state: dict[str, Any] | None) -> bool:
        """The job is no longer this worker's to run: cancelled, given back, or taken over (a job its
        process finished — done or failed — is not lost: the process is just ending)."""
        return state is None or state["status"] in ("cancelled", "queued") or state["lease_owner"] != self.owner

    # -- heartbeat, signals, registry -----------------------------------------------------------------

    def _say_state(self, store: Any) -> None:
        """Record at once which job the worker runs (or that it is idle), beside the heartbeat."""
        s = self.spec.settings
        try:
            store.worker_beat(self.worker_id or 0, status="running" if self._current else "idle",
                              job_id=self._current, owner=self.owner, lease_s=s.job_lease_s)
        except Exception as exc:  # noqa: BLE001 - a busy database: the heartbeat says it soon
            self.say(f"worker state not written ({type(exc).__name__}: {exc})")

    def _beat(self) -> None:
        """Renew the lease of the job in hand and the worker's heartbeat, on a connection of its own."""
        from db import open_store

        s = self.spec.settings
        store = open_store(self.spec.db_path, create=False)
        try:
            while not self._beat_stop.wait(s.job_heartbeat_s):
                job_id = self._current
                try:
                    store.worker_beat(self.worker_id or 0, status="running" if job_id else "idle", job_id=job_id,
                                      owner=self.owner, lease_s=s.job_lease_s)
                except Exception as exc:  # noqa: BLE001 - a busy database: the next beat is in time
                    self.say(f"heartbeat not written ({type(exc).__name__}: {exc})")
        finally:
            store.close()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        def on_signal(signum: int, frame: Any) -> None:
            again = self.stop_requested.is_set()
            self.request_stop()
            self.say(f"worker {self.owner}: {signal.Signals(signum).name}: "
                     + ("killing the job in hand" if again else "stopping (again to kill the job in hand)"))

        with handling(("SIGTERM", "SIGINT", "SIGHUP"), on_signal):
            yield

    def _prune_dead(self, store: Any) -> None:
        """Forget workers of this host whose process is gone, and any silent for a day."""
        gone = [w["id"] for w in store.list_workers()
                if (w["host"] == self.host and not pid_alive(int(w["pid"]))) or w["heartbeat_age_s"] > 86_400]
        store.remove_workers(gone)


def pid_alive(pid: int) -> bool:
    """Is process ``pid`` there and running (a zombie, which nobody reaped yet, is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return True


@contextlib.contextmanager
def hold_pidfile(path: Path) -> Iterator[None]:
    """Write this process's pid to ``path`` and hold a lock on it while the block runs: a second
    worker for the same slot is refused, and a dead one's pidfile is known dead (no lock)."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    f: IO[str] = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the worker's life
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        other = f.read().strip()
        f.close()
        raise WorkerError(f"a worker already runs as {path.stem} (pid {other or '?'}; pidfile {path})") from None
    try:
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        f.close()


def pidfile_holder(path: Path) -> int | None:
    """The pid of the live worker holding ``path``, None when nobody holds it."""
    import fcntl

    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115
    except OSError:
        return None
    with f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # locked: its worker lives
            text = f.read().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return None
