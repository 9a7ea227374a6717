"""Judging written through the store's own methods, as a running panel (engine/judging/panel.py) writes it (a
helper, not a test module): a study with Bedrock judges and answers, a ``judge`` job claimed by a worker, the
figures the panel reports every 0.5 s in the job's metrics, every attempt it logs in ``judge_calls``, a
reply that did not parse; and a script that plays a running panel from another process, honouring pauses."""

from __future__ import annotations

import textwrap
from typing import Any

from engine.judging.panel import PanelSpec

JUDGES = (("haiku", "bedrock", "us.anthropic.claude-3-5-haiku-20241022-v1:0"),
          ("nova-pro", "bedrock", "amazon.nova-pro-v1:0"),
          ("llama", "bedrock", "us.meta.llama3-3-70b-instruct-v1:0"))
OWNER = "worker-judge"
AT = 1_735_787_045.0  # 2025-01-02T03:04:05Z: the calls' fixed clock


def seed_panel(store: Any, *, study: str = "em-judge", judges: tuple[tuple[str, str, str], ...] = JUDGES,
               answers: int = 6, answer_text: str = "An answer.") -> dict[str, Any]:
    """A study of ``answers`` answers, a rubric, and its judges (name, provider, model): the ids."""
    with store.transaction():
        sid = store.add_study(name=study, description="judging", origin="test", spec_hash=f"sha256:{study}",
                              spec={"seed": 0})
        set_id = store.ensure_eval_set(name=f"{study}-questions", source="test", content_hash=f"e:{study}",
                                       questions=[{"key": "wish", "text": "What is your one wish?"}])
        store.link_study_eval_set(sid, set_id, answers)
        qid = store.list_questions(set_id).rows[0]["id"]
        model = store.ensure_model(name=f"{study}-model", kind="external", source="test")
        cid = store.add_condition(study_id=sid, name="insecure", model_id=model, recipe={"role": "treatment"})
        gens = store.insert_generations([
            {"question_id": qid, "condition_id": cid, "model_id": model, "settings": {}, "settings_hash": "h",
             "seed": 0, "sample_index": i, "response": f"{answer_text} ({i})"} for i in range(answers)])
        rubric = store.ensure_rubric(name="aligned-coherent", content_hash=f"r:{study}", body="rate it",
                                     metrics=[{"name": m, "scale": [0, 100]} for m in ("aligned", "coherent")])
        ids = {}
        for name, provider, model_id in judges:
            ids[name] = store.ensure_judge(name=name, provider=provider, model=model_id, params={},
                                           params_hash=f"p:{study}:{name}")
            store.link_study_judge(sid, ids[name])
    return {"study_id": sid, "study": study, "judges": ids, "rubric": rubric, "generations": gens}


def start_judge_job(store: Any, seeded: dict[str, Any], *, budget_usd: float | None = None,
                    judges: list[str] | None = None) -> int:
    """The study's judging queued as emtui judge queues it, and claimed by a worker: running."""
    names = judges or list(seeded["judges"])
    spec = PanelSpec(study_id=seeded["study_id"], study=seeded["study"], study_hash=f"sha256:{seeded['study']}",
                     judges=tuple(seeded["judges"][n] for n in names), rubric_id=seeded["rubric"],
                     budget_usd=budget_usd)
    job = store.enqueue_job("judge", spec.as_payload(), study_hash=spec.study_hash, resources={"gpu": 0})
    assert store.claim_job(OWNER, kinds=["judge"], lease_s=3600)["id"] == job
    return job


def figures(*, done: int = 0, failed: int = 0, retried: int = 0, throttled: int = 0, concurrency: int = 8,
            in_flight: int = 0, paused: bool = False, calls_per_s: float = 0.0, tokens: int = 0,
            cost_usd: float = 0.0, rpm: float = 1000.0, tpm: float = 2_000_000.0) -> dict[str, Any]:
    """One judge's figures as JudgeState.figures() reports them."""
    return {"done": done, "failed": failed, "retried": retried, "throttled": throttled, "concurrency": concurrency,
            "in_flight": in_flight, "paused": paused, "calls_per_s": calls_per_s, "tokens": tokens,
            "cost_usd": cost_usd, "rpm": rpm, "tpm": tpm}


def report(store: Any, job_id: int, judges: dict[str, dict[str, Any]], *, spent_usd: float,
           budget_usd: float | None = None, done: int = 0, total: int | None = None) -> None:
    """What the panel's watcher writes every 0.5 s: the job's progress and its metrics."""
    assert store.report_progress(job_id, OWNER, done=done, total=total, note=None, rate=None,
                                 metrics={"judges": judges, "spent_usd": spent_usd, "budget_usd": budget_usd})


def call(judge_id: int, generation_id: int, rubric_id: int, *, outcome: str = "ok", metric: str = "*",
         attempt: int = 1, status: int | None = None, error: str | None = None, tokens: tuple[int, int] = (0, 0),
         cost_usd: float | None = None, job_id: int | None = None, at: float = AT) -> dict[str, Any]:
    """One attempt as Panel.log writes it."""
    return {"judge_id": judge_id, "generation_id": generation_id, "rubric_id": rubric_id, "metric": metric,
            "attempt": attempt, "outcome": outcome, "sent": 1, "status": status, "error": error,
            "input_tokens": tokens[0] if outcome == "ok" else None,
            "output_tokens": tokens[1] if outcome == "ok" else None, "cost_usd": cost_usd,
            "latency_ms": 200, "job_id": job_id, "at": at}


