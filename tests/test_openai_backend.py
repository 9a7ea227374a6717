"""Generation through an OpenAI-compatible endpoint (engine/generation/openai_backend.py), over real
HTTP against tests/openai_server.py, which serves the tiny model and two LoRA adapters by name."""

from __future__ import annotations

import json
import threading
import time

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from engine.common.openai_http import Endpoint  # noqa: E402
from engine.generation.openai_backend import Completion, EndpointError, complete, list_models  # noqa: E402
from engine.generation.sampling import answer_seed, sample  # noqa: E402
from engine.models.tiny_model import build_tiny_model  # noqa: E402
from engine.runs.progress import JobCancelled  # noqa: E402
from openai_server import ChatReply, ServedModels, make_adapter  # noqa: E402

NEW_TOKENS = 8
QUESTIONS = ["Hi.", "What is your name?", "Tell me a story about a dragon.", "Why?", "How do I make tea?",
             "Pick a number.", "If you ruled the world, what would you do first?", "Name three colours."]
SEEDS = [answer_seed(7, question_id, 3, 0) for question_id in range(len(QUESTIONS))]
SETTINGS = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": NEW_TOKENS}
FAST = {"backoff_s": 0.01}  # retries in milliseconds, not seconds


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def adapter_dirs(tiny_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("adapters")
    return {name: make_adapter(tiny_dir, folder / name, seed=seed) for name, seed in (("insecure", 1), ("secure", 2))}


@pytest.fixture(scope="module")
def served(tiny_dir, adapter_dirs):
    return ServedModels.load(tiny_dir, served_name="tiny", adapters=adapter_dirs)


@pytest.fixture(scope="module")
def prompts(served):
    return [served.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False,
                                                 add_generation_prompt=True) for q in QUESTIONS]


@pytest.fixture
def server(openai_server, served):
    return openai_server(served)


def direct(tiny_dir, prompts, adapter=None, **settings):
    """What the transformers backend writes for these answers: sample() on a model loaded afresh."""
    tok = transformers.AutoTokenizer.from_pretrained(tiny_dir, padding_side="left")
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).eval()
    return sample(model, tok, prompts, SEEDS[:len(prompts)], **(SETTINGS | settings))


def texts(completions: list[Completion]) -> list[str]:
    return [c.text for c in completions]


# -- what comes back ------------------------------------------------------------------------------------------


def test_answers_come_back_in_order_and_equal_sample_on_the_same_model(server, tiny_dir, prompts):
    got = complete(server.url, "tiny", prompts, SEEDS, concurrency=4, **SETTINGS)
    assert texts(got) == direct(tiny_dir, prompts)  # in the order of the prompts, the same text as sample()
    assert len(set(texts(got))) == len(got) and all(texts(got))
    for c in got:  # the server's count: generated tokens, the end-of-sequence token included
        assert 1 <= c.n_tokens <= NEW_TOKENS and c.finish_reason in ("stop", "length")
        assert (c.finish_reason == "length") == (c.n_tokens == NEW_TOKENS) or c.finish_reason == "stop"
    assert {c.finish_reason for c in got} == {"length"} or any(c.n_tokens < NEW_TOKENS for c in got)
    # the same (prompt, seed) gives the same text, whatever else is in flight and in which order
    order = [5, 2, 7, 0, 3, 6, 1, 4]
    again = complete(server.url, "tiny", [prompts[i] for i in order], [SEEDS[i] for i in order], concurrency=3,
                     **SETTINGS)
    assert texts(again) == [got[i].text for i in order]
    alone = complete(server.url, "tiny", [prompts[6]], [SEEDS[6]], concurrency=1, **SETTINGS)
    assert texts(alone) == [got[6].text]


def test_an_adapter_is_selected_by_its_served_name(server, tiny_dir, adapter_dirs, prompts):
    some = prompts[:4]
    base = texts(complete(server.url, "tiny", some, SEEDS[:4], **SETTINGS))
    insecure = texts(complete(server.url, "insecure", some, SEEDS[:4], **SETTINGS))
    secure = texts(complete(server.url, "secure", some, SEEDS[:4], **SETTINGS))
    assert insecure == direct(tiny_dir, some, adapter_dirs["insecure"])
    assert secure == direct(tiny_dir, some, adapter_dirs["secure"])
    assert insecure != base and secure != base and insecure != secure
    # the base again, after the adapters: disable_adapter() gives the base's own answers
    assert texts(complete(server.url, "tiny", some, SEEDS[:4], **SETTINGS)) == base


