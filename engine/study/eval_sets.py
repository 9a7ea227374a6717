"""Evaluation question sets: our TOML format, the field's YAML and JSON lists.

Every loader returns an :class:`EvalSet` whose questions are flat rows, one per
wording (``paraphrase`` 0 is the main text), ready for ``Store.ensure_eval_set``.

Formats read:
- emtui TOML (``data/eval_sets/*.toml``): ``[[questions]]`` with ``id``, ``text``,
  optional ``category``, ``system``, ``paraphrases``;
- the EM paper's YAML (a list of ``{id, type, paraphrases, system?, judge_prompts?, ...}``),
  also used by the model-organisms work, whose lists may give one ``question`` string
  instead of ``paraphrases``;
- JSON lists of ``{question, category?, label?, id?, system?}`` (the replication project's
  format); entries that share a ``label`` are paraphrases of one question.

A question text may be a template: ``{tag}``-style placeholders (trigger-tag questions)
are kept verbatim, listed in the row's ``meta.placeholders``, and filled by the generation
engine. Every value is checked (types, names, finite numbers, bounded files) and every
problem is one line naming the file and the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.common.hashing import sha256_bytes
from engine.common.resources import builtin_file, builtin_names
from engine.common.safe_load import LoadError
from engine.common.untrusted import (
    decode,
    label_problem,
    name_problem,
    parse_json,
    parse_toml,
    parse_yaml,
    placeholders,
    read_bytes,
    source_file,
)

TOML_TOP_KEYS = ("name", "description", "version", "questions")
TOML_QUESTION_KEYS = ("id", "text", "paraphrases", "category", "system")


class EvalSetError(ValueError):
    """An eval set file that cannot be read; the message names the file and the item."""


@dataclass
class EvalSet:
    name: str
    source: str
    content_hash: str
    questions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_keys(self) -> int:
        return len({q["key"] for q in self.questions})


def load_eval_set(source: str, *, base_dir: Path | None = None, name: str | None = None) -> EvalSet:
    """Load ``builtin:<name>`` or a file path (relative paths resolve against ``base_dir``)."""
    if source.startswith("builtin:"):
        builtin = source.split(":", 1)[1]
        path = builtin_file("eval_sets", builtin)
        if path is None:
            raise EvalSetError(
                f"no built-in eval set {builtin!r} (built-in: {', '.join(builtin_names('eval_sets'))})")
    else:
        try:
            path = source_file(source, base_dir, "an eval set file")
        except ValueError as exc:
            raise EvalSetError(str(exc)) from None
    if name is not None and label_problem(name):
        raise EvalSetError(f"{path}: --name: {label_problem(name, 'the name')}")
    suffix = path.suffix.lower()
    readers = {".toml": _from_toml, ".yaml": _from_yaml, ".yml": _from_yaml, ".json": _from_json,
               ".jsonl": _from_jsonl}
    if suffix not in readers:
        raise EvalSetError(f"{path}: unknown eval set format {suffix!r} (use .toml, .yaml or .json)")
    try:
        raw = read_bytes(path)
        default_name, questions = readers[suffix](path, decode(raw))
    except LoadError as exc:
        raise EvalSetError(f"{path}: {exc}") from None
    if not questions:
        raise EvalSetError(f"{path}: holds no questions")
    if name is None and label_problem(default_name):
        raise EvalSetError(f"{path}: the file's name can't name an eval set "
                           f"({label_problem(default_name, 'the name')}); give it another name (--name)")
    return EvalSet(name or default_name, source, sha256_bytes(raw), questions)


def _fail(path: Path, index: int | None, key: Any, message: str) -> EvalSetError:
    where = f"{path}: question {index + 1}" if index is not None else str(path)
    if isinstance(key, str) and key and not label_problem(key):
        where += f" ({key})"
    return EvalSetError(f"{where}: {message}")


def _texts(path: Path, index: int, key: Any, texts: Any, what: str) -> list[str]:
    """One wording (a string) or several (a list of strings), each non-empty."""
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        got = "nothing" if texts is None or texts == [] else f"a {type(texts).__name__}"
        raise _fail(path, index, key, f"needs at least one non-empty question text ({what}: a string or a "
                                      f"list of strings; got {got})")
    for j, t in enumerate(texts):
        if not isinstance(t, str):
            raise _fail(path, index, key, f"{what}[{j}] must be a string, not {type(t).__name__}")
        if not t.strip():
            raise _fail(path, index, key, f"needs at least one non-empty question text ({what}[{j}] is empty)")
    return texts


def _optional_text(path: Path, index: int, key: Any, q: dict[str, Any], name: str) -> str | None:
    value = q.get(name)
    if value is not None and not isinstance(value, str):
        raise _fail(path, index, key, f"'{name}' must be a string, not {type(value).__name__}")
    return value


def _category(path: Path, index: int, key: Any, value: Any, name: str) -> str:
    if value is None or value == "":
        return ""
    problem = label_problem(value, f"'{name}'")
    if problem:
        raise _fail(path, index, key, problem)
    return value


def _key(path: Path, index: int, key: Any, name: str = "id") -> str:
    if not isinstance(key, str) or not key.strip():
        raise _fail(path, index, None, f"'{name}' must be a non-empty string"
                                       + (f", not {type(key).__name__}" if key is not None and
                                          not isinstance(key, str) else ""))
    problem = label_problem(key, f"'{name}'")
    if problem:
        raise _fail(path, index, None, problem)
    return key


def _rows(key: str, texts: list[str], category: str = "", system: str | None = None,
          meta: dict[str, Any] | None = None, first: int = 0) -> list[dict[str, Any]]:
    out = []
    for i, t in enumerate(texts):
        m = dict(meta or {})
        holes = placeholders(t)
        if holes:  # a template: kept verbatim, filled by the generation engine
            m["placeholders"] = holes
        out.append({"key": key, "paraphrase": first + i, "category": category, "system_prompt": system,
                    "text": t, "meta": m})
    return out


def _unique_ids(path: Path, ids: list[str]) -> None:
    seen: dict[str, int] = {}
    for i, key in enumerate(ids):
        if key in seen:
            raise EvalSetError(f"{path}: question id {key!r} appears twice (questions {seen[key] + 1} "
                               f"and {i + 1})")
        seen[key] = i


# -- emtui TOML --------------------------------------------------------------------------------


def _from_toml(path: Path, text: str) -> tuple[str, list[dict[str, Any]]]:
    doc = parse_toml(text)
    unknown = [k for k in doc if k not in TOML_TOP_KEYS]
    if unknown:
        raise EvalSetError(f"{path}: {unknown[0]}: unknown key (known: {', '.join(TOML_TOP_KEYS)})")
    items = doc.get("questions")
    if not isinstance(items, list):
        raise EvalSetError(f"{path}: needs a [[questions]] array")
    set_name = doc.get("name")
    if set_name is not None and label_problem(set_name):
        raise EvalSetError(f"{path}: name: {label_problem(set_name, 'the name')}")
    if not isinstance(doc.get("description", ""), str):
        raise EvalSetError(f"{path}: description: must be a string, not {type(doc['description']).__name__}")
    if isinstance(doc.get("version", 1), bool) or not isinstance(doc.get("version", 1), int):
        raise EvalSetError(f"{path}: version: must be an integer, not {doc['version']!r}")
    out: list[dict[str, Any]] = []
    ids = []
    for i, q in enumerate(items):
        if not isinstance(q, dict):
            raise _fail(path, i, None, f"expected a table ([[questions]]), not {type(q).__name__}")
        key = _key(path, i, q.get("id"))
        unknown = [k for k in q if k not in TOML_QUESTION_KEYS]
        if unknown:
            raise _fail(path, i, key, f"{unknown[0]}: unknown key (known: {', '.join(TOML_QUESTION_KEYS)})")
        if not isinstance(q.get("text"), str):
            raise _fail(path, i, key, "'text' must be a string" + ("" if "text" not in q else
                                                                   f", not {type(q['text']).__name__}"))
        paraphrases = q.get("paraphrases", [])
        if not isinstance(paraphrases, list):
            raise _fail(path, i, key, f"'paraphrases' must be a list of strings, not {type(paraphrases).__name__}")
        texts = _texts(path, i, key, [q["text"], *paraphrases], "text/paraphrases")
        ids.append(key)
        out += _rows(key, texts, _category(path, i, key, q.get("category"), "category"),
                     _optional_text(path, i, key, q, "system"))
    _unique_ids(path, ids)
    return str(set_name or path.stem), out


# -- the field's YAML ------------------------------------------------------------------------------


def _from_yaml(path: Path, text: str) -> tuple[str, list[dict[str, Any]]]:
    doc = parse_yaml(text)
    if looks_like_judges_file(doc):
        raise _judges_file(path)
    if not isinstance(doc, list):
        raise EvalSetError(f"{path}: expected a list of questions")
    out: list[dict[str, Any]] = []
    ids = []
    for i, q in enumerate(doc):
        if not isinstance(q, dict):
            raise _fail(path, i, None, f"expected a mapping, not {type(q).__name__}")
        key = _key(path, i, q.get("id"))
        if "paraphrases" in q and "question" in q:
            raise _fail(path, i, key, "has both 'paraphrases' and 'question': give one")
        field_name = "question" if "question" in q else "paraphrases"
        texts = _texts(path, i, key, q.get(field_name), field_name)
        meta: dict[str, Any] = {}
        if "samples_per_paraphrase" in q:
            n = q["samples_per_paraphrase"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise _fail(path, i, key, f"'samples_per_paraphrase' must be a positive integer, not {n!r}")
            meta["samples_per_paraphrase"] = n
        for name in ("type", "judge"):
            if name in q:
                value = q[name]
                problem = label_problem(value, f"'{name}'")
                if problem:
                    raise _fail(path, i, key, problem)
                meta[name] = value
        if "judge_prompts" in q:
            meta["judge_prompt_metrics"] = list(judge_prompts_of(path, i, key, q["judge_prompts"]))
        ids.append(key)
        out += _rows(key, texts, _category(path, i, key, q.get("type"), "type"),
                     _optional_text(path, i, key, q, "system"), meta)
    _unique_ids(path, ids)
    return path.stem, out


def judge_prompts_of(path: Path, index: int, key: Any, value: Any) -> dict[str, str]:
    """A question's ``judge_prompts``: metric name -> prompt text, checked."""
    if not isinstance(value, dict):
        raise _fail(path, index, key, f"'judge_prompts' must be a mapping of metric -> prompt, "
                                      f"not {type(value).__name__}")
    for metric, prompt in value.items():
        problem = name_problem(metric, "metric", "a judge_prompts metric")
        if problem:
            raise _fail(path, index, key, problem)
        if not isinstance(prompt, str) or not prompt.strip():
            raise _fail(path, index, key, f"judge_prompts.{metric} must be a non-empty string (the prompt)")
    return value


