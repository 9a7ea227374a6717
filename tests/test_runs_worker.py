"""The worker as it runs: real `emtui worker` processes on a real SQLite file, each job in a
process of its own. Short leases, heartbeats and grace periods keep every test a few seconds."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.runs.queue import job_report, job_view
from engine.runs.worker import pid_alive

FAST = {
    "EMTUI_JOB_LEASE_S": "1.0",
    "EMTUI_JOB_HEARTBEAT_S": "0.2",
    "EMTUI_WORKER_POLL_S": "0.05",
    "EMTUI_JOB_CANCEL_GRACE_S": "0.6",
    "EMTUI_JOB_PROGRESS_FLUSH_S": "0.05",
    "CUDA_VISIBLE_DEVICES": "",  # no GPU unless a test gives one
}


@pytest.fixture
def fast_env(cli_env):
    return cli_env(FAST)


@pytest.fixture
def start_worker(db_path, fast_env, tmp_path):
    """Start `emtui worker ARGS` in the background; every one still running is killed at the end."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(db_path), "worker", *args],
                                env={**fast_env, **(env or {})}, cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def wait_for(what, timeout: float = 10.0, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step)
    raise AssertionError(f"timed out waiting for {what}")


def output(proc: subprocess.Popen, timeout: float = 20) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return out


def running(store, job_id: int):
    job = store.get_job(job_id)
    return job if job["status"] == "running" and job["child_pid"] else None


# -- the lease -----------------------------------------------------------------------------------


def test_a_handler_that_reports_nothing_past_the_lease_is_not_reclaimed(store, start_worker):
    job = store.enqueue_job("sleep", {"seconds": 2.5, "report": False})
    first = start_worker("--once")
    wait_for(lambda: running(store, job))
    time.sleep(1.6)  # past the 1 s lease: only the worker's heartbeat keeps it
    second = start_worker("--once")
    assert "stopped after 0 job(s)" in output(second)
    row = store.get_job(job)
    assert row["status"] == "running" and row["attempts"] == 1 and row["lease_expires"] > time.time()
    assert "stopped after 1 job(s)" in output(first)
    row = store.get_job(job)
    assert row["status"] == "done" and row["attempts"] == 1
    assert json.loads(row["result"])["slept"] == 2.5


# -- a worker that dies --------------------------------------------------------------------------------


def test_a_sigkilled_worker_job_is_given_back_and_fails_at_the_limit(store, start_worker):
    job = store.enqueue_job("sleep", {"seconds": 60}, max_attempts=3)
    for attempt in (1, 2, 3):
        worker = start_worker()
        row = wait_for(lambda: (r := running(store, job)) and r["progress_done"] > 0 and r)  # in the handler
        assert row["attempts"] == attempt and row["worker_pid"] == worker.pid
        worker.kill()  # SIGKILL: no goodbye
        worker.wait()
        # the job's process dies with its worker (PR_SET_PDEATHSIG) and gives the job back
        child = row["child_pid"]
        wait_for(lambda: not pid_alive(child))  # noqa: B023 - called here, in this turn of the loop
        row = wait_for(lambda: (r := store.get_job(job))["status"] != "running" and r)
        assert row["status"] == ("failed" if attempt == 3 else "queued")
    assert row["error"].startswith("worker died 3 times (last: worker ")
    assert row["attempts"] == 3
    assert "builtin_kinds.py" in row["traceback"] and "in sleep" in row["traceback"]  # where it was
    released = [e["text"] for e in store.job_events(job) if e["event"] == "released"]
    assert len(released) == 2 and all(t.startswith("worker ") and t.endswith(" died") for t in released)


def test_a_worker_and_its_job_killed_at_once_are_taken_over_when_the_lease_expires(store, start_worker, run_cli,
                                                                                     fast_env):
    job = store.enqueue_job("sleep", {"seconds": 60})
    worker = start_worker()
    row = wait_for(lambda: running(store, job))
    for pid in (worker.pid, row["child_pid"]):  # the machine froze: nobody gives the job back
        os.kill(pid, signal.SIGSTOP)
    for pid in (worker.pid, row["child_pid"]):
        os.kill(pid, signal.SIGKILL)
    worker.wait()
    time.sleep(1.1)  # past the lease
    listed = json.loads(run_cli("--db", store.path, "jobs", "--format", "json", env=FAST).stdout)
    assert listed["jobs"][0]["stale"] is True and listed["jobs"][0]["status"] == "running"
    taken = store.claim_job("another", kinds=["sleep"])
    assert taken["id"] == job and taken["attempts"] == 2
    assert [e["text"] for e in store.job_events(job) if e["event"] == "released"] == \
        [f"the lease of {row['lease_owner']} expired"]


