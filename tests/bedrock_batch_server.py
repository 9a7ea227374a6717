"""A Bedrock-batch-inference-compatible server for the tests (a helper, not a test module): real HTTP on
127.0.0.1 speaking enough of S3 and of Bedrock's control plane for boto3's ``s3`` and ``bedrock`` clients —
reached through ``AWS_ENDPOINT_URL_S3`` and ``AWS_ENDPOINT_URL_BEDROCK`` — to sign, send, parse and fail as
against AWS.

The wire formats are botocore's service models:

- S3 (``rest-xml``, path-style addressing, which botocore uses for an IP endpoint): ``PUT /BUCKET/KEY``
  (PutObject), ``GET /BUCKET/KEY`` (GetObject; 404 ``NoSuchKey``), ``GET /BUCKET?list-type=2&prefix=P``
  (ListObjectsV2, one page).
- Bedrock (bedrock/2023-04-20, ``rest-json``): ``POST /model-invocation-job`` (CreateModelInvocationJob:
  ``{"jobArn"}``; the same ``clientRequestToken`` again answers the same job), ``GET
  /model-invocation-job/{jobIdentifier}`` (GetModelInvocationJob; the identifier is the job's ARN,
  percent-encoded in the path, or its id), ``POST /model-invocation-job/{jobIdentifier}/stop``. Errors as
  Bedrock sends them: the status, ``x-amzn-ErrorType`` and ``{"message"}``.
- Which service a request is for is read from its SigV4 credential scope (``.../s3/aws4_request`` or
  ``.../bedrock/aws4_request``): a request without SigV4 (``Authorization: AWS4-HMAC-SHA256 ...`` and
  ``X-Amz-Date``) is refused (403) and counted in :attr:`BatchServer.unsigned`.

A job "runs" once ``run_delay_s`` has passed since it was created, when it is next polled: ``Submitted``, then
``InProgress`` (half the records processed) after half the delay, then ``Completed`` — its input JSONL read from
the S3 store, each record answered by ``reply(model, modelInput) -> text`` in the model family's reply shape
(Anthropic's Messages reply, Nova's, or a ConverseResponse for a ``Converse`` job), or ``error`` (``{"errorCode":
400, "errorMessage": ...}``) where ``error_record(model, record_id, modelInput)`` says so; the output written to
``<output>/<job id>/<input file>.out`` with a ``manifest.json.out``. ``fail_jobs``: that many next jobs end
``Failed`` with :data:`FAIL_MESSAGE` and no output. Tokens are counted as tests/converse_server.py counts them.

What the tests read: :attr:`creates` (CreateModelInvocationJob requests), :attr:`jobs` (the jobs made),
:attr:`processed` (records answered, per (model, record id)), :attr:`operations` (every request's operation).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from converse_server import estimate_tokens

ACCOUNT = "123456789012"
FAIL_MESSAGE = "The service role cannot read s3://input: Access Denied (Service: S3, Status Code: 403)"
ERROR_MESSAGE = "Malformed input request: #/messages/0/content: expected minimum item count: 1"
_SIGV4 = re.compile(r"^AWS4-HMAC-SHA256 Credential=[^/,\s]+/\d{8}/[^/,\s]+/(?P<service>[^/,\s]+)/aws4_request, ?"
                    r"SignedHeaders=[^,\s]+, ?Signature=[0-9a-f]{64}$")
_JOB = re.compile(r"^/model-invocation-job/([^/?]+)(/stop)?$")
_ROLE = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")
RUNNING = ("Submitted", "Validating", "Scheduled", "InProgress", "Stopping")


class BatchServer:
    def __init__(self, *, reply: Callable[[str, dict[str, Any]], str] | None = None, run_delay_s: float = 0.3,
                 error_record: Callable[[str, str, dict[str, Any]], bool] | None = None, fail_jobs: int = 0,
                 min_records: int = 100) -> None:
        self.reply = reply or (lambda model, body: "50")
        self.run_delay_s = run_delay_s
        self.error_record = error_record or (lambda model, rid, body: False)
        self.fail_jobs = fail_jobs
        self.min_records = min_records
        self.objects: dict[tuple[str, str], bytes] = {}
        self.jobs: dict[str, dict[str, Any]] = {}          # job id -> its state
        self.tokens: dict[str, str] = {}                   # clientRequestToken -> job id
        self.creates = 0
        self.unsigned = 0
        self.processed: Counter[tuple[str, str]] = Counter()
        self.operations: Counter[str] = Counter()
        self.lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._http.daemon_threads = True
        self._http.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="batch-test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    def start(self) -> BatchServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._http.shutdown()
        self._http.server_close()

    # -- Bedrock's control plane ---------------------------------------------------------------------------

    def create(self, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        """(status, error code or '', reply) of CreateModelInvocationJob."""
        missing = [k for k in ("jobName", "roleArn", "modelId", "inputDataConfig", "outputDataConfig")
                   if k not in body]
        if missing:
            return 400, "ValidationException", {"message": f"{missing[0]} is required"}
        if not _ROLE.fullmatch(str(body["roleArn"])):
            return 400, "ValidationException", {"message": "1 validation error detected: Value at 'roleArn' failed "
                                                           "to satisfy constraint"}
        with self.lock:
            self.creates += 1
            token = body.get("clientRequestToken")
            if token and token in self.tokens:  # idempotent: the same job, not a second one
                return 200, "", {"jobArn": self.jobs[self.tokens[token]]["jobArn"]}
            source = body["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
            data = self.objects.get(_split(source))
            if data is None:
                return 400, "ValidationException", {"message": f"The input S3 object {source} does not exist"}
            n = sum(1 for line in data.splitlines() if line.strip())
            if n < self.min_records:
                return 400, "ValidationException", {"message": f"The number of records in the input ({n}) is less "
                                                               f"than the minimum of {self.min_records}"}
            job_id = uuid.uuid4().hex[:12]
            fail = self.fail_jobs > 0
            self.fail_jobs -= int(fail)
            self.jobs[job_id] = {
                "jobArn": f"arn:aws:bedrock:us-east-1:{ACCOUNT}:model-invocation-job/{job_id}",
                "jobName": body["jobName"], "modelId": body["modelId"], "roleArn": body["roleArn"],
                "clientRequestToken": token, "status": "Submitted", "submitTime": time.time(),
                "inputDataConfig": body["inputDataConfig"], "outputDataConfig": body["outputDataConfig"],
                "modelInvocationType": body.get("modelInvocationType") or "InvokeModel",
                "totalRecordCount": n, "processedRecordCount": 0, "fail": fail, "started": time.monotonic()}
            if token:
                self.tokens[token] = job_id
        return 200, "", {"jobArn": self.jobs[job_id]["jobArn"]}

    def get(self, identifier: str) -> tuple[int, str, dict[str, Any]]:
        job_id = identifier.rsplit("/", 1)[-1]
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, "ResourceNotFoundException", {"message": f"Job {identifier} not found"}
            self._advance(job_id, job)
            return 200, "", {k: v for k, v in job.items() if k not in ("fail", "started")}

    def stop(self, identifier: str) -> tuple[int, str, dict[str, Any]]:
        job_id = identifier.rsplit("/", 1)[-1]
        with self.lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, "ResourceNotFoundException", {"message": f"Job {identifier} not found"}
            if job["status"] not in RUNNING:
                return 400, "ValidationException", {"message": f"Job in status {job['status']} cannot be stopped"}
            job["status"] = "Stopping"
        return 200, "", {}

    def _advance(self, job_id: str, job: dict[str, Any]) -> None:
        elapsed = time.monotonic() - job["started"]
        if job["status"] == "Stopping":
            job.update(status="Stopped", message="Job was stopped by the user", endTime=time.time())
        elif job["status"] not in RUNNING:
            return
        elif elapsed >= self.run_delay_s:
            if job["fail"]:
                job.update(status="Failed", message=FAIL_MESSAGE, endTime=time.time())
            else:
                self._run(job_id, job)
        elif elapsed >= self.run_delay_s / 2:
            job.update(status="InProgress", processedRecordCount=job["totalRecordCount"] // 2)

    def _run(self, job_id: str, job: dict[str, Any]) -> None:
        source = job["inputDataConfig"]["s3InputDataConfig"]["s3Uri"]
        model, converse = job["modelId"], job["modelInvocationType"] == "Converse"
        lines, ok, errors, tokens_in, tokens_out = [], 0, 0, 0, 0
        for raw in self.objects[_split(source)].decode().splitlines():
            if not raw.strip():
                continue
            record = json.loads(raw)
            rid, body = record.get("recordId") or uuid.uuid4().hex[:11], record["modelInput"]
            self.processed[(model, rid)] += 1
            if self.error_record(model, rid, body):
                lines.append({"recordId": rid, "modelInput": body,
                              "error": {"errorCode": 400, "errorMessage": ERROR_MESSAGE}})
                errors += 1
                continue
            text = self.reply(model, body)
            n_in, n_out = estimate_tokens(input_text(body)), max(1, estimate_tokens(text))
            tokens_in, tokens_out = tokens_in + n_in, tokens_out + n_out
            lines.append({"recordId": rid, "modelInput": body, "modelOutput": model_output(model, converse, text,
                                                                                           n_in, n_out)})
            ok += 1
        bucket, prefix = _split(job["outputDataConfig"]["s3OutputDataConfig"]["s3Uri"])
        folder = f"{prefix.rstrip('/')}/{job_id}/" if prefix else f"{job_id}/"
        name = _split(source)[1].rsplit("/", 1)[-1]
        self.objects[(bucket, folder + name + ".out")] = "".join(json.dumps(x) + "\n" for x in lines).encode()
        self.objects[(bucket, folder + "manifest.json.out")] = json.dumps({
            "totalRecordCount": len(lines), "processedRecordCount": len(lines), "successRecordCount": ok,
            "errorRecordCount": errors, "inputTokenCount": tokens_in, "outputTokenCount": tokens_out}).encode()
        job.update(status="Completed", processedRecordCount=len(lines), successRecordCount=ok,
                   errorRecordCount=errors, endTime=time.time())


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def input_text(body: dict[str, Any]) -> str:
    """The text of a modelInput's system prompt and messages (any family), as the Converse server counts it."""
    system = body.get("system")
    texts = [system] if isinstance(system, str) else [b.get("text", "") for b in system or [] if isinstance(b, dict)]
    for message in body.get("messages") or []:
        texts += [b.get("text", "") for b in message.get("content") or [] if isinstance(b, dict)]
    return "".join(t for t in texts if isinstance(t, str))


