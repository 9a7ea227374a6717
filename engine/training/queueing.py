"""Queueing fine-tuning runs of a study's conditions as ``train`` jobs (issue 12; being written).

``queue_training`` is what ``emtui train`` and the Train screen's keys call.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ISSUE = "issue 12 (training)"


def queue_training(store: Any, *, study: str, condition: str | None = None,
                   overrides: Mapping[str, Any] | None = None, resume_run: int | None = None) -> list[int]:
    """Queue a ``train`` job for each trained condition of ``study`` (or just ``condition``), the
    recipe's keys overridden by ``overrides``; or, with ``resume_run``, queue that run again to
    continue from its newest complete checkpoint. Returns the train_run ids."""
    raise NotImplementedError(f"{ISSUE}: queue_training is not written yet")