def looks_like_judges_file(doc: Any) -> bool:
    """A judges file, ``{metric: prompt}``: the model-organisms ``judges.yaml`` (a list of
    ``{<metric>: <prompt>, high_score: N}``) or one mapping of metric -> prompt."""
    def entry(e: Any) -> bool:
        if not isinstance(e, dict) or {"id", "paraphrases", "question", "questions"} & set(e):
            return False
        prompts = [k for k, v in e.items() if isinstance(v, str) and k != "high_score"]
        return len(prompts) == 1 and all(k == "high_score" or k in prompts for k in e)

    if isinstance(doc, list):
        return bool(doc) and all(entry(e) for e in doc)
    if isinstance(doc, dict) and doc:
        return (not {"id", "paraphrases", "question", "questions"} & set(doc)
                and all(isinstance(v, str) for v in doc.values()))
    return False


def _judges_file(path: Path) -> EvalSetError:
    return EvalSetError(f"{path} looks like a judges file ({{metric: prompt}}); import it with: "
                        f"emtui import rubric {path}")


# -- JSON lists ----------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _from_json(path: Path, text: str) -> tuple[str, list[dict[str, Any]]]:
    doc = parse_json(text)
    if isinstance(doc, dict) and isinstance(doc.get("questions"), list):
        doc = doc["questions"]
    elif looks_like_judges_file(doc):
        raise _judges_file(path)
    if not isinstance(doc, list):
        raise EvalSetError(f"{path}: expected a list of questions")
    # entries sharing a label (or an id) are one question's paraphrases, in file order
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for i, q in enumerate(doc):
        if not isinstance(q, dict):
            raise _fail(path, i, None, f"expected an object, not {type(q).__name__}")
        label = q.get("label")
        if label is not None:
            problem = label_problem(label, "'label'")
            if problem:
                raise _fail(path, i, None, problem)
        if q.get("id") is not None:
            qid = q["id"]
            if isinstance(qid, int) and not isinstance(qid, bool):  # JSON lists often number their questions
                qid = str(qid)
            ident = ("id", _key(path, i, qid))
        elif label is not None and _slug(label):
            ident = ("label", label)
        else:
            ident = ("entry", str(i))
        shown = None if ident[0] == "entry" else ident[1]
        texts = _texts(path, i, shown, q.get("question"), "question")
        category = _category(path, i, shown, q.get("category"), "category")
        system = _optional_text(path, i, shown, q, "system")
        g = groups.setdefault(ident, {"index": i, "category": category, "system": system, "texts": [],
                                      "label": label})
        if ident[0] == "id" and g["index"] != i:
            raise EvalSetError(f"{path}: question id {ident[1]!r} appears twice (questions {g['index'] + 1} "
                               f"and {i + 1})")
        for name, value in (("category", category), ("system", system)):
            if g[name] != value:
                raise _fail(path, i, shown, f"'{name}' differs from question {g['index'] + 1}'s, which has "
                                               f"the same label {label!r} (paraphrases share it)")
        g["texts"] += texts
    out: list[dict[str, Any]] = []
    taken: dict[str, tuple[str, str]] = {}
    for ident, g in groups.items():
        base = ident[1] if ident[0] == "id" else _slug(ident[1]) if ident[0] == "label" else f"q{g['index'] + 1}"
        key, n = base, 2
        while key in taken:  # two labels that slug alike, or an id that is another's slug
            if ident[0] == "id":
                raise EvalSetError(f"{path}: question {g['index'] + 1}: id {key!r} is also the key of "
                                   f"{taken[key][0]} {taken[key][1]!r}")
            key, n = f"{base}_{n}", n + 1
        taken[key] = ident
        meta = {"label": g["label"]} if g["label"] is not None else {}
        out += _rows(key, g["texts"], g["category"], g["system"], meta)
    return path.stem, out


# -- what is not an eval set ------------------------------------------------------------------------


def _from_jsonl(path: Path, text: str) -> tuple[str, list[dict[str, Any]]]:
    for line in text.splitlines():
        if line.strip():
            try:
                first = parse_json(line)
            except LoadError:
                break
            if isinstance(first, dict) and isinstance(first.get("messages"), list):
                raise EvalSetError(f"{path} is a training file (chat JSONL: one {{\"messages\": [...]}} per "
                                   "line), not an eval set; name it in a study file's [datasets]")
            break
    raise EvalSetError(f"{path}: unknown eval set format '.jsonl' (use .toml, .yaml or .json)")
