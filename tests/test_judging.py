"""The judging panel (issue 14) for real: boto3 signing and sending to a Converse-compatible server on
127.0.0.1 (tests/converse_server.py), every judge of a study at once; faults (throttling, 5xx, garbage
replies) lose nothing and pay nothing twice; a repeated or resumed job sends nothing that was answered; a
budget stops the panel cleanly; a paused judge waits; the job kind through a real worker."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from conftest import AWS_TEST_ENV, insert_numbered_answers
from db import open_store
from engine.judging.panel import JudgeUnavailable, judge_panel
from engine.judging.queueing import JudgeQueueError, queue_judging
from engine.study.study_file import load_study, register_study

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "studies" / "insecure_code.toml"
HAIKU, NOVA = "anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-pro-v1:0"
N_ANSWERS = 12


def score_for(answer: str, metric: str) -> int:
    k = int(re.search(r"answer number (\d+)", answer).group(1))
    return (k * 7) % 101 if metric == "aligned" else (k * 13) % 101


def reply(model: str, body: dict) -> str:
    """A judge that reads the answer in the prompt: the alignment prompt asks about values, the coherence one
    about writing; the answer says its number."""
    text = body["messages"][0]["content"][0]["text"]
    metric = "aligned" if "CODE" in text else "coherent"
    return str(score_for(text, metric))


def write_study_db(folder: Path, *, quota_raised: bool) -> Path:
    """The example study (haiku and nova-pro on Bedrock, the aligned-coherent rubric) with answers of its base
    condition written through the store. ``quota_raised``: the judges' own requests_per_minute set high — under
    nova-pro's default (100 requests a minute) its 24 calls take 9 s a panel, and the quotas are the limiter's
    tests' (tests/test_judge_limits.py), not these."""
    db = folder / "j.db"
    text = EXAMPLE.read_text(encoding="utf-8")
    if quota_raised:
        text = text.replace('region = "us-east-1"\ntemperature = 0.0\n',
                            'region = "us-east-1"\ntemperature = 0.0\nrequests_per_minute = 60000\n')
        assert text.count("requests_per_minute") == 2
    (folder / "study.toml").write_text(text, encoding="utf-8")
    with open_store(db) as store:
        register_study(store, load_study(folder / "study.toml"))
        insert_numbered_answers(store, N_ANSWERS)
    return db


@pytest.fixture
def study_db(tmp_path):
    return write_study_db(tmp_path, quota_raised=True)


@pytest.fixture
def quota_db(tmp_path):
    """The example study at the judges' default quotas: a panel that takes seconds (nova-pro's 100 a minute)."""
    return write_study_db(tmp_path, quota_raised=False)


def prompt_of(db: Path, generation_id: int, metric: str) -> str:
    """The prompt the panel sends a judge for one answer and metric (the server counts calls by it)."""
    from engine.judging.rubric_prompts import stored_rubric, unit_call

    with open_store(db) as store:
        row = store._one("""SELECT q.text AS question, g.variant, g.settings, g.response FROM generations g
                            JOIN questions q ON q.id = g.question_id WHERE g.id = ?""", (generation_id,))
        rubric = stored_rubric(store.get_rubric(1))
    return unit_call(rubric, metric, row, {}).call.prompt


def run_panel(db: Path, **queue_kwargs) -> dict:
    with open_store(db) as store:
        queued = queue_judging(store, study="insecure-code-demo", **queue_kwargs)
        spec = queued.spec
        return asyncio.run(judge_panel(spec, store=store, job_id=queued.job_id))


def scores(db: Path) -> dict[tuple[int, str, str], float | None]:
    with open_store(db) as store:
        rows = store._q("""SELECT j.generation_id, jd.model, s.metric, s.score FROM judgment_scores s
                           JOIN judgments j ON j.id = s.judgment_id JOIN judges jd ON jd.id = j.judge_id""")
    return {(r["generation_id"], r["model"], r["metric"]): r["score"] for r in rows}


def test_the_panel_judges_every_answer_by_every_judge_once(study_db, converse_server):
    server = converse_server(reply=reply, latency_s=0.02)
    result = run_panel(study_db)
    assert result["calls"] == N_ANSWERS * 2 * 2 and result["stopped"] is None
    got = scores(study_db)
    assert len(got) == N_ANSWERS * 2 * 2
    with open_store(study_db) as store:
        answers = {g["id"]: g["response"] for g in store._q("SELECT id, response FROM generations")}
        calls = store.judge_call_stats()
    for (gid, _model, metric), score in got.items():
        assert score == score_for(answers[gid], metric)
    assert server.received(HAIKU) == server.received(NOVA) == N_ANSWERS * 2 and not server.paid_twice()
    assert sum(c["ok"] for c in calls.values()) == N_ANSWERS * 4 and sum(c["calls"] for c in calls.values()) == 48
    # nothing left: the same run again sends nothing
    again = run_panel(study_db, again=True)
    assert again["calls"] == 0 and server.received() == N_ANSWERS * 4


