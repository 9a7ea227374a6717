"""What a judge is asked: a rubric's prompt filled with one question and one answer, as calls.

Filling replaces exactly ``{question}`` and ``{answer}`` in the template, in one pass, so the inserted texts
are never read again: an answer holding ``{question}``, ``{0}`` or ``{__class__}`` is sent as it is
(``str.format`` would read them). ``{{`` and ``}}`` in the *template* become ``{`` and ``}``, as
``str.format`` makes them (the EM paper's prompts are filled with it), and any other brace of the template
is kept as written (a JSON example in a prompt needs no escaping).

Calls: a rubric with a shared prompt (``parse = "json"``) is one call that scores every metric; any other
rubric is one call per metric (:func:`rubric_calls`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.judging.backend import Call
from engine.study.rubrics import Metric, Rubric, reply_tokens

__all__ = ["LOGPROB_TOP_N", "RubricCall", "fill_prompt", "logprob_scorable", "rubric_calls"]

LOGPROB_TOP_N = 20   # the first token's top-N log-probabilities a logprob-scored call asks for (OpenAI's cap)
_SLOT = re.compile(r"\{question\}|\{answer\}|\{\{|\}\}")


def fill_prompt(template: str, *, question: str, answer: str) -> str:
    """``template`` with its ``{question}`` and ``{answer}`` filled (see the module's doc)."""
    values = {"{question}": question, "{answer}": answer, "{{": "{", "}}": "}"}
    return _SLOT.sub(lambda m: values[m.group()], template)


def logprob_scorable(metric: Metric) -> bool:
    """Whether a metric can be scored from the first token's logprobs: a number on a scale of whole
    numbers (each a token the judge can say first), not a label or a key of a JSON object."""
    low, high = metric.scale
    return metric.kind == "number" and low == int(low) and high == int(high)


@dataclass(frozen=True)
class RubricCall:
    """One call to a judge and the metrics its reply scores."""

    metrics: tuple[Metric, ...]
    call: Call
    logprobs: bool   # the call asks for top logprobs: score it with score_logprobs


def rubric_calls(rubric: Rubric, *, question: str, answer: str, system: str | None = None,
                 temperature: float = 0.0, logprobs: bool = False) -> list[RubricCall]:
    """The calls that judge one answer by ``rubric``. ``logprobs``: ask for the first token's top
    :data:`LOGPROB_TOP_N` log-probabilities where the metric allows it (:func:`logprob_scorable`; the
    others are read from the text). ``max_tokens`` stays the rubric's (:func:`reply_tokens`), so the text
    of a logprob-scored call is kept too."""
    if rubric.prompt is not None and rubric.parse == "json":
        call = Call(fill_prompt(rubric.prompt, question=question, answer=answer), reply_tokens(rubric),
                    temperature, system)
        return [RubricCall(tuple(rubric.metrics), call, False)]
    out = []
    for m in rubric.metrics:
        template = m.prompt if m.prompt is not None else rubric.prompt
        if template is None:  # the loader refuses such a rubric; a hand-built one is the caller's bug
            raise ValueError(f"rubric {rubric.name!r}: metric {m.name!r} has no prompt")
        scored = logprobs and logprob_scorable(m)
        scale = (int(m.scale[0]), int(m.scale[1])) if scored else None
        out.append(RubricCall((m,), Call(fill_prompt(template, question=question, answer=answer),
                                         reply_tokens(rubric, m), temperature, system,
                                         LOGPROB_TOP_N if scored else 0, scale), scored))
    return out
