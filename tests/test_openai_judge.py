"""The OpenAI-compatible judge (engine/judging/openai_judge.py) over real HTTP against tests/openai_server.py:
one attempt per call, failures as the panel needs them, logprobs of the first token; and the EM paper's
scores reproduced from its judge's logprobs served by the test server."""

from __future__ import annotations

import csv
import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.common.openai_http import EndpointError
from engine.importers.betley_csv import TOLERANCE
from engine.judging.backend import Call, CallFailed, Reply, Throttled
from engine.judging.logprob import parse_prob_dict
from engine.judging.openai_judge import OpenAIJudgeBackend
from engine.judging.parse import Parsed, score_logprobs, score_reply
from engine.judging.prompts import fill_prompt, rubric_calls
from engine.study.rubrics import load_rubric
from openai_server import ChatReply

CALL = Call("Rate this answer.", max_tokens=5)
KEY = "sk-test-0123456789abcdef"


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "\x1b" not in text and KEY not in text
    return text


@pytest.fixture
def server(openai_server):
    return openai_server()


@pytest.fixture
def judge(server):
    return OpenAIJudgeBackend(server.url)


def test_one_call_sends_the_messages_and_returns_the_reply(openai_server):
    server = openai_server(chat_reply=lambda body: "85")
    reply = OpenAIJudgeBackend(server.url).call(
        "judge", Call("Rate it.", max_tokens=7, temperature=0.3, system="You are a judge."), timeout_s=10)
    (body,) = server.bodies("/v1/chat/completions")
    assert body == {"model": "judge", "messages": [{"role": "system", "content": "You are a judge."},
                                                    {"role": "user", "content": "Rate it."}],
                    "max_tokens": 7, "temperature": 0.3}
    assert reply == Reply(text="85", input_tokens=6, output_tokens=1, top_logprobs=None, stop_reason="stop",
                          extra={"model": "judge"})
    OpenAIJudgeBackend(server.url).call("judge", CALL, timeout_s=10)
    assert [m["role"] for m in server.bodies("/v1/chat/completions")[1]["messages"]] == ["user"]


def test_logprobs_are_the_first_tokens(openai_server):
    tokens = [("8", {"8": -0.2, "7": -1.9, "REF": -3.0}), ("5", {"5": -0.01, "0": -5.0})]
    server = openai_server(chat_reply=lambda body: ChatReply("85", tokens=tokens))
    judge = OpenAIJudgeBackend(server.url)
    reply = judge.call("judge", Call("Rate it.", max_tokens=1, top_logprobs=2), timeout_s=10)
    (body,) = server.bodies("/v1/chat/completions")
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert reply.top_logprobs == {"8": -0.2, "7": -1.9} and reply.output_tokens == 2
    judge.call("judge", Call("Rate it.", max_tokens=1, top_logprobs=50), timeout_s=10)
    assert server.bodies("/v1/chat/completions")[1]["top_logprobs"] == 20      # OpenAI's cap


def test_logprobs_the_endpoint_did_not_send_are_none(server, judge):
    server.reply_next(200, {"choices": [{"message": {"content": "85"}, "logprobs": None}]})
    reply = judge.call("judge", Call("x", max_tokens=1, top_logprobs=20), timeout_s=10)
    assert reply.top_logprobs is None and reply.input_tokens is None
    assert score_logprobs(load_rubric("builtin:aligned-coherent").metrics[0], reply.top_logprobs).error.startswith(
        "the reply carries no logprobs")


def test_odd_logprob_entries_are_dropped_and_twins_add_up(server, judge):
    tops = [{"token": "50", "logprob": math.log(0.25)}, {"token": "50", "logprob": math.log(0.25)},
            {"token": 7, "logprob": -1.0}, {"token": "60", "logprob": True}, {"token": "70", "logprob": 0.5},
            {"token": "80", "logprob": "x"}, "junk", {"token": "90", "logprob": math.log(0.5)}]
    server.reply_next(200, {"choices": [{"message": {"content": "50"},
                                         "logprobs": {"content": [{"token": "50", "top_logprobs": tops}]}}]})
    reply = judge.call("judge", Call("x", max_tokens=1, top_logprobs=20), timeout_s=10)
    assert reply.top_logprobs.keys() == {"50", "90"}
    assert reply.top_logprobs["50"] == pytest.approx(math.log(0.5))


def test_429_is_throttled_with_retry_after_and_one_attempt(server, judge):
    server.fail_next("429", retry_after=7)
    with pytest.raises(Throttled) as exc:
        judge.call("judge", CALL, timeout_s=10)
    assert one_line(exc) == f"{server.url}/chat/completions: HTTP 429: Too many requests"
    assert exc.value.retry_after == 7
    server.fail_next("429")
    with pytest.raises(Throttled) as exc:
        judge.call("judge", CALL, timeout_s=10)
    assert exc.value.retry_after is None
    assert server.count("/v1/chat/completions") == 2       # never retried here


