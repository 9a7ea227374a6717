"""One call to a judge model, whatever reaches it: the request, the reply, and the two ways a call fails.

A backend (Bedrock through boto3's Converse API, an OpenAI-compatible chat endpoint, a local causal LM)
is a plain object with one *blocking* method that makes exactly **one attempt**::

    backend.call(model, call, timeout_s=...) -> Reply     # or raises Throttled / CallFailed

Everything around an attempt is the panel's (engine/judging/panel.py), the same for every backend: it
runs calls in a dedicated thread pool (boto3 is not async; aiobotocore cannot sit beside our botocore),
limits requests and tokens per minute per judge, adapts the concurrency to throttling, retries with
jittered backoff, and logs every attempt that was sent (each is paid). So a backend never retries by
itself (Bedrock: botocore ``total_max_attempts=1``) and says what happened precisely:

- :class:`Throttled`: the service refused for rate (Bedrock ``ThrottlingException``, HTTP 429). The panel
  cuts the judge's concurrency and retries later; ``retry_after`` when the service said.
- :class:`CallFailed`: anything else. ``retryable`` (5xx, a timeout, a dropped connection: try again) or
  not (a bad request, an unknown model, no access: every retry would fail the same way; the one line says
  which). ``sent``: whether the request may have reached the service (a read timeout: yes, and it may be
  paid; a connection refused: no).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class Call:
    """One request to a judge model: a rubric metric's prompt filled with one answer."""

    prompt: str                      # the user message
    max_tokens: int                  # kept tight: a call reserves input + max_tokens of the token quota
    temperature: float = 0.0
    system: str | None = None
    top_logprobs: int = 0            # > 0: the first generated token's top-N log-probabilities (logprob scoring)
    number_scale: tuple[int, int] | None = None   # a logprob-scored number's whole-number scale (a local judge
                                                  # whose tokenizer splits numbers walks it: number_tree.py)


@dataclass(frozen=True)
class Reply:
    """What came back, verbatim."""

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    top_logprobs: Mapping[str, float] | None = None   # token -> natural-log probability, the first token's
    # n -> log P(the reply is the whole number n): a local judge whose tokenizer splits numbers, walked exactly
    number_logprobs: Mapping[int, float] | None = None
    # whether the judge's tokenizer writes every number of the call's scale as one token: a local judge knows
    # (True: the first token scores it; False: number_logprobs does); None: an endpoint, which does not say
    numbers_one_token: bool | None = None
    tokens: tuple[str, ...] | None = None   # the reply's tokens, where the endpoint gave them (OpenAI logprobs)
    stop_reason: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


class Throttled(Exception):
    """Refused for rate: back off and cut the concurrency."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CallFailed(Exception):
    """Any other failure of one attempt, in one line."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None, sent: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.sent = sent


class Backend(Protocol):
    """A transport to judge models. ``call`` blocks and makes exactly one attempt; it is called from many
    threads at once."""

    provider: str

    def call(self, model: str, call: Call, *, timeout_s: float) -> Reply: ...
