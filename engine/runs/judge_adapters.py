"""The judge adapters a study's panel needs trained first: a local judge whose ``adapter`` is
``trained:STUDY/CONDITION`` (engine/models/locate.py) judges with that condition's trained model, so the chain's
judge stage (engine/runs/study_chain.py) waits for its training — queued here when none is queued, running or
done. That study is any study in the database (the demo's ``demo-judge``), never a condition of the study judged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


class AdapterError(ValueError):
    """A judge adapter that names a study or condition the database does not hold (one line)."""


@dataclass
class Adapters:
    queued: list[int] = field(default_factory=list)    # training jobs queued now
    waiting: list[int] = field(default_factory=list)   # training jobs queued or running already
    runs: list[int] = field(default_factory=list)      # training runs queued now
    named: list[str] = field(default_factory=list)     # the ``trained:`` references that need training
    trained: list[str] = field(default_factory=list)   # those trained already
    warnings: list[str] = field(default_factory=list)


def trained_adapters(store: Any, study_id: int) -> list[tuple[str, str, str, str]]:
    """(judge name, reference, study, condition) of each of the study's local judges with a trained adapter."""
    from engine.models.locate import parse_trained

    out = []
    for judge in store.study_judges(study_id):
        if judge["provider"] != "local":
            continue
        ref = str(json.loads(judge.get("params") or "{}").get("adapter") or "")
        named = parse_trained(ref)
        if named is not None:
            out.append((str(judge["name"]), ref, *named))
    return out


def queue_adapters(store: Any, study_id: int) -> Adapters:
    """Queue (or reuse) the training of every trained adapter the study's judges name."""
    from engine.runs.remote_models import remote_model
    from engine.training.queueing import QueueError, queue_runs

    out = Adapters()
    for judge, ref, study_name, cond_name in trained_adapters(store, study_id):
        found = store.find_study(study_name)
        if found is None:
            raise AdapterError(f"judge {judge!r}: adapter {ref} names study {study_name!r}, which is not in the "
                               "database (register its file first: emtui init FILE)")
        cond = next((c for c in store.study_conditions(int(found["id"])) if c["name"] == cond_name), None)
        if cond is None or cond.get("dataset_id") is None:
            raise AdapterError(f"judge {judge!r}: adapter {ref}: study {study_name!r} has no trained condition "
                               f"{cond_name!r}")
        if cond.get("model_id") is not None:  # trained: here, or on another box
            out.trained.append(ref)
            remote = remote_model(store, int(cond["model_id"]))
            if remote is not None and not remote.here:
                out.warnings.append(f"judge {judge!r}: its adapter {ref} was {remote.where()}: it is not on this "
                                    "box, so the judge will record failures")
            continue
        active = store.active_train_jobs([int(cond["id"])])
        if active:
            out.waiting += [j for j in active.values() if j not in out.waiting]
            out.named.append(ref)
            continue
        try:
            queued = queue_runs(store, study=study_name, condition=cond_name)
        except QueueError as exc:
            raise AdapterError(f"judge {judge!r}: adapter {ref}: {exc}") from None
        out.warnings += queued.warnings
        out.runs += queued.runs
        out.queued += [int(store.get_train_run(r)["job_id"]) for r in queued.runs]
        out.named.append(ref)
    return out
