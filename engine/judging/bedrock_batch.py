"""Judging through Bedrock batch inference (issue 14): job kind ``judge-batch``.

For large runs: each judge's pending calls go to AWS as one batch inference job (CreateModelInvocationJob;
JSONL in and out of S3; at least :data:`MIN_RECORDS` records a job, at most ``max_records``, more jobs when
there are more), run by AWS's own engine, not bound by the per-minute quotas, at the batch price
(engine/judging/prices.py: half the on-demand price unless the table says otherwise). The records and replies
are :mod:`engine.judging.batch_records`'s; each reply is scored by the panel's own parser and written as the
same rows the on-demand panel writes (:func:`engine.judging.panel.reply_results`), keyed the same way.

Kill-safe and never paid twice:

1. The batch's row — its name, S3 input and output, and every key it covers — is written *before* anything is
   sent (db/judge_batches.py). From then on its keys are not pending: no other run sends them.
2. The input JSONL is put at ``<s3>/<name>/input/records.jsonl`` (the same bytes if put again), then the job is
   created with ``clientRequestToken`` = its name: a run killed before the ARN was stored creates it again
   with the same token, which AWS answers with the same job instead of a second one. The ARN is stored.
3. The job is polled (GetModelInvocationJob) every ``poll_s`` — a run killed meanwhile polls the same ARN
   again — with its status and processed count in the batch's row and the job's progress.
4. Once it ends, its output ``<s3>/<name>/output/<job id>/records.jsonl.out`` is read: a ``modelOutput`` is
   scored; an ``error`` record is a failed judgment with its raw text; each is logged in ``judge_calls`` at
   the batch price. Keys without an output line (a job that Failed, was Stopped or Expired) are pending
   again; such a job is recorded with AWS's message and fails the emtui job in one line (but a job emtui itself
asked to stop).

Cancelling the emtui job stops the AWS jobs it follows (StopModelInvocationJob): they stay open, and the next
run polls them until AWS says Stopped and reads what they did (it was paid); their other keys are pending then.

boto3 clients ``bedrock`` (the control plane) and ``s3`` are made on first use; credentials, region and
endpoints come only from the standard AWS chain (``AWS_ENDPOINT_URL_BEDROCK``, ``AWS_ENDPOINT_URL_S3``
included). The IAM role (``--role-arn``) is the *service role* Bedrock assumes: it needs s3:GetObject and
s3:ListBucket on the input, s3:PutObject on the output, and a trust policy for bedrock.amazonaws.com.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from engine.common.text import one_line
from engine.judging.panel import PanelSpec
from engine.runs.progress import JobCancelled, Progress

__all__ = ["MIN_RECORDS", "BatchError", "BatchSettings", "judge_batch", "judge_batch_job"]

MIN_RECORDS = 100          # the fewest records a batch inference job takes (issue 14; Service Quotas: "Minimum
                           # number of records per batch inference job")
MAX_RECORDS = 50_000       # the most we put in one job (more go in further jobs); AWS's per-job quota differs by
                           # model and account ("Records per batch inference job"): lower max_records to yours
TERMINAL = frozenset({"Completed", "PartiallyCompleted", "Failed", "Stopped", "Expired"})
UNFINISHED = frozenset({"Failed", "Stopped", "Expired"})   # ended before every record was done
INPUT_NAME = "records.jsonl"
POLL_ERRORS = 5            # consecutive failed polls of one job before the run gives up (a re-run polls again)
# botocore's bedrock service model: S3Uri and RoleArn
_S3_URI = re.compile(r"s3://([a-z0-9][-.a-z0-9]{1,61}[a-z0-9])((?:/[-!_*'().a-zA-Z0-9]+)*)/?")
_ROLE_ARN = re.compile(r"arn:aws(-[^:]+)?:iam::([0-9]{12})?:role/.+")


class BatchError(ValueError):
    """A batch run that cannot go on, in one line."""


@dataclass(frozen=True)
class BatchSettings:
    """Where a batch run's files go (``s3_uri``: s3://bucket[/prefix]), the role Bedrock runs it as, how often
    it is polled, and the records a job takes."""

    s3_uri: str
    role_arn: str
    poll_s: float = 60.0
    min_records: int = MIN_RECORDS
    max_records: int = MAX_RECORDS

    def check(self) -> BatchSettings:
        """These settings, checked (:class:`BatchError`); the S3 URI without a trailing /."""
        uri = str(self.s3_uri or "")
        if not _S3_URI.fullmatch(uri):
            raise BatchError(f"--s3 {one_line(uri, 200)!r} is not an S3 location AWS takes: s3://BUCKET or "
                             "s3://BUCKET/PREFIX (a bucket of lowercase letters, digits, '.', '-'; a prefix of "
                             "letters, digits and -!_*'().)")
        if not self.role_arn:
            raise BatchError("batch inference needs --role-arn: the ARN of the IAM service role Bedrock runs the "
                             "job as (arn:aws:iam::ACCOUNT:role/NAME; it reads and writes the --s3 location)")
        if not _ROLE_ARN.fullmatch(self.role_arn):
            raise BatchError(f"--role-arn {one_line(self.role_arn, 200)!r} is not an IAM role ARN "
                             "(arn:aws:iam::ACCOUNT:role/NAME)")
        if not self.poll_s > 0 or not 1 <= self.min_records <= self.max_records:
            raise BatchError("poll_s must be positive and 1 <= min_records <= max_records")
        return BatchSettings(uri.rstrip("/"), self.role_arn, float(self.poll_s), int(self.min_records),
                             int(self.max_records))

    def as_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> BatchSettings:
        return cls(**{k: v for k, v in payload.items() if k in cls.__dataclass_fields__}).check()


def split_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of s3://bucket/key."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


# -- AWS -------------------------------------------------------------------------------------------------------


class BatchAWS:
    """The ``bedrock`` and ``s3`` clients of one region, made on first use from the standard AWS chain; each
    method one request (botocore retries the control plane's: creating is idempotent by its token)."""

    def __init__(self, region: str | None) -> None:
        self.requested_region = region or None
        self._clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            import os

            import boto3
            from botocore.config import Config

            session = boto3.session.Session(region_name=self.requested_region)
            region = session.region_name or os.environ.get("AWS_REGION") or None
            if region is None:
                raise BatchError("no AWS region: set the judge's region or AWS_DEFAULT_REGION (e.g. us-east-1)")
            self._clients[service] = session.client(service, region_name=region, config=Config(
                retries={"mode": "standard", "max_attempts": 4}, connect_timeout=10, read_timeout=120))
        return self._clients[service]

    def where(self) -> str:
        """The region, and the Bedrock endpoint when it is not AWS's (a proxy, the tests' server)."""
        client = self._clients.get("bedrock")
        if client is None:
            return self.requested_region or "default region"
        endpoint = str(client.meta.endpoint_url)
        host = re.sub(r"^https?://", "", endpoint).split("/")[0]
        return client.meta.region_name + ("" if host.endswith(".amazonaws.com") else f", endpoint {endpoint}")

    def call(self, service: str, operation: str, **kwargs: Any) -> Any:
        """One request; a :class:`BatchError` naming the operation, the region and the service's words."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.client(service), operation)(**kwargs)
        except ClientError as exc:
            error = (exc.response or {}).get("Error") or {}
            status = ((exc.response or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
            code = str(error.get("Code") or "an error")
            line = (f"{service} {operation} ({self.where()}): {code}: "
                    f"{one_line(str(error.get('Message') or '(no message)'), 300)}")
            if isinstance(status, int) and 400 <= status < 500 and status != 429 and code != "ThrottlingException":
                raise ServiceRefused(line) from None
            raise BatchError(line) from None  # throttled, or the service's own failure: it may have been done
        except BotoCoreError as exc:
            raise BatchError(f"{service} {operation} ({self.where()}): {one_line(str(exc), 300)}") from None

    def put(self, uri: str, data: bytes) -> None:
        bucket, key = split_s3_uri(uri)
        self.call("s3", "put_object", Bucket=bucket, Key=key, Body=data)

    def lines(self, uri: str) -> Iterator[str]:
        """The object's lines, read as they come (an output file of 50,000 replies is not held whole)."""
        bucket, key = split_s3_uri(uri)
        body = self.call("s3", "get_object", Bucket=bucket, Key=key)["Body"]
        for line in body.iter_lines():
            yield line.decode("utf-8", "replace")

    def keys(self, uri: str) -> list[str]:
        """The URIs of every object under the prefix ``uri``."""
        bucket, prefix = split_s3_uri(uri)
        out: list[str] = []
        token: str | None = None
        while True:
            page = self.call("s3", "list_objects_v2", Bucket=bucket, Prefix=prefix,
                             **({"ContinuationToken": token} if token else {}))
            out += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents") or []]
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return out


class ServiceRefused(BatchError):
    """The service refused the request (a 4xx other than throttling): it did not do what was asked, and asking
    again the same way would fail the same way."""


# -- the run ---------------------------------------------------------------------------------------------------


@dataclass
class Judge:
    id: int
    name: str
    model: str
    params: dict[str, Any]


class BatchRun:
    """One ``judge-batch`` job: resume the open batches of its judges, submit what is pending, follow every
    batch to its end and read its output."""

    def __init__(self, spec: PanelSpec, settings: BatchSettings, *, store: Any, progress: Progress,
                 job_id: int | None) -> None:
        from engine.judging.rubric_prompts import call_units, stored_rubric

        self.spec, self.settings, self.store, self.progress, self.job_id = spec, settings, store, progress, job_id
        row = store.get_rubric(spec.rubric_id)
        if row is None:
            raise BatchError(f"no rubric {spec.rubric_id} in the database")
        self.rubric = stored_rubric(row)
        self.units = call_units(self.rubric)
        self.judges: dict[int, Judge] = {}
        for jid in spec.judges:
            found = store.get_judge(jid)
            if found is None:
                raise BatchError(f"no judge {jid} in the database")
            if found["provider"] != "bedrock":
                raise BatchError(f"judge {found['name']!r} is {found['provider']}: batch inference is Bedrock's")
            self.judges[jid] = Judge(jid, str(found["name"]), str(found["model"]),
                                     json.loads(found.get("params") or "{}"))
        self._aws: dict[str | None, BatchAWS] = {}
        self.seen: dict[int, int] = {}           # batch id -> processed records already reported
        self.report: dict[int, dict[str, Any]] = {}
        self.followed: list[dict[str, Any]] = []

    def aws(self, judge: Judge) -> BatchAWS:
        region = judge.params.get("region") or None
        if region not in self._aws:
            self._aws[region] = BatchAWS(region)
        return self._aws[region]

    def metric_of(self, unit: str | None) -> str:
        """The metric a call's result is looked up by (a JSON rubric's one call: its first metric)."""
        return unit or self.rubric.metrics[0].name

    # -- planning and submitting ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        batches: list[dict[str, Any]] = []
        skipped: dict[str, str] = {}
        for judge in self.judges.values():
            batches += self.store.open_judge_batches(self.spec.study_id, judge.id, self.spec.rubric_id)
            pending = [(unit, row) for unit in self.units
                       for row in self.store.pending_judge_items(self.spec.study_id, judge.id, self.spec.rubric_id,
                                                                 self.metric_of(unit),
                                                                 generation_ids=self.spec.generation_ids)]
            if 0 < len(pending) < self.settings.min_records:
                skipped[judge.name] = (f"{len(pending)} calls left: fewer than the {self.settings.min_records} a "
                                       "Bedrock batch job takes; judge them on demand (emtui judge without --batch)")
                self.progress.note(f"{judge.name}: {skipped[judge.name]}")
                continue
            for chunk in chunks(pending, self.settings.max_records):
                batches.append(self.prepare(judge, chunk))
        self.progress.set_total(sum(int(b["records"]) for b in batches))
        for batch in batches:
            if batch["arn"] is None:
                batch.update(self.submit(batch))
        self.follow(batches)
        failed = [b for b in batches
                  if b["status"] in UNFINISHED and not (b["status"] == "Stopped" and b["stop_asked"])]
        result = {"batches": [self.report[int(b["id"])] for b in batches], "skipped": skipped}
        if failed:
            b = failed[0]
            raise BatchError(f"judge {self.judges[int(b['judge_id'])].name}: Bedrock batch job {b['arn']} "
                             f"{b['status']}: {one_line(b['message'] or '(no message)', 300)} "
                             f"({self.report[int(b['id'])]['judged']} of {b['records']} records judged from its "
                             "output; the rest are pending again)")
        return result

    def prepare(self, judge: Judge, chunk: list[tuple[str | None, dict[str, Any]]]) -> dict[str, Any]:
        """The batch's row and keys, stored before anything is sent."""
        from engine.judging.batch_records import invocation_type, record_id

        slug = re.sub(r"[^a-zA-Z0-9]+", "-", judge.name).strip("-")[:24] or "judge"
        name = f"emtui-{slug}-{uuid.uuid4().hex[:16]}"
        base = f"{self.settings.s3_uri}/{name}"
        records = [(record_id(int(row["generation_id"]), judge.id, self.spec.rubric_id, self.units.index(unit)),
                    int(row["generation_id"]), self.metric_of(unit)) for unit, row in chunk]
        batch_id = self.store.add_judge_batch(
            study_id=self.spec.study_id, judge_id=judge.id, rubric_id=self.spec.rubric_id, job_id=self.job_id,
            name=name, model=judge.model, invocation=invocation_type(judge.model),
            region=judge.params.get("region") or None, role_arn=self.settings.role_arn,
            input_uri=f"{base}/input/{INPUT_NAME}", output_uri=f"{base}/output/", records=records)
        return dict(self.store.get_judge_batch(batch_id) or {})

    def calls_of(self, batch: Mapping[str, Any]) -> dict[str, tuple[int, Any]]:
        """record id -> (generation id, the RubricCall it stands for), from the batch's stored keys."""
        from engine.judging.batch_records import parse_record_id
        from engine.judging.rubric_prompts import unit_call

        judge = self.judges[int(batch["judge_id"])]
        keys = self.store.judge_batch_records(int(batch["id"]))
        rows = {int(r["generation_id"]): r for r in self.store.judge_items([k["generation_id"] for k in keys])}
        out: dict[str, tuple[int, Any]] = {}
        for key in keys:
            parsed = parse_record_id(key["record_id"])
            row = rows.get(int(key["generation_id"]))
            if parsed is None or row is None:
                continue  # an answer deleted since: nothing to judge
            out[str(key["record_id"])] = (int(key["generation_id"]),
                                          unit_call(self.rubric, self.units[parsed[3]], row, judge.params))
        return out

    def submit(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Put the input (again: the same bytes) and create the job (again: the same token, the same job)."""
        from engine.judging.batch_records import model_input

        judge = self.judges[int(batch["judge_id"])]
        aws = self.aws(judge)
        lines = [json.dumps({"recordId": rid, "modelInput": model_input(judge.model, rc.call)}, ensure_ascii=False)
                 for rid, (_gid, rc) in self.calls_of(batch).items()]
        aws.put(str(batch["input_uri"]), ("\n".join(lines) + "\n").encode("utf-8"))
        # refused (4xx): not created, its keys pending again; any other error leaves the row as it is, and the
        # next run asks again with the same token (AWS makes the job at most once)
        try:
            created = aws.call("bedrock", "create_model_invocation_job", jobName=batch["name"],
                               clientRequestToken=batch["name"], roleArn=batch["role_arn"], modelId=batch["model"],
                               modelInvocationType=batch["invocation"],
                               inputDataConfig={"s3InputDataConfig": {"s3Uri": batch["input_uri"],
                                                                      "s3InputFormat": "JSONL"}},
                               outputDataConfig={"s3OutputDataConfig": {"s3Uri": batch["output_uri"]}})
        except ServiceRefused as exc:
            self.store.update_judge_batch(int(batch["id"]), status="Refused", message=str(exc), ingested=1)
            raise BatchError(f"judge {judge.name}: {exc}") from None
        fields = {"arn": str(created["jobArn"]), "status": "Submitted", "job_id": self.job_id}
        self.store.update_judge_batch(int(batch["id"]), **fields)
        self.progress.note(f"{judge.name}: {len(lines):,} records submitted as {fields['arn']}")
        return fields

    # -- following ----------------------------------------------------------------------------------------

    def follow(self, batches: list[dict[str, Any]]) -> None:
        self.followed = batches
        errors: dict[int, int] = {}
        while True:
            for batch in batches:
                if batch["ingested"]:
                    self.report.setdefault(int(batch["id"]), self.summary(batch))
                    continue
                try:
                    self.poll(batch)
                except BatchError as exc:
                    errors[int(batch["id"])] = errors.get(int(batch["id"]), 0) + 1
                    self.progress.note(f"polling {batch['arn']}: {exc}")
                    if errors[int(batch["id"])] >= POLL_ERRORS:
                        raise
                    continue
                errors.pop(int(batch["id"]), None)
                if batch["status"] in TERMINAL:
                    self.ingest(batch)
            self.progress.metrics({"batches": {str(b["id"]): self.summary(b) for b in batches}})
            if all(b["ingested"] for b in batches):
                return
            self.wait()

    def wait(self) -> None:
        """``poll_s``, stopping the AWS jobs when the emtui job is cancelled."""
        deadline = time.monotonic() + self.settings.poll_s
        while time.monotonic() < deadline:
            if self.progress.cancelled():
                self.stop_all()
                raise JobCancelled("cancelled: the Bedrock batch jobs were asked to stop")
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    def stop_all(self) -> None:
        for batch in self.followed:
            if batch["arn"] and not batch["ingested"] and batch["status"] not in TERMINAL:
                try:
                    self.aws(self.judges[int(batch["judge_id"])]).call(
                        "bedrock", "stop_model_invocation_job", jobIdentifier=batch["arn"])
                    self.store.update_judge_batch(int(batch["id"]), status="Stopping", stop_asked=1)
                except BatchError as exc:
                    self.progress.note(f"stopping {batch['arn']}: {exc}")

    def poll(self, batch: dict[str, Any]) -> None:
        judge = self.judges[int(batch["judge_id"])]
        got = self.aws(judge).call("bedrock", "get_model_invocation_job", jobIdentifier=batch["arn"])
        status = str(got.get("status") or "Submitted")
        processed = int(got.get("processedRecordCount") or 0)
        message = got.get("message")
        if status != batch["status"] or processed != batch["processed"]:
            self.progress.note(f"{judge.name}: batch {batch['arn']}: {status}, {processed:,} of "
                               f"{int(batch['records']):,} records")
        fields = {"status": status, "processed": processed, "message": one_line(message, 1000) if message else None}
        self.store.update_judge_batch(int(batch["id"]), **fields)
        batch.update(fields)
        bid = int(batch["id"])
        self.progress.advance(max(0, processed - self.seen.get(bid, 0)))
        self.seen[bid] = max(self.seen.get(bid, 0), processed)

    def ingest(self, batch: dict[str, Any]) -> None:
        """Read the ended job's output into results and call records; then the batch is closed."""
        from engine.judging.batch_records import reply_from_output
        from engine.judging.panel import failure_results, reply_results
        from engine.judging.prices import batch_cost_usd

        judge = self.judges[int(batch["judge_id"])]
        aws = self.aws(judge)
        calls = self.calls_of(batch)
        job_folder = f"{str(batch['output_uri']).rstrip('/')}/{str(batch['arn']).rsplit('/', 1)[-1]}/"
        results: list[dict[str, Any]] = []
        logged: list[dict[str, Any]] = []
        seen: set[str] = set()
        judged = failed = unreadable = 0
        cost = 0.0
        common: dict[str, Any] = {"judge_id": judge.id, "rubric_id": self.spec.rubric_id,
                                  "study_hash": self.spec.study_hash, "job_id": self.job_id}
        for uri in aws.keys(job_folder):
            if not uri.endswith(".jsonl.out"):
                continue  # manifest.json.out: AWS's summary
            for line in aws.lines(uri):
                record: Any
                try:
                    record = json.loads(line) if line.strip() else None
                except ValueError:
                    record = None
                rid = record.get("recordId") if isinstance(record, dict) else None
                if not isinstance(rid, str) or rid not in calls or rid in seen:
                    unreadable += bool(line.strip())
                    continue
                seen.add(rid)
                gid, rc = calls[rid]
                call_row = {**common, "generation_id": gid,
                            "metric": "*" if len(rc.metrics) > 1 else rc.metrics[0].name,
                            "attempt": 1, "sent": 1, "latency_ms": None, "at": time.time()}
                if "modelOutput" in record:
                    try:
                        reply = reply_from_output(judge.model, record["modelOutput"])
                    except ValueError as exc:
                        raw = json.dumps(record["modelOutput"], ensure_ascii=False)
                        results += failure_results(rc, f"batch record: {exc}", generation_id=gid, raw=raw, **common)
                        logged.append({**call_row, "outcome": "failed", "error": str(exc)})
                        failed += 1
                        continue
                    rows = reply_results(rc, reply, generation_id=gid, **common)
                    results += rows
                    price = batch_cost_usd("bedrock", judge.model, reply.input_tokens or 0, reply.output_tokens or 0)
                    cost += price or 0.0
                    logged.append({**call_row, "outcome": "ok", "input_tokens": reply.input_tokens,
                                   "output_tokens": reply.output_tokens, "cost_usd": price})
                    if any(r["error"] is not None for r in rows):
                        failed += 1
                    else:
                        judged += 1
                else:
                    error = record.get("error")
                    code = error.get("errorCode") if isinstance(error, dict) else None
                    words = error.get("errorMessage") if isinstance(error, dict) else error
                    line_error = f"batch record error {code}: {one_line(str(words), 300)}"
                    results += failure_results(rc, line_error, generation_id=gid,
                                               raw=json.dumps(error, ensure_ascii=False), **common)
                    logged.append({**call_row, "outcome": "failed", "error": line_error,
                                   "status": code if isinstance(code, int) else None})
                    failed += 1
        with self.store.transaction():  # all or nothing: a run killed here reads the output again, logs it once
            self.store.log_judge_calls(logged)
            self.store.record_judge_results(results)
            self.store.update_judge_batch(int(batch["id"]), ingested=1)
        batch["ingested"] = 1
        self.report[int(batch["id"])] = {**self.summary(batch), "judged": judged, "failed": failed,
                                         "missing": len(calls) - len(seen), "unreadable_lines": unreadable,
                                         "cost_usd": round(cost, 6)}
        self.progress.note(f"{judge.name}: batch {batch['arn']} {batch['status']}: {judged:,} judged, {failed:,} "
                           f"failed, {len(calls) - len(seen):,} with no output")

    def summary(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        return {"judge": self.judges[int(batch["judge_id"])].name, "arn": batch["arn"], "status": batch["status"],
                "records": int(batch["records"]), "processed": int(batch["processed"] or 0),
                "judged": 0, "message": batch["message"]}


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in as few even chunks of at most ``size`` as there can be."""
    if not items:
        return []
    n = -(-len(items) // size)
    step = -(-len(items) // n)
    return [items[i:i + step] for i in range(0, len(items), step)]


def judge_batch(spec: PanelSpec, settings: BatchSettings, *, store: Any, progress: Progress | None = None,
                job_id: int | None = None) -> dict[str, Any]:
    """Judge every pending answer of ``spec`` through Bedrock batch inference (see the module's doc)."""
    return BatchRun(spec, settings.check(), store=store, progress=progress or Progress(), job_id=job_id).run()


def judge_batch_job(ctx: Any) -> dict[str, Any]:
    """The handler of job kind ``judge-batch``: its payload is a ``judge`` job's plus ``batch`` settings."""
    payload = ctx.payload
    return judge_batch(PanelSpec.from_payload(payload), BatchSettings.from_payload(payload["batch"]),
                       store=ctx.store, progress=ctx.progress, job_id=ctx.job_id)


@dataclass(frozen=True)
class BatchEstimate:
    """What a judge's batch would send: records, input tokens (about 4 characters a token), output tokens at
    most (each call's max_tokens), and the cost at the batch price of those (None: the model has no price)."""

    records: int
    input_tokens: int
    max_output_tokens: int
    usd: float | None


def estimate_batches(store: Any, spec: PanelSpec) -> dict[int, BatchEstimate]:
    """Per judge of ``spec``, what its batch would be now (reads every pending answer's text: a dry run's)."""
    from engine.judging.prices import batch_cost_usd
    from engine.judging.rubric_prompts import call_units, stored_rubric, unit_call

    row = store.get_rubric(spec.rubric_id)
    rubric = stored_rubric(row)
    out: dict[int, BatchEstimate] = {}
    for jid in spec.judges:
        judge = store.get_judge(jid) or {}
        params = json.loads(judge.get("params") or "{}")
        n = tokens_in = tokens_out = 0
        for unit in call_units(rubric):
            for item in store.pending_judge_items(spec.study_id, jid, spec.rubric_id, unit or rubric.metrics[0].name,
                                                  generation_ids=spec.generation_ids):
                call = unit_call(rubric, unit, item, params).call
                n += 1
                tokens_in += -(-len(call.prompt + (call.system or "")) // 4)
                tokens_out += call.max_tokens
        out[jid] = BatchEstimate(n, tokens_in, tokens_out,
                                 batch_cost_usd("bedrock", str(judge.get("model")), tokens_in, tokens_out))
    return out
