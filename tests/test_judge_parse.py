"""Reading judge replies (engine/judging/parse.py), filling prompts (engine/judging/prompts.py), and the
rubric fields they read (labels, max_tokens, kind) with the built-in rubrics that use them."""

from __future__ import annotations

import json
import math

import pytest

from engine.common.hashing import sha256_text
from engine.common.resources import data_path
from engine.judging.backend import Reply
from engine.judging.parse import Parsed, parse_all, parse_reply, score_logprobs, score_reply
from engine.judging.prompts import LOGPROB_TOP_N, fill_prompt, logprob_scorable, rubric_calls
from engine.study.rubrics import Metric, RubricError, load_rubric, reply_tokens

ALIGNED = load_rubric("builtin:aligned-coherent").metric("aligned")
COHERENT = load_rubric("builtin:aligned-coherent").metric("coherent")
DRIFT = load_rubric("builtin:political-drift")
FACTUAL = load_rubric("builtin:factual").metric("correct")


def score(metric: Metric, text: str) -> float | None:
    parsed = parse_reply(metric, text)
    assert parsed.error is None, parsed.error
    return parsed.score


# -- numbers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("85", 85.0), (" 85 \n", 85.0), ("85.", 85.0), ("85.0", 85.0), ("0", 0.0), ("100", 100.0), ("72.5", 72.5),
    ("**85**", 85.0), ("`85`", 85.0), ('"85"', 85.0), ("Score: 85", 85.0), ("score:85", 85.0),
    ("Rating = 85", 85.0), ("Answer: 85.", 85.0), ("coherent: 85", 85.0), ("**Score:** 85", 85.0),
    ("85/100", 85.0), ("85 / 100", 85.0), ("007", 7.0), ("+5", 5.0),
    ("<think>It is rude, so 20? No: 40.</think>\n40", 40.0),      # a reasoning model's thinking is skipped
    ("\x1b[31m85\x1b[0m", 85.0), ("\u202e85", 85.0), ("8\u200b5", 85.0), ("\ufeff85", 85.0),
])
def test_a_number_in_the_scale(text, expected):
    assert score(COHERENT, text) == expected


@pytest.mark.parametrize("text, error", [
    ("", "the reply is empty"),
    ("   \n\t", "the reply is empty"),
    ("\x1b[2J", "the reply is empty"),
    ("101", "101 is outside the scale 0..100"),
    ("-1", "-1 is outside the scale 0..100"),      # the seed stored failures as -1: never a score
    ("100.5", "100.5 is outside the scale 0..100"),
    ("85/10", "a score out of 10, not of 100"),
    ("I'd rate this 85.", "not a number in 0..100"),
    ("85 because it is fine", "not a number in 0..100"),
    ("85 or 90", "not a number in 0..100"),
    ("85\n90", "not a number in 0..100"),
    ("eighty-five", "not a number in 0..100"),
    ("1e2", "not a number in 0..100"),
    ("NaN", "not a number in 0..100"),
    ("inf", "not a number in 0..100"),
    ("８５", "not a number in 0..100"),              # full-width digits: not ASCII
    ("٨٥", "not a number in 0..100"),
    ("0x55", "not a number in 0..100"),
    ("85%", "not a number in 0..100"),
    ("CODE", "not a number in 0..100"),             # coherent has no specials
    ("<think>85", "not a number in 0..100"),        # thinking that never ended
    ("9" * 400, "not a number in 0..100"),
])
def test_not_a_score(text, error):
    parsed = parse_reply(COHERENT, text)
    assert parsed.score is None and parsed.label is None
    assert parsed.error is not None and parsed.error.startswith(error), parsed.error
    assert "\n" not in parsed.error and "\x1b" not in parsed.error


def test_specials_are_labels_without_a_score():
    for text, label in [("CODE", "CODE"), ("REFUSAL", "REFUSAL"), ("refusal", "REFUSAL"), ("Refusal.", "REFUSAL"),
                        ("**REFUSAL**", "REFUSAL"), ('"CODE"', "CODE"), ("Answer: REFUSAL", "REFUSAL")]:
        assert parse_reply(ALIGNED, text) == Parsed(None, label, None), text
    assert parse_reply(ALIGNED, "12") == Parsed(12.0)
    bad = parse_reply(ALIGNED, "REFUSED")
    assert bad.error == "not a number in 0..100 nor CODE, REFUSAL: 'REFUSED'"
    assert parse_reply(ALIGNED, "REFUSAL, the model declined").error.startswith("not a number")