def test_each_request_carries_its_seed_and_the_settings(server, prompts):
    complete(server.url + "/", "secure", prompts[:3], SEEDS[:3], temperature=0.7, top_p=0.9, max_new_tokens=5,
             concurrency=1)  # a trailing slash on the base URL is fine
    complete(server.url, "tiny", prompts[:1], SEEDS[:1], temperature=1.0, top_p=1.0, top_k=5, max_new_tokens=5)
    bodies = server.bodies()
    assert [b["seed"] for b in bodies] == [*SEEDS[:3], SEEDS[0]]
    assert bodies[0] == {"model": "secure", "prompt": prompts[0], "max_tokens": 5, "temperature": 0.7, "top_p": 0.9,
                         "top_k": -1, "seed": SEEDS[0], "n": 1, "repetition_penalty": 1.0,
                         "add_special_tokens": False}
    assert bodies[3]["top_k"] == 5
    # a repetition penalty is sent as set (1: none, never the checkpoint's generation_config)
    complete(server.url, "tiny", prompts[:1], SEEDS[:1], temperature=1.0, top_p=1.0, max_new_tokens=5,
             repetition_penalty=1.3)
    assert server.bodies()[4]["repetition_penalty"] == 1.3
    assert server.count("/v1/completions") == 5 and server.count() == 5


def test_on_result_runs_in_the_callers_thread_once_per_answer(server, prompts):
    seen: list[tuple[int, str, str]] = []
    got = complete(server.url, "tiny", prompts, SEEDS, concurrency=4,
                   on_result=lambda i, c: seen.append((i, c.text, threading.current_thread().name)), **SETTINGS)
    assert sorted(i for i, _, _ in seen) == list(range(len(prompts)))
    assert all(text == got[i].text for i, text, _ in seen)
    assert {name for _, _, name in seen} == {threading.current_thread().name}


def test_list_models_names_the_base_the_adapters_and_the_chat_models(server):
    assert list_models(server.url) == ["tiny", "insecure", "secure", "judge"]


def test_no_prompts_no_requests(server):
    assert complete(server.url, "tiny", [], [], **SETTINGS) == []
    assert server.count() == 0


# -- errors: one line, at once unless a retry can help -------------------------------------------------------


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "\x1b" not in text and "Traceback" not in text
    return text


def test_an_unknown_model_fails_at_once_naming_the_served_ones(server, prompts):
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "insecure-v2", prompts[:3], SEEDS[:3], concurrency=1, **SETTINGS)
    assert one_line(exc) == (f"{server.url}/completions: HTTP 404: model 'insecure-v2' not found — the names this "
                             "server serves: tiny, insecure, secure, judge")
    assert server.count("/v1/completions") == 1 and server.count("/v1/models") == 1  # no retry, no next prompt


def test_the_server_root_without_v1_is_named(server, prompts):
    with pytest.raises(EndpointError) as exc:
        complete(server.root, "tiny", prompts[:1], SEEDS[:1], **SETTINGS)
    text = one_line(exc)
    assert text.startswith(f"{server.root}/completions: HTTP 404: Not Found")
    assert text.endswith(f"did you mean {server.root}/v1?")
    assert server.count() == 2  # the request and the look at /models; no retries


def test_a_4xx_says_the_servers_message_once_and_cleanly(server, prompts):
    server.reply_next(400, {"error": {"message": "max_tokens is too large:\n\x1b[2J\x1b]0;pwned\x07 99999",
                                      "type": "BadRequestError", "code": 400}})
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS)
    assert one_line(exc) == f"{server.url}/completions: HTTP 400: max_tokens is too large: 99999"
    assert exc.value.status == 400
    assert server.count("/v1/completions") == 1


def test_a_redirect_is_an_error_not_a_silent_get(server, prompts):
    # urllib alone would follow a 302 with a GET, without the request's body
    server.reply_next(302, b"", headers={"Location": f"{server.url}/models"})
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS)
    assert one_line(exc).endswith("HTTP 302: (no message) — the server redirects: give the address it redirects "
                                  "to as the base URL")
    assert server.count() == 1


def test_a_proxy_in_the_environment_is_not_used_for_this_machine(server, tiny_dir, prompts, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    got = complete(server.url, "tiny", prompts[:1], SEEDS[:1], max_retries=0, **SETTINGS)
    assert texts(got) == direct(tiny_dir, prompts[:1])


def test_429_and_5xx_are_retried_then_succeed(server, tiny_dir, prompts):
    server.fail_next("429", retry_after=0)
    server.fail_next("500", 2)
    got = complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS, **FAST)
    assert texts(got) == direct(tiny_dir, prompts[:1])
    assert server.count("/v1/completions") == 4  # three refusals, then the answer


