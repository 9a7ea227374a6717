"""Generation through any OpenAI-compatible completions endpoint (``vllm serve``): the path beyond
one GPU, for a server started from its own environment (README: "Generating through vLLM").

:func:`complete` sends one ``POST {base_url}/completions`` per prompt (the prompt already
chat-templated, as the transformers backend gets it), up to ``concurrency`` at a time, each with
its answer's seed, and returns the answers in the order of the prompts. The adapter is selected by
``model``: the name the server serves it under (vLLM: ``--lora-modules NAME=PATH``; the base under
``--served-model-name``).

Two fields beyond OpenAI's keep vLLM's answers what emtui asked for (vLLM, SGLang and llama.cpp's
server read them; a server that refuses them says so in one line):

- ``top_k`` always, ``-1`` when off: vLLM otherwise fills an omitted top_k from the checkpoint's
  generation_config.json (``--generation-config auto``, its default; Qwen2.5-Instruct's says 20);
- ``add_special_tokens: false``: the template already wrote the special tokens; vLLM's completions
  endpoint would otherwise add the tokenizer's BOS again (a Llama 3 prompt would start with two).

Standard library only: :mod:`engine.common.openai_http` (retries, bounded replies, one-line
errors) and :mod:`engine.common.concurrent_calls` (requests in flight, stoppable).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.common.concurrent_calls import CallsCancelled, run_concurrently
from engine.common.openai_http import Endpoint, EndpointError, endpoint_models, list_models
from engine.common.text import flat
from engine.runs.progress import JobCancelled

__all__ = ["Completion", "EndpointError", "completion_body", "complete", "list_models"]

MAX_NAMES_SHOWN = 20


@dataclass(frozen=True)
class Completion:
    """One answer as the server gave it."""

    text: str
    n_tokens: int | None      # usage.completion_tokens when the server says it
    finish_reason: str | None  # "stop", "length", ... when the server says it


def completion_body(model: str, prompt: str, seed: int, *, temperature: float, top_p: float, top_k: int,
                    max_new_tokens: int, repetition_penalty: float = 1.0) -> dict[str, Any]:
    """The JSON of one request (see the module's docstring for ``top_k`` and ``add_special_tokens``)."""
    return {"model": model, "prompt": prompt, "max_tokens": max_new_tokens, "temperature": temperature,
            "top_p": top_p, "top_k": top_k if top_k > 0 else -1, "seed": seed, "n": 1,
            "repetition_penalty": repetition_penalty, "add_special_tokens": False}


def complete(base_url: str, model: str, prompts: Sequence[str], seeds: Sequence[int], *,
             temperature: float, top_p: float, top_k: int = 0, max_new_tokens: int, repetition_penalty: float = 1.0,
             api_key: str | None = None, concurrency: int = 8, timeout_s: float = 600.0,
             max_retries: int = 5, cancelled: Callable[[], bool] | None = None,
             on_result: Callable[[int, Completion], None] | None = None,
             backoff_s: float = 0.5) -> list[Completion]:
    """One completion per prompt, ``prompts[i]`` sampled with ``seeds[i]``, in the order of ``prompts``.

    ``on_result(i, completion)`` is called in the caller's thread as each answer arrives (write it,
    advance the progress): a job that dies keeps what it had. When ``cancelled()`` becomes true no
    new request starts and :class:`~engine.runs.progress.JobCancelled` is raised at once. A failure
    raises :class:`EndpointError` (one line: the endpoint, the HTTP status, the server's message);
    the other requests stop."""
    _check_settings(prompts, seeds, temperature=temperature, top_p=top_p, top_k=top_k,
                    max_new_tokens=max_new_tokens, concurrency=concurrency, timeout_s=timeout_s,
                    max_retries=max_retries)
    endpoint = Endpoint(base_url, api_key)
    where = endpoint.url("completions")

    def one(i: int, stop: threading.Event) -> Completion:
        body = completion_body(model, prompts[i], seeds[i], temperature=temperature, top_p=top_p, top_k=top_k,
                               max_new_tokens=max_new_tokens, repetition_penalty=repetition_penalty)
        reply = endpoint.post("completions", body, timeout_s=timeout_s, max_retries=max_retries,
                              backoff_s=backoff_s, stop=stop)
        return parse_completion(where, reply)

    try:
        return run_concurrently(one, len(prompts), concurrency=concurrency, cancelled=cancelled,
                                on_result=on_result)
    except CallsCancelled:
        raise JobCancelled() from None
    except EndpointError as exc:
        if exc.status in (400, 404):  # vLLM answers an unknown model name with 404 (OpenAI too)
            raise _unknown_model(endpoint, model, exc) from None
        raise


def parse_completion(where: str, reply: Any) -> Completion:
    """The first choice of a ``text_completion`` reply, checked (the reply is untrusted)."""
    choices = reply.get("choices") if isinstance(reply, Mapping) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise EndpointError(f"{where}: the reply has no choices (is this a completions endpoint?)")
    choice = choices[0]
    text = choice.get("text")
    if not isinstance(text, str):
        raise EndpointError(f"{where}: the reply's choices[0].text is {_kind(text)}, not a string")
    reason = choice.get("finish_reason")
    usage = reply.get("usage")
    tokens = usage.get("completion_tokens") if isinstance(usage, Mapping) else None
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        tokens = None  # a count we cannot trust is no count
    return Completion(text=text, n_tokens=tokens,
                      finish_reason=(flat(reason)[:40] or None) if isinstance(reason, str) else None)


def _kind(value: Any) -> str:
    return "missing" if value is None else f"a {type(value).__name__}"


def _unknown_model(endpoint: Endpoint, model: str, error: EndpointError) -> EndpointError:
    """The error, or, when the server does not serve ``model``, one saying so with the names it serves."""
    try:
        names = endpoint_models(endpoint, max_retries=0)
    except EndpointError:
        return error  # no list to compare with: the server's own message (and the /v1 hint) stands
    if model in names:
        return error
    shown = ", ".join(flat(name)[:100] for name in names[:MAX_NAMES_SHOWN])
    more = f" and {len(names) - MAX_NAMES_SHOWN} more" if len(names) > MAX_NAMES_SHOWN else ""
    served = f"the names this server serves: {shown}{more}" if names else "this server serves no model"
    return EndpointError(f"{endpoint.url('completions')}: HTTP {error.status}: model '{flat(model)[:100]}' "
                         f"not found — {served}", status=error.status)


def _check_settings(prompts: Sequence[str], seeds: Sequence[int], *, temperature: float, top_p: float, top_k: int,
                    max_new_tokens: int, concurrency: int, timeout_s: float, max_retries: int) -> None:
    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise TypeError("seeds must be integers")
    if not all(isinstance(p, str) for p in prompts):
        raise TypeError("prompts must be strings (chat-templated text)")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0: off), got {top_k}")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}")
