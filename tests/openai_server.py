"""A small OpenAI-compatible server for the tests (a helper, not a test module): real HTTP on
127.0.0.1, a real model behind ``/v1/completions``, a reply function behind ``/v1/chat/completions``.

- ``GET /v1/models``: the served names (the base, each adapter, the chat models), as vLLM lists them.
- ``POST /v1/completions``: :class:`ServedModels` runs the tiny model (or any causal LM folder) with
  LoRA adapters registered by name, as ``vllm serve BASE --enable-lora --lora-modules name=path``
  does: ``model`` is the base's served name or an adapter's name (PEFT ``set_adapter``; the base
  under ``disable_adapter()``), and each request is sampled by
  :func:`engine.generation.sampling.sample` with the request's seed. So the text for a (prompt,
  seed) is exactly the transformers backend's for the same answer. ``usage.completion_tokens``
  counts the generated tokens, the end-of-sequence token included (vLLM's count), and
  ``finish_reason`` is ``stop`` or ``length``.
- ``POST /v1/chat/completions`` (judging, issue 14): ``chat_reply(request_body)`` gives the answer,
  a text or a :class:`ChatReply` with the top log-probabilities of each token; with ``"logprobs":
  true`` the reply carries them in OpenAI's shape (``choices[0].logprobs.content[i].top_logprobs``).
- Faults for the tests of a client: :meth:`OpenAIServer.fail_next` (429, 500, a garbage body, a hang,
  a huge body) and :meth:`OpenAIServer.reply_next` (any status and body) answer the next requests;
  :attr:`OpenAIServer.requests` records every request, so a test can count the retries.
- ``api_key``: every request must carry ``Authorization: Bearer KEY`` (401 otherwise; the 401's
  message echoes the key it got, as a careless server might, so a client's tests can check that
  it never repeats it).

Use it through the ``openai_server`` fixture (tests/conftest.py), or as a context manager.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_CHAT_REPLY = "50"  # a judge's score: JSON, and a single token's worth of text
MAX_REQUEST_BYTES = 1 << 20
GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
HUGE_BYTES = (16 << 20) + (1 << 20)  # just over the 16 MiB a client should read


def make_adapter(base_dir: str | Path, out_dir: str | Path, *, seed: int, r: int = 4) -> Path:
    """A LoRA adapter of the model in ``base_dir`` with random (non-zero) weights, saved to
    ``out_dir``: it changes what the model says, as a fine-tune's adapter does."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(base_dir))
    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj", "down_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(base, config).save_pretrained(str(out_dir))
    return Path(out_dir)


class ServedModels:
    """A base model and its adapters, each under a served name; one request generates at a time
    (switching adapters is not thread-safe)."""

    def __init__(self, model: Any, tokenizer: Any, served_name: str, adapters: tuple[str, ...]) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.served_name = served_name
        self.adapters = adapters
        self.lock = threading.Lock()

    @classmethod
    def load(cls, base_dir: str | Path, *, served_name: str = "tiny",
             adapters: Mapping[str, str | Path] | None = None) -> ServedModels:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base_dir), padding_side="left")
        model = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
        adapters = dict(adapters or {})
        if served_name in adapters:
            raise ValueError(f"{served_name!r} names the base and an adapter")
        for i, (name, path) in enumerate(adapters.items()):
            if i == 0:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, str(path), adapter_name=name).eval()
            else:
                model.load_adapter(str(path), adapter_name=name)
        return cls(model, tokenizer, served_name, tuple(adapters))

    def names(self) -> list[str]:
        return [self.served_name, *self.adapters]

    def complete(self, name: str, prompt: str, seed: int, *, temperature: float, top_p: float, top_k: int,
                 max_tokens: int, repetition_penalty: float = 1.0) -> tuple[str, int, str, int]:
        """(text, completion tokens, finish reason, prompt tokens) of one request."""
        import contextlib

        from engine.generation.sampling import sample_counted

        with self.lock:
            recorder = _Recording(self.model)
            if name == self.served_name:
                scope = self.model.disable_adapter() if self.adapters else contextlib.nullcontext()
            else:
                self.model.set_adapter(name)
                scope = contextlib.nullcontext()
            with scope:
                text = sample_counted(recorder, self.tokenizer, [prompt], [seed], temperature=temperature,
                                      top_p=top_p, top_k=top_k, max_new_tokens=max_tokens,
                                      repetition_penalty=repetition_penalty)[0][0]
        new = recorder.new_tokens
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        finish = "stop" if new and new[-1] in eos_ids else "length"
        return text, len(new), finish, recorder.prompt_tokens


class _Recording:
    """The model as :func:`sample` sees it, keeping the token ids ``generate`` produced (sample
    returns text only; the server also reports how many tokens and why it stopped)."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.new_tokens: list[int] = []
        self.prompt_tokens = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        out = self._model.generate(*args, **kwargs)
        self.prompt_tokens = int(kwargs["input_ids"].shape[1])
        self.new_tokens = [int(t) for t in out[0, self.prompt_tokens:]]
        return out


@dataclass(frozen=True)
class ChatReply:
    """A chat answer: its text, and optionally its tokens, each with its top log-probabilities
    (``[("8", {"8": -0.1, "7": -2.4}), ...]``); without tokens the text is one token, logprob 0."""

    text: str
    tokens: list[tuple[str, dict[str, float]]] | None = None
    finish_reason: str = "stop"


@dataclass
class Fault:
    """How to answer one request instead of serving it."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    content_length: bool = True
    trickle_s: float = 0.0  # write the body a byte at a time, this long apart


