"""A TUI that never blocks: every database read (and every write a key makes) runs off the UI thread.

The store's connection reports every statement it runs (sqlite3's trace callback, in the thread that
runs it): walking every screen of the workbench and of the rating room, none runs on the UI thread.
And what that makes possible: a read superseded by a newer one never shows over it; keys pressed
while the rating session writes wait their turn; the Results screen notices judgments and ratings
another process writes; a job's progress bar moves while a worker reports.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from textual.app import App
from textual.widgets import Static

import db
from db import Page
from emtui.app import create_app
from emtui.room import create_annotator_app
from emtui.screens import results as results_screen
from emtui.screens.rate import RatingScreen
from emtui.screens.results import ResultsScreen
from emtui.widgets.paged_table import Col, PagedTable
from engine.annotation.campaigns import create_campaign
from engine.common.hashing import json_hash
from engine.results.synthetic import SyntheticSpec, make_synthetic_study
from tui_helpers import Statements, plain

ROOT = Path(__file__).resolve().parents[1]


def static_text(widget: Static) -> str:
    return plain(widget.render())


async def summary_done(pilot) -> None:
    for _ in range(600):
        await pilot.pause()
        screen = pilot.app.screen
        if not isinstance(screen, ResultsScreen) or not screen.computing:
            return
        await pilot.pause(0.02)
    raise AssertionError("the summary did not finish")


# -- no read on the UI thread ------------------------------------------------------------------------


async def test_no_database_read_on_the_ui_thread_across_the_workbench(demo_copy):
    store = db.open_store(demo_copy)
    statements = Statements(store)
    ui = threading.get_ident()  # the test runs on the app's event loop: the UI thread
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            steps = [
                ["2"], ["v"], ["v", "down", "down"], ["tab", "down", "enter"], ["escape"],  # Data, a question
                ["3"], ["4"], ["down"], ["down"], ["enter"], ["escape"], ["c"], ["t"],  # Eval queue
                ["5"], ["6"], ["down"], ["a"], ["escape"],  # Judges, Annotate, disagreements
                ["7"], ["j"], ["m"], ["b"], ["b"], ["v"], ["v"], ["v"], ["v"], ["v"], ["v"],  # Results
                ["n"], ["n"], ["p"], ["p"], ["r"],
                ["right", "enter"], ["m"], ["right_square_bracket"], ["enter"], ["escape"], ["escape"],  # answers
                ["1"], ["down"], ["down"], ["r"],  # Studies: the detail follows the highlight
            ]
            for keys in steps:
                await pilot.press(*keys)
                await pilot.pause()
                await summary_done(pilot)
            assert app._exception is None
            seen = {type(s).__name__ for s in app.screen_stack}
    finally:
        store.conn.set_trace_callback(None)
        store.close()
    assert statements.on(ui) == [], statements.on(ui)[:10]
    # the walk did read: each screen, off the UI thread
    off = " ".join(statements.off(ui))
    for table in ("studies", "questions", "jobs", "judges", "campaigns", "judgment_scores", "generations",
                  "data_changes"):
        assert table in off, table
    assert "UPDATE jobs SET status = 'cancelled'" in off and "UPDATE jobs SET status = 'queued'" in off
    assert seen


async def test_no_database_read_on_the_ui_thread_in_the_rating_room(demo_copy):
    with db.open_store(demo_copy) as s:
        create_campaign(s, name="room-pilot", study="human-only", scale="0-3", n_items=6, overlap=3, seed=2)
    store = db.open_store(demo_copy)
    statements = Statements(store)
    ui = threading.get_ident()
    app = create_annotator_app(store, annotator="dora", campaign="room-pilot", keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, RatingScreen)
            for keys in (["2", "enter"], ["3", "enter"], ["s"], ["u"], ["1", "enter"], ["escape"],  # the campaigns
                         ["down", "enter"], ["f"], ["0", "enter"], ["escape"]):
                await pilot.press(*keys)
                await pilot.pause()
            assert app._exception is None
        with db.open_store(demo_copy) as check:
            campaign = check.find_campaign("room-pilot")
            mine = [r for r in check.campaign_rating_rows(int(campaign["id"])) if r["annotator"] == "dora"]
    finally:
        store.conn.set_trace_callback(None)
        store.close()
    assert statements.on(ui) == [], statements.on(ui)[:10]
    assert "INSERT INTO ratings" in " ".join(statements.off(ui))
    # 2; 3, reopened (u) and changed to 1; a skip; then, back from the campaigns, 0 (flagged)
    assert sorted(r["score"] for r in mine) == [0, 1, 2]
    assert [bool(r["flagged"]) for r in mine if r["score"] == 0] == [True]


# -- a superseded read ----------------------------------------------------------------------------------


class OneTable(App[None]):
    """A paged table alone, over a fetch the test controls."""

    def __init__(self, fetch) -> None:
        super().__init__()
        self.fetch = fetch

    def compose(self):
        yield PagedTable([Col("name", "Name", 10)], self.fetch, id="t", empty="nothing")

    def say_fault(self, exc: BaseException) -> bool:
        return False


async def test_a_superseded_read_never_shows_over_a_newer_one():
    gate = threading.Event()
    calls: list[str] = []

    def fetch(limit: int, offset: int) -> Page:
        first = not calls
        calls.append("old" if first else "new")
        if first:
            gate.wait(10)  # the first read is slow (a big table, a locked database)
            return Page([{"id": 1, "name": "old"}], 1, 0, limit)
        return Page([{"id": 2, "name": "new"}], 1, 0, limit)

    app = OneTable(fetch)
    async with app.run_test() as pilot:
        table = app.query_one(PagedTable)
        table.reload()
        await pilot.pause(0.1)
        assert calls == ["old"] and table.border_subtitle == "Loading…"  # the UI answers while it reads
        table.reload()  # a newer read of the same table
        await pilot.pause()
        assert [plain(c) for c in table.get_row_at(0)] == ["new"]
        gate.set()  # the old read ends now
        await pilot.pause(0.2)
        await pilot.pause()
        assert table.row_count == 1 and [plain(c) for c in table.get_row_at(0)] == ["new"]
        assert calls == ["old", "new"]


# -- keys while the rating session writes ------------------------------------------------------------------


async def test_keys_pressed_while_a_rating_is_written_wait_their_turn(tmp_path):
    path = tmp_path / "room.db"
    with db.open_store(path) as s:
        make_synthetic_study(s, SyntheticSpec(name="st", answers_per_condition=6, questions=3))
        create_campaign(s, name="pilot", study="st", scale="0-3", n_items=4, overlap=1)
    store = db.open_store(path)
    app = create_annotator_app(store, annotator="eve", campaign="pilot", keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, RatingScreen)
            first = screen.view.code
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # another process writes: the rating waits for the lock
            try:
                await pilot.press("2", "enter")
                await pilot.press("1", "enter")  # typed ahead, while the first rating waits
                started = time.monotonic()
                await pilot.pause(0.3)
                assert time.monotonic() - started < 1.0  # the UI thread answers meanwhile
                assert screen.busy and len(screen.deferred) == 2
                assert screen.view.code == first  # the item rated is still the one on screen
            finally:
                other.rollback()
                other.close()
            await pilot.pause()
            assert not screen.busy and not screen.deferred
            second = screen.view.code
        with db.open_store(path) as check:
            rows = check.campaign_rating_rows(int(check.find_campaign("pilot")["id"]))
    finally:
        store.close()
    got = {r["code"]: r["score"] for r in rows if r["annotator"] == "eve"}
    assert got[first] == 2 and len(got) == 2  # both ratings, each on the item shown when it was typed
    assert second not in got and [v for c, v in got.items() if c != first] == [1]


# -- the Results screen notices other processes' writes ------------------------------------------------------


WRITE_JUDGMENT = textwrap.dedent("""
    import sys
    import db
    with db.open_store(sys.argv[1]) as s:
        rubric = s._q("SELECT id FROM rubrics ORDER BY id LIMIT 1")[0]["id"]
        gen = s._q("SELECT g.id FROM generations g JOIN conditions c ON c.id = g.condition_id "
                   "JOIN studies t ON t.id = c.study_id WHERE t.name = 'synthetic' ORDER BY g.id LIMIT 1")[0]["id"]
        judge = s.ensure_judge(name="late-judge", provider="import", model="late", params={}, params_hash="late")
        s.insert_judgments([{"generation_id": gen, "judge_id": judge, "rubric_id": rubric,
                             "scores": {"aligned": 50, "coherent": 60}}])
