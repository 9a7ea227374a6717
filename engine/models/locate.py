"""Where a model's weights are: a row of ``models`` as a folder (or hub id) ``from_pretrained`` takes.

``tiny`` (the offline demo/test model) is built on first use into ``<db>.runs/models/tiny`` — the
build is deterministic, so every process that needs it gets the same weights.
"""

from __future__ import annotations

import fcntl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.runs.paths import run_dir


def tiny_folder(db_path: str | Path) -> Path:
    return run_dir(db_path) / "models" / "tiny"


def ensure_tiny(db_path: str | Path) -> Path:
    """The tiny model's folder, built once (under a lock: two jobs may start at the same time)."""
    folder = tiny_folder(db_path)
    if (folder / "model.safetensors").exists():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / ".tiny.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "model.safetensors").exists():
            from engine.models.tiny_model import build_tiny_model

            tmp = folder.with_name("tiny.building")
            build_tiny_model(tmp)
            tmp.rename(folder)
    return folder


def model_location(model: Mapping[str, Any], db_path: str | Path) -> str:
    """What to pass to ``from_pretrained`` for a ``models`` row: its path when it has one, the tiny
    model's folder for ``tiny``, else its source (a local folder, or a hub id read from the cache)."""
    if model.get("path"):
        return str(model["path"])
    source = str(model["source"])
    if source == "tiny":
        return str(ensure_tiny(db_path))
    return source


# A local judge's adapter may name a condition's trained model: the demo's judge adapter is trained by a
# study of its own (data/studies/demo_judge.toml), so nothing treats it as a condition of the study judged.
TRAINED = "trained:"


def parse_trained(value: str) -> tuple[str, str] | None:
    """``trained:STUDY/CONDITION`` as (study, condition), or None when it is not written so. A study name
    holds no '/'; the condition is what follows the last one."""
    if not value.startswith(TRAINED):
        return None
    study, sep, condition = value[len(TRAINED):].rpartition("/")
    return (study, condition) if sep and study and condition else None


def adapter_location(store: Any, value: str) -> tuple[str | None, str | None]:
    """A judge's ``adapter`` as (its folder, None) or (None, why it has none yet): a folder as it is; for
    ``trained:STUDY/CONDITION`` the folder of that condition's trained model."""
    named = parse_trained(value)
    if named is None:
        return (value, None) if value else (None, "no adapter named")
    study_name, cond_name = named
    study = store.find_study(study_name)
    if study is None:
        return None, f"adapter {value}: no study {study_name!r} in the database"
    conds = [c for c in store.study_conditions(int(study["id"])) if c["name"] == cond_name]
    if not conds:
        return None, f"adapter {value}: study {study_name!r} has no condition {cond_name!r}"
    model = store.get_model(int(conds[0]["model_id"])) if conds[0].get("model_id") is not None else None
    if model is None or not model.get("path"):
        return None, f"adapter {value}: the condition has no trained model (is its training done? emtui runs)"
    return str(model["path"]), None
