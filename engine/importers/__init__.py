"""Importers: other projects' result files into the store, each in one transaction.

- :mod:`engine.importers.political_seed`: the political-content EM study's folder of
  response files and judge files (recognised by their content);
- :mod:`engine.importers.betley_csv`: a result CSV of the original EM paper, its
  scores recomputed from the judge's token probabilities;
- :mod:`engine.importers.model_organisms_csv`: the model-organisms pipeline's response
  CSVs (one per model x dataset), a file or a folder of them;
- :mod:`engine.importers.political_seed_human`: the political-content study's human ratings.

Each reads and checks its files first (``read_*``: no database needed) and then writes
(``write_*``), so bad input never touches the database. Bad input raises
:class:`ImportFormatError`, whose one-line message names the file and the line or key;
nothing is written then. Importing the same files twice raises :class:`AlreadyImported`
and writes nothing. Every value accepted is one later commands can handle: finite numbers,
strings where strings belong, one-line names (see :mod:`engine.common.untrusted`). This package
never imports textual or emtui.
"""

from __future__ import annotations

import contextlib
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.common.hashing import json_hash, short
from engine.common.safe_load import LoadError
from engine.common.untrusted import (
    MAX_LABEL_CHARS,
    label_problem,
    name_problem,
    parse_json,
    path_problem,
    path_text,
    read_text,
)


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
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", name) or len(name) > MAX_LABEL_CHARS:
        shown = name if len(name) <= 40 else name[:40] + "…"
        raise ImportFormatError(file, None, f"--name {shown!r} is not a valid study name (at most {MAX_LABEL_CHARS} "
                                            "letters, digits, '_', '.', '-'; starting with a letter or digit)")
    return name


def claim_study_identity(store: Any, *, fmt: str, origin: str, files: dict[str, str], source: object,
                         name: str | None, default_name: str) -> tuple[str, str]:
    """The imported study's (hash, name), refusing a second import of the same files
    (:class:`AlreadyImported`) and a name already taken by other contents."""
    spec_hash = json_hash({"format": fmt, "files": files})
    study_name = study_name_for(name, default_name, source)
    existing = store.find_study_by_hash(spec_hash, origin=origin)
    if existing is not None:
        raise AlreadyImported(int(existing["id"]), existing["name"])
    clash = store.find_study(study_name)
    if clash is not None:
        raise ImportFormatError(source, None, f"a study named {study_name!r} already exists with other "
                                              f"contents (hash {short(clash['spec_hash'])}); import under "
                                              "another name (--name)")
    return spec_hash, study_name


def need_key(path: Path, doc: Any, key: str, where: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``doc[key]`` of JSON ``doc`` at ``where`` (a dotted path), checked to be of ``kind``; a
    missing key or a wrong type is an :class:`ImportFormatError` naming the file and the path."""
    if not isinstance(doc, dict):
        raise ImportFormatError(path, where or None, "expected an object")
    full = f"{where}.{key}" if where else key
    if key not in doc:
        raise ImportFormatError(path, full, f"missing key (expected {what})")
    value = doc[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ImportFormatError(path, full, f"expected {what}, got {type(value).__name__}")
    return value


def located(path: object, exc: LoadError) -> ImportFormatError:
    """A loader's :class:`LoadError` as an :class:`ImportFormatError` of ``path``: a message that
    starts with ``line N`` becomes ``path:N: ...``."""
    msg = str(exc)
    m = re.match(r"line (\d+)(?: column (\d+))?: (.*)$", msg)
    if m:
        rest = m.group(3)
        if m.group(2):
            rest = rest[:-1] + f", column {m.group(2)})" if rest.endswith(")") else f"{rest} (column {m.group(2)})"
        return ImportFormatError(path, int(m.group(1)), rest)
    return ImportFormatError(path, None, msg)


def read_json(path: Path) -> Any:
    """A JSON file, bounded and checked (:func:`engine.common.untrusted.parse_json`)."""
    try:
        return parse_json(read_text(path))
    except LoadError as exc:
        raise located(path, exc) from None


def need_text_path(path: Path) -> Path:
    """``path``, when it can be recorded as text (an imported file's name and folder are kept with the
    study); a file name that is not UTF-8 is an :class:`ImportFormatError`."""
    problem = path_problem(path)
    if problem:
        raise ImportFormatError(path_text(path), None, problem)
    return path


def need_label(path: Path, where: str | int | None, value: Any, what: str, kind: str | None = None) -> str:
    """``value`` as a name (a condition, category, metric, judge): a one-line string, and for a
    ``kind`` (metric, condition, judge) none of the summary's own names."""
    problem = name_problem(value, kind, what) if kind else label_problem(value, what)
    if problem:
        raise ImportFormatError(path, where, problem)
    return value


@contextlib.contextmanager
def csv_faults(path: Path, line: Callable[[], int | None]) -> Iterator[None]:
    """Reading a CSV file: a decoding error, a CSV error (at ``line()``, the reader's line) and an
    unreadable file become one-line :class:`ImportFormatError`s naming the file."""
    try:
        yield
    except UnicodeDecodeError:
        raise ImportFormatError(path, None, "not UTF-8 text") from None
    except csv.Error as exc:
        raise ImportFormatError(path, line() or None, f"not a readable CSV ({exc})") from None
    except OSError as exc:
        raise ImportFormatError(path, None, f"cannot read ({exc.strerror or exc})") from None


@dataclass
class ImportedStudy:
    """What :func:`add_imported_study` made: the study, its questions by (key, paraphrase), the
    rubric and the one judge the file's scores are recorded under."""

    study_id: int
    question_ids: dict[tuple[str, int], int]
    rubric_id: int
    judge_id: int


def add_imported_study(store: Any, *, name: str, origin: str, source: object, spec_hash: str, spec: dict[str, Any],
                       set_name: str, questions: list[dict[str, Any]], rubric_name: str, rubric_body: str,
                       rubric_metrics: list[dict[str, Any]], judge_model: str,
                       judge_params: dict[str, Any]) -> ImportedStudy:
    """The frame every result importer writes first (inside its transaction): the study, its
    eval set, the rubric (content-hashed) and the importing judge, linked to the study."""
    from engine.common.hashing import sha256_text

    study_id = store.add_study(name=name, description=f"imported from {source}", origin=origin,
                               spec_hash=spec_hash, spec=spec, source_path=str(source))
    set_id = store.ensure_eval_set(name=set_name, source=f"{origin}:{source}", content_hash=json_hash(questions),
                                   questions=questions)
    store.link_study_eval_set(study_id, set_id, 1)
    qids = {(r["key"], r["paraphrase"]): r["id"] for r in store.list_questions(set_id, limit=len(questions) + 1).rows}
    rubric_id = store.ensure_rubric(name=rubric_name, content_hash=sha256_text(rubric_body), body=rubric_body,
                                    metrics=rubric_metrics)
    judge_id = store.ensure_import_judge(name=judge_model, model=judge_model, params=judge_params)
    store.link_study_judge(study_id, judge_id)
    return ImportedStudy(study_id, qids, rubric_id, judge_id)
