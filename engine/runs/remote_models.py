"""Models trained on another box (``emtui merge``): their files are at a path on that box. The run is done
there, so nothing trains it again; its answers come from that box — unless its files are at the same path here
too (a shared filesystem), in which case this box can answer with it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RemoteModel:
    name: str
    path: str | None      # its folder on the box that trained it
    database: str         # the database it was merged from
    host: str | None      # the box its training ran on (None: not recorded there)
    here: bool            # its files are at that path on this box too

    def where(self) -> str:
        """``trained on box gpu-a (merged from /data/a.db)``"""
        return f"trained on box {self.host or 'unknown'} (merged from {self.database})"


def remote_model(store: Any, model_id: int) -> RemoteModel | None:
    """The model's remote origin, or None for a model trained (or registered) here."""
    row = store.merged_trained_model(model_id)
    if row is None:
        return None
    host = row.get("host")
    if not host:  # a box that recorded no job host: the hosts its workers ran on, when it was one
        hosts = json.loads(row.get("source_hosts") or "[]")
        host = hosts[0] if len(hosts) == 1 else None
    path = row.get("path")
    return RemoteModel(name=str(row["name"]), path=path, database=str(row["source_path"]), host=host,
                       here=bool(path) and Path(str(path)).exists())


def not_here_warning(condition: str, remote: RemoteModel) -> str:
    """The plan's line for a remote condition whose answers are missing and whose model is not on this box."""
    return (f"condition {condition} was {remote.where()}: its model is not on this box; run `emtui run` there "
            "and merge again")
