"""Reading a judge's reply as scores: never raising, never a −1.

A judge's reply is untrusted text. What it may say depends on the metric (:attr:`Metric.kind`, set by the
rubric loader):

- ``number``: a number in the metric's scale, or one of its ``specials`` (CODE, REFUSAL: no score, the
  word kept as the label). Tolerated around it: whitespace, wrapping quotes, backticks or markdown ``**``,
  one trailing ``.`` or ``!``, a leading ``Score:`` / ``Rating:`` / ``Answer:`` / ``<metric>:``, and
  ``/high`` after the number when ``high`` is the top of the scale (``85/100``). Anything more (``I'd say
  85``, ``85 because ...``, two numbers) is refused: a sentence holding a number is not read, because
  reading it means guessing which number the judge meant. Numbers are ASCII decimals (``85``, ``2.5``),
  no exponents, and a number outside the scale is an error, never clamped.
- ``labels``: one of the metric's ``labels`` (TRUE / FALSE: the label's score) or ``specials`` (UNKNOWN: no
  score), matched without regard to case, with the same tolerance.
- ``json``: the metrics of a ``parse = "json"`` rubric are keys of one JSON object, so one reply scores
  them all (:func:`parse_all`). The object is found inside ```` ``` ```` fences (``json`` or not) or
  anywhere in the text: the first ``{`` that starts a JSON object. A key is matched exactly, else without
  regard to case; its value is a number in the scale, or a string read as a ``number`` reply (``"2"``,
  ``"REFUSAL"``). Keys repeated in the object are an error (which one counts is ambiguous); other keys
  (``explanation``) are ignored here: the raw reply is stored anyway.

A leading ``<think>…</think>`` block (a reasoning model's) is skipped, and terminal control sequences,
bidirectional overrides and zero-width characters are removed before reading.

Every failure is ``Parsed(score=None, error=...)`` with one line saying what was wrong and the start of the
reply; the caller stores the raw reply beside it. ``label`` is set for a special or a label reply.

:func:`score_logprobs` scores a ``number`` metric the EM paper's way from the first token's top
log-probabilities (:func:`engine.judging.logprob.score_from_logprobs`); :func:`score_reply` picks one of
the two ways for the metrics one call asked for.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.common.text import one_line, strip_control
from engine.judging.backend import Reply
from engine.judging.logprob import MIN_MASS, SPLIT_NUMBERS, digits_split, score_from_logprobs
from engine.study.rubrics import Metric

__all__ = ["Parsed", "parse_all", "parse_reply", "score_logprobs", "score_reply"]

MAX_JSON_CHARS = 100_000     # of a reply searched for a JSON object (a judge's is a few hundred)
MAX_JSON_STARTS = 64         # '{' tried as the start of the object: a hostile reply of many braces stays cheap
PREVIEW_CHARS = 60           # of the reply quoted in an error
_INVISIBLE = re.compile("[\u200b-\u200d\u2060\ufeff]")   # zero-width characters and the BOM
_THINK = re.compile(r"\A\s*<think>.*?</think>", re.S)
_WRAP = " \t\n*_`\"'\u201c\u201d\u2018\u2019"             # what may wrap a bare reply
_PREFIX = re.compile(r"\A(?:score|rating|answer|grade)\s*[:=]\s*", re.I)
_NUMBER = re.compile(r"\A([+-]?[0-9]{1,15}(?:\.[0-9]{1,15})?)(?:\s*/\s*([0-9]{1,15}))?\Z")
_FENCE = re.compile(r"```[A-Za-z]*[ \t]*\n?(.*?)```", re.S)


@dataclass(frozen=True)
class Parsed:
    """One metric's reading of a reply: a score, or a label (a special: no score), or an error."""

    score: float | None
    label: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_reply(metric: Metric, text: str) -> Parsed:
    """``metric``'s score from a judge's reply ``text`` (see the module's doc for what is read)."""
    return parse_all([metric], text)[metric.name]


def parse_all(metrics: Sequence[Metric], text: str) -> dict[str, Parsed]:
    """Each metric's reading of one reply: the metrics one call asked for (every metric of a JSON rubric's
    shared prompt; else one). A JSON reply's object is found once for them all."""
    if not isinstance(text, str):
        return {m.name: _error(f"the reply is {type(text).__name__}, not text") for m in metrics}
    clean = _clean(text)
    if not clean:
        return {m.name: _error("the reply is empty") for m in metrics}
    out: dict[str, Parsed] = {}
    json_metrics = [m for m in metrics if m.kind == "json"]
    if json_metrics:
        obj, problem = _json_object(clean)
        for m in json_metrics:
            out[m.name] = _error(f"{problem}: {_preview(clean)}") if obj is None else _from_object(m, obj)
    for m in metrics:
        if m.kind != "json":
            out[m.name] = _from_words(m, clean)
    return {m.name: out[m.name] for m in metrics}


