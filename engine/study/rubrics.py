"""Judge rubrics: what each metric means, its scale, and the prompt that asks for it.

A rubric is identified by a content hash, so every judgment can be traced to the exact
wording that produced it.

Formats read:
- emtui TOML (``data/rubrics/*.toml``: ``[[metrics]]`` with ``name``, ``scale``,
  ``higher_is``, ``prompt``, optional ``specials``, ``labels`` and ``max_tokens``, or one shared
  top-level ``prompt`` with ``parse = "json"``);
- a judges file, ``{metric: prompt}``: the model-organisms ``judges.yaml`` (a list of
  ``{<metric>: <prompt>, high_score: N}``) or one mapping of metric -> prompt (YAML or JSON);
  hashed by the file's bytes;
- the EM paper's question YAML, whose questions carry ``judge_prompts`` (metric -> prompt):
  the distinct prompts become the rubric, hashed by its canonical JSON body (so two files
  with the same prompts give the same rubric). Two questions that give different prompts
  for one metric are an error naming both: a rubric has one prompt per metric.

What a judge replies, per metric (:attr:`Metric.kind`; engine/judging/parse.py reads it):

- ``number``: a number in ``scale``, or one of the ``specials`` (a word such as REFUSAL: no score,
  the word kept);
- ``labels``: one of the words of ``labels``, each worth a score in ``scale`` (factual: TRUE = 1,
  FALSE = 0), or one of the ``specials`` (UNKNOWN: no score, the word kept);
- ``json``: every metric of a ``parse = "json"`` rubric is a key of the one JSON object its shared
  prompt asks for: one call scores them all.

``max_tokens`` (the rubric's, a metric's own first) bounds the judge's reply; unset, the judge
takes :func:`reply_tokens`'s default for the kind.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.common.hashing import sha256_bytes, sha256_text
from engine.common.resources import builtin_file, builtin_names
from engine.common.safe_load import LoadError
from engine.common.untrusted import (
    decode,
    label_problem,
    name_problem,
    parse_json,
    parse_toml,
    parse_yaml,
    read_bytes,
    source_file,
)
from engine.study.eval_sets import EvalSetError, judge_prompts_of, looks_like_judges_file

TOML_TOP_KEYS = ("name", "description", "version", "prompt", "parse", "max_tokens", "metrics")
TOML_METRIC_KEYS = ("name", "scale", "higher_is", "specials", "labels", "max_tokens", "prompt")
PARSES = ("number", "json")
KINDS = ("number", "labels", "json")
MAX_REPLY_TOKENS = 4096        # a judge's reply; more is a wrong rubric (a call reserves it against the quota)
DEFAULT_REPLY_TOKENS = {"number": 16, "labels": 16, "json": 300}  # a word or a number; an object with a sentence
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_QUOTED_WORD = re.compile(r'"([A-Z][A-Z_]+)"')  # 'Say "TRUE" or "FALSE"' in the EM paper's factual prompts
JUDGE_PROMPTS_FORMAT = "judge_prompts"
_SPECIAL = re.compile(r"\bSay ([A-Z][A-Z_]+) if\b")  # "Say REFUSAL if the model ..." in the EM paper's prompts


class RubricError(ValueError):
    """A rubric file that cannot be used; the message names the file and the metric."""


@dataclass
class Metric:
    name: str
    scale: tuple[float, float]
    higher_is: str  # 'better' (e.g. aligned) or 'worse' (e.g. drift)
    prompt: str | None = None
    specials: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # format-specific extras, kept verbatim
    kind: str = "number"  # number | labels | json (KINDS): what the judge replies
    labels: dict[str, float] = field(default_factory=dict)  # kind labels: word -> score
    max_tokens: int | None = None  # the reply's bound, when the rubric sets one

    def as_dict(self) -> dict[str, Any]:
        # the new fields only when set: an imported rubric's body (and so its hash) is built from this
        return {"name": self.name, "scale": list(self.scale), "higher_is": self.higher_is,
                "specials": self.specials, **({"meta": self.meta} if self.meta else {}),
                **({"kind": self.kind} if self.kind != "number" else {}),
                **({"labels": self.labels} if self.labels else {}),
                **({"max_tokens": self.max_tokens} if self.max_tokens is not None else {})}


@dataclass
class Rubric:
    name: str
    source: str
    body: str
    content_hash: str
    metrics: list[Metric]
    prompt: str | None = None  # shared prompt when one call scores every metric
    parse: str = "number"
    format: str = "toml"  # toml | judges | judge_prompts: what the file was
    max_tokens: int | None = None  # the shared prompt's reply bound (TOML ``max_tokens``)

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]


def load_rubric(source: str, *, base_dir: Path | None = None) -> Rubric:
    if source.startswith("builtin:"):
        name = source.split(":", 1)[1]
        path = builtin_file("rubrics", name)
        if path is None:
            raise RubricError(f"no built-in rubric {name!r} (built-in: {', '.join(builtin_names('rubrics'))})")
    else:
        try:
            path = source_file(source, base_dir, "a rubric file")
        except ValueError as exc:
            raise RubricError(str(exc)) from None
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml", ".json"):
        what = " (a training file?)" if suffix == ".jsonl" else ""
        raise RubricError(f"{path}: unknown rubric format {suffix!r}{what} (use .toml, .yaml or .json)")
    try:
        raw = read_bytes(path)
        text = decode(raw)
        if suffix == ".toml":
            rubric = _from_toml(path, raw, parse_toml(text))
        else:
            rubric = _from_document(path, raw, parse_json(text) if suffix == ".json" else parse_yaml(text))
    except LoadError as exc:
        raise RubricError(f"{path}: {exc}") from None
    rubric.source = source
    return rubric


def rubric_from_text(text: str, *, name: str) -> Rubric:
    """A rubric read from its text, as the database keeps it (a row's verbatim ``body``: the format is not
    stored): TOML when it reads as a TOML rubric, else JSON, else YAML. ``name`` only labels messages."""
    raw = text.encode("utf-8")
    path = Path(f"rubric {name}")
    try:
        return _from_toml(path, raw, parse_toml(text))
    except (LoadError, RubricError, ValueError):
        try:
            doc = parse_json(text)
        except (LoadError, ValueError):
            doc = parse_yaml(text)
        return _from_document(path, raw, doc)


def _fail(path: Path, where: str, message: str) -> RubricError:
    return RubricError(f"{path}: {where}: {message}" if where else f"{path}: {message}")


def _metric_name(path: Path, where: str, name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise _fail(path, where, "'name' must be a non-empty string")
    problem = name_problem(name, "metric", "the metric name")
    if problem:
        raise _fail(path, where, problem)
    return name


def _scale(path: Path, name: str, value: Any) -> tuple[float, float]:
    if (not isinstance(value, list) or len(value) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            or value[0] >= value[1]):
        raise RubricError(f"{path}: metric {name!r}: 'scale' must be [low, high] with low < high")
    return float(value[0]), float(value[1])


def _max_tokens(path: Path, where: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_REPLY_TOKENS:
        raise _fail(path, where, f"'max_tokens' must be a whole number from 1 to {MAX_REPLY_TOKENS}, not {value!r}")
    return value


def _words(path: Path, name: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or any(not isinstance(s, str) or not _WORD.match(s) for s in value):
        raise RubricError(f"{path}: metric {name!r}: '{key}' must be a list of words (e.g. REFUSAL)")
    return list(value)


def _labels(path: Path, name: str, value: Any, scale: tuple[float, float], specials: list[str]) -> dict[str, float]:
    """``labels = { TRUE = 1, FALSE = 0 }``: each word a judge may reply, and its score (in the scale)."""
    where = f"metric {name!r}: 'labels'"
    if not isinstance(value, dict) or not value:
        raise RubricError(f"{path}: {where} must be a table of word = score (e.g. {{ TRUE = 1, FALSE = 0 }})")
    out: dict[str, float] = {}
    for word, score in value.items():
        if not _WORD.match(word):
            raise RubricError(f"{path}: {where}: {word[:40]!r} is not a word (letters, digits, _)")
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not scale[0] <= score <= scale[1]:
            raise RubricError(f"{path}: {where}: {word} = {score!r} is not a number in the scale "
                              f"{scale[0]:g}..{scale[1]:g}")
        out[word] = float(score)
    folded = [w.upper() for w in [*out, *specials]]
    twice = next((w for w in folded if folded.count(w) > 1), None)
    if twice:  # replies are matched without regard to case
        raise RubricError(f"{path}: metric {name!r}: {twice!r} appears twice among 'labels' and 'specials'")
    return out


def reply_tokens(rubric: Rubric, metric: Metric | None = None) -> int:
    """The ``max_tokens`` of a call for ``metric`` (None: the rubric's shared prompt): the rubric's
    own bound, else the default for what the judge replies (a word or a number; a JSON object)."""
    if metric is not None and metric.max_tokens is not None:
        return metric.max_tokens
    if rubric.max_tokens is not None:
        return rubric.max_tokens
    kind = "json" if rubric.parse == "json" else metric.kind if metric is not None else "number"
    return DEFAULT_REPLY_TOKENS[kind]


def _unique(path: Path, metrics: list[Metric]) -> None:
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise RubricError(f"{path}: metric names repeat: {names}")


def _from_toml(path: Path, raw: bytes, doc: dict[str, Any]) -> Rubric:
    unknown = [k for k in doc if k not in TOML_TOP_KEYS]
    if unknown:
        raise _fail(path, unknown[0], f"unknown key (known: {', '.join(TOML_TOP_KEYS)})")
    items = doc.get("metrics")
    if not isinstance(items, list) or not items:
        raise RubricError(f"{path}: needs a [[metrics]] array")
    shared = doc.get("prompt")
    if shared is not None and (not isinstance(shared, str) or not shared.strip()):
        raise _fail(path, "prompt", "must be a non-empty string")
    parse = doc.get("parse", "number")
    if parse not in PARSES:
        raise _fail(path, "parse", f"must be one of {', '.join(PARSES)}, not {parse!r}")
    rubric_name = doc.get("name")
    if rubric_name is not None and (problem := label_problem(rubric_name, "the name")):
        raise _fail(path, "name", problem)
    if not isinstance(doc.get("description", ""), str):
        raise _fail(path, "description", f"must be a string, not {type(doc['description']).__name__}")
    if isinstance(doc.get("version", 1), bool) or not isinstance(doc.get("version", 1), int):
        raise _fail(path, "version", f"must be an integer, not {doc['version']!r}")
    shared_tokens = _max_tokens(path, "", doc.get("max_tokens"))
    metrics = []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            raise _fail(path, f"metrics[{i}]", f"expected a table ([[metrics]]), not {type(m).__name__}")
        name = _metric_name(path, f"metrics[{i}]", m.get("name"))
        unknown = [k for k in m if k not in TOML_METRIC_KEYS]
        if unknown:
            raise _fail(path, f"metric {name!r}", f"{unknown[0]}: unknown key (known: {', '.join(TOML_METRIC_KEYS)})")
        higher = m.get("higher_is", "better")
        if higher not in ("better", "worse"):
            raise RubricError(f"{path}: metric {name!r}: 'higher_is' must be 'better' or 'worse'")
        prompt = m.get("prompt")
        if prompt is None and shared is None:
            raise RubricError(f"{path}: metric {name!r}: needs a 'prompt' (or a shared top-level one)")
        if prompt is not None and (not isinstance(prompt, str) or not prompt.strip()):
            raise RubricError(f"{path}: metric {name!r}: 'prompt' must be a non-empty string")
        specials = _words(path, name, "specials", m.get("specials", []))
        scale = _scale(path, name, m.get("scale"))
        labels = _labels(path, name, m["labels"], scale, specials) if "labels" in m else {}
        kind = "json" if parse == "json" else "labels" if labels else "number"
        metrics.append(Metric(name, scale, higher, prompt, specials, kind=kind, labels=labels,
                              max_tokens=_max_tokens(path, f"metric {name!r}", m.get("max_tokens"))))
    _unique(path, metrics)
    return Rubric(str(rubric_name or path.stem), str(path), decode(raw), sha256_bytes(raw), metrics, shared,
                  str(parse), max_tokens=shared_tokens)


def _from_document(path: Path, raw: bytes, doc: Any) -> Rubric:
    if looks_like_judges_file(doc):
        return _from_judges(path, raw, doc)
    if isinstance(doc, list) and doc and all(isinstance(q, dict) and "judge_prompts" in q for q in doc):
        return _from_judge_prompts(path, doc)
    if isinstance(doc, list) and any(isinstance(q, dict) and ("paraphrases" in q or "question" in q) for q in doc):
        raise RubricError(f"{path}: an eval set whose questions carry no 'judge_prompts' (every question needs "
                          "them to make a rubric); import it with: emtui import eval-set " + str(path))
    raise RubricError(f"{path}: neither a judges file ({{metric: prompt}}, e.g. judges.yaml) nor questions "
                      "with 'judge_prompts' (the EM paper's YAML)")


def _from_judges(path: Path, raw: bytes, doc: Any) -> Rubric:
    """A judges file: a list of ``{metric: prompt, high_score?}`` or one ``{metric: prompt}`` mapping."""
    entries = doc if isinstance(doc, list) else [{k: v} for k, v in doc.items()]
    metrics = []
    for i, entry in enumerate(entries):
        (name, prompt), = ((k, v) for k, v in entry.items() if k != "high_score")
        where = f"entry {i + 1}" if isinstance(doc, list) else ""
        name = _metric_name(path, where, name)
        if not prompt.strip():
            raise _fail(path, f"{where} ({name})" if where else name, "the prompt is empty")
        meta = {}
        if "high_score" in entry:
            hs = entry["high_score"]
            if isinstance(hs, bool) or not isinstance(hs, (int, float)):
                raise _fail(path, f"{where} ({name})", f"'high_score' must be a number, not {hs!r}")
            # Every prompt of that format asks for 0..100. `high_score` (100 for coherent, 0 for aligned)
            # is not the top of the scale; its meaning upstream is unclear, so it is kept as metadata.
            meta["high_score"] = hs
        metrics.append(Metric(name, (0.0, 100.0), "better", prompt, list(dict.fromkeys(_SPECIAL.findall(prompt))),
                              meta=meta))
    _unique(path, metrics)
    return Rubric(path.stem, str(path), decode(raw), sha256_bytes(raw), metrics, format="judges")


def _from_judge_prompts(path: Path, doc: list[dict[str, Any]]) -> Rubric:
    """The distinct ``judge_prompts`` of the EM paper's questions, one prompt per metric."""
    first: dict[str, tuple[str, str, str]] = {}  # metric -> (prompt, question id, question type)
    judges: set[str] = set()
    for i, q in enumerate(doc):
        qid = q.get("id")
        label = f"question {i + 1}" + (f" ({qid})" if isinstance(qid, str) and not label_problem(qid) else "")
        try:
            prompts = judge_prompts_of(path, i, qid, q["judge_prompts"])
        except EvalSetError as exc:
            raise RubricError(str(exc)) from None
        qtype = q.get("type", "")
        if not isinstance(qtype, str):
            raise _fail(path, label, f"'type' must be a string, not {type(qtype).__name__}")
        if isinstance(q.get("judge"), str):
            judges.add(q["judge"])
        for metric, prompt in prompts.items():
            if metric not in first:
                first[metric] = (prompt, label, qtype)
            elif first[metric][0] != prompt:
                raise _fail(path, label, f"its {metric!r} judge prompt differs from {first[metric][1]}'s; a rubric "
                                         "has one prompt per metric: split the file")
            elif first[metric][2] != qtype:
                raise _fail(path, label, f"'type' {qtype!r} differs from {first[metric][1]}'s {first[metric][2]!r} "
                                         f"for the same {metric!r} prompt")
    metrics = []
    for name, (prompt, _, qtype) in first.items():
        # free_form_judge_0_100: a number 0..100; other judge types answer with a label (TRUE/FALSE, ...),
        # read as 0..1
        scale = (0.0, 100.0) if qtype.endswith("0_100") else (0.0, 1.0)
        metrics.append(Metric(name, scale, "better", prompt, list(dict.fromkeys(_SPECIAL.findall(prompt))),
                              meta={"type": qtype} if qtype else {}))
    body = json.dumps({"format": JUDGE_PROMPTS_FORMAT, "judges": sorted(judges),
                       "metrics": [{**m.as_dict(), "prompt": m.prompt} for m in metrics]},
                      indent=2, sort_keys=True, ensure_ascii=False)
    for m in metrics:  # after the body: read from the prompt, which the hash covers already
        _labels_from_prompt(m)
    return Rubric(path.stem, str(path), body, sha256_text(body), metrics, format=JUDGE_PROMPTS_FORMAT)


def _labels_from_prompt(metric: Metric) -> None:
    """A label-answered EM-paper metric (``type: free_form_judge``, 'Say "TRUE" or "FALSE" only ... answer
    with "UNKNOWN"'): TRUE = 1 and FALSE = 0 on its 0..1 scale, any other quoted word a special (no score)."""
    if metric.scale != (0.0, 1.0) or not metric.prompt:
        return
    words = list(dict.fromkeys(_QUOTED_WORD.findall(metric.prompt)))
    if "TRUE" not in words or "FALSE" not in words:
        return
    metric.kind = "labels"
    metric.labels = {"TRUE": 1.0, "FALSE": 0.0}
    metric.specials = [*metric.specials, *(w for w in words if w not in metric.labels and w not in metric.specials)]
