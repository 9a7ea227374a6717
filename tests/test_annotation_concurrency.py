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

from engine.annotation import create_campaign
from engine.synthetic import SyntheticSpec, make_synthetic_study

REPO_ROOT = Path(__file__).resolve().parents[1]
PER_PROCESS = 1000
OVERLAP = 2
ITEMS = 2000  # room for 4,000 ratings: every process can rate 1,000

ANNOTATOR = textwrap.dedent("""
    import json, sys, time
    from db import open_store
    from engine.annotation import AnnotationSession

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
