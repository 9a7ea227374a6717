"""Judging through Bedrock batch inference (issue 14) for real: boto3's ``s3`` and ``bedrock`` clients signing and
sending to a server on 127.0.0.1 (tests/bedrock_batch_server.py) that stores the JSONL and runs the jobs. The
results are the rows an on-demand run writes; error records and unparsable replies are kept with their raw
text; a SIGKILLed job polls the same AWS job again; a failed AWS job is recorded; bad input is refused."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import insert_numbered_answers, point_aws_at
from db import open_store
from emtui.judges_view import judge_lines
from emtui.screens.judges import CallTotals, read_panel
from engine.judging.bedrock_batch import BatchError, BatchSettings, judge_batch
from engine.judging.panel import judge_panel
from engine.judging.queueing import queue_judging
from engine.runs.progress import JobCancelled, Progress
from engine.study.study_file import load_study, register_study

ROOT = Path(__file__).resolve().parents[1]
HAIKU, NOVA = "anthropic.claude-3-haiku-20240307-v1:0", "amazon.nova-pro-v1:0"
STUDY = "insecure-code-demo"
N_ANSWERS = 60   # two calls an answer (aligned, coherent): 120 records a judge, over Bedrock's minimum of 100
GARBAGE = "I will not put a number on this."
SETTINGS = BatchSettings(s3_uri="s3://emtui-batch-test/runs", role_arn="arn:aws:iam::123456789012:role/BedrockBatch",
                         poll_s=0.05)


def prompt_text(body: dict) -> str:
    return body["messages"][0]["content"][0]["text"]


def reply(model: str, body: dict) -> str:
    """A judge that reads the answer's number in the prompt (answer 3 gets a reply with no score)."""
    text = prompt_text(body)
    k = int(re.search(r"answer number (\d+)\.", text).group(1))
    if k == 3:
        return GARBAGE
    return str((k * 7) % 101 if "CODE" in text else (k * 13) % 101)


def haiku_errors(model: str, record_id: str, body: dict) -> bool:
    """Haiku's records of answer 5 come back as error records."""
    return model == HAIKU and "answer number 5." in prompt_text(body)