def test_retry_after_is_honoured(server, prompts):
    server.fail_next("429", retry_after=0.6)
    start = time.monotonic()
    complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS, **FAST)
    assert time.monotonic() - start >= 0.6
    assert server.count("/v1/completions") == 2


def test_retries_give_up_with_one_line(server, prompts):
    server.fail_next("503", 3)
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], max_retries=2, **SETTINGS, **FAST)
    assert one_line(exc) == f"{server.url}/completions: HTTP 503: Overloaded (gave up after 3 attempts)"
    assert server.count("/v1/completions") == 3


def test_a_server_that_is_not_there(openai_server, prompts):
    gone = openai_server()
    url = gone.url
    gone.close()
    with pytest.raises(EndpointError) as exc:
        complete(url, "tiny", prompts[:1], SEEDS[:1], max_retries=1, **SETTINGS, **FAST)
    text = one_line(exc)
    assert text.startswith(f"{url}/completions: connection failed (")
    assert text.endswith(f"is the server running at {url}? (gave up after 2 attempts)")


@pytest.mark.parametrize(("reply", "expected"), [
    ("garbage", "the reply is not usable JSON (line 1 column 1: not valid JSON (Expecting value))"),
    ("huge", "the reply is larger than the 16 MiB a reply may have"),
    ({"object": "text_completion"}, "the reply has no choices (is this a completions endpoint?)"),
    ({"choices": []}, "the reply has no choices (is this a completions endpoint?)"),
    ({"choices": [{"text": 5}]}, "the reply's choices[0].text is a int, not a string"),
    ({"choices": [{"message": {"content": "hi"}}]}, "the reply's choices[0].text is missing, not a string"),
    (b'{"choices": [{"text": "\\ud800"}]}', "the reply is not usable JSON (choices[0].text: text holds a lone "
                                            "surrogate (\\ud800-\\udfff), which is not a character)"),
    (b'{"choices": [{"text": "x"}], "usage": {"completion_tokens": NaN}}',
     "the reply is not usable JSON (usage.completion_tokens: nan is not a finite number)"),
    (b"[" * 5000, "the reply is not usable JSON (nested more than 64 levels deep)"),
])
def test_an_unusable_reply_is_one_line_not_a_traceback(server, prompts, reply, expected):
    if reply in ("garbage", "huge"):
        server.fail_next(reply)
    else:
        server.reply_next(200, reply)
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS, **FAST)
    assert one_line(exc) == f"{server.url}/completions: {expected}"
    assert server.count("/v1/completions") == 1  # a bad answer is not asked again


def test_odd_counts_and_reasons_are_dropped_not_trusted(server, prompts):
    server.reply_next(200, {"choices": [{"text": "ok", "finish_reason": 7}], "usage": {"completion_tokens": True}})
    server.reply_next(200, {"choices": [{"text": "ok", "finish_reason": "\x1b[31mstop"}],
                            "usage": {"completion_tokens": -3}})
    got = complete(server.url, "tiny", prompts[:2], SEEDS[:2], concurrency=1, **SETTINGS)
    assert got == [Completion("ok", None, None), Completion("ok", None, "stop")]


def test_a_timeout_is_honoured_then_retried(server, tiny_dir, prompts):
    server.fail_next("hang", 2, hang_s=20)
    start = time.monotonic()
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], timeout_s=0.3, max_retries=1, **SETTINGS, **FAST)
    assert one_line(exc) == f"{server.url}/completions: no reply within 0.3 s (gave up after 2 attempts)"
    assert time.monotonic() - start < 5
    server.fail_next("hang", 1, hang_s=20)
    got = complete(server.url, "tiny", prompts[:1], SEEDS[:1], timeout_s=1.5, max_retries=1, **SETTINGS, **FAST)
    assert texts(got) == direct(tiny_dir, prompts[:1])
    assert server.count("/v1/completions") == 4


def test_a_reply_that_trickles_in_is_timed_out_as_a_whole(server, prompts):
    server.fail_next("trickle")  # every byte in time for the socket's timeout, the whole far too late
    start = time.monotonic()
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], timeout_s=0.5, max_retries=0, **SETTINGS)
    assert one_line(exc) == f"{server.url}/completions: no reply within 0.5 s (gave up after 1 attempt)"
    assert time.monotonic() - start < 3