def test_a_job_that_crashes_its_process_neither_kills_the_worker_nor_the_next_job(store, start_worker):
    crash = store.enqueue_job("crash", {}, max_attempts=2)
    after = store.enqueue_job("echo", {"steps": 3})
    out = output(start_worker("--once"))
    assert "stopped after 3 job(s)" in out  # the crash twice, then the echo
    row = store.get_job(crash)
    assert row["status"] == "failed" and row["attempts"] == 2
    assert row["error"] == "the job's process died 2 times (last: killed by SIGKILL)"
    assert "about to crash" in row["traceback"]  # the tail of its log
    assert store.get_job(after)["status"] == "done"


# -- which worker takes what -------------------------------------------------------------------------------


def test_two_workers_with_different_kinds_and_gpus_take_only_their_jobs(store, start_worker):
    cpu_echo = store.enqueue_job("echo", {})
    gpu_sleep = store.enqueue_job("sleep", {"seconds": 0.1}, resources={"gpu": 1})
    cpu_sleep = store.enqueue_job("sleep", {"seconds": 0.1})
    gpu_echo = store.enqueue_job("echo", {}, resources={"gpu": 1})  # nobody: the GPU worker does not run echo
    async_job = store.enqueue_job("echo-async", {})  # nobody runs this kind
    a = start_worker("--once", "--kinds", "echo")
    b = start_worker("--once", "--kinds", "sleep", "--gpus", "0")
    out_a, out_b = output(a), output(b)
    assert "no GPU" in out_a and "1 GPU(s) (CUDA_VISIBLE_DEVICES=0)" in out_b
    by = {j: store.get_job(j) for j in (cpu_echo, gpu_sleep, cpu_sleep, gpu_echo, async_job)}
    assert by[cpu_echo]["worker_pid"] == a.pid and by[cpu_echo]["status"] == "done"
    assert by[gpu_sleep]["worker_pid"] == b.pid == by[cpu_sleep]["worker_pid"]
    assert json.loads(by[gpu_sleep]["result"])["cuda_visible_devices"] == "0"  # the job's process sees its GPU
    assert by[gpu_echo]["status"] == by[async_job]["status"] == "queued"
    assert by[gpu_echo]["attempts"] == by[async_job]["attempts"] == 0


def test_two_workers_racing_never_take_one_job_twice(store, start_worker):
    ids = [store.enqueue_job("sleep", {"seconds": 0.1}) for _ in range(16)]
    a, b = start_worker("--once"), start_worker("--once")
    output(a), output(b)
    rows = [store.get_job(j) for j in ids]
    assert {r["status"] for r in rows} == {"done"} and {r["attempts"] for r in rows} == {1}
    for j in ids:
        assert [e["event"] for e in store.job_events(j)].count("claimed") == 1
    assert {r["worker_pid"] for r in rows} == {a.pid, b.pid}  # both took some


def test_a_chain_runs_in_order_and_a_failure_fails_what_waits_on_it(store, start_worker):
    a = store.enqueue_job("echo", {"n": "a"})
    b = store.enqueue_job("echo", {"n": "b"}, depends_on=[a], priority=5)
    c = store.enqueue_job("echo", {"n": "c"}, depends_on=[b], priority=5)
    bad = store.enqueue_job("fail", {"message": "no data"})
    then = store.enqueue_job("echo", {}, depends_on=[bad], priority=9)
    last = store.enqueue_job("echo", {}, depends_on=[then])
    output(start_worker("--once"))
    rows = {j: store.get_job(j) for j in (a, b, c, bad, then, last)}
    assert [rows[j]["status"] for j in (a, b, c)] == ["done"] * 3
    assert rows[a]["attempt_started"] < rows[b]["attempt_started"] < rows[c]["attempt_started"]
    assert json.loads(rows[c]["result"])["payload"] == {"n": "c"}
    assert rows[bad]["error"] == "RuntimeError: no data" and "raise RuntimeError" in rows[bad]["traceback"]
    assert (rows[then]["status"], rows[then]["error"], rows[then]["attempts"]) == \
        ("failed", f"dependency job {bad} failed", 0)
    assert rows[last]["error"] == f"dependency job {then} failed"


