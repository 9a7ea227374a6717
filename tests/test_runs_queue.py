"""db/jobs.py: the queue's rules on a real SQLite file — dependencies, attempts and their limit,
resources, results, progress by the owner only, cancellation, retry, the workers' registry."""

from __future__ import annotations

import json
import time

import pytest

from db import StoreError, open_store
from engine.runs.queue import enqueue, job_report, job_view


@pytest.fixture
def other(db_path, store):
    """A second connection to the same file: another worker, or the TUI."""
    s = open_store(db_path)
    yield s
    s.close()


def claim(store, owner="w", kinds=("k",), **kw):
    return store.claim_job(owner, kinds=list(kinds), **kw)


# -- dependencies ----------------------------------------------------------------------------------


def test_a_chain_runs_in_order(store):
    a = store.enqueue_job("k", {"n": "a"})
    b = store.enqueue_job("k", {"n": "b"}, depends_on=[a], priority=9)
    c = store.enqueue_job("k", {"n": "c"}, depends_on=[b], priority=9)
    assert job_view(store.get_job(c))["depends_on"] == [b]
    got = claim(store)
    assert got["id"] == a  # b and c rank higher but wait for their dependency
    assert claim(store) is None
    store.finish_job(a, owner="w", result={"made": "a"})
    assert claim(store)["id"] == b
    assert claim(store) is None
    store.finish_job(b, owner="w")
    assert claim(store)["id"] == c


def test_a_failure_fails_its_dependents_transitively(store):
    a = store.enqueue_job("k", {})
    b = store.enqueue_job("k", {}, depends_on=[a])
    c = store.enqueue_job("k", {}, depends_on=[b])
    free = store.enqueue_job("k", {})
    claim(store)
    store.finish_job(a, owner="w", error="ValueError: bad", traceback="Traceback ...\nValueError: bad")
    rows = {j: store.get_job(j) for j in (a, b, c, free)}
    assert rows[a]["status"] == "failed" and rows[a]["traceback"].endswith("ValueError: bad")
    for job, dep in ((b, a), (c, b)):
        assert ((rows[job]["status"], rows[job]["error"], rows[job]["failed_because_of"])
                == ("failed", f"dependency job {dep} failed", dep))
    assert rows[b]["attempts"] == rows[c]["attempts"] == 0  # never run
    assert rows[free]["status"] == "queued"
    assert claim(store)["id"] == free


def test_cancelling_fails_the_dependents_and_a_job_queued_after_a_failed_one_fails_at_once(store):
    a = store.enqueue_job("k", {})
    b = store.enqueue_job("k", {}, depends_on=[a])
    assert store.cancel_job(a)
    assert store.get_job(b)["error"] == f"dependency job {a} was cancelled"
    late = store.enqueue_job("k", {}, depends_on=[b])
    assert store.get_job(late)["status"] == "failed"
    assert store.get_job(late)["error"] == f"dependency job {b} failed"


def test_a_dependency_that_does_not_exist_is_refused_and_nothing_written(store):
    a = store.enqueue_job("k", {})
    with pytest.raises(StoreError, match="depends on job 99, which does not exist"):
        store.enqueue_job("k", {}, depends_on=[a, 99])
    assert store.count("jobs") == 1 and store.count("job_deps") == 0


def test_retry_queues_the_job_and_the_dependents_it_failed(store):
    a = store.enqueue_job("k", {})
    b = store.enqueue_job("k", {}, depends_on=[a])
    c = store.enqueue_job("k", {}, depends_on=[b])
    claim(store)
    store.finish_job(a, owner="w", error="Boom: x")
    assert store.retry_job(b)  # b waits on a, still failed: it fails again at once
    assert store.get_job(b)["status"] == "failed" and store.get_job(c)["status"] == "failed"
    assert store.retry_job(a)
    assert [store.get_job(j)["status"] for j in (a, b, c)] == ["queued", "queued", "queued"]
    assert store.get_job(b)["error"] is None and store.get_job(b)["failed_because_of"] is None
    assert claim(store)["id"] == a


