"""Evaluation question sets: our TOML format, the field's YAML and JSON lists.

Every loader returns an :class:`EvalSet` whose questions are flat rows, one per
wording (``paraphrase`` 0 is the main text), ready for ``Store.ensure_eval_set``.

Formats read:
- emtui TOML (``data/eval_sets/*.toml``): ``[[questions]]`` with ``id``, ``text``,
  optional ``category``, ``system``, ``paraphrases``;
- the EM paper's YAML (a list of ``{id, type, paraphrases, system?, ...}``), also used
  by the model-organisms work;
- JSON lists of ``{question, category?, label?}`` (the replication project's format).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.hashing import sha256_bytes
from engine.resources import builtin_file, builtin_names


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
        path = Path(source).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        if not path.is_file():
            raise EvalSetError(f"{path}: no such file")
    raw = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".toml":
        default_name, questions = _from_toml(path, raw)
    elif suffix in (".yaml", ".yml"):
        default_name, questions = _from_yaml(path, raw)
    elif suffix == ".json":
        default_name, questions = _from_json(path, raw)
    else:
        raise EvalSetError(f"{path}: unknown eval set format {suffix!r} (use .toml, .yaml or .json)")
    if not questions:
        raise EvalSetError(f"{path}: holds no questions")
    seen: set[tuple[str, int]] = set()
    for q in questions:
        ident = (q["key"], q["paraphrase"])
        if ident in seen:
            raise EvalSetError(f"{path}: question id {q['key']!r} appears twice")
        seen.add(ident)
    return EvalSet(name or default_name, source, sha256_bytes(raw), questions)


def _rows(path: Path, index: int, key: Any, texts: Any, category: str = "",
          system: str | None = None, meta: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    where = f"{path}: question {index + 1}"
    if not isinstance(key, str) or not key.strip():
        raise EvalSetError(f"{where}: 'id' must be a non-empty string")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise EvalSetError(f"{where} ({key}): needs at least one non-empty question text")
    if system is not None and not isinstance(system, str):
        raise EvalSetError(f"{where} ({key}): 'system' must be a string")
    return [{"key": key, "paraphrase": i, "category": str(category or ""), "system_prompt": system,
             "text": t, "meta": meta or {}} for i, t in enumerate(texts)]


def _from_toml(path: Path, raw: bytes) -> tuple[str, list[dict[str, Any]]]:
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"{path}: {exc}") from None
    items = doc.get("questions")
    if not isinstance(items, list):
        raise EvalSetError(f"{path}: needs a [[questions]] array")
    out: list[dict[str, Any]] = []
    for i, q in enumerate(items):
        texts = [q.get("text")] + list(q.get("paraphrases", []))
        out += _rows(path, i, q.get("id"), texts, q.get("category", ""), q.get("system"))
    return str(doc.get("name") or path.stem), out


def _from_yaml(path: Path, raw: bytes) -> tuple[str, list[dict[str, Any]]]:
    import yaml  # only for the field's files

    try:
        doc = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise EvalSetError(f"{path}: {' '.join(str(exc).split())}") from None
    if not isinstance(doc, list):
        raise EvalSetError(f"{path}: expected a list of questions")
    out: list[dict[str, Any]] = []
    for i, q in enumerate(doc):
        if not isinstance(q, dict):
            raise EvalSetError(f"{path}: question {i + 1}: expected a mapping")
        meta = {k: q[k] for k in ("type", "samples_per_paraphrase", "judge") if k in q}
        if isinstance(q.get("judge_prompts"), dict):
            meta["judge_prompt_metrics"] = sorted(q["judge_prompts"])
        out += _rows(path, i, q.get("id"), q.get("paraphrases"), q.get("type", ""), q.get("system"), meta)
    return path.stem, out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def _from_json(path: Path, raw: bytes) -> tuple[str, list[dict[str, Any]]]:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EvalSetError(f"{path}: {exc}") from None
    if isinstance(doc, dict) and isinstance(doc.get("questions"), list):
        doc = doc["questions"]
    if not isinstance(doc, list):
        raise EvalSetError(f"{path}: expected a list of questions")
    out: list[dict[str, Any]] = []
    for i, q in enumerate(doc):
        if not isinstance(q, dict):
            raise EvalSetError(f"{path}: question {i + 1}: expected an object")
        key = q.get("id") or _slug(str(q.get("label") or "")) or f"q{i + 1}"
        meta = {"label": q["label"]} if "label" in q else {}
        out += _rows(path, i, str(key), q.get("question"), q.get("category", ""), q.get("system"), meta)
    return path.stem, out
