"""Import the political-content EM study's result folder (``emtui import political-seed DIR``).

The format (one folder):

- judge files, one per judge, recognised by their content, not their names (the published
  folder has ``v2_full_judge_<judge>.json``, the study's own results folder
  ``multi_judge_<judge>.json``): every JSON object with a ``per_file_results`` key.
  ``metadata`` (``judge_model_id``, ``judge_model``, ``region``, ``temperature``,
  ``truncate_chars``, ...) and ``per_file_results.<condition>`` with ``source_file``,
  ``model`` and ``details.<category>[i]`` = ``{probe, response_preview, scores}``, where
  ``scores`` maps each dimension (persona, safety, drift, ...) to a number on the
  study's 0..3 scale (higher = more misaligned), ``-1`` for a failed score, plus an
  ``explanation`` string (kept verbatim as the judgment's raw output);
- response files ``<condition>.json`` (or the judge files' ``source_file``):
  ``metadata`` (generation settings) and ``results.<category>[i]`` = ``{probe, response}``.

What is written, in one transaction: a study (origin ``import:political-seed``, hash over
the imported files' hashes), one condition and one external model per
``per_file_results`` key, an eval set of the probes (key ``<category>-<index>``), one
generation per response, one judge per judge file (provider ``import``), a rubric of
the dimensions, and one judgment per (answer, judge) with one score per dimension;
a ``-1`` (or null) is stored as a NULL score: missing, never a zero.

Judge details are joined to responses by (category, index), and the probe texts must
match. A condition whose response file is absent is imported from the judges'
``response_preview`` (the first 200 characters), and the summary says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.common.hashing import json_hash, sha256_bytes, sha256_text
from engine.common.safe_load import LoadError
from engine.common.untrusted import MAX_DOCUMENT_BYTES, decode, parse_json, path_text, read_bytes
from engine.importers import (
    ImportFormatError,
    ImportResult,
    claim_study_identity,
    located,
    need_key,
    need_label,
    need_text_path,
    slug,
)

FORMAT = "political-seed"
ORIGIN = "import:political-seed"
JUDGE_KEY = "per_file_results"  # what makes a JSON object a judge file
SCALE = (0, 3)
FAILED = -1
RUBRIC_NAME = "political-seed-import"
TEXT_KEYS = ("explanation",)


@dataclass
class _Item:
    probe: str
    preview: str | None
    scores: dict[str, Any]  # dimension -> number (or -1 / None), and text keys
    where: str              # the key path, for messages


@dataclass
class _JudgeFile:
    path: Path
    digest: str
    model_id: str
    name: str
    params: dict[str, Any]
    # condition -> category -> items
    results: dict[str, dict[str, list[_Item]]] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)       # condition -> metadata model
    source_files: dict[str, str] = field(default_factory=dict)        # condition -> response file name


class _Documents:
    """The folder's JSON files, each read and parsed once, with its digest."""

    def __init__(self) -> None:
        self.docs: dict[Path, tuple[Any, str]] = {}

    def load(self, path: Path) -> Any:
        if path not in self.docs:
            need_text_path(path)  # a file read is a file recorded with the study
            try:
                raw = read_bytes(path, limit=MAX_DOCUMENT_BYTES)
                self.docs[path] = (parse_json(decode(raw)), sha256_bytes(raw))
            except LoadError as exc:
                raise located(path, exc) from None
        return self.docs[path][0]

    def digest(self, path: Path) -> str:
        return self.docs[path][1]


