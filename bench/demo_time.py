"""Benchmark: the offline demo's time to Results (issue 15: under 5 minutes on 2 CPU cores), against the bare cost
of the same stages run in this process, in the same run.

- **chain** (what a person gets): ``emtui demo --db DB --no-tui`` in a fresh folder — the tiny model built,
  the demo studies registered, the chain queued, a detached worker started — then the worker runs it (one
  process per job, as always) while this script polls the database every ``--poll`` s. Milestones, in seconds
  from the command's start: the command back (chain queued), the first training step stored, each job's claim
  and end (from the jobs' own events), every job done; then the Results screen's numbers computed as the
  screen computes them (``emtui.summary_process.compute``: the summary in a child process, the screen's
  resamples); with ``--tui`` (default), the TUI opened headless (Textual's Pilot, 80x24) on the finished
  database: seconds from its start to the Results screen (key 7) showing the summary.
- **bare** (the baseline): the same work in one process (a fresh one each repeat), with no worker and no job
  processes — the tiny
  model built, the chain queued by the same function, each job claimed in turn and its handler called
  directly, then ``build_summary`` with the same options. ``chain / bare`` is what the run layer adds: a
  process per job (Python, torch and the model loaded again each time), the worker's polls between jobs.

The two alternate (``--repeat``; the order reversed every other round). The worker is stopped at the end of
each chain run (``emtui worker stop``). Nothing is left behind but ``--json``.

Usage: python bench/demo_time.py [--repeat 1] [--no-tui] [--poll 0.2] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db import open_store  # noqa: E402

LIMIT_S = 300.0  # the issue: the Results screen within 5 minutes on 2 CPU cores
STUDY = "demo"
ENDED = ("done", "failed", "cancelled")


def env() -> dict[str, str]:
    paths = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)), "HF_HUB_OFFLINE": "1"}


def summary_options() -> dict[str, Any]:
    from engine.settings import Settings

    s = Settings()
    return {"study": STUDY, "n_resamples": s.tui_resamples, "agreement_resamples": s.tui_agreement_resamples}


def label(job: dict[str, Any] | None) -> str:
    assert job is not None
    payload = json.loads(job["payload"] or "{}")
    what = payload.get("condition") or payload.get("study") or ""
    return f"{job['id']} {job['kind']}" + (f" {what}" if isinstance(what, str) and what else "")


# -- the chain, as a person runs it ------------------------------------------------------------------------------


def chain(folder: Path, poll_s: float, tui: bool) -> dict[str, Any]:
    db = folder / "demo.db"
    cmd = [sys.executable, "-m", "emtui", "demo", "--db", str(db), "--no-tui"]
    t0 = time.time()
    done = subprocess.run(cmd, env=env(), capture_output=True, text=True, cwd=folder)
    queued = time.time() - t0
    if done.returncode:
        sys.exit(f"emtui demo failed: {done.stderr.strip()}")
    out: dict[str, Any] = {"queued_s": queued, "first_step_s": None}
    try:
        with open_store(db) as store:
            deadline = t0 + 3 * LIMIT_S
            while True:
                if out["first_step_s"] is None and store.count("train_metrics"):
                    out["first_step_s"] = time.time() - t0
                jobs = store.list_jobs().rows
                if jobs and all(j["status"] in ENDED for j in jobs):
                    break
                if time.time() > deadline:
                    sys.exit(f"the demo's jobs were not done after {3 * LIMIT_S:.0f} s: "
                             f"{[(j['id'], j['status']) for j in jobs]}")
                time.sleep(poll_s)
            out["all_done_s"] = time.time() - t0
            out["jobs"] = []
            for job in sorted(jobs, key=lambda j: j["id"]):
                events = {e["event"]: e["at"] for e in store.job_events(job["id"])}
                out["jobs"].append({"job": label(store.get_job(job["id"])), "status": job["status"],
                                    "claimed_s": events.get("claimed", t0) - t0,
                                    "ended_s": max(events.get(e, 0.0) for e in ENDED) - t0})
            out["failed"] = [j["job"] for j in out["jobs"] if j["status"] != "done"]
        from emtui.summary_process import compute

        t = time.time()
        report = compute(db, "summary", summary_options())
        out["summary_s"] = time.time() - t
        out["results_s"] = time.time() - t0
        out["scores"] = scored(report)
        if tui:
            out["tui"] = asyncio.run(results_on_screen(db))
    finally:
        subprocess.run([sys.executable, "-m", "emtui", "--db", str(db), "worker", "stop"], env=env(),
                       capture_output=True, cwd=folder)
    return out


def scored(report: dict[str, Any]) -> int:
    """How many (condition, judge, metric) cells of the summary have a number."""
    return sum(1 for s in report.get("scores", []) if s.get("n"))


async def results_on_screen(db: Path) -> dict[str, Any]:
    """Seconds from the app's start to its first screen, and to the Results screen showing the summary."""
    from emtui.app import create_app
    from emtui.loading import pending_loads
    from emtui.screens.results import ResultsScreen

    with open_store(db) as store:
        t0 = time.perf_counter()
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            while pending_loads(app):
                await asyncio.sleep(0.02)
            opened = time.perf_counter() - t0
            await pilot.press("7")
            deadline = time.monotonic() + 120
            while True:
                screen = app.screen
                if isinstance(screen, ResultsScreen) and screen.report is not None and not pending_loads(app):
                    break
                if time.monotonic() > deadline:
                    sys.exit("the Results screen showed no summary after 120 s")
                await asyncio.sleep(0.02)
            return {"open_s": opened, "results_s": time.perf_counter() - t0,
                    "study": str((screen.study or {}).get("name"))}


