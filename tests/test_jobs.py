"""engine/jobs.py: the worker loop over the real job queue, with handlers registered here."""

import pytest

from db import open_store
from engine import jobs
from engine.jobs import JobCancelled, register, run_one, run_worker

KIND = "test-kind"


@pytest.fixture(autouse=True)
def clean_handlers():
    saved = dict(jobs._HANDLERS)
    yield
    jobs._HANDLERS.clear()
    jobs._HANDLERS.update(saved)


@pytest.fixture
def other(db_path, store):
    """A second connection to the same file: what the TUI or another worker would hold."""
    s = open_store(db_path)
    yield s
    s.close()


def test_run_one_runs_the_handler_and_marks_done(store):
    seen = []

    @register(KIND)
    def handler(ctx):
        seen.append((ctx.payload, ctx.owner, ctx.job["status"]))
        ctx.progress(3)

    assert KIND in jobs.handlers()
    job_id = store.enqueue_job(KIND, {"x": 1}, progress_total=3)
    row = run_one(store, "me")
    assert seen == [({"x": 1}, "me", "running")]
    assert row["id"] == job_id and row["status"] == "done" and row["error"] is None
    assert row["progress_done"] == 3 and row["attempts"] == 1 and row["finished_at"]
    assert run_one(store, "me") is None  # queue empty


def test_run_one_ignores_kinds_without_a_handler(store):
    @register(KIND)
    def handler(ctx):
        pass

    other_kind = store.enqueue_job("nobody-handles-this", {}, priority=10)
    mine = store.enqueue_job(KIND, {})
    assert run_one(store, "me")["id"] == mine
    assert run_one(store, "me") is None
    assert store.get_job(other_kind)["status"] == "queued"


def test_raising_handler_marks_failed_with_one_line(store):
    @register(KIND)
    def handler(ctx):
        raise ValueError(f"bad input {ctx.payload['n']}")

    job_id = store.enqueue_job(KIND, {"n": 42})
    row = run_one(store, "me")  # the worker does not raise
    assert row["id"] == job_id and row["status"] == "failed"
    assert row["error"] == "ValueError: bad input 42"
    assert row["lease_expires"] is None


def test_multiline_error_is_stored_on_one_line(store):
    @register(KIND)
    def handler(ctx):
        raise RuntimeError("first line\nsecond line")

    store.enqueue_job(KIND, {})
    row = run_one(store, "me")
    assert row["status"] == "failed"
    assert "\n" not in row["error"] and row["error"].startswith("RuntimeError: first line")


def test_error_with_a_note_keeps_the_message(store):
    @register(KIND)
    def handler(ctx):
        exc = KeyError("model.safetensors")
        exc.add_note("while loading the adapter")
        raise exc

    store.enqueue_job(KIND, {})
    row = run_one(store, "me")
    assert row["status"] == "failed"
    assert row["error"].startswith("KeyError: 'model.safetensors'")


def test_progress_after_cancel_stops_the_handler(store, other):
    after = []

    @register(KIND)
    def handler(ctx):
        ctx.progress(1)
        assert other.cancel_job(ctx.job["id"])  # someone cancels it from elsewhere
        try:
            ctx.progress(2)
        except JobCancelled:
            after.append("raised")
            raise
        after.append("went on")  # must not happen

    job_id = store.enqueue_job(KIND, {})
    row = run_one(store, "me")
    assert after == ["raised"]
    assert row["id"] == job_id and row["status"] == "cancelled"
    assert row["progress_done"] == 1 and row["error"] is None
    assert run_one(store, "me") is None  # and nobody runs it again


def test_progress_after_reclaim_stops_the_handler(store, other):
    @register(KIND)
    def handler(ctx):
        # the lease ran out (say the worker was suspended) and another worker took the job
        other.conn.execute("UPDATE jobs SET lease_expires = 0 WHERE id = ?", (ctx.job["id"],))
        assert other.claim_job("someone-else", kinds=[KIND])["id"] == ctx.job["id"]
        ctx.progress(1)

    job_id = store.enqueue_job(KIND, {})
    row = run_one(store, "me")
    assert row["id"] == job_id
    assert row["status"] == "running" and row["lease_owner"] == "someone-else" and row["attempts"] == 2


def test_finish_after_reclaim_leaves_the_new_owner_alone(store, other):
    @register(KIND)
    def handler(ctx):
        other.conn.execute("UPDATE jobs SET lease_expires = 0 WHERE id = ?", (ctx.job["id"],))
        other.claim_job("someone-else", kinds=[KIND])
        # returns without reporting progress, so it never learns the job is no longer its own

    store.enqueue_job(KIND, {})
    row = run_one(store, "me")
    assert row["status"] == "running" and row["lease_owner"] == "someone-else"


def test_run_worker_once_drains_the_queue(store):
    order = []

    @register(KIND)
    def handler(ctx):
        order.append(ctx.payload["i"])
        if ctx.payload["i"] == 2:
            raise RuntimeError("two fails")

    ids = [store.enqueue_job(KIND, {"i": i}, priority=p) for i, p in enumerate([0, 0, 0, 5, 0])]
    leftover = store.enqueue_job("unhandled", {})
    seen = []
    ran = run_worker(store, owner="w", once=True, poll_s=0.01, on_job=lambda j: seen.append(j["status"]))
    assert ran == 5
    assert order == [3, 0, 1, 2, 4]  # priority first, then queue order
    assert seen == ["done", "done", "done", "failed", "done"]
    assert store.job_status_counts() == {"queued": 1, "running": 0, "done": 4, "failed": 1, "cancelled": 0}
    assert store.get_job(leftover)["status"] == "queued"
    assert store.get_job(ids[2])["error"] == "RuntimeError: two fails"
    assert run_worker(store, owner="w", once=True) == 0
