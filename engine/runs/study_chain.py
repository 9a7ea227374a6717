"""One study end to end as dependent jobs: what ``emtui run`` and the Studies screen's key call, and what a
notebook can call (``queue_study(store, "my-study")``).

The chain, each stage waiting for the one before through the queue's dependencies (engine/runs/queue.py):

0. ``adapters``: the training of each judge adapter the panel names as ``trained:STUDY/CONDITION`` and that
   is not trained yet (engine/runs/judge_adapters.py): a condition of another study, which the judge stage
   waits for;
1. ``train`` each trained condition with no run of the same recipe queued, running or done;
2. one ``generate`` job: every condition's model (and each checkpoint with ``checkpoints=True``) answering the
   study's eval sets — skipped when every answer it would make is stored;
3. one ``judge`` job: the study's panel on its rubric, over every answer not judged yet — skipped when nothing
   is left to judge and no answers are coming;
4. one ``summary`` job (engine/results/summary_job.py): the study's summary, built by the same code as
   ``emtui summary``, stored as the job's result — skipped when the newest summary is newer than everything
   the study's jobs did.

Running it again queues only what is missing: a stage already queued or running is reused (its job is what the
next stage waits for), a stage whose work is all stored is skipped. The whole chain is queued in one
transaction: all of it or nothing.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SUMMARY_KIND = "summary"


class ChainError(ValueError):
    """A study whose chain cannot be queued (one line)."""


@dataclass
class Stage:
    """One stage of the chain: the jobs queued now (``queued``), those already queued or running that it reuses
    (``waiting``), and why nothing was queued (``skipped``)."""

    queued: list[int] = field(default_factory=list)
    waiting: list[int] = field(default_factory=list)
    skipped: str | None = None

    def jobs(self) -> list[int]:
        return self.queued + self.waiting


@dataclass
class ChainPlan:
    study: str                         # the study the chain runs (a derived one with ``model=``)
    study_hash: str
    derived_from: str | None = None    # the registered study it was derived from (``model=``)
    base_model: str | None = None      # the derived study's base model (``model=``)
    registered: list[str] = field(default_factory=list)  # studies registered now (the file's, a derived one)
    train_runs: list[int] = field(default_factory=list)  # training runs queued now
    adapter_runs: list[int] = field(default_factory=list)  # judge adapters' training runs queued now
    adapters: Stage = field(default_factory=Stage)
    train: Stage = field(default_factory=Stage)
    generate: Stage = field(default_factory=Stage)
    judge: Stage = field(default_factory=Stage)
    summary: Stage = field(default_factory=Stage)
    answers: int = 0                   # answers the generate stage makes (stored ones skipped when it runs)
    judge_calls: int = 0               # calls the panel would make now (answers still to come not counted)
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    STAGES = ("adapters", "train", "generate", "judge", "summary")

    def queued_jobs(self) -> list[int]:
        return [j for s in self.STAGES for j in getattr(self, s).queued]

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def queue_study(store: Any, study: str | Path, *, model: str | None = None, checkpoints: bool = False,
                dry_run: bool = False) -> ChainPlan:
    """Queue a study's chain (train → generate → judge → summary) and return what was queued.

    ``study``: a registered study's name, or a study file (a :class:`~pathlib.Path`, a ``.toml`` path, or
    ``builtin:NAME``) registered first unless the same file is registered already — a different file under a
    registered name is refused (:class:`engine.study.study_file.StudyError`) and nothing is written.
    ``model``: a folder (or hub id) to run the same study on as its base model: a derived study is registered
    for it (``NAME--MODEL``, see engine/study/derived_study.py); the registered study never changes.
    ``checkpoints``: also answer with every checkpoint of each training run.
    ``dry_run``: say what would be queued, write nothing (the plan's ids are those the jobs would have had).
    Everything is written in one transaction: all of it or nothing."""
    plan: ChainPlan | None = None

    class _Rollback(Exception):
        pass

    try:
        with store.transaction():
            registered = False
            if _is_file(study):
                study, registered = register_study_file(store, study)
            plan = _queue(store, str(study), model=model, checkpoints=checkpoints, dry_run=dry_run)
            if registered:
                plan.registered.insert(0, str(study))
            if dry_run:
                raise _Rollback
    except _Rollback:
        pass
    assert plan is not None
    plan.dry_run = dry_run
    return plan


def _is_file(study: str | Path) -> bool:
    return isinstance(study, Path) or study.startswith("builtin:") or study.endswith(".toml")


def register_study_file(store: Any, source: str | Path) -> tuple[str, bool]:
    """Register a study file unless the same file (the same hash) is registered already: (its name, registered
    now). A different file under a registered name is refused (:class:`engine.study.study_file.StudyError`,
    naming the file and line)."""
    from engine.study.study_file import AlreadyRegistered, load_study, register_study

    study = load_study(source)
    try:
        register_study(store, study)
    except AlreadyRegistered:
        return study.name, False
    return study.name, True


def _queue(store: Any, study_name: str, *, model: str | None, checkpoints: bool, dry_run: bool) -> ChainPlan:
    found = store.find_study(study_name)
    if found is None:
        raise ChainError(f"no study {study_name!r} (emtui list studies; register a study file with emtui run FILE)")
    derived_from, registered = None, []
    if model is not None:
        derived_from = study_name
        study_name, new = _derive(store, dict(found), model, dry_run=dry_run)
        registered = [study_name] if new else []
        found = store.find_study(study_name)
    plan = ChainPlan(study=study_name, study_hash=str(found["spec_hash"]), derived_from=derived_from,
                     registered=registered)
    if model is not None:
        from engine.study.derived_study import model_source

        plan.base_model = model_source(model)
    if found.get("origin") != "study-file":
        raise ChainError(f"study {study_name!r} was imported (origin {found.get('origin')}): it holds answers and "
                         "scores, not a recipe to run")
    _adapters(store, found, plan)
    _train(store, found, plan)
    _generate(store, found, plan, checkpoints=checkpoints)
    _judge(store, found, plan)
    _summary(store, found, plan)
    return plan


def _derive(store: Any, row: dict[str, Any], model: str, *, dry_run: bool) -> tuple[str, bool]:
    from engine.runs.paths import run_dir
    from engine.study.derived_study import write_derived_study

    if not dry_run:
        return register_study_file(store, write_derived_study(row, model, run_dir(store.path) / "studies"))
    with tempfile.TemporaryDirectory(prefix="emtui-derived-") as folder:  # a dry run leaves no file
        return register_study_file(store, write_derived_study(row, model, Path(folder)))


def _adapters(store: Any, found: dict[str, Any], plan: ChainPlan) -> None:
    from engine.runs.judge_adapters import AdapterError, queue_adapters

    try:
        got = queue_adapters(store, int(found["id"]))
    except AdapterError as exc:
        raise ChainError(f"judge: {exc}") from None
    plan.adapters.queued, plan.adapters.waiting, plan.adapter_runs = got.queued, got.waiting, got.runs
    plan.warnings += got.warnings
    if got.trained and not got.named:
        plan.adapters.skipped = f"judge adapter {', '.join(got.trained)} is trained"


def _train(store: Any, found: dict[str, Any], plan: ChainPlan) -> None:
    from engine.training.queueing import QueueError, queue_runs

    if not any(c.get("dataset_id") is not None for c in store.study_conditions(int(found["id"]))):
        plan.train.skipped = "no condition is trained (none names a dataset)"
        return
    try:
        queued = queue_runs(store, study=plan.study)
    except QueueError as exc:
        raise ChainError(f"train: {exc}") from None
    plan.train_runs = list(queued.runs)
    plan.train.queued = [int(store.get_train_run(r)["job_id"]) for r in queued.runs]
    plan.warnings += queued.warnings
    if not queued.runs:
        plan.train.skipped = "; ".join(queued.skipped) or "nothing to train"


def _generate(store: Any, found: dict[str, Any], plan: ChainPlan, *, checkpoints: bool) -> None:
    from engine.generation.queueing import GenerateQueueError, queue_generation

    try:
        trial = queue_generation(store, study=plan.study, checkpoints=checkpoints, dry_run=True)
    except GenerateQueueError as exc:
        raise ChainError(f"generate: {exc}") from None
    plan.warnings += trial.warnings
    plan.answers = trial.answers
    if trial.spec is None:  # nothing here can answer (every model is on another box)
        plan.generate.skipped = trial.skipped
        return
    payload = trial.spec.as_payload()
    active = store.active_jobs_like("generate", payload)
    if active:
        plan.generate.waiting = [active[-1]]
        plan.train.waiting = sorted(set(trial.after_jobs) - set(plan.train.queued))
        return
    if not trial.after_jobs:  # every model is there: is every answer stored?
        left = _answers_missing(store, payload)
        if left == 0:
            plan.generate.skipped = f"all {trial.answers} answers are stored"
            return
    queued = queue_generation(store, study=plan.study, checkpoints=checkpoints)
    assert queued.job_id is not None
    plan.generate.queued = [int(queued.job_id)]
    plan.train.waiting = sorted(set(queued.after_jobs) - set(plan.train.queued))


def _answers_missing(store: Any, payload: dict[str, Any]) -> int:
    from engine.generation.plan import items, missing, targets
    from engine.generation.spec import GenerationSpec

    spec = GenerationSpec.from_payload(payload)
    run_targets = targets(store, payload, db_path=store.path)
    return len(missing(store, items(store, payload, spec.settings, run_targets), spec.settings))


def _judge(store: Any, found: dict[str, Any], plan: ChainPlan) -> None:
    from engine.judging.queueing import JudgeQueueError, queue_judging

    after = plan.generate.jobs() + plan.adapters.jobs()
    try:
        trial = queue_judging(store, study=plan.study, dry_run=True)
    except JudgeQueueError as exc:
        plan.judge.skipped = str(exc)
        plan.warnings.append(f"the answers will not be judged: {exc}")
        return
    plan.warnings += trial.warnings
    plan.judge_calls = trial.calls
    assert trial.spec is not None
    active = store.active_jobs_like("judge", trial.spec.as_payload())
    if active:
        plan.judge.waiting = [active[-1]]
        return
    if not after and trial.calls == 0:
        plan.judge.skipped = "every answer is judged on the study's rubric by its panel"
        return
    queued = queue_judging(store, study=plan.study, after=after)
    assert queued.job_id is not None
    plan.judge.queued = [int(queued.job_id)]


def summary_payload(found: dict[str, Any]) -> dict[str, Any]:
    return {"study_id": int(found["id"]), "study": str(found["name"])}


def _summary(store: Any, found: dict[str, Any], plan: ChainPlan) -> None:
    payload = summary_payload(found)
    upstream = plan.adapters.jobs() + plan.train.jobs() + plan.generate.jobs() + plan.judge.jobs()
    queued_now = plan.queued_jobs()
    active = store.active_jobs_like(SUMMARY_KIND, payload)
    if active and not queued_now:  # the summary already waits for this work
        plan.summary.waiting = [active[-1]]
        return
    if not upstream:
        jobs = store.study_jobs(plan.study_hash)
        summaries = [j for j in jobs if j["kind"] == SUMMARY_KIND and j["status"] == "done"]
        newest_work = max((str(j["finished_at"] or "") for j in jobs
                           if j["kind"] != SUMMARY_KIND and j["status"] == "done"), default="")
        if summaries and str(summaries[-1]["finished_at"] or "") >= newest_work:
            plan.summary.skipped = f"summary job {summaries[-1]['id']} is up to date"
            return
    job_id = store.enqueue_job(SUMMARY_KIND, payload, study_hash=plan.study_hash, depends_on=upstream,
                               resources={"gpu": 0})
    plan.summary.queued = [int(job_id)]
