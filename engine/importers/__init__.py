"""Importers: other projects' result files into the store, each in one transaction.

- :mod:`engine.importers.political_seed`: the political-content EM study's folder of
  response files and ``v2_full_judge_*.json`` judge files;
- :mod:`engine.importers.betley_csv`: a result CSV of the original EM paper, its
  scores recomputed from the judge's token probabilities.

Bad input raises :class:`ImportFormatError`, whose one-line message names the file and
the line or key; nothing is written then. Importing the same files twice raises
:class:`AlreadyImported` and writes nothing. This package never imports textual or emtui.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


class ImportFormatError(ValueError):
    """A file that cannot be imported. The message is one line naming the file and the line or key."""

    def __init__(self, file: object, where: str | int | None, message: str):
        self.file, self.where = str(file), where
        loc = self.file if where in (None, "") else f"{self.file}:{where}"
        super().__init__(f"{loc}: {message}".replace("\n", " "))


class AlreadyImported(Exception):
    """The same files (same hash) are in the database already, as study ``name``."""

    def __init__(self, study_id: int, name: str):
        self.study_id, self.name = study_id, name
        super().__init__(f"already imported as study {name!r} (id {study_id})")


@dataclass
class ImportResult:
    """What an import wrote, for the one-line summary."""

    study_id: int
    study: str
    spec_hash: str
    conditions: int
    answers: int
    judges: int
    judgments: int
    scores: int
    missing: int  # scores stored as NULL (the file said the judge failed / had no score)
    failed: int = 0  # judgments with no score at all
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        line = (f"imported study {self.study!r}: {self.conditions} conditions, {self.answers} answers, "
                f"{self.judges} judge(s), {self.judgments} judgments ({self.failed} failed), "
                f"{self.missing} of {self.scores} scores missing")
        return line + ("; " + "; ".join(self.notes) if self.notes else "")


def slug(text: str) -> str:
    """A name fit for a study or key: letters, digits, '_', '.', '-'."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")
    return out or "unnamed"


def study_name_for(name: str | None, default: str, file: object) -> str:
    """The study's name: the one asked for (``--name``), checked, or the default."""
    if name is None:
        return default
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name):
        raise ImportFormatError(file, None, f"--name {name!r} is not a valid study name "
                                            "(letters, digits, '_', '.', '-'; starting with a letter or digit)")
    return name