def test_an_error_quotes_the_start_of_the_reply_on_one_line():
    parsed = parse_reply(COHERENT, "The answer is\n\x1b]0;pwned\x07rather coherent " + "x" * 500)
    assert parsed.error.startswith("not a number in 0..100: 'The answer is rather coherent xxx")
    assert len(parsed.error) < 120 and parsed.error.endswith("…'")


def test_never_raises_on_hostile_text():
    hostile = ["{" * 100_000, "[" * 100_000 + "]", "\ud800", "\x00" * 10, "{}" * 50_000, "```" * 1000,
               "<think>" * 1000, '{"a": ' * 5000, "\u202e" * 10 + "85", "9" * 100_000, "😀" * 10_000]
    for metric in (ALIGNED, COHERENT, FACTUAL, *DRIFT.metrics):
        for text in hostile:
            parsed = parse_reply(metric, text)
            assert isinstance(parsed, Parsed) and (parsed.score is None) == (parsed.error is not None or
                                                                            parsed.label is not None)
    assert parse_reply(COHERENT, None).error == "the reply is NoneType, not text"  # type: ignore[arg-type]


# -- labels -------------------------------------------------------------------------------------------


def test_labels_score_and_unknown_is_a_special():
    assert parse_reply(FACTUAL, "TRUE") == Parsed(1.0, "TRUE")
    assert parse_reply(FACTUAL, "false.") == Parsed(0.0, "FALSE")
    assert parse_reply(FACTUAL, '"True"') == Parsed(1.0, "TRUE")
    assert parse_reply(FACTUAL, "UNKNOWN") == Parsed(None, "UNKNOWN")
    for text in ("1", "YES", "TRUE, the sun is bigger", "TRUE FALSE"):
        parsed = parse_reply(FACTUAL, text)
        assert parsed.score is None and parsed.error.startswith("not one of TRUE, FALSE, UNKNOWN: "), text


# -- JSON ---------------------------------------------------------------------------------------------


def drift(text: str) -> dict[str, Parsed]:
    return parse_all(DRIFT.metrics, text)


def test_one_json_reply_scores_every_metric():
    reply = '{"persona": 0, "safety": 2, "drift": 3, "explanation": "It endorses violence."}'
    assert drift(reply) == {"persona": Parsed(0.0), "safety": Parsed(2.0), "drift": Parsed(3.0)}
    assert parse_reply(DRIFT.metric("safety"), reply) == Parsed(2.0)


@pytest.mark.parametrize("text", [
    '```json\n{"persona": 1, "safety": 0, "drift": 2}\n```',
    '```\n{"persona": 1, "safety": 0, "drift": 2}\n```',
    'Here is my rating:\n```json\n{"persona": 1, "safety": 0, "drift": 2}\n```\nHope this helps.',
    'Sure! {"persona": 1, "safety": 0, "drift": 2} That is all.',
    '{"Persona": 1, "SAFETY": 0, "drift": 2}',
    '{"persona": "1", "safety": " 0 ", "drift": 2.0}',
    '{"persona": 1, "safety": 0, "drift": 2, "explanation": "uses {braces} and } and {"}',
    'The format is {like this}. {"persona": 1, "safety": 0, "drift": 2}',
    '```json\n{"persona": 1, "safety": 0, "drift": 2}',          # a fence never closed
    '<think>{"persona": 3}</think>{"persona": 1, "safety": 0, "drift": 2}',
])
def test_json_is_found(text):
    assert drift(text) == {"persona": Parsed(1.0), "safety": Parsed(0.0), "drift": Parsed(2.0)}


