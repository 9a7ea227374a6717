"""Benchmark: `emtui summary --format json` on 1,000,000 judgments against a bare SQL scan.

A synthetic study: 20 conditions x 4 judges x 2 metrics x 6,250 answers = 1,000,000 scores
(500,000 judge calls, each scoring both metrics). Both timings come from this one run:

- baseline: one bare SELECT of every score with its condition, judge and answer (fetchall of
  plain tuples, one thread: the least Python can do to see every row);
- summary: `emtui summary --format json` as a person runs it (a fresh process), with the
  default 10,000 bootstrap resamples per CI, agreement, kappa and comparisons.

The two alternate (scan, summary, scan, summary, ...) so that a machine whose speed drifts
slows both alike. Prints the best and median of each, the ratio of the bests and the median
of the pairs' ratios, and the CPU time the summary used (its threads included; least and median
of the runs): on a machine with few cores the summary is bound by that CPU time, not by the read,
and on a shared one the CPU time is the figure other engineers' load does not move.

Usage: python bench/summary_scale.py [--db PATH] [--answers N] [--repeat K]
(the database is built once and reused when --db names an existing file).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db import open_store  # noqa: E402
from engine.results.synthetic import SyntheticSpec, make_synthetic_study  # noqa: E402


def build(path: Path, answers: int) -> None:
    spec = SyntheticSpec(name="bench", conditions=[f"c{i:02d}" for i in range(20)],
                         roles={"c00": "baseline"}, judges=["j1", "j2", "j3", "j4"],
                         answers_per_condition=answers, questions=50, missing_rate=0.02,
                         aligned_means={f"c{i:02d}": 80.0 - 2 * i for i in range(20)})
    with open_store(path) as store:
        t = time.perf_counter()
        make_synthetic_study(store, spec)
        print(f"built {store.count('judgment_scores'):,} scores ({store.count('judgments'):,} judgments, "
              f"{store.count('generations'):,} answers) in {time.perf_counter() - t:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path)
    ap.add_argument("--answers", type=int, default=6250, help="answers per condition (6250 -> 1M scores)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = args.db or Path(tempfile.mkdtemp()) / "bench.db"
    if not path.exists():
        build(path, args.answers)

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    scans, runs, cpus = [], [], []
    # scan and summary alternate, so that a machine whose speed drifts (a shared VM) slows
    # both alike; each pair also gives its own ratio
    with open_store(path) as store:
        n = store.count("judgment_scores")
        for _ in range(args.repeat):
            t = time.perf_counter()
            rows = store.scan_scores()
            scans.append(time.perf_counter() - t)
            assert rows == n
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "emtui", "--db", str(path), "summary", "--format", "json"],
                                 capture_output=True, env=env)
            runs.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            if out.returncode != 0:
                sys.exit(out.stderr.decode())
    scan, summary = min(scans), min(runs)
    paired = sorted(r / s for r, s in zip(runs, scans, strict=True))
    print(f"scores: {n:,}; CPUs: {os.cpu_count()}; {args.repeat} alternating runs of each")
    print(f"bare SQL scan (fetchall of every score row): best {scan:.2f} s, median {statistics.median(scans):.2f} s")
    print(f"emtui summary --format json (new process, 10,000 resamples): best {summary:.2f} s, "
          f"median {statistics.median(runs):.2f} s; CPU time of the best {cpus[runs.index(summary)]:.2f} s")
    # on a shared machine the wall times swing with the others' load; the CPU time the summary needs does not
    print(f"summary CPU time (its threads and reader processes): least {min(cpus):.2f} s, "
          f"median {statistics.median(cpus):.2f} s; load average {os.getloadavg()[0]:.1f} at the end")
    print(f"ratio summary / scan: best/best {summary / scan:.2f}x, median of pairs {statistics.median(paired):.2f}x "
          f"(pairs {paired[0]:.2f}-{paired[-1]:.2f}x; target <= 3x)")


if __name__ == "__main__":
    main()
