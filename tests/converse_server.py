"""A Bedrock-Converse-compatible server for the tests (a helper, not a test module): real HTTP on
127.0.0.1 that boto3's ``bedrock-runtime`` client reaches through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``,
signing, sending, parsing and failing as it does against AWS.

The wire format is botocore's service model (botocore/data/bedrock-runtime/2023-09-30/service-2.json,
protocol ``rest-json``):

- ``POST /model/{modelId}/converse``: the model id is the URL-decoded path segment (boto3 sends
  ``anthropic.claude-3-haiku-20240307-v1:0`` as ``...-v1%3A0``). The body is a ``ConverseRequest``
  (``messages[].content[].text``, ``system[].text``, ``inferenceConfig.maxTokens/temperature``);
  the reply a ``ConverseResponse``: ``output.message.content[].text``, ``stopReason``,
  ``usage.inputTokens/outputTokens/totalTokens``, ``metrics.latencyMs``, and an ``x-amzn-RequestId``
  header.
- An error is its HTTP status, an ``x-amzn-ErrorType: Code:...`` header (botocore reads the code from
  it, up to the first ``:``) and a ``{"message": ...}`` body, as Bedrock sends them:
  ThrottlingException 429, ValidationException 400, AccessDeniedException 403,
  ResourceNotFoundException 404, ModelTimeoutException 408, ModelNotReadyException 429,
  ModelErrorException 424, InternalServerException 500, ServiceUnavailableException 503.
- Authentication is checked for presence, not verified: SigV4 (``Authorization: AWS4-HMAC-SHA256
  Credential=KEY/DATE/REGION/bedrock/aws4_request, SignedHeaders=..., Signature=...`` and
  ``X-Amz-Date``), or a Bedrock API key (``Authorization: Bearer ...``, what boto3 sends when
  ``AWS_BEARER_TOKEN_BEDROCK`` is set). Missing: 403 ``MissingAuthenticationTokenException`` (what
  AWS's front door answers); an access key not in ``access_keys`` (when given): 403
  ``UnrecognizedClientException``; a model in ``denied_models``: 403 ``AccessDeniedException``.

Tokens are estimated as ``ceil(characters / 4)``: ``inputTokens`` of the system and message texts,
``outputTokens`` of the reply. A request reserves ``inputTokens + maxTokens`` (``maxTokens`` default
:data:`DEFAULT_MAX_TOKENS`) against a per-model token quota when it starts, as Bedrock does.

What the tests set:

- ``reply(model, body) -> str``: the judge's text (default :data:`DEFAULT_REPLY`, a score); a list of
  strings is sent as that many text blocks.
- ``latency_s``: seconds before each answer, or ``latency_s(model, body) -> float``.
- :meth:`ConverseServer.fail_next`: the next N requests (optionally of one model) answer a fault:
  ``throttle`` (429 ThrottlingException), ``500``, ``503``, ``model-not-ready``, ``model-timeout``,
  ``model-error``, ``validation``, ``access-denied``, ``not-found``, ``malformed`` (200, a body that
  is not JSON), ``garbage`` (200, a valid reply whose text is garbage: markup, escapes, no score),
  ``hang`` (no answer until ``hang_s``: past a client's read timeout), ``drop`` (the connection closed
  without an answer).
- :meth:`ConverseServer.set_quota`: per model, N requests and/or T tokens per ``window_s`` (60 s, as
  Bedrock's per-minute quotas; shorter in tests), beyond which a request gets 429 ThrottlingException.
- ``throttle_fraction`` (with ``seed``): that share of requests throttled at random, reproducibly.
- ``tls_dir``: serve HTTPS with a self-signed certificate for 127.0.0.1 made there (by the ``openssl``
  command); :attr:`ConverseServer.ca_bundle` is what ``AWS_CA_BUNDLE`` takes. boto3 sends a Bedrock API
  key (``AWS_BEARER_TOKEN_BEDROCK``) only over HTTPS.

What the tests read: every request is recorded (:attr:`ConverseServer.requests`) with its model, the
sha256 of its user text, its outcome and its auth kind; :meth:`received` and :meth:`answered` count per
model and per prompt, and :meth:`paid_twice` lists the (model, prompt) pairs answered more than once.

Use it through the ``converse_server`` fixture (tests/conftest.py), or as a context manager.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import ssl
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DEFAULT_REPLY = "50"           # a judge's score
DEFAULT_MAX_TOKENS = 4096      # what a request without inferenceConfig.maxTokens reserves
MAX_REQUEST_BYTES = 1 << 20
MALFORMED = b'{"output": {"message": {"role": "assistant", "content": [{"text": "5'  # cut off mid-reply
GARBAGE_TEXT = "[bold red]I refuse[/] \x1b[2J\x1b]0;pwned\x07\u202eelbat siht etar tonnac I"
_PATH = re.compile(r"^/model/([^/?]+)/converse$")
_SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
                    r"(?P<service>[^/,\s]+)/aws4_request, ?SignedHeaders=[^,\s]+, ?Signature=[0-9a-f]{64}$")
_ERROR_SUFFIX = ":http://internal.amazon.com/coral/com.amazon.bedrock/"

# (status, x-amzn-ErrorType, message) as Bedrock words them
ERRORS: dict[str, tuple[int, str, str]] = {
    "throttle": (429, "ThrottlingException", "Too many requests, please wait before trying again."),
    "tokens": (429, "ThrottlingException", "Too many tokens, please wait before trying again."),
    "500": (500, "InternalServerException", "The server encountered an error processing your request."),
    "503": (503, "ServiceUnavailableException", "Bedrock is unable to process your request."),
    "model-not-ready": (429, "ModelNotReadyException", "Model is not ready to serve inference requests."),
    "model-timeout": (408, "ModelTimeoutException", "Model has timed out in processing the request."),
    "model-error": (424, "ModelErrorException", "The system encountered an unexpected error during processing."),
    "validation": (400, "ValidationException", "The provided model identifier is invalid."),
    "access-denied": (403, "AccessDeniedException",
                      "You don't have access to the model with the specified model ID."),
    "not-found": (404, "ResourceNotFoundException", "This model version has reached the end of its life."),
    "unrecognized": (403, "UnrecognizedClientException", "The security token included in the request is invalid."),
    "missing-auth": (403, "MissingAuthenticationTokenException", "Missing Authentication Token"),
}
PAID = frozenset({"answered", "garbage"})  # outcomes with a reply: each is paid
FIRST_USER = ("A conversation must start with a user message. Try again with a conversation that starts with a "
              "user message.")
FAULTS = (*ERRORS, "malformed", "garbage", "hang", "drop")


def estimate_tokens(text: str) -> int:
    """The server's token count of a text: a quarter of its characters, rounded up."""
    return math.ceil(len(text) / 4)