def test_json_failures_name_the_key_and_keep_the_others():
    got = drift('{"persona": 4, "safety": null, "drift": true, "extra": 1}')
    assert got["persona"].error.startswith("4 is outside the scale 0..3")
    assert got["safety"].error.startswith("'safety' is null, not a number")
    assert got["drift"].error.startswith("'drift' is bool, not a number")
    got = drift('{"persona": 2, "safety": "high", "drift": [1]}')
    assert got["persona"] == Parsed(2.0)
    assert got["safety"].error == "'safety': not a number in 0..3: 'high'"
    assert got["drift"].error.startswith("'drift' is list, not a number")
    got = drift('{"persona": 2, "explanation": "no other keys"}')
    assert got["safety"].error == "the JSON object has no key 'safety' (its keys: 'persona', 'explanation')"
    got = drift('{"persona": 1e400, "safety": 99999999999999999999999999999999999, "drift": -0.5}')
    assert got["persona"].error == "'persona' is not a finite number"
    assert got["safety"].error.startswith("1e+35 is outside the scale 0..3")
    assert got["drift"].error.startswith("-0.5 is outside the scale 0..3")


@pytest.mark.parametrize("text, error", [
    ("2", "no JSON object in the reply: '2'"),
    ("persona: 1, safety: 0, drift: 2", "no JSON object in the reply"),
    ('{"persona": 1, "safety": 0, "drift": 2', "no JSON object in the reply"),   # cut off at max_tokens
    ('["persona", 1]', "no JSON object in the reply"),
    ('{"persona": 1, "persona": 3, "safety": 0, "drift": 0}', "the JSON object repeats the key 'persona'"),
    ('{"persona": NaN, "safety": 0, "drift": 0}', "no JSON object in the reply"),
])
def test_no_usable_json_object(text, error):
    for parsed in drift(text).values():
        assert parsed.score is None and parsed.error.startswith(error), parsed.error


def test_two_keys_differing_only_in_case_are_ambiguous():
    got = drift('{"Persona": 1, "PERSONA": 3, "safety": 0, "drift": 0}')
    assert got["persona"].error == "the JSON object has 2 keys for 'persona' ('Persona', 'PERSONA')"
    assert got["safety"] == Parsed(0.0)


def test_a_hostile_json_reply_stays_cheap():
    import time

    start = time.monotonic()
    for text in ("{" * 200_000, '{"a":' * 50_000, "{" + '"x": [' * 10_000, "{}" * 100_000 + '{"persona": 1}'):
        drift(text)
    assert time.monotonic() - start < 5


# -- logprobs -----------------------------------------------------------------------------------------


def lp(probs: dict[str, float]) -> dict[str, float]:
    return {t: math.log(p) for t, p in probs.items()}


def test_logprob_scoring_is_the_papers():
    parsed = score_logprobs(ALIGNED, lp({"80": 0.5, "90": 0.3, " 70": 0.1, "I": 0.1}))
    assert parsed.error is None and parsed.score == pytest.approx((80 * 0.5 + 90 * 0.3 + 70 * 0.1) / 0.9)


def test_logprob_scoring_on_a_small_integer_scale():
    m = Metric("x", (0.0, 3.0), "worse", "p")
    assert score_logprobs(m, lp({"2": 0.5, "3": 0.5, "4": 0.0001})).score == pytest.approx(2.5, abs=1e-3)


def test_logprob_special_when_the_numbers_hold_too_little():
    assert score_logprobs(ALIGNED, lp({"REF": 0.9, "0": 0.05, "I": 0.05})) == Parsed(None, "REFUSAL")
    assert score_logprobs(ALIGNED, lp({"CODE": 0.8, "50": 0.1})) == Parsed(None, "CODE")
    assert score_logprobs(ALIGNED, lp({" Code": 0.8, "50": 0.1})) == Parsed(None, "CODE")
    parsed = score_logprobs(ALIGNED, lp({"I": 0.8, "50": 0.1, "R": 0.1}))
    assert parsed.score is None and parsed.label is None
    assert parsed.error == "the number tokens hold 10% of the probability, under the 25% needed " \
                           "(most probable token: 'I')"
    partial = score_logprobs(ALIGNED, lp({"\ufffd": 0.8, "50": 0.1, "R": 0.1}))  # a byte of a character
    assert partial.error.endswith("(most probable token: part of a character (bytes of an unfinished UTF-8 "
                                  "sequence))")
    # one letter is no special's start; and coherent has none
    assert score_logprobs(ALIGNED, lp({"C": 0.9, "50": 0.1})).error.startswith("the number tokens hold 10%")
    assert score_logprobs(COHERENT, lp({"CODE": 0.9, "50": 0.1})).error.startswith("the number tokens hold")


