"""Benchmark: ``emtui merge OTHER.db`` against a plain SQLite copy of the same rows, in one run.

Two boxes' databases of ``--answers`` answers each are built once (the synthetic judged study of
engine/results/synthetic.py — two conditions, ``--judges`` judges, two metrics — plus one judge call per
score, as the judging engine logs one per metric; box A's study is ``box-a``, box B's ``box-b``; the judges and
the rubric are the same rows on both boxes, as they are when two boxes run one panel). Then, alternating,
``--repeat`` times, each a fresh process on a fresh copy of its target, timed from the parent:

- **baseline**: B's rows copied as they are into an empty database (``Store.copy_rows_raw``: ``ATTACH`` +
  ``INSERT … SELECT`` per table, in the merge's table order, one transaction): SQLite writing the same rows
  and their indexes, with no matching, no id mapping and no provenance;
- **merge into empty**: ``emtui --db EMPTY merge B.db`` (the same target as the baseline: the ratio is what
  matching and provenance cost);
- **merge into A**: ``emtui --db A merge B.db`` (two boxes' results gathered: the target holds A's rows);
- **merge again**: the same command on its result (idempotent: nothing added, every row looked up).

Each is a child process of its own (Python's start and imports included on both sides); its peak resident
memory is its own ``VmHWM`` (/proc/self/status, written at its exit: ``ru_maxrss`` would not do, since Linux
carries the parent's peak over a fork and exec into the child's). Prints the medians, the ratios of the medians to the
baseline and the median of the pairs' ratios (each repeat's merge over that repeat's copy), and the same for the
children's CPU time (user + system), which a machine shared with other work disturbs less than wall time.

Usage: python bench/merge_speed.py [--answers 50000] [--judges 2] [--repeat 3] [--folder DIR] [--json FILE]
(the boxes are built once per folder and reused when ``--folder`` names one that holds them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
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


def build_box(path: Path, name: str, answers: int, judges: int, seed: int) -> dict[str, int]:
    """One box's database: a synthetic judged study of ``answers`` answers (two conditions) and one judge call
    per score. Returns its row counts."""
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    spec = SyntheticSpec(name=name, conditions=["treated", "control"], roles={"control": "control"},
                         judges=[f"judge-{i}" for i in range(judges)], answers_per_condition=answers // 2,
                         questions=50, seed=seed)
    with open_store(path) as store:
        study_id = make_synthetic_study(store, spec)
        at = time.time()
        calls = [{"judge_id": r["judge_id"], "generation_id": r["generation_id"], "rubric_id": r["rubric_id"],
                  "metric": r["metric"], "attempt": 1, "outcome": "ok", "sent": 1, "status": 200,
                  "input_tokens": 600, "output_tokens": 1, "cost_usd": 0.0002, "latency_ms": 400,
                  "at": at + i * 0.01} for i, r in enumerate(store.answer_scores(study_id))]
        store.log_judge_calls(calls)
        return store.counts()


def boxes(folder: Path, answers: int, judges: int) -> tuple[Path, Path, dict[str, int]]:
    """Boxes A and B (and an empty database), built unless the folder holds them; B's row counts."""
    a, b, empty = folder / "a.db", folder / "b.db", folder / "empty.db"
    if not (a.exists() and b.exists() and empty.exists()):
        for p in (a, b, empty):
            p.unlink(missing_ok=True)
        t = time.perf_counter()
        build_box(a, "box-a", answers, judges, seed=1)
        build_box(b, "box-b", answers, judges, seed=2)
        open_store(empty).close()
        print(f"built two boxes in {time.perf_counter() - t:.1f} s")
    with open_store(b) as store:
        counts = {t: n for t, n in store.counts().items() if n}
    return a, b, counts