# -- cancelling a running job, stopping a worker ------------------------------------------------------------------


def test_cancelling_a_running_job_stops_it(store, start_worker, run_cli):
    worker = start_worker()
    cases = [({"seconds": 60}, "stopped by itself"),                        # checks progress.cancelled()
             ({"seconds": 60, "check": False}, "ended after SIGTERM"),      # never checks
             ({"seconds": 60, "check": False, "ignore_term": True}, "was killed")]  # ignores SIGTERM too
    for payload, how in cases:
        job = store.enqueue_job("sleep", payload)
        row = wait_for(lambda: (r := running(store, job)) and r["progress_done"] > 0 and r)  # noqa: B023
        r = run_cli("--db", store.path, "jobs", "cancel", str(job), env=FAST)
        assert r.returncode == 0 and r.stdout.startswith(f"cancelled job {job} (its worker stops it)")
        wait_for(lambda: not pid_alive(row["child_pid"]))  # noqa: B023 - called here, in this turn of the loop
        wait_for(lambda: any(e["event"] == "stopped" for e in store.job_events(job)))  # noqa: B023
        stopped = [e["text"] for e in store.job_events(job) if e["event"] == "stopped"]
        assert stopped == [f"its process ({row['child_pid']}) {how}"], payload
        assert store.get_job(job)["status"] == "cancelled"
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0


def test_a_stopped_worker_queues_its_job_again_without_counting_the_attempt(store, start_worker):
    job = store.enqueue_job("sleep", {"seconds": 60, "check": False})
    worker = start_worker()
    row = wait_for(lambda: running(store, job))
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert not pid_alive(row["child_pid"])
    row = store.get_job(job)
    assert row["status"] == "queued" and row["attempts"] == 0 and row["lease_owner"] is None
    assert store.list_workers() == []  # it left the registry
    assert any(e["text"].endswith("(the attempt does not count)") for e in store.job_events(job))


# -- handlers: async, results, kinds from the environment ---------------------------------------------------------


def test_an_async_handler_runs_and_its_result_is_stored(store, start_worker):
    job = store.enqueue_job("echo-async", {"tasks": 5})
    output(start_worker("--once"))
    row = job_view(store.get_job(job))
    assert row["status"] == "done" and row["result"] == {"done": [0, 1, 2, 3, 4], "status_seen": "running"}
    assert (row["progress_done"], row["progress_total"]) == (5, 5)


def test_a_kind_from_the_environment(store, start_worker, tmp_path, run_cli):
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "labjobs.py").write_text(
        "def count(ctx):\n"
        "    ctx.progress.set_total(3)\n"
        "    for _ in range(3):\n"
        "        ctx.progress.advance()\n"
        "    ctx.progress.note('counted')\n"
        "    return {'n': 3, 'payload': ctx.payload, 'attempt': ctx.attempt}\n")
    env = {"EMTUI_JOB_KINDS": "lab.count=labjobs:count", "PYTHONPATH": str(tmp_path / "plug")}
    r = run_cli("--db", store.path, "jobs", "add", "lab.count", "--payload", '{"x": 1}', env=env)
    assert r.returncode == 0, r.stderr
    output(start_worker("--once", "--kinds", "lab.count", env={**env, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path / "plug"), os.environ.get("PYTHONPATH", "")])}))
    row = job_report(store, 1)["job"]
    assert row["result"] == {"n": 3, "payload": {"x": 1}, "attempt": 1} and row["note"] == "counted"


# -- detached ----------------------------------------------------------------------------------------------------------