def prompt_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class Quota:
    """One model's limits per ``window_s``: requests, and tokens (each request reserving its input
    estimate + maxTokens when it starts); None: no limit."""

    requests: int | None = None
    tokens: int | None = None
    window_s: float = 60.0
    started: deque[tuple[float, int]] = field(default_factory=deque)  # (time, tokens reserved)

    def admit(self, now: float, tokens: int) -> str | None:
        """Reserve a request of ``tokens`` now, or the fault it gets (``throttle`` / ``tokens``)."""
        while self.started and self.started[0][0] <= now - self.window_s:
            self.started.popleft()
        if self.requests is not None and len(self.started) >= self.requests:
            return "throttle"
        if self.tokens is not None and sum(t for _, t in self.started) + tokens > self.tokens:
            return "tokens"
        self.started.append((now, tokens))
        return None


@dataclass(frozen=True)
class Fault:
    kind: str
    model: str | None = None   # only requests to this model take it (None: any)
    hang_s: float = 30.0
    retry_after: float | None = None
    message: str | None = None  # an error's message instead of Bedrock's words


class ConverseServer:
    """The server, on 127.0.0.1 on a free port; :attr:`url` is what ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``
    takes."""

    def __init__(self, *, reply: Callable[[str, dict[str, Any]], str | list[str]] | None = None,
                 latency_s: float | Callable[[str, dict[str, Any]], float] = 0.0,
                 models: tuple[str, ...] | None = None, denied_models: tuple[str, ...] = (),
                 access_keys: tuple[str, ...] | None = None, throttle_fraction: float = 0.0,
                 seed: int = 0, tls_dir: str | Path | None = None) -> None:
        self.reply = reply or (lambda model, body: DEFAULT_REPLY)
        self.latency_s = latency_s
        self.models = models                # None: any model id is served
        self.denied_models = denied_models
        self.access_keys = access_keys      # None: any access key is accepted
        self.throttle_fraction = throttle_fraction
        self.requests: list[dict[str, Any]] = []
        self.quotas: dict[str, Quota] = {}
        self._faults: list[Fault] = []
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self.closing = threading.Event()
        self._http = _Server(("127.0.0.1", 0), _Handler)
        self._http.owner = self
        self.ca_bundle: Path | None = None
        if tls_dir is not None:
            self.ca_bundle, key = self_signed_certificate(Path(tls_dir))
            self._http.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self._http.tls.load_cert_chain(self.ca_bundle, key)
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="converse-test-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.ca_bundle else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> ConverseServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()  # hung and sleeping requests end
        if self._thread.is_alive():
            self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> ConverseServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what the tests set ------------------------------------------------------------------------

    def fail_next(self, kind: str, n: int = 1, *, model: str | None = None, hang_s: float = 30.0,
                  retry_after: float | None = None, message: str | None = None) -> None:
        """The next ``n`` requests (to ``model`` when given) answer ``kind`` (see :data:`FAULTS`);
        ``retry_after``: a ``Retry-After`` header on an error (Bedrock sends none; a proxy may);
        ``message``: an error's words instead of Bedrock's."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {', '.join(FAULTS)}")
        with self._lock:
            self._faults.extend([Fault(kind, model, hang_s, retry_after, message)] * n)

    def set_quota(self, model: str, *, requests: int | None = None, tokens: int | None = None,
                  window_s: float = 60.0) -> None:
        with self._lock:
            self.quotas[model] = Quota(requests, tokens, window_s)

    # -- what the tests read -----------------------------------------------------------------------

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (keep-alive: a client's connection pool reuses them)."""
        return self._http.connections

    def received(self, model: str | None = None, prompt: str | None = None) -> int:
        """Requests received (to ``model``, with this user text), whatever their outcome."""
        return self._count(model, prompt, answered=False)

    def answered(self, model: str | None = None, prompt: str | None = None) -> int:
        """Requests answered with a reply (each is paid), a ``garbage`` one included."""
        return self._count(model, prompt, answered=True)

    def paid_twice(self) -> list[tuple[str, str]]:
        """(model, prompt sha256) answered more than once."""
        with self._lock:
            counts = Counter((r["model"], r["prompt_sha"]) for r in self.requests if r["outcome"] in PAID)
        return sorted(key for key, n in counts.items() if n > 1)

    def outcomes(self, model: str | None = None) -> Counter[str]:
        """How requests ended: ``answered``, a fault's kind (``throttle``, ``500``, ``garbage``, ...),
        ``quota``, ``random-throttle``, ``unauthenticated``, ``access-denied``, ``bad-request``, ``closed``
        (the server closed while the request waited)."""
        with self._lock:
            return Counter(r["outcome"] for r in self.requests if model is None or r["model"] == model)

    def _count(self, model: str | None, prompt: str | None, *, answered: bool) -> int:
        sha = None if prompt is None else prompt_sha(prompt)
        with self._lock:
            return sum(1 for r in self.requests if (model is None or r["model"] == model)
                       and (sha is None or r["prompt_sha"] == sha) and (not answered or r["outcome"] in PAID))

    # -- serving -----------------------------------------------------------------------------------

    def _take_fault(self, model: str) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.model is None or fault.model == model:
                    return self._faults.pop(i)
        return None

    def _admit(self, model: str, tokens: int) -> str | None:
        """``quota`` / ``random-throttle`` with the fault to answer, or None: serve it."""
        with self._lock:
            quota = self.quotas.get(model)
            if quota is not None and (kind := quota.admit(time.monotonic(), tokens)) is not None:
                return kind
            if self.throttle_fraction and self._random.random() < self.throttle_fraction:
                return "random"
        return None

    def _latency(self, model: str, body: dict[str, Any]) -> float:
        return float(self.latency_s(model, body) if callable(self.latency_s) else self.latency_s)