def model_output(model: str, converse: bool, text: str, n_in: int, n_out: int) -> dict[str, Any]:
    """The reply a record gets: Anthropic's Messages reply, or Nova's / Converse's (the same shape)."""
    if re.sub(r"^(us|eu|apac|jp|au|ca|global)\.", "", model).startswith("anthropic.") and not converse:
        return {"id": "msg_" + uuid.uuid4().hex[:20], "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": n_in, "output_tokens": n_out}}
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": "end_turn",
            "usage": {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10
    server_version = "emtui-test-batch/1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    @property
    def owner(self) -> BatchServer:
        return self.server.owner  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch("GET")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        signed = _SIGV4.match(self.headers.get("Authorization") or "")
        if signed is None or not self.headers.get("X-Amz-Date"):
            with self.owner.lock:
                self.owner.unsigned += 1
            self._json(403, "MissingAuthenticationTokenException", {"message": "Missing Authentication Token"})
            return
        if signed["service"] == "s3":
            self._s3(method, body)
        else:
            self._bedrock(method, body)

    # -- Bedrock -----------------------------------------------------------------------------------------

    def _bedrock(self, method: str, body: bytes) -> None:
        path = self.path.split("?")[0]
        owner = self.owner
        if method == "POST" and path == "/model-invocation-job":
            op, answer = "CreateModelInvocationJob", owner.create(json.loads(body or b"{}"))
        elif (m := _JOB.match(path)) is not None:
            identifier = urllib.parse.unquote(m.group(1))
            if method == "POST" and m.group(2):
                op, answer = "StopModelInvocationJob", owner.stop(identifier)
            elif method == "GET" and not m.group(2):
                op, answer = "GetModelInvocationJob", owner.get(identifier)
            else:
                op, answer = "Unknown", (404, "UnknownOperationException", {"message": "Unknown operation"})
        else:
            op, answer = "Unknown", (404, "UnknownOperationException", {"message": "Unknown operation"})
        with owner.lock:
            owner.operations[op] += 1
        self._json(*answer)

    def _json(self, status: int, code: str, doc: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "x-amzn-RequestId": str(uuid.uuid4())}
        if code:
            headers["x-amzn-ErrorType"] = code
        self._send(status, json.dumps(doc).encode(), headers)

    # -- S3 ----------------------------------------------------------------------------------------------

    def _s3(self, method: str, body: bytes) -> None:
        parts = urllib.parse.urlsplit(self.path)
        bucket, _, key = urllib.parse.unquote(parts.path).lstrip("/").partition("/")
        query = urllib.parse.parse_qs(parts.query)
        owner = self.owner
        if method == "PUT" and key:
            with owner.lock:
                owner.operations["PutObject"] += 1
                owner.objects[(bucket, key)] = body
            self._send(200, b"", {"ETag": f'"{uuid.uuid4().hex}"'})
        elif method == "GET" and key:
            with owner.lock:
                owner.operations["GetObject"] += 1
                data = owner.objects.get((bucket, key))
            if data is None:
                self._xml(404, f"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message>"
                               f"<Key>{escape(key)}</Key></Error>")
            else:
                self._send(200, data, {"Content-Type": "application/octet-stream", "ETag": '"e"'})
        elif method == "GET" and query.get("list-type") == ["2"]:
            prefix = (query.get("prefix") or [""])[0]
            encode = query.get("encoding-type") == ["url"]
            with owner.lock:
                owner.operations["ListObjectsV2"] += 1
                found = sorted((k, len(v)) for (b, k), v in owner.objects.items() if b == bucket and
                               k.startswith(prefix))
            contents = "".join(f"<Contents><Key>{escape(urllib.parse.quote(k) if encode else k)}</Key>"
                               f"<LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>\"e\"</ETag>"
                               f"<Size>{n}</Size><StorageClass>STANDARD</StorageClass></Contents>" for k, n in found)
            self._xml(200, f'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>{escape(bucket)}'
                           f"</Name><Prefix>{escape(prefix)}</Prefix><KeyCount>{len(found)}</KeyCount><MaxKeys>1000"
                           f"</MaxKeys>{'<EncodingType>url</EncodingType>' if encode else ''}<IsTruncated>false"
                           f"</IsTruncated>{contents}</ListBucketResult>")
        else:
            self._xml(405, "<Error><Code>MethodNotAllowed</Code><Message>not served</Message></Error>")

    def _xml(self, status: int, text: str) -> None:
        self._send(status, ('<?xml version="1.0" encoding="UTF-8"?>' + text).encode(),
                   {"Content-Type": "application/xml"})

    def _send(self, status: int, raw: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(raw)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)
