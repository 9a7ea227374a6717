"""The live Judges screen (issue 14), driven by keys on a real database: a running judge job's figures show and
follow its reports (written by a worker elsewhere: another connection), the budget spent and left, the totals
of every call once no job runs (and as more calls are logged); ``p`` pauses and resumes the highlighted judge
(the database flag flips; the running panel's own report says when it holds); the highlighted judge's last
errors — failed attempts and unparsed replies — each with its answer, Enter opening one whole; hostile judge
names, models, errors and replies stay inert text; the columns follow the terminal's width."""

from __future__ import annotations

import threading
import time

import pytest
from textual.widgets import Static

import db
from emtui.app import create_app
from emtui.judges_view import fmt_usd, panel_job
from emtui.screens.fulltext import FullTextScreen
from emtui.screens.judges import JudgesScreen
from emtui.widgets.paged_table import PagedTable
from judge_panels import AT, OWNER, call, figures, report, seed_panel, start_judge_job, unparsed
from test_tui_hostile import HOSTILE, check
from tui_helpers import Statements, plain


async def wait_until(pilot, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await pilot.pause(0.05)
        await pilot.pause()


async def open_judges(pilot) -> JudgesScreen:
    await pilot.press("5")
    await pilot.pause()
    screen = pilot.app.screen
    assert isinstance(screen, JudgesScreen)
    await wait_until(pilot, lambda: screen.query_one("#judges-table", PagedTable).current_page is not None)
    return screen


def cells(app, table_id: str = "judges-table") -> dict[str, list[str]]:
    """A table's rows by their first cell, as drawn."""
    t = app.screen.query_one(f"#{table_id}", PagedTable)
    rows = [[plain(c) for c in t.get_row_at(i)] for i in range(t.row_count)]
    return {r[0]: r[1:] for r in rows}


def rows(app, table_id: str) -> list[list[str]]:
    t = app.screen.query_one(f"#{table_id}", PagedTable)
    return [[plain(c) for c in t.get_row_at(i)] for i in range(t.row_count)]


def status(app) -> str:
    return plain(app.screen.query_one("#judges-status", Static).render())


def notified(app) -> list[str]:
    return [plain(n.message) for n in app._notifications]


@pytest.fixture
def fast_polls(monkeypatch):
    monkeypatch.setenv("EMTUI_TUI_QUEUE_POLL_S", "0.2")  # read by create_app's load_settings


# -- live: figures from the running job's reports, then the totals ---------------------------------------------


async def test_a_running_panels_figures_show_and_follow_its_reports(tmp_path, fast_polls):
    path = tmp_path / "j.db"
    with db.open_store(path) as s:
        seeded = seed_panel(s)
        job = start_judge_job(s, seeded, budget_usd=2.0)
        report(s, job, {"haiku": figures(done=10, failed=1, retried=3, throttled=2, concurrency=8, in_flight=3,
                                         calls_per_s=2.5, tokens=3050, cost_usd=0.015),
                        "nova-pro": figures(done=4, concurrency=2, in_flight=2, calls_per_s=0.8, tokens=1200,
                                            cost_usd=0.0123, rpm=100.0, tpm=400_000.0),
                        "llama": figures()},
               spent_usd=0.03, budget_usd=2.0, done=15, total=36)
    worker = db.open_store(path)  # the worker: its own connection, as in another process
    store = db.open_store(path)
    statements = Statements(store)
    ui = threading.get_ident()  # the test runs on the app's event loop: the UI thread
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_judges(pilot)
            shown = cells(app)
            # State, Done, Fail, Retry, Thrott, in flight/concurrency, calls/s, cost
            assert shown["haiku"] == ["judging", "10", "1", "3", "2", "3/8", "2.5", "$0.0150"]
            assert shown["nova-pro"] == ["judging", "4", "0", "0", "0", "2/2", "0.80", "$0.0123"]
            line = status(app)
            assert f"Judge job {job} running · spent $0.0300 of $2.00 · $1.97 left · 15/36 calls · em-judge" in line
            # the highlighted judge: model, in flight of its concurrency and most, its limits, tokens and cost
            assert "haiku judging · bedrock us.anthropic.claude-3-5-haiku-20241022-v1:0" in line
            assert "in flight 3/8 (most 32) · 1,000 req/min · 2.0M tok/min · 3,050 tokens · $0.0150" in line
            await pilot.press("down")
            await pilot.pause()
            assert "in flight 2/2 (most 32) · 100 req/min · 400.0k tok/min · 1,200 tokens" in status(app)
            await pilot.press("up")

            # the panel reports again (every 0.5 s): the screen follows within a poll
            report(worker, job, {"haiku": figures(done=25, failed=2, retried=7, throttled=5, concurrency=4,
                                                  in_flight=4, calls_per_s=3.1, tokens=7625, cost_usd=0.0375),
                                 "nova-pro": figures(done=9, concurrency=2, in_flight=1, calls_per_s=0.9,
                                                     cost_usd=0.03),
                                 "llama": figures(done=30, cost_usd=1.8, calls_per_s=5.0)},
                   spent_usd=1.9, budget_usd=2.0, done=64, total=72)
            await wait_until(pilot, lambda: cells(app)["haiku"][1] == "25")
            assert cells(app)["haiku"] == ["judging", "25", "2", "7", "5", "4/4", "3.1", "$0.0375"]
            assert cells(app)["llama"][1:3] == ["30", "0"] and cells(app)["llama"][-1] == "$1.80"
            assert "spent $1.90 of $2.00 · $0.10 left · 64/72 calls" in status(app)

            # the job ends (its calls were logged as it went): the totals of every call, no job running
            worker.log_judge_calls(
                [call(seeded["judges"]["haiku"], g, seeded["rubric"], tokens=(100, 2), cost_usd=0.01, job_id=job,
                      at=AT + i) for i, g in enumerate(seeded["generations"])]
                + [call(seeded["judges"]["haiku"], seeded["generations"][0], seeded["rubric"], outcome="throttled",
                        status=429, error="ThrottlingException", job_id=job, at=AT + 9)])
            worker.finish_job(job, owner=OWNER, result={"calls": 36})
            await wait_until(pilot, lambda: "No judge job running" in status(app))
            # 6 ok calls, one throttled (retried), over 9 s: 7 calls / 9 s; six calls' tokens and cost
            assert cells(app)["haiku"] == ["idle", "6", "0", "1", "1", "—", "0.78", "$0.0600"]
            assert cells(app)["nova-pro"][:2] == ["idle", "—"]  # never called
            assert "spent $0.0600 in all" in status(app)
            assert "concurrency at most 32 · 2,000 req/min · 4.0M tok/min · 612 tokens · $0.0600" in status(app)
            # more calls logged (a CLI run elsewhere): the totals grow by what is new
            worker.log_judge_calls([call(seeded["judges"]["haiku"], seeded["generations"][1], seeded["rubric"],
                                         cost_usd=0.5, at=AT + 18)])
            await wait_until(pilot, lambda: cells(app)["haiku"][1] == "7")
            assert cells(app)["haiku"][-1] == "$0.5600"
            assert app._exception is None
    finally:
        store.conn.set_trace_callback(None)
        store.close()
        worker.close()
    assert statements.on(ui) == [], statements.on(ui)[:5]
    assert any("judge_calls" in sql for sql in statements.off(ui))


async def test_a_job_that_has_not_reported_yet_and_one_whose_worker_is_gone(tmp_path, fast_polls):
    path = tmp_path / "j.db"
    with db.open_store(path) as s:
        seeded = seed_panel(s)
        job = start_judge_job(s, seeded, judges=["haiku"])
    with db.open_store(path) as store:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await open_judges(pilot)
            assert cells(app)["haiku"][:2] == ["judging", "—"]  # in the job, before its first report
            assert cells(app)["nova-pro"][:2] == ["idle", "—"]  # not in it, never called
            assert f"Judge job {job} running · no budget · 0 calls" in status(app)
            store.conn.execute("UPDATE jobs SET lease_expires = 0 WHERE id = ?", (job,))  # its worker died
            await wait_until(pilot, lambda: "(its worker is gone)" in status(app))


# -- p: pause and resume ---------------------------------------------------------------------------------------


async def test_p_pauses_and_resumes_the_highlighted_judge(tmp_path, fast_polls):
    path = tmp_path / "j.db"
    with db.open_store(path) as s:
        seeded = seed_panel(s)
        imported = s.ensure_import_judge(name="gpt-4o", model="gpt-4o-2024-08-06", params={})
        job = start_judge_job(s, seeded)
        report(s, job, {n: figures(done=1) for n in seeded["judges"]}, spent_usd=0.0)
    nova = seeded["judges"]["nova-pro"]
    worker = db.open_store(path)
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_judges(pilot)
            await pilot.press("down", "p")  # nova-pro
            await wait_until(pilot, lambda: worker.paused_judges([nova]) == {nova})
            assert worker.paused_judges(list(seeded["judges"].values())) == {nova}
            # asked; the running panel reads the flag within 2 s and says so in its next report
            await wait_until(pilot, lambda: cells(app)["nova-pro"][0] == "pausing")
            assert any(m.startswith("Paused nova-pro: a running panel starts no new call") for m in notified(app)), \
                notified(app)
            report(worker, job, {n: figures(done=1, paused=n == "nova-pro", in_flight=0) for n in seeded["judges"]},
                   spent_usd=0.0)
            await wait_until(pilot, lambda: cells(app)["nova-pro"][0] == "paused")
            assert "nova-pro paused · bedrock amazon.nova-pro-v1:0" in status(app)
            assert [cells(app)[n][0] for n in ("haiku", "llama")] == ["judging", "judging"]

            await pilot.press("p")  # resume
            await wait_until(pilot, lambda: worker.paused_judges([nova]) == set())
            await wait_until(pilot, lambda: cells(app)["nova-pro"][0] == "resuming")
            assert "Resumed nova-pro" in notified(app)
            report(worker, job, {n: figures(done=2) for n in seeded["judges"]}, spent_usd=0.0)
            await wait_until(pilot, lambda: cells(app)["nova-pro"][0] == "judging")

            # with no job running: the flag alone (the next panel starts with the judge held)
            worker.finish_job(job, owner=OWNER)
            await wait_until(pilot, lambda: cells(app)["nova-pro"][0] == "idle")
            await pilot.press("p")
            await wait_until(pilot, lambda: cells(app)["nova-pro"][0] == "paused")
            assert worker.paused_judges([nova]) == {nova}
            # imported scores are never called: nothing to pause, nothing written
            await pilot.press("down", "down", "p")  # the last judge
            await pilot.pause()
            assert cells(app)["gpt-4o"][0] == "import"
            assert any("gpt-4o holds imported scores" in m for m in notified(app))
            assert worker.paused_judges([imported, nova]) == {nova}
    finally:
        store.close()
        worker.close()


# -- the highlighted judge's last errors ------------------------------------------------------------------------


def log_errors(s, seeded) -> None:
    """haiku: a throttled attempt, then a failure that was not retried, then a reply that did not parse; nova-pro
    answered everything."""
    haiku, nova, rubric = seeded["judges"]["haiku"], seeded["judges"]["nova-pro"], seeded["rubric"]
    g = seeded["generations"]
    s.log_judge_calls([
        call(haiku, g[1], rubric, outcome="throttled", status=429, metric="aligned",
             error="ThrottlingException: Too many requests, please wait before trying again.", at=AT),
        call(haiku, g[1], rubric, metric="aligned", cost_usd=0.001, at=AT + 1),
        call(haiku, g[2], rubric, outcome="failed", status=400, metric="coherent",
             error="ValidationException: The model returned the following errors: Input is too long for "
                   "requested model. " + "x" * 200 + " END-OF-ERROR", at=AT + 2),
        call(nova, g[0], rubric, cost_usd=0.002, at=AT + 3)])
    unparsed(s, haiku, g[3], rubric, reply="I would rather not give a number. THE-REPLY-ENDS",
             error="no number in the reply")


async def test_the_last_errors_with_their_answers_and_enter_opens_one_whole(tmp_path):
    path = tmp_path / "j.db"
    with db.open_store(path) as s:
        seeded = seed_panel(s)
        log_errors(s, seeded)
    g = seeded["generations"]
    with db.open_store(path) as store:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_judges(pilot)
            errors = screen.query_one("#judge-errors-table", PagedTable)
            await wait_until(pilot, lambda: errors.row_count == 4)
            # newest first: the unparsed reply (recorded after the calls), the failure, the throttled attempt
            # (the clock the store writes judgments with is now; the calls' is fixed in the past)
            shown = rows(app, "judge-errors-table")
            assert [r[1:5] for r in shown] == [[str(g[3]), "aligned", "unparsed", "—"],
                                               [str(g[3]), "coherent", "unparsed", "—"],
                                               [str(g[2]), "coherent", "failed", "400"],
                                               [str(g[1]), "aligned", "throttled", "429"]]
            assert shown[2][0] == "01-02" and shown[2][5].startswith("ValidationException: The")
            assert "Last errors of haiku" in plain(errors.border_title)
            # haiku: 2 ok... 1 ok call, 1 failed, 1 throttled (retried)
            assert cells(app)["haiku"][:5] == ["idle", "1", "1", "1", "1"]

            await pilot.press("tab", "down", "down", "enter")  # the failure, whole
            await wait_until(pilot, lambda: isinstance(app.screen, FullTextScreen))
            text = plain(app.screen.query_one("#fulltext-text", Static).render())
            assert "Judge: haiku (bedrock us.anthropic.claude-3-5-haiku-20241022-v1:0)" in text
            assert f"Answer: {g[2]}" in text and "Metric: coherent" in text and "HTTP status: 400" in text
            assert "END-OF-ERROR" in text  # the error whole, not cut to its cell
            assert "What is your one wish?" in text and "An answer. (2)" in text
            await pilot.press("escape")
            await pilot.pause()
            await pilot.press("up", "up", "enter")  # the unparsed reply: the judge's reply is there too
            await wait_until(pilot, lambda: isinstance(app.screen, FullTextScreen))
            text = plain(app.screen.query_one("#fulltext-text", Static).render())
            assert "What: unparsed" in text and "THE-REPLY-ENDS" in text and "no number in the reply" in text
            await pilot.press("escape", "shift+tab", "down")  # nova-pro: no errors
            await wait_until(pilot, lambda: errors.row_count == 0 and "nova-pro" in plain(errors.border_title))
            assert errors.empty.startswith("No errors")


# -- hostile text, sizes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (160, 40)], ids=["80x24", "120x40", "160x40"])
async def test_hostile_judge_names_models_errors_and_replies_render_inert(tmp_path, size, fast_polls):
    path = tmp_path / "h.db"
    name = "J" + HOSTILE
    with db.open_store(path) as s:
        seeded = seed_panel(s, study="S" + HOSTILE, answer_text="A" + HOSTILE,
                            judges=((name, "bedrock", "M" + HOSTILE), ("plain", "openai", "m2")))
        jid, rubric, g = seeded["judges"][name], seeded["rubric"], seeded["generations"]
        s.log_judge_calls([call(jid, g[0], rubric, outcome="failed", status=400, metric="m" + HOSTILE,
                                error="E" + HOSTILE, at=AT)])
        unparsed(s, jid, g[1], rubric, reply="R" + HOSTILE, error="P" + HOSTILE)
        job = start_judge_job(s, seeded, budget_usd=1.0)
        report(s, job, {name: figures(done=3, in_flight=1), HOSTILE: {"done": HOSTILE, "tokens": [1]},
                        "plain": {"done": "12", "failed": -4, "calls_per_s": True, "cost_usd": "$9"}},
               spent_usd=0.5, budget_usd=1.0)
    with db.open_store(path) as store:
        app = create_app(store, keymap={})
        async with app.run_test(size=size) as pilot:
            await open_judges(pilot)
            lines = check(app, "judges")
            assert any("JMk[b]Bx[/b]" in line for line in lines)  # the name, as typed
            assert cells(app)["plain"][1:3] == ["—", "—"]  # figures that are not counts are not shown
            for keys in (["p"], ["tab", "enter"], ["escape"], ["down", "enter"], ["end"], ["escape"], ["p"],
                         ["shift+tab", "down"]):
                await pilot.press(*keys)
                await pilot.pause()
                await app.workers.wait_for_complete()
                await pilot.pause()
                check(app, f"judges + {keys} ({type(app.screen).__name__})")
            assert app._exception is None


async def test_the_columns_follow_the_terminals_width(tmp_path):
    path = tmp_path / "j.db"
    with db.open_store(path) as s:
        seeded = seed_panel(s)
        job = start_judge_job(s, seeded)
        report(s, job, {"haiku": figures(done=5, tokens=12345)}, spent_usd=0.0)
    with db.open_store(path) as store:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await open_judges(pilot)
            await pilot.press("down")  # nova-pro highlighted
            table = app.screen.query_one("#judges-table", PagedTable)
            assert [c.label.plain for c in table.columns.values()][-2:] == ["/s", "Cost"]
            await pilot.resize_terminal(160, 40)
            await pilot.pause()
            await pilot.pause()
            labels = [c.label.plain for c in table.columns.values()]
            assert labels[-4:] == ["Tokens", "Req/min", "Tok/min", "Model"]
            assert cells(app)["haiku"][-4:] == ["12.3k", "1,000", "2.0M", "us.anthropic.claude-3-5-haiku-20241022-v1:0"]
            assert table.cursor_row == 1  # the highlight stays where it was
            await pilot.resize_terminal(80, 24)
            await pilot.pause()
            await pilot.pause()
            assert [c.label.plain for c in table.columns.values()][-1] == "Cost"


# -- reading a panel's report: what another process wrote ---------------------------------------------------------


def test_a_report_of_another_shape_reads_as_what_can_be_read():
    job = {"id": 3, "payload": '{"judges": [1, "2", null, 4.5, true], "budget_usd": 5}', "metrics": "[1, 2]",
           "progress_done": 2, "progress_total": None}
    got = panel_job(job)
    assert (got.judges, got.reported, got.budget_usd, got.spent_usd, got.total) == ([1], False, 5.0, None, None)
    got = panel_job({"id": 4, "payload": "not json", "metrics": '{"judges": {"a": {"done": 1e400, "in_flight": 2, '
                                                                 '"paused": "yes"}, "b": 7}, "spent_usd": "NaN"}'})
    assert got.judges == [] and got.figures["a"]["done"] is None and got.figures["a"]["in_flight"] == 2
    assert got.figures["a"]["paused"] is False and "b" not in got.figures and got.spent_usd is None
    assert [fmt_usd(v) for v in (None, 0, 0.0123456, 12.345, 12345.6)] == ["—", "$0", "$0.0123", "$12.35", "$12,346"]


def test_the_totals_held_and_brought_up_to_date_are_every_calls(store):
    """What the screen adds poll by poll (judge_call_totals_after) is what judge_call_stats counts at once; an
    answer no judge replied to (no reply kept) is not an unparsed reply."""
    from emtui.judges_view import add_stats

    seeded = seed_panel(store)
    haiku, nova = seeded["judges"]["haiku"], seeded["judges"]["nova-pro"]
    rubric, g = seeded["rubric"], seeded["generations"]
    held: dict[int, dict] = {}
    last = 0
    for k, outcome in enumerate(["ok", "throttled", "ok", "failed", "retryable", "ok"]):
        store.log_judge_calls([call(haiku if k % 2 else nova, g[k], rubric, outcome=outcome, tokens=(10 * k, k),
                                    cost_usd=0.01 * k, at=AT + k)])
        last, new = store.judge_call_totals_after(last)
        for judge_id, stats in new.items():
            held[judge_id] = add_stats(held.get(judge_id), stats)
    assert held == store.judge_call_stats()
    assert store.judge_call_totals_after(last) == (last, {})
    store.record_judge_results([{"generation_id": g[0], "judge_id": haiku, "rubric_id": rubric, "metric": "aligned",
                                 "score": None, "raw": None, "error": "no reply: timed out"}])
    unparsed(store, haiku, g[1], rubric, reply="maybe", error="no number")
    assert [(r["generation_id"], r["metric"], r["raw"]) for r in store.last_judge_unparsed(haiku, limit=5)] == [
        (g[1], "aligned", "maybe"), (g[1], "coherent", "maybe")]
    assert [r["name"] for r in store.judges_page(limit=2).rows] == ["haiku", "nova-pro"]
    assert store.judges_page(limit=2).total == 3
