"""Queries of the run layer: the job queue, its dependencies and history, and the workers.

:class:`JobQueries` is a mixin of :class:`db.store.Store` built on the store's core
(:class:`db.core.StoreCore`: ``_q``/``_one``/``_scalar``, ``conn``, ``_lock``, ``transaction``).
Every SQL string of the run layer lives here; the rules are engine/runs' (see engine/runs/__init__.py).

The rules the writers keep:

- claiming is one ``BEGIN IMMEDIATE`` transaction: first every running job whose lease
  expired is given back (or failed, past its attempt limit), then the first runnable job
  is taken — queued, of a kind the worker runs, needing no more GPUs than it has, every
  dependency done — by priority, then queue order. Two workers never take one job;
- only the lease owner, while the job runs, records progress or an outcome, so a worker
  whose job was cancelled or taken over cannot overwrite what happened since;
- ``attempts`` counts claims; ``attempts - attempts_before`` (attempts since the last retry)
  reaching ``max_attempts`` after a death fails the job with the reason;
- a job that fails or is cancelled fails every job waiting on it, transitively
  (``failed_because_of`` names the dependency); retrying it queues them again.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from db.core import StoreCore
from db.errors import StoreError

if TYPE_CHECKING:
    from db.store import Page

JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINISHED = ("done", "failed", "cancelled")

# what `list_jobs` and `get_job` return besides the row: the rate/ETA inputs the queue screen shows
_JOB_VIEW = """
    j.*, (SELECT group_concat(d.depends_on) FROM job_deps d WHERE d.job_id = j.id) AS depends_on,
    CASE WHEN j.status = 'running' AND j.rate > 0 AND j.progress_total IS NOT NULL
         THEN max(0.0, (j.progress_total - j.progress_done) / j.rate) END AS eta_s,
    CASE WHEN j.status = 'running' AND j.lease_expires < :now THEN 1 ELSE 0 END AS stale
