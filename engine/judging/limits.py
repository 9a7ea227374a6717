"""What keeps one judge inside its quota: requests and tokens per minute, and a concurrency that adapts.

Bedrock's limits are per model and per minute, and a call reserves input + maxTokens of the token quota
when it starts. So each judge has two token buckets (requests, tokens; refilled continuously at the
per-minute rate, holding at most ``BURST_S`` seconds of it, so a judge starts at once but never bursts a
minute's quota into one second) and an adaptive concurrency: it grows by one per success until the first
cut (a slow start: doubling per round trip), then by one after as many successes as it allows in flight, up
to its maximum; it is halved when throttles are more than ``CUT_SHARE`` of the recent calls (at most once per
``CUT_GAP_S``, so one burst of 429s is one cut) — a service that throttles a few calls at random (it does,
under shared load) is retried, not answered by starving the judge. All of it lives on the panel's event
loop (no locks); ``clock`` and ``sleep`` are injectable for tests.

Defaults come from ``data/judge_limits.toml`` (the default on-demand quotas of us-east-1 for the models the
field uses); a judge's own params (``requests_per_minute``, ``tokens_per_minute``, ``max_concurrency``)
override them.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

BURST_S = 5.0          # a bucket holds this many seconds of its rate
CUT_GAP_S = 1.0        # throttles closer together than this are one event
CUT_SHARE = 0.3        # cut only when more than this share of the recent calls were throttled
RECENT_MIN = 50        # ... over the last max(RECENT_MIN, 2 x concurrency) calls (never fewer: at 10% throttled
                       # at random, windows of 20 calls held > 25% often enough to cut a judge to half)
DEFAULT_RPM = 600.0    # a model not in the table (set the judge's requests_per_minute for a Bedrock model)
DEFAULT_TPM = 1_000_000.0
DEFAULT_CONCURRENCY = 32


@dataclass(frozen=True)
class Limits:
    requests_per_minute: float
    tokens_per_minute: float
    max_concurrency: int
    start_concurrency: int


def default_limits(provider: str, model: str, params: Mapping[str, Any]) -> Limits:
    """A judge's limits: its params, else the quota table's row for its model (an inference profile
    ``us.X`` has X's quota, doubled: cross-region profiles double them), else generous defaults."""
    table = _quota_table()
    base = model.split(".", 1)[1] if model[:3] in ("us.", "eu.") or model.startswith("apac.") else model
    row = table.get((provider, model)) or table.get((provider, base)) or {}
    factor = 2.0 if base != model and (provider, model) not in table else 1.0
    rpm = float(params.get("requests_per_minute") or row.get("requests_per_minute", DEFAULT_RPM) * factor)
    tpm = float(params.get("tokens_per_minute") or row.get("tokens_per_minute", DEFAULT_TPM) * factor)
    most = int(params.get("max_concurrency") or row.get("max_concurrency") or DEFAULT_CONCURRENCY)
    # a slow start from half the maximum (8 at least): the buckets, not the concurrency, keep the quota, and
    # each doubling costs a round trip (from 8 to 64: 0.35 s of an 8 s bench run)
    start = int(params.get("start_concurrency") or max(min(8, most), most // 2))
    return Limits(rpm, tpm, most, max(1, min(most, start)))


def _quota_table() -> dict[tuple[str, str], dict[str, Any]]:
    from engine.common.resources import data_path
    from engine.common.safe_load import toml_loads

    doc = toml_loads(data_path("judge_limits.toml").read_text(encoding="utf-8"))
    return {(str(m["provider"]), str(m["model"])): dict(m) for m in doc.get("models", [])}


class Bucket:
    """A token bucket: ``rate_per_s`` refill, ``capacity`` at most."""

    def __init__(self, rate_per_s: float, capacity: float, clock: Callable[[], float]) -> None:
        self.rate, self.capacity, self.clock = rate_per_s, max(1.0, capacity), clock
        self.level, self.at = self.capacity, clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.at) * self.rate)
        self.at = now

    def wait_s(self, amount: float) -> float:
        """Seconds until ``amount`` can be taken (0: now). An amount above the capacity waits for a full
        bucket and takes it (a single call larger than the burst still goes, once)."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= min(amount, self.capacity)


class JudgeLimiter:
    """One judge's gate: ``async with limiter.slot(tokens): ...`` around each attempt."""

    def __init__(self, limits: Limits, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        self.limits = limits
        self.clock, self.sleep = clock, sleep
        self.requests = Bucket(limits.requests_per_minute / 60, limits.requests_per_minute / 60 * BURST_S, clock)
        self.tokens = Bucket(limits.tokens_per_minute / 60, limits.tokens_per_minute / 60 * BURST_S, clock)
        self.concurrency = limits.start_concurrency
        self.in_flight = 0
        self.urgent_waiting = 0
        self.successes = 0
        self.last_cut = -1e9
        self.cuts = 0
        self.recent: deque[bool] = deque(maxlen=RECENT_MIN)   # True: throttled
        self.paused = False
        self._changed = asyncio.Event()

    def slot(self, tokens: float, *, urgent: bool = False) -> _Slot:
        return _Slot(self, tokens, urgent)

    async def acquire(self, tokens: float, *, urgent: bool = False) -> None:
        """Wait for a free slot and the quota ``tokens`` need, then take them. ``urgent`` (a retry) goes before
        every waiter that is not: a retry that queued behind the fresh calls finished last, one call at a
        time, after the rest (measured: the last 0.6 s of an 8 s bench run)."""
        self.urgent_waiting += urgent
        try:
            while True:
                if self.paused or self.in_flight >= self.concurrency or (self.urgent_waiting and not urgent):
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                wait = max(self.requests.wait_s(1), self.tokens.wait_s(tokens))
                if wait > 0:
                    await self.sleep(min(wait, 1.0))
                    continue
                self.requests.take(1)
                self.tokens.take(tokens)
                self.in_flight += 1
                return
        finally:
            if urgent:
                self.urgent_waiting -= 1
                self._changed.set()

    def release(self) -> None:
        self.in_flight -= 1
        self._changed.set()

    def _remember(self, throttled: bool) -> None:
        size = max(RECENT_MIN, 2 * self.concurrency)
        if self.recent.maxlen != size:
            self.recent = deque(self.recent, maxlen=size)
        self.recent.append(throttled)

    def succeeded(self) -> None:
        self._remember(False)
        self.successes += 1
        if self.concurrency < self.limits.max_concurrency and (self.cuts == 0
                                                              or self.successes >= self.concurrency):
            self.concurrency += 1
            self.successes = 0
            self._changed.set()

    def throttled(self) -> None:
        self._remember(True)
        now = self.clock()
        share = sum(self.recent) / len(self.recent)
        if now - self.last_cut >= CUT_GAP_S and share > CUT_SHARE and len(self.recent) >= RECENT_MIN:
            self.concurrency = max(1, self.concurrency // 2)
            self.last_cut, self.successes = now, 0
            self.cuts += 1

    def set_paused(self, paused: bool) -> None:
        if paused != self.paused:
            self.paused = paused
            self._changed.set()


class _Slot:
    def __init__(self, limiter: JudgeLimiter, tokens: float, urgent: bool) -> None:
        self.limiter, self.tokens, self.urgent = limiter, tokens, urgent

    async def __aenter__(self) -> JudgeLimiter:
        await self.limiter.acquire(self.tokens, urgent=self.urgent)
        return self.limiter

    async def __aexit__(self, *exc: object) -> None:
        self.limiter.release()