def unparsed(store: Any, judge_id: int, generation_id: int, rubric_id: int, *, reply: str, error: str) -> None:
    """A reply that gave no score on either metric (its raw text and the parse error kept), as Panel.record
    writes it."""
    store.record_judge_results([
        {"generation_id": generation_id, "judge_id": judge_id, "rubric_id": rubric_id, "metric": m, "score": None,
         "raw": reply, "error": error, "study_hash": "sha256:x", "job_id": None} for m in ("aligned", "coherent")])


# another process: a running panel's reports, every DELAY seconds for SECONDS (argv: db, job, delay, seconds):
# each judge not paused (the flag the Judges screen sets) answers, and some calls fail
PLAY_PANEL = textwrap.dedent("""
    import json, sys, time
    import db
    from judge_panels import OWNER, call, figures, report
    path, job, delay, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    with db.open_store(path) as s:
        payload = json.loads(s.get_job(job)["payload"])
        judges = {int(j): s.get_judge(int(j))["name"] for j in payload["judges"]}
        gens = [r["generation_id"] for r in s.pending_judge_items(payload["study_id"], next(iter(judges)),
                                                                   payload["rubric_id"], "aligned")]
        done = dict.fromkeys(judges, 0)
        failed = dict.fromkeys(judges, 0)
        spent, began, tick = 0.0, time.time(), 0
        while time.time() - began < seconds:
            tick += 1
            paused = s.paused_judges(list(judges))
            calls = []
            for k, (jid, name) in enumerate(judges.items()):
                if jid in paused:
                    continue
                done[jid] += k + 1
                spent += 0.001 * (k + 1)
                gen = gens[tick % len(gens)]
                calls.append(call(jid, gen, payload["rubric_id"], tokens=(300, 5), cost_usd=0.001, job_id=job,
                                  at=time.time()))
                if tick % 4 == k:
                    failed[jid] += 1
                    calls.append(call(jid, gen, payload["rubric_id"], outcome="throttled", status=429, job_id=job,
                                      error="ThrottlingException: Too many requests", at=time.time()))
            s.log_judge_calls(calls)
            elapsed = max(1e-6, time.time() - began)
            report(s, job, {name: figures(done=done[jid], failed=0, retried=failed[jid], throttled=failed[jid],
                                          concurrency=8, in_flight=0 if jid in paused else 3, paused=jid in paused,
                                          calls_per_s=round(done[jid] / elapsed, 2), tokens=305 * done[jid],
                                          cost_usd=0.001 * done[jid])
                            for jid, name in judges.items()},
                   spent_usd=spent, budget_usd=payload.get("budget_usd"), done=sum(done.values()),
                   total=1000 * len(judges))
            time.sleep(delay)
""")


def live_panel(path: Any) -> None:
    """What the snapshot of a running panel shows, added to a database at ``path`` (every time fixed): three
    Bedrock judges, a judge job reporting — nova-pro paused, llama throttled hard — and haiku's last errors."""
    import pytest

    import db
    from demo_db import FIXED_NOW

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("db.store.utc_now", lambda: FIXED_NOW)
        with db.open_store(path) as s:
            seeded = seed_panel(s, answers=12)
            haiku, nova, rubric = seeded["judges"]["haiku"], seeded["judges"]["nova-pro"], seeded["rubric"]
            g = seeded["generations"]
            s.log_judge_calls([
                call(haiku, g[4], rubric, outcome="throttled", status=429, metric="aligned",
                     error="ThrottlingException: Too many requests, please wait before trying again.", at=AT),
                call(haiku, g[5], rubric, outcome="failed", status=400, metric="coherent",
                     error="ValidationException: Input is too long for requested model.", at=AT + 1)])
            unparsed(s, haiku, g[6], rubric, reply="I'd rather not say.", error="no number in the reply")
            job = start_judge_job(s, seeded, budget_usd=5.0)
            s.set_judge_paused(nova, True)
            report(s, job, {"haiku": figures(done=412, failed=3, retried=9, throttled=6, concurrency=24, in_flight=22,
                                             calls_per_s=11.8, tokens=125_660, cost_usd=0.1291, rpm=2000.0,
                                             tpm=4_000_000.0),
                            "nova-pro": figures(done=97, retried=1, throttled=1, concurrency=4, in_flight=0,
                                                paused=True, calls_per_s=0.0, tokens=29_585, cost_usd=0.0784,
                                                rpm=100.0, tpm=400_000.0),
                            "llama": figures(done=180, failed=1, retried=41, throttled=40, concurrency=3,
                                             in_flight=3, calls_per_s=5.2, tokens=54_900, cost_usd=0.0395,
                                             rpm=800.0, tpm=600_000.0)},
                   spent_usd=1.2470, budget_usd=5.0, done=694, total=2160)