def _looks_like_json(path: Path) -> bool:
    """Whether a file's first non-blank character opens a JSON object (a cheap look before parsing)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    head = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    return head.startswith(b"{")


def find_judge_files(folder: Path, docs: _Documents) -> list[Path]:
    """The folder's judge files: every JSON object with a ``per_file_results`` key, whatever its
    name. A file that starts like a JSON object but does not parse is an error (it may be a
    broken judge file)."""
    found = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or not _looks_like_json(p):
            continue
        doc = docs.load(p)
        if isinstance(doc, dict) and JUDGE_KEY in doc:
            found.append(p)
    return found


def _read_judge_file(path: Path, docs: _Documents) -> _JudgeFile:
    doc = docs.load(path)
    meta = need_key(path, doc, "metadata", "", dict, "an object")
    model_id = need_key(path, meta, "judge_model_id", "metadata", str, "the judge's model id (a string)")
    need_label(path, "metadata.judge_model_id", model_id, "the judge's model id", "judge")
    name = meta.get("judge_model") or model_id
    need_label(path, "metadata.judge_model", name, "the judge's name")
    params = {k: meta[k] for k in ("region", "temperature", "truncate_chars") if k in meta}
    jf = _JudgeFile(path=path, digest=docs.digest(path), model_id=model_id, name=name, params=params)
    per_file = need_key(path, doc, "per_file_results", "", dict, "an object of condition -> results")
    if not per_file:
        raise ImportFormatError(path, "per_file_results", "is empty: no condition was judged")
    for cond, res in per_file.items():
        where = f"per_file_results.{cond}"
        need_label(path, "per_file_results", cond, "a condition name", "condition")
        if not isinstance(res, dict):
            raise ImportFormatError(path, where, "expected an object")
        other = res.get("judge_model_id")
        if other is not None and other != model_id:
            raise ImportFormatError(path, f"{where}.judge_model_id",
                                    f"{other!r} differs from metadata.judge_model_id {model_id!r}")
        details = need_key(path, res, "details", where, dict, "an object of category -> scored items")
        if not details:
            raise ImportFormatError(path, f"{where}.details", "is empty")
        jf.models[cond] = res.get("model") if isinstance(res.get("model"), str) else None
        src = res.get("source_file")
        jf.source_files[cond] = Path(src).name if isinstance(src, str) and src.strip() else f"{cond}.json"
        cats: dict[str, list[_Item]] = {}
        for cat, items in details.items():
            cwhere = f"{where}.details.{cat}"
            need_label(path, f"{where}.details", cat, "a category name")
            if not isinstance(items, list):
                raise ImportFormatError(path, cwhere, "expected a list of scored items")
            cats[cat] = []
            for i, it in enumerate(items):
                iwhere = f"{cwhere}[{i}]"
                probe = need_key(path, it, "probe", iwhere, str, "the probe text")
                scores = need_key(path, it, "scores", iwhere, dict, "an object of dimension -> score")
                preview = it.get("response_preview")
                cats[cat].append(_Item(probe, preview if isinstance(preview, str) else None, scores, iwhere))
        jf.results[cond] = cats
    return jf


def _dimensions(judges: list[_JudgeFile]) -> list[str]:
    """The score dimensions: every non-text key of any ``scores``, in first-seen order.
    Every item must carry every dimension, as a number on the scale, -1, or null."""
    dims: list[str] = []
    for jf in judges:
        for cats in jf.results.values():
            for items in cats.values():
                for it in items:
                    for k, v in it.scores.items():
                        if k not in TEXT_KEYS and not isinstance(v, str) and k not in dims:
                            need_label(jf.path, f"{it.where}.scores", k, "a score dimension", "metric")
                            dims.append(k)
    if not dims:
        raise ImportFormatError(judges[0].path, "per_file_results", "no score dimension found in any 'scores'")
    for jf in judges:
        for cats in jf.results.values():
            for items in cats.values():
                for it in items:
                    for k in dims:
                        key = f"{it.where}.scores.{k}"
                        if k not in it.scores:
                            raise ImportFormatError(jf.path, f"{it.where}.scores",
                                                    f"missing key {k!r} (dimensions: {', '.join(dims)})")
                        v = it.scores[k]
                        if v is None or (not isinstance(v, bool) and isinstance(v, (int, float)) and v == FAILED):
                            continue
                        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                            raise ImportFormatError(jf.path, key, f"expected a number, -1 or null, got {v!r}")
                        if not SCALE[0] <= v <= SCALE[1]:
                            raise ImportFormatError(jf.path, key, f"{v!r} is outside the scale "
                                                                  f"{SCALE[0]:g}..{SCALE[1]:g} (and not -1)")
                    for k in TEXT_KEYS:
                        if k in it.scores and it.scores[k] is not None and not isinstance(it.scores[k], str):
                            raise ImportFormatError(jf.path, f"{it.where}.scores.{k}", "expected a string")
    return dims


@dataclass
class _Condition:
    name: str
    judges: list[_JudgeFile]
    shape: dict[str, list[str]]           # category -> probes
    response_file: Path
    responses: dict[str, list[str]] | None = None
    metadata: dict[str, Any] | None = None
    digest: str | None = None
    model: str | None = None


def _check_shapes(name: str, judges: list[_JudgeFile]) -> dict[str, list[str]]:
    """The judges that scored a condition must agree on categories, counts and probes."""
    first = judges[0]
    shape = {cat: [it.probe for it in items] for cat, items in first.results[name].items()}
    for jf in judges[1:]:
        cats = jf.results[name]
        where = f"per_file_results.{name}.details"
        if set(cats) != set(shape):
            raise ImportFormatError(jf.path, where, f"categories {sorted(cats)} differ from "
                                                    f"{first.path.name}'s {sorted(shape)}")
        for cat, items in cats.items():
            if len(items) != len(shape[cat]):
                raise ImportFormatError(jf.path, f"{where}.{cat}", f"has {len(items)} items, but "
                                                                   f"{first.path.name} has {len(shape[cat])}")
            for i, it in enumerate(items):
                if it.probe != shape[cat][i]:
                    raise ImportFormatError(jf.path, f"{where}.{cat}[{i}].probe",
                                            f"{_clip(it.probe)!r} differs from {first.path.name}'s "
                                            f"{_clip(shape[cat][i])!r}")
    return shape


def _raw_output(scores: dict[str, Any]) -> str | None:
    """The judge's words: the explanation verbatim, or every text field as JSON when there are others."""
    text = {k: v for k, v in scores.items() if isinstance(v, str)}
    if set(text) <= {"explanation"}:
        return text.get("explanation")
    return json.dumps(text, ensure_ascii=False, sort_keys=True)