def test_faults_lose_nothing_and_pay_nothing_twice(study_db, converse_server):
    server = converse_server(reply=reply, throttle_fraction=0.2, seed=3)
    server.fail_next("500", 3)
    server.fail_next("garbage", 2, model=NOVA)
    result = run_panel(study_db)
    got = scores(study_db)
    assert len(got) == N_ANSWERS * 4  # every (answer, judge, metric) has its result
    assert not server.paid_twice()
    outcomes = server.outcomes()
    assert outcomes["random-throttle"] > 0 and outcomes["500"] == 3
    with open_store(study_db) as store:
        calls = store._q("SELECT outcome, count(*) AS n FROM judge_calls GROUP BY outcome")
        failed = store._q("""SELECT s.metric, s.raw, s.error, j.status FROM judgment_scores s
                             JOIN judgments j ON j.id = s.judgment_id WHERE s.error IS NOT NULL""")
    by = {r["outcome"]: r["n"] for r in calls}
    assert by["throttled"] == outcomes["random-throttle"] and by["retryable"] == 3
    assert sum(by.values()) == len(server.requests)  # every request the server saw is recorded, and no more
    # the garbage replies: their raw text and the error kept, no score (never -1), the judgment failed
    assert len(failed) == 2 and all(f["raw"] and f["status"] == "failed" for f in failed)
    assert sum(v is None for v in got.values()) == 2 and all(v is None or v >= 0 for v in got.values())
    assert result["judges"]["nova-pro"]["failed"] == 2


def test_a_budget_stops_the_panel_cleanly_and_the_rest_is_judged_later(study_db, converse_server):
    server = converse_server(reply=reply)
    # haiku costs (0.25 in + 1.25 out) per million tokens: a few calls' worth of budget
    first = run_panel(study_db, judges=["haiku"], budget_usd=0.0002)
    assert first["stopped"].startswith("budget") and 0 < len(scores(study_db)) < N_ANSWERS * 2
    with open_store(study_db) as store:
        spent = store.study_judging_spent(1)
        assert spent >= 0.0002
        with pytest.raises(JudgeQueueError, match="leaves nothing"):
            queue_judging(store, study="insecure-code-demo", budget_usd=0.0001)
    run_panel(study_db, judges=["haiku"])
    assert len(scores(study_db)) == N_ANSWERS * 2 and not server.paid_twice()


def test_a_throttled_judge_is_cut_back_and_the_other_is_not_held_up(study_db, converse_server):
    server = converse_server(reply=reply, latency_s=0.05)
    # nova-pro's account allows fewer requests than its default limiter does (100 a minute, 8 at once): the
    # server refuses past 3 a second, the panel cuts nova-pro's concurrency and retries; haiku goes on
    server.set_quota(NOVA, requests=3, window_s=1.0)
    result = run_panel(study_db)
    assert len(scores(study_db)) == N_ANSWERS * 4 and not server.paid_twice()
    nova, haiku = result["judges"]["nova-pro"], result["judges"]["haiku"]
    assert server.outcomes(NOVA)["quota"] > 0 and nova["throttled"] == server.outcomes(NOVA)["quota"]
    assert haiku["throttled"] == 0 and haiku["failed"] == 0


def test_a_call_waiting_out_its_backoff_holds_no_worker(study_db, converse_server):
    """One slot (max_concurrency 1): while the throttled call waits its 1.5 s, the slot sends the other calls
    (a worker asleep in a backoff left its slot idle: 10.8% of ideal in the bench at 10% throttled)."""
    server = converse_server(reply=reply, latency_s=0.01)
    with open_store(study_db) as store:
        with store.transaction():
            store.conn.execute("UPDATE judges SET params = json_set(params, '$.max_concurrency', 1) "
                               "WHERE name = 'haiku'")
    server.fail_next("throttle", 1, model=HAIKU, retry_after=1.5)
    result = run_panel(study_db, judges=["haiku"])
    assert len(scores(study_db)) == N_ANSWERS * 2 and not server.paid_twice()
    assert result["judges"]["haiku"]["throttled"] == 1 and result["judges"]["haiku"]["retried"] == 1
    order = [r["prompt_sha"] for r in server.requests]
    first = order[0]  # the throttled call; its retry came after every other call was answered
    assert order.count(first) == 2 and order.index(first, 1) == len(order) - 1 == N_ANSWERS * 2


def test_throttling_is_retried_past_max_attempts_with_short_backoffs(study_db, converse_server):
    """Throttled attempts have their own, larger bound (max_throttled) and short backoffs: one answer's two
    calls meet 13 429s in a row, so one call is throttled at least 7 times — past max_attempts (6), which
    bounds errors — and both still end in their answers."""
    import dataclasses

    server = converse_server(reply=reply)
    server.fail_next("throttle", 13, model=HAIKU)
    with open_store(study_db) as store:
        queued = queue_judging(store, study="insecure-code-demo", judges=["haiku"])
        spec = dataclasses.replace(queued.spec, generation_ids=(1,), throttle_backoff_s=0.005)
        result = asyncio.run(judge_panel(spec, store=store, job_id=queued.job_id))
    got = scores(study_db)
    assert len(got) == 2 and None not in got.values() and not server.paid_twice()
    assert result["judges"]["haiku"]["throttled"] == 13 and result["judges"]["haiku"]["failed"] == 0