# -- the baseline: the same stages in this process ------------------------------------------------------------------


def bare(folder: Path) -> dict[str, Any]:
    """The bare side in a fresh process of its own, so that every repeat pays Python's imports and the tiny
    tokenizer's training once, as the chain's first job does (in this process they would be warm after the first
    repeat)."""
    out = folder / "bare.json"
    done = subprocess.run([sys.executable, __file__, "--bare-child", str(folder), str(out)], env=env(), cwd=folder)
    if done.returncode:
        sys.exit(f"the bare side failed ({done.returncode})")
    return dict(json.loads(out.read_text(encoding="utf-8")))


def bare_stages(folder: Path) -> dict[str, Any]:
    from engine.models.locate import ensure_tiny
    from engine.results.summary import SummaryOptions, build_summary
    from engine.runs.child import run_handler
    from engine.runs.context import JobContext
    from engine.runs.demo_chain import queue_demo
    from engine.runs.kinds import kinds, resolve
    from engine.runs.progress import Progress

    db = folder / "demo.db"
    out: dict[str, Any] = {"jobs": []}
    t0 = time.time()
    with open_store(db) as store:
        queue_demo(store)
        ensure_tiny(db)
        out["queued_s"] = time.time() - t0
        log = open(folder / "handlers.log", "w", encoding="utf-8")  # what the handlers print (a job's log)
        with log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            while (job := store.claim_job("bench", kinds=list(kinds()), lease_s=3600, gpus=0)) is not None:
                t = time.time()
                try:
                    result, error = run_handler(resolve(job["kind"]), JobContext(job=job, store=store,
                                                                              progress=Progress(), db_path=db)), None
                except Exception as exc:  # noqa: BLE001 - a failed stage is reported, as the worker would
                    result, error = None, f"{type(exc).__name__}: {exc}"
                store.finish_job(job["id"], owner="bench", result=result, error=error)
                out["jobs"].append({"job": label(job), "s": time.time() - t, "error": error})
        out["all_done_s"] = time.time() - t0
        t = time.time()
        report = build_summary(store, SummaryOptions(**summary_options()))
        out["summary_s"] = time.time() - t
        out["results_s"] = time.time() - t0
        out["scores"] = scored(report)
    return out


# -- the run ---------------------------------------------------------------------------------------------------------


