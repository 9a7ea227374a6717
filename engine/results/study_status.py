"""Where a study stands in its chain (``emtui status STUDY``, the Studies screen): per condition, its training,
answers and judge results against what the chain plans, failures with their commonest reason; the chain's jobs;
what judging cost so far. Plain JSON (see :data:`STATUS_VERSION` and README "Running a whole study").

Counts:
- ``answers.planned``: what the study's newest ``generate`` job makes for the condition (its models and
  checkpoints times every wording, sample and variant), else what one would with the study's defaults.
- ``judgments[judge]``: one result per answer and rubric metric — ``done`` (a score or a recorded failure) of
  ``planned`` (the planned answers, or the stored ones when more, times the metrics), ``failed`` (no score:
  the reply and the reason are kept).
- ``failed``: the condition's results without a score, and the commonest reason (untrusted text, stripped).
- ``trained.remote``: a condition trained on another box and merged here (``emtui merge``): that box's host, the
  database merged from, and whether its model's files are on this box too (else its missing answers are made
  there: ``emtui run`` leaves it out of the generate stage); None for one trained here.
"""

from __future__ import annotations

import json
from typing import Any

from engine.common.text import one_line, strip_control

STATUS_VERSION = 1


class StatusError(ValueError):
    """No such study (one line)."""


def _clean(text: Any, limit: int = 200) -> str | None:
    return None if text is None else one_line(strip_control(str(text)), limit)


def _planned_answers(store: Any, study: dict[str, Any], jobs: list[dict[str, Any]]) -> dict[int, int]:
    """Answers per condition id the chain plans (see the module's docstring)."""
    from engine.generation.plan import samples_for
    from engine.generation.settings import SettingsError, resolve_settings

    gen = [j for j in jobs if j["kind"] == "generate"]
    payload = json.loads(gen[-1]["payload"]) if gen else None
    study_id = int(study["id"])
    conds = store.study_conditions(study_id)
    if payload is None:
        spec = json.loads(study.get("spec_json") or "{}")
        try:
            settings = resolve_settings(spec.get("generation") or {}, int(spec.get("seed") or 0), None)
        except SettingsError:
            settings = {}
        sets = store.study_eval_sets(study_id)
        payload = {"eval_sets": [int(e["id"]) for e in sets], "conditions": [int(c["id"]) for c in conds],
                   "set_samples": {str(e["id"]): int(e["samples_per_question"]) for e in sets},
                   "variants": ["", "trigger"] if settings.get("trigger") else [""], "checkpoints": False}
    set_samples = {int(k): int(v) for k, v in (payload.get("set_samples") or {}).items()}
    questions = store.questions_of_sets([int(e) for e in payload.get("eval_sets") or []])
    per_model = sum(samples_for(q, set_samples.get(int(q["eval_set_id"]), 1), payload.get("samples"))
                    for q in questions) * len(payload.get("variants") or [""])
    out = {}
    for c in conds:
        if int(c["id"]) not in {int(x) for x in payload.get("conditions") or []}:
            out[int(c["id"])] = 0
            continue
        n_models = 1
        if payload.get("checkpoints") and c.get("dataset_id") is not None:
            n_models += len(store.condition_checkpoints(int(c["id"])))
        out[int(c["id"])] = per_model * n_models
    return out


def _rubric(store: Any, study: dict[str, Any]) -> tuple[dict[str, Any] | None, int]:
    """The study's rubric row and its number of metrics."""
    from engine.judging.rubric_prompts import stored_rubric

    digest = (json.loads(study.get("spec_json") or "{}").get("rubric") or {}).get("content_hash")
    row = store.find_rubric(content_hash=digest) if digest else None
    if row is None:
        return None, 0
    return dict(row), len(stored_rubric(row).metrics)


def _remote(store: Any, condition: dict[str, Any]) -> dict[str, Any] | None:
    """Where a condition trained on another box (``emtui merge``) was trained, and whether its model is here
    too (a shared filesystem: this box can answer with it); None for one trained here."""
    from engine.runs.remote_models import remote_model

    remote = None if condition.get("model_id") is None else remote_model(store, int(condition["model_id"]))
    if remote is None:
        return None
    return {"host": _clean(remote.host), "database": _clean(remote.database, 1000), "model_here": remote.here}