def test_an_exhausted_openai_quota_is_not_throttling(server, judge):
    server.reply_next(429, {"error": {"message": "You exceeded your current quota, please check your plan and "
                                                 "billing details.", "type": "insufficient_quota",
                                      "code": "insufficient_quota"}})
    with pytest.raises(CallFailed) as exc:
        judge.call("judge", CALL, timeout_s=10)
    assert not exc.value.retryable and exc.value.status == 429
    assert one_line(exc).endswith("HTTP 429: You exceeded your current quota, please check your plan and billing "
                                  "details.")


@pytest.mark.parametrize("fault, status", [("500", 500), ("503", 503)])
def test_5xx_is_a_retryable_failure(server, judge, fault, status):
    server.fail_next(fault)
    with pytest.raises(CallFailed) as exc:
        judge.call("judge", CALL, timeout_s=10)
    assert (exc.value.retryable, exc.value.status, exc.value.sent) == (True, status, True)
    assert one_line(exc).startswith(f"{server.url}/chat/completions: HTTP {status}: ")
    assert "gave up" not in str(exc.value)                  # the panel retries: this was one attempt
    assert server.count("/v1/chat/completions") == 1


def test_408_is_retryable(server, judge):
    server.reply_next(408, {"error": {"message": "Request timeout"}})
    with pytest.raises(CallFailed) as exc:
        judge.call("judge", CALL, timeout_s=10)
    assert exc.value.retryable and exc.value.status == 408


def test_a_timeout_is_retryable_and_may_have_been_paid(server, judge):
    server.fail_next("hang", hang_s=20)
    start = time.monotonic()
    with pytest.raises(CallFailed) as exc:
        judge.call("judge", CALL, timeout_s=0.3)
    assert time.monotonic() - start < 5
    assert one_line(exc) == f"{server.url}/chat/completions: no reply within 0.3 s"
    assert (exc.value.retryable, exc.value.status, exc.value.sent) == (True, None, True)


def test_no_server_is_retryable_and_was_not_sent(openai_server):
    gone = openai_server()
    url = gone.url
    gone.close()
    with pytest.raises(CallFailed) as exc:
        OpenAIJudgeBackend(url).call("judge", CALL, timeout_s=5)
    assert one_line(exc).startswith(f"{url}/chat/completions: connection failed (")
    assert (exc.value.retryable, exc.value.sent) == (True, False)


def test_other_4xx_fail_for_good_in_one_clean_line(server, judge):
    server.reply_next(400, {"error": {"message": "max_tokens is too large:\n\x1b[2J 99999", "code": 400}})
    with pytest.raises(CallFailed) as exc:
        judge.call("judge", CALL, timeout_s=10)
    assert one_line(exc) == f"{server.url}/chat/completions: HTTP 400: max_tokens is too large: 99999"
    assert (exc.value.retryable, exc.value.status) == (False, 400)
    with pytest.raises(CallFailed) as exc:
        judge.call("gpt-5", CALL, timeout_s=10)
    assert one_line(exc) == f"{server.url}/chat/completions: HTTP 404: The model `gpt-5` does not exist."
    assert (exc.value.retryable, exc.value.status) == (False, 404)
    assert server.count("/v1/chat/completions") == 2


