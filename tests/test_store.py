"""db/store.py against real SQLite files: connection settings, migrations, transactions,
the generation identity, and the job queue (including two processes claiming at once)."""

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from db import SCHEMA_VERSION, Page, StoreError, open_store, utc_now
from engine.study.study_file import load_study, register_study

REPO_ROOT = Path(__file__).resolve().parents[1]


# -- helpers -----------------------------------------------------------------------------------


def seed_rows(store) -> dict[str, int]:
    """A study, a condition, a question, a generation and a judgment, via plain store calls."""
    ids: dict[str, int] = {}
    ids["study"] = store.add_study(name="s1", description="d", origin="study-file",
                                   spec_hash="sha256:abc", spec={"name": "s1"}, spec_toml="x = 1")
    ids["model"] = store.ensure_model(name="base", kind="base", source="tiny")
    ids["condition"] = store.add_condition(study_id=ids["study"], name="base", model_id=ids["model"],
                                           base_model_id=ids["model"])
    ids["eval_set"] = store.ensure_eval_set(name="set", source="builtin:x", content_hash="sha256:q",
                                            questions=[{"key": "q1", "text": "Hello?"}])
    ids["question"] = store.list_questions(ids["eval_set"]).rows[0]["id"]
    ids["rubric"] = store.ensure_rubric(name="r", content_hash="sha256:r", body="b",
                                        metrics=[{"name": "aligned"}])
    ids["judge"] = store.ensure_judge(name="j", provider="local", model="m", params={}, params_hash="h")
    ids["generation"] = generation(store, ids)
    ids["judgment"] = int(store.db["judgments"].insert({
        "generation_id": ids["generation"], "judge_id": ids["judge"], "rubric_id": ids["rubric"],
        "status": "ok", "raw_output": "87", "created_at": utc_now()}).last_pk)
    store.db["judgment_scores"].insert({"judgment_id": ids["judgment"], "metric": "aligned", "score": 87.0})
    return ids


def generation(store, ids: dict[str, int], **over) -> int:
    row = {"question_id": ids["question"], "condition_id": ids["condition"], "model_id": ids["model"],
           "checkpoint_id": None, "settings": "{}", "settings_hash": "sha256:settings", "seed": 0,
           "sample_index": 0, "response": "an answer", "created_at": utc_now()}
    row.update(over)
    return int(store.db["generations"].insert(row).last_pk)


# -- connection settings and schema -----------------------------------------------------------------


def test_pragmas(store, db_path):
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    # WAL is a property of the file: a plain connection sees it too
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()


def test_user_version_is_schema_version(store, db_path):
    assert store.user_version == SCHEMA_VERSION
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        other.close()


def test_foreign_keys_are_enforced(store):
    with pytest.raises(sqlite3.IntegrityError):
        store.add_condition(study_id=999, name="orphan")