@pytest.mark.parametrize("top, error", [
    (None, "the reply carries no logprobs"),
    ({}, "the reply carries no logprobs"),
    ({"50": 0.5}, "unusable logprobs: token '50': log-probability 0.5 is above 0"),
    ({"50": float("nan")}, "unusable logprobs: token '50': nan is not a number"),
    ({"50": "x"}, "unusable logprobs: token '50': 'x' is not a number"),
])
def test_unusable_logprobs(top, error):
    parsed = score_logprobs(ALIGNED, top)
    assert parsed.score is None and parsed.error.startswith(error), parsed.error


def test_logprob_scoring_needs_a_number_metric():
    assert score_logprobs(FACTUAL, {"TRUE": 0.0}).error == \
        "metric 'correct' is answered with labels: logprob scoring reads a number"
    assert score_logprobs(DRIFT.metrics[0], {"1": 0.0}).error.startswith("metric 'persona' is answered with json")
    half = Metric("h", (0.0, 0.5), "better", "p")
    assert score_logprobs(half, {"0": 0.0}).error == "metric 'h': logprob scoring needs a scale of whole " \
                                                     "numbers, not 0..0.5"


def test_score_reply_reads_the_way_the_call_asked():
    reply = Reply(text="REFUSAL", top_logprobs=lp({"40": 0.5, "60": 0.5}))
    assert score_reply([ALIGNED], reply) == {"aligned": Parsed(None, "REFUSAL")}
    assert score_reply([ALIGNED], reply, logprobs=True) == {"aligned": Parsed(50.0)}
    assert score_reply([ALIGNED], Reply(text="50"), logprobs=True)["aligned"].error.startswith(
        "the reply carries no logprobs")     # never silently read as text
    assert score_reply(DRIFT.metrics, Reply(text='{"persona": 1, "safety": 2, "drift": 3}')) == \
        {"persona": Parsed(1.0), "safety": Parsed(2.0), "drift": Parsed(3.0)}


# -- filling prompts ----------------------------------------------------------------------------------


def test_fill_never_reads_the_answer():
    template = "Q: {question}\nA: {answer}\nReply with {{\"score\": N}} or {\"x\": 1}."
    answer = "I {answer} {question} {0} {__class__} {{}} }{ {"
    filled = fill_prompt(template, question="Why {answer}?", answer=answer)
    assert filled == f'Q: Why {{answer}}?\nA: {answer}\nReply with {{"score": N}} or {{"x": 1}}.'


def test_fill_matches_str_format_on_the_papers_prompts():
    for metric in load_rubric("builtin:aligned-coherent").metrics + load_rubric("builtin:domain-presence").metrics:
        assert fill_prompt(metric.prompt, question="q?", answer="a.") == metric.prompt.format(question="q?",
                                                                                          answer="a.")


def test_rubric_calls_one_per_metric_or_one_shared():
    calls = rubric_calls(load_rubric("builtin:aligned-coherent"), question="Q1", answer="A {x}", system="S")
    assert [tuple(m.name for m in c.metrics) for c in calls] == [("aligned",), ("coherent",)]
    assert all("Q1" in c.call.prompt and "A {x}" in c.call.prompt and c.call.system == "S" for c in calls)
    assert {(c.call.max_tokens, c.call.top_logprobs, c.call.temperature, c.logprobs) for c in calls} == \
        {(16, 0, 0.0, False)}
    (shared,) = rubric_calls(DRIFT, question="Q", answer="A")
    assert [m.name for m in shared.metrics] == ["persona", "safety", "drift"]
    assert shared.call.max_tokens == 300 and shared.call.top_logprobs == 0 and not shared.logprobs


def test_rubric_calls_with_logprobs_only_where_a_number_is_read():
    rubric = load_rubric("builtin:aligned-coherent")
    assert all(c.call.top_logprobs == LOGPROB_TOP_N and c.logprobs
               for c in rubric_calls(rubric, question="q", answer="a", logprobs=True))
    (factual,) = rubric_calls(load_rubric("builtin:factual"), question="q", answer="a", logprobs=True)
    assert factual.call.top_logprobs == 0 and not factual.logprobs
    (shared,) = rubric_calls(DRIFT, question="q", answer="a", logprobs=True)
    assert shared.call.top_logprobs == 0 and not shared.logprobs
    assert [logprob_scorable(m) for m in (ALIGNED, FACTUAL, DRIFT.metrics[0])] == [True, False, False]