@pytest.fixture(scope="module")
def study_file(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("batch") / "study.db"
    with open_store(db) as store:
        register_study(store, load_study(ROOT / "data" / "studies" / "insecure_code.toml"))
        insert_numbered_answers(store, N_ANSWERS)
    return db


@pytest.fixture
def study_db(study_file, tmp_path) -> Path:
    path = tmp_path / "j.db"
    shutil.copy(study_file, path)
    return path


@pytest.fixture
def batch_server(monkeypatch, tmp_path):
    """``batch_server(**kwargs)``: a started BatchServer, with this test's AWS environment pointing at it."""
    from bedrock_batch_server import BatchServer

    started = []

    def start(**kwargs):
        server = BatchServer(**kwargs).start()
        started.append(server)
        point_aws_at(monkeypatch, tmp_path, AWS_ENDPOINT_URL_BEDROCK=server.url, AWS_ENDPOINT_URL_S3=server.url)
        return server

    yield start
    for server in started:
        server.close()


def run_batch(db: Path, **kwargs) -> dict:
    with open_store(db) as store:
        spec = queue_judging(store, study=STUDY, batch=SETTINGS, dry_run=True, **kwargs).spec
        return judge_batch(spec, SETTINGS, store=store)


def rows(db: Path) -> dict[tuple[int, str, str], dict]:
    """(answer, judge model, metric) -> the stored result, as both ways of judging write it."""
    with open_store(db) as store:
        found = store._q("""SELECT j.generation_id, jd.model, s.metric, s.score, s.raw, s.error, j.status,
                                   j.input_tokens, j.output_tokens
                            FROM judgment_scores s JOIN judgments j ON j.id = s.judgment_id
                            JOIN judges jd ON jd.id = j.judge_id""")
    return {(r.pop("generation_id"), r.pop("model"), r.pop("metric")): r for r in found}


def test_batch_results_are_the_rows_an_on_demand_run_writes(study_db, tmp_path, batch_server, converse_server):
    on_demand_db = tmp_path / "on-demand.db"
    shutil.copy(study_db, on_demand_db)
    server = batch_server(reply=reply, error_record=haiku_errors)
    result = run_batch(study_db)

    # one AWS job a judge, every record answered once, every request signed
    assert server.creates == 2 and len(server.jobs) == 2 and server.unsigned == 0
    assert len(server.processed) == N_ANSWERS * 4 and set(server.processed.values()) == {1}
    assert {j["modelId"]: j["modelInvocationType"] for j in server.jobs.values()} == {HAIKU: "InvokeModel",
                                                                                      NOVA: "InvokeModel"}
    got = rows(study_db)
    assert len(got) == N_ANSWERS * 4
    by_judge = {b["judge"]: b for b in result["batches"]}
    # failed: answer 5's error records and answer 3's unscored replies, two calls each
    assert by_judge["haiku"]["status"] == "Completed" and by_judge["haiku"]["failed"] == 4
    assert by_judge["nova-pro"]["judged"] == N_ANSWERS * 2 - 2 and by_judge["nova-pro"]["missing"] == 0
    # an error record: a failed judgment with AWS's error as its raw text
    failed = got[(6, HAIKU, "aligned")]  # answer number 5 is generation 6
    assert failed["score"] is None and failed["status"] == "failed"
    assert failed["error"].startswith("batch record error 400: Malformed input request")
    assert json.loads(failed["raw"])["errorCode"] == 400
    # a reply with no score: its text and the parser's error kept, never a -1
    garbage = got[(4, NOVA, "coherent")]
    assert garbage["score"] is None and garbage["raw"] == GARBAGE and garbage["error"]
    assert all(r["score"] is None or r["score"] >= 0 for r in got.values())

    # the same answers judged on demand (Converse) land as the same rows: keys, scores, raw text, tokens
    converse_server(reply=reply)
    with open_store(on_demand_db) as store:
        spec = queue_judging(store, study=STUDY, dry_run=True).spec
        asyncio.run(judge_panel(dataclasses.replace(spec, generation_ids=(2, 3, 4, 5)), store=store))
    on_demand = rows(on_demand_db)
    assert len(on_demand) == 16 and on_demand == {k: got[k] for k in on_demand}

    # each record logged once at the batch price: half the on-demand price
    with open_store(study_db) as store:
        calls = store._q("SELECT outcome, input_tokens, output_tokens, cost_usd FROM judge_calls k JOIN judges j "
                         "ON j.id = k.judge_id WHERE j.model = ?", (HAIKU,))
    assert len(calls) == N_ANSWERS * 2 and sum(c["outcome"] == "failed" for c in calls) == 2
    ok = next(c for c in calls if c["outcome"] == "ok")
    assert ok["cost_usd"] == pytest.approx((ok["input_tokens"] * 0.25 + ok["output_tokens"] * 1.25) / 1e6 / 2)

    # nothing left: a second run submits nothing
    again = run_batch(study_db)
    assert again["batches"] == [] and server.creates == 2 and set(server.processed.values()) == {1}


def test_a_sigkilled_batch_job_polls_the_same_aws_job_and_never_submits_twice(study_db, batch_server):
    server = batch_server(reply=reply, run_delay_s=2.5)
    with open_store(study_db) as store:
        job_id = queue_judging(store, study=STUDY, judges=["haiku"], batch=dataclasses.replace(SETTINGS, poll_s=0.1)
                               ).job_id
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    worker = subprocess.Popen([sys.executable, "-m", "emtui", "worker", "--db", str(study_db), "--once"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        killed = False
        with open_store(study_db) as store:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and worker.poll() is None:
                child = store.get_job(job_id)["child_pid"]
                batches = store.open_judge_batches(1, 1, 1)
                if child and batches and batches[0]["arn"]:  # submitted, AWS still running it
                    os.kill(int(child), signal.SIGKILL)
                    killed = True
                    break
                time.sleep(0.02)
        assert killed and server.creates == 1 and not server.processed
        with open_store(study_db) as store:  # its keys are on their way: an on-demand run would send none of them
            assert store.pending_judge_count(1, 1, 1, "aligned") == store.pending_judge_count(1, 1, 1, "coherent") == 0
        out, _ = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, out
    with open_store(study_db) as store:
        job = store.get_job(job_id)
        assert job["kind"] == "judge-batch" and job["status"] == "done" and job["attempts"] == 2, (job["error"], out)
        batch = store.get_judge_batch(1)
    assert batch["status"] == "Completed" and batch["ingested"] == 1 and batch["processed"] == N_ANSWERS * 2
    assert server.creates == 1 and len(server.jobs) == 1  # polled again, not submitted again
    assert len(server.processed) == N_ANSWERS * 2 and set(server.processed.values()) == {1}
    assert len(rows(study_db)) == N_ANSWERS * 2


def test_a_failed_aws_job_is_recorded_with_its_message_and_its_keys_are_pending_again(study_db, batch_server):
    server = batch_server(reply=reply, fail_jobs=1)
    with pytest.raises(BatchError, match=r"judge haiku: Bedrock batch job arn:aws:bedrock:.* Failed: The service "
                                         r"role cannot read .* \(0 of 120 records judged"):
        run_batch(study_db, judges=["haiku"])
    with open_store(study_db) as store:
        batch = store.get_judge_batch(1)
        assert batch["status"] == "Failed" and "Access Denied" in batch["message"] and batch["ingested"] == 1
        assert store.pending_judge_count(1, 1, 1, "aligned") == N_ANSWERS
    assert rows(study_db) == {}
    # a job AWS refuses to create (here: fewer records than its minimum) is recorded, its keys pending again
    server.min_records = 500
    with pytest.raises(BatchError, match=r"judge haiku: bedrock create_model_invocation_job \(us-east-1, endpoint "
                                         r"http://127.0.0.1:\d+\): ValidationException: The number of records"):
        run_batch(study_db, judges=["haiku"])
    with open_store(study_db) as store:
        assert store.get_judge_batch(2)["status"] == "Refused" and store.get_judge_batch(2)["ingested"] == 1
        assert store.pending_judge_count(1, 1, 1, "coherent") == N_ANSWERS
    server.min_records = 100
    run_batch(study_db, judges=["haiku"])  # a later run submits them again
    assert server.creates == 3 and len(server.jobs) == 2 and len(rows(study_db)) == N_ANSWERS * 2


def test_cancelling_stops_the_aws_job_and_the_next_run_reads_it_back_stopped(study_db, batch_server):
    server = batch_server(reply=reply, run_delay_s=30)

    class CancelOnceSubmitted(Progress):
        def cancelled(self) -> bool:
            return bool(server.jobs)

    with open_store(study_db) as store:
        spec = queue_judging(store, study=STUDY, judges=["haiku"], batch=SETTINGS, dry_run=True).spec
        with pytest.raises(JobCancelled):
            judge_batch(spec, SETTINGS, store=store, progress=CancelOnceSubmitted(), job_id=None)
        batch = store.get_judge_batch(1)
        assert server.operations["StopModelInvocationJob"] == 1 and batch["stop_asked"] == 1
        assert batch["status"] == "Stopping" and batch["ingested"] == 0
        # the Judges screen's line for haiku: its open batch, first
        row = read_panel(store, CallTotals(), 50, 0).rows[0]
        assert row["name"] == "haiku" and row["state"] == "batch"
        job_id = next(iter(server.jobs))
        assert f"batch job {job_id}: Stopping, 0 of 120 · " in judge_lines(row).plain
        # the next run polls it to Stopped (asked for: no error), reads what it did (nothing), frees its keys
        result = judge_batch(spec, SETTINGS, store=store)
        assert [b["status"] for b in result["batches"]] == ["Stopped"] and server.creates == 1
        assert store.pending_judge_count(1, 1, 1, "aligned") == N_ANSWERS
        assert "last batch job" in judge_lines(read_panel(store, CallTotals(), 50, 0).rows[0]).plain


def test_the_cli_says_what_a_batch_would_cost_and_refuses_bad_input_in_one_line(study_db, run_cli, batch_server):
    batch_server()
    base = ["judge", "--db", str(study_db), "--study", STUDY, "--batch"]
    good = ["--s3", "s3://emtui-batch-test/runs", "--role-arn", "arn:aws:iam::123456789012:role/BedrockBatch"]
    r = run_cli(*base, *good, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "would send 240 records to Bedrock batch inference (haiku 120, nova-pro 120); estimated batch cost at " \
           "most $" in r.stdout
    with open_store(study_db) as store:  # haiku has judged all but 20 answers: 40 calls, under the minimum
        store.record_judge_results([{"generation_id": g, "judge_id": 1, "rubric_id": 1, "metric": m, "score": 1.0}
                                    for g in range(1, 41) for m in ("aligned", "coherent")])
    before = study_db.read_bytes()
    for args, words in (([*good, "--judge", "haiku"], "judge 'haiku' has 40 calls to make: a Bedrock batch job "
                                                       "takes at least 100 records; judge them on demand"),
                        (["--s3", "emtui-batch-test/runs", "--role-arn", good[3]], "is not an S3 location"),
                        (good[:2], "batch inference needs --role-arn")):
        r = run_cli(*base, *args)
        assert r.returncode == 2 and words in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert study_db.read_bytes() == before


def test_each_family_gets_its_own_body_and_its_reply_is_read_back():
    from bedrock_batch_server import model_output
    from engine.judging.backend import Call
    from engine.judging.batch_records import invocation_type, model_input, parse_record_id, record_id, reply_from_output

    call = Call(prompt="Rate this.", max_tokens=5, temperature=0.0, system="You are a judge.")
    llama = "us.meta.llama3-3-70b-instruct-v1:0"
    assert [invocation_type(m) for m in (HAIKU, "us." + NOVA, llama)] == ["InvokeModel", "InvokeModel", "Converse"]
    assert model_input(HAIKU, call) == {
        "anthropic_version": "bedrock-2023-05-31", "max_tokens": 5, "temperature": 0.0, "system": "You are a judge.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Rate this."}]}]}
    assert model_input(NOVA, call) == {
        "schemaVersion": "messages-v1", "messages": [{"role": "user", "content": [{"text": "Rate this."}]}],
        "inferenceConfig": {"maxTokens": 5, "temperature": 0.0}, "system": [{"text": "You are a judge."}]}
    assert "schemaVersion" not in model_input(llama, call) and model_input(llama, call)["system"] == [
        {"text": "You are a judge."}]
    for model, converse in ((HAIKU, False), (NOVA, False), (llama, True)):
        reply = reply_from_output(model, model_output(model, converse, "42", 7, 1))
        assert (reply.text, reply.input_tokens, reply.output_tokens, reply.stop_reason) == ("42", 7, 1, "end_turn")
    with pytest.raises(ValueError, match="no content list: not anthropic's reply shape"):
        reply_from_output(HAIKU, {"output": {}})
    assert parse_record_id(record_id(12, 3, 4, 1)) == (12, 3, 4, 1) and parse_record_id("g1j2") is None