# -- attempts, leases, giving back ----------------------------------------------------------------------


def test_expired_leases_are_given_back_until_the_attempt_limit(store):
    job = store.enqueue_job("k", {}, max_attempts=3)
    after = store.enqueue_job("k", {}, depends_on=[job])
    for n in (1, 2, 3):
        got = claim(store, f"w{n}", lease_s=-1)  # a worker that dies at once: its lease has run out
        assert got["id"] == job and got["attempts"] == n
    assert claim(store, "w4") is None  # the third expiry was the last: nothing left to run
    row = store.get_job(job)
    assert row["status"] == "failed" and row["error"] == "worker died 3 times (last: the lease of w3 expired)"
    assert store.get_job(after)["error"] == f"dependency job {job} failed"
    events = [(e["event"], e["text"]) for e in store.job_events(job)]
    assert events.count(("released", "the lease of w1 expired")) == 1
    assert events[-1] == ("failed", row["error"])


def test_a_live_lease_is_never_taken(store, other):
    job = store.enqueue_job("k", {})
    claim(store, "w1", lease_s=60)
    assert claim(other, "w2") is None
    assert store.get_job(job)["lease_owner"] == "w1"


def test_release_counts_or_gives_the_attempt_back(store):
    job = store.enqueue_job("k", {}, max_attempts=2)
    claim(store, "w")
    assert store.release_job(job, owner="someone-else", reason="x") is None  # not theirs
    assert store.release_job(job, owner="w", reason="worker w stopped", counts=False) == "queued"
    assert store.get_job(job)["attempts"] == 0  # a worker stopped on request: the attempt does not count
    claim(store, "w")
    assert store.release_job(job, owner="w", reason="killed by SIGKILL", what="the job's process died",
                             traceback="stack") == "queued"
    claim(store, "w")
    assert store.release_job(job, owner="w", reason="killed by SIGKILL", what="the job's process died") == "failed"
    row = store.get_job(job)
    assert row["error"] == "the job's process died 2 times (last: killed by SIGKILL)"
    assert row["traceback"] == "stack"  # the last interrupted attempt's


def test_retry_gives_a_fresh_allowance_and_attempts_keep_counting(store):
    job = store.enqueue_job("k", {}, max_attempts=1)
    claim(store, "w", lease_s=-1)
    assert claim(store, "w") is None
    assert store.get_job(job)["status"] == "failed"
    assert store.retry_job(job)
    got = claim(store, "w")
    assert got["id"] == job and got["attempts"] == 2 and got["attempts_before"] == 1
    assert job_view(got)["payload"] == {}


# -- resources, kinds ---------------------------------------------------------------------------------------


def test_a_worker_claims_only_what_its_gpus_can_run(store):
    gpu = store.enqueue_job("k", {}, resources={"gpu": 1}, priority=5)
    two = store.enqueue_job("k", {}, resources={"gpu": 2}, priority=5)
    cpu = store.enqueue_job("k", {})
    assert claim(store, "cpu-worker", gpus=0)["id"] == cpu
    assert claim(store, "cpu-worker", gpus=0) is None
    assert claim(store, "one-gpu", gpus=1)["id"] == gpu
    assert claim(store, "one-gpu", gpus=1) is None
    assert claim(store, "two-gpus", gpus=2)["id"] == two
    assert json.loads(store.get_job(two)["resources"]) == {"gpu": 2}


def test_enqueue_checks_the_kind(store):
    from engine.runs.kinds import KindError

    with pytest.raises(KindError, match="unknown job kind 'nope'.*known: .*echo"):
        enqueue(store, "nope")
    assert store.count("jobs") == 0
    job = enqueue(store, "echo", {"x": 1}, gpu=1, priority=3)
    row = job_view(store.get_job(job))
    assert ((row["kind"], row["payload"], row["gpu"], row["priority"], row["max_attempts"])
            == ("echo", {"x": 1}, 1, 3, 3))


# -- progress, outcome ----------------------------------------------------------------------------------------