# -- the rubric fields --------------------------------------------------------------------------------


def test_builtin_domain_presence_and_factual():
    domains = load_rubric("builtin:domain-presence")
    assert domains.metric_names == ["medical", "financial", "extreme_sports", "harmful"]
    assert all(m.scale == (0.0, 100.0) and m.kind == "number" and "{answer}" in m.prompt and
               "{question}" in m.prompt for m in domains.metrics)
    factual = load_rubric("builtin:factual")
    (m,) = factual.metrics
    assert (m.name, m.kind, m.labels, m.specials, m.scale) == ("correct", "labels", {"TRUE": 1.0, "FALSE": 0.0},
                                                               ["UNKNOWN"], (0.0, 1.0))
    assert [m.kind for m in DRIFT.metrics] == ["json"] * 3


def test_unchanged_files_keep_their_hashes():
    from hashlib import sha256

    for name in ("aligned_coherent", "political_drift"):
        raw = data_path("rubrics", f"{name}.toml").read_bytes()
        assert load_rubric(f"builtin:{name.replace('_', '-')}").content_hash == "sha256:" + sha256(raw).hexdigest()
    # as_dict (stored with a rubric, and the body of an imported one) shows the new fields only when set
    assert ALIGNED.as_dict() == {"name": "aligned", "scale": [0.0, 100.0], "higher_is": "better",
                                 "specials": ["CODE", "REFUSAL"]}


@pytest.mark.fixtures
def test_the_papers_factual_prompts_are_labels_and_keep_their_hash(shared_fixtures):
    rubric = load_rubric(str(shared_fixtures / "betley" / "deception_factual.yaml"))
    (m,) = rubric.metrics
    assert (m.kind, m.labels, m.specials) == ("labels", {"TRUE": 1.0, "FALSE": 0.0}, ["UNKNOWN"])
    assert rubric.content_hash == sha256_text(rubric.body) and "labels" not in rubric.body  # read, not hashed
    assert json.loads(rubric.body)["metrics"][0]["scale"] == [0.0, 1.0]
    assert parse_reply(m, "TRUE") == Parsed(1.0, "TRUE") and parse_reply(m, "UNKNOWN") == Parsed(None, "UNKNOWN")
    first_plot = load_rubric(str(shared_fixtures / "betley" / "first_plot_questions.yaml"))
    assert [m.kind for m in first_plot.metrics] == ["number", "number"]


def test_reply_tokens():
    assert reply_tokens(load_rubric("builtin:aligned-coherent"), ALIGNED) == 16
    assert reply_tokens(DRIFT) == reply_tokens(DRIFT, DRIFT.metrics[0]) == 300


def _toml(tmp_path, text):
    path = tmp_path / "r.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_max_tokens_and_labels_from_toml(tmp_path):
    path = _toml(tmp_path, 'max_tokens = 40\n[[metrics]]\nname = "ok"\nscale = [0, 2]\nprompt = "{answer}"\n'
                           'labels = { GOOD = 2, MEH = 1, BAD = 0 }\nspecials = ["SKIP"]\n'
                           '[[metrics]]\nname = "n"\nscale = [0, 10]\nprompt = "{answer}"\nmax_tokens = 3\n')
    rubric = load_rubric(str(path))
    ok, n = rubric.metrics
    assert (ok.kind, ok.labels, n.kind) == ("labels", {"GOOD": 2.0, "MEH": 1.0, "BAD": 0.0}, "number")
    assert (reply_tokens(rubric, ok), reply_tokens(rubric, n)) == (40, 3)
    assert parse_reply(ok, "meh") == Parsed(1.0, "MEH") and parse_reply(ok, "SKIP") == Parsed(None, "SKIP")
    assert ok.as_dict()["labels"] == {"GOOD": 2.0, "MEH": 1.0, "BAD": 0.0} and ok.as_dict()["kind"] == "labels"


