"""The line a screen shows over a study (or run) whose base model is ``tiny``: the offline demo's random model,
whose answers and scores are noise, and how to run the same study on a real model."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.text import Text

TINY_BANNER = "Tiny random model (answers are noise) · real: emtui run STUDY --model PATH"
TINY_SHORT = "tiny random model: noise"


def is_tiny(conditions: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a study's conditions start from the tiny model (``base_source`` of ``study_conditions``)."""
    return any(c.get("base_source") == "tiny" for c in conditions)


def banner() -> Text:
    return Text(TINY_BANNER, style="bold black on yellow", no_wrap=True, overflow="ellipsis")
