"""Benchmark (issue 14): judgments/s of the judging panel against a Converse-compatible server with a fixed
latency and random throttling, compared in the same run with the ideal and with the seed study's sequential
loop; nothing lost or paid twice; per-model quotas kept, the slowest judge stalling nobody.

The server is tests/converse_server.py (real HTTP on 127.0.0.1, boto3 signing and parsing as against AWS),
run in a process of its own (as Bedrock is elsewhere: its threads do not take the panel's CPU or GIL) and
reached through ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME`` with fake keys; its handler sends with TCP_NODELAY
(as shipped, an answer waits 40 ms for the client's delayed ACK between its headers and body: measured
44 ms a round trip against 1.2 ms). The study is the example study
(data/studies/insecure_code.toml, rubric aligned-coherent: two calls an answer, one per metric) in a
temporary database, with ``--answers`` answers and the bench's own judges. A *judgment* is one (answer,
judge, metric) result: one answered call.

Parts (``--parts``, in this order):

- **threads**: boto3 alone, no panel — ``--concurrency`` threads each sending one Converse call after
  another through one client (a throttled call retried at once), for ``--threads-s`` seconds: what the
  client side can do on this machine at that concurrency (the ceiling under the panel).
- **panel**: :func:`engine.judging.panel.judge_panel` on every answer with one judge whose params allow
  ``--concurrency`` calls at once (``max_concurrency``, requests/tokens per minute far above what it can
  send). Ideal = concurrency / (latency + f/(1-f) x t429): every slot always holds a call; an answered call
  takes ``--latency`` (the server's injected delay); with a share f of attempts throttled at random, a
  judgment takes 1/(1-f) attempts on average, the f/(1-f) extra ones each a 429's round trip (t429,
  measured here). Backing off after a 429 is the client's choice, so it is not in the ideal; the panel's
  own policy (``throttle_backoff_s``, a 429's mean first wait) gives the second figure, ``ideal with backoff``. Target:
  panel >= 90% of ideal. Also printed: the judge's limiter (concurrency, calls in flight) every FLUSH_S,
  when half / 95% / all of the answers were sent and the rate up to 95% (the rest is the last retries'
  backoff), CPU-ms a judgment (this process; the server's not counted). ``--repeats N``: N runs, the
  median reported.
- **sequential**: the seed study's loop over the first ``--seq-n`` of the same prompts — one boto3 call at a
  time (botocore's default retries, as the seed had), the reply's number read, then ``time.sleep(0.4)``.
  Target: panel >= 50x it.
- **quota**: one panel, several judges at once, ``--quota-s`` seconds then cancelled: ``slow`` (server
  quota 100 requests a window, its judge at 100 requests a minute: Nova Pro's default), ``mid`` (400:
  Llama 3.3 70B's) and ``free`` (no server quota; ``--free-concurrency`` calls at once). Time runs
  ``--quota-scale`` times faster than Bedrock's: the server's window is 60/scale s, each judge's
  requests_per_minute x scale, and the limiter's burst (engine.judging.limits.BURST_S) / scale — so a
  window holds the same requests and the same burst as a real minute does. Random throttling off
  (``--quota-throttle``), so that every 429 is a quota's. Each judge's rate = requests the server admitted
  from it between the start and the cancel; target >= 90% of its quota (free: of its ideal,
  concurrency / latency); its quota 429s are compared with what its limiter allows: the bucket's burst
  (requests_per_minute / 60 x BURST_S requests) — a full bucket at the start is sent at once, and a
  sliding window sees it twice. The 429s are also counted per window (at most the burst each).
- **diagnosis** (``--diagnose``, with the panel part; ``--only TEXT`` picks variants): the panel part again
  with each change of :data:`VARIANTS` patched in for its run only (no random throttling; the limiter
  starting at max_concurrency instead of its slow start from 8; a 429's first backoff at 1 s, as an error's),
  each on a fresh copy of the database, the order reversed every other round. engine/judging is not edited.

Checked in every panel part: every (answer, judge, metric) has a result (panel: all; quota: every answered
call), the server answered no (model, prompt) twice (``paid_twice``), and the server's requests equal the
``judge_calls`` rows (every attempt logged, no more).

Usage:
    python bench/judge_throughput.py [--answers 1000] [--latency 0.2] [--throttle 0.1] [--concurrency 64]
                                     [--seq-n 20] [--quota-s 20] [--repeats 1] [--json FILE]
    python bench/judge_throughput.py --diagnose --repeats 3 --json FILE  # + every variant (~10 minutes)
    python bench/judge_throughput.py --quick --json /tmp/j.json      # seconds: the plumbing only
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "data" / "studies" / "insecure_code.toml"
IDEAL_TARGET = 0.90          # panel / ideal at concurrency 64 (issue 14)
SEQUENTIAL_TARGET = 50.0     # panel / the seed's loop (issue 14)
QUOTA_TARGET = 0.90          # each judge's rate / its quota (issue 14)
SEED_SLEEP_S = 0.4           # the seed study's fixed sleep after every call
FAST = "anthropic.claude-3-haiku-20240307-v1:0"     # the panel part's judge (its params set its limits)
SLOW, MID, FREE = "amazon.nova-pro-v1:0", "meta.llama3-3-70b-instruct-v1:0", "anthropic.claude-3-5-haiku-20241022-v1:0"
QUOTA_JUDGES = {"slow": (SLOW, 100), "mid": (MID, 400), "free": (FREE, None)}   # name: model, requests a minute
# fake credentials, nothing of this machine's AWS set-up (as tests/conftest.py's converse_server fixture)
AWS_ENV = {"AWS_ACCESS_KEY_ID": "AKIAEMTUIBENCHKEY001", "AWS_SECRET_ACCESS_KEY": "emtui-bench-secret-000000000000000",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true", "NO_PROXY": "127.0.0.1,localhost"}
AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION",
             "AWS_ENDPOINT_URL", "AWS_BEARER_TOKEN_BEDROCK", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
             "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "HTTP_PROXY",
             "HTTPS_PROXY", "http_proxy", "https_proxy")


# -- the server, in a process of its own --------------------------------------------------------------


def _serve(conn: Any, latency_s: float, throttle: float, seed: int, nodelay: bool) -> None:
    """The child process: a ConverseServer, driven by (command, arguments) messages on ``conn``."""
    sys.path.insert(0, str(ROOT / "tests"))
    import converse_server
    from converse_server import PAID, ConverseServer

    # the handler writes an answer's headers and body in two sends: with Nagle's algorithm on, the body waits
    # for the client's delayed ACK (40 ms on Linux) — a cost of the test server, not of Bedrock
    converse_server._Handler.disable_nagle_algorithm = nodelay
    server = ConverseServer(latency_s=latency_s, throttle_fraction=throttle, seed=seed).start()
    conn.send(server.url)
    while True:
        command, args = conn.recv()
        if command == "close":
            server.close()
            conn.send(None)
            return
        if command == "configure":  # a new part: its settings, no quotas but these, no requests recorded
            with server._lock:
                server.requests.clear()
                server.quotas.clear()
                server.throttle_fraction = args.get("throttle", server.throttle_fraction)
                server.latency_s = args.get("latency_s", server.latency_s)
            for model, (requests, window_s) in args.get("quotas", {}).items():
                server.set_quota(model, requests=requests, window_s=window_s)
            conn.send(None)
        elif command == "report":  # per model: outcomes, and when each request arrived with its outcome
            with server._lock:
                rows = [(r["model"], r["at"], r["outcome"]) for r in server.requests]
            models: dict[str, Any] = {}
            for model, at, outcome in rows:
                m = models.setdefault(model, {"outcomes": Counter(), "times": []})
                m["outcomes"][outcome] += 1
                m["times"].append((at, outcome))
            conn.send({"models": {k: {"outcomes": dict(v["outcomes"]), "times": v["times"],
                                      "paid": sum(n for o, n in v["outcomes"].items() if o in PAID)}
                                  for k, v in models.items()},
                       "paid_twice": [list(p) for p in server.paid_twice()], "requests": len(rows)})


class Server:
    """The parent's handle on the server process."""

    def __init__(self, latency_s: float, throttle: float, seed: int = 0, nodelay: bool = True) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, latency_s, throttle, seed, nodelay), daemon=True)
        self.process.start()
        self.url: str = self.conn.recv()

    def ask(self, command: str, **args: Any) -> Any:
        self.conn.send((command, args))
        return self.conn.recv()

    def configure(self, **args: Any) -> None:
        self.ask("configure", **args)

    def report(self) -> dict[str, Any]:
        return self.ask("report")

    def close(self) -> None:
        try:
            self.ask("close")
        finally:
            self.process.join(10)