"""


class JobQueries(StoreCore):
    """The job queue and the workers, mixed into :class:`db.store.Store`."""

    # -- queueing -------------------------------------------------------------------------------

    def enqueue_job(self, kind: str, payload: dict[str, Any], *, study_hash: str | None = None,
                    priority: int = 0, progress_total: int | None = None, depends_on: Sequence[int] = (),
                    resources: Mapping[str, int] | None = None, max_attempts: int = 3) -> int:
        """Queue a job. It runs once every job in ``depends_on`` is done (and fails at once if one
        of them failed or was cancelled). ``resources``: what it needs, ``{"gpu": 1}``."""
        from db.store import dumps, utc_now

        resources = dict(resources or {})
        gpu = int(resources.get("gpu", 0))
        if gpu < 0 or max_attempts < 1:
            raise StoreError(f"job {kind!r}: needs gpu >= 0 and max_attempts >= 1")
        deps = sorted({int(d) for d in depends_on})
        with self.transaction():
            if deps:
                marks = ",".join("?" * len(deps))
                found = {r["id"] for r in self._q(f"SELECT id FROM jobs WHERE id IN ({marks})", deps)}
                missing = [d for d in deps if d not in found]
                if missing:
                    raise StoreError(f"job {kind!r} depends on job {missing[0]}, which does not exist")
            cur = self.conn.execute(
                """INSERT INTO jobs (kind, payload, status, priority, study_hash, progress_total, created_at,
                                     max_attempts, gpu, resources)
                   VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)""",
                (kind, dumps(payload), priority, study_hash, progress_total, utc_now(), max_attempts, gpu,
                 dumps(resources)))
            job_id = int(cur.lastrowid or 0)
            self.conn.executemany("INSERT INTO job_deps (job_id, depends_on) VALUES (?, ?)",
                                  [(job_id, d) for d in deps])
            self._event(job_id, "queued", f"after job(s) {', '.join(map(str, deps))}" if deps else "")
            self._fail_blocked()
        return job_id

    # -- claiming and holding ---------------------------------------------------------------------

    def claim_job(self, owner: str, *, kinds: Sequence[str], lease_s: float = 60.0, gpus: int | None = None,
                  host: str | None = None, pid: int | None = None,
                  log_dir: str | None = None) -> dict[str, Any] | None:
        """Atomically take the next runnable job of one of ``kinds`` needing at most ``gpus`` GPUs
        (None: any), after giving back the jobs whose lease expired. ``log_dir``: the job's log is
        ``log_dir/<id>.log``. Returns the job as claimed, None when nothing can run now."""
        from db.store import utc_now

        if not kinds:
            return None
        marks = ",".join("?" * len(kinds))
        gpu_rule = "" if gpus is None else "AND j.gpu <= ?"
        now = time.time()
        with self.transaction():
            self._reap_expired(now)
            row = self._one(
                f"""SELECT j.id, j.attempts FROM jobs j
                    WHERE j.status = 'queued' AND j.kind IN ({marks}) {gpu_rule}
                      AND NOT EXISTS (SELECT 1 FROM job_deps d JOIN jobs p ON p.id = d.depends_on
                                      WHERE d.job_id = j.id AND p.status != 'done')
                    ORDER BY j.priority DESC, j.id LIMIT 1""", (*kinds, *(() if gpus is None else (gpus,))))
            if row is None:
                return None
            self.conn.execute(
                """UPDATE jobs SET status = 'running', lease_owner = ?, lease_expires = ?, attempts = attempts + 1,
                          started_at = COALESCE(started_at, ?), attempt_started = ?, heartbeat_at = ?,
                          worker_host = ?, worker_pid = ?, child_pid = NULL, cancel_requested = NULL,
                          progress_done = 0, rate = NULL, progress_at = NULL,
                          log_path = CASE WHEN ? IS NULL THEN log_path ELSE ? || '/' || id || '.log' END
                   WHERE id = ?""",
                (owner, now + lease_s, utc_now(), now, now, host, pid, log_dir, log_dir, row["id"]))
            self._event(row["id"], "claimed", f"attempt {row['attempts'] + 1} by {owner}")
        return self.get_job(row["id"])

    def renew_lease(self, job_id: int, owner: str, *, lease_s: float = 60.0,
                    progress_done: int | None = None) -> bool:
        """Extend a lease; False when the job is no longer ours (cancelled or reclaimed)."""
        now = time.time()
        with self._lock:
            cur = self.conn.execute(
                """UPDATE jobs SET lease_expires = ?, heartbeat_at = ?, progress_done = COALESCE(?, progress_done)
                   WHERE id = ? AND lease_owner = ? AND status = 'running'""",
                (now + lease_s, now, progress_done, job_id, owner))
            return cur.rowcount == 1

    def set_job_child(self, job_id: int, owner: str, child_pid: int | None) -> bool:
        """Record the process that runs the job's handler (what a cancel escalates to)."""
        with self._lock:
            cur = self.conn.execute(
                "UPDATE jobs SET child_pid = ? WHERE id = ? AND lease_owner = ? AND status = 'running'",
                (child_pid, job_id, owner))
            return cur.rowcount == 1

    def job_state(self, job_id: int) -> dict[str, Any] | None:
        """The little a running job's process polls: status, lease owner, when a cancel was asked."""
        return self._one("SELECT id, status, lease_owner, cancel_requested FROM jobs WHERE id = ?", (job_id,))

    def report_progress(self, job_id: int, owner: str, *, done: int, total: int | None, note: str | None,
                        metrics: dict[str, Any] | None, rate: float | None, new_note: bool = False) -> bool:
        """Write a running job's progress (by its owner only); False when the job is no longer ours.
        ``new_note``: the note changed since the last write, so it joins the job's history."""
        from db.store import dumps

        with self.transaction():
            cur = self.conn.execute(
                """UPDATE jobs SET progress_done = ?, progress_total = ?, note = ?, metrics = ?, rate = ?,
                                   progress_at = ?
                   WHERE id = ? AND lease_owner = ? AND status = 'running'""",
                (done, total, note, None if metrics is None else dumps(metrics), rate, time.time(), job_id, owner))
            if cur.rowcount != 1:
                return False
            if new_note and note:
                self._event(job_id, "note", note)
        return True

    # -- outcomes ---------------------------------------------------------------------------------

    def finish_job(self, job_id: int, *, owner: str, error: str | None = None, result: Any = None,
                   traceback: str | None = None) -> bool:
        """Record a job's outcome — only by the worker that holds it, and only while it runs, so a
        worker whose lease was taken over (or whose job was cancelled) cannot overwrite the result.
        ``result``: what the job produced (JSON). A failure fails the jobs waiting on it."""
        from db.store import dumps, utc_now

        stored = None if result is None else dumps(result)
        with self.transaction():
            cur = self.conn.execute(
                """UPDATE jobs SET status = ?, error = ?, result = ?, traceback = COALESCE(?, traceback),
                                   finished_at = ?, lease_expires = NULL, child_pid = NULL
                   WHERE id = ? AND lease_owner = ? AND status = 'running'""",
                ("failed" if error else "done", error, stored, traceback, utc_now(), job_id, owner))
            if cur.rowcount != 1:
                return False
            self._event(job_id, "failed" if error else "done", error or "")
            if error:
                self._fail_blocked()
        return True

    def release_job(self, job_id: int, *, owner: str, reason: str, what: str = "worker died",
                    traceback: str | None = None, counts: bool = True) -> str | None:
        """Give a running job back because its attempt was interrupted (``reason``, one line).
        ``counts``: the attempt counts towards the limit — past it the job fails with
        "<what> N times (last: <reason>)"; a worker that stops on request gives the attempt back.
        Returns the job's new status, None when it was not ours."""
        with self.transaction():
            row = self._one("SELECT * FROM jobs WHERE id = ? AND lease_owner = ? AND status = 'running'",
                            (job_id, owner))
            if row is None:
                return None
            return self._release(row, reason=reason, what=what, traceback=traceback, counts=counts)

    def cancel_job(self, job_id: int) -> bool:
        """Cancel a queued or running job (its worker stops a running one: see engine/runs/worker.py);
        the jobs waiting on it fail."""
        from db.store import utc_now

        now = time.time()
        with self.transaction():
            cur = self.conn.execute(
                """UPDATE jobs SET status = 'cancelled', finished_at = ?, lease_expires = NULL,
                                   cancel_requested = CASE WHEN status = 'running' THEN ? END
                   WHERE id = ? AND status IN ('queued', 'running')""", (utc_now(), now, job_id))
            if cur.rowcount != 1:
                return False
            self._event(job_id, "cancelled", "")
            self._fail_blocked()
        return True

    def retry_job(self, job_id: int) -> bool:
        """Queue a failed or cancelled job again, with a fresh allowance of attempts, and the jobs its
        failure failed with it. (One waiting on a dependency that is still failed fails again at once.)"""
        with self.transaction():
            row = self._one("SELECT status FROM jobs WHERE id = ?", (job_id,))
            if row is None or row["status"] not in ("failed", "cancelled"):
                return False
            again = [job_id]
            todo = [job_id]
            while todo:  # the dependents it failed, transitively
                marks = ",".join("?" * len(todo))
                todo = [r["id"] for r in self._q(
                    f"SELECT id FROM jobs WHERE status = 'failed' AND failed_because_of IN ({marks})", todo)]
                again += todo
            marks = ",".join("?" * len(again))
            self.conn.execute(
                f"""UPDATE jobs SET status = 'queued', error = NULL, traceback = NULL, finished_at = NULL,
                                    lease_owner = NULL, lease_expires = NULL, child_pid = NULL,
                                    cancel_requested = NULL, failed_because_of = NULL, attempts_before = attempts
                    WHERE id IN ({marks})""", again)
            for jid in again:
                self._event(jid, "retried", "" if jid == job_id else f"with job {job_id}")
            self._fail_blocked()
        return True

    def add_job_event(self, job_id: int, event: str, text: str = "") -> None:
        """A line of a job's history (``emtui jobs log``)."""
        with self._lock:
            self._event(job_id, event, text)

    # -- reading ----------------------------------------------------------------------------------

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        return self._one(f"SELECT {_JOB_VIEW} FROM jobs j WHERE j.id = :id", {"id": job_id, "now": time.time()})

    def list_jobs(self, *, status: str | None = None, limit: int = 200, offset: int = 0) -> Page:
        """Jobs, newest first, with what the queue screen shows: progress, ``rate`` (per second),
        ``eta_s``, attempts, ``stale`` (running with an expired lease: its worker is gone),
        ``depends_on`` (comma-separated ids). Payload, result and traceback: :meth:`get_job`."""
        from db.store import Page

        where = "WHERE j.status = :status" if status else ""
        rows = self._q(
            f"""SELECT j.id, j.kind, j.status, j.priority, j.attempts, j.max_attempts, j.attempts_before,
                       j.progress_done, j.progress_total, j.note, j.rate, j.progress_at, j.attempt_started,
                       j.lease_owner, j.worker_host, j.worker_pid, j.heartbeat_at, j.lease_expires, j.gpu,
                       j.log_path, j.created_at, j.started_at, j.finished_at, j.error, j.failed_because_of,
                       (SELECT group_concat(d.depends_on) FROM job_deps d WHERE d.job_id = j.id) AS depends_on,
                       CASE WHEN j.status = 'running' AND j.rate > 0 AND j.progress_total IS NOT NULL
                            THEN max(0.0, (j.progress_total - j.progress_done) / j.rate) END AS eta_s,
                       CASE WHEN j.status = 'running' AND j.lease_expires < :now THEN 1 ELSE 0 END AS stale
                FROM jobs j {where} ORDER BY j.id DESC LIMIT :limit OFFSET :offset""",
            {"status": status, "now": time.time(), "limit": limit, "offset": offset})
        total = int(self._scalar(f"SELECT count(*) FROM jobs j {where}", {"status": status}))
        return Page(rows, total, offset, limit)

    def job_status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(JOB_STATUSES, 0)
        for r in self._q("SELECT status, count(*) AS n FROM jobs GROUP BY status"):
            counts[r["status"]] = r["n"]
        return counts

    def job_events(self, job_id: int, *, limit: int = 500) -> list[dict[str, Any]]:
        """A job's history, oldest first (the last ``limit`` lines)."""
        rows = self._q("SELECT at, event, text FROM job_events WHERE job_id = ? ORDER BY id DESC LIMIT ?",
                       (job_id, limit))
        return rows[::-1]

    # -- workers ----------------------------------------------------------------------------------

    def register_worker(self, *, name: str, host: str, pid: int, slot: str, gpus: str | None, n_gpus: int,
                        kinds: Sequence[str], log_path: str | None) -> int:
        from db.store import dumps, utc_now

        with self._lock:
            cur = self.conn.execute(
                """INSERT INTO workers (name, host, pid, slot, gpus, n_gpus, kinds, log_path, status, started_at,
                                        heartbeat_at)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'idle', ?, ?)""",
                (name, host, pid, slot, gpus, n_gpus, dumps(list(kinds)), log_path, utc_now(), time.time()))
            return int(cur.lastrowid or 0)

    def worker_beat(self, worker_id: int, *, status: str, job_id: int | None, owner: str | None = None,
                    lease_s: float = 60.0) -> bool:
        """A worker's heartbeat: its row, and the lease of the job it runs. False when that job is no
        longer its own (cancelled, or taken over after the lease ran out)."""
        now = time.time()
        with self._lock:
            self.conn.execute("UPDATE workers SET heartbeat_at = ?, status = ?, job_id = ? WHERE id = ?",
                              (now, status, job_id, worker_id))
            if job_id is None:
                return True
            cur = self.conn.execute(
                """UPDATE jobs SET lease_expires = ?, heartbeat_at = ?
                   WHERE id = ? AND lease_owner = ? AND status = 'running'""", (now + lease_s, now, job_id, owner))
            return cur.rowcount == 1

    def remove_workers(self, worker_ids: Sequence[int]) -> None:
        if not worker_ids:
            return
        marks = ",".join("?" * len(worker_ids))
        with self._lock:
            self.conn.execute(f"DELETE FROM workers WHERE id IN ({marks})", list(worker_ids))

    def list_workers(self) -> list[dict[str, Any]]:
        """Every registered worker with its current job (kind, progress) and seconds since its heartbeat."""
        return self._q(
            """SELECT w.id, w.name, w.host, w.pid, w.slot, w.gpus, w.n_gpus, w.kinds, w.log_path, w.status,
                      w.job_id, w.started_at, w.heartbeat_at, ? - w.heartbeat_at AS heartbeat_age_s,
                      j.kind AS job_kind, j.progress_done AS job_progress_done, j.progress_total AS job_progress_total
               FROM workers w LEFT JOIN jobs j ON j.id = w.job_id ORDER BY w.host, w.slot, w.id""", (time.time(),))

    # -- the rules, inside a transaction ------------------------------------------------------------

    def _event(self, job_id: int, event: str, text: str) -> None:
        self.conn.execute("INSERT INTO job_events (job_id, at, event, text) VALUES (?, ?, ?, ?)",
                          (job_id, time.time(), event, text))

    def _reap_expired(self, now: float) -> None:
        """Give back (or fail, past their limit) the running jobs whose worker stopped renewing."""
        for row in self._q("SELECT * FROM jobs WHERE status = 'running' AND lease_expires < ?", (now,)):
            self._release(row, reason=f"the lease of {row['lease_owner']} expired", what="worker died",
                          traceback=None, counts=True)

    def _release(self, row: dict[str, Any], *, reason: str, what: str, traceback: str | None,
                 counts: bool) -> str:
        from db.store import utc_now

        tried = row["attempts"] - row["attempts_before"]
        if counts and tried >= row["max_attempts"]:
            error = f"{what} {tried} times (last: {reason})"
            self.conn.execute(
                """UPDATE jobs SET status = 'failed', error = ?, traceback = COALESCE(?, traceback), finished_at = ?,
                                   lease_expires = NULL, child_pid = NULL WHERE id = ?""",
                (error, traceback, utc_now(), row["id"]))
            self._event(row["id"], "failed", error)
            self._fail_blocked()
            return "failed"
        self.conn.execute(
            """UPDATE jobs SET status = 'queued', lease_owner = NULL, lease_expires = NULL, child_pid = NULL,
                               traceback = COALESCE(?, traceback), attempts = attempts - ?
               WHERE id = ?""", (traceback, 0 if counts else 1, row["id"]))
        self._event(row["id"], "released", reason if counts else f"{reason} (the attempt does not count)")
        return "queued"

    def _fail_blocked(self) -> None:
        """Fail every queued job waiting on a failed or cancelled one, until none is left (transitively)."""
        from db.store import utc_now

        blocked = """FROM job_deps d JOIN jobs p ON p.id = d.depends_on
                     WHERE d.job_id = jobs.id AND p.status IN ('failed', 'cancelled')"""
        while True:
            rows = self.conn.execute(
                f"""UPDATE jobs SET status = 'failed', finished_at = ?, lease_expires = NULL,
                                    failed_because_of = (SELECT min(p.id) {blocked})
                    WHERE status = 'queued' AND EXISTS (SELECT 1 {blocked})
                    RETURNING id, failed_because_of""", (utc_now(),)).fetchall()
            if not rows:
                return
            for job_id, cause in rows:
                how = self._scalar("SELECT status FROM jobs WHERE id = ?", (cause,))
                error = f"dependency job {cause} {'was cancelled' if how == 'cancelled' else 'failed'}"
                self.conn.execute("UPDATE jobs SET error = ? WHERE id = ?", (error, job_id))
                self._event(job_id, "failed", error)