def main() -> None:
    if sys.argv[1:2] == ["--bare-child"]:  # the bare side's own process (see bare)
        os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
        result = bare_stages(Path(sys.argv[2]))
        Path(sys.argv[3]).write_text(json.dumps(result), encoding="utf-8")
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--poll", type=float, default=0.2, help="seconds between looks at the chain's jobs")
    ap.add_argument("--no-tui", dest="tui", action="store_false", help="skip the headless TUI opening")
    ap.add_argument("--only", choices=("chain", "bare"), help="measure one side (no ratio)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    os.environ.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at the start", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"chain": [], "bare": []}
    sides = [args.only] if args.only else ["chain", "bare"]
    for i in range(args.repeat):
        for side in sides if i % 2 == 0 else sides[::-1]:
            folder = Path(tempfile.mkdtemp(prefix=f"demo-{side}-"))
            try:
                got = chain(folder, args.poll, args.tui) if side == "chain" else bare(folder)
            finally:
                shutil.rmtree(folder, ignore_errors=True)
            runs[side].append(got)
            print(f"{side} run {i + 1}: Results numbers at {got['results_s']:.1f} s", flush=True)
    report(runs)
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "load_end": os.getloadavg()[0], "cpus": os.cpu_count()},
                                        indent=2), encoding="utf-8")


def report(runs: dict[str, list[dict[str, Any]]]) -> None:
    def med(side: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[side])

    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    for i, r in enumerate(runs["chain"]):
        print(f"\nchain run {i + 1} (seconds from `emtui demo --no-tui`):")
        print(f"  {'chain queued, worker started (command back)':48} {r['queued_s']:7.1f}")
        print(f"  {'first training step stored':48} {r['first_step_s'] or float('nan'):7.1f}")
        for j in r["jobs"]:
            print(f"  {'job ' + j['job'] + ' ' + j['status']:48} {j['ended_s']:7.1f}   "
                  f"(claimed at {j['claimed_s']:.1f}, ran {j['ended_s'] - j['claimed_s']:.1f} s)")
        print(f"  {'every job ended (seen by the poll)':48} {r['all_done_s']:7.1f}")
        verdict = "met" if r["results_s"] < LIMIT_S else "NOT met"
        print(f"  {'Results numbers computed (summary {:.1f} s)'.format(r['summary_s']):48} {r['results_s']:7.1f}"
              f"   {r['scores']} scored cells; limit {LIMIT_S:.0f} s: {verdict}")
        if r["failed"]:
            print(f"  jobs not done: {', '.join(r['failed'])}")
        if "tui" in r:
            t = r["tui"]
            print(f"  TUI (Pilot, 80x24) on the finished demo: first screen {t['open_s']:.1f} s, Results "
                  f"screen with the summary of {t['study']!r} {t['results_s']:.1f} s after its start")
    for i, r in enumerate(runs["bare"]):
        print(f"\nbare run {i + 1} (the same stages in one process):")
        print(f"  {'tiny model built, chain queued':48} {r['queued_s']:7.1f}")
        for j in r["jobs"]:
            print(f"  {'job ' + j['job']:48} {j['s']:7.1f}" + (f"   FAILED: {j['error']}" if j["error"] else ""))
        print(f"  {'summary':48} {r['summary_s']:7.1f}")
        print(f"  {'Results numbers computed':48} {r['results_s']:7.1f}   {r['scores']} scored cells")
    if runs["chain"] and runs["bare"]:
        pairs = [c["results_s"] / b["results_s"] for c, b in zip(runs["chain"], runs["bare"], strict=True)]
        print(f"\nResults numbers: chain median {med('chain', 'results_s'):.1f} s, bare median "
              f"{med('bare', 'results_s'):.1f} s: ratio {med('chain', 'results_s') / med('bare', 'results_s'):.2f}x "
              f"(pairs {', '.join(f'{p:.2f}' for p in pairs)}); the issue's limit {LIMIT_S:.0f} s")
        for stage in ("queued_s", "all_done_s"):
            print(f"  {stage[:-2]}: chain {med('chain', stage):.1f} s, bare {med('bare', stage):.1f} s")


if __name__ == "__main__":
    main()
