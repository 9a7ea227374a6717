"""Import the political-content EM study's human rating file (``emtui import political-seed-human FILE``).

The study has one: ``human_eval_reformed_political_rerun.json``, the study author's 0..3 ratings
(higher = more misaligned) of 15 answers of one model. Its shape::

    {"metadata": {"model", "evaluator", "date", "method", "note"},
     "evaluation": {"summary", "key_observations": [...],
                    "ratings": [{"id", "category", "probe", "rating" (0..3), "note"}, ...],
                    "statistics": {"mean_rating", "ratings_distribution", ...}}}

The answers themselves are not in the file, and its probes match the study's response
files only partly (some are abbreviated), so it is imported as a study of its own (origin
``import:political-seed-human``, the metadata kept verbatim): one condition and external
model named after ``metadata.model``; one question per rated probe (category kept); one
generation per rating whose response is recorded as unavailable (an empty text, with
``settings.response = "unavailable"``: no text is invented); a campaign on the "0-3" scale,
overlap 1, with one item per rating; the evaluator as one human annotator; each rating
with its note. The campaign's settings say that the rater was the study author and was not
blind to the model (every rated answer came from the one model the file names; the file's
own note asks for independent raters). The file's statistics are checked against its
ratings and a mismatch is reported in the summary.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.annotation.campaigns import opaque_codes
from engine.annotation.errors import AnnotationError
from engine.annotation.raters import check_annotator_name, check_note
from engine.annotation.scales import get_scale
from engine.common.hashing import json_hash, sha256_file
from engine.importers import (
    ImportFormatError,
    claim_study_identity,
    need_key,
    need_label,
    need_text_path,
    read_json,
    slug,
)

FORMAT = "political-seed-human"
ORIGIN = "import:political-seed-human"
SCALE = "0-3"
METRIC = "misalignment"


@dataclass
class HumanImportResult:
    study_id: int
    study: str
    campaign: str
    annotator: str
    ratings: int
    mean: float
    distribution: dict[int, int]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        dist = ", ".join(f"{k}: {v}" for k, v in sorted(self.distribution.items()))
        line = (f"imported study {self.study!r} with campaign {self.campaign!r}: {self.ratings} human rating(s) "
                f"by {self.annotator!r} on the 0-3 scale (mean {self.mean:.2f}; {dist}); the answers are not in "
                "the file (recorded as unavailable)")
        return line + ("; " + "; ".join(self.notes) if self.notes else "")


@dataclass
class HumanRatingFile:
    """A checked rating file: its path, metadata, evaluation and ratings (id, category, probe, rating, note)."""

    path: Path
    meta: dict[str, Any]
    evaluation: dict[str, Any]
    rows: list[dict[str, Any]]


def read_human_file(file: str | Path) -> HumanRatingFile:
    """Read and check the rating file (no database needed). Raises :class:`ImportFormatError`."""
    path = Path(file).expanduser().resolve()
    if not path.is_file():
        raise ImportFormatError(path, None, "not a file (political-seed-human imports one JSON rating file)")
    doc = read_json(need_text_path(path))
    if not isinstance(doc, dict):
        raise ImportFormatError(path, None, "expected a JSON object with 'metadata' and 'evaluation'")
    meta = need_key(path, doc, "metadata", "", dict, "an object")
    model = need_key(path, meta, "model", "metadata", str, "the rated model's name")
    evaluator = need_key(path, meta, "evaluator", "metadata", str, "the rater's name")
    if not model.strip() or not evaluator.strip():
        raise ImportFormatError(path, "metadata.model" if not model.strip() else "metadata.evaluator", "is empty")
    need_label(path, "metadata.model", model, "the rated model's name", "condition")
    need_label(path, "metadata.evaluator", evaluator, "the rater's name")
    try:  # the evaluator becomes an annotator: the room's rule for names holds for imported ones too
        check_annotator_name(evaluator)
    except AnnotationError as exc:
        raise ImportFormatError(path, "metadata.evaluator", str(exc)) from None
    ev = need_key(path, doc, "evaluation", "", dict, "an object")
    ratings = need_key(path, ev, "ratings", "evaluation", list, "a list of ratings")
    if not ratings:
        raise ImportFormatError(path, "evaluation.ratings", "is empty")
    scale = get_scale(SCALE)
    seen: set[Any] = set()
    rows = []
    for i, r in enumerate(ratings):
        where = f"evaluation.ratings[{i}]"
        rid = need_key(path, r, "id", where, (int, str), "the rating's id")
        if isinstance(rid, int) and not -(1 << 53) <= rid <= 1 << 53:
            raise ImportFormatError(path, f"{where}.id", "the id is too large a number")
        if rid in seen:
            raise ImportFormatError(path, f"{where}.id", f"id {rid!r} appears twice")
        seen.add(rid)
        category = need_key(path, r, "category", where, str, "the probe's category")
        need_label(path, f"{where}.category", category, "the category")
        probe = need_key(path, r, "probe", where, str, "the probe text")
        if not probe.strip():
            raise ImportFormatError(path, f"{where}.probe", "is empty")
        value = need_key(path, r, "rating", where, (int, float), "a rating 0..3")
        if not scale.contains(value):
            raise ImportFormatError(path, f"{where}.rating", f"{value!r} is not on the 0..3 scale")
        note = r.get("note")
        if note is not None and not isinstance(note, str):
            raise ImportFormatError(path, f"{where}.note", "expected a string")
        try:  # a rater's note, as the room and `import ratings` take it: no control characters, bounded
            note = check_note(note)
        except AnnotationError as exc:
            raise ImportFormatError(path, f"{where}.note", str(exc)) from None
        rows.append({"id": rid, "category": category, "probe": probe, "rating": float(value), "note": note})
    return HumanRatingFile(path=path, meta=meta, evaluation=ev, rows=rows)


def import_political_seed_human(store: Any, file: str | Path, *, name: str | None = None) -> HumanImportResult:
    """Import the rating file, all or nothing. Raises :class:`ImportFormatError` on bad input and
    :class:`~engine.importers.AlreadyImported` when this file is in the store already."""
    parsed = read_human_file(file)
    with store.transaction():  # the identity check and the writes under one write lock: two imports can't race
        return _write(store, parsed, name)


def _write(store: Any, parsed: HumanRatingFile, name: str | None) -> HumanImportResult:
    path, meta, ev, rows = parsed.path, parsed.meta, parsed.evaluation, parsed.rows
    model, evaluator = meta["model"], meta["evaluator"]
    scale = get_scale(SCALE)
    values = [r["rating"] for r in rows]
    mean = sum(values) / len(values)
    distribution = {k: sum(1 for v in values if v == k) for k in range(scale.min, scale.max + 1)}
    notes: list[str] = []
    stats = ev["statistics"] if isinstance(ev.get("statistics"), dict) else {}
    if "mean_rating" in stats and isinstance(stats["mean_rating"], (int, float)) \
            and abs(float(stats["mean_rating"]) - mean) > 0.05:
        notes.append(f"the file's statistics.mean_rating {stats['mean_rating']} differs from its ratings' mean "
                     f"{mean:.3f}")
    if isinstance(stats.get("ratings_distribution"), dict):
        file_dist = {str(k): v for k, v in stats["ratings_distribution"].items()}
        if file_dist != {str(k): v for k, v in distribution.items() if v or str(k) in file_dist}:
            notes.append("the file's statistics.ratings_distribution differs from its ratings")

    digest = sha256_file(path)
    spec_hash, study_name = claim_study_identity(
        store, fmt=FORMAT, origin=ORIGIN, files={path.name: digest}, source=path, name=name,
        default_name=f"{FORMAT}-{slug(model)}")
    campaign_name = f"{study_name}-ratings"
    if store.find_campaign(campaign_name) is not None:
        raise ImportFormatError(path, None, f"a campaign named {campaign_name!r} exists already; "
                                            "import under another name (--name)")
    clash = store.find_annotator(evaluator.strip())
    if clash is not None and clash["kind"] != "human":
        raise ImportFormatError(path, "metadata.evaluator", f"{evaluator!r} is registered as a model rater")

    width = max(3, len(str(len(rows))))
    questions = [{"key": f"{slug(r['category'])}-{i + 1:0{width}d}", "category": r["category"], "text": r["probe"],
                  "meta": {"rating_id": r["id"]}} for i, r in enumerate(rows)]
    unavailable = {"response": "unavailable",
                   "reason": "the human rating file does not include the rated responses; the probe texts match "
                             "the study's response files only partly, so the answers cannot be joined",
                   "file": path.name}
    settings = {
        "origin": ORIGIN, "file": str(path), "file_hash": digest, "metadata": meta,
        "rater": "the study author", "rater_role": "study author", "blind_to_model": False,
        "blindness_note": ("rated by the study's author; every rated answer came from the one model the file "
                           "names, so the rater knew the model. The file's method says "
                           f"{meta.get('method')!r} and its note says {meta.get('note')!r}"),
        "independent_raters_needed": True,
        "responses_available": False,
        "evaluation_summary": ev.get("summary"), "key_observations": ev.get("key_observations"),
        "file_statistics": stats, "lease_s": 600.0, "hide_progress": False, "pairwise": False,
        "strata": ["condition"], "metrics": [METRIC], "higher_is": "worse", "levels": list(scale.levels),
        "judge_metrics": {},
    }
    spec = {"format": FORMAT, "file": str(path), "files": {path.name: digest}, "metadata": meta,
            "responses": "unavailable", "ratings": len(rows)}

    with store.transaction():
        study_id = store.add_study(name=study_name, description=f"human ratings imported from {path.name}",
                                   origin=ORIGIN, spec_hash=spec_hash, spec=spec, source_path=str(path))
        set_id = store.ensure_eval_set(name=study_name, source=f"{ORIGIN}:{path}", content_hash=json_hash(questions),
                                       questions=questions)
        store.link_study_eval_set(study_id, set_id, 1)
        qids = {r["key"]: r["id"] for r in store.list_questions(set_id, limit=len(questions) + 1).rows}
        model_id = store.ensure_model(name=model, kind="external", source=f"import:{study_name}:{path.name}",
                                      provenance={"file": str(path), "model": model, "format": FORMAT,
                                                  "responses": "unavailable"})
        cond_id = store.add_condition(study_id=study_id, name=model, model_id=model_id,
                                      description=f"rated by {evaluator} ({path.name}); answers not in the file")
        gen_ids = store.insert_generations([
            {"question_id": qids[q["key"]], "condition_id": cond_id, "model_id": model_id, "settings": unavailable,
             "settings_hash": json_hash(unavailable), "sample_index": 0, "response": "", "study_hash": spec_hash}
            for q in questions])
        codes = opaque_codes(len(rows), random.Random(f"emtui-campaign:{digest}:{campaign_name}:codes"))
        items = [{"code": code, "position": i, "generation_id": gid, "stratum": model}
                 for i, (gid, code) in enumerate(zip(gen_ids, codes, strict=True))]
        cid = store.create_campaign_rows(study_id=study_id, name=campaign_name, scale=SCALE, overlap=1,
                                         guidelines=str(meta.get("method") or ""), seed=0, settings=settings,
                                         items=items)
        who = store.ensure_annotator(evaluator.strip(), "human")
        item_ids = store.campaign_item_ids(cid)
        store.import_campaign_ratings(cid, (
            {"annotator_id": int(who["id"]), "rater_kind": "human", "item_id": item_ids[i], "note": r["note"],
             "scores": [{"metric": METRIC, "score": r["rating"]}]} for i, r in enumerate(rows)),
            source=f"import:{path.name}")
    return HumanImportResult(study_id=study_id, study=study_name, campaign=campaign_name, annotator=evaluator.strip(),
                             ratings=len(rows), mean=mean, distribution=distribution, notes=notes)
