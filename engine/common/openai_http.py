"""Talking to an OpenAI-compatible server (``vllm serve``, a hosted API): JSON over HTTP with the
standard library only, retried where a retry can help, every failure one line.

:class:`Endpoint` is the transport shared by generation (``/completions``, issue 13) and judging
(``/chat/completions``, issue 14): the base URL is the API's ``/v1`` root, as OpenAI clients take
it. A request is retried with exponential backoff and jitter on connection errors, timeouts, 408,
429 and 5xx (``Retry-After`` honoured); any other status fails at once, naming the endpoint, the status
and the server's message. Replies are untrusted: bounded in size, parsed by the bounded JSON
parser, and anything the server says is flattened to one clean line before it reaches a message.

The API key is never part of a message: a server that echoes it back gets it masked.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import random
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from engine.common.safe_load import LoadError
from engine.common.text import flat
from engine.common.untrusted import parse_json

__all__ = ["KEY_VARIABLES", "MAX_REPLY_BYTES", "Endpoint", "EndpointError", "list_models", "resolve_api_key"]

KEY_VARIABLES = ("EMTUI_OPENAI_API_KEY", "OPENAI_API_KEY")  # in this order, after an explicit key
MAX_REPLY_BYTES = 16 << 20      # a completion is a few KB; more is a wrong server, or a hostile one
MAX_ERROR_BYTES = 64 << 10      # an error reply: enough for its message
MAX_MESSAGE_CHARS = 300         # of the server's own words in one of our messages
MAX_RETRY_AFTER_S = 300.0       # a Retry-After beyond this is capped (the job's own retries go on)
BACKOFF_CAP_S = 30.0
RETRIED_STATUSES = frozenset({408, 429})  # and every 5xx: a busy or restarting server
_CHUNK = 1 << 16


class EndpointError(ValueError):
    """The endpoint failed or answered something unusable; the message is one line naming it.
    ``status`` is the HTTP status when the server answered with one. For a caller that retries by itself
    (a judge: ``max_retries=0``): ``retryable`` (a timeout, a dropped connection, 408, 429, 5xx),
    ``retry_after`` (the server's ``Retry-After``, seconds) and ``sent`` (whether the request may have
    reached the server: False only when no connection was made)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, sent: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.sent = sent


class _TooLarge(Exception):
    """A reply over the size limit (not retried: the same server would send it again)."""


class Stopped(Exception):
    """A request abandoned because its caller stopped (cancelled, or another request failed)."""


