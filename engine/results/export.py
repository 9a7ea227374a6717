"""Every answer with its provenance and every score, as JSON Lines, CSV or Parquet (``emtui export``).

One record per answer (generation):

- provenance: ``generation_id``, ``study``, ``study_hash``, ``condition``, ``model``, ``model_kind``,
  ``model_source``, ``checkpoint_step``, ``checkpoint_path``, ``settings`` (an object in JSON Lines,
  canonical JSON text in CSV / Parquet), ``settings_hash``, ``seed``, ``sample_index``, ``variant`` (empty, or
  ``trigger`` for the answer to the question with the study's trigger), ``eval_set``,
  ``question_key``, ``paraphrase``, ``category``, ``system_prompt``, ``question``, ``prompt``,
  ``response``, ``n_tokens``, ``created_at``;
- ``score.<judge model>.<metric>``: one column per judge × metric found among the exported answers
  (empty / null when that judge has no score for the answer: a missing score is never a zero).
  A judge model used by two judges (other parameters) is written ``<model>#<judge id>``; a metric
  scored under two rubrics by one judge, ``<metric>@<rubric>``;
- ``rating.<annotator>.<metric>``: the ratings' scores, one column per annotator × metric (none
  until ratings exist);
- JSON Lines only: ``judgments``, the full record of each judgment (judge provider / model / params
  hash, rubric name and content hash, status, error, raw output, per-metric score and raw), and
  ``ratings``, every rating (an empty list until there are any).

The same columns, in the same order, in all three formats. Answers are read in pages (keyset by
generation id), so a million answers never sit in memory at once. Written to a file, the output
appears whole or not at all: a temporary file in the same folder, renamed when complete.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from engine.common.atomic import atomic_file
from engine.common.safe_load import LoadError, json_loads
from engine.common.text import json_safe, strip_control

FORMATS = ("jsonl", "csv", "parquet")
PAGE_SIZE = 500
PARQUET_ROW_GROUP = 10_000  # rows buffered per Parquet row group
PROVENANCE = ("generation_id", "study", "study_hash", "condition", "model", "model_kind", "model_source",
              "checkpoint_step", "checkpoint_path", "settings", "settings_hash", "seed", "sample_index", "variant",
              "eval_set", "question_key", "paraphrase", "category", "system_prompt", "question", "prompt",
              "response", "n_tokens", "created_at")
INT_COLUMNS = frozenset({"generation_id", "checkpoint_step", "seed", "sample_index", "paraphrase", "n_tokens"})
PARQUET_HINT = "parquet needs pyarrow: pip install pyarrow"


class ExportError(ValueError):
    """An export that cannot run (bad destination, missing library): a one-line message."""


@dataclass(frozen=True)
class Columns:
    """The export's columns: the provenance, then ``score.*`` and ``rating.*``."""

    scores: dict[tuple[int, int, str], str]  # (judge id, rubric id, metric) -> column
    ratings: dict[tuple[int, str], str]      # (annotator id, metric) -> column

    @property
    def names(self) -> list[str]:
        return [*PROVENANCE, *dict.fromkeys(self.scores.values()), *dict.fromkeys(self.ratings.values())]


def columns_for(store: Any, study_id: int | None) -> Columns:
    keys = store.export_score_keys(study_id)
    models: dict[str, set[int]] = {}
    rubrics: dict[tuple[int, str], set[int]] = {}
    for k in keys:
        models.setdefault(k["judge_model"], set()).add(k["judge_id"])
        rubrics.setdefault((k["judge_id"], k["metric"]), set()).add(k["rubric_id"])
    scores = {}
    for k in keys:
        judge = k["judge_model"] if len(models[k["judge_model"]]) == 1 else f"{k['judge_model']}#{k['judge_id']}"
        metric = k["metric"] if len(rubrics[(k["judge_id"], k["metric"])]) == 1 else f"{k['metric']}@{k['rubric']}"
        scores[(k["judge_id"], k["rubric_id"], k["metric"])] = f"score.{judge}.{metric}"
    names: dict[str, set[int]] = {}
    rkeys = store.export_rating_keys(study_id)
    for k in rkeys:
        names.setdefault(k["annotator"], set()).add(k["annotator_id"])
    ratings = {}
    for k in rkeys:
        who = k["annotator"] if len(names[k["annotator"]]) == 1 else f"{k['annotator']}#{k['annotator_id']}"
        ratings[(k["annotator_id"], k["metric"])] = f"rating.{who}.{k['metric']}"
    return Columns(scores, ratings)


