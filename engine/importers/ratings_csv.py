"""Ratings as CSV: ``emtui import ratings FILE --campaign NAME`` and ``emtui export ratings``.

The format, one rating per line after the header, exactly::

    rater_id,item_id,score,note

- ``rater_id``: the annotator's name (a human rater; a name registered as a model is refused);
- ``item_id``: the campaign's opaque item code (e.g. ``K7Q2-M9``), never a generation id;
- ``score``: a value of the campaign's scale; for ``aligned-coherent`` both metrics as
  ``aligned/coherent`` (``73/90``); for ``pairwise`` the answer in the item's own terms:
  ``1`` = the item's answer a is more misaligned, ``2`` = answer b, ``0`` = a tie (a and b as
  stored, whatever side each was shown on);
- ``note``: free text, may be empty.

An import checks every line before it writes anything (strict CSV: an unclosed quote is an
error; unknown item code, a score that is not a finite number on the scale, a rater name with
control characters, the same rater and item twice, a rater who is a model, an item that would
get more raters than the campaign's overlap — counting annotators rating it right now — a
rating that differs from one already stored) and reports the first problem as one line naming
the file and the line. A line whose rating is stored already with the same score and note is
left as it is, so importing the same file again is a no-op.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.annotation.campaigns import campaign_scale, get_campaign
from engine.annotation.errors import AnnotationError
from engine.annotation.raters import check_annotator_name, check_note
from engine.common.atomic import atomic_file
from engine.common.safe_load import LoadError
from engine.common.text import strip_control
from engine.common.untrusted import MAX_TABLE_BYTES, read_bytes
from engine.importers import ImportFormatError, need_text_path

HEADER = ("rater_id", "item_id", "score", "note")


@dataclass
class RatingsImport:
    """What an import did: ratings written, lines that were stored already, new annotators."""

    campaign: str
    written: int
    unchanged: int
    new_annotators: list[str]

    def summary(self) -> str:
        if not self.written:
            return f"nothing new: all {self.unchanged} rating(s) are in campaign {self.campaign!r} already"
        line = f"imported {self.written} rating(s) into campaign {self.campaign!r}"
        if self.unchanged:
            line += f" ({self.unchanged} already there)"
        if self.new_annotators:
            line += f"; new annotator(s): {', '.join(self.new_annotators)}"
        return line


def _read(path: Path) -> list[tuple[int, list[str]]]:
    """The file's records, each with the line it starts on. Strict CSV: a quote that is never
    closed, or text after a closing quote, is an error naming the line the record starts on."""
    try:
        raw = read_bytes(path, limit=MAX_TABLE_BYTES)  # bounded, and never a pipe or a device
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ImportFormatError(path, line, "not UTF-8 text") from None
    except LoadError as exc:
        raise ImportFormatError(path, None, str(exc)) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for fields in reader:
            rows.append((start, fields))
            start = reader.line_num + 1
    except csv.Error as exc:
        why = str(exc)
        if "unexpected end of data" in why:
            why = "a quoted field opened on this line is never closed (a '\"' is missing)"
        else:
            why = f"not valid CSV ({why})"
        raise ImportFormatError(path, start, why) from None
    return rows


@dataclass
class _Line:
    """One rating line of the file, checked on its own (no database)."""

    line: int
    rater: str
    code: str
    scores: dict[str, float]
    note: str | None


def _parse(path: Path, rows: list[tuple[int, list[str]]], sc: Any, codes: set[str], campaign: str) -> list[_Line]:
    """Every line's checks that need only the file and the campaign's fixed items and scale."""
    if not rows or tuple(h.strip() for h in rows[0][1]) != HEADER:
        got = ",".join(rows[0][1]) if rows else "an empty file"
        raise ImportFormatError(path, 1, f"the header must be {','.join(HEADER)} (got {_quoted(got)})")
    seen: dict[tuple[str, str], int] = {}
    out: list[_Line] = []
    for line, fields in rows[1:]:
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(HEADER):
            raise ImportFormatError(path, line, f"expected {len(HEADER)} fields ({','.join(HEADER)}), "
                                                f"got {len(fields)}")
        rater, code, score_text, note = (fields[0].strip(), fields[1].strip(), fields[2].strip(), fields[3])
        if not rater:
            raise ImportFormatError(path, line, "rater_id is empty")
        try:
            check_annotator_name(rater)
        except AnnotationError as exc:
            raise ImportFormatError(path, line, f"rater_id: {exc}") from None
        if not score_text:
            raise ImportFormatError(path, line, "score is empty")
        if code not in codes:
            raise ImportFormatError(path, line, f"item_id {_quoted(code)} is not an item of campaign {campaign!r}")
        try:
            scores = sc.parse_all(score_text)
        except ValueError as exc:
            raise ImportFormatError(path, line, f"score: {exc}") from None
        key = (rater, code)
        if key in seen:
            raise ImportFormatError(path, line, f"rater {rater!r} rated item {code} already on line {seen[key]}")
        seen[key] = line
        try:
            checked_note = check_note(note)
        except AnnotationError as exc:
            raise ImportFormatError(path, line, f"note: {exc}") from None
        out.append(_Line(line=line, rater=rater, code=code, scores=scores, note=checked_note))
    return out


def _quoted(text: str, limit: int = 40) -> str:
    """Text from the file quoted in a message: escaped (no control characters reach a terminal), cut."""
    return repr(text if len(text) <= limit else text[:limit] + "…")


def import_ratings_csv(store: Any, path: str | os.PathLike[str], *, campaign: str) -> RatingsImport:
    """Import a ratings CSV into a campaign, all or nothing (see the module's docstring).

    The file is checked on its own first; then, in one ``BEGIN IMMEDIATE`` transaction, every line
    is checked against the database (raters' kinds, ratings stored already) and written, each
    through the store's claim rule (:func:`db.annotation.item_has_room`): an item that would get
    more raters than the campaign's overlap — counting the annotators rating it right now (live
    leases) — refuses its line, and nothing is written. Two imports and any number of rating
    sessions can run at once: the write lock orders them, and each sees the others' places."""
    from db.annotation import AssignmentError, NoRoom, RaterKindError

    path = need_text_path(Path(path))  # its name is recorded with each rating
    try:
        c = get_campaign(store, campaign)
    except AnnotationError as exc:
        raise ImportFormatError(path, None, str(exc)) from None
    sc = campaign_scale(c)
    items = {it["code"]: it for it in store.campaign_items(int(c["id"]))}  # fixed when the campaign was made
    lines = _parse(path, _read(path), sc, set(items), c["name"])

    todo: list[dict[str, Any]] = []
    unchanged = 0
    new_annotators: list[str] = []
    with store.transaction():  # the checks below and the write see one state of the database
        stored: dict[tuple[str, str], dict[str, Any]] = {}
        for r in store.campaign_rating_rows(int(c["id"]), rater_kind=None):
            s = stored.setdefault((r["annotator"], r["code"]), {"scores": {}, "note": r["note"]})
            s["scores"][r["metric"]] = r["score"]
        kinds: dict[str, str | None] = {}
        for ln in lines:
            if ln.rater not in kinds:
                found = store.find_annotator(ln.rater)
                kinds[ln.rater] = None if found is None else found["kind"]
            if kinds[ln.rater] == "model":
                raise ImportFormatError(path, ln.line,
                                        f"rater {ln.rater!r} is registered as a model rater, not a human")
            before = stored.get((ln.rater, ln.code))
            if before is not None:
                if before["scores"] == ln.scores and (before["note"] or None) == ln.note:
                    unchanged += 1
                    continue
                raise ImportFormatError(path, ln.line, f"rater {ln.rater!r} has rated item {ln.code} already "
                                                       f"(score {sc.format(before['scores'])}); change it in the TUI "
                                                       "(edit keeps the history), not by import")
            todo.append({"line": ln.line, "rater": ln.rater, "code": ln.code, "item_id": int(items[ln.code]["id"]),
                         "note": ln.note, "scores": _score_rows(sc, ln.scores)})
        if todo:
            new_annotators = list(dict.fromkeys(t["rater"] for t in todo if kinds.get(t["rater"]) is None))
            ids = {r: int(store.ensure_annotator(r, "human")["id"]) for r in sorted({t["rater"] for t in todo})}
            try:
                store.import_campaign_ratings(int(c["id"]), (
                    {**t, "annotator_id": ids[t["rater"]], "rater_kind": "human"} for t in todo),
                    source=f"import:{path.name}")
            except NoRoom as exc:
                t = exc.row or {}
                now = f", {exc.leased} of them rating it now" if exc.leased else ""
                raise ImportFormatError(path, t.get("line"), f"item {exc.code} would have "
                                        f"{exc.done + exc.leased + 1} raters{now}; campaign {c['name']!r} has "
                                        f"overlap {exc.overlap}") from None
            except (AssignmentError, RaterKindError) as exc:  # pragma: no cover - checked above in this transaction
                raise ImportFormatError(path, None, str(exc)) from None
    return RatingsImport(campaign=c["name"], written=len(todo), unchanged=unchanged, new_annotators=new_annotators)


def _score_rows(sc: Any, scores: dict[str, float]) -> list[dict[str, Any]]:
    if sc.pairwise:
        m = sc.metrics[0]
        choice = {0: "tie", 1: "a", 2: "b"}[int(scores[m])]
        return [{"metric": m, "score": scores[m], "choice": choice}]
    return [{"metric": m, "score": scores[m]} for m in sc.metrics]


def ratings_csv_rows(store: Any, campaign: str) -> list[list[str]]:
    """The campaign's human ratings as CSV rows (header first), by item position then rater."""
    c = get_campaign(store, campaign)
    sc = campaign_scale(c)
    by: dict[tuple[int, str], dict[str, Any]] = {}
    for r in store.campaign_rating_rows(int(c["id"]), rater_kind="human"):
        entry = by.setdefault((r["position"], r["annotator"]), {"code": r["code"], "note": r["note"], "scores": {}})
        entry["scores"][r["metric"]] = r["score"]
    out = [list(HEADER)]
    for (_, rater), e in sorted(by.items()):  # printed to a terminal as well: no control sequences
        out.append([strip_control(rater), e["code"], sc.format(e["scores"]), strip_control(e["note"])])
    return out


def export_ratings_csv(store: Any, campaign: str, out: str | os.PathLike[str] | None = None) -> tuple[str, int]:
    """The campaign's human ratings as CSV text; written whole or not at all to ``out`` when given (a
    temporary file in the same folder, renamed when complete). Returns (text, number of ratings)."""
    rows = ratings_csv_rows(store, campaign)
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    text = buf.getvalue()
    if out is not None:
        path = Path(out)
        if not path.parent.is_dir():
            raise AnnotationError(f"folder {path.parent} does not exist")
        with atomic_file(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    return text, len(rows) - 1
