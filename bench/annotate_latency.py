"""Benchmark: the annotation workbench on a database of 1,000,000 answers.

A synthetic study of 20 conditions × 50,000 answers (1,000,000 generations) and a campaign of
10,000 items with overlap 3 (two judges scored the campaign's answers); before measuring,
6 annotators rate 2,500 items each through ordinary sessions (half the campaign's 30,000 places).
Then, in the same run:

- rating latency: the time from confirming a rating (``session.rate``) to the next item being
  ready (``session.next_item``: the claim transaction and the blind view), median and p95 over
  500 ratings, for a new annotator and for one who returns with 2,500 ratings done;
  baseline: a bare primary-key SELECT of one generation (median and p95 over the same count);
- the agreement report of the campaign (``engine.annotation.agreement.agreement_report``: α among the
  humans, against the panel and each judge at two levels with 1,000 bootstrap resamples,
  pairwise κ, disagreements); baseline: reading the campaign's ratings.

Targets: p95 < 30 ms; agreement < 2 s. Usage:
python bench/annotate_latency.py [--db PATH] [--ratings 500] (the database is built once and
reused when --db names an existing file; each run adds its ratings under new annotator names).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db import open_store  # noqa: E402
from engine.annotation.agreement import agreement_report  # noqa: E402
from engine.annotation.campaigns import create_campaign  # noqa: E402
from engine.annotation.session import AnnotationSession  # noqa: E402
from engine.common.hashing import json_hash  # noqa: E402
from engine.results.synthetic import SyntheticSpec, make_synthetic_study  # noqa: E402

CAMPAIGN = "bench"
PREFILL = [f"prefill-{i}" for i in range(6)]
PREFILL_EACH = 2500


def build(path: Path, conditions: int, answers: int, items: int) -> None:
    import numpy as np

    with open_store(path) as store:
        t = time.perf_counter()
        spec = SyntheticSpec(name="bench-annotate", conditions=[f"c{i:02d}" for i in range(conditions)],
                             roles={"c00": "baseline"}, judges=[], answers_per_condition=answers, questions=100)
        make_synthetic_study(store, spec)
        print(f"built {store.count('generations'):,} answers in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        c = create_campaign(store, name=CAMPAIGN, study="bench-annotate", scale="0-100", n_items=items, overlap=3,
                            seed=1)
        print(f"campaign of {items:,} items (overlap 3) sampled in {time.perf_counter() - t:.1f} s", flush=True)
        # two judges score the campaign's answers (what humans-vs-panel compares with)
        t = time.perf_counter()
        rubric = store.ensure_rubric(name="bench-rubric", content_hash=json_hash(["bench-rubric"]), body="bench",
                                     metrics=[{"name": "aligned", "scale": [0, 100], "higher_is": "better"}])
        rng = np.random.default_rng(0)
        gens = [it["generation_id"] for it in store.campaign_items(c["id"])]
        for j in ("judge-a", "judge-b"):
            jid = store.ensure_judge(name=j, provider="import", model=f"{j}-model", params={}, params_hash="{}")
            scores = np.clip(np.rint(rng.normal(70, 20, len(gens))), 0, 100)
            store.insert_judgments({"generation_id": g, "judge_id": jid, "rubric_id": rubric,
                                    "scores": {"aligned": float(s)}} for g, s in zip(gens, scores, strict=True))
        print(f"{2 * len(gens):,} judgments of the campaign's answers in {time.perf_counter() - t:.1f} s", flush=True)
        t = time.perf_counter()
        for who in PREFILL:
            s = AnnotationSession(store, CAMPAIGN, who)
            r = random.Random(who)
            for _ in range(PREFILL_EACH):
                if s.next_item() is None:
                    break
                s.rate(r.randint(0, 100))
        print(f"{len(PREFILL) * PREFILL_EACH:,} ratings by {len(PREFILL)} annotators through sessions in "
              f"{time.perf_counter() - t:.1f} s", flush=True)


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def rate_loop(store, who: str, n: int) -> list[float]:
    s = AnnotationSession(store, CAMPAIGN, who)
    r = random.Random(who)
    if s.next_item() is None:
        raise SystemExit(f"campaign {CAMPAIGN!r} has nothing left for {who}; build a new database")
    out = []
    for _ in range(n):
        t = time.perf_counter()
        s.rate(r.randint(0, 100))
        view = s.next_item()
        out.append(time.perf_counter() - t)
        if view is None:
            break
    s.release()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path)
    ap.add_argument("--conditions", type=int, default=20)
    ap.add_argument("--answers", type=int, default=50_000, help="answers per condition (50,000 -> 1M)")
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--ratings", type=int, default=500, help="ratings timed per annotator")
    args = ap.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    if not path.exists():
        build(path, args.conditions, args.answers, args.items)

    with open_store(path) as store:
        n_gen = store.count("generations")
        c = store.find_campaign(CAMPAIGN)
        stamp = f"{os.getpid()}-{int(time.time())}"
        # baseline: a bare primary-key read of one answer
        ids = random.Random(0).sample(range(1, n_gen + 1), args.ratings)
        base = []
        for gid in ids:
            t = time.perf_counter()
            store.generation_by_id(gid)
            base.append(time.perf_counter() - t)
        new = rate_loop(store, f"new-{stamp}", args.ratings)
        back = rate_loop(store, PREFILL[0], args.ratings)  # returns with 2,500 done
        prog = store.campaign_progress(c["id"])

        t = time.perf_counter()
        rows = store.campaign_rating_rows(c["id"])
        read = time.perf_counter() - t
        t = time.perf_counter()
        report = agreement_report(store, CAMPAIGN)
        agree = time.perf_counter() - t

    ms = 1000.0
    print(f"answers: {n_gen:,}; campaign {CAMPAIGN!r}: {prog['total_items']:,} items, overlap {prog['overlap']}, "
          f"{prog['done']:,} ratings done of {prog['target']:,}")
    print(f"baseline: primary-key SELECT of one generation: median {statistics.median(base) * ms:.3f} ms, "
          f"p95 {pct(base, 0.95) * ms:.3f} ms")
    for label, xs in (("new annotator", new), ("returning annotator (2,500 done)", back)):
        p95 = pct(xs, 0.95)
        print(f"rate -> next item ready, {label}: median {statistics.median(xs) * ms:.2f} ms, p95 {p95 * ms:.2f} ms "
              f"over {len(xs)} ratings (target p95 < 30 ms: {'met' if p95 < 0.030 else 'NOT met'}); "
              f"median {statistics.median(xs) / statistics.median(base):.0f}x the baseline")
    print(f"baseline: reading the campaign's {len(rows):,} rating rows: {read:.3f} s")
    print(f"agreement report: {agree:.2f} s ({len(report['agreement'])} alpha rows with 1,000-resample CIs, "
          f"{len(report['kappa'])} kappa pairs, {report['disagreements']:,} disagreements) "
          f"(target < 2 s: {'met' if agree < 2.0 else 'NOT met'}); {agree / read:.1f}x the read")


if __name__ == "__main__":
    main()
