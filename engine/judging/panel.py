"""The panel: every judge of a study judges every answer it has not judged yet, all judges at once.

Each judge has its own queue, its own workers (as many as its concurrency may grow to) and its own
:class:`~engine.judging.limits.JudgeLimiter`, so the slowest judge never stalls the others. A call is one
blocking attempt of a backend (engine/judging/backend.py) run in a thread pool of the panel's own (the
default executor has a handful of threads: measured 41 calls/s against 198 with 32 threads at 100 ms
latency); the panel retries it — jittered exponential backoff, waited out in a task of its own so the judge's
workers keep its slots busy, ``max_attempts`` errors or ``max_throttled`` 429s at most — and logs every
attempt in ``judge_calls`` with its outcome, tokens and cost, so nothing is paid without a record.

Results are written as they come, one metric at a time (``judgment_scores`` keyed by judgment and
metric), in batches off the event loop; a resumed job asks only for what has no result, so nothing that
was answered is sent twice and nothing is lost. A failed parse keeps the raw reply and the error (never a
−1). A budget (USD, the study's spending on judge calls) stops the panel cleanly: no new call starts,
what is in flight is recorded. A judge that cannot be called on this machine at all (a Bedrock judge with no
AWS credentials) is left out before any call, its answers unjudged, and the job then fails in one line
(:class:`JudgeUnavailable`) once the other judges are done: a run again, with the credentials there, judges them.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.judging.backend import Backend, CallFailed, Reply, Throttled
from engine.judging.limits import JudgeLimiter, Limits, default_limits
from engine.judging.prompts import RubricCall
from engine.runs.progress import JobCancelled, Progress

FLUSH_S = 0.5          # results and call records are written at least this often
POLL_S = 2.0           # pauses (from the Judges screen) and the budget are read this often
MAX_THREADS = 256
MAX_BACKOFF_S = 60.0


@dataclass(frozen=True)
class PanelSpec:
    """What a judge job does: a study's answers (all, or these), these judges, one rubric."""

    study_id: int
    study: str
    study_hash: str
    judges: tuple[int, ...]
    rubric_id: int
    budget_usd: float | None = None
    generation_ids: tuple[int, ...] | None = None
    max_attempts: int = 6             # failed attempts (errors, timeouts) of one call at most
    timeout_s: float = 120.0
    backoff_s: float = 1.0            # the first retry's mean wait after an error; doubles each time, capped at 60 s
    max_throttled: int = 20           # throttled attempts of one call at most (sustained throttling: ~10 minutes)
    throttle_backoff_s: float = 0.05  # the first retry's mean wait after a 429 without Retry-After; doubles

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PanelSpec:
        p = {k: v for k, v in payload.items() if k in cls.__dataclass_fields__}
        p["judges"] = tuple(int(j) for j in p["judges"])
        if p.get("generation_ids") is not None:
            p["generation_ids"] = tuple(int(g) for g in p["generation_ids"])
        return cls(**p)

    def as_payload(self) -> dict[str, Any]:
        out = asdict(self)
        out["judges"] = list(self.judges)
        out["generation_ids"] = None if self.generation_ids is None else list(self.generation_ids)
        return out


class JudgeUnavailable(RuntimeError):
    """Judges the panel could not call on this machine, in one line: why, and that their answers are left
    unjudged for a later job."""

    def __init__(self, why: Mapping[str, str]) -> None:
        by_reason: dict[str, list[str]] = {}
        for name, reason in why.items():
            by_reason.setdefault(reason, []).append(name)
        # what it means and what to do first: a status line shows a job's error cut short
        head = (f"judge{'s' if len(why) > 1 else ''} {', '.join(repr(n) for n in why)} cannot be called on this "
                "machine, their answers left unjudged until emtui run (or emtui judge) again once they can (emtui "
                "doctor); or judge with a local judge")
        super().__init__(head + " — " + "; ".join(f"{', '.join(names)}: {reason}"
                                                  for reason, names in by_reason.items()))
        self.why = dict(why)


@dataclass
class Work:
    generation_id: int
    metric: str | None           # None: one call scores every metric (a JSON rubric's)
    rc: RubricCall               # the call and the metrics its reply scores


