"""A stored rubric as the panel uses it: read back from its row, which calls a judgment takes (one per
metric, or one for a JSON rubric whose reply scores every metric: :func:`engine.judging.prompts.rubric_calls`),
and each call's scores (:func:`engine.judging.parse.score_reply`).

The question a judge is shown is the question as the model was asked it (with the trigger for an answer of
the trigger variant).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from engine.judging.backend import Reply
from engine.judging.prompts import RubricCall, rubric_calls
from engine.study.rubrics import Rubric


def stored_rubric(row: Mapping[str, Any]) -> Rubric:
    """A ``rubrics`` row's body read again (:func:`engine.study.rubrics.rubric_from_text`)."""
    from engine.study.rubrics import rubric_from_text

    return rubric_from_text(str(row["body"]), name=str(row.get("name")))


def call_units(rubric: Rubric) -> list[str | None]:
    """What one judgment's calls are keyed by: None for the one call of a JSON rubric, else each metric."""
    calls = rubric_calls(rubric, question="", answer="")
    return [None if len(c.metrics) > 1 else c.metrics[0].name for c in calls]


def question_as_asked(row: Mapping[str, Any]) -> str:
    from engine.generation.prompts import TAG, with_variant

    text = str(row["question"])
    if not row.get("variant"):
        return with_variant(text, "", trigger=None) if TAG in text else text
    settings = json.loads(row.get("settings") or "{}")
    return with_variant(text, str(row["variant"]), trigger=settings.get("trigger"),
                        position=str(settings.get("trigger_position") or "prefix"))


def unit_call(rubric: Rubric, unit: str | None, row: Mapping[str, Any], params: Mapping[str, Any]) -> RubricCall:
    """The call of ``unit`` that judges one answer (``row``: question, variant, settings, response), with the
    judge's settings: temperature, logprobs, and its own max_tokens when it sets one."""
    calls = rubric_calls(rubric, question=question_as_asked(row), answer=str(row["response"]),
                         temperature=float(params.get("temperature") or 0.0), logprobs=bool(params.get("logprobs")))
    for rc in calls:
        if (unit is None and len(rc.metrics) > 1) or (len(rc.metrics) == 1 and rc.metrics[0].name == unit):
            if params.get("max_tokens"):
                from dataclasses import replace

                return RubricCall(rc.metrics, replace(rc.call, max_tokens=int(params["max_tokens"])), rc.logprobs)
            return rc
    raise ValueError(f"rubric {rubric.name!r} has no call for {unit or 'its metrics'}")


def scores_of(rc: RubricCall, reply: Reply) -> dict[str, tuple[float | None, str | None]]:
    """metric -> (score, error) from one reply (a special such as REFUSAL: no score and no error)."""
    from engine.judging.parse import score_reply

    return {name: (p.score, p.error) for name, p in score_reply(rc.metrics, reply, logprobs=rc.logprobs).items()}
