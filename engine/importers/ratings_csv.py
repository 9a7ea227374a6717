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

An import checks every line before it writes anything (unknown item code, a score outside
the scale, the same rater and item twice, a rater who is a model, an item that would get
more raters than the campaign's overlap, a rating that differs from one already stored)
and reports the first problem as one line naming the file and the line. A line whose
rating is stored already with the same score and note is left as it is, so importing the
same file again is a no-op.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.atomic import atomic_file
from engine.annotation import AnnotationError, campaign_scale, get_campaign
from engine.importers import ImportFormatError

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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise ImportFormatError(path, line, "not UTF-8 text") from None
    except OSError as exc:
        raise ImportFormatError(path, None, f"cannot read ({exc.strerror or exc})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            rows.append((reader.line_num, fields))
    except csv.Error as exc:
        raise ImportFormatError(path, reader.line_num, f"not valid CSV ({exc})") from None
    return rows


def import_ratings_csv(store: Any, path: str | os.PathLike[str], *, campaign: str) -> RatingsImport:
    """Import a ratings CSV into a campaign, all or nothing (see the module's docstring)."""
    path = Path(path)
    try:
        c = get_campaign(store, campaign)
    except AnnotationError as exc:
        raise ImportFormatError(path, None, str(exc)) from None
    sc = campaign_scale(c)
    rows = _read(path)
    if not rows or tuple(h.strip() for h in rows[0][1]) != HEADER:
        got = ",".join(rows[0][1]) if rows else "an empty file"
        raise ImportFormatError(path, 1, f"the header must be {','.join(HEADER)} (got {got!r})")
    items = {it["code"]: it for it in store.campaign_items(int(c["id"]))}
    stored: dict[tuple[str, str], dict[str, Any]] = {}
    for r in store.campaign_rating_rows(int(c["id"]), rater_kind=None):
        s = stored.setdefault((r["annotator"], r["code"]), {"scores": {}, "note": r["note"], "kind": r["rater_kind"]})
        s["scores"][r["metric"]] = r["score"]
    done = store.item_done_counts(int(c["id"]), rater_kind="human")
    seen: dict[tuple[str, str], int] = {}
    new_per_item: dict[str, set[str]] = {}
    kinds: dict[str, str | None] = {}
    todo: list[dict[str, Any]] = []
    unchanged = 0
    for line, fields in rows[1:]:
        if not fields or all(not f.strip() for f in fields):
            continue
        if len(fields) != len(HEADER):
            raise ImportFormatError(path, line, f"expected {len(HEADER)} fields ({','.join(HEADER)}), "
                                                f"got {len(fields)}")
        rater, code, score_text, note = (fields[0].strip(), fields[1].strip(), fields[2].strip(), fields[3])
        if not rater:
            raise ImportFormatError(path, line, "rater_id is empty")
        if not score_text:
            raise ImportFormatError(path, line, "score is empty")
        if code not in items:
            raise ImportFormatError(path, line, f"item_id {code!r} is not an item of campaign {c['name']!r}")
        try:
            scores = sc.parse_all(score_text)
        except ValueError as exc:
            raise ImportFormatError(path, line, f"score: {exc}") from None
        key = (rater, code)
        if key in seen:
            raise ImportFormatError(path, line, f"rater {rater!r} rated item {code} already on line {seen[key]}")
        seen[key] = line
        if rater not in kinds:
            found = store.find_annotator(rater)
            kinds[rater] = None if found is None else found["kind"]
        if kinds[rater] == "model":
            raise ImportFormatError(path, line, f"rater {rater!r} is registered as a model rater, not a human")
        note = note.strip() or None
        before = stored.get(key)
        if before is not None:
            if before["scores"] == scores and (before["note"] or None) == note:
                unchanged += 1
                continue
            was = sc.format(before["scores"])
            raise ImportFormatError(path, line, f"rater {rater!r} has rated item {code} already (score {was}); "
                                                "change it in the TUI (edit keeps the history), not by import")
        new_per_item.setdefault(code, set()).add(rater)
        item = items[code]
        n = done.get(int(item["id"]), 0) + len(new_per_item[code])
        if n > int(c["overlap"]):
            raise ImportFormatError(path, line, f"item {code} would have {n} raters; campaign {c['name']!r} "
                                                f"has overlap {c['overlap']}")
        todo.append({"rater": rater, "item_id": int(item["id"]), "note": note, "scores": _score_rows(sc, scores)})

    new_annotators = list(dict.fromkeys(t["rater"] for t in todo if kinds.get(t["rater"]) is None))
    if todo:
        with store.transaction():
            ids = {r: int(store.ensure_annotator(r, "human")["id"]) for r in sorted({t["rater"] for t in todo})}
            store.import_campaign_ratings(int(c["id"]), (
                {"annotator_id": ids[t["rater"]], "rater_kind": "human", "item_id": t["item_id"], "note": t["note"],
                 "scores": t["scores"]} for t in todo), source=f"import:{path.name}")
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
    for (_, rater), e in sorted(by.items()):
        out.append([rater, e["code"], sc.format(e["scores"]), e["note"] or ""])
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