def iter_records(store: Any, *, study_id: int | None = None, columns: Columns | None = None,
                 page_size: int = PAGE_SIZE, detail: bool = True) -> Iterator[list[dict[str, Any]]]:
    """Pages of export records, in generation id order. ``detail`` (JSON Lines): ``settings`` parsed,
    and the ``judgments`` and ``ratings`` lists; without it (CSV, Parquet) only the columns, with
    ``settings`` as its stored canonical JSON text."""
    columns = columns or columns_for(store, study_id)
    extra = columns.names[len(PROVENANCE):]
    after = 0
    while True:
        page = store.export_answers_page(study_id=study_id, after_id=after, limit=page_size)
        if not page:
            return
        after = page[-1]["generation_id"]
        ids = [r["generation_id"] for r in page]
        recs: dict[int, dict[str, Any]] = {}
        for row in page:
            rec = {k: row[k] for k in PROVENANCE}
            rec.update(dict.fromkeys(extra))
            if detail:
                rec["settings"] = _json_or_text(row["settings"])
                rec["judgments"], rec["ratings"] = [], []
            recs[row["generation_id"]] = rec
        if detail:
            for j in store.export_judgments(ids):
                rec = recs[j["generation_id"]]
                for s in j["scores"]:
                    col = columns.scores.get((j["judge_id"], j["rubric_id"], s["metric"]))
                    if col is not None:
                        rec[col] = s["score"]
                rec["judgments"].append({
                    "judgment_id": j["judgment_id"],
                    "judge": {"id": j["judge_id"], "name": j["judge"], "provider": j["judge_provider"],
                              "model": j["judge_model"], "params_hash": j["judge_params_hash"]},
                    "rubric": {"id": j["rubric_id"], "name": j["rubric"], "content_hash": j["rubric_hash"]},
                    "status": j["status"], "error": j["error"], "raw_output": j["raw_output"],
                    "created_at": j["created_at"],
                    "scores": {s["metric"]: s["score"] for s in j["scores"]},
                    "raw": {s["metric"]: s["raw"] for s in j["scores"]}})
        else:
            for gid, judge_id, rubric_id, metric, score in store.export_scores(ids):
                col = columns.scores.get((judge_id, rubric_id, metric))
                if col is not None:
                    recs[gid][col] = score
        for r in store.export_ratings(ids):
            rec = recs[r["generation_id"]]
            col = columns.ratings.get((r["annotator_id"], r["metric"]))
            if col is not None and r["score"] is not None:
                rec[col] = r["score"]
            if detail:
                rec["ratings"].append({k: r[k] for k in ("rating_id", "annotator", "rater_kind", "campaign", "metric",
                                                         "score", "note", "flagged", "source", "created_at")})
        yield list(recs.values())


def _json_or_text(text: str | None) -> Any:
    """Stored JSON as its value; text that is not JSON, or holds NaN / infinities (which JSON Lines
    cannot carry), verbatim as a string."""
    if text is None:
        return None
    try:
        return json_loads(text)
    except LoadError:
        return text


def _check_parquet() -> None:
    try:
        import pyarrow.parquet  # noqa: F401  (imports pyarrow too)
    except ImportError:
        raise ExportError(PARQUET_HINT) from None


@dataclass
class ExportResult:
    rows: int
    columns: list[str]
    path: Path | None


def export_answers(store: Any, fmt: str, *, out: str | os.PathLike[str] | None = None,
                   study: str | None = None, stream: IO[Any] | None = None,
                   page_size: int = PAGE_SIZE) -> ExportResult:
    """Write every answer (of ``study``, or all) to ``out`` (atomically) or to ``stream``
    (text for jsonl/csv, binary for parquet; default standard output)."""
    import sys

    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r} (formats: {', '.join(FORMATS)})")
    if fmt == "parquet":
        _check_parquet()
    study_id = None
    if study is not None:
        row = store.find_study(study)
        if row is None:
            raise ExportError(f"no study named {study!r} in {store.path}")
        study_id = int(row["id"])
    columns = columns_for(store, study_id)
    if out is None:
        if fmt == "parquet" and stream is None and sys.stdout.isatty():  # binary bytes would drive the terminal
            raise ExportError("parquet is binary: give --out FILE (or redirect standard output to a file)")
        target = stream if stream is not None else (sys.stdout.buffer if fmt == "parquet" else sys.stdout)
        n = _write(store, fmt, target, study_id, columns, page_size)
        target.flush()
        return ExportResult(n, columns.names, None)

    path = Path(out).expanduser()
    if path.is_dir():
        raise ExportError(f"--out {path} is a folder; name a file")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ExportError(f"cannot write {path}: folder {folder} does not exist")
    mode = {"mode": "wb"} if fmt == "parquet" else {"mode": "w", "encoding": "utf-8", "newline": ""}
    try:
        with atomic_file(path, **mode) as fh:
            n = _write(store, fmt, fh, study_id, columns, page_size)
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return ExportResult(n, columns.names, path)


def _write(store: Any, fmt: str, target: IO[Any], study_id: int | None, columns: Columns, page_size: int) -> int:
    names = columns.names
    pages = iter_records(store, study_id=study_id, columns=columns, page_size=page_size, detail=fmt == "jsonl")
    n = 0
    if fmt == "jsonl":
        for page in pages:
            target.write("".join(json_safe(json.dumps(rec, ensure_ascii=False, allow_nan=False)) + "\n"
                                 for rec in page))
            n += len(page)
    elif fmt == "csv":
        # CSV is read by people and spreadsheets: terminal control sequences and bidirectional
        # overrides are stripped from every text cell (JSON Lines keeps the exact text, escaped)
        w = csv.writer(target, lineterminator="\n")
        w.writerow([strip_control(c) for c in names])
        for page in pages:
            w.writerows([("" if (v := rec[k]) is None else strip_control(v) if isinstance(v, str) else v)
                         for k in names] for rec in page)
            n += len(page)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, pa.int64() if c in INT_COLUMNS else pa.float64()
                             if c.startswith(("score.", "rating.")) else pa.string()) for c in names])
        sink = pa.PythonFile(target, mode="w")
        with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
            batch: list[dict[str, Any]] = []
            for page in pages:
                batch.extend(page)
                n += len(page)
                if len(batch) >= PARQUET_ROW_GROUP:
                    writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                    batch = []
            if batch or n == 0:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return n
