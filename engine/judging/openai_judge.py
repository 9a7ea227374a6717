"""A judge behind any OpenAI-compatible chat endpoint (OpenAI, vLLM, others): one attempt per call.

``POST {base_url}/chat/completions`` with the system and user messages, ``max_tokens`` and ``temperature``;
a call with ``top_logprobs > 0`` also asks for ``logprobs: true, top_logprobs: N`` (N capped at 20, OpenAI's
limit) and gets back the FIRST generated token's top log-probabilities, which is what the EM paper's
scoring reads (:func:`engine.judging.parse.score_logprobs`), and the reply's tokens (``content[*].token``).
An endpoint gives only the sampled positions' top tokens, so when the judge's tokenizer writes numbers digit
by digit (Qwen2.5 behind vLLM, say) a 0..100 score cannot be read from them: the scoring finds that in the
tokens and top logprobs (:func:`engine.judging.logprob.digits_split`) and records a failure saying so.

Failures, as the panel needs them (engine/judging/backend.py): HTTP 429 is :class:`Throttled` (with the
server's ``Retry-After``), except OpenAI's 429 for an account out of credit ("You exceeded your current
quota"), which no retry mends; a timeout, a dropped connection, 408 and 5xx are ``CallFailed(retryable=True)``;
any other status (a bad request, an unknown model, a refused key) and a reply that is not a chat
completion are ``CallFailed(retryable=False)``. Never retried here: :class:`Endpoint` is used with
``max_retries=0``. The API key (argument, else ``$EMTUI_OPENAI_API_KEY``, else ``$OPENAI_API_KEY``) is never
part of a message.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from engine.common.openai_http import Endpoint, EndpointError
from engine.common.text import flat
from engine.judging.backend import Call, CallFailed, Reply, Throttled
from engine.judging.logprob import log_add

__all__ = ["MAX_TOP_LOGPROBS", "OpenAIJudgeBackend"]

MAX_TOP_LOGPROBS = 20
_ONE_ATTEMPT = " (gave up after 1 attempt)"  # the transport's note; the panel retries, so it is not the end
_QUOTA_GONE = "exceeded your current quota"  # OpenAI's 429 when the account has no credit left


class OpenAIJudgeBackend:
    """Judge models served at one OpenAI-compatible API root (``http://host:8000/v1``)."""

    provider = "openai"

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.endpoint = Endpoint(base_url, api_key)   # EndpointError (one line) on a malformed URL

    def request_body(self, model: str, call: Call) -> dict[str, Any]:
        """The JSON body of one call."""
        messages = [{"role": "system", "content": call.system}] if call.system else []
        body: dict[str, Any] = {"model": model, "messages": [*messages, {"role": "user", "content": call.prompt}],
                                "max_tokens": call.max_tokens, "temperature": call.temperature}
        if call.top_logprobs > 0:
            body["logprobs"] = True
            body["top_logprobs"] = min(call.top_logprobs, MAX_TOP_LOGPROBS)
        return body

    def call(self, model: str, call: Call, *, timeout_s: float) -> Reply:
        where = self.endpoint.url("chat/completions")
        try:
            doc = self.endpoint.post("chat/completions", self.request_body(model, call), timeout_s=timeout_s,
                                     max_retries=0)
        except EndpointError as exc:
            message = str(exc).removesuffix(_ONE_ATTEMPT)
            if exc.status == 429 and _QUOTA_GONE not in message:
                raise Throttled(message, retry_after=exc.retry_after) from None
            if exc.status == 429:  # OpenAI's insufficient_quota: no credit left, every retry fails alike
                raise CallFailed(message, retryable=False, status=429) from None
            raise CallFailed(message, retryable=exc.retryable, status=exc.status, sent=exc.sent) from None
        return _reply(where, doc, wants_logprobs=call.top_logprobs > 0)


def _bad(where: str, what: str) -> CallFailed:
    return CallFailed(f"{where}: {what} (is this an OpenAI-compatible chat endpoint?)", retryable=False, status=200)


def _reply(where: str, doc: Any, *, wants_logprobs: bool) -> Reply:
    choices = doc.get("choices") if isinstance(doc, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _bad(where, "the reply has no choices")
    choice = choices[0]
    message = choice.get("message")
    if not isinstance(message, dict):
        raise _bad(where, "the reply's choices[0] has no message")
    text = message.get("content")
    if text is None and isinstance(message.get("refusal"), str):
        text = message["refusal"]  # OpenAI's structured refusal: the judge's words, kept as its reply
    if not isinstance(text, str):
        raise _bad(where, f"the reply's message content is {_kind(text)}, not text")
    usage = doc.get("usage") if isinstance(doc.get("usage"), dict) else {}
    finish = choice.get("finish_reason")
    extra = {"model": flat(doc["model"])[:200]} if isinstance(doc.get("model"), str) else {}
    return Reply(text=text, input_tokens=_count(usage.get("prompt_tokens")),
                 output_tokens=_count(usage.get("completion_tokens")),
                 top_logprobs=_first_token_logprobs(choice.get("logprobs")) if wants_logprobs else None,
                 tokens=_reply_tokens(choice.get("logprobs")) if wants_logprobs else None,
                 stop_reason=(flat(finish)[:40] or None) if isinstance(finish, str) else None, extra=extra)


def _first_token_logprobs(logprobs: Any) -> Mapping[str, float] | None:
    """``choices[0].logprobs.content[0].top_logprobs`` as token -> logprob; None when the endpoint sent
    none (the scoring then says so). Entries that are not (text, finite number <= 0) are left out; two
    entries for one text (tokens whose bytes decode alike) add their probabilities."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content or not isinstance(content[0], dict):
        return None
    tops = content[0].get("top_logprobs")
    if not isinstance(tops, list):
        return None
    out: dict[str, float] = {}
    for entry in tops:
        if not isinstance(entry, dict):
            continue
        token, lp = entry.get("token"), entry.get("logprob")
        if not isinstance(token, str) or isinstance(lp, bool) or not isinstance(lp, (int, float)):
            continue
        if math.isnan(lp) or lp > 0:
            continue
        lp = float(lp)
        out[token] = lp if token not in out else log_add(out[token], lp)
    return out or None


def _reply_tokens(logprobs: Any, limit: int = 64) -> tuple[str, ...] | None:
    """The reply's first tokens as the endpoint says them (``logprobs.content[*].token``), or None."""
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list):
        return None
    tokens = [entry.get("token") for entry in content[:limit] if isinstance(entry, dict)]
    return tuple(t for t in tokens if isinstance(t, str)) or None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _kind(value: Any) -> str:
    return "missing" if value is None else type(value).__name__
