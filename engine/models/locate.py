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