@dataclass
class Tries:
    """What became of one call's attempts so far."""

    attempt: int = 0
    failed: int = 0
    throttled: int = 0
    last_throttled: bool = False
    error: str | None = None


@dataclass
class JudgeState:
    """One judge of the running panel."""

    judge_id: int
    name: str
    provider: str
    model: str
    backend: Backend
    limiter: JudgeLimiter
    params: Mapping[str, Any]               # the judge row's params: temperature, logprobs, max_tokens
    queue: asyncio.Queue[Work] = field(default_factory=asyncio.Queue)
    counts: dict[str, int] = field(default_factory=lambda: {"done": 0, "failed": 0, "retried": 0, "throttled": 0})
    tokens: int = 0
    cost: float = 0.0
    started: float = field(default_factory=time.monotonic)

    def figures(self) -> dict[str, Any]:
        elapsed = max(1e-6, time.monotonic() - self.started)
        return {**self.counts, "concurrency": self.limiter.concurrency, "in_flight": self.limiter.in_flight,
                "paused": self.limiter.paused, "calls_per_s": round((self.counts["done"] + self.counts["failed"])
                                                                    / elapsed, 2),
                "tokens": self.tokens, "cost_usd": round(self.cost, 6),
                "rpm": self.limiter.limits.requests_per_minute, "tpm": self.limiter.limits.tokens_per_minute}