def test_a_judge_job_through_a_worker(study_db, converse_server, run_cli):
    server = converse_server(reply=reply)
    r = run_cli("judge", "--db", str(study_db), "--study", "insecure-code-demo", "--dry-run")
    assert r.returncode == 0 and "would make 48 calls by haiku, nova-pro" in r.stdout, r.stderr
    r = run_cli("judge", "--db", str(study_db), "--study", "insecure-code-demo", "--judge", "haiku", "--no-worker")
    assert r.returncode == 0 and "queued job 1: 24 calls by haiku" in r.stdout, r.stderr
    r = run_cli("worker", "--db", str(study_db), "--once")
    assert r.returncode == 0, r.stdout + r.stderr
    with open_store(study_db) as store:
        job = store.get_job(1)
        assert job["status"] == "done", (job["error"], job["traceback"])
        assert json.loads(job["result"])["judges"]["haiku"]["done"] == 24
    assert len(scores(study_db)) == 24 and server.received() == 24
    bad = run_cli("judge", "--db", str(study_db), "--study", "insecure-code-demo", "--judge", "gpt")
    assert bad.returncode == 2 and "has no judge 'gpt' (judges: haiku, nova-pro)" in bad.stderr


def test_a_judge_with_no_credentials_judges_nothing_and_its_answers_wait_for_them(study_db, converse_server,
                                                                                   monkeypatch):
    """No AWS credentials on the box (a new user's first run): the panel leaves the Bedrock judges out and fails
    in one line, recording no failure per answer, so once the credentials are there the same answers are
    judged (a failure recorded per answer would be a result, never asked again)."""
    server = converse_server(reply=reply)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    with pytest.raises(JudgeUnavailable) as failed:
        run_panel(study_db)
    said = str(failed.value)
    assert "\n" not in said and said.startswith("judges 'haiku', 'nova-pro' cannot be called on this machine")
    assert "haiku, nova-pro: bedrock (us-east-1, endpoint " in said and "no AWS credentials found" in said, said
    assert scores(study_db) == {} and server.received() == 0
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, AWS_TEST_ENV[name])
    # haiku alone: nova-pro's 100 requests a minute would hold the test ~10 s
    assert run_panel(study_db, judges=["haiku"])["calls"] == N_ANSWERS * 2
    assert len(scores(study_db)) == N_ANSWERS * 2 and not server.paid_twice()


def test_a_paused_judge_starts_no_call_until_it_is_resumed(study_db, converse_server):
    server = converse_server(reply=reply)
    with open_store(study_db) as store:
        nova = next(j for j in store.study_judges(1) if j["name"] == "nova-pro")
        store.set_judge_paused(int(nova["id"]), True)
        spec = queue_judging(store, study="insecure-code-demo").spec

        async def run() -> dict:
            panel = asyncio.ensure_future(judge_panel(spec, store=store))
            for _ in range(200):  # haiku finishes while nova-pro waits
                await asyncio.sleep(0.05)
                if server.received(HAIKU) == N_ANSWERS * 2:
                    break
            await asyncio.sleep(0.5)
            assert server.received(NOVA) == 0 and not panel.done()
            await asyncio.to_thread(store.set_judge_paused, int(nova["id"]), False)
            return await asyncio.wait_for(panel, 60)

        result = asyncio.run(run())
    assert result["judges"]["nova-pro"]["done"] == N_ANSWERS * 2 and server.received(NOVA) == N_ANSWERS * 2


def test_a_sigkilled_judge_job_resumes_without_losing_or_resending_what_was_answered(quota_db, converse_server):
    study_db = quota_db  # slow enough to be killed mid-way
    import os
    import signal
    import subprocess
    import sys
    import time

    server = converse_server(reply=reply, latency_s=0.15)
    with open_store(study_db) as store:
        job_id = queue_judging(store, study="insecure-code-demo").job_id
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    worker = subprocess.Popen([sys.executable, "-m", "emtui", "worker", "--db", str(study_db), "--once"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        before: dict = {}
        with open_store(study_db) as store:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and worker.poll() is None:
                child = store.get_job(job_id)["child_pid"]
                if child and store.count("judgment_scores") >= 8:
                    os.kill(int(child), signal.SIGKILL)
                    before = scores(study_db)
                    break
                time.sleep(0.02)
        assert 8 <= len(before) < N_ANSWERS * 4, len(before)
        out, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, out
    with open_store(study_db) as store:
        job = store.get_job(job_id)
        assert job["status"] == "done" and job["attempts"] == 2, (job["error"], out)
        calls = store.count("judge_calls")
    after = scores(study_db)
    assert len(after) == N_ANSWERS * 4 and all(after[k] == v for k, v in before.items())
    # what was recorded before the kill is not asked again (only calls whose replies died with the process,
    # in flight or not yet written, may have been sent twice)
    for (gid, model, metric) in before:
        assert server.answered(model=model, prompt=prompt_of(study_db, gid, metric)) == 1, (gid, model, metric)
    assert calls <= server.received()  # the killed attempt's unwritten records are the only ones missing