class _Server(ThreadingHTTPServer):
    daemon_threads = True        # a keep-alive connection's thread must not hold close() up
    request_queue_size = 256     # 64 clients connecting at once must not overflow the listen backlog
    owner: ConverseServer
    tls: ssl.SSLContext | None = None

    connections = 0              # TCP connections accepted: a client's pool reuses them

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        self.connections += 1
        if self.tls is not None:  # the handshake happens in the request's thread, on its first read
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up, or refused our certificate: the tests see it on their side


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and the key), made by the openssl command: the client's CA bundle."""
    cert, key = folder / "converse-test-cert.pem", folder / "converse-test-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def user_text(body: dict[str, Any]) -> str:
    """The text of the request's user messages (what a prompt's sha256 is taken of)."""
    parts: list[str] = []
    for message in body.get("messages") or []:
        if isinstance(message, dict) and message.get("role") == "user":
            parts.extend(b["text"] for b in message.get("content") or []
                         if isinstance(b, dict) and isinstance(b.get("text"), str))
    return "\n".join(parts)


def request_problem(body: Any) -> str | None:
    """What ValidationException says of a request body, or None when Converse would take it."""
    if not isinstance(body, dict):
        return "Malformed input request, please reformat your input and try again."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return FIRST_USER
    for message in messages:
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            return "Malformed input request: messages[].role must be user or assistant."
        content = message.get("content")
        if not isinstance(content, list) or not content:
            return ("The content field in the Message object is empty. Add a ContentBlock object to the content "
                    "field and try again.")
    if messages[0].get("role") != "user":
        return FIRST_USER
    config = body.get("inferenceConfig") or {}
    max_tokens = config.get("maxTokens", DEFAULT_MAX_TOKENS)
    if not isinstance(max_tokens, int) or max_tokens < 1:
        return "The maximum tokens you requested exceeds the model limit or is less than 1."
    temperature = config.get("temperature", 1.0)
    if not isinstance(temperature, (int, float)) or not 0 <= temperature <= 1:
        return "temperature must be between 0 and 1."
    return None