class Panel:
    def __init__(self, spec: PanelSpec, *, store: Any, progress: Progress, job_id: int | None,
                 make_backend: Callable[[str, Mapping[str, Any]], Backend]) -> None:
        from engine.judging.rubric_prompts import stored_rubric

        self.spec, self.store, self.progress, self.job_id = spec, store, progress, job_id
        rubric_row = store.get_rubric(spec.rubric_id)
        if rubric_row is None:
            raise ValueError(f"no rubric {spec.rubric_id} in the database")
        self.rubric = stored_rubric(rubric_row)
        self.results: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []
        self.judges: list[JudgeState] = []
        self.stop = asyncio.Event()
        self.retrying: set[asyncio.Task[None]] = set()   # calls waiting out a backoff
        self.stopped_for: str | None = None
        self.spent = store.study_judging_spent(spec.study_id)
        for jid in spec.judges:
            row = store.get_judge(jid)
            if row is None:
                raise ValueError(f"no judge {jid} in the database")
            params = json.loads(row.get("params") or "{}")
            limits: Limits = default_limits(str(row["provider"]), str(row["model"]), params)
            made = {**params, "timeout_s": spec.timeout_s}
            if row["provider"] == "local":  # its model and adapter folders, found on this machine now
                from engine.judging.local_judge import local_judge_params

                made.update(local_judge_params(store, str(row["model"]), params))
            self.judges.append(JudgeState(
                judge_id=jid, name=str(row["name"]), provider=str(row["provider"]), model=str(row["model"]),
                backend=make_backend(str(row["provider"]), made),
                limiter=JudgeLimiter(limits), params=params))

    # -- the work --------------------------------------------------------------------------------------

    def plan(self) -> int:
        from engine.judging.rubric_prompts import call_units, unit_call

        total = 0
        for judge in self.judges:
            for unit in call_units(self.rubric):
                metric = unit or self.rubric.metrics[0].name
                for row in self.store.pending_judge_items(self.spec.study_id, judge.judge_id, self.spec.rubric_id,
                                                          metric, generation_ids=self.spec.generation_ids):
                    judge.queue.put_nowait(Work(int(row["generation_id"]), unit,
                                                unit_call(self.rubric, unit, row, judge.params)))
                    total += 1
        return total

    async def run(self) -> dict[str, Any]:
        threads = min(MAX_THREADS, max(4, sum(j.limiter.limits.max_concurrency for j in self.judges)))
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="judge") as pool:
            uncallable = await self._set_aside_uncallable(loop, pool)
            # a backend's client (boto3's: ~0.2 s of service-model loading) is made while the plan is read
            warming = [loop.run_in_executor(pool, warm) for j in self.judges
                       if (warm := getattr(j.backend, "warm", None)) is not None]
            try:
                result = await self._run(loop, pool)
            finally:
                await asyncio.gather(*warming, return_exceptions=True)
        if uncallable:  # the others' results are stored; the job fails so that the chain says what is missing
            raise JudgeUnavailable(uncallable)
        return result

    async def _set_aside_uncallable(self, loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor) -> dict[str, str]:
        """Judges that cannot be called on this machine at all (a Bedrock judge with no AWS credentials) are
        left out, their answers unjudged: each of their calls would fail the same way, and a failure recorded
        per answer is a result, never asked again once the credentials are there. {judge: why}."""
        out: dict[str, str] = {}
        checked = [(judge, check) for judge in self.judges
                   if (check := getattr(judge.backend, "check_credentials", None)) is not None]
        # at once, in threads: each check makes its judge's client (boto3's: ~0.2 s), which the calls then use
        found_all = await asyncio.gather(*(loop.run_in_executor(pool, check) for _, check in checked))
        for (judge, _), found in zip(checked, found_all, strict=True):
            if not found.ok:
                out[judge.name] = str(found.message)
                self.judges.remove(judge)
                self.progress.note(f"judge {judge.name} left out: {found.message}")
        return out

    async def _run(self, loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor) -> dict[str, Any]:
        total = self.plan()
        paused = self.store.paused_judges([j.judge_id for j in self.judges])
        for j in self.judges:  # a judge paused before the job started starts paused
            j.limiter.set_paused(j.judge_id in paused)
        self.progress.set_total(total)
        self.progress.note(f"{total:,} calls to make by {len(self.judges)} judge(s)")
        workers = [asyncio.create_task(self.worker(j, loop, pool))
                   for j in self.judges for _ in range(j.limiter.limits.max_concurrency)]
        watcher = asyncio.create_task(self.watch())
        try:
            await self._until_done()
            # stopped (budget, cancel): no call starts now; the calls in flight are paid, so wait for their
            # replies and record them (a backend call is bounded by its timeout)
            while any(j.limiter.in_flight for j in self.judges):
                await asyncio.sleep(0.02)
        finally:
            for w in (*workers, *self.retrying):
                w.cancel()
            watcher.cancel()
            await asyncio.gather(*workers, *self.retrying, watcher, return_exceptions=True)
            await self.flush()
        if self.progress.cancelled() and self.stopped_for is None:
            raise JobCancelled("cancelled")
        return {"calls": total, "stopped": self.stopped_for, "spent_usd": round(self.spent, 6),
                "judges": {j.name: j.figures() for j in self.judges}}

    async def _until_done(self) -> None:
        joined: asyncio.Future[Any] = asyncio.ensure_future(self._all_answered())
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait([joined, stopped], return_when=asyncio.FIRST_COMPLETED)
        for f in (joined, stopped):
            f.cancel()
        await asyncio.gather(joined, stopped, return_exceptions=True)

    async def _all_answered(self) -> None:
        """Every queue empty and no retry waiting (a retry may queue another: looped until none is left)."""
        while True:
            await asyncio.gather(*(j.queue.join() for j in self.judges))
            if not self.retrying:
                return
            await asyncio.wait(set(self.retrying))

    async def worker(self, judge: JudgeState, loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor) -> None:
        while True:
            work = await judge.queue.get()
            try:
                if not self.stop.is_set():
                    await self.attempt(judge, work, Tries(), loop, pool)
            finally:
                judge.queue.task_done()

    async def attempt(self, judge: JudgeState, work: Work, tries: Tries, loop: asyncio.AbstractEventLoop,
                      pool: ThreadPoolExecutor) -> None:
        """One attempt of ``work``. A retry waits out its backoff in a task of its own, not in this worker, so
        the judge's workers keep every slot busy with new calls meanwhile (a worker asleep in a backoff held
        its slot's share of the queue: measured 10.8% of ideal with 10% of calls throttled)."""
        call = work.rc.call
        reserve = len(call.prompt) / 3 + call.max_tokens  # a call reserves input + maxTokens of the token quota
        tries.attempt += 1
        async with judge.limiter.slot(reserve, urgent=tries.attempt > 1):
            if self.stop.is_set():
                return
            began = time.monotonic()
            try:
                reply = await loop.run_in_executor(pool, lambda: judge.backend.call(
                    judge.model, call, timeout_s=self.spec.timeout_s))
            except Throttled as exc:
                judge.limiter.throttled()
                judge.counts["throttled"] += 1
                self.log(judge, work, tries.attempt, "throttled", began, error=str(exc), status=429)
                tries.throttled += 1
                tries.error, tries.last_throttled = str(exc), True
                wait = exc.retry_after
            except CallFailed as exc:
                self.log(judge, work, tries.attempt, "retryable" if exc.retryable else "failed", began,
                         error=str(exc), status=exc.status, sent=exc.sent)
                tries.failed += 1
                tries.error, tries.last_throttled = str(exc), False
                if not exc.retryable:
                    self.record_failure(judge, work, tries.error)
                    return
                wait = None
            else:
                judge.limiter.succeeded()
                cost = self.cost(judge, reply)
                self.log(judge, work, tries.attempt, "ok", began, reply=reply, cost=cost)
                self.record(judge, work, reply, began)
                return
        if tries.failed >= self.spec.max_attempts or tries.throttled >= self.spec.max_throttled:
            self.record_failure(judge, work, tries.error or "no reply")
            return
        judge.counts["retried"] += 1
        if wait is None:
            # jittered exponential backoff: a 429 starts short (the limiter, not the backoff, keeps the judge
            # inside its quota; a few 429s at random are the service's, under shared load), an error at backoff_s
            first, n = ((self.spec.throttle_backoff_s, tries.throttled) if tries.last_throttled
                        else (self.spec.backoff_s, tries.failed))
            wait = random.uniform(0, 2 * min(MAX_BACKOFF_S, first * 2 ** (n - 1)))
        task = asyncio.create_task(self.retry_after(judge, work, tries, wait, loop, pool))
        self.retrying.add(task)
        task.add_done_callback(self.retrying.discard)

    async def retry_after(self, judge: JudgeState, work: Work, tries: Tries, wait: float,
                          loop: asyncio.AbstractEventLoop, pool: ThreadPoolExecutor) -> None:
        await asyncio.sleep(wait)
        if not self.stop.is_set():  # stopped: left unjudged; a resumed job asks again
            await self.attempt(judge, work, tries, loop, pool)

    # -- results and records ---------------------------------------------------------------------------

    def cost(self, judge: JudgeState, reply: Reply) -> float | None:
        from engine.judging.prices import cost_usd

        return cost_usd(judge.provider, judge.model, reply.input_tokens or 0, reply.output_tokens or 0)

    def log(self, judge: JudgeState, work: Work, attempt: int, outcome: str, began: float, *,
            reply: Reply | None = None, error: str | None = None, status: int | None = None, sent: bool = True,
            cost: float | None = None) -> None:
        tokens_in = reply.input_tokens if reply else None
        tokens_out = reply.output_tokens if reply else None
        judge.tokens += (tokens_in or 0) + (tokens_out or 0)
        judge.cost += cost or 0.0
        self.spent += cost or 0.0
        self.calls.append({"judge_id": judge.judge_id, "generation_id": work.generation_id,
                           "rubric_id": self.spec.rubric_id, "metric": work.metric or "*", "attempt": attempt,
                           "outcome": outcome, "sent": int(sent), "status": status, "error": error,
                           "input_tokens": tokens_in, "output_tokens": tokens_out, "cost_usd": cost,
                           "latency_ms": int((time.monotonic() - began) * 1000), "job_id": self.job_id,
                           "at": time.time()})
        if self.spec.budget_usd is not None and self.spent >= self.spec.budget_usd and not self.stop.is_set():
            self.stopped_for = f"budget: ${self.spent:.4f} spent of ${self.spec.budget_usd:.4f}"
            self.progress.note(f"stopped at the budget (${self.spec.budget_usd:.2f})")
            self.stop.set()

    def record(self, judge: JudgeState, work: Work, reply: Reply, began: float) -> None:
        rows = reply_results(work.rc, reply, generation_id=work.generation_id, judge_id=judge.judge_id,
                             rubric_id=self.spec.rubric_id, study_hash=self.spec.study_hash, job_id=self.job_id,
                             latency_ms=int((time.monotonic() - began) * 1000))
        self.results += rows
        judge.counts["failed" if any(r["error"] is not None for r in rows) else "done"] += 1
        self.progress.advance(1)

    def record_failure(self, judge: JudgeState, work: Work, error: str) -> None:
        self.results += failure_results(work.rc, f"no reply: {error}", generation_id=work.generation_id,
                                        judge_id=judge.judge_id, rubric_id=self.spec.rubric_id,
                                        study_hash=self.spec.study_hash, job_id=self.job_id)
        judge.counts["failed"] += 1
        self.progress.advance(1)

    async def flush(self) -> None:
        results, calls = self.results, self.calls
        self.results, self.calls = [], []
        if calls:
            await asyncio.to_thread(self.store.log_judge_calls, calls)
        if results:
            await asyncio.to_thread(self.store.record_judge_results, results)

    async def watch(self) -> None:
        """Every FLUSH_S: write what came in, report; every POLL_S: pauses, cancellation."""
        last_poll = 0.0
        while True:
            await asyncio.sleep(FLUSH_S)
            await self.flush()
            self.progress.metrics({"judges": {j.name: j.figures() for j in self.judges},
                                   "spent_usd": round(self.spent, 6), "budget_usd": self.spec.budget_usd})
            if time.monotonic() - last_poll >= POLL_S:
                last_poll = time.monotonic()
                paused = await asyncio.to_thread(self.store.paused_judges, [j.judge_id for j in self.judges])
                for j in self.judges:
                    j.limiter.set_paused(j.judge_id in paused)
                if self.progress.cancelled():
                    self.stop.set()


