"""Judging on AWS Bedrock: one Converse call per attempt, through boto3 (issue 14).

:class:`BedrockBackend` is the ``bedrock`` backend of :mod:`engine.judging.backend`: ``call()`` blocks,
makes exactly one ``bedrock-runtime`` ``Converse`` request (botocore ``total_max_attempts=1``: the panel
retries, so that every attempt is counted, costed and logged) and returns the reply or raises
:class:`~engine.judging.backend.Throttled` / :class:`~engine.judging.backend.CallFailed`. Converse is one
request shape for every model family; botocore's service model
(botocore/data/bedrock-runtime/2023-09-30/service-2.json) is the wire specification.

- One client, created on first use and shared by every thread (boto3 clients are thread-safe; sessions
  are not, so only the creation is locked). ``max_pool_connections`` should be at least the number of
  calls in flight, or connections are opened and dropped on every call.
- Credentials, region and endpoint come only from the standard AWS chain: ``AWS_ACCESS_KEY_ID`` /
  ``AWS_SECRET_ACCESS_KEY`` (/ ``AWS_SESSION_TOKEN``), a profile (``profile`` or ``AWS_PROFILE``, SSO
  included), a container or instance role, or a Bedrock API key in ``AWS_BEARER_TOKEN_BEDROCK``; the
  region from ``region``, ``AWS_DEFAULT_REGION`` or the profile (``AWS_REGION``, which boto3 does not
  read, as a last resort); the endpoint from ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` / ``AWS_ENDPOINT_URL``
  when set (a proxy, or the tests' server), else AWS's. Nothing secret is kept here, logged or put in a
  message.
- Time: botocore cannot change a client's timeouts per call, so ``read_timeout_s`` (how long to wait
  for the reply; Converse is not streamed, so in practice the whole call) bounds every call and
  ``call(timeout_s=...)`` cannot shorten it: build the backend with the panel's per-call timeout. A call
  that times out was sent and may be paid (``CallFailed(sent=True)``).
- Errors, each one line naming the model and the region (and the endpoint when it is not AWS's), with
  the service's own words flattened and cut: ThrottlingException or any other HTTP 429 (but
  ModelNotReadyException) is ``Throttled``; 5xx, InternalServerException, ServiceUnavailableException,
  ModelNotReadyException, ModelTimeoutException, ModelErrorException, a read timeout, a dropped
  connection, a refused or timed-out connection (``sent=False``) are retryable; ValidationException,
  AccessDeniedException, ResourceNotFoundException, UnrecognizedClientException and any other 4xx, no
  credentials, no region are not (every retry would fail the same way).
- Model ids: foundation models (``anthropic.claude-3-haiku-20240307-v1:0``), cross-region inference
  profiles (``us.anthropic.claude-3-5-haiku-20241022-v1:0``) and ARNs; boto3 percent-encodes them in
  the URL path (``%3A``, ``%2F``).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.common.openai_http import _retry_after as retry_after_seconds
from engine.common.text import flat, one_line
from engine.judging.backend import Call, CallFailed, Reply, Throttled
from engine.runs.doctor import AWS_SOURCES

__all__ = ["BedrockBackend", "CredentialsCheck", "check_credentials"]

PROVIDER = "bedrock"
SERVICE = "bedrock-runtime"
BEARER_VARIABLE = "AWS_BEARER_TOKEN_BEDROCK"   # a Bedrock API key: boto3 sends it instead of signing
MAX_SERVICE_WORDS = 300                         # characters of the service's message in one of ours

THROTTLING = frozenset({"ThrottlingException"})
# retry these: the same request can succeed later
RETRYABLE = frozenset({"InternalServerException", "ServiceUnavailableException", "ModelNotReadyException",
                       "ModelTimeoutException", "ModelErrorException"})
# credentials that the service did not take: say where they come from
REJECTED_CREDENTIALS = frozenset({"UnrecognizedClientException", "InvalidSignatureException",
                                  "MissingAuthenticationTokenException", "ExpiredTokenException",
                                  "InvalidClientTokenId", "IncompleteSignatureException"})
NO_CREDENTIALS = ("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, choose a profile "
                  "(AWS_PROFILE; `aws configure` or `aws sso login`), run with an instance or container role, "
                  f"or set a Bedrock API key in {BEARER_VARIABLE}")
NO_REGION = "no AWS region: pass one (the judge's region) or set AWS_DEFAULT_REGION (e.g. us-east-1)"
SECRET_VARIABLES = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", BEARER_VARIABLE)


@dataclass(frozen=True)
class CredentialsCheck:
    """Whether a Bedrock call could authenticate, in one line (never a secret). ``source``: where the
    credentials come from (``env``, ``sso``, ``bearer``, ...)."""

    ok: bool
    message: str
    source: str | None = None
    region: str | None = None
    endpoint: str | None = None


class BedrockBackend:
    """Bedrock's Converse API through one shared boto3 client; ``call()`` makes one attempt."""

    provider = PROVIDER

    def __init__(self, region: str | None = None, *, max_pool_connections: int = 64,
                 connect_timeout_s: float = 10, read_timeout_s: float = 120, profile: str | None = None) -> None:
        for name, value in (("max_pool_connections", max_pool_connections), ("connect_timeout_s", connect_timeout_s),
                            ("read_timeout_s", read_timeout_s)):
            if not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        self.requested_region = region
        self.profile = profile
        self.max_pool_connections = int(max_pool_connections)
        self.connect_timeout_s = float(connect_timeout_s)
        self.read_timeout_s = float(read_timeout_s)
        self._lock = threading.Lock()
        self._session: Any = None
        self._client: Any = None

    # -- the client --------------------------------------------------------------------------------

    def client(self) -> Any:
        """The ``bedrock-runtime`` client, created on first use. Raises the botocore error of a bad
        configuration (an unknown profile, no region); :meth:`call` turns it into one line."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self._make_client()
        return self._client

    def warm(self) -> None:
        """Make the client now (the panel does, in a thread, while it reads its plan)."""
        self.client()

    def _make_client(self) -> Any:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError

        session = boto3.session.Session(profile_name=self.profile, region_name=self.requested_region)
        region = session.region_name or os.environ.get("AWS_REGION") or None
        if region is None:
            raise NoRegionError()
        config = Config(retries={"total_max_attempts": 1, "mode": "standard"},
                        max_pool_connections=self.max_pool_connections,
                        connect_timeout=self.connect_timeout_s, read_timeout=self.read_timeout_s)
        client = session.client(SERVICE, region_name=region, config=config)
        self._session = session
        return client

    @property
    def region(self) -> str | None:
        """The region calls go to (once the client exists), else the one asked for."""
        return self._client.meta.region_name if self._client is not None else self.requested_region

    @property
    def endpoint(self) -> str | None:
        """The endpoint calls go to, without any user:password@, query or fragment (None before the client)."""
        if self._client is None:
            return None
        parts = urllib.parse.urlsplit(self._client.meta.endpoint_url)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))

    def place(self) -> str:
        """The region, and the endpoint when it is not AWS's own (a proxy, a test server)."""
        place = self.region or "no region"
        endpoint = self.endpoint
        if endpoint and not (urllib.parse.urlsplit(endpoint).hostname or "").endswith(".amazonaws.com"):
            place += f", endpoint {endpoint}"
        return place

    def where(self, model: str) -> str:
        """``bedrock MODEL (REGION[, endpoint URL])``: the start of every message."""
        return f"bedrock {one_line(model, 200)} ({self.place()})"

    # -- one attempt -------------------------------------------------------------------------------

    def call(self, model: str, call: Call, *, timeout_s: float) -> Reply:
        """One Converse request; the reply, or :class:`Throttled` / :class:`CallFailed`. ``timeout_s`` is
        not applied per call: the client's ``read_timeout_s`` bounds it (see the module's notes)."""
        from botocore.exceptions import BotoCoreError, ClientError

        if call.top_logprobs:
            raise CallFailed(f"{self.where(model)}: Bedrock's Converse API returns no log-probabilities; score "
                             "this rubric from the judge's text", retryable=False, sent=False)
        try:
            client = self.client()
        except BotoCoreError as exc:
            raise self._transport_error(model, exc) from exc
        request: dict[str, Any] = {
            "modelId": model,
            "messages": [{"role": "user", "content": [{"text": call.prompt}]}],
            "inferenceConfig": {"maxTokens": call.max_tokens, "temperature": call.temperature},
        }
        if call.system:
            request["system"] = [{"text": call.system}]
        try:
            response = client.converse(**request)
        except ClientError as exc:
            raise self._service_error(model, exc) from exc
        except BotoCoreError as exc:
            raise self._transport_error(model, exc) from exc
        return self._reply(model, response)

    def _reply(self, model: str, response: Mapping[str, Any]) -> Reply:
        """The reply's text (its text blocks, joined), tokens and stop reason. botocore parses a body that
        is not JSON as an empty reply: that is a failed attempt (retryable), not an empty answer."""
        output = response.get("output")
        message = output.get("message") if isinstance(output, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        meta = response.get("ResponseMetadata") or {}
        if not isinstance(content, list):
            raise CallFailed(f"{self.where(model)}: the reply is not a Converse reply (no output.message.content; "
                             "a cut-off body, or a proxy's page)", retryable=True, status=meta.get("HTTPStatusCode"))
        text = "".join(block["text"] for block in content
                       if isinstance(block, Mapping) and isinstance(block.get("text"), str))
        usage = response.get("usage") or {}
        metrics = response.get("metrics") or {}
        extra = {key: value for key, value in (("request_id", meta.get("RequestId")),
                                               ("latency_ms", metrics.get("latencyMs")),
                                               ("region", self.region)) if value is not None}
        return Reply(text=text, input_tokens=_count(usage.get("inputTokens")),
                     output_tokens=_count(usage.get("outputTokens")), stop_reason=response.get("stopReason"),
                     extra=extra)

    # -- errors ------------------------------------------------------------------------------------

    def _service_error(self, model: str, exc: Any) -> Throttled | CallFailed:
        """A reply with an error status (botocore ``ClientError``): its code, status and message."""
        response = exc.response or {}
        error = response.get("Error") or {}
        meta = response.get("ResponseMetadata") or {}
        status = meta.get("HTTPStatusCode")
        status = status if isinstance(status, int) else None
        code = flat(error.get("Code")) or "an error"
        words = self._clean(error.get("Message"), credentials=True) or "(no message)"
        line = f"{self.where(model)}: {code}" + (f" (HTTP {status})" if status else "") + f": {words}"
        if code in THROTTLING or (status == 429 and code != "ModelNotReadyException"):
            headers = meta.get("HTTPHeaders") or {}
            return Throttled(line, retry_after=retry_after_seconds(headers.get("retry-after")))
        if code in REJECTED_CREDENTIALS:
            line += f" — check the AWS credentials ({self._credential_source()})"
        elif code == "AccessDeniedException":
            line += (" — the identity needs bedrock:InvokeModel on this model, and the model must be enabled "
                     "under Model access in the Bedrock console")
        retryable = code in RETRYABLE or status is None or status >= 500 or status == 408
        return CallFailed(line, retryable=retryable, status=status, sent=True)

    def _transport_error(self, model: str, exc: Exception) -> CallFailed:
        """A botocore error without a reply: configuration, credentials, connection, timeout."""
        problem, retryable, sent = self._transport_problem(exc)
        return CallFailed(f"{self.where(model)}: {problem}", retryable=retryable, sent=sent)

    def _transport_problem(self, exc: Exception) -> tuple[str, bool, bool]:
        """(what went wrong, retryable, sent) of a botocore error without a reply."""
        from botocore import exceptions as bc

        endpoint = self.endpoint or "the endpoint"
        if isinstance(exc, bc.ReadTimeoutError):
            return (f"no reply within the read timeout ({self.read_timeout_s:g} s); the request was sent and may "
                    "be paid", True, True)
        if isinstance(exc, bc.ConnectTimeoutError):
            return f"could not connect to {endpoint} within {self.connect_timeout_s:g} s", True, False
        if isinstance(exc, bc.SSLError):  # a certificate fails the same way next time; a reset TLS session may not
            return f"TLS to {endpoint} failed: {self._clean(exc)}", "certificate" not in str(exc).lower(), False
        if isinstance(exc, bc.ConnectionError):  # refused, unreachable, a proxy that failed
            return f"could not connect to {endpoint}: {self._clean(exc)}", True, False
        if isinstance(exc, bc.ConnectionClosedError):
            return "the connection closed before the reply", True, True
        if isinstance(exc, bc.HTTPClientError):  # a reply cut off while it was read
            return f"the reply was cut off: {self._clean(exc)}", True, True
        if isinstance(exc, bc.NoCredentialsError):
            return NO_CREDENTIALS, False, False
        if isinstance(exc, bc.NoRegionError):
            return NO_REGION, False, False
        if isinstance(exc, (bc.PartialCredentialsError, bc.CredentialRetrievalError, bc.TokenRetrievalError,
                            bc.SSOError, bc.NoAuthTokenError, bc.ProfileNotFound, bc.LoginError)):
            return f"the AWS credentials cannot be used: {self._clean(exc)}", False, False
        # a request botocore would not send (ParamValidationError), a bad region name, a broken config file
        return f"{type(exc).__name__}: {self._clean(exc)}", False, False

    def _clean(self, text: object, *, credentials: bool = False) -> str:
        """Someone else's words for one of our messages: one line, cut, with the secrets of the environment
        (and, for a service's words, ``credentials``, those the request was signed with) written as ***."""
        line = one_line(None if text is None else str(text), MAX_SERVICE_WORDS)
        for secret in self._secrets(credentials):
            line = line.replace(secret, "***")
        return line

    def _secrets(self, credentials: bool) -> list[str]:
        values = [os.environ.get(name) or "" for name in SECRET_VARIABLES]
        session = self._session
        if credentials and session is not None:  # found and cached already: the request was signed
            try:
                found = session.get_credentials()
                frozen = found.get_frozen_credentials() if found is not None else None
            except Exception:  # only scrubbing: the chain's own failure is reported elsewhere
                frozen = None
            if frozen is not None:
                values += [frozen.secret_key or "", frozen.token or ""]
        return [v for v in values if len(v) >= 8]  # a short value would mask ordinary words

    def _credential_source(self) -> str:
        if os.environ.get(BEARER_VARIABLE):
            return f"a Bedrock API key in ${BEARER_VARIABLE}"
        try:
            credentials = self._session.get_credentials() if self._session is not None else None
        except Exception:  # a broken chain: say none
            credentials = None
        method = getattr(credentials, "method", None)
        return f"from {AWS_SOURCES.get(method, method)}" if method else "none found"

    # -- before queueing ---------------------------------------------------------------------------

    def check_credentials(self) -> CredentialsCheck:
        """Whether the AWS chain has credentials (or a Bedrock API key) and a region for this backend, in
        one line. Sends nothing to Bedrock; resolving an SSO or assumed-role profile, or an instance
        role, may ask those services."""
        from botocore.exceptions import BotoCoreError

        try:
            self.client()
        except BotoCoreError as exc:
            return CredentialsCheck(False, f"bedrock ({self.place()}): {self._transport_problem(exc)[0]}",
                                    region=self.region)
        place = f"bedrock ({self.place()})"
        endpoint = self.endpoint
        if os.environ.get(BEARER_VARIABLE):
            return CredentialsCheck(True, f"{place}: a Bedrock API key in ${BEARER_VARIABLE}", "bearer",
                                    self.region, endpoint)
        try:
            credentials = self._session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials is not None else None
        except BotoCoreError as exc:
            return CredentialsCheck(False, f"{place}: the AWS credentials cannot be used: {self._clean(exc)}",
                                    None, self.region, endpoint)
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            return CredentialsCheck(False, f"{place}: {NO_CREDENTIALS}", None, self.region, endpoint)
        method = str(getattr(credentials, "method", None) or "unknown")
        return CredentialsCheck(True, f"{place}: AWS credentials from {AWS_SOURCES.get(method, method)}", method,
                                self.region, endpoint)


def check_credentials(region: str | None = None, *, profile: str | None = None) -> CredentialsCheck:
    """:meth:`BedrockBackend.check_credentials` for a region and profile: what the CLI asks before queueing
    a Bedrock judge."""
    return BedrockBackend(region, profile=profile).check_credentials()


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
