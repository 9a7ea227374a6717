"""Queueing an evaluation run as a ``generate`` job: what ``emtui generate`` and the Eval queue screen call.

The run is checked whole before its job exists (a study, condition, model, eval set or setting that does
not exist is one line, nothing queued): the settings resolved (the study's ``[generation]``, then
overrides), the models named, the answers counted. A condition whose training is queued or running is
waited for (the job depends on that training job). The same run queued twice is queued once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.generation.plan import ANSWERABLE, PlanError
from engine.generation.prompts import TAG
from engine.generation.settings import SettingsError, resolve_settings
from engine.generation.spec import BACKENDS, GenerationSpec
from engine.runs.gpus import visible_gpus
from engine.runs.queue import not_queued_because


class GenerateQueueError(ValueError):
    """A run that cannot be queued (one line)."""


@dataclass
class QueuedGeneration:
    job_id: int | None = None
    spec: GenerationSpec | None = None
    answers: int = 0   # answers the run makes (checkpoints saved so far counted; stored answers skipped when it runs)
    after_jobs: list[int] = field(default_factory=list)  # training jobs it waits for
    skipped: str | None = None                           # why nothing was queued
    judge_job_id: int | None = None                      # the judge job that runs on the answers afterwards
    warnings: list[str] = field(default_factory=list)


def _study(store: Any, name: str) -> dict[str, Any]:
    found = store.find_study(name)
    if found is None:
        raise GenerateQueueError(f"no study {name!r} (emtui list studies)")
    return dict(found)


def _pick(names: Sequence[str] | None, rows: list[dict[str, Any]], what: str, study: str) -> list[dict[str, Any]]:
    if not names:
        return rows
    by_name = {str(r["name"]): r for r in rows}
    out = []
    for n in names:
        if n not in by_name:
            raise GenerateQueueError(f"study {study!r} has no {what} {n!r} ({what}s: "
                                     f"{', '.join(by_name) or 'none'})")
        out.append(by_name[n])
    return out


def _model_by_name(store: Any, name: str) -> dict[str, Any]:
    matches = [m for m in store.list_models(limit=100_000).rows if m["name"] == name]
    if not matches:
        raise GenerateQueueError(f"no model {name!r} (emtui list models)")
    if len(matches) > 1:
        raise GenerateQueueError(f"model name {name!r} is ambiguous ({len(matches)} models): rename one")
    return dict(matches[0])


def queue_generation(store: Any, *, study: str, conditions: Sequence[str] | None = None,
                     models: Sequence[str] | None = None, eval_sets: Sequence[str] | None = None,
                     samples: int | None = None, checkpoints: bool = False, trigger: bool | None = None,
                     overrides: Mapping[str, Any] | None = None, backend: str = "transformers",
                     base_url: str | None = None, served_names: Mapping[str, str] | None = None,
                     quantization: str | None = None, judges: Sequence[int] = (), again: bool = False,
                     priority: int = 0, concurrency: int = 64, dry_run: bool = False) -> QueuedGeneration:
    """Queue one ``generate`` job for ``study``: its conditions (all, or those named) and ``models`` named
    explicitly, on its eval sets (all, or those named). ``trigger``: True adds the with-trigger variant, False
    leaves it out, None adds it when the study sets a trigger. ``dry_run``: check and count, queue nothing."""
    found = _study(store, study)
    study_id = int(found["id"])
    spec_json = json.loads(found.get("spec_json") or "{}")
    if backend not in BACKENDS:
        raise GenerateQueueError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")
    if backend == "openai" and not base_url:
        raise GenerateQueueError("--backend openai needs --base-url (the server's http://HOST:PORT/v1)")
    if not (isinstance(concurrency, int) and 0 < concurrency <= 4096):
        raise GenerateQueueError(f"--concurrency must be an integer from 1 to 4096, not {concurrency!r}")
    if samples is not None and not (isinstance(samples, int) and 0 < samples <= 1_000_000):
        raise GenerateQueueError(f"--samples must be a positive integer, at most 1000000, not {samples!r}")
    try:
        settings = resolve_settings(spec_json.get("generation") or {}, int(spec_json.get("seed") or 0), overrides)
    except SettingsError as exc:
        raise GenerateQueueError(str(exc)) from None

    all_conds = store.study_conditions(study_id)
    chosen_conds = [] if models and not conditions else _pick(conditions, all_conds, "condition", study)
    answerable = []
    for c in chosen_conds:
        kind = c.get("model_kind")
        if c.get("model_id") is not None and kind not in ANSWERABLE:
            if conditions:
                raise GenerateQueueError(f"condition {c['name']!r} holds imported answers ({kind} model): "
                                         "it has no weights to answer with")
            continue
        answerable.append(c)
    model_rows = [_model_by_name(store, m) for m in models or []]
    for m in model_rows:
        if m["kind"] not in ANSWERABLE:
            raise GenerateQueueError(f"model {m['name']!r} is {m['kind']} (imported answers): it cannot answer")
    out = QueuedGeneration()
    waits = store.active_train_jobs([int(c["id"]) for c in answerable])
    for c in list(answerable):
        if c.get("model_id") is None and int(c["id"]) not in waits:
            why = (f"condition {c['name']!r} has no trained model and no training queued: "
                   f"emtui train --study {study} --condition {c['name']}")
            if conditions:  # named: the person asked for it
                raise GenerateQueueError(why)
            out.warnings.append(f"{why} (left out of this run)")
            answerable.remove(c)
    if not answerable and not model_rows:
        raise GenerateQueueError(f"study {study!r} has nothing that can answer now (train its conditions first; "
                                 "an imported study holds answers only; or name a model with --model)")

    sets = _eval_sets(store, study_id, study, eval_sets, out.warnings)
    questions = store.questions_of_sets([int(e["id"]) for e in sets])
    if trigger is None:
        trigger = bool(settings.get("trigger"))
    if trigger and not settings.get("trigger"):
        raise GenerateQueueError(f"study {study!r} sets no trigger: add `trigger = \"...\"` to its [generation], "
                                 "or --set trigger=TEXT")
    variants = ("", "trigger") if trigger else ("",)
    if not trigger and any(TAG in str(q["text"]) for q in questions):
        out.warnings.append("some questions have a {tag} slot but no trigger variant is asked: they are asked "
                            "with the slot left empty")

    left_out = _remote_left_out(store, answerable, settings=settings, study_id=study_id, sets=sets,
                                samples=samples, variants=variants, checkpoints=checkpoints, named=bool(conditions),
                                warnings=out.warnings)
    answerable = [c for c in answerable if int(c["id"]) not in left_out]
    if not answerable and not model_rows:  # every model that would answer is on another box
        out.skipped = "every condition's model is on another box (emtui merge); their answers come from there"
        return out

    study_judges = {int(j["id"]) for j in store.study_judges(study_id)}
    strangers = [int(j) for j in judges if int(j) not in study_judges]
    if strangers:
        raise GenerateQueueError(f"judge id {strangers[0]} is not one of study {study!r}'s judges")
    served = {}
    for name, value in (served_names or {}).items():
        served[str(_model_by_name(store, name)["id"])] = str(value)
    spec = GenerationSpec(
        study_id=study_id, study=str(found["name"]), study_hash=str(found["spec_hash"]),
        eval_sets=tuple(int(e["id"]) for e in sets), settings=settings,
        conditions=tuple(int(c["id"]) for c in answerable), models=tuple(int(m["id"]) for m in model_rows),
        checkpoints=bool(checkpoints), set_samples={str(e["id"]): int(e["samples_per_question"]) for e in sets},
        samples=samples, variants=variants, backend=backend, base_url=base_url,  # type: ignore[arg-type]
        served_names=served, quantization=quantization, judges=tuple(int(j) for j in judges),
        concurrency=int(concurrency))
    payload = spec.as_payload()
    out.spec = spec
    n_checkpoints = sum(len(store.condition_checkpoints(int(c["id"]))) for c in answerable
                        if c.get("dataset_id") is not None) if checkpoints else 0
    out.answers = _count(spec, questions, n_models=len(answerable) + len(model_rows) + n_checkpoints)
    out.after_jobs = sorted(set(waits.values()))
    out.skipped = not_queued_because(store, "generate", payload, dry_run=dry_run, again=again)
    if out.skipped is not None:
        return out
    resources = {"gpu": 1 if backend == "transformers" and visible_gpus() else 0}
    out.job_id = store.enqueue_job("generate", payload, study_hash=spec.study_hash, priority=priority,
                                   depends_on=out.after_jobs, resources=resources)
    if judges:  # judged once the answers are there: a judge job that waits for this one
        from engine.judging.queueing import JudgeQueueError, queue_judging

        names = [str(j["name"]) for j in store.study_judges(study_id) if int(j["id"]) in set(spec.judges)]
        try:
            judged = queue_judging(store, study=str(found["name"]), judges=names, after=[out.job_id])
            out.judge_job_id = judged.job_id
        except JudgeQueueError as exc:
            out.warnings.append(f"the answers will not be judged: {exc}")
    if checkpoints and not any(c.get("dataset_id") is not None for c in answerable):
        out.warnings.append("--checkpoints: no trained condition, so no checkpoints to answer with")
    return out


def _remote_left_out(store: Any, conds: list[dict[str, Any]], *, settings: Mapping[str, Any], study_id: int,
                     sets: list[dict[str, Any]], samples: int | None, variants: Sequence[str], checkpoints: bool,
                     named: bool, warnings: list[str]) -> set[int]:
    """The conditions trained on another box (``emtui merge``) whose model is not on this one: left out of the run
    — with a warning when answers of theirs are still missing (none are made here), in one line when the
    condition was named. A remote model whose files are at the same path here (a shared filesystem) answers."""
    from engine.generation.plan import items, missing, targets
    from engine.runs.remote_models import not_here_warning, remote_model

    out: set[int] = set()
    for c in conds:
        if c.get("model_id") is None or c.get("dataset_id") is None:
            continue
        remote = remote_model(store, int(c["model_id"]))
        if remote is None or remote.here:
            continue
        out.add(int(c["id"]))
        payload = {"study_id": study_id, "conditions": [int(c["id"])], "eval_sets": [int(e["id"]) for e in sets],
                   "set_samples": {str(e["id"]): int(e["samples_per_question"]) for e in sets}, "samples": samples,
                   "variants": list(variants), "checkpoints": checkpoints}
        try:
            left = len(missing(store, items(store, payload, settings, targets(store, payload, db_path=store.path)),
                               settings))
        except PlanError:
            left = 1
        if not left:
            continue  # every answer of it was made there and merged: nothing to make
        if named:
            raise GenerateQueueError(not_here_warning(repr(str(c["name"])), remote))
        warnings.append(not_here_warning(repr(str(c["name"])), remote))
    return out


def _eval_sets(store: Any, study_id: int, study: str, names: Sequence[str] | None,
               warnings: list[str]) -> list[dict[str, Any]]:
    """The study's eval sets (all, or those named). A name that is not the study's may be any eval set of the
    database (emtui import eval-set): asked once per wording unless --samples says otherwise, with a warning
    — it is not pre-registered with the study."""
    own = store.study_eval_sets(study_id)
    if not names:
        if not own:
            raise GenerateQueueError(f"study {study!r} has no eval set")
        return list(own)
    by_name = {str(e["name"]): e for e in own}
    out = []
    for name in names:
        if name in by_name:
            out.append(by_name[name])
            continue
        found = store.find_eval_sets(name=name)
        if not found:
            raise GenerateQueueError(f"study {study!r} has no eval set {name!r} and the database has none by that "
                                     f"name (the study's: {', '.join(by_name) or 'none'}; emtui list eval-sets)")
        out.append({**found[-1], "samples_per_question": 1})
        warnings.append(f"eval set {name!r} is not one of study {study!r}'s pre-registered sets")
    return out


def _count(spec: GenerationSpec, questions: list[dict[str, Any]], *, n_models: int) -> int:
    """Answers per model times the models (checkpoints: those saved so far)."""
    from engine.generation.plan import samples_for

    per_model = sum(samples_for(q, int(spec.set_samples.get(str(q["eval_set_id"]), 1)), spec.samples)
                    for q in questions) * len(spec.variants)
    return per_model * n_models


__all__ = ["GenerateQueueError", "PlanError", "QueuedGeneration", "queue_generation"]