def resolve_api_key(explicit: str | None = None) -> tuple[str | None, str]:
    """The key to send and where it came from (for messages, never the key): the argument, else
    ``$EMTUI_OPENAI_API_KEY``, else ``$OPENAI_API_KEY``, else none (a vLLM started without ``--api-key``)."""
    if explicit:
        return explicit, "the api_key argument"
    for name in KEY_VARIABLES:
        if os.environ.get(name):
            return os.environ[name], f"${name}"
    return None, "no key"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an error, not a silent GET: urllib would re-send a POST as a GET without its body."""

    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        return None


class Endpoint:
    """One OpenAI-compatible API root (``http://host:8000/v1``) and the key to send it."""

    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = normalize_base_url(base_url)
        parts = urllib.parse.urlsplit(self.base_url)
        # what messages show: no user:password@ part
        self.api_key, self.key_source = resolve_api_key(api_key)
        # the environment's proxy for remote servers; never for a server on this machine (a
        # cluster's http_proxy would otherwise swallow requests to 127.0.0.1)
        proxies = {} if _is_loopback(parts.hostname or "") else urllib.request.getproxies()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler(proxies), _NoRedirect())

    def url(self, path: str) -> str:
        return f"{self.base_url}/{path.lstrip('/')}"

    # -- requests --------------------------------------------------------------------------------

    def post(self, path: str, body: Mapping[str, Any], *, timeout_s: float, max_retries: int,
             backoff_s: float = 0.5, stop: threading.Event | None = None) -> Any:
        data = json.dumps(body).encode("ascii")  # ASCII: a lone surrogate is escaped, not an encoding error
        return self.request("POST", path, data, timeout_s=timeout_s, max_retries=max_retries,
                            backoff_s=backoff_s, stop=stop)

    def get(self, path: str, *, timeout_s: float = 30.0, max_retries: int = 2, backoff_s: float = 0.5,
            stop: threading.Event | None = None) -> Any:
        return self.request("GET", path, None, timeout_s=timeout_s, max_retries=max_retries,
                            backoff_s=backoff_s, stop=stop)

    def request(self, method: str, path: str, data: bytes | None, *, timeout_s: float, max_retries: int,
                backoff_s: float = 0.5, stop: threading.Event | None = None) -> Any:
        """The reply's JSON, after up to ``max_retries`` retries of what a retry can fix; else
        :class:`EndpointError` (or :class:`Stopped` once ``stop`` is set)."""
        where = self.url(path)
        attempts = max_retries + 1
        for attempt in range(attempts):
            if stop is not None and stop.is_set():
                raise Stopped()
            retry_after: float | None = None
            status: int | None = None
            sent = True
            try:
                status, headers, raw = self._once(method, self.url(path), data, timeout_s)
            except TimeoutError:
                problem = f"no reply within {timeout_s:g} s"
            except _TooLarge as exc:
                size = f" ({exc})" if str(exc) else ""
                raise EndpointError(f"{where}: the reply is larger than the {MAX_REPLY_BYTES >> 20} MiB a reply "
                                    f"may have{size}") from None
            except (OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, ssl.SSLCertVerificationError):  # the same next time
                    raise EndpointError(f"{where}: {self._reason(exc)}", sent=False) from None
                sent = not isinstance(reason, (ConnectionRefusedError, socket.gaierror))
                problem = f"connection failed ({self._reason(exc)}) — is the server running at {self.base_url}?"
            else:
                if 200 <= status < 300:
                    return self._parse(where, raw)
                if status not in RETRIED_STATUSES and status < 500:
                    raise self._status_error(path, status, raw)
                problem = f"HTTP {status}: {self._server_message(raw)}"
                retry_after = _retry_after(headers.get("Retry-After"))
            if attempt + 1 == attempts:
                tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
                raise EndpointError(f"{where}: {problem} (gave up after {tries})", status=status, retryable=True,
                                    retry_after=retry_after, sent=sent)
            delay = retry_after if retry_after is not None else _backoff(attempt, backoff_s)
            if stop is not None:
                if stop.wait(delay):
                    raise Stopped()
            else:
                time.sleep(delay)
        raise AssertionError("unreachable")

    def _once(self, method: str, url: str, data: bytes | None, timeout_s: float) -> tuple[int, Any, bytes]:
        headers = {"Accept": "application/json", "User-Agent": "emtui"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        deadline = time.monotonic() + timeout_s
        try:
            response = self._opener.open(request, timeout=timeout_s)
        except urllib.error.HTTPError as exc:  # a status outside 2xx: its body says why
            with exc:
                return exc.code, exc.headers, _read(exc, MAX_ERROR_BYTES, deadline, clip=True)
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise exc.reason from None
            raise
        with response:
            return response.status, response.headers, _read(response, MAX_REPLY_BYTES, deadline)

    def _parse(self, where: str, raw: bytes) -> Any:
        try:
            return parse_json(raw)
        except LoadError as exc:
            raise EndpointError(f"{where}: the reply is not usable JSON ({exc})") from None

    # -- messages --------------------------------------------------------------------------------

    def _reason(self, exc: BaseException) -> str:
        reason = getattr(exc, "reason", None) or exc
        text = getattr(reason, "strerror", None) or str(reason) or type(reason).__name__
        return self.redact(flat(text))[:MAX_MESSAGE_CHARS]

    def redact(self, text: str) -> str:
        return text.replace(self.api_key, "***") if self.api_key else text

    def _server_message(self, raw: bytes) -> str:
        """What the server said was wrong, one clean line: OpenAI's ``{"error": {"message": ...}}``,
        vLLM's and FastAPI's shapes, else the start of the body."""
        message: Any = None
        try:
            doc = json.loads(raw)
        except (ValueError, RecursionError):
            doc = None
        if isinstance(doc, dict):
            error = doc.get("error")
            message = (error.get("message") if isinstance(error, dict) else error) or doc.get("message") \
                or doc.get("detail")
        if message is None or isinstance(message, (dict, list)) and not message:
            message = raw.decode("utf-8", "replace")
        if not isinstance(message, str):
            message = json.dumps(message, ensure_ascii=False)
        text = self.redact(flat(message)) or "(no message)"
        return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 1] + "…"

    def _status_error(self, path: str, status: int, raw: bytes) -> EndpointError:
        where = self.url(path)
        message = f"{where}: HTTP {status}: {self._server_message(raw)}"
        if status in (401, 403):
            message += (f" — the server refused the API key from {self.key_source}" if self.api_key else
                        " — the server wants an API key: set $EMTUI_OPENAI_API_KEY (or $OPENAI_API_KEY)")
        elif status == 404 and not self.base_url.endswith("/v1"):
            head, v1, _ = self.base_url.partition("/v1/")  # e.g. .../v1/completions given as the base
            guess = f"{head}/v1" if v1 else f"{self.base_url}/v1"
            message += f" — the base URL is the API's /v1 root: did you mean {guess}?"
        elif status in (301, 302, 303, 307, 308):
            message += " — the server redirects: give the address it redirects to as the base URL"
        return EndpointError(message, status=status)