def test_migration_from_v1_keeps_rows(tmp_path):
    path = tmp_path / "old.db"
    old = open_store(path, upto=1)
    assert old.user_version == 1
    assert "input_tokens" not in old.columns("judgments")
    ids = seed_rows(old)
    before = old.counts()
    old.close()

    new = open_store(path)
    try:
        assert new.user_version == SCHEMA_VERSION
        cols = new.columns("judgments")
        for col in ("input_tokens", "output_tokens", "latency_ms"):
            assert col in cols
        counts = new.counts()
        assert {k: v for k, v in counts.items() if k in before} == before
        # v3: the annotation workbench's tables arrive empty, its columns on the old tables NULL
        for table in ("campaign_items", "campaign_annotators", "annotator_orders", "rating_edits", "adjudications"):
            assert counts[table] == 0
        assert {"item_id", "rater_kind", "leased_at"} <= set(new.columns("assignments"))
        assert {"item_id", "choice", "updated_at"} <= set(new.columns("ratings"))
        assert new.find_study("s1")["spec_hash"] == "sha256:abc"
        j = new._one("SELECT * FROM judgments WHERE id = ?", (ids["judgment"],))
        assert j["raw_output"] == "87" and j["input_tokens"] is None and j["latency_ms"] is None
        score = new._one("SELECT score FROM judgment_scores WHERE judgment_id = ?", (ids["judgment"],))
        assert score["score"] == 87.0
        gen = new._one("SELECT response, question_id FROM generations WHERE id = ?", (ids["generation"],))
        assert gen == {"response": "an answer", "question_id": ids["question"]}
        index_names = {r["name"] for r in new._q("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"judgments_judge", "questions_set", "assignments_item_annotator", "ratings_campaign"} <= index_names
        # the new columns are writable
        new.conn.execute("UPDATE judgments SET input_tokens = 12, latency_ms = 340 WHERE id = ?",
                         (ids["judgment"],))
    finally:
        new.close()
    # opening again is a no-op
    again = open_store(path)
    try:
        assert again.user_version == SCHEMA_VERSION
        assert again.count("judgments") == 1
    finally:
        again.close()


def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "future.db"
    open_store(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}, newer .*upgrade emtui"):
        open_store(path)


def test_missing_folder_is_refused_and_nothing_created(tmp_path):
    target = tmp_path / "nope" / "deeper" / "x.db"
    with pytest.raises(StoreError, match="folder does not exist"):
        open_store(target)
    assert not (tmp_path / "nope").exists()
    assert list(tmp_path.iterdir()) == []


def test_create_false_refuses_missing_file(tmp_path):
    with pytest.raises(StoreError, match="no database at"):
        open_store(tmp_path / "absent.db", create=False)
    assert list(tmp_path.iterdir()) == []


def test_folder_as_database_path_is_refused(tmp_path):
    with pytest.raises(StoreError, match="is a folder"):
        open_store(tmp_path)


# -- transactions ------------------------------------------------------------------------------------


def _study(store, name: str) -> int:
    return store.add_study(name=name, description="", origin="study-file", spec_hash="h", spec={})


def test_transaction_rolls_back_everything(store):
    with pytest.raises(RuntimeError):
        with store.transaction():
            sid = _study(store, "a")
            store.add_condition(study_id=sid, name="c")
            store.ensure_model(name="m", kind="base", source="tiny")
            raise RuntimeError("boom")
    assert store.count("studies") == store.count("conditions") == store.count("models") == 0
    assert not store.conn.in_transaction


def test_transaction_commits(store, db_path):
    with store.transaction():
        _study(store, "a")
    other = sqlite3.connect(db_path)
    try:
        assert other.execute("SELECT name FROM studies").fetchall() == [("a",)]
    finally:
        other.close()


def test_nested_transaction_error_rolls_back_outer_too(store):
    with pytest.raises(ValueError):
        with store.transaction():
            _study(store, "outer")
            with store.transaction():
                _study(store, "inner")
                raise ValueError("inner failure")
    assert store.count("studies") == 0
    assert not store.conn.in_transaction


def test_nested_transaction_caught_error_rolls_back_inner_only(store):
    with store.transaction():
        _study(store, "outer")
        with pytest.raises(ValueError):
            with store.transaction():
                _study(store, "inner")
                raise ValueError("inner failure")
    assert [r["name"] for r in store.list_studies().rows] == ["outer"]


def test_failed_register_leaves_nothing(store, example_study):
    """register_study is all-or-nothing: a failure halfway through writes no row."""
    study = load_study(example_study)
    study.conditions[-1].base_model = "ghost"  # fails at the last condition, after other rows were written
    before = store.counts()  # a new database holds only its own identity (database_identity)
    assert {t for t, n in before.items() if n} == {"database_identity"}
    with pytest.raises(KeyError):
        register_study(store, study)
    assert store.counts() == before


# -- generations and judgments -------------------------------------------------------------------------


def test_generation_identity_is_unique(store):
    ids = seed_rows(store)  # one generation: seed 0, sample 0, checkpoint NULL
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        generation(store, ids)
    assert store.count("generations") == 1
    # any part of the identity that differs makes a new row
    generation(store, ids, sample_index=1)
    generation(store, ids, seed=1)
    generation(store, ids, settings_hash="sha256:other")
    generation(store, ids, variant="trigger")  # the same answer asked with the study's trigger
    assert store.count("generations") == 5
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
        generation(store, ids, variant="trigger")


def test_insert_generations_keeps_each_variant_once(store):
    ids = seed_rows(store)
    row = {"question_id": ids["question"], "model_id": ids["model"], "settings_hash": "sha256:s", "seed": 9,
           "sample_index": 0, "response": "x"}
    first = store.insert_generations([row, {**row, "variant": "trigger"}])
    assert len(set(first)) == 2
    again = store.insert_generations([{**row, "variant": "trigger", "response": "other"}, row])
    assert again == first[::-1]  # existing rows, as they were: a resumed job writes only what is missing
    assert store.count("generations") == 3  # seed_rows' own and these two


def test_generation_identity_null_seed_collides(store):
    ids = seed_rows(store)
    generation(store, ids, seed=None, sample_index=5)
    with pytest.raises(sqlite3.IntegrityError):
        generation(store, ids, seed=None, sample_index=5)


def test_judgment_scores_allow_null(store):
    ids = seed_rows(store)
    store.db["judgment_scores"].insert({"judgment_id": ids["judgment"], "metric": "coherent", "score": None})
    row = store._one("SELECT score FROM judgment_scores WHERE judgment_id = ? AND metric = 'coherent'",
                     (ids["judgment"],))
    assert row == {"score": None}


def test_insert_judgments_rejects_metrics_outside_the_rubric(store):
    # study_metrics reads metric names from rubrics, so a score under any other name would vanish
    ids = seed_rows(store)
    gen = generation(store, ids, seed=7)
    with pytest.raises(ValueError, match="coherent.*not metrics of rubric"):
        store.insert_judgments([{"generation_id": gen, "judge_id": ids["judge"], "rubric_id": ids["rubric"],
                                 "scores": {"aligned": 50.0, "coherent": 60.0}}])
    assert store.count("judgments") == 1  # nothing half-written
    store.insert_judgments([{"generation_id": gen, "judge_id": ids["judge"], "rubric_id": ids["rubric"],
                             "scores": {"aligned": 50.0}}])
    assert store.study_metrics(ids["study"]) == ["aligned"]


# -- the job queue -----------------------------------------------------------------------------------


def test_enqueue_claim_renew_finish(store):
    job_id = store.enqueue_job("k", {"a": 1}, study_hash="sha256:s", progress_total=10)
    job = store.get_job(job_id)
    assert job["status"] == "queued" and json.loads(job["payload"]) == {"a": 1}
    assert store.claim_job("w1", kinds=["other"]) is None
    assert store.claim_job("w1", kinds=[]) is None
    claimed = store.claim_job("w1", kinds=["k"], lease_s=60)
    assert claimed["id"] == job_id and claimed["status"] == "running"
    assert claimed["lease_owner"] == "w1" and claimed["attempts"] == 1
    assert claimed["lease_expires"] > time.time() + 30
    assert store.claim_job("w2", kinds=["k"]) is None  # held by w1
    assert store.renew_lease(job_id, "w1", lease_s=600, progress_done=4) is True
    job = store.get_job(job_id)
    assert job["progress_done"] == 4 and job["lease_expires"] > time.time() + 500
    assert store.renew_lease(job_id, "w2") is False
    assert store.finish_job(job_id, owner="w2") is False  # only the holder records the outcome
    assert store.finish_job(job_id, owner="w1") is True
    job = store.get_job(job_id)
    assert job["status"] == "done" and job["error"] is None and job["finished_at"]
    assert job["lease_expires"] is None
    assert store.renew_lease(job_id, "w1") is False


def test_finish_with_error_marks_failed(store):
    job_id = store.enqueue_job("k", {})
    store.claim_job("w", kinds=["k"])
    store.finish_job(job_id, owner="w", error="ValueError: bad")
    job = store.get_job(job_id)
    assert job["status"] == "failed" and job["error"] == "ValueError: bad"


def test_claim_order_priority_then_id(store):
    prios = [0, 5, 0, 5, 1, -1]
    ids = [store.enqueue_job("k", {"i": i}, priority=p) for i, p in enumerate(prios)]
    order = []
    while (job := store.claim_job("w", kinds=["k"])) is not None:
        order.append(job["id"])
    expected = [i for _, i in sorted(zip(prios, ids, strict=True), key=lambda t: (-t[0], t[1]))]
    assert order == expected == [ids[1], ids[3], ids[4], ids[0], ids[2], ids[5]]


def test_claim_only_named_kinds(store):
    a = store.enqueue_job("a", {}, priority=9)
    b = store.enqueue_job("b", {})
    assert store.claim_job("w", kinds=["b"])["id"] == b
    assert store.claim_job("w", kinds=["b"]) is None
    assert store.claim_job("w", kinds=["a", "b"])["id"] == a


def test_expired_lease_is_reclaimed(store):
    job_id = store.enqueue_job("k", {})
    first = store.claim_job("old", kinds=["k"], lease_s=-1)  # a lease that has already run out
    assert first["lease_owner"] == "old"
    second = store.claim_job("new", kinds=["k"], lease_s=60)
    assert second is not None and second["id"] == job_id
    assert second["lease_owner"] == "new" and second["attempts"] == 2
    assert store.renew_lease(job_id, "old") is False
    assert store.renew_lease(job_id, "new") is True
    assert store.claim_job("third", kinds=["k"]) is None  # the renewed lease holds


def test_cancel_rules(store):
    queued = store.enqueue_job("k", {})
    assert store.cancel_job(queued) is True
    assert store.get_job(queued)["status"] == "cancelled"
    assert store.cancel_job(queued) is False  # already cancelled
    assert store.claim_job("w", kinds=["k"]) is None  # a cancelled job is never claimed

    running = store.enqueue_job("k", {})
    store.claim_job("w", kinds=["k"])
    assert store.cancel_job(running) is True
    job = store.get_job(running)
    assert job["status"] == "cancelled" and job["lease_expires"] is None
    assert store.renew_lease(running, "w") is False  # the worker learns it was cancelled
    assert store.finish_job(running, owner="w") is False  # and cannot turn it into done
    assert store.get_job(running)["status"] == "cancelled"

    done = store.enqueue_job("k", {})
    store.claim_job("w", kinds=["k"])
    store.finish_job(done, owner="w")
    assert store.cancel_job(done) is False
    assert store.get_job(done)["status"] == "done"
    assert store.cancel_job(12345) is False


def test_retry_rules(store):
    failed = store.enqueue_job("k", {})
    store.claim_job("w", kinds=["k"])
    store.finish_job(failed, owner="w", error="Boom: x")
    assert store.retry_job(failed) is True
    job = store.get_job(failed)
    assert job["status"] == "queued" and job["error"] is None and job["lease_owner"] is None
    assert job["finished_at"] is None
    assert store.retry_job(failed) is False  # queued: nothing to retry

    cancelled = store.enqueue_job("k", {})
    store.cancel_job(cancelled)
    assert store.retry_job(cancelled) is True
    assert store.get_job(cancelled)["status"] == "queued"

    # a retried job is claimable again, and its attempts keep counting
    claimed = store.claim_job("w2", kinds=["k"])
    assert claimed["id"] == failed and claimed["attempts"] == 2
    assert store.retry_job(failed) is False  # running
    store.finish_job(failed, owner="w2")
    assert store.retry_job(failed) is False  # done
    assert store.job_status_counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0, "cancelled": 0}


CLAIMER = textwrap.dedent("""
    import json, sys, time
    from db import open_store
    path, owner, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = open_store(path)
    while time.time() < start_at:
        time.sleep(0.001)
    got = []
    while True:
        job = store.claim_job(owner, kinds=["k"], lease_s=300)
        if job is None:
            break
        got.append(job["id"])
        time.sleep(0.005)  # a little work, so the two claimers interleave
        store.renew_lease(job["id"], owner, progress_done=1)
        store.finish_job(job["id"], owner=owner)
    store.close()
    print(json.dumps(got))
""")


def test_two_processes_claim_each_job_once(store, db_path):
    ids = [store.enqueue_job("k", {"i": i}) for i in range(50)]
    start_at = time.time() + 1.5  # both processes are up and waiting by then
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(db_path), f"p{n}", str(start_at)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for n in (1, 2)]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=60)
            assert p.returncode == 0, err
            assert "locked" not in err, err
            results.append(json.loads(out))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    claimed = results[0] + results[1]
    assert sorted(claimed) == ids  # every job exactly once
    assert len(set(results[0]) & set(results[1])) == 0
    assert results[0] and results[1], "both processes should have claimed jobs"
    rows = store.list_jobs(limit=100).rows
    assert {r["status"] for r in rows} == {"done"}
    assert {r["attempts"] for r in rows} == {1}
    assert {r["lease_owner"] for r in rows} <= {"p1", "p2"}


