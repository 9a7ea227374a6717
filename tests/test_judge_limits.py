"""A judge's limiter (engine/judging/limits.py) on a clock the test moves: the buckets hold a judge to its
requests and tokens per minute; the concurrency starts slow, grows, is cut by a run of throttles (once per
burst) and not by a few throttles at random."""

from __future__ import annotations

import asyncio

from engine.judging.limits import JudgeLimiter, Limits, default_limits


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.t += s


def limiter(rpm=60_000.0, tpm=10**9, most=64, start=8) -> tuple[JudgeLimiter, Clock]:
    clock = Clock()
    return JudgeLimiter(Limits(rpm, tpm, most, start), clock=clock, sleep=clock.sleep), clock


def test_the_request_bucket_holds_a_judge_to_its_rate():
    async def run() -> float:
        lim, clock = limiter(rpm=120)  # 2 a second, 10 at once (five seconds of it)
        for _ in range(30):
            await lim.acquire(1)
            lim.release()
        return clock.t

    assert 9.5 <= asyncio.run(run()) <= 10.5  # 10 at once, then 20 more at 2 a second


def test_the_token_bucket_counts_what_a_call_reserves():
    async def run() -> float:
        lim, clock = limiter(tpm=60_000)  # 1,000 tokens a second, 5,000 at once
        for _ in range(10):
            await lim.acquire(1_000)
            lim.release()
        return clock.t

    assert 4.5 <= asyncio.run(run()) <= 5.5


def test_slow_start_then_a_run_of_throttles_cuts_once_per_burst():
    lim, clock = limiter(start=4)
    for _ in range(20):
        lim.succeeded()
    assert lim.concurrency == 24  # +1 a success until the first cut
    for _ in range(30):  # a burst of 429s: one cut
        lim.throttled()
    assert (lim.cuts, lim.concurrency) == (1, 12)
    clock.t += 2
    lim.throttled()  # still mostly throttles: cut again, a second later
    assert (lim.cuts, lim.concurrency) == (2, 6)
    for _ in range(6):  # after a cut it grows by one per round of successes
        lim.succeeded()
    assert lim.concurrency == 7


def test_a_few_throttles_at_random_do_not_starve_the_judge():
    lim, clock = limiter(start=8)
    for i in range(400):
        clock.t += 0.05
        (lim.throttled if i % 10 == 0 else lim.succeeded)()  # 10% throttled, spread out
    assert lim.cuts == 0 and lim.concurrency == 64


def test_throttles_at_random_do_not_cut_the_judge_in_any_of_many_runs():
    """10% of calls throttled at random (not evenly): a window of 20 calls holds more than 25% of them now and
    then (measured: the bench's panel at 51-84% of ideal with the limiter cut to a median of 35 of 64)."""
    import random

    for seed in range(30):
        rng = random.Random(seed)
        lim, clock = limiter(start=8)
        for _ in range(3_000):
            clock.t += 0.005
            (lim.throttled if rng.random() < 0.1 else lim.succeeded)()
        assert lim.cuts == 0 and lim.concurrency == 64, seed


def test_quotas_of_the_field_s_judges_and_their_cross_region_profiles():
    nova = default_limits("bedrock", "amazon.nova-pro-v1:0", {})
    assert (nova.requests_per_minute, nova.tokens_per_minute) == (100, 400_000)
    profile = default_limits("bedrock", "us.amazon.nova-pro-v1:0", {})
    assert (profile.requests_per_minute, profile.tokens_per_minute) == (200, 800_000)
    own = default_limits("bedrock", "amazon.nova-pro-v1:0", {"requests_per_minute": 7, "max_concurrency": 3})
    assert (own.requests_per_minute, own.max_concurrency, own.start_concurrency) == (7, 3, 3)