def score_logprobs(metric: Metric, top_logprobs: Mapping[str, float] | None, *,
                   min_mass: float = MIN_MASS, numbers: Mapping[int, float] | None = None,
                   one_token: bool | None = None, tokens: Sequence[str] | None = None) -> Parsed:
    """``metric``'s score from the first generated token's top log-probabilities (token -> natural log),
    the EM paper's way: the probability-weighted mean of the integer tokens in the scale, when they hold at
    least ``min_mass`` of the probability. When they hold less and the most probable token is one of the
    metric's specials, or the start of one (``REF`` of REFUSAL; two characters at least), that special is
    the label; otherwise the error says how much mass the numbers held and what the judge mostly said.

    ``numbers`` (n -> log P(the reply is n), a local judge's digit-tree walk) replaces the integer tokens
    when given. ``one_token``: whether the judge's tokenizer writes each number of the scale as one token,
    when the judge knows (a local judge); when it is None (an endpoint) a score is refused if
    :func:`engine.judging.logprob.digits_split` finds the numbers written digit by digit (``tokens``: the
    reply's tokens, where the endpoint gave them)."""
    if metric.kind != "number":
        return _error(f"metric {metric.name!r} is answered with {metric.kind}: logprob scoring reads a number")
    low, high = metric.scale
    if low != int(low) or high != int(high):
        return _error(f"metric {metric.name!r}: logprob scoring needs a scale of whole numbers, not "
                      f"{low:g}..{high:g}")
    if not top_logprobs and numbers is None:
        return _error("the reply carries no logprobs (does the endpoint return them?)")
    if one_token is False and numbers is None:
        return _error(SPLIT_NUMBERS.format(low=f"{low:g}", high=f"{high:g}"))
    read = (top_logprobs or {}) if numbers is None else {str(n): lp for n, lp in numbers.items()}
    try:
        score = score_from_logprobs(read, min_mass=min_mass, low=int(low), high=int(high), logprobs=True)
    except ValueError as exc:
        return _error(f"unusable logprobs: {one_line(str(exc), 200)}")
    if score is not None:
        split = digits_split(read, low=int(low), high=int(high), tokens=tokens) if one_token is None else None
        if split is not None:
            return _error(f"{SPLIT_NUMBERS.format(low=f'{low:g}', high=f'{high:g}')} ({split})")
        return Parsed(score)
    first = top_logprobs or {}
    top = max(first, key=lambda t: first[t]) if first else ""
    word = _clean(top).strip(_WRAP).upper()
    starts = [s for s in metric.specials if len(word) >= 2 and s.upper().startswith(word)]
    if len(starts) == 1:
        return Parsed(None, starts[0])
    mass = sum(math.exp(lp) for t, lp in read.items() if _int_in(t, int(low), int(high)))
    what = (f"the numbers {low:g}..{high:g} (read digit by digit) hold" if numbers is not None
            else "the number tokens hold")
    # tokens that are part of a UTF-8 character decode alike, to U+FFFD (summed under it): say what they are
    said = "part of a character (bytes of an unfinished UTF-8 sequence)" if top == "\ufffd" else _preview(top)
    return _error(f"{what} {mass:.0%} of the probability, under the {min_mass:.0%} needed "
                  f"(most probable token: {said})")


def score_reply(metrics: Sequence[Metric], reply: Reply, *, logprobs: bool = False) -> dict[str, Parsed]:
    """Each metric's reading of one call's reply: from its top logprobs when ``logprobs`` (the call asked
    for them; a reply without them is an error, never silently read as text), else from its text. A local
    judge's digit-tree numbers (``reply.number_logprobs``) are read in place of the number tokens."""
    if not logprobs:
        return parse_all(metrics, reply.text)
    return {m.name: score_logprobs(m, reply.top_logprobs, numbers=reply.number_logprobs,
                                   one_token=reply.numbers_one_token, tokens=reply.tokens) for m in metrics}


# -- reading ------------------------------------------------------------------------------------------


def _error(message: str) -> Parsed:
    return Parsed(None, None, message)


def _preview(text: str) -> str:
    return repr(one_line(text, PREVIEW_CHARS))


def _clean(text: str) -> str:
    text = _INVISIBLE.sub("", strip_control(text))
    return _THINK.sub("", text, count=1).strip()