def _job(j: dict[str, Any]) -> dict[str, Any]:
    deps = str(j.get("depends_on") or "")
    return {"id": int(j["id"]), "kind": j["kind"], "status": j["status"], "attempts": int(j["attempts"] or 0),
            "depends_on": [int(d) for d in deps.split(",") if d], "error": _clean(j.get("error")),
            "failed_because_of": j.get("failed_because_of"), "progress": [j.get("progress_done"),
                                                                           j.get("progress_total")]}


def study_status(store: Any, name: str) -> dict[str, Any]:
    """The study's status as JSON (``emtui status --format json``)."""
    study = store.find_study(name)
    if study is None:
        raise StatusError(f"no study {name!r} (emtui list studies)")
    from engine.study.derived_study import derived_studies

    study = dict(study)
    study_id = int(study["id"])
    jobs = store.study_jobs(str(study["spec_hash"]))
    planned = _planned_answers(store, study, jobs)
    answers = store.study_answer_counts(study_id)
    rubric, n_metrics = _rubric(store, study)
    judges = {int(j["id"]): str(j["name"]) for j in store.study_judges(study_id) if j["provider"] != "import"}
    results: dict[tuple[int, int], dict[str, Any]] = {}
    reasons: dict[int, list[dict[str, Any]]] = {}
    if rubric is not None:
        for r in store.study_result_counts_by_judge(study_id, int(rubric["id"])):
            results[(int(r["condition_id"]), int(r["judge_id"]))] = r
        for r in store.study_failure_reasons(study_id, int(rubric["id"])):
            reasons.setdefault(int(r["condition_id"]), []).append(r)
    runs = store.latest_train_runs(study_id)
    steps = store.last_train_metrics_of([int(r["id"]) for r in runs.values()])
    conditions = []
    for c in store.study_conditions(study_id):
        cid = int(c["id"])
        run = runs.get(cid)
        trained: dict[str, Any] | None = None
        if c.get("dataset_id") is not None:
            trained = {"run_id": None, "status": "not queued", "steps": None, "max_steps": None, "error": None}
            if run is not None:
                trained = {"run_id": int(run["id"]), "status": run["status"], "steps": steps[int(run["id"])]["step"],
                           "max_steps": run["max_steps"], "error": _clean(run.get("error"))}
            trained["remote"] = _remote(store, c)
        n_answers = int(answers.get(cid, 0))
        per_judge = {}
        failed = 0
        for jid, jname in judges.items():
            got = results.get((cid, jid), {})
            expected = max(n_answers, int(planned.get(cid, 0))) * n_metrics
            per_judge[jname] = {"done": int(got.get("results") or 0), "planned": expected,
                                "failed": int(got.get("failed") or 0)}
            failed += int(got.get("failed") or 0)
        why = reasons.get(cid) or []
        top = why[0] if why else None
        conditions.append({
            "name": c["name"], "role": json.loads(c.get("recipe") or "{}").get("role"),
            "trained": trained,
            "answers": {"done": n_answers, "planned": int(planned.get(cid, 0))},
            "judgments": per_judge,
            "failed": {"n": failed, "reason": _clean(top["reason"]) if top else None,
                       "reason_n": int(top["n"]) if top else 0},
        })
    calls = store.study_judge_call_totals(study_id)
    summary = [j for j in jobs if j["kind"] == "summary" and j["status"] == "done"]
    return {
        "version": STATUS_VERSION, "study": study["name"], "hash": study["spec_hash"],
        "rubric": rubric["name"] if rubric else None, "metrics": n_metrics,
        "conditions": conditions,
        "jobs": [_job(j) for j in jobs],
        "cost": {"usd": round(float(calls["cost_usd"] or 0.0), 6), "calls": int(calls["calls"] or 0),
                 "sent": int(calls["sent"] or 0), "tokens": int(calls["tokens"] or 0)},
        "summary_job": int(summary[-1]["id"]) if summary else None,
        "state": chain_state([_job(j) for j in jobs]),
        "derived": derived_studies(store, study),  # its runs on other base models (emtui run --model)
    }


def chain_state(jobs: list[dict[str, Any]]) -> str:
    """One word for the chain: ``not started`` (no job), ``running``, ``queued``, ``failed`` (its newest job of a
    kind failed and nothing is queued or running), ``done``."""
    if not jobs:
        return "not started"
    states = {j["status"] for j in jobs}
    if "running" in states:
        return "running"
    if "queued" in states:
        return "queued"
    newest: dict[str, str] = {}
    for j in jobs:
        newest[j["kind"]] = j["status"]
    if any(s in ("failed", "cancelled") for s in newest.values()):
        return "failed"
    return "done"