def reply_results(rc: RubricCall, reply: Reply, *, generation_id: int, judge_id: int, rubric_id: int,
                  study_hash: str, job_id: int | None, latency_ms: int | None = None) -> list[dict[str, Any]]:
    """The rows (``Store.record_judge_results``) one reply gives: each metric of its call, scored by the one
    parser (a failed parse: no score, the raw reply and the error). The on-demand panel and a Bedrock batch
    job's output write the same rows."""
    from engine.judging.rubric_prompts import scores_of

    return [{"generation_id": generation_id, "judge_id": judge_id, "rubric_id": rubric_id, "metric": metric,
             "score": score, "raw": _raw(reply), "error": error, "study_hash": study_hash, "job_id": job_id,
             "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens, "latency_ms": latency_ms}
            for metric, (score, error) in scores_of(rc, reply).items()]


def failure_results(rc: RubricCall, error: str, *, generation_id: int, judge_id: int, rubric_id: int,
                    study_hash: str, job_id: int | None, raw: str | None = None) -> list[dict[str, Any]]:
    """The rows of a call that got no reply to score (``raw``: what came instead, e.g. a batch record's error)."""
    return [{"generation_id": generation_id, "judge_id": judge_id, "rubric_id": rubric_id, "metric": m.name,
             "score": None, "raw": raw, "error": error, "study_hash": study_hash, "job_id": job_id}
            for m in rc.metrics]


def _raw(reply: Reply) -> str:
    if reply.top_logprobs:
        raw: dict[str, Any] = {"text": reply.text, "top_logprobs": dict(reply.top_logprobs)}
        if reply.number_logprobs is not None:   # what a digit-by-digit judge's score was read from
            raw["number_logprobs"] = {str(n): lp for n, lp in sorted(reply.number_logprobs.items())}
        return json.dumps(raw, ensure_ascii=False)
    return reply.text


async def judge_panel(spec: PanelSpec, *, store: Any, progress: Progress | None = None, job_id: int | None = None,
                      make_backend: Callable[[str, Mapping[str, Any]], Backend] | None = None) -> dict[str, Any]:
    """Judge every answer of ``spec`` not judged yet by every judge of its panel; per-judge figures."""
    from engine.judging.backends import make_backend as default_backend

    panel = Panel(spec, store=store, progress=progress or Progress(), job_id=job_id,
                  make_backend=make_backend or default_backend)
    return await panel.run()