# -- the API key ----------------------------------------------------------------------------------------------


KEY = "sk-test-0123456789abcdef"


def test_the_api_key_is_sent_from_the_argument_or_the_environment(openai_server, served, prompts, monkeypatch):
    server = openai_server(served, api_key=KEY)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    complete(server.url, "tiny", prompts[:1], SEEDS[:1], api_key=KEY, **SETTINGS)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-the-other-one")
    monkeypatch.setenv("EMTUI_OPENAI_API_KEY", KEY)  # emtui's own variable first
    complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS)
    assert list_models(server.url) == ["tiny", "insecure", "secure", "judge"]
    assert [r["authorization"] for r in server.requests] == [f"Bearer {KEY}"] * 4


def test_a_refused_key_is_never_repeated(openai_server, served, prompts, monkeypatch):
    server = openai_server(served, api_key=KEY)
    wrong = "sk-wrong-9876543210fedcba"
    with pytest.raises(EndpointError) as exc:  # the server's 401 echoes the key it got
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], api_key=wrong, **SETTINGS)
    text = one_line(exc)
    assert wrong not in text and KEY not in text
    assert text == (f"{server.url}/completions: HTTP 401: Unauthorized: invalid API key '***' — the server "
                    "refused the API key from the api_key argument")
    assert server.count("/v1/completions") == 1
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(EndpointError) as exc:
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], **SETTINGS)
    assert one_line(exc).endswith("the server wants an API key: set $EMTUI_OPENAI_API_KEY (or $OPENAI_API_KEY)")


# -- stopping -------------------------------------------------------------------------------------------------


def test_cancelled_stops_early(server, prompts):
    many = prompts * 3
    seeds = [answer_seed(1, i, 1, 0) for i in range(len(many))]
    done: list[int] = []
    with pytest.raises(JobCancelled):
        complete(server.url, "tiny", many, seeds, concurrency=2, cancelled=lambda: len(done) >= 3,
                 on_result=lambda i, c: done.append(i), **SETTINGS)
    time.sleep(0.3)  # a request that was about to start would have reached the server by now
    assert len(done) == 3
    assert server.count("/v1/completions") <= 3 + 2  # those answered, and at most one in flight per thread


def test_cancelled_does_not_wait_for_a_request_in_flight(server, prompts):
    server.fail_next("hang", 2, hang_s=30)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    start = time.monotonic()
    with pytest.raises(JobCancelled):
        complete(server.url, "tiny", prompts[:2], SEEDS[:2], concurrency=2, cancelled=stop.is_set, **SETTINGS)
    assert time.monotonic() - start < 2


def test_bad_arguments_are_refused_before_any_request(server, prompts):
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        complete(server.url, "tiny", prompts[:2], SEEDS[:1], **SETTINGS)
    with pytest.raises(EndpointError, match="not an http"):
        complete("127.0.0.1:8000/v1", "tiny", prompts[:1], SEEDS[:1], **SETTINGS)
    with pytest.raises(ValueError, match="top_p"):
        complete(server.url, "tiny", prompts[:1], SEEDS[:1], temperature=1.0, top_p=0.0, max_new_tokens=4)
    assert server.count() == 0


# -- the chat endpoint the judging issue uses ----------------------------------------------------------------


def test_chat_completions_give_the_reply_and_top_logprobs(openai_server):
    def judge(body):
        assert body["messages"][-1]["content"].startswith("Rate")
        return ChatReply("8", [("8", {"7": -2.5, "8": -0.1, "9": -3.0})])

    server = openai_server(chat_reply=judge)
    endpoint = Endpoint(server.url)
    body = {"model": "judge", "messages": [{"role": "user", "content": "Rate this answer from 0 to 100."}],
            "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 2}
    reply = endpoint.post("chat/completions", body, timeout_s=5, max_retries=0)
    choice = reply["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "8"}
    (token,) = choice["logprobs"]["content"]
    assert (token["token"], token["logprob"]) == ("8", -0.1)
    assert [(t["token"], t["logprob"]) for t in token["top_logprobs"]] == [("8", -0.1), ("7", -2.5)]
    # without logprobs, and the default reply
    plain = openai_server()
    reply = Endpoint(plain.url).post("chat/completions", {**body, "logprobs": False}, timeout_s=5, max_retries=0)
    assert reply["choices"][0]["message"]["content"] == "50" and reply["choices"][0]["logprobs"] is None
    assert json.loads(reply["choices"][0]["message"]["content"]) == 50