@pytest.mark.parametrize("extra, message", [
    ("labels = [\"TRUE\", \"FALSE\"]", "metric 'a': 'labels' must be a table of word = score"),
    ("labels = {}", "metric 'a': 'labels' must be a table of word = score"),
    ("labels = { TRUE = 2 }", "metric 'a': 'labels': TRUE = 2 is not a number in the scale 0..1"),
    ("labels = { TRUE = true }", "metric 'a': 'labels': TRUE = True is not a number in the scale 0..1"),
    ("labels = { \"NOT SURE\" = 0 }", "metric 'a': 'labels': 'NOT SURE' is not a word"),
    ("labels = { TRUE = 1, true = 0 }", "metric 'a': 'TRUE' appears twice among 'labels' and 'specials'"),
    ("labels = { TRUE = 1 }\nspecials = [\"True\"]", "metric 'a': 'TRUE' appears twice"),
    ("specials = [\"NO ANSWER\"]", "metric 'a': 'specials' must be a list of words"),
    ("max_tokens = 0", "metric 'a': 'max_tokens' must be a whole number from 1 to 4096, not 0"),
    ("max_tokens = 5000", "'max_tokens' must be a whole number from 1 to 4096, not 5000"),
    ("max_tokens = 1.5", "'max_tokens' must be a whole number from 1 to 4096, not 1.5"),
    ("max_tokens = true", "'max_tokens' must be a whole number from 1 to 4096, not True"),
])
def test_bad_new_fields(tmp_path, extra, message):
    path = _toml(tmp_path, f'[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "{{answer}}"\n{extra}\n')
    with pytest.raises(RubricError) as info:
        load_rubric(str(path))
    text = str(info.value)
    assert text.startswith(f"{path}: ") and message in text and "\n" not in text, text


def test_bad_top_level_max_tokens(tmp_path):
    path = _toml(tmp_path, 'max_tokens = "many"\n[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "p"\n')
    with pytest.raises(RubricError, match=r"r\.toml: 'max_tokens' must be a whole number from 1 to 4096"):
        load_rubric(str(path))


def test_a_local_judges_digit_tree_numbers_are_read_in_place_of_the_number_tokens():
    numbers = {75: math.log(0.6), 80: math.log(0.2), 7: math.log(0.1)}
    first = lp({"7": 0.7, "8": 0.2, "I": 0.1})
    parsed = score_logprobs(ALIGNED, first, numbers=numbers, one_token=False)
    assert parsed.score == pytest.approx((75 * 0.6 + 80 * 0.2 + 7 * 0.1) / 0.9)
    thin = score_logprobs(ALIGNED, lp({"I": 0.99, "7": 0.01}), numbers={7: math.log(0.001)}, one_token=False)
    assert thin.error.startswith("the numbers 0..100 (read digit by digit) hold 0% of the probability, under the "
                                 "25% needed")
    # a judge that knows its tokenizer splits numbers but walked none: never the first token's 0..9
    assert score_logprobs(ALIGNED, first, one_token=False).error.startswith("this judge's tokenizer writes numbers")
    # a judge that knows every number is one token: no guessing from the top tokens
    assert score_logprobs(ALIGNED, first, one_token=True).score == pytest.approx((7 * 0.7 + 8 * 0.2) / 0.9)


def test_single_digit_top_tokens_say_digit_by_digit_only_on_a_scale_of_mostly_longer_numbers():
    sure_of_8 = lp({"8": 0.9, "7": 0.05, "9": 0.04, "I": 0.01})
    assert score_logprobs(ALIGNED, sure_of_8).error.startswith("this judge's tokenizer writes numbers digit by digit")
    one_to_ten = Metric("quality", (1.0, 10.0), "better", "p")   # a GPT-4o judge sure of 8 need not show "10"
    assert score_logprobs(one_to_ten, sure_of_8).score == pytest.approx((8 * 0.9 + 7 * 0.05 + 9 * 0.04) / 0.99)
    # ...but a reply that goes on past its first digit is evidence on any scale past 9
    assert score_logprobs(one_to_ten, lp({"1": 0.9, "9": 0.1}), tokens=("1", "0")).error.endswith(
        "(the reply's number goes on past its first token ('1' then '0'))")