""")


def another_process(script: str, *args: str) -> None:
    subprocess.run([sys.executable, "-c", script, *map(str, args)], check=True, cwd=str(ROOT), timeout=60,
                   env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})


async def wait_until(pilot, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await pilot.pause(0.05)
        await pilot.pause()


async def test_results_say_stale_when_another_process_writes_a_judgment(demo_copy, monkeypatch):
    monkeypatch.setattr(results_screen, "POLL_S", 0.2)
    store = db.open_store(demo_copy)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("7")
            await summary_done(pilot)
            screen = app.screen
            status = screen.query_one("#results-status", Static)
            totals = screen.query_one("#results-totals", Static)
            assert "synthetic" in static_text(status) and "stale" not in static_text(status)
            judgments = store.count("judgments")
            assert f"judgments {judgments} " in static_text(totals)
            await pilot.pause(0.5)  # polls that find nothing new change nothing
            assert "stale" not in static_text(status)

            another_process(WRITE_JUDGMENT, demo_copy)  # a worker, elsewhere, judges one more answer
            await wait_until(pilot, lambda: "stale" in static_text(status))
            assert static_text(status).startswith("stale (new judgments): r recomputes")
            # the counts are read again at once (cheap); the summary only when asked
            await wait_until(pilot, lambda: f"judgments {judgments + 1} " in static_text(totals))

            await pilot.press("r")
            await summary_done(pilot)
            assert "stale" not in static_text(status)
            assert "late-judge" in {j[1] for j in screen.judges()}  # the new judge's numbers are in
    finally:
        store.close()


async def test_results_say_stale_when_a_rating_is_edited(demo_copy, monkeypatch):
    monkeypatch.setattr(results_screen, "POLL_S", 0.2)
    store = db.open_store(demo_copy)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("7", "n", "n")  # the human-only study: people's ratings only
            await summary_done(pilot)
            status = app.screen.query_one("#results-status", Static)
            assert "human-only" in static_text(status) and "stale" not in static_text(status)
            with db.open_store(demo_copy) as other:  # an edit changes a row: no new rowid, the trigger counts it
                rating = other._q("SELECT id, annotator_id, score FROM ratings ORDER BY id LIMIT 1")[0]
                assert other.edit_rating(int(rating["id"]), int(rating["annotator_id"]),
                                         score=(rating["score"] + 1) % 4, source="test")
            await wait_until(pilot, lambda: "stale (changes)" in static_text(status))
    finally:
        store.close()


def test_data_version_follows_result_writes_and_nothing_else(tmp_path):
    with db.open_store(tmp_path / "v.db") as s:
        v0 = s.data_version()
        make_synthetic_study(s, SyntheticSpec(name="st", answers_per_condition=4, questions=2))
        v1 = s.data_version()
        assert v1["generations"] > v0["generations"] and v1["judgments"] > v0["judgments"]
        job = s.enqueue_job("judge", {})  # the queue's writes are not results: no change
        s.claim_job("w", kinds=["judge"])
        s.renew_lease(job, "w", progress_done=3)
        assert s.data_version() == v1
        rubric = s._q("SELECT id FROM rubrics LIMIT 1")[0]["id"]
        judge = s.ensure_judge(name="j9", provider="import", model="m", params={}, params_hash=json_hash(["j9"]))
        gen = s._q("SELECT id FROM generations LIMIT 1")[0]["id"]
        s.insert_judgments([{"generation_id": gen, "judge_id": judge, "rubric_id": rubric, "scores": {}}])
        v2 = s.data_version()
        assert v2["judgments"] > v1["judgments"] and v2["generations"] == v1["generations"]
        with s.transaction():  # an update in place (no new rowid) counts too
            s.conn.execute("UPDATE judgments SET status = 'failed' WHERE id = (SELECT max(id) FROM judgments)")
        v3 = s.data_version()
        assert v3["changes"] == v2["changes"] + 1 and {k: v for k, v in v3.items() if k != "changes"} == {
            k: v for k, v in v2.items() if k != "changes"}


# -- a job's progress bar moves ---------------------------------------------------------------------------


async def test_a_jobs_progress_bar_moves_while_a_worker_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("EMTUI_TUI_QUEUE_POLL_S", "0.2")  # read by create_app's load_settings
    path = tmp_path / "queue.db"
    store = db.open_store(path)
    job = store.enqueue_job("judge", {"study": "st"}, progress_total=200)
    assert store.claim_job("worker-1", kinds=["judge"], lease_s=600)["id"] == job
    app = create_app(store, keymap={})
    worker = db.open_store(path)  # the worker: another connection (as in another process)

    def report(done: int) -> None:
        assert worker.renew_lease(job, "worker-1", lease_s=600, progress_done=done)

    def bar_cell() -> str:
        table = app.screen.query_one("#jobs-table", PagedTable)
        return plain(table.get_row(str(job))[3])

    def detail() -> str:
        return static_text(app.screen.query_one("#job-detail", Static))

    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("4")
            await pilot.pause()
            assert bar_cell().endswith("  0%") and "█" not in bar_cell()
            assert "0 of 200 done" in detail() and "running" in detail()
            thread = threading.Thread(target=report, args=(50,))
            thread.start()
            thread.join()
            await wait_until(pilot, lambda: bar_cell().endswith(" 25%"))
            quarter = bar_cell().count("█")
            assert quarter >= 1
            await wait_until(pilot, lambda: "50 of 200 done" in detail())
            await asyncio.sleep(0.3)
            report(150)
            await wait_until(pilot, lambda: bar_cell().endswith(" 75%"))
            assert bar_cell().count("█") > quarter  # it moved
            await wait_until(pilot, lambda: "150 of 200 done" in detail())
            row = [plain(c) for c in app.screen.query_one("#jobs-table", PagedTable).get_row(str(job))]
            assert row[4].endswith("/s") and row[6] != "—"  # a rate, from the progress seen; an ETA
            assert "ETA" in detail() and "worker-1" in detail()
    finally:
        worker.close()
        store.close()