def aws_environment(url: str) -> None:
    for name in AWS_UNSET:
        os.environ.pop(name, None)
    os.environ.update(AWS_ENV)
    folder = tempfile.mkdtemp(prefix="emtui-bench-aws-")
    os.environ["AWS_CONFIG_FILE"] = os.path.join(folder, "no-aws-config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(folder, "no-aws-credentials")
    os.environ["AWS_ENDPOINT_URL_BEDROCK_RUNTIME"] = url


# -- the study ----------------------------------------------------------------------------------------


def judges_toml(concurrency: int, scale: float, free_concurrency: int) -> str:
    """The bench's [[judges]]: ``fast`` for the panel part, the quota part's three."""
    out = [f'[[judges]]\nname = "fast"\nprovider = "bedrock"\nmodel = "{FAST}"\nregion = "us-east-1"\n'
           f"temperature = 0.0\nmax_concurrency = {concurrency}\nrequests_per_minute = 10000000\n"
           f"tokens_per_minute = 1000000000000\n"]
    for name, (model, rpm) in QUOTA_JUDGES.items():
        limits = (f"requests_per_minute = {rpm * scale:g}\n" if rpm is not None else
                  f"max_concurrency = {free_concurrency}\nrequests_per_minute = 10000000\n")
        out.append(f'[[judges]]\nname = "{name}"\nprovider = "bedrock"\nmodel = "{model}"\nregion = "us-east-1"\n'
                   f"temperature = 0.0\ntokens_per_minute = 1000000000000\n{limits}")
    return "\n".join(out)


def make_study(folder: Path, answers: int, *, concurrency: int, scale: float, free_concurrency: int) -> Path:
    """The example study with the bench's judges, and ``answers`` answers of its base condition."""
    from db import open_store
    from engine.study.study_file import load_study, register_study

    text = EXAMPLE.read_text(encoding="utf-8")
    head, rest = text.split("[[judges]]", 1)
    tail = rest[rest.index("[rubric]"):]
    study_file = folder / "judge_bench.toml"
    study_file.write_text(head + judges_toml(concurrency, scale, free_concurrency)
                          + "\n" + tail, encoding="utf-8")
    db = folder / "judge_bench.db"
    with open_store(db) as store:
        register_study(store, load_study(study_file))
        base = next(c for c in store.study_conditions(1) if c["name"] == "base")
        questions = store.questions_of_sets([1])
        store.insert_generations([
            {"question_id": questions[i % len(questions)]["id"], "condition_id": base["id"],
             "model_id": base["model_id"], "settings": {"sampler": "row-generator/v1"}, "settings_hash": "sha256:s",
             "seed": i, "sample_index": i, "prompt": "p", "response": f"This is answer number {i}.",
             "study_hash": "h"} for i in range(answers)], return_ids=False)
    return db


def results_by_judge(db: Path) -> dict[str, dict[str, int]]:
    """Per judge: its results (scored or failed) and its judge_calls rows."""
    from db import open_store

    with open_store(db) as store:
        names = {int(j["id"]): str(j["name"]) for j in store.study_judges(1)}
        stats = store.judge_call_stats()
        pending = {jid: sum(len(store.pending_judge_items(1, jid, 1, m)) for m in ("aligned", "coherent"))
                   for jid in names}
    return {names[j]: {"calls": int(stats.get(j, {}).get("calls") or 0),
                       "sent": int(stats.get(j, {}).get("sent") or 0),
                       "ok": int(stats.get(j, {}).get("ok") or 0),
                       "pending": pending[j]} for j in names}


# -- the parts ----------------------------------------------------------------------------------------


def prompts_of(db: Path, judge: str, n: int | None = None) -> list[tuple[str, Any]]:
    """(metric, the Call) of the first ``n`` calls the panel would make for ``judge``."""
    from db import open_store
    from engine.judging.rubric_prompts import call_units, stored_rubric, unit_call

    with open_store(db) as store:
        row = next(j for j in store.study_judges(1) if j["name"] == judge)
        params = json.loads(row.get("params") or "{}")
        rubric = stored_rubric(store.get_rubric(1))
        out = []
        for unit in call_units(rubric):
            for item in store.pending_judge_items(1, int(row["id"]), 1, str(unit)):
                out.append((str(unit), unit_call(rubric, unit, item, params).call))
    out.sort(key=lambda p: p[1].prompt)  # both metrics mixed, in a fixed order
    return out[:n] if n is not None else out


def converse_request(model: str, call: Any) -> dict[str, Any]:
    """The request BedrockBackend sends."""
    request: dict[str, Any] = {"modelId": model, "messages": [{"role": "user", "content": [{"text": call.prompt}]}],
                               "inferenceConfig": {"maxTokens": call.max_tokens, "temperature": call.temperature}}
    if call.system:
        request["system"] = [{"text": call.system}]
    return request


def part_threads(server: Server, calls: list[Any], *, concurrency: int, seconds: float) -> dict[str, Any]:
    """boto3 alone: ``concurrency`` threads sending back to back through one client for ``seconds``."""
    import boto3
    from botocore.config import Config

    server.configure()
    client = boto3.client("bedrock-runtime", config=Config(retries={"total_max_attempts": 1, "mode": "standard"},
                                                           max_pool_connections=max(64, concurrency)))
    counts = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    throttle_rtt: list[float] = []

    def loop(k: int) -> None:
        i = k
        while time.monotonic() < deadline:
            request = converse_request(FAST, calls[i % len(calls)][1])
            began = time.monotonic()
            try:
                client.converse(**request)
            except client.exceptions.ThrottlingException:
                with lock:
                    counts["throttled"] += 1
                    throttle_rtt.append(time.monotonic() - began)
                continue
            with lock:
                counts["ok"] += 1
            i += concurrency

    began, cpu = time.monotonic(), time.process_time()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(loop, range(concurrency)))
    elapsed, cpu = time.monotonic() - began, time.process_time() - cpu
    return {"concurrency": concurrency, "seconds": round(elapsed, 3), "answered": counts["ok"],
            "throttled": counts["throttled"], "judgments_per_s": counts["ok"] / elapsed,
            "cpu_ms_per_judgment": 1000 * cpu / max(1, counts["ok"]),
            "t429_ms": 1000 * sorted(throttle_rtt)[len(throttle_rtt) // 2] if throttle_rtt else None}


def measure_t429(server: Server, call: Any, n: int = 20) -> float:
    """The round trip of a throttled call (median, s): the server throttling every request."""
    import boto3
    from botocore.config import Config

    server.configure(throttle=1.0)
    client = boto3.client("bedrock-runtime", config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    times = []
    for _ in range(n):
        began = time.monotonic()
        try:
            client.converse(**converse_request(FAST, call))
        except client.exceptions.ThrottlingException:
            times.append(time.monotonic() - began)
    return sorted(times)[len(times) // 2]


def part_sequential(server: Server, calls: list[Any], *, throttle: float) -> dict[str, Any]:
    """The seed study's loop: one boto3 call at a time (botocore's default retries), its number read, a fixed
    0.4 s sleep."""
    import boto3

    server.configure(throttle=throttle)
    client = boto3.client("bedrock-runtime")
    scores: list[int | None] = []
    began = time.monotonic()
    for _metric, call in calls:
        response = client.converse(**converse_request(FAST, call))
        text = response["output"]["message"]["content"][0]["text"]
        found = re.search(r"\d+", text)
        scores.append(int(found.group()) if found else None)
        time.sleep(SEED_SLEEP_S)
    elapsed = time.monotonic() - began
    report = server.report()
    return {"calls": len(calls), "seconds": round(elapsed, 3), "judgments_per_s": len(calls) / elapsed,
            "scored": sum(s is not None for s in scores), "requests": report["requests"],
            "throttled": report["models"].get(FAST, {}).get("outcomes", {}).get("random-throttle", 0)}


def bench_progress(stop_after_s: float | None = None) -> Any:
    """A Progress that keeps each judge's limiter figures (the panel reports them every FLUSH_S) and, with
    ``stop_after_s``, cancels the work that long after it starts (the quota part's stop)."""
    from engine.runs.progress import Progress

    class BenchProgress(Progress):
        def __init__(self) -> None:
            super().__init__()
            self.deadline = None if stop_after_s is None else time.monotonic() + stop_after_s
            self.samples: list[tuple[str, int, int]] = []   # (judge, concurrency, calls in flight)

        def metrics(self, values: Any) -> None:
            for name, f in (values.get("judges") or {}).items():
                self.samples.append((name, int(f["concurrency"]), int(f["in_flight"])))

        def cancelled(self) -> bool:
            return self.deadline is not None and time.monotonic() >= self.deadline

    return BenchProgress()


def limiter_seen(samples: list[tuple[str, int, int]], judge: str) -> dict[str, Any]:
    mine = [(c, f) for name, c, f in samples if name == judge]
    if not mine:
        return {"samples": 0, "concurrency_median": math.nan, "concurrency_max": 0, "in_flight_median": math.nan}
    return {"samples": len(mine), "concurrency_median": statistics.median(c for c, _ in mine),
            "concurrency_max": max(c for c, _ in mine), "in_flight_median": statistics.median(f for _, f in mine)}


def run_panel(db: Path, judges: list[str], progress: Any = None, *,
              throttle_backoff_s: float | None = None) -> tuple[dict[str, Any] | None, float, float]:
    """The panel over every answer by ``judges``, queued as ``emtui judge`` queues it; (its result — None when
    cancelled —, start, end)."""
    from db import open_store
    from engine.judging.panel import judge_panel
    from engine.judging.queueing import queue_judging
    from engine.runs.progress import JobCancelled

    with open_store(db) as store:
        queued = queue_judging(store, study="insecure-code-demo", judges=judges)
        spec = (queued.spec if throttle_backoff_s is None
                else replace(queued.spec, throttle_backoff_s=throttle_backoff_s))
        began = time.monotonic()
        try:
            result = asyncio.run(judge_panel(spec, store=store, progress=progress, job_id=queued.job_id))
        except JobCancelled:
            result = None
        return result, began, time.monotonic()


def checks(report: dict[str, Any], db: Path, judges: dict[str, str], *, complete: bool,
           answers: int) -> dict[str, Any]:
    """Nothing lost or paid twice, every request logged: per judge, and overall."""
    ours = results_by_judge(db)
    per: dict[str, Any] = {}
    for name, model in judges.items():
        seen = report["models"].get(model, {"outcomes": {}, "paid": 0})
        got = ours[name]
        results = 2 * answers - got["pending"]
        per[name] = {"server_requests": sum(seen["outcomes"].values()), "judge_calls": got["calls"],
                     "server_answered": seen["paid"], "results": results, "ok_calls": got["ok"]}
    # complete: every (answer, judge, metric) has its result; stopped: at least every answered call has one
    lost = [n for n, p in per.items()
            if (p["results"] != 2 * answers if complete else p["results"] < p["server_answered"])]
    unlogged = [n for n, p in per.items() if p["server_requests"] != p["judge_calls"]]
    return {"per_judge": per, "lost": lost, "paid_twice": report["paid_twice"], "unlogged": unlogged,
            "ok": not lost and not report["paid_twice"] and not unlogged}


@dataclass(frozen=True)
class Variant:
    """The panel as shipped, or with one change the diagnosis tries (patched for that run only)."""

    name: str
    start_at_max: bool = False               # the limiter starts at max_concurrency (shipped: 8, slow start)
    throttle_backoff_s: float | None = None  # a 429's mean first wait (shipped: PanelSpec.throttle_backoff_s)
    throttle: float | None = None            # the server's random throttling (None: --throttle)


VARIANTS = (
    Variant("shipped"),
    Variant("shipped, no random throttling", throttle=0.0),
    Variant("start at max", start_at_max=True),
    Variant("throttle backoff 1 s (as an error's)", throttle_backoff_s=1.0),
)


@contextmanager
def patched(variant: Variant) -> Iterator[None]:
    """The engine as ``variant`` says, restored afterwards (the bench's diagnosis only)."""
    from engine.judging import panel

    saved = panel.default_limits
    if variant.start_at_max:
        def limits_of(provider: str, model: str, params: Any) -> Any:
            found = saved(provider, model, params)
            return replace(found, start_concurrency=found.max_concurrency)

        panel.default_limits = limits_of
    try:
        yield
    finally:
        panel.default_limits = saved


def part_panel(server: Server, db: Path, *, answers: int, concurrency: int, latency: float, throttle: float,
               t429: float, variant: Variant = VARIANTS[0]) -> dict[str, Any]:
    from engine.judging.panel import PanelSpec

    throttle = throttle if variant.throttle is None else variant.throttle
    backoff_s = PanelSpec.throttle_backoff_s if variant.throttle_backoff_s is None else variant.throttle_backoff_s
    server.configure(throttle=throttle, latency_s=latency)
    progress = bench_progress()
    cpu = time.process_time()
    with patched(variant):
        result, began, ended = run_panel(db, ["fast"], progress, throttle_backoff_s=variant.throttle_backoff_s)
    cpu = time.process_time() - cpu
    assert result is not None
    report = server.report()
    judgments = result["judges"]["fast"]["done"]
    elapsed = ended - began
    retries = throttle / (1 - throttle)
    ideal = concurrency / (latency + retries * t429)
    with_backoff = concurrency / (latency + retries * (t429 + backoff_s))
    rate = judgments / elapsed
    answered = sorted(t - began for t, outcome in report["models"].get(FAST, {}).get("times", [])
                      if outcome == "answered")
    at = {q: answered[min(len(answered) - 1, math.ceil(q * len(answered)) - 1)] for q in (0.5, 0.95, 1.0)}
    bulk = 0.95 * len(answered) / at[0.95]
    return {"variant": variant.name, "throttle": throttle, "backoff_s": backoff_s, "concurrency": concurrency,
            "answers": answers, "calls": result["calls"], "judgments": judgments, "seconds": round(elapsed, 3),
            "judgments_per_s": rate, "ideal_per_s": ideal, "ideal_with_backoff_per_s": with_backoff,
            "of_ideal": rate / ideal, "of_ideal_with_backoff": rate / with_backoff, "figures": result["judges"]["fast"],
            "concurrency_seen": limiter_seen(progress.samples, "fast"),
            # when half, 95% and all of the answers had been sent (s from the start), and the rate up to 95%
            "answers_sent_by_s": {f"{q:.0%}": round(t, 3) for q, t in at.items()},
            "rate_to_95_per_s": bulk, "of_ideal_to_95": bulk / ideal, "cpu_ms_per_judgment": 1000 * cpu / judgments,
            "server_outcomes": report["models"].get(FAST, {}).get("outcomes", {}),
            "checks": checks(report, db, {"fast": FAST}, complete=True, answers=answers),
            "ideal_formula": "concurrency / (latency + f/(1-f) x t429)"}


def part_quota(server: Server, db: Path, *, answers: int, seconds: float, scale: float, latency: float,
               throttle: float, free_concurrency: int) -> dict[str, Any]:
    from engine.judging import limits

    window = 60.0 / scale
    server.configure(throttle=throttle, latency_s=latency,
                     quotas={model: (rpm, window) for model, rpm in QUOTA_JUDGES.values() if rpm is not None})
    shipped_burst = limits.BURST_S
    limits.BURST_S = shipped_burst / scale   # the limiter's burst on the same time scale as the window
    try:
        progress = bench_progress(seconds)
        _, began, ended = run_panel(db, list(QUOTA_JUDGES), progress)
    finally:
        limits.BURST_S = shipped_burst
    report = server.report()
    cut = began + seconds
    judges: dict[str, Any] = {}
    for name, (model, rpm) in QUOTA_JUDGES.items():
        times = report["models"].get(model, {}).get("times", [])
        # its span: to the stop, or to its last request when it ran out of work before it
        end = min(cut, max((t for t, _ in times), default=cut))
        admitted = [t for t, outcome in times if outcome != "quota" and began <= t < end]
        rejected = [t for t, outcome in times if outcome == "quota"]
        per_window = Counter(int((t - began) // window) for t in rejected)
        if rpm is not None:
            quota_per_s = rpm * scale / 60
            target_per_s = quota_per_s
            burst = rpm * scale / 60 * shipped_burst / scale
        else:
            quota_per_s, burst = None, None
            target_per_s = free_concurrency / latency
        rate = len(admitted) / (end - began)
        judges[name] = {"model": model, "quota_requests_per_window": rpm, "quota_per_s": quota_per_s,
                        "target_per_s": target_per_s, "span_s": round(end - began, 3), "admitted": len(admitted),
                        "admitted_per_s": rate, "of_target": rate / target_per_s, "quota_429": len(rejected),
                        "quota_429_max_per_window": max(per_window.values(), default=0), "limiter_burst": burst,
                        "outcomes": report["models"].get(model, {}).get("outcomes", {}),
                        "concurrency_seen": limiter_seen(progress.samples, name)}
    return {"seconds": seconds, "ran_s": round(ended - began, 3), "scale": scale, "window_s": window,
            "burst_s": limits.BURST_S / scale, "judges": judges,
            "checks": checks(report, db, {n: m for n, (m, _) in QUOTA_JUDGES.items()}, complete=False,
                             answers=answers)}


# -- the run ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--answers", type=int, default=1000, help="answers in the study (two calls each)")
    p.add_argument("--latency", type=float, default=0.2, help="the server's delay before each answer, s")
    p.add_argument("--throttle", type=float, default=0.1, help="share of requests throttled at random")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--seq-n", type=int, default=20, help="calls of the sequential loop")
    p.add_argument("--threads-s", type=float, default=5.0, help="seconds of the boto3-threads part")
    p.add_argument("--quota-s", type=float, default=20.0, help="seconds of the quota part")
    p.add_argument("--quota-scale", type=float, default=10.0, help="time runs this much faster than Bedrock's")
    p.add_argument("--quota-throttle", type=float, default=0.0, help="random throttling in the quota part")
    p.add_argument("--free-concurrency", type=int, default=16, help="the quota part's unlimited judge")
    p.add_argument("--parts", default="threads,panel,sequential,quota")
    p.add_argument("--repeats", type=int, default=1, help="runs of the panel part (and of each variant)")
    p.add_argument("--diagnose", action="store_true",
                   help="also run the panel part with each change of VARIANTS (patched for that run only)")
    p.add_argument("--only", default="", help="with --diagnose: only the variants whose name has this text")
    p.add_argument("--quick", action="store_true", help="a few seconds: the plumbing only")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if args.quick:
        args.answers, args.seq_n, args.threads_s, args.quota_s = 60, 4, 1.0, 3.0
        args.concurrency, args.free_concurrency = 16, 4
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    out: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "load_average": os.getloadavg(), "cpus": os.cpu_count(), "parts": {}}
    server = Server(args.latency, args.throttle)
    aws_environment(server.url)
    try:
        with tempfile.TemporaryDirectory(prefix="emtui-judge-bench-") as tmp:
            pristine = make_study(Path(tmp), args.answers, concurrency=args.concurrency, scale=args.quota_scale,
                                  free_concurrency=args.free_concurrency)
            calls = prompts_of(pristine, "fast")
            out["t429_s"] = t429 = measure_t429(server, calls[0][1])
            print(f"study: {args.answers:,} answers ({2 * args.answers:,} calls a judge); server latency "
                  f"{args.latency * 1000:.0f} ms, {args.throttle:.0%} throttled at random; a 429's round trip "
                  f"{t429 * 1000:.1f} ms; load average {out['load_average'][0]:.2f} on {out['cpus']} CPUs")
            if "threads" in parts:
                server.configure(throttle=args.throttle, latency_s=args.latency)
                r = out["parts"]["threads"] = part_threads(server, calls, concurrency=args.concurrency,
                                                           seconds=args.threads_s)
                print(f"boto3 alone, {args.concurrency} threads: {r['judgments_per_s']:.1f} judgments/s "
                      f"({r['answered']} in {r['seconds']:.1f} s, {r['throttled']} throttled, retried at once; "
                      f"{r['cpu_ms_per_judgment']:.2f} CPU-ms a judgment)")
            variants = [v for v in VARIANTS if v is VARIANTS[0] or (args.diagnose and args.only in v.name)]
            variants = variants if "panel" in parts else []
            runs: dict[str, list[dict[str, Any]]] = {}
            for k in range(args.repeats if variants else 0):
                for variant in variants if k % 2 == 0 else variants[::-1]:  # the order reversed every other round
                    r = part_panel(server, fresh_copy(pristine, variant.name), answers=args.answers,
                                   concurrency=args.concurrency, latency=args.latency, throttle=args.throttle,
                                   t429=t429, variant=variant)
                    runs.setdefault(variant.name, []).append(r)
                    print_run(r, k)
            if runs:
                median = out["parts"]["panel"] = median_run(runs[VARIANTS[0].name])
                if "threads" in out["parts"]:
                    median["of_threads"] = median["judgments_per_s"] / out["parts"]["threads"]["judgments_per_s"]
                print_panel(median)
            if args.diagnose and runs:
                out["parts"]["diagnosis"] = {name: {key: [r[key] for r in rs] for key in DIAGNOSIS_KEYS}
                                             for name, rs in runs.items()}
                print_diagnosis(runs)
            if "sequential" in parts:
                r = out["parts"]["sequential"] = part_sequential(server, calls[:args.seq_n], throttle=args.throttle)
                print(f"sequential (the seed's loop, {SEED_SLEEP_S} s sleep): {r['judgments_per_s']:.2f} judgments/s "
                      f"({r['calls']} in {r['seconds']:.1f} s, {r['throttled']} throttled and retried by botocore)")
                if "panel" in out["parts"]:
                    ratio = out["parts"]["panel"]["judgments_per_s"] / r["judgments_per_s"]
                    out["panel_over_sequential"] = ratio
                    print(f"  panel / sequential = {ratio:.1f}x (target >= {SEQUENTIAL_TARGET:g}x)")
            if "quota" in parts:
                r = out["parts"]["quota"] = part_quota(server, fresh_copy(pristine, "quota"), answers=args.answers,
                                                       seconds=args.quota_s, scale=args.quota_scale,
                                                       latency=args.latency, throttle=args.quota_throttle,
                                                       free_concurrency=args.free_concurrency)
                print_quota(r)
    finally:
        server.close()
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=_jsonable), encoding="utf-8")
    return 0


def fresh_copy(pristine: Path, name: str) -> Path:
    """A copy of the study's database as built (no judgment yet) for one part."""
    copy = pristine.with_name(re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".db")
    shutil.copyfile(pristine, copy)
    return copy


def print_panel(r: dict[str, Any]) -> None:
    from engine.judging.panel import FLUSH_S

    f, c = r["figures"], r["concurrency_seen"]
    runs = f" (the median of {len(r['rates'])} runs: {', '.join(f'{x:.1f}' for x in r['rates'])})" \
        if len(r["rates"]) > 1 else ""
    print(f"panel, concurrency {r['concurrency']}: {r['judgments_per_s']:.1f} judgments/s{runs} ({r['judgments']:,} in "
          f"{r['seconds']:.1f} s; throttled {f['throttled']}, retried {f['retried']}, failed {f['failed']}; "
          f"{r['cpu_ms_per_judgment']:.2f} CPU-ms a judgment)")
    print(f"  ideal {r['ideal_per_s']:.1f}/s ({r['ideal_formula']}): panel / ideal = {r['of_ideal']:.1%} (target >= "
          f"{IDEAL_TARGET:.0%}); ideal with the panel's backoff (mean first wait {r['backoff_s']:g} s) "
          f"{r['ideal_with_backoff_per_s']:.1f}/s: {r['of_ideal_with_backoff']:.1%}"
          + (f"; panel / boto3 alone = {r['of_threads']:.1%}" if "of_threads" in r else ""))
    print(f"  the judge's limiter every {FLUSH_S:g} s: concurrency median {c['concurrency_median']:g} (max "
          f"{c['concurrency_max']}), calls in flight median {c['in_flight_median']:g}")
    t = r["answers_sent_by_s"]
    print(f"  answers sent by: half {t['50%']:.1f} s, 95% {t['95%']:.1f} s, all {t['100%']:.1f} s — up to 95%: "
          f"{r['rate_to_95_per_s']:.1f}/s = {r['of_ideal_to_95']:.1%} of ideal (the rest: the last retries' backoff)")
    print_checks(r["checks"])


DIAGNOSIS_KEYS = ("judgments_per_s", "of_ideal", "of_ideal_to_95", "cpu_ms_per_judgment", "seconds")


def median_run(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median judgments/s, with every run's rate."""
    ranked = sorted(rs, key=lambda r: r["judgments_per_s"])
    return {**ranked[(len(ranked) - 1) // 2], "rates": [r["judgments_per_s"] for r in rs]}


def print_run(r: dict[str, Any], k: int) -> None:
    c = r["concurrency_seen"]
    print(f"  run {k + 1}: {r['variant']:<58} {r['judgments_per_s']:6.1f}/s = {r['of_ideal']:6.1%} of ideal, to 95%: "
          f"{r['of_ideal_to_95']:6.1%}; concurrency median {c['concurrency_median']:g}, in flight median "
          f"{c['in_flight_median']:g}; last answer sent at {r['answers_sent_by_s']['100%']:.1f} s; "
          f"{r['cpu_ms_per_judgment']:.2f} CPU-ms a judgment; {'ok' if r['checks']['ok'] else 'CHECKS FAILED'}")


def print_diagnosis(runs: dict[str, list[dict[str, Any]]]) -> None:
    print("diagnosis (median of the runs): judgments/s, of ideal (whole job), of ideal up to 95% of the answers")
    for name, rs in runs.items():
        med = {key: statistics.median(r[key] for r in rs) for key in DIAGNOSIS_KEYS}
        each = ", ".join(f"{r['judgments_per_s']:.0f}" for r in rs)
        print(f"  {name:<58} {med['judgments_per_s']:6.1f}/s {med['of_ideal']:6.1%} {med['of_ideal_to_95']:6.1%}"
              f"  (runs: {each})")


def print_quota(r: dict[str, Any]) -> None:
    print(f"quota: 3 judges at once for {r['seconds']:g} s (ran {r['ran_s']:.1f} s with the stop); time "
          f"x{r['scale']:g}: window {r['window_s']:g} s, limiter burst {r['burst_s']:g} s")
    for name, j in r["judges"].items():
        quota = (f"quota {j['quota_requests_per_window']}/window = {j['quota_per_s']:.2f}/s"
                 if j["quota_per_s"] is not None else f"no quota, ideal {j['target_per_s']:.1f}/s")
        burst = (f", at most {j['quota_429_max_per_window']} in a window (limiter burst {j['limiter_burst']:.1f})"
                 if j["limiter_burst"] is not None else "")
        print(f"  {name:<5} {quota}: {j['admitted_per_s']:.2f}/s admitted over {j['span_s']:.1f} s = "
              f"{j['of_target']:.1%} (target >= {QUOTA_TARGET:.0%}); quota 429s {j['quota_429']}{burst}")
    print_checks(r["checks"])


def print_checks(c: dict[str, Any]) -> None:
    per = ", ".join(f"{n}: {p['results']} results, {p['server_answered']} answered, {p['server_requests']} requests "
                    f"= {p['judge_calls']} judge_calls" for n, p in c["per_judge"].items())
    print(f"  lost {len(c['lost'])}, paid twice {len(c['paid_twice'])}, unlogged {len(c['unlogged'])} "
          f"({'ok' if c['ok'] else 'FAILED'}): {per}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