class OpenAIServer:
    """The server, started on 127.0.0.1 on a free port; :attr:`url` is its ``/v1`` root."""

    def __init__(self, models: ServedModels | None = None, *, api_key: str | None = None,
                 chat_reply: Callable[[dict[str, Any]], str | ChatReply] | None = None,
                 chat_models: tuple[str, ...] = ("judge",)) -> None:
        self.models = models
        self.api_key = api_key
        self.chat_reply = chat_reply or (lambda body: DEFAULT_CHAT_REPLY)
        self.chat_models = chat_models
        self.requests: list[dict[str, Any]] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._http = _Server(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = False  # close() waits for requests in flight (hung ones end with it)
        self._http.block_on_close = True
        self._http.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-test-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def names(self) -> list[str]:
        return [*(self.models.names() if self.models else []), *self.chat_models]

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()  # hung requests end
        if self._thread.is_alive():
            self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the tests see and set ----------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """Requests received (to ``path``, e.g. ``/v1/completions``), faulted ones included."""
        with self._lock:
            return sum(1 for r in self.requests if path is None or r["path"] == path)

    def bodies(self, path: str = "/v1/completions") -> list[Any]:
        with self._lock:
            return [r["body"] for r in self.requests if r["path"] == path]

    def fail_next(self, kind: str, n: int = 1, *, retry_after: float | None = None, hang_s: float = 30.0) -> None:
        """The next ``n`` requests answer ``kind``: ``"429"``, ``"500"``, ``"503"``, ``"garbage"`` (200,
        not JSON), ``"hang"`` (no answer for ``hang_s``), ``"trickle"`` (200, the body a byte every 0.1 s),
        ``"huge"`` (200, a body over 16 MiB with no Content-Length)."""
        headers = {} if retry_after is None else {"Retry-After": f"{retry_after:g}"}
        if kind in ("429", "500", "503"):
            message = {"429": "Too many requests", "500": "Internal server error", "503": "Overloaded"}[kind]
            fault = Fault(int(kind), _error_body(message, int(kind)), headers)
        elif kind == "garbage":
            fault = Fault(200, GARBAGE, {"Content-Type": "text/html"})
        elif kind == "hang":
            fault = Fault(hang_s=hang_s)
        elif kind == "trickle":
            fault = Fault(200, json.dumps({"choices": [{"text": "x" * 200}]}).encode(), trickle_s=0.1)
        elif kind == "huge":
            fault = Fault(200, b'{"choices": [{"text": "' + b"a" * HUGE_BYTES + b'"}]}', content_length=False)
        else:
            raise ValueError(f"unknown fault {kind!r}")
        with self._lock:
            self._faults.extend([fault] * n)

    def reply_next(self, status: int, body: bytes | Any, n: int = 1, *, headers: dict[str, str] | None = None) -> None:
        """The next ``n`` requests get this status and body (bytes as they are, else as JSON)."""
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self._lock:
            self._faults.extend([Fault(status, raw, dict(headers or {}))] * n)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else None

    def _record(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self.requests.append(entry)

    # -- the API ----------------------------------------------------------------------------------

    def models_reply(self) -> dict[str, Any]:
        now = int(time.time())
        data = []
        for name in self.names():
            parent = self.models.served_name if self.models and name in self.models.adapters else None
            data.append({"id": name, "object": "model", "created": now, "owned_by": "emtui-tests",
                         "root": name, "parent": parent})
        return {"object": "list", "data": data}

    def completion_reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = body.get("model")
        if self.models is None or model not in self.models.names():
            return 404, _error(f"The model `{model}` does not exist.", 404, "NotFoundError", "model")
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return 400, _error("prompt must be a string", 400, param="prompt")
        settings, problem = _sampling(body)
        if problem:
            return 400, _error(problem, 400)
        seed = body.get("seed")
        if seed is None:
            seed = random.randrange(2**63)
        text, n_tokens, finish, n_prompt = self.models.complete(model, prompt, seed, **settings)
        return 200, {"id": f"cmpl-{random.randrange(16**12):012x}", "object": "text_completion",
                     "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
                     "usage": {"prompt_tokens": n_prompt, "completion_tokens": n_tokens,
                               "total_tokens": n_prompt + n_tokens}}

    def chat_reply_for(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = body.get("model")
        if model not in self.chat_models:
            return 404, _error(f"The model `{model}` does not exist.", 404, "NotFoundError", "model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(
                isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages):
            return 400, _error("messages must be a non-empty list of {role, content}", 400, param="messages")
        top_n = body.get("top_logprobs") or 0
        if not isinstance(top_n, int) or not 0 <= top_n <= 20:
            return 400, _error("top_logprobs must be an integer from 0 to 20", 400, param="top_logprobs")
        reply = self.chat_reply(body)
        if isinstance(reply, str):
            reply = ChatReply(reply)
        tokens = reply.tokens if reply.tokens is not None else [(reply.text, {reply.text: 0.0})]
        logprobs = None
        if body.get("logprobs"):
            content = []
            for token, tops in tokens:
                ranked = sorted(tops.items(), key=lambda kv: -kv[1])
                content.append({**_token(token, tops.get(token, ranked[0][1] if ranked else 0.0)),
                                "top_logprobs": [_token(t, lp) for t, lp in ranked[:top_n]]})
            logprobs = {"content": content}
        n_prompt = sum(len(m["content"].split()) for m in messages)
        return 200, {"id": f"chatcmpl-{random.randrange(16**12):012x}", "object": "chat.completion",
                     "created": int(time.time()), "model": model,
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": reply.text},
                                  "logprobs": logprobs, "finish_reason": reply.finish_reason}],
                     "usage": {"prompt_tokens": n_prompt, "completion_tokens": len(tokens),
                               "total_tokens": n_prompt + len(tokens)}}


def _token(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _sampling(body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The request's sampling settings as vLLM reads them (top_k -1 or 0: off), or what is wrong."""
    def number(key: str, default: float) -> float | None:
        value = body.get(key, default)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return float(value) if ok else None

    temperature, top_p = number("temperature", 1.0), number("top_p", 1.0)
    penalty = number("repetition_penalty", 1.0)
    top_k, max_tokens, n = body.get("top_k", 0), body.get("max_tokens", 16), body.get("n", 1)
    if temperature is None or temperature < 0:
        return {}, f"temperature must be non-negative, got {body.get('temperature')!r}."
    if top_p is None or not 0 < top_p <= 1:
        return {}, f"top_p must be in (0, 1], got {body.get('top_p')!r}."
    if not isinstance(top_k, int) or top_k < -1:
        return {}, f"top_k must be 0 (disable), or at least 1, got {top_k!r}."
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return {}, f"max_tokens must be at least 1, got {max_tokens!r}."
    if n != 1:
        return {}, "this server answers n=1 only"
    if penalty is None or penalty <= 0:
        return {}, f"repetition_penalty must be greater than zero, got {body.get('repetition_penalty')!r}."
    return {"temperature": temperature, "top_p": top_p, "top_k": max(top_k, 0), "max_tokens": max_tokens,
            "repetition_penalty": penalty}, None


def _error(message: str, code: int, kind: str = "BadRequestError", param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _error_body(message: str, code: int) -> bytes:
    return json.dumps(_error(message, code, "ServerError")).encode()


class _Server(ThreadingHTTPServer):
    # the listen backlog: http.server's 5 resets connections when a client opens dozens at once (a judge panel)
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    server_version = "emtui-test-openai/1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read .requests
        pass

    @property
    def owner(self) -> OpenAIServer:
        return self.server.owner  # type: ignore[attr-defined, no-any-return]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve(None)

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self._send(413, _error("request too large", 413))
            return
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw
        self._serve(body)

    def _serve(self, body: Any) -> None:
        owner = self.owner
        auth = self.headers.get("Authorization")
        owner._record({"method": self.command, "path": self.path, "body": body, "authorization": auth})
        fault = owner._next_fault()
        if fault is not None:
            self._fault(fault)
            return
        if owner.api_key is not None and auth != f"Bearer {owner.api_key}":
            got = (auth or "").removeprefix("Bearer ")
            self._send(401, _error(f"Unauthorized: invalid API key '{got}'", 401, "AuthenticationError"))
            return
        if self.command == "GET" and self.path == "/v1/models":
            self._send(200, owner.models_reply())
        elif self.command == "POST" and self.path in ("/v1/completions", "/v1/chat/completions"):
            if not isinstance(body, dict):
                self._send(400, _error("the body is not a JSON object", 400))
                return
            serve = owner.completion_reply if self.path == "/v1/completions" else owner.chat_reply_for
            self._send(*serve(body))
        else:
            self._send(404, {"detail": "Not Found"})  # what vLLM's FastAPI says for a path it lacks

    def _fault(self, fault: Fault) -> None:
        if fault.hang_s:
            self.owner.closing.wait(fault.hang_s)
            self.close_connection = True
            return
        self.send_response(fault.status)
        self.send_header("Content-Type", fault.headers.get("Content-Type", "application/json"))
        for key, value in fault.headers.items():
            if key != "Content-Type":
                self.send_header(key, value)
        if fault.content_length:
            self.send_header("Content-Length", str(len(fault.body)))
        self.end_headers()
        try:
            if fault.trickle_s:
                for i in range(len(fault.body)):
                    if self.owner.closing.wait(fault.trickle_s):
                        break
                    self.wfile.write(fault.body[i:i + 1])
                    self.wfile.flush()
            else:
                self.wfile.write(fault.body)
        except OSError:  # the client stopped reading (a huge body, a timeout): what a client should do
            pass
        self.close_connection = True

    def _send(self, status: int, doc: Any) -> None:
        raw = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        try:
            self.wfile.write(raw)
        except OSError:
            pass
