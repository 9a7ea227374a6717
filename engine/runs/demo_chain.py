"""The offline demo's chain (``emtui demo``, ``make run``): the demo studies registered and every job queued
at once, each waiting for the ones it needs, for a worker to run on a CPU.

Two studies shipped in data/studies: ``demo-judge`` trains the judge adapter (one condition, ``scorer``) and
``demo`` is the experiment (insecure, secure, base on the tiny model). Queued in this order:

1. the judge adapter's training (``demo-judge/scorer``),
2. the demo's two fine-tunes,
3. one ``generate`` job over the three models (waits for 2),
4. one ``judge`` job of the demo's panel (waits for 3 and 1: the adapter judge needs its adapter).

:func:`queue_demo_chain` is the one place that does it, so that ``engine.runs.study_chain.queue_study``
(``emtui run``) can replace it. The chain is queued once per database: when the demo already has a
training run, nothing is queued again (the TUI reopens on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEMO_STUDY = "builtin:demo"
JUDGE_STUDY = "builtin:demo-judge"


@dataclass
class DemoChain:
    study: str = ""                                          # the demo study's name
    registered: list[str] = field(default_factory=list)      # studies registered now
    jobs: list[int] = field(default_factory=list)            # jobs queued now, in order
    already: bool = False                                    # queued before: nothing new
    warnings: list[str] = field(default_factory=list)


class OtherDemo(ValueError):
    """The database holds another version of a demo study (emtui's shipped files changed since)."""


def register_builtin(store: Any, source: str) -> tuple[str, bool]:
    """Register the built-in study ``source`` unless it is there already: (its name, registered now)."""
    from engine.study.study_file import AlreadyRegistered, load_study, register_study

    study = load_study(source)
    found = store.find_study(study.name)
    if found is not None and found["spec_hash"] != study.spec_hash:
        raise OtherDemo(f"{store.path} holds another version of study {study.name!r} (this emtui ships a changed "
                        f"one): delete {store.path} and {store.path}.runs/ to run the demo again")
    try:
        register_study(store, study)
    except AlreadyRegistered:
        return study.name, False
    return study.name, True


def _train_jobs(store: Any, study: str) -> list[int]:
    """The jobs of ``study``'s training runs that are queued or running now."""
    from engine.training.queueing import ACTIVE

    found = store.find_study(study)
    jobs = []
    for cond in store.study_conditions(int(found["id"])):
        jobs += [int(r["job_id"]) for r in store.condition_train_runs(int(cond["id"]))
                 if r["status"] in ACTIVE and r.get("job_id") is not None]
    return jobs


def _queued_before(store: Any, study: str) -> bool:
    found = store.find_study(study)
    return any(store.condition_train_runs(int(c["id"])) for c in store.study_conditions(int(found["id"])))


def queue_demo_chain(store: Any) -> DemoChain:
    """Register the demo studies and queue the whole chain, all in one transaction; nothing when it was
    queued before. Raises the queueing modules' one-line errors (nothing written then)."""
    from engine.generation.queueing import queue_generation
    from engine.judging.queueing import queue_judging
    from engine.training.queueing import queue_runs

    out = DemoChain()
    with store.transaction():
        judge_study, new = register_builtin(store, JUDGE_STUDY)
        out.registered += [judge_study] if new else []
        out.study, new = register_builtin(store, DEMO_STUDY)
        out.registered += [out.study] if new else []
        if _queued_before(store, out.study):
            out.already = True
            return out
        queue_runs(store, study=judge_study)   # skipped when this database trained the adapter already
        adapter_jobs = _train_jobs(store, judge_study)
        trained = queue_runs(store, study=out.study)
        out.warnings += trained.warnings
        out.jobs += adapter_jobs + _train_jobs(store, out.study)
        generated = queue_generation(store, study=out.study)
        out.warnings += generated.warnings
        if generated.job_id is None:
            out.warnings.append(f"no answers queued: {generated.skipped}")
            return out
        out.jobs.append(generated.job_id)
        judged = queue_judging(store, study=out.study, after=[generated.job_id, *adapter_jobs])
        out.warnings += judged.warnings
        if judged.job_id is not None:
            out.jobs.append(judged.job_id)
    return out
