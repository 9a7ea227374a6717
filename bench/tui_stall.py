"""Benchmark: how long the TUI's UI thread stalls while its screens load, on 1,000,000 scores.

The app runs headless (Textual's Pilot, 120x40) on bench/summary_scale.py's database (20
conditions x 4 judges x 2 metrics x 6,250 answers = 1,000,000 scores; built once, reused with
--db). A task on the UI thread's event loop sleeps 5 ms at a time and records how late it wakes:
that lateness is the time the loop could not answer a key or draw (a stall). The walk visits
every area by its key, the Results views, the drill-down to a condition's answers and one answer
in full, the Eval queue through a poll, then every area again; each step lasts until its reads
(and the Results summary) are on the screen. Per step: the longest stall, the CPU time the UI thread
used over it (the stall and the 5 ms sleep: about stall + 5 ms when the thread worked throughout; less,
it waited for a core or for the GIL — the machine's load, not only our work), and the 99th percentile.
A step with nothing to do comes first: the stalls the machine itself causes (other processes, the
garbage collector) — on a shared machine they are not zero.

Both versions run in this one run, one after the other, each in a fresh process on its own copy of
the database: "before" is the code at --before (default: the last commit whose screens read the
database on the UI thread), checked out to a temporary folder; "after" is this checkout.
Target: no stall over 50 ms after.

Usage: python bench/tui_stall.py [--db PATH] [--answers N] [--before REF] [--only before|after] [--runs N]
(--runs: each version walks N times, alternating with the other; per step, the median of the walks.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "9662c52"  # the last commit whose screens read the database on the UI thread
TICK_S = 0.005
SIZE = (120, 40)
TARGET_MS = 50.0
# (step, keys pressed from where the last step ended, seconds to stay after it has loaded)
WALK: list[tuple[str, list[str], float]] = [
    ("studies (start)", [], 0.3),
    ("idle: nothing to do (noise floor)", [], 2.0),
    ("data", ["2"], 0.3),
    ("data: eval sets", ["v", "v"], 0.3),
    ("train", ["3"], 0.3),
    ("eval queue (+ a poll)", ["4"], 2.5),
    ("judges", ["5"], 0.3),
    ("annotate", ["6"], 0.3),
    ("results: summary", ["7"], 0.3),
    ("results: rates", ["v"], 0.3),
    ("results: breakdowns", ["v"], 0.3),
    ("results: agreement", ["v"], 0.3),
    ("results: comparisons", ["v"], 0.3),
    ("results: counts", ["v"], 0.3),
    ("results: answers", ["v", "enter"], 0.3),
    ("results: answer in full", ["enter"], 0.3),
    ("results: back", ["escape", "escape"], 0.3),
    ("studies again", ["1"], 0.3),
    ("data again", ["2"], 0.3),
    ("eval queue again", ["4"], 0.3),
    ("judges again", ["5"], 0.3),
    ("annotate again", ["6"], 0.3),
    ("results again", ["7"], 2.5),
]


# -- one version, in its own process ------------------------------------------------------------------


async def walk(db_path: str) -> dict[str, dict[str, float]]:
    import db
    from emtui.app import create_app
    from emtui.screens.results import ResultsScreen

    try:  # the new code: reads in threads, said by emtui.loading
        from emtui.loading import pending_loads
    except ImportError:  # the old code reads while handling the key: done once the key is handled
        def pending_loads(app):  # type: ignore[no-redef]
            return []

    def busy(app) -> bool:
        screen = app.screen
        if pending_loads(app):
            return True
        return isinstance(screen, ResultsScreen) and (screen.computing or any(
            v.get("pending") for v in getattr(screen, "extra", {}).values()))

    lags: list[tuple[float, float, float]] = []  # (when, how late, CPU time the UI thread used meanwhile)
    stop = False

    async def monitor() -> None:
        while not stop:
            t, cpu = time.perf_counter(), time.thread_time()
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            lags.append((now, now - t - TICK_S, time.thread_time() - cpu))

    store = db.open_store(db_path)
    out: dict[str, dict[str, float]] = {}
    try:
        app = create_app(store, keymap={})
        task = asyncio.ensure_future(monitor())
        start = time.perf_counter()
        async with app.run_test(size=SIZE) as pilot:
            for step, keys, dwell in WALK:
                if step != WALK[0][0]:
                    start = time.perf_counter()
                for key in keys:
                    await pilot.press(key)
                deadline = time.monotonic() + 300
                while busy(app):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{step}: still loading after 300 s")
                    await asyncio.sleep(0.02)
                loaded = time.perf_counter() - start
                await asyncio.sleep(dwell)
                end = time.perf_counter()
                seen = sorted((lag, cpu) for when, lag, cpu in lags if start <= when <= end)
                out[step] = {"max_ms": 1000 * (seen[-1][0] if seen else 0.0),
                             "cpu_ms": 1000 * (seen[-1][1] if seen else 0.0),
                             "p99_ms": 1000 * (seen[int(0.99 * (len(seen) - 1))][0] if seen else 0.0),
                             "loaded_s": loaded, "ticks": len(seen), "screen": type(app.screen).__name__}
        stop = True
        await task
    finally:
        store.close()
    return out


def measure(db_path: str) -> None:
    print(json.dumps(asyncio.run(walk(db_path))))


# -- both versions, compared ------------------------------------------------------------------------------


def run_version(code: Path, source_db: Path, work: Path, name: str) -> dict[str, dict[str, float]]:
    copy = work / f"{name}.db"
    shutil.copy(source_db, copy)  # each its own copy: the new code migrates the file it opens
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(code), str(code / ".shim")]), "HF_HUB_OFFLINE": "1"}
    env.pop("TEXTUAL", None)
    t = time.perf_counter()
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "tui_stall.py"), "--measure", str(copy)], env=env,
                         capture_output=True, text=True, cwd=str(code), check=False)
    if out.returncode != 0:
        sys.exit(f"{name}: the walk failed\n{out.stderr[-4000:]}")
    print(f"{name}: walked in {time.perf_counter() - t:.0f} s", flush=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def checkout(ref: str, into: Path) -> Path:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref], capture_output=True, check=True).stdout
    into.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    shim = ROOT / ".shim"
    if shim.exists() and not (into / ".shim").exists():  # the shipped data/ made importable, as in a checkout
        (into / ".shim").mkdir()
        (into / ".shim" / "emtui_data").symlink_to(into / "data")
    return into


def build(path: Path, answers: int, code: Path) -> None:
    """The database, built by the code of ``code`` (the older schema: the newer code upgrades its copy)."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    script = ("import sys; sys.path.insert(0, 'bench'); from pathlib import Path; import summary_scale; "
              f"summary_scale.build(Path({str(path)!r}), {answers})")
    subprocess.run([sys.executable, "-c", script], env=env, cwd=str(code), check=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", type=Path, help="the database to reuse (built here when absent)")
    ap.add_argument("--answers", type=int, default=6250, help="answers per condition (6250 -> 1M scores)")
    ap.add_argument("--before", default=BEFORE, help="the git ref of the code to compare with")
    ap.add_argument("--only", choices=("before", "after"))
    ap.add_argument("--runs", type=int, default=1, help="walks of each version (alternating); the median is shown")
    ap.add_argument("--measure", metavar="DB", help=argparse.SUPPRESS)  # one version's walk (a subprocess)
    args = ap.parse_args()
    if args.measure:
        measure(args.measure)
        return
    results: dict[str, list[dict[str, dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        before_code = checkout(args.before, work / "before")
        path = args.db or work / "bench.db"
        if not path.exists():
            build(path, args.answers, before_code)
        for _ in range(args.runs):  # alternating: a machine whose load drifts slows both alike
            for name, code in (("before", before_code), ("after", ROOT)):
                if args.only in (None, name):
                    results.setdefault(name, []).append(run_version(code, path, work, name))
    report(results, args.runs)


def report(results: dict[str, list[dict[str, dict[str, float]]]], runs: int) -> None:
    steps = [s for s, _, _ in WALK]
    names = list(results)

    def med(name: str, step: str, key: str) -> float:
        return statistics.median(r[step][key] for r in results[name])

    print(f"\nlongest UI-thread stall per step, ms: the median of {runs} walk(s), each walk's in brackets when "
          f"more than one; cpu: the UI thread's CPU time over that stall and its 5 ms sleep (well under stall + 5: "
          f"it waited for a core or the GIL); loaded: seconds until the step's data was on screen. "
          f"{SIZE[0]}x{SIZE[1]}, CPUs: {os.cpu_count()}")
    print(f"{'step':34}" + "".join(f"{n + ': max (cpu) p99 loaded [each walk]':>52}" for n in names))
    for s in steps:
        line = f"{s:34}"
        for n in names:
            walks = ", ".join(f"{r[s]['max_ms']:.0f}" for r in results[n])
            each = f" [{walks}]" if runs > 1 else ""
            line += (f"{med(n, s, 'max_ms'):>16.1f} ({med(n, s, 'cpu_ms'):5.1f}) {med(n, s, 'p99_ms'):6.1f} "
                     f"{med(n, s, 'loaded_s'):6.2f} s{each:>20}")
        print(line)
    for n in names:
        worst = {s: med(n, s, "max_ms") for s in steps}
        over = [s for s in steps if worst[s] > TARGET_MS]
        print(f"{n}: worst stall (median of walks) {max(worst.values()):.1f} ms; median of the steps' worst "
              f"{statistics.median(worst.values()):.1f} ms; steps over {TARGET_MS:.0f} ms: {', '.join(over) or 'none'}")


if __name__ == "__main__":
    main()