def normalize_base_url(base_url: str) -> str:
    """``http(s)://host[:port]/path`` without a trailing slash; :class:`EndpointError` otherwise."""
    text = str(base_url).strip().rstrip("/")
    shown = flat(base_url)[:200]
    if any(c.isspace() or not c.isprintable() for c in text):
        raise EndpointError(f"{shown!r}: a URL holds no spaces or control characters")
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointError(f"{shown!r}: not an http(s) URL (e.g. http://127.0.0.1:8000/v1)")
    if "@" in parts.netloc:  # never shown in a message, nor sent as a header: refuse it
        raise EndpointError(f"{parts.scheme}://…@{parts.netloc.rpartition('@')[2]}: no user:password@ in the "
                            "base URL — the API key goes in $EMTUI_OPENAI_API_KEY")
    try:
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError as exc:
        raise EndpointError(f"{shown}: {exc}") from None
    if parts.query or parts.fragment:
        raise EndpointError(f"{shown}: the base URL takes no ?query or #fragment")
    return text


def _read(response: Any, limit: int, deadline: float, *, clip: bool = False) -> bytes:
    """At most ``limit`` bytes of a reply, before ``deadline``: more is an error (or, for an error
    reply whose message is all we want, ``clip`` keeps the start)."""
    length = response.headers.get("Content-Length")
    if not clip and length and length.isdigit() and int(length) > limit:
        raise _TooLarge(f"{int(length):,} bytes")
    read = getattr(response, "read1", response.read)  # one recv at a time: the deadline is checked between
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            if clip:
                return b"".join(chunks)[:limit]
            raise _TooLarge()
        if time.monotonic() > deadline:
            raise TimeoutError()


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date), capped; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def _backoff(attempt: int, base_s: float) -> float:
    """Exponential, with jitter so that many clients that failed together do not retry together."""
    return min(BACKOFF_CAP_S, base_s * 2 ** attempt) * random.uniform(0.5, 1.0)


def list_models(base_url: str, api_key: str | None = None, *, timeout_s: float = 30.0) -> list[str]:
    """The model names the server serves (``GET /models``): for vLLM the base's served name and
    each ``--lora-modules`` name."""
    endpoint = Endpoint(base_url, api_key)
    return endpoint_models(endpoint, timeout_s=timeout_s)


def endpoint_models(endpoint: Endpoint, *, timeout_s: float = 30.0, max_retries: int = 2) -> list[str]:
    reply = endpoint.get("models", timeout_s=timeout_s, max_retries=max_retries)
    data = reply.get("data") if isinstance(reply, dict) else None
    if not isinstance(data, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in data):
        raise EndpointError(f"{endpoint.url('models')}: the reply has no list of models "
                            '({"data": [{"id": ...}, ...]})')
    return [m["id"] for m in data]