def _input_text(body: dict[str, Any]) -> str:
    texts = [b.get("text", "") for b in body.get("system") or [] if isinstance(b, dict)]
    for message in body.get("messages") or []:
        texts.extend(b.get("text", "") for b in message.get("content") or [] if isinstance(b, dict))
    return "".join(t for t in texts if isinstance(t, str))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"    # keep-alive, as botocore's connection pool expects of Bedrock
    disable_nagle_algorithm = True   # else a reply's body waits ~40 ms for the client's delayed ACK
    timeout = 10                     # an idle keep-alive connection's thread ends after this
    server_version = "emtui-test-converse/1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read .requests
        pass

    @property
    def owner(self) -> ConverseServer:
        return self.server.owner

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._send_error(404, "UnknownOperationException", None, "Unknown operation")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._send_error(413, "ValidationException", None, "Input is too long for requested model.")
            return
        raw = self.rfile.read(length)
        match = _PATH.match(self.path)
        if match is None:
            self._send_error(404, "UnknownOperationException", None, "Unknown operation")
            return
        model = urllib.parse.unquote(match.group(1))
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        entry: dict[str, Any] = {
            "model": model, "path": self.path, "body": body, "outcome": None, "at": time.monotonic(),
            "prompt_sha": prompt_sha(user_text(body)) if isinstance(body, dict) else None,
            **self._auth(),
        }
        with self.owner._lock:
            self.owner.requests.append(entry)
        self._entry = entry
        self._serve(model, body, entry)

    def _record(self, outcome: str) -> None:
        """The request's outcome, recorded before the client can read the answer (a test that counts
        right after its call returns sees it)."""
        with self.owner._lock:
            self._entry["outcome"] = outcome

    def _auth(self) -> dict[str, Any]:
        """How the request authenticated (never the secret): ``auth`` sigv4 / bearer / None, and
        SigV4's credential scope."""
        header = self.headers.get("Authorization") or ""
        signed = _SIGV4.match(header)
        if signed and self.headers.get("X-Amz-Date"):
            return {"auth": "sigv4", "access_key": signed["key"], "region": signed["region"],
                    "service": signed["service"]}
        if header.startswith("Bearer ") and len(header) > len("Bearer "):
            return {"auth": "bearer", "access_key": None, "region": None, "service": None}
        return {"auth": None, "access_key": None, "region": None, "service": None}

    def _serve(self, model: str, body: Any, entry: dict[str, Any]) -> str:
        """Answer the request; what happened (its outcome)."""
        owner = self.owner
        if entry["auth"] is None:
            return self._error("missing-auth", "unauthenticated")
        if entry["auth"] == "sigv4" and owner.access_keys is not None and entry["access_key"] not in owner.access_keys:
            return self._error("unrecognized", "unauthenticated")
        fault = owner._take_fault(model)
        if fault is not None:
            return self._fault(fault, model, body)
        problem = request_problem(body)
        if problem is None and owner.models is not None and model not in owner.models:
            problem = ERRORS["validation"][2]
        if problem is not None:
            self._send_error(400, "ValidationException", None, problem, outcome="bad-request")
            return "bad-request"
        if model in owner.denied_models:
            return self._error("access-denied", "access-denied")
        assert isinstance(body, dict)
        input_tokens = estimate_tokens(_input_text(body))
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens", DEFAULT_MAX_TOKENS)
        refused = owner._admit(model, input_tokens + max_tokens)
        if refused == "random":
            return self._error("throttle", "random-throttle")
        if refused is not None:
            return self._error(refused, "quota")
        return self._answer(model, body, owner.reply(model, body), input_tokens)

    def _answer(self, model: str, body: dict[str, Any], text: str | list[str], input_tokens: int, *,
                outcome: str = "answered") -> str:
        started = time.monotonic()
        delay = self.owner._latency(model, body)
        if delay > 0 and self.owner.closing.wait(delay):
            self.close_connection = True
            self._record("closed")
            return "closed"
        blocks = [text] if isinstance(text, str) else list(text)
        output_tokens = max(1, estimate_tokens("".join(blocks)))
        max_tokens = (body.get("inferenceConfig") or {}).get("maxTokens", DEFAULT_MAX_TOKENS)
        stop = "max_tokens" if output_tokens >= max_tokens else "end_turn"
        doc = {
            "output": {"message": {"role": "assistant", "content": [{"text": block} for block in blocks]}},
            "stopReason": stop,
            "usage": {"inputTokens": input_tokens, "outputTokens": output_tokens,
                      "totalTokens": input_tokens + output_tokens},
            "metrics": {"latencyMs": int((time.monotonic() - started) * 1000)},
        }
        self._send(200, json.dumps(doc).encode(), outcome=outcome)
        return outcome

    def _fault(self, fault: Fault, model: str, body: Any) -> str:
        if fault.kind == "hang":
            self._record("hang")
            self.owner.closing.wait(fault.hang_s)
            self.close_connection = True
            return "hang"
        if fault.kind == "drop":
            self._record("drop")
            self.close_connection = True  # the request was read; the connection closes with no answer
            return "drop"
        if fault.kind == "malformed":
            self._send(200, MALFORMED, outcome="malformed")
            return "malformed"
        if fault.kind == "garbage":  # a valid reply, paid like any other: answered
            text_in = _input_text(body) if isinstance(body, dict) else ""
            return self._answer(model, body if isinstance(body, dict) else {}, GARBAGE_TEXT,
                                estimate_tokens(text_in), outcome="garbage")
        return self._error(fault.kind, fault.kind, retry_after=fault.retry_after, message=fault.message)

    def _error(self, kind: str, outcome: str, *, retry_after: float | None = None, message: str | None = None) -> str:
        status, code, words = ERRORS[kind]
        self._send_error(status, code, retry_after, words if message is None else message, outcome=outcome)
        return outcome

    def _send_error(self, status: int, code: str, retry_after: float | None, message: str, *,
                    outcome: str | None = None) -> str | None:
        headers = {"x-amzn-ErrorType": code + _ERROR_SUFFIX}
        if retry_after is not None:
            headers["Retry-After"] = f"{retry_after:g}"
        self._send(status, json.dumps({"message": message}).encode(), headers, outcome=outcome)
        return outcome

    def _send(self, status: int, raw: bytes, headers: dict[str, str] | None = None, *,
              outcome: str | None = None) -> None:
        if outcome is not None:
            self._record(outcome)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(raw)
        except OSError:  # the client gave up (its read timeout): what a client does
            self.close_connection = True