def test_progress_and_outcome_only_by_the_owner_while_it_runs(store, other):
    job = store.enqueue_job("k", {})
    claim(store, "w", lease_s=60)
    assert not other.report_progress(job, "intruder", done=5, total=10, note=None, metrics=None, rate=None)
    assert store.report_progress(job, "w", done=4, total=10, note="loading", metrics={"loss": 0.5}, rate=2.0,
                                 new_note=True)
    row = store.list_jobs().rows[0]
    assert (row["progress_done"], row["progress_total"], row["note"], row["rate"]) == (4, 10, "loading", 2.0)
    assert row["eta_s"] == pytest.approx(3.0) and row["stale"] == 0
    assert json.loads(store.get_job(job)["metrics"]) == {"loss": 0.5}
    assert store.finish_job(job, owner="w", result={"rows": 10, "path": "out/adapter"})
    assert not store.report_progress(job, "w", done=6, total=10, note=None, metrics=None, rate=None)
    assert job_view(store.get_job(job))["result"] == {"rows": 10, "path": "out/adapter"}
    report = job_report(store, job)
    assert [e["event"] for e in report["events"]] == ["queued", "claimed", "note", "done"]


def test_a_result_that_is_not_json_is_refused(store):
    job = store.enqueue_job("k", {})
    claim(store, "w")
    with pytest.raises(StoreError, match="NaN"):
        store.finish_job(job, owner="w", result={"loss": float("nan")})
    assert store.get_job(job)["status"] == "running"


def test_a_running_job_whose_worker_went_silent_is_stale(store):
    store.enqueue_job("k", {})
    claim(store, "w", lease_s=0.05)
    time.sleep(0.1)
    assert store.list_jobs().rows[0]["stale"] == 1


def test_cancel_of_a_running_job_is_seen_by_its_worker(store, other):
    job = store.enqueue_job("k", {})
    claim(store, "w", lease_s=60)
    wid = store.register_worker(name="h:1", host="h", pid=1, slot="worker", gpus=None, n_gpus=0, kinds=["k"],
                                log_path=None)
    assert store.worker_beat(wid, status="running", job_id=job, owner="w", lease_s=60)
    assert other.cancel_job(job)
    assert store.get_job(job)["cancel_requested"] is not None
    assert store.job_state(job)["status"] == "cancelled"
    assert not store.worker_beat(wid, status="running", job_id=job, owner="w", lease_s=60)
    assert not store.finish_job(job, owner="w", result={"late": True})  # a late outcome is not recorded
    assert store.get_job(job)["status"] == "cancelled"


def test_the_workers_registry(store):
    job = store.enqueue_job("k", {})
    claim(store, "h:7")
    wid = store.register_worker(name="h:7", host="h", pid=7, slot="worker-gpu0", gpus="0", n_gpus=1,
                                kinds=["k", "echo"], log_path="/x/worker-gpu0.log")
    store.worker_beat(wid, status="running", job_id=job, owner="h:7", lease_s=60)
    (w,) = store.list_workers()
    assert (w["name"], w["slot"], w["gpus"], w["n_gpus"], w["status"], w["job_id"], w["job_kind"]) == \
        ("h:7", "worker-gpu0", "0", 1, "running", job, "k")
    assert json.loads(w["kinds"]) == ["k", "echo"] and 0 <= w["heartbeat_age_s"] < 5
    store.remove_workers([wid])
    assert store.list_workers() == []


def test_an_older_database_gets_the_run_layer(db_path):
    with open_store(db_path, upto=4) as old:
        old.conn.execute("INSERT INTO jobs (kind, payload, status, created_at) VALUES ('k', '{}', 'queued', 't')")
    with open_store(db_path) as store:
        row = store.get_job(1)
        assert (row["max_attempts"], row["attempts_before"], row["gpu"], row["resources"]) == (3, 0, 0, "{}")
        assert claim(store, "w")["id"] == 1
        assert {"job_deps", "job_events", "workers"} <= set(store.table_names())
