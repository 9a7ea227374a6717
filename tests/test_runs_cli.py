"""`emtui jobs` and `emtui worker status|stop` through the real CLI: the JSON every list of the
TUI has, a table that fits 80 columns, cancel / retry / log / add, and their refusals."""

from __future__ import annotations

import json

import pytest

FAST = {"EMTUI_JOB_LEASE_S": "1.0", "EMTUI_JOB_HEARTBEAT_S": "0.2", "EMTUI_WORKER_POLL_S": "0.05",
        "EMTUI_JOB_CANCEL_GRACE_S": "0.5", "EMTUI_JOB_PROGRESS_FLUSH_S": "0.05", "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture
def queue(store, db_path, run_cli):
    """A few jobs run by a real worker: done, failed (and one failed through it), queued, cancelled."""
    run = lambda *a, **kw: run_cli("--db", db_path, *a, env=FAST, **kw)  # noqa: E731
    assert run("jobs", "add", "echo", "--payload", '{"steps": 4}').returncode == 0                # 1
    assert run("jobs", "add", "fail", "--payload", '{"message": "bad\\u001b[2J data"}').returncode == 0  # 2
    assert run("jobs", "add", "echo", "--after", "2").returncode == 0                              # 3
    assert run("worker", "--once").returncode == 0
    assert run("jobs", "add", "sleep", "--gpu", "1", "--priority", "4").returncode == 0            # 4
    assert run("jobs", "add", "echo", "--after", "4").returncode == 0                              # 5
    assert run("jobs", "add", "echo").returncode == 0                                              # 6
    assert run("jobs", "cancel", "6").returncode == 0
    return run


def test_jobs_json_lists_every_job_with_what_the_queue_screen_shows(queue):
    r = queue("jobs", "--format", "json")
    assert r.returncode == 0, r.stderr
    listing = json.loads(r.stdout)
    assert listing["counts"] == {"queued": 2, "running": 0, "done": 1, "failed": 2, "cancelled": 1}
    assert listing["total"] == 6
    jobs = {j["id"]: j for j in listing["jobs"]}
    assert [j["id"] for j in listing["jobs"]] == [6, 5, 4, 3, 2, 1]
    assert (jobs[1]["status"], jobs[1]["progress_done"], jobs[1]["progress_total"]) == ("done", 4, 4)
    assert jobs[1]["lease_owner"] and jobs[1]["worker_pid"] and jobs[1]["log_path"].endswith("/jobs/1.log")
    assert jobs[2]["error"] == "RuntimeError: bad data"  # the one-line error is clean
    assert (jobs[3]["status"], jobs[3]["error"], jobs[3]["depends_on"]) == ("failed", "dependency job 2 failed", [2])
    assert (jobs[4]["gpu"], jobs[4]["priority"], jobs[4]["max_attempts"], jobs[4]["stale"]) == (1, 4, 3, False)
    assert {"attempts", "attempts_before", "rate", "eta_s", "note", "heartbeat_at", "progress_at"} <= set(jobs[4])


def test_jobs_table_fits_80_columns_and_strips_control_sequences(queue):
    r = queue("jobs")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "queued 2  running 0  done 1  failed 2  cancelled 1"
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    assert "\x1b" not in r.stdout
    text = r.stdout
    assert "↳ RuntimeError: bad data" in text
    assert "↳ dependency job 2 failed" in text
    assert "after 4" in text  # job 5 waits on job 4
    only_failed = queue("jobs", "--status", "failed").stdout
    assert only_failed.count("↳") == 2 and "echo         done" not in only_failed


def test_jobs_log_says_what_happened(queue):
    r = queue("jobs", "log", "2")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("job 2 (fail): failed; attempt 1 of 3")
    assert "error: RuntimeError: bad data" in out  # control sequences stripped
    assert "claimed   attempt 1 by " in out and "note      about to fail" in out
    assert "traceback:" in out and "raise RuntimeError" in out
    assert "log (the last" in out and "/jobs/2.log" in out
    r = queue("jobs", "log", "2", "--format", "json")
    report = json.loads(r.stdout)
    assert report["job"]["traceback"].rstrip().endswith("RuntimeError: bad\x1b[2J data")  # kept whole
    assert "\\u001b[2J" in r.stdout and "\x1b" not in r.stdout  # and escaped in the output
    assert [e["event"] for e in report["events"]] == ["queued", "claimed", "note", "failed"]
    assert any("about to fail" in line for line in report["log_tail"])


def test_cancel_and_retry(queue, store):
    r = queue("jobs", "cancel", "4")
    assert r.returncode == 0 and r.stdout.strip() == "cancelled job 4; 1 job(s) waiting on it failed"
    assert store.get_job(5)["error"] == "dependency job 4 was cancelled"
    r = queue("jobs", "retry", "4")
    assert r.returncode == 0 and r.stdout.strip() == "job 4 queued again, and job(s) 5 waiting on it"
    assert store.get_job(5)["status"] == "queued"
    r = queue("jobs", "retry", "3")
    assert r.returncode == 2
    assert r.stderr.strip() == ("emtui jobs retry: job 3 waits on job 2, which failed: retry job 2 (it queues job 3 "
                                "again with it)")
    r = queue("jobs", "cancel", "1")
    assert r.returncode == 2 and r.stderr.strip() == ("emtui jobs cancel: job 1 is done: only a queued or running "
                                                      "job can be cancelled")
    r = queue("jobs", "retry", "4")
    assert r.returncode == 2 and "job 4 is queued: only a failed or cancelled job can be retried" in r.stderr


def test_refusals_leave_the_database_as_it_was(queue, db_path):
    import sqlite3

    def snapshot():
        conn = sqlite3.connect(db_path)
        try:
            return list(conn.iterdump())
        finally:
            conn.close()

    before = snapshot()
    for args in (["jobs", "cancel", "1"], ["jobs", "retry", "3"], ["jobs", "add", "echo", "--after", "99"],
                 ["jobs", "add", "nope"]):
        r = queue(*args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert snapshot() == before


def test_jobs_add_json_and_its_hint(run_cli, db_path, store):
    r = run_cli("--db", db_path, "jobs", "add", "echo", "--format", "json", env=FAST)
    assert json.loads(r.stdout) == {"id": 1, "status": "queued"}
    r = run_cli("--db", db_path, "jobs", "add", "echo", env=FAST)
    assert r.stdout.strip() == "queued job 2 (echo); no worker is running: emtui worker --detach starts one"


def test_worker_status_json_and_stop_without_workers(run_cli, db_path, store):
    r = run_cli("--db", db_path, "worker", "status", "--format", "json", env=FAST)
    assert r.returncode == 0 and json.loads(r.stdout) == {"workers": []}
    r = run_cli("--db", db_path, "worker", "status", env=FAST)
    assert r.stdout.strip() == f"no worker is registered for {db_path}; start one with: emtui worker --detach"
    r = run_cli("--db", db_path, "worker", "stop", env=FAST)
    assert r.returncode == 0 and r.stdout.strip() == f"no worker of {db_path} runs on this host"
