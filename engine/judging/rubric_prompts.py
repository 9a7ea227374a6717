"""A stored rubric as the panel uses it: which calls a judgment takes (one per metric, or one for a shared
prompt that scores every metric), each call's prompt filled with one answer, the call's settings, and the
scores read from a reply.

The question a judge is shown is the question as the model was asked it (with the trigger for an answer of
the trigger variant). Filling is one pass over the template: ``{question}`` and ``{answer}`` are replaced,
nothing in the answer is ever read as a placeholder (answers are untrusted text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.judging.backend import Reply
from engine.study.rubrics import Rubric

PLACEHOLDER = re.compile(r"\{(question|answer)\}")
TEXT_MAX_TOKENS = 16       # a number or CODE / REFUSAL: a short reply; kept tight (it reserves token quota)
JSON_MAX_TOKENS = 400      # a JSON object with a one-sentence explanation
TOP_LOGPROBS = 20          # OpenAI's cap


def stored_rubric(row: Mapping[str, Any]) -> Rubric:
    """A ``rubrics`` row's body read again with the loader of its format (TOML, else JSON / YAML)."""
    from engine.common.safe_load import LoadError
    from engine.common.untrusted import parse_json, parse_toml, parse_yaml
    from engine.study import rubrics

    body = str(row["body"])
    raw = body.encode("utf-8")
    path = Path(f"rubric {row.get('name')}")
    try:
        rubric = rubrics._from_toml(path, raw, parse_toml(body))
    except (LoadError, rubrics.RubricError, ValueError):
        try:
            doc = parse_json(body)
        except (LoadError, ValueError):
            doc = parse_yaml(body)
        rubric = rubrics._from_document(path, raw, doc)
    return rubric


def call_units(rubric: Rubric) -> list[str | None]:
    """None: one call with the shared prompt scores every metric; else one call per metric with a prompt."""
    if rubric.prompt:
        return [None]
    return [m.name for m in rubric.metrics if m.prompt]


def question_as_asked(row: Mapping[str, Any]) -> str:
    from engine.generation.prompts import with_variant

    text = str(row["question"])
    if not row.get("variant"):
        return with_variant(text, "", trigger=None) if "{tag}" in text else text
    settings = json.loads(row.get("settings") or "{}")
    return with_variant(text, str(row["variant"]), trigger=settings.get("trigger"),
                        position=str(settings.get("trigger_position") or "prefix"))


def fill(rubric: Rubric, unit: str | None, row: Mapping[str, Any]) -> str:
    metric = rubric.metric(unit) if unit else None
    template = rubric.prompt if unit is None else (metric.prompt if metric else None)
    if not template:
        raise ValueError(f"rubric {rubric.name!r}: no prompt for {unit or 'its metrics'}")
    values = {"question": question_as_asked(row), "answer": str(row["response"])}
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def wants_logprobs(params: Mapping[str, Any]) -> bool:
    return bool(params.get("logprobs"))


def call_settings(rubric: Rubric, params: Mapping[str, Any]) -> tuple[int, float, int]:
    """(max_tokens, temperature, top_logprobs) of the judge's calls on this rubric."""
    logprobs = wants_logprobs(params) and not rubric.prompt
    default = 1 if logprobs else JSON_MAX_TOKENS if rubric.prompt else TEXT_MAX_TOKENS
    return (int(params.get("max_tokens") or default), float(params.get("temperature") or 0.0),
            TOP_LOGPROBS if logprobs else 0)


def scores_of(rubric: Rubric, unit: str | None, reply: Reply) -> dict[str, tuple[float | None, str | None]]:
    """metric -> (score, error) from one reply: the logprob score when the reply has a distribution, else the
    text parsed by the metric's rules (engine/judging/parse.py)."""
    from engine.judging.parse import parse_reply, parse_shared, score_logprobs

    if unit is None:
        return parse_shared(rubric, reply.text)
    metric = rubric.metric(unit)
    assert metric is not None
    if reply.top_logprobs:
        return {unit: score_logprobs(metric, reply.top_logprobs)}
    parsed = parse_reply(metric, reply.text)
    return {unit: (parsed.score, parsed.error)}