def run_child(argv: list[str]) -> tuple[float, float, float | None, str]:
    """(wall seconds, CPU seconds, peak resident MiB, stdout) of ``emtui ARGV`` (or ``raw-copy TARGET SOURCE``)
    in a process of its own that writes its peak at exit."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    with tempfile.TemporaryDirectory() as tmp:
        peak = Path(tmp) / "peak"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child", str(peak), *argv], env=env, capture_output=True,
                              text=True)
        wall = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        if done.returncode:
            sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        kib = peak.read_text().strip() if peak.exists() else ""
    return wall, cpu, int(kib) / 1024 if kib else None, done.stdout


def child(peak: str, argv: list[str]) -> None:
    """The measured process: ``emtui ARGV`` as ``python -m emtui`` runs it, or the raw copy; its peak resident
    memory (VmHWM) written to ``peak`` at exit."""
    import atexit
    import runpy

    def write_peak() -> None:
        with open("/proc/self/status", encoding="ascii") as f:
            kib = next((line.split()[1] for line in f if line.startswith("VmHWM:")), "")
        Path(peak).write_text(kib)

    if os.path.exists("/proc/self/status"):
        atexit.register(write_peak)
    if argv[0] == "raw-copy":
        raw_copy(argv[1], argv[2])
        return
    sys.argv = ["emtui", *argv]
    runpy.run_module("emtui", run_name="__main__", alter_sys=True)


def raw_copy(target: str, source: str) -> None:
    with open_store(Path(target)) as store:
        n = store.copy_rows_raw(source)
    print(n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--answers", type=int, default=50_000, help="answers per box")
    ap.add_argument("--judges", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--folder", type=Path, help="where the boxes are built (and kept); default a temp folder")
    ap.add_argument("--json", type=Path, help="write every figure here")
    if sys.argv[1:2] == ["--child"]:  # the measured process (see run_child)
        child(sys.argv[2], sys.argv[3:])
        return
    args = ap.parse_args()
    keep = args.folder is not None
    folder = args.folder or Path(tempfile.mkdtemp(prefix="merge-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        measure(folder, args)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)


def measure(folder: Path, args: argparse.Namespace) -> None:
    a, b, counts = boxes(folder, args.answers, args.judges)
    rows = sum(counts[t] for t in counts if t not in ("database_identity", "data_changes"))
    shown = ", ".join(f"{t} {n:,}" for t, n in counts.items() if t != "database_identity")
    print(f"box B: {rows:,} rows ({shown}); "
          f"{os.path.getsize(b) / 2**20:.0f} MB; CPUs {os.cpu_count()}, load {os.getloadavg()[0]:.2f}")
    work = folder / "work"
    sides: dict[str, list[dict[str, Any]]] = {k: [] for k in ("baseline", "into_empty", "into_a", "again")}
    for i in range(args.repeat):
        order = ["baseline", "into_empty", "into_a"]
        for side in order if i % 2 == 0 else order[::-1]:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            target = work / "target.db"
            shutil.copy(a if side == "into_a" else folder / "empty.db", target)
            merge = ["--db", str(target), "merge", str(b), "--format", "json"]
            wall, cpu, rss, out = run_child(["raw-copy", str(target), str(b)] if side == "baseline" else merge)
            added = int(out.strip()) if side == "baseline" else sum(json.loads(out)["added"].values())
            sides[side].append({"s": wall, "cpu_s": cpu, "rss_mib": rss, "rows": added})
            if side == "into_a":  # the same command again on what it made: nothing to add
                wall, cpu, rss, out = run_child(merge)
                sides["again"].append({"s": wall, "cpu_s": cpu, "rss_mib": rss,
                                       "rows": sum(json.loads(out)["added"].values())})
    shutil.rmtree(work, ignore_errors=True)
    report(sides, rows, args)


def report(sides: dict[str, list[dict[str, Any]]], rows: int, args: argparse.Namespace) -> None:
    base = [r["s"] for r in sides["baseline"]]
    names = {"baseline": "baseline: raw copy into an empty db (ATTACH + INSERT … SELECT)",
             "into_empty": "emtui merge B.db into an empty db", "into_a": "emtui merge B.db into box A",
             "again": "emtui merge B.db again (nothing to add)"}
    out: dict[str, Any] = {"rows": rows, "answers": args.answers, "repeat": args.repeat, "cpus": os.cpu_count(),
                           "load": os.getloadavg()[0], "sides": sides}
    for side, runs in sides.items():
        secs = [r["s"] for r in runs]
        med = statistics.median(secs)
        cpu = statistics.median(r["cpu_s"] for r in runs)
        line = (f"{names[side]:62} median {med:6.2f} s [{', '.join(f'{s:.2f}' for s in secs)}], CPU {cpu:5.2f} s  "
                f"peak RSS {max(r['rss_mib'] or 0 for r in runs):5.0f} MiB  rows added {runs[0]['rows']:,}")
        if side != "baseline":
            pairs = sorted(s / b for s, b in zip(secs, base, strict=True))
            ratio = med / statistics.median(base)
            out[f"{side}_ratio"] = ratio
            cpu_ratio = cpu / statistics.median(r["cpu_s"] for r in sides["baseline"])
            out[f"{side}_cpu_ratio"] = cpu_ratio
            line += f"  ratio {ratio:.2f}x (pairs {statistics.median(pairs):.2f}x; CPU {cpu_ratio:.2f}x)"
        print(line)
        out[f"{side}_median_s"] = med
    if args.json:
        args.json.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