def test_a_detached_worker_survives_the_terminal_that_started_it(store, db_path, fast_env, tmp_path, run_cli):
    # the "terminal": a shell in a session of its own that starts the worker and stays
    said = tmp_path / "said.txt"
    script = f"{sys.executable} -m emtui --db {db_path} worker --detach > {said}; sleep 60"
    shell = subprocess.Popen(["/bin/sh", "-c", script], env=fast_env, cwd=tmp_path, start_new_session=True)
    pidfile = Path(f"{db_path}.runs") / "worker.pid"
    try:
        wait_for(lambda: "started in the background" in said.read_text() if said.exists() else False)
        pid = int(pidfile.read_text())
        assert f"worker started in the background as worker (pid {pid})" in said.read_text()
        os.killpg(shell.pid, signal.SIGHUP)  # the SSH connection drops
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
        time.sleep(0.3)
        assert pid_alive(pid) and os.getsid(pid) == pid  # a session of its own
        job = store.enqueue_job("echo", {"after": "the terminal died"})
        wait_for(lambda: store.get_job(job)["status"] == "done")
        status = json.loads(run_cli("--db", db_path, "worker", "status", "--format", "json", env=FAST).stdout)
        (w,) = status["workers"]
        assert (w["pid"], w["alive"], w["slot"]) == (pid, True, "worker")
        r = run_cli("--db", db_path, "worker", "stop", env=FAST)
        assert r.returncode == 0 and f"worker (pid {pid}) stopped" in r.stdout and "worker worker" not in r.stdout
        assert not pid_alive(pid) and not pidfile.exists() and store.list_workers() == []
        log = (Path(f"{db_path}.runs") / "worker.log").read_text()
        assert f"job {job} (echo): done" in log
    finally:
        if pidfile.exists() and pidfile.read_text().strip().isdigit():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


def test_gpus_runs_one_worker_per_gpu(store, start_worker):
    jobs = [store.enqueue_job("sleep", {"seconds": 2.5}, resources={"gpu": 1}) for _ in range(2)]
    out = output(start_worker("--once", "--gpus", "0,1"))
    rows = [job_view(store.get_job(j)) for j in jobs]
    assert {r["result"]["cuda_visible_devices"] for r in rows} == {"0", "1"}  # one each, at once
    assert len({r["worker_pid"] for r in rows}) == 2
    assert abs(rows[0]["attempt_started"] - rows[1]["attempt_started"]) < 2.5  # side by side
    assert out.count("stopped after 1 job(s)") == 2


def test_max_jobs(store, start_worker):
    first, second = store.enqueue_job("echo", {}), store.enqueue_job("echo", {})
    assert "stopped after 1 job(s)" in output(start_worker("--once", "--max-jobs", "1"))
    assert (store.get_job(first)["status"], store.get_job(second)["status"]) == ("done", "queued")


def test_the_doctor_kind_calls_engine_doctor():
    # `emtui doctor --worker` queues a `doctor` job and reads the report from the job's result
    from engine.runs.kinds import kinds, resolve

    assert kinds()["doctor"] == "engine.runs.builtin_kinds:doctor"
    assert resolve("doctor").__doc__.startswith("What this machine can do, as the worker sees it")


def test_ensure_worker_starts_one_detached_worker_only_when_none_is_alive(store, db_path, fast_env, monkeypatch):
    from engine.runs.detach import ensure_worker, stop_workers

    for key, value in fast_env.items():
        monkeypatch.setenv(key, value)
    pid = ensure_worker(db_path)
    try:
        assert pid and pid_alive(pid)
        wait_for(lambda: [w for w in store.list_workers() if w["pid"] == pid])
        assert ensure_worker(db_path) is None  # one is alive: nothing started
        job = store.enqueue_job("echo", {})
        wait_for(lambda: store.get_job(job)["status"] == "done")
        assert stop_workers(db_path, store, wait_s=10) == [(pid, "worker", True)]
        assert store.list_workers() == []
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_detached_workers_per_gpu_each_hold_a_pidfile(store, db_path, run_cli):
    r = run_cli("--db", db_path, "worker", "--detach", "--gpus", "0,1", env=FAST)
    pids = []
    try:
        assert r.returncode == 0, r.stderr
        assert "as worker-gpu0 (pid" in r.stdout and "as worker-gpu1 (pid" in r.stdout
        folder = Path(f"{db_path}.runs")
        pids = [int((folder / f"worker-gpu{g}.pid").read_text()) for g in (0, 1)]
        status = json.loads(run_cli("--db", db_path, "worker", "status", "--format", "json", env=FAST).stdout)
        assert sorted((w["slot"], w["gpus"], w["n_gpus"]) for w in status["workers"]) == \
            [("worker-gpu0", "0", 1), ("worker-gpu1", "1", 1)]
        again = run_cli("--db", db_path, "worker", "--detach", "--gpus", "1", env=FAST)
        assert f"a worker already runs as worker-gpu1 (pid {pids[1]})" in again.stdout
        r = run_cli("--db", db_path, "worker", "stop", env=FAST)
        assert r.returncode == 0 and r.stdout.count("stopped") == 2
        assert not any(pid_alive(p) for p in pids) and not list(folder.glob("*.pid"))
    finally:
        for p in pids:
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
