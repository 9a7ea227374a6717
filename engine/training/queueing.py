"""Queueing fine-tuning runs of a study's conditions as ``train`` jobs: what ``emtui train`` and the
Train screen's keys call.

A run is made here, complete, before its job exists: the resolved recipe (preset + the study's
recipe + ``--set`` overrides) and its hash, the seed, the dataset and the base model. The job's
payload is only the run's id, so a queued, failed or killed run is retried or resumed from the
database alone.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runs.gpus import visible_gpus
from engine.training.recipes import RecipeError, recipe_hash, resolve_recipe

ACTIVE = ("queued", "running")


class QueueError(ValueError):
    """Nothing to queue, or a run that cannot be queued (one line)."""


@dataclass
class Queued:
    runs: list[int] = field(default_factory=list)       # train_run ids queued now
    skipped: list[str] = field(default_factory=list)    # why a condition was not queued
    warnings: list[str] = field(default_factory=list)   # what will make a queued run fail, seen now


def model_warning(source: str, path: str | None) -> str | None:
    """Why a base model cannot be loaded on this machine, or None: a run of it would fail after the
    worker took it (no hub access here). ``tiny`` is built on demand; a folder must hold config.json; a hub
    id must be in the Hugging Face cache."""
    if source == "tiny" or (path and (Path(path) / "config.json").is_file()):
        return None
    if Path(source).expanduser().is_dir():
        return None if (Path(source).expanduser() / "config.json").is_file() else \
            f"model folder {source} has no config.json"
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(source, "config.json"), str):
        return None
    return (f"model {source!r} is neither a local folder nor in the Hugging Face cache: download it first "
            f"(huggingface-cli download {source}) or name a local folder in the study")


def _resources() -> dict[str, int]:
    """What a train job asks of its worker: a GPU where this machine has one."""
    return {"gpu": 1 if visible_gpus() else 0}


def _trained_conditions(store: Any, study: dict[str, Any], condition: str | None) -> list[dict[str, Any]]:
    conds = store.study_conditions(int(study["id"]))
    trained = [c for c in conds if c.get("dataset_id") is not None]
    if condition is not None:
        named = [c for c in conds if c["name"] == condition]
        if not named:
            raise QueueError(f"study {study['name']!r} has no condition {condition!r} "
                             f"(conditions: {', '.join(c['name'] for c in conds)})")
        if named[0].get("dataset_id") is None:
            raise QueueError(f"condition {condition!r} of {study['name']!r} is not trained (it has no dataset)")
        return named
    if not trained:
        raise QueueError(f"study {study['name']!r} has no trained condition (none names a dataset)")
    return trained


def queue_runs(store: Any, *, study: str, condition: str | None = None,
               overrides: Mapping[str, Any] | None = None, again: bool = False) -> Queued:
    """A ``train`` job for each trained condition of ``study`` (or just ``condition``). A condition
    whose run with the same recipe is queued, running or done is skipped (``again`` queues it anyway)."""
    found = store.find_study(study)
    if found is None:
        raise QueueError(f"no study {study!r} (emtui list studies)")
    out = Queued()
    resources = _resources()
    for cond in _trained_conditions(store, found, condition):
        raw = json.loads(cond.get("recipe") or "{}")
        try:
            recipe = resolve_recipe(raw, overrides)
        except RecipeError as exc:
            raise QueueError(f"condition {cond['name']!r}: {exc}") from None
        if recipe.get("kl_dataset") and store.find_study_dataset(int(found["id"]), recipe["kl_dataset"]) is None:
            raise QueueError(f"condition {cond['name']!r}: kl_dataset {recipe['kl_dataset']!r} is not a dataset "
                             f"of study {study!r}")
        digest = recipe_hash(recipe)
        same = [r for r in store.condition_train_runs(int(cond["id"]))
                if r["recipe_hash"] == digest and r["status"] in (*ACTIVE, "done")]
        if same and not again:
            out.skipped.append(f"{cond['name']}: run {same[-1]['id']} with this recipe is {same[-1]['status']}")
            continue
        seed = int(recipe["seed"]) if recipe.get("seed") is not None else _study_seed(found)
        with store.transaction():
            run_id = store.add_train_run(
                condition_id=int(cond["id"]), base_model_id=int(cond["base_model_id"]),
                dataset_id=int(cond["dataset_id"]), recipe=recipe, recipe_hash=digest, seed=seed,
                study_hash=str(found["spec_hash"]), preset=recipe.get("preset"))
            job_id = store.enqueue_job("train", {"train_run_id": run_id}, study_hash=str(found["spec_hash"]),
                                       resources=resources)
            store.set_train_run_job(run_id, job_id)
        out.runs.append(run_id)
        base = store.get_model(int(cond["base_model_id"])) or {}
        warning = model_warning(str(base.get("source") or ""), base.get("path"))
        if warning and warning not in out.warnings:
            out.warnings.append(warning)
    return out


def _study_seed(study: Mapping[str, Any]) -> int:
    """The study's root seed (the run's seed unless its recipe sets one)."""
    spec = json.loads(study.get("spec_json") or "{}")
    return int(spec.get("seed") or 0)


def requeue_run(store: Any, run_id: int) -> int:
    """Queue run ``run_id`` again: it continues from its newest complete checkpoint. Returns the job id."""
    run = store.get_train_run(run_id)
    if run is None:
        raise QueueError(f"no training run {run_id} (emtui runs)")
    if run["status"] in ACTIVE:
        raise QueueError(f"run {run_id} is {run['status']} already")
    if run["status"] == "done":
        raise QueueError(f"run {run_id} is done; queue a new one with emtui train --again")
    with store.transaction():
        store.finish_train_run(run_id, status="queued")
        job_id = int(store.enqueue_job("train", {"train_run_id": run_id}, study_hash=str(run["study_hash"]),
                                       resources=_resources()))
        store.set_train_run_job(run_id, job_id)
    return job_id


def queue_training(store: Any, *, study: str, condition: str | None = None,
                   overrides: Mapping[str, Any] | None = None, resume_run: int | None = None) -> list[int]:
    """What the Train screen calls: queue ``study``'s runs (or resume run ``resume_run``). Returns the
    train_run ids queued."""
    if resume_run is not None:
        requeue_run(store, resume_run)
        return [resume_run]
    return queue_runs(store, study=study, condition=condition, overrides=overrides).runs