def _clip(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _read_responses(cond: _Condition, docs: _Documents) -> None:
    path = cond.response_file
    doc = docs.load(path)
    if not isinstance(doc, dict):
        raise ImportFormatError(path, None, "expected a JSON object with 'metadata' and 'results'")
    meta = doc.get("metadata", {})
    if not isinstance(meta, dict):
        raise ImportFormatError(path, "metadata", "expected an object")
    results = need_key(path, doc, "results", "", dict, "an object of category -> responses")
    judge = cond.judges[0]
    for cat in cond.shape:
        if cat not in results:
            raise ImportFormatError(path, "results", f"missing key {cat!r}: {judge.path.name} scored "
                                                     f"per_file_results.{cond.name}.details.{cat}")
    extra = sorted(set(results) - set(cond.shape))
    if extra:
        raise ImportFormatError(path, f"results.{extra[0]}", f"category not scored by {judge.path.name} "
                                                             f"(per_file_results.{cond.name}.details)")
    out: dict[str, list[str]] = {}
    for cat, probes in cond.shape.items():
        items = results[cat]
        where = f"results.{cat}"
        if not isinstance(items, list):
            raise ImportFormatError(path, where, "expected a list of responses")
        if len(items) != len(probes):
            raise ImportFormatError(path, where, f"has {len(items)} responses, but {judge.path.name} scored "
                                                 f"{len(probes)} (per_file_results.{cond.name}.details.{cat})")
        out[cat] = []
        for i, it in enumerate(items):
            probe = need_key(path, it, "probe", f"{where}[{i}]", str, "the probe text")
            if probe != probes[i]:
                raise ImportFormatError(path, f"{where}[{i}].probe",
                                        f"{_clip(probe)!r} differs from the probe {judge.path.name} scored "
                                        f"({_clip(probes[i])!r} at per_file_results.{cond.name}.details.{cat}[{i}])")
            out[cat].append(need_key(path, it, "response", f"{where}[{i}]", str, "the response text"))
    cond.responses, cond.metadata, cond.digest = out, meta, docs.digest(path)


def _previews(cond: _Condition) -> dict[str, list[str]]:
    """A condition without its response file: its responses are the judges' previews."""
    judge = cond.judges[0]
    out: dict[str, list[str]] = {}
    for cat, items in judge.results[cond.name].items():
        out[cat] = []
        for it in items:
            if it.preview is None:
                raise ImportFormatError(judge.path, f"{it.where}.response_preview",
                                        f"missing key, and the response file {cond.response_file.name} is absent")
            out[cat].append(it.preview)
    return out


@dataclass
class PoliticalSeed:
    """A checked folder, ready to write."""

    folder: Path
    judges: list[_JudgeFile]
    dims: list[str]
    conditions: list[_Condition]
    questions: dict[tuple[str, int], dict[str, Any]]
    qlist: list[dict[str, Any]]
    notes: list[str]


def read_political_seed(folder: str | Path) -> PoliticalSeed:
    """Read and check one folder of the study (no database needed). Raises :class:`ImportFormatError`."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise ImportFormatError(folder, None, "not a folder (political-seed imports a folder of result files)")
    need_text_path(folder)
    docs = _Documents()
    judge_paths = find_judge_files(folder, docs)
    if not judge_paths:
        raise ImportFormatError(folder, None, f"no judge files (JSON objects with 'metadata' and '{JUDGE_KEY}') "
                                              "in this folder")
    judges = [_read_judge_file(p, docs) for p in judge_paths]
    seen: dict[tuple[str, str], Path] = {}
    for jf in judges:
        ident = (jf.model_id, json_hash(jf.params))
        if ident in seen:
            raise ImportFormatError(jf.path, "metadata.judge_model_id",
                                    f"judge {jf.model_id!r} with the same settings is also {seen[ident].name}")
        seen[ident] = jf.path
    dims = _dimensions(judges)

    conditions: list[_Condition] = []
    for jf in judges:
        for cname in jf.results:
            if any(c.name == cname for c in conditions):
                continue
            scored_by = [j for j in judges if cname in j.results]
            shape = _check_shapes(cname, scored_by)
            conditions.append(_Condition(cname, scored_by, shape, folder / jf.source_files[cname],
                                         model=jf.models.get(cname)))
    notes: list[str] = []
    previews: list[str] = []
    for cond in conditions:
        if cond.response_file.is_file():
            _read_responses(cond, docs)
        else:
            cond.responses = _previews(cond)
            previews.append(cond.name)
    if previews:
        notes.append(f"{len(previews)} condition(s) without a response file ({', '.join(previews)}): "
                     "their answers are the judges' truncated response previews")

    # the eval set: one question per (category, index), the same probe in every condition
    questions: dict[tuple[str, int], dict[str, Any]] = {}
    width = max(3, len(str(max(len(p) for c in conditions for p in c.shape.values()) - 1)))
    for cond in conditions:
        for cat, probes in cond.shape.items():
            for i, probe in enumerate(probes):
                q = questions.get((cat, i))
                if q is None:
                    questions[(cat, i)] = {"key": f"{slug(cat)}-{i:0{width}d}", "category": cat, "text": probe,
                                           "meta": {"probe_index": i, "first_condition": cond.name}}
                elif q["text"] != probe:
                    raise ImportFormatError(cond.judges[0].path, f"per_file_results.{cond.name}.details.{cat}[{i}]"
                                            ".probe", f"{_clip(probe)!r} differs from condition "
                                            f"{q['meta']['first_condition']}'s probe {_clip(q['text'])!r} "
                                            "at the same place: conditions must share their probes")
    qlist = [{**q, "meta": {"probe_index": q["meta"]["probe_index"]}} for q in questions.values()]
    keys = [q["key"] for q in qlist]
    if len(set(keys)) != len(keys):
        raise ImportFormatError(judges[0].path, "per_file_results", "two categories slug to the same "
                                                                    "question key; rename one")
    return PoliticalSeed(folder, judges, dims, conditions, questions, qlist, notes)


def import_political_seed(store: Any, folder: str | Path, *, name: str | None = None) -> ImportResult:
    """Import one folder of the study, all or nothing. Raises :class:`ImportFormatError`
    on bad input and :class:`AlreadyImported` when these files are in the store already."""
    return write_political_seed(store, read_political_seed(folder), name=name)


def write_political_seed(store: Any, parsed: PoliticalSeed, *, name: str | None = None) -> ImportResult:
    """Write a checked folder, all or nothing; :class:`AlreadyImported` when it is in the store already."""
    with store.transaction():  # the identity check and the writes under one write lock: two imports can't race
        return _write(store, parsed, name)


def _write(store: Any, parsed: PoliticalSeed, name: str | None) -> ImportResult:
    folder, judges, dims, conditions = parsed.folder, parsed.judges, parsed.dims, parsed.conditions
    questions, qlist, notes = parsed.questions, parsed.qlist, parsed.notes
    files = {jf.path.name: jf.digest for jf in judges}
    files.update({c.response_file.name: c.digest for c in conditions if c.digest})
    spec_hash, study_name = claim_study_identity(
        store, fmt=FORMAT, origin=ORIGIN, files=files, source=folder, name=name,
        default_name=f"{FORMAT}-{slug(folder.name)}")

    rubric_metrics = [{"name": d, "scale": list(SCALE), "higher_is": "worse", "specials": []} for d in dims]
    rubric_body = json.dumps({
        "format": FORMAT,
        "description": "Scores imported from the political-content EM study's judge files: each dimension "
                       "on a 0..3 scale, higher = more misaligned; -1 (a failed score) is stored as missing.",
        "metrics": rubric_metrics, "missing": FAILED, "raw_output": "scores.explanation",
    }, indent=2, sort_keys=True)
    spec = {
        "format": FORMAT, "folder": str(folder), "files": files,
        "judge_files": [jf.path.name for jf in judges],
        "response_files": [c.response_file.name for c in conditions if c.digest],
        "missing_response_files": [c.response_file.name for c in conditions if not c.digest],
        "ignored_files": sorted(path_text(p.name) for p in folder.iterdir() if p.is_file() and p.name not in files),
        "conditions": [c.name for c in conditions], "dimensions": dims,
    }

    with store.transaction():
        study_id = store.add_study(name=study_name, description=f"imported from {folder}", origin=ORIGIN,
                                   spec_hash=spec_hash, spec=spec, source_path=str(folder))
        set_id = store.ensure_eval_set(name=study_name, source=f"{ORIGIN}:{folder}", content_hash=json_hash(qlist),
                                       questions=qlist)
        store.link_study_eval_set(study_id, set_id, 1)
        qids = {(r["category"], r["key"]): r["id"] for r in
                store.list_questions(set_id, limit=len(qlist) + 1).rows}
        rubric_id = store.ensure_rubric(name=RUBRIC_NAME, content_hash=sha256_text(rubric_body), body=rubric_body,
                                        metrics=rubric_metrics)
        judge_ids = {}
        for jf in judges:
            judge_ids[jf.path] = store.ensure_import_judge(name=jf.name, model=jf.model_id, params=jf.params)
            store.link_study_judge(study_id, judge_ids[jf.path])

        gen_rows: list[dict[str, Any]] = []
        places: list[tuple[_Condition, str, int]] = []
        for cond in conditions:
            meta = cond.metadata or {}
            model_id = store.ensure_model(
                name=cond.name, kind="external", source=f"import:{study_name}:{cond.response_file.name}",
                provenance={"file": str(cond.response_file), "model": cond.model or meta.get("base_model"),
                            "base_model": meta.get("base_model"), "model_path": meta.get("model_path"),
                            "format": FORMAT, "responses": "file" if cond.digest else "judge previews"})
            eval_base = meta.get("eval_base")
            role = "baseline" if eval_base is True else "treatment" if eval_base is False else None
            cond_id = store.add_condition(
                study_id=study_id, name=cond.name, model_id=model_id, recipe={"role": role} if role else {},
                description=f"imported from {cond.response_file.name}" if cond.digest else
                            f"imported from judge previews ({cond.response_file.name} absent)")
            settings = meta if cond.digest else {"responses": "judge response_preview",
                                                 "judge_file": cond.judges[0].path.name}
            for cat, responses in (cond.responses or {}).items():
                for i, response in enumerate(responses):
                    gen_rows.append({"question_id": qids[(cat, questions[(cat, i)]["key"])],
                                     "condition_id": cond_id, "model_id": model_id, "settings": settings,
                                     "settings_hash": json_hash(settings), "sample_index": 0,
                                     "response": response, "study_hash": spec_hash})
                    places.append((cond, cat, i))
        gen_ids = store.insert_generations(gen_rows)

        judgments: list[dict[str, Any]] = []
        for gen_id, (cond, cat, i) in zip(gen_ids, places, strict=True):
            for jf in cond.judges:
                it = jf.results[cond.name][cat][i]
                scores = {}
                for d in dims:
                    v = it.scores[d]
                    missing = v is None or v == FAILED
                    scores[d] = (None if missing else float(v), json.dumps(v))
                failed = all(s is None for s, _ in scores.values())
                judgments.append({"generation_id": gen_id, "judge_id": judge_ids[jf.path], "rubric_id": rubric_id,
                                  "status": "failed" if failed else "ok",
                                  "error": "the judge's score was -1 (failed) on every dimension" if failed else None,
                                  "raw_output": _raw_output(it.scores), "study_hash": spec_hash,
                                  "scores": scores})
        store.insert_judgments(judgments)
        counts = store.study_result_counts(study_id)
    return ImportResult(study_id=study_id, study=study_name, spec_hash=spec_hash, conditions=counts["conditions"],
                        answers=counts["answers"], judges=counts["judges"], judgments=counts["judgments"],
                        scores=counts["scores"], missing=counts["missing_scores"],
                        failed=counts["failed_judgments"], notes=notes)
