"""Three annotators in three separate processes on one database file, each rating 1,000 items as
fast as it can: no rating lost, no item over-assigned, no 'database is locked' surfacing."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections import defaultdict
from pathlib import Path

from engine.annotation.campaigns import create_campaign
from engine.results.synthetic import SyntheticSpec, make_synthetic_study

REPO_ROOT = Path(__file__).resolve().parents[1]
PER_PROCESS = 1000
OVERLAP = 2
ITEMS = 2000  # room for 4,000 ratings: every process can rate 1,000

ANNOTATOR = textwrap.dedent("""
    import json, sys, time
    from db import open_store
    from engine.annotation.session import AnnotationSession

    db, name, n, start_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    store = open_store(db)
    session = AnnotationSession(store, "race", name)
    while time.time() < start_at:
        time.sleep(0.005)
    rated, codes = 0, []
    while rated < n:
        view = session.next_item()
        if view is None:
            break
        session.rate(keys=str(rated % 4))
        codes.append(view.code)
        rated += 1
    store.close()
    print(json.dumps({"name": name, "rated": rated, "codes": codes}))
""")


def test_three_processes_rate_at_once(store, db_path):
    make_synthetic_study(store, SyntheticSpec(answers_per_condition=700, judges=[], questions=20))
    c = create_campaign(store, name="race", study="synthetic", scale="0-3", n_items=ITEMS, overlap=OVERLAP)
    start_at = time.time() + 2.0  # every process is up and waiting by then
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", ANNOTATOR, str(db_path), f"ann-{n}", str(PER_PROCESS),
                               str(start_at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for n in (1, 2, 3)]
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            assert "locked" not in err and "Traceback" not in err, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()

    assert [r["rated"] for r in results] == [PER_PROCESS] * 3
    rows = store.campaign_rating_rows(c["id"])
    assert len(rows) == 3 * PER_PROCESS  # no rating lost (and none doubled)
    by_item: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        by_item[r["code"]].add(r["annotator"])
    assert max(len(v) for v in by_item.values()) <= OVERLAP  # no item over-assigned
    for r in results:  # what each process says it rated is what the database holds
        assert len(set(r["codes"])) == PER_PROCESS
        assert {code for code, people in by_item.items() if r["name"] in people} == set(r["codes"])
    p = store.campaign_progress(c["id"])
    assert p["done"] == 3 * PER_PROCESS and p["live_leases"] == 0
    assert store.count("rating_edits") == 0


IMPORTER = textwrap.dedent("""
    import sys, time
    from emtui.cli import main

    start_at = float(sys.argv[1])
    while time.time() < start_at:
        time.sleep(0.002)
    sys.exit(main(sys.argv[2:]))
""")

RATER = textwrap.dedent("""
    import json, sys, time
    from db import open_store
    from engine.annotation.errors import LeaseLost
    from engine.annotation.session import AnnotationSession

    db, name, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    store = open_store(db)
    session = AnnotationSession(store, "mixed", name)
    while time.time() < start_at:
        time.sleep(0.002)
    rated, lost = [], []
    while True:
        view = session.next_item()
        if view is None:
            break
        try:
            session.rate(keys="1")
            rated.append(view.code)
        except LeaseLost as exc:  # a live lease (10 minutes) must never lose its place
            lost.append(str(exc))
            if len(lost) > 20:  # the same item again and again: stop, the test fails on it
                break
    store.close()
    print(json.dumps({"rated": rated, "lost": lost}))
""")


def test_imports_and_a_rating_session_at_once_keep_exactly_k(store, db_path, tmp_path):
    """Two `emtui import ratings` of every item and one annotator rating as fast as they can, in three
    processes on one file, on a k=2 campaign: every way a rating enters goes through the same claim rule
    in one write transaction, so no item ever gets a third rater, no import is half-written, and the
    annotator never hears a false "your lease expired"."""
    make_synthetic_study(store, SyntheticSpec(answers_per_condition=100, judges=[], questions=10))
    c = create_campaign(store, name="mixed", study="synthetic", scale="0-3", n_items=240, overlap=2)
    codes = [i["code"] for i in store.campaign_items(c["id"])]
    files = {}
    for who in ("imp-a", "imp-b"):
        files[who] = tmp_path / f"{who}.csv"
        files[who].write_text("rater_id,item_id,score,note\n" + "".join(f"{who},{code},2,\n" for code in codes),
                              encoding="utf-8")
    start_at = time.time() + 2.5
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    procs = {who: subprocess.Popen([sys.executable, "-c", IMPORTER, str(start_at), "--db", str(db_path), "import",
                                    "ratings", str(f), "--campaign", "mixed"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for who, f in files.items()}
    procs["rater"] = subprocess.Popen([sys.executable, "-c", RATER, str(db_path), "rater", str(start_at)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out: dict[str, tuple[int, str, str]] = {}
    try:
        for who, p in procs.items():
            o, e = p.communicate(timeout=120)
            out[who] = (p.returncode, o, e)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()

    rc, o, e = out["rater"]
    assert rc == 0 and "Traceback" not in e and "locked" not in e, e[-3000:]
    session = json.loads(o.strip().splitlines()[-1])
    assert session["lost"] == []  # no false "your lease expired"

    rows = store.campaign_rating_rows(c["id"])
    by_item: dict[str, set[str]] = defaultdict(set)
    by_rater: dict[str, int] = defaultdict(int)
    for r in rows:
        by_item[r["code"]].add(r["annotator"])
        by_rater[r["annotator"]] += 1
    assert max(len(v) for v in by_item.values()) <= 2  # exactly k: never a third rater
    assert by_rater["rater"] == len(session["rated"]) == len(set(session["rated"]))
    for who, f in files.items():
        rc, o, e = out[who]
        assert "Traceback" not in e and "locked" not in e, e[-3000:]
        if rc == 0:
            assert by_rater[who] == len(codes), o  # all of the file ...
        else:
            assert rc == 2 and by_rater[who] == 0  # ... or none of it, and one line saying which line and why
            line = e.strip()
            assert "\n" not in line and line.startswith(f"emtui: {f}:") and "would have 3 raters" in line, e
    # the annotator took every place the imports left: every item is full
    assert all(len(v) == 2 for v in by_item.values()) and len(by_item) == len(codes)
    assert store.campaign_progress(c["id"])["live_leases"] == 0
