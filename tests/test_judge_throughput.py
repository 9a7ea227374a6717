"""The judging throughput benchmark (bench/judge_throughput.py, issue 14): the plumbing, quickly. Structure and
sanity only, never timings: every part ran and printed its comparison, nothing was lost or paid twice, every
request the server saw is a judge_calls row, every ratio came out finite — and the checks can fail."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH = REPO_ROOT / "bench" / "judge_throughput.py"
QUICK_ANSWERS = 60       # --quick


def finite(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_the_quick_bench_measures_every_part_loses_nothing_and_pays_nothing_twice(tmp_path):
    out = tmp_path / "j.json"
    proc = subprocess.run([sys.executable, str(BENCH), "--quick", "--json", str(out)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for line in ("boto3 alone, 16 threads:", "panel / ideal =", "panel / sequential =", "slow  quota 100/window",
                 "free  no quota"):
        assert line in proc.stdout, line
    assert "FAILED" not in proc.stdout
    doc = json.loads(out.read_text(encoding="utf-8"))
    parts = doc["parts"]
    assert list(parts) == ["threads", "panel", "sequential", "quota"]
    assert finite(doc["t429_s"]) and finite(doc["panel_over_sequential"])

    assert parts["threads"]["answered"] > 0 and finite(parts["threads"]["judgments_per_s"])

    panel = parts["panel"]
    assert panel["calls"] == panel["judgments"] == 2 * QUICK_ANSWERS and panel["figures"]["failed"] == 0
    assert all(finite(panel[k]) for k in ("judgments_per_s", "ideal_per_s", "of_ideal", "of_ideal_with_backoff",
                                          "of_threads", "rate_to_95_per_s", "cpu_ms_per_judgment"))
    check = panel["checks"]
    assert check["ok"] and not check["lost"] and not check["paid_twice"] and not check["unlogged"]
    fast = check["per_judge"]["fast"]
    assert fast["results"] == fast["server_answered"] == 2 * QUICK_ANSWERS
    # every attempt, the throttled ones too, is a request the server saw and a judge_calls row
    throttled = panel["server_outcomes"].get("random-throttle", 0)
    assert fast["server_requests"] == fast["judge_calls"] == 2 * QUICK_ANSWERS + throttled
    assert panel["figures"]["throttled"] == throttled

    seq = parts["sequential"]
    assert seq["scored"] == seq["calls"] == 4 and finite(seq["judgments_per_s"])

    quota = parts["quota"]
    assert quota["checks"]["ok"] and set(quota["judges"]) == {"slow", "mid", "free"}
    for name, judge in quota["judges"].items():
        assert judge["admitted"] > 0 and finite(judge["of_target"]), name
        mine = quota["checks"]["per_judge"][name]
        assert mine["server_requests"] == mine["judge_calls"] and mine["results"] >= mine["server_answered"] > 0
    assert quota["judges"]["free"]["quota_429"] == 0 and quota["judges"]["free"]["limiter_burst"] is None


def test_the_checks_see_a_lost_result_a_double_payment_and_an_unlogged_request(tmp_path):
    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        import judge_throughput as bench
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))
    db = bench.make_study(tmp_path, 2, concurrency=4, scale=10, free_concurrency=2)
    report = {"models": {bench.FAST: {"outcomes": {"answered": 4}, "paid": 4, "times": []}}, "paid_twice": [],
              "requests": 4}
    # the server answered 4 calls, and nothing reached the database: lost and unlogged
    got = bench.checks(report, db, {"fast": bench.FAST}, complete=True, answers=2)
    assert not got["ok"] and got["lost"] == ["fast"] and got["unlogged"] == ["fast"]
    assert got["per_judge"]["fast"] == {"server_requests": 4, "judge_calls": 0, "server_answered": 4, "results": 0,
                                        "ok_calls": 0}
    twice = bench.checks({**report, "paid_twice": [[bench.FAST, "ab12"]]}, db, {"fast": bench.FAST},
                         complete=False, answers=2)
    assert not twice["ok"] and twice["paid_twice"] == [[bench.FAST, "ab12"]]
    nothing = bench.checks({"models": {}, "paid_twice": [], "requests": 0}, db, {"fast": bench.FAST},
                           complete=False, answers=2)
    assert nothing["ok"]