def _bare(text: str, metric: Metric) -> str:
    """The reply without what may wrap a bare word or number."""
    core = text
    for _ in range(3):  # '**85**.', '"TRUE".', 'Score: **85**'
        before = core
        core = core.strip(_WRAP)
        if core.endswith((".", "!")):
            core = core[:-1]
        core = _PREFIX.sub("", core)
        if core[:len(metric.name) + 1].lower() == metric.name.lower() + ":":
            core = core[len(metric.name) + 1:]
        if core == before:
            break
    return core.strip(_WRAP)


def _from_words(metric: Metric, text: str) -> Parsed:
    """A ``number`` or ``labels`` reply: the whole reply is one number or one word."""
    core = _bare(text, metric)
    word = core.upper()
    for label, score in metric.labels.items():
        if word == label.upper():
            return Parsed(score, label)
    for special in metric.specials:
        if word == special.upper():
            return Parsed(None, special)
    if metric.kind == "labels":
        return _error(f"not one of {', '.join([*metric.labels, *metric.specials])}: {_preview(text)}")
    number = _NUMBER.match(core)
    if number is None:
        return _error(f"not a number{_specials_hint(metric)}: {_preview(text)}")
    value = float(number.group(1))
    if number.group(2) is not None and float(number.group(2)) != metric.scale[1]:
        return _error(f"a score out of {number.group(2)}, not of {metric.scale[1]:g}: {_preview(text)}")
    return _in_scale(metric, value, text)


def _specials_hint(metric: Metric) -> str:
    low, high = metric.scale
    words = f" nor {', '.join(metric.specials)}" if metric.specials else ""
    return f" in {low:g}..{high:g}{words}"


def _in_scale(metric: Metric, value: float, text: str) -> Parsed:
    low, high = metric.scale
    if not low <= value <= high:
        return _error(f"{value:g} is outside the scale {low:g}..{high:g}: {_preview(text)}")
    return Parsed(value)


def _int_in(token: str, low: int, high: int) -> bool:
    try:
        return low <= int(token) <= high  # the rule score_from_logprobs applies, as the EM paper's code does
    except (TypeError, ValueError):
        return False


# -- JSON ---------------------------------------------------------------------------------------------


class _Repeated(Exception):
    """A key twice in one object."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise _Repeated(twice)
    return dict(pairs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


_DECODER = json.JSONDecoder(object_pairs_hook=_pairs, parse_constant=_refuse_constant)


def _json_object(text: str) -> tuple[dict[str, Any] | None, str]:
    """The first JSON object of the reply (inside a code fence when there is one), or why there is none."""
    fenced = _FENCE.search(text)
    places = [fenced.group(1), text] if fenced else [text]
    for place in places:
        place = place[:MAX_JSON_CHARS]
        start = place.find("{")
        for _ in range(MAX_JSON_STARTS):
            if start < 0:
                break
            try:
                value, _end = _DECODER.raw_decode(place, start)
            except _Repeated as exc:
                return None, f"the JSON object repeats the key {str(exc)[:40]!r}"
            except (ValueError, RecursionError):
                value = None
            if isinstance(value, dict):
                return value, ""
            start = place.find("{", start + 1)
    return None, "no JSON object in the reply"


def _from_object(metric: Metric, obj: dict[str, Any]) -> Parsed:
    key = metric.name if metric.name in obj else None
    if key is None:
        folded = [k for k in obj if k.lower() == metric.name.lower()]
        if len(folded) > 1:
            return _error(f"the JSON object has {len(folded)} keys for {metric.name!r} "
                          f"({', '.join(repr(k) for k in folded[:4])})")
        key = folded[0] if folded else None
    if key is None:
        keys = ", ".join(repr(one_line(k, 30)) for k in list(obj)[:8]) or "none"
        return _error(f"the JSON object has no key {metric.name!r} (its keys: {keys})")
    value = obj[key]
    if isinstance(value, str):
        as_words = _from_words(Metric(metric.name, metric.scale, metric.higher_is, specials=metric.specials,
                                      kind="labels" if metric.labels else "number", labels=metric.labels),
                               _clean(value))
        if as_words.error:
            return _error(f"{metric.name!r}: {as_words.error}")
        return as_words
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "null" if value is None else type(value).__name__
        return _error(f"{metric.name!r} is {kind}, not a number: {_preview(json.dumps(value))}")
    try:
        number = float(value)
    except OverflowError:  # an integer of 400 digits
        number = math.inf
    if not math.isfinite(number):
        return _error(f"{metric.name!r} is not a finite number")
    return _in_scale(metric, number, str(value)[:PREVIEW_CHARS])