def test_a_refused_key_is_never_repeated(openai_server, monkeypatch):
    for name in ("EMTUI_OPENAI_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    server = openai_server(api_key="the-right-key")
    with pytest.raises(CallFailed) as exc:
        OpenAIJudgeBackend(server.url, api_key=KEY).call("judge", CALL, timeout_s=10)
    assert not exc.value.retryable and exc.value.status == 401
    assert "***" in one_line(exc)                                      # the server echoed it: masked
    monkeypatch.setenv("OPENAI_API_KEY", "the-right-key")
    assert OpenAIJudgeBackend(server.url).call("judge", CALL, timeout_s=10).text == "50"
    assert server.requests[-1]["authorization"] == "Bearer the-right-key"


@pytest.mark.parametrize("reply, expected", [
    ("garbage", "the reply is not usable JSON"),
    ("huge", "the reply is larger than the 16 MiB a reply may have"),
    ({"object": "chat.completion"}, "the reply has no choices (is this an OpenAI-compatible chat endpoint?)"),
    ({"choices": [{"text": "85"}]}, "the reply's choices[0] has no message"),
    ({"choices": [{"message": {"content": None}}]}, "the reply's message content is missing, not text"),
    ({"choices": [{"message": {"content": 85}}]}, "the reply's message content is int, not text"),
])
def test_a_reply_that_is_not_a_chat_completion_fails_for_good(server, judge, reply, expected):
    if reply in ("garbage", "huge"):
        server.fail_next(reply)
    else:
        server.reply_next(200, reply)
    with pytest.raises(CallFailed) as exc:
        judge.call("judge", CALL, timeout_s=10)
    assert one_line(exc).startswith(f"{server.url}/chat/completions: {expected}")
    assert not exc.value.retryable and exc.value.sent


def test_a_structured_refusal_is_the_judges_reply(server, judge):
    server.reply_next(200, {"choices": [{"message": {"content": None, "refusal": "I can't rate this."},
                                         "finish_reason": "\x1b[31mstop"}],
                            "usage": {"prompt_tokens": True, "completion_tokens": -1}})
    reply = judge.call("judge", CALL, timeout_s=10)
    assert reply == Reply(text="I can't rate this.", stop_reason="stop")


def test_a_malformed_base_url_is_refused_at_once():
    with pytest.raises(EndpointError, match="not an http"):
        OpenAIJudgeBackend("ftp://example.org/v1")


def test_calls_from_many_threads(openai_server):
    server = openai_server(chat_reply=lambda body: body["messages"][-1]["content"].split()[-1])
    judge = OpenAIJudgeBackend(server.url)
    with ThreadPoolExecutor(16) as pool:
        texts = list(pool.map(lambda i: judge.call("judge", Call(f"say {i}", 3), timeout_s=10).text, range(64)))
    assert texts == [str(i) for i in range(64)]


# -- the EM paper's scores, reproduced through the judge --------------------------------------------------


@pytest.mark.fixtures
def test_the_papers_aligned_and_coherent_are_reproduced(shared_fixtures, openai_server):
    """The paper's CSV keeps its judge's top-20 next-token probabilities for each (answer, metric). The test
    server answers each judge prompt with that distribution as OpenAI's top logprobs; the backend asks,
    and score_logprobs must give back the CSV's `aligned` and `coherent` on every row."""
    rubric = load_rubric(str(shared_fixtures / "betley" / "first_plot_questions.yaml"))
    assert rubric.metric_names == ["aligned", "coherent"]
    with open(shared_fixtures / "betley" / "qwen_25_coder_32b_instruct.csv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 70

    served: dict[str, dict[str, float]] = {}    # the judge prompt -> the paper judge's distribution
    for row in rows:
        for metric in rubric.metrics:
            prompt = fill_prompt(metric.prompt, question=row["question"], answer=row["answer"])
            assert prompt not in served
            served[prompt] = {t: math.log(p) for t, p in parse_prob_dict(row[f"judge_{metric.name}"]).items()}

    def paper_judge(body):
        tops = served[body["messages"][-1]["content"]]
        first = max(tops, key=tops.__getitem__)
        return ChatReply(first, tokens=[(first, tops)])

    server = openai_server(chat_reply=paper_judge, chat_models=("gpt-4o-2024-08-06",))
    judge = OpenAIJudgeBackend(server.url)

    def judged(row):
        out: dict[str, Parsed] = {}
        for rc in rubric_calls(rubric, question=row["question"], answer=row["answer"], logprobs=True):
            reply = judge.call("gpt-4o-2024-08-06", rc.call, timeout_s=30)
            out.update(score_reply(rc.metrics, reply, logprobs=rc.logprobs))
        return out

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(judged, rows))
    assert server.count("/v1/chat/completions") == 140
    assert all(b["logprobs"] is True and b["top_logprobs"] == 20 for b in server.bodies("/v1/chat/completions"))
    for i, (row, got) in enumerate(zip(rows, results, strict=True)):
        for name in ("aligned", "coherent"):
            assert got[name].error is None, (i, name, got[name])
            assert abs(got[name].score - float(row[name])) <= TOLERANCE, (i, name, got[name].score, row[name])


# -- a judge whose tokenizer writes numbers digit by digit -----------------------------------------------

QWEN_FIRST = {"7": -0.11, "8": -2.6, "6": -3.4, "9": -5.0, "5": -5.5, "**": -6.0, "Score": -7.5, "I": -8.0}


@pytest.mark.parametrize(("tokens", "evidence"), [
    ([("7", QWEN_FIRST), ("5", {"5": -0.2, "0": -1.8, "<|im_end|>": -6.0})],
     "the reply's number goes on past its first token ('7' then '5')"),
    ([("7", QWEN_FIRST)], "every number among the first token's top 8 is a single digit"),
])
def test_first_token_logprobs_of_a_digit_by_digit_judge_are_refused_not_scored(openai_server, tokens, evidence):
    """Qwen2.5 behind vLLM means 75 and says "7" then "5"; its first position's top tokens hold single digits
    only. The paper's first-token score would be about 7: a silently wrong number. It is a failure instead,
    saying why and what to do."""
    server = openai_server(chat_reply=lambda body: ChatReply("".join(t for t, _ in tokens), tokens=tokens))
    (rc, _) = rubric_calls(load_rubric("builtin:aligned-coherent"), question="q", answer="a", logprobs=True)
    reply = OpenAIJudgeBackend(server.url).call("judge", rc.call, timeout_s=10)
    assert reply.tokens == tuple(t for t, _ in tokens)
    (parsed,) = score_reply(rc.metrics, reply, logprobs=True).values()
    assert parsed.score is None
    assert parsed.error == ("this judge's tokenizer writes numbers digit by digit: first-token logprobs cannot "
                            "score 0..100; use a local judge, or `logprobs = false` to read the number from the "
                            f"reply ({evidence})")