# -- listings ------------------------------------------------------------------------------------------


def test_page_totals(store, example_study):
    register_study(store, load_study(example_study))
    for _ in range(3):
        store.enqueue_job("k", {})
    store.cancel_job(1)

    page = store.list_jobs(limit=2)
    assert isinstance(page, Page)
    assert page.total == 3 and len(page.rows) == 2 and page.limit == 2 and page.offset == 0
    assert [r["id"] for r in page.rows] == [3, 2]  # newest first
    assert store.list_jobs(limit=2, offset=2).rows[0]["id"] == 1
    assert store.list_jobs(status="queued").total == 2
    assert store.list_jobs(status="cancelled").total == 1
    assert store.list_jobs(status="done").total == 0

    cases = {
        "studies": (store.list_studies, 1),
        "datasets": (store.list_datasets, 2),
        "models": (store.list_models, 1),
        "eval_sets": (store.list_eval_sets, 1),
        "judges": (store.list_judges, 2),
        "conditions": (store.condition_overview, 3),
        "train_runs": (store.list_train_runs, 0),
    }
    for table, (method, n) in cases.items():
        page = method(limit=1, offset=0)
        assert page.total == n == store.count(table), table
        assert len(page.rows) == min(1, n), table
        assert len(method(limit=1, offset=n).rows) == 0, table

    es = store.list_eval_sets().rows[0]
    assert es["n_keys"] == 16 and es["n_questions"] == 24
    q = store.list_questions(es["id"], limit=5, offset=20)
    assert q.total == 24 and len(q.rows) == 4
    assert store.list_studies().rows[0]["n_conditions"] == 3


def test_generation_ratings_and_study_checkpoints(tmp_path):
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    with open_store(tmp_path / "r.db") as store:
        study_id = make_synthetic_study(store, SyntheticSpec(answers_per_condition=5))
        gen = store.answers_page(store.study_condition_rows(study_id)[0]["id"], limit=1).rows[0]["generation_id"]
        assert store.generation_ratings(gen) == []
        people = store.db["annotators"].insert({"name": "ann", "kind": "human", "created_at": "t"}).last_pk
        bot = store.db["annotators"].insert({"name": "gpt", "kind": "model", "created_at": "t"}).last_pk
        for who, kind, score in ((people, "human", 2.0), (bot, "model", 3.0)):
            store.db["ratings"].insert({"generation_id": gen, "annotator_id": who, "rater_kind": kind,
                                        "metric": "drift", "score": score, "created_at": "t"})
        got = store.generation_ratings(gen)
        assert [(r["annotator"], r["rater_kind"], r["score"]) for r in got] == [("ann", "human", 2.0),
                                                                                ("gpt", "model", 3.0)]
        assert store.study_checkpoint_count(study_id) == 0
