"""What the Eval queue shows of a job (emtui/job_view.py): the bar, rate and ETA, tries, the log's last lines —
from the first schema's columns and from the ones the queue adds (attempt limit, worker host and pid,
log file, progress note, traceback)."""

from __future__ import annotations

from emtui.job_view import (
    RateMeter,
    attempts_of,
    bar,
    fmt_attempts,
    fmt_duration,
    fmt_rate,
    log_tail,
    metrics_of,
    note_of,
    tail,
    tokens_per_s_of,
    worker_of,
)


def job(**kw):
    base = {"id": 1, "status": "running", "progress_done": 0, "progress_total": None, "attempts": 1,
            "started_at": "2025-01-02T03:00:00+00:00", "finished_at": None, "lease_owner": "host-1:42"}
    return {**base, **kw}


def test_the_bar_fills_in_eighths_and_says_the_percentage():
    assert bar(0, 200, 14).plain == "░" * 9 + "   0%"
    assert bar(100, 200, 14).plain == "████▌░░░░  50%"
    assert bar(200, 200, 14).plain == "█" * 9 + " 100%"
    assert bar(250, 200, 14).plain == "█" * 9 + " 100%"  # a total that was an estimate
    assert bar(7, None, 14).plain == "7" and bar(0, None, 14).plain == "—"  # no total: the count
    for done in range(0, 201, 7):
        assert bar(done, 200, 14).cell_len == 14


def test_rate_from_the_progress_seen_and_eta_from_what_is_left():
    meter = RateMeter(window_s=60)
    j = job(progress_done=100, progress_total=1000)
    start = 1_735_786_800.0 + 3600  # an hour after it started: 100 / 3600 s on average
    meter.observe(j, now=start)
    assert abs(meter.rate(j, now=start) - 100 / 3600) < 1e-9
    j2 = job(progress_done=160, progress_total=1000)
    meter.observe(j2, now=start + 6)
    assert meter.rate(j2, now=start + 6) == 10.0  # what it does now: 60 in 6 s
    assert meter.eta(j2, now=start + 6) == 84.0
    assert fmt_rate(10.0) == "10.0/s" and fmt_duration(84.0) == "1m24s"
    # a new try starts from zero: the samples before it say nothing about it
    j3 = job(progress_done=5, progress_total=1000, attempts=2)
    meter.observe(j3, now=start + 10)
    assert len(meter.seen[1]) == 1
    # only running jobs have an ETA; a finished one keeps its average rate
    done = job(status="done", progress_done=1000, progress_total=1000, finished_at="2025-01-02T03:16:40+00:00")
    assert meter.eta(done) is None and meter.rate(done) == 1.0


def test_formats():
    assert fmt_rate(None) == "—" and fmt_rate(1234.0) == "1,234/s" and fmt_rate(0.5) == "30.0/m"
    assert fmt_rate(0.001) == "3.6/h"
    assert [fmt_duration(s) for s in (None, 5, 65, 3600 * 2 + 60 * 13, 86400 * 3 + 3600 * 4)] == [
        "—", "5s", "1m05s", "2h13m", "3d04h"]


def test_the_fields_the_queue_adds_are_read_when_present():
    old = job(attempts=2)
    assert attempts_of(old) == (2, None) and fmt_attempts(old) == "2"
    assert worker_of(old) == "host-1:42" and note_of(old) == ""
    new = job(attempts=2, max_attempts=3, worker_host="gpu-box\x1b[31m", worker_pid=4242,
              progress_note="loading the model\x1b]0;x\x07")
    assert fmt_attempts(new) == "2/3"
    assert worker_of(new) == "gpu-box:4242"  # untrusted: control sequences stripped
    assert note_of(new) == "loading the model"


def test_the_log_tail_reads_the_end_of_a_big_log(tmp_path):
    log = tmp_path / "worker.log"
    with open(log, "w", encoding="utf-8") as f:  # ~3 MB: read from its end, not whole
        f.writelines(f"line {i}\n" for i in range(200_000))
        f.write("the end \x1b[2Jcleared\n")
    assert tail(log, 3) == ["line 199998", "line 199999", "the end cleared"]
    assert log_tail(job(log_path=str(log)), 2) == (f"log {log}", ["line 199999", "the end cleared"])
    source, lines = log_tail(job(log_path=str(tmp_path / "gone.log")), 2)
    assert source.startswith("log ") and lines[0].startswith("(cannot read it")


def test_without_a_log_a_failed_job_shows_its_traceback_or_error():
    assert log_tail(job(status="failed", error="RuntimeError: boom"), 3) == ("error", ["RuntimeError: boom"])
    traceback = "Traceback (most recent call last):\n  File \"x.py\", line 1\nRuntimeError: boom"
    assert log_tail(job(status="failed", error="boom", traceback=traceback), 2) == (
        "error", ['  File "x.py", line 1', "RuntimeError: boom"])
    assert log_tail(job(), 3) == ("log", [])


def test_the_workers_line_names_each_alive_worker_or_says_how_to_start_one():
    from emtui.job_view import workers_line

    assert "no worker alive — w starts one" in workers_line([]).plain
    dead = {"host": "h", "pid": 1, "alive": False}
    assert "no worker alive" in workers_line([dead]).plain
    busy = {"host": "gpu\x1b[2J-box", "pid": 42, "alive": True, "n_gpus": 1, "gpus": "0", "job_id": 7,
            "job_kind": "train", "heartbeat_age_s": 3.2}
    idle = {"host": "cpu-box", "pid": 9, "alive": True, "n_gpus": 0, "job_id": None, "heartbeat_age_s": 61}
    line = workers_line([busy, idle, dead]).plain
    assert line.startswith(" workers 2")
    assert "gpu-box:42 gpu 0 #7 train 3s ago" in line and "cpu-box:9 idle 1m01s ago" in line
    assert "\x1b" not in line


async def test_w_on_the_queue_screen_starts_a_worker_that_runs_the_queued_job(tmp_path):
    """The Eval queue says no worker is alive; w starts one in the background (a new session), the
    workers line then names it and the queued job runs to done."""
    from db import open_store
    from emtui.app import create_app
    from engine.runs.detach import stop_workers

    db = tmp_path / "q.db"
    store = open_store(db)
    store.enqueue_job("echo", {"say": "hello"})
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("4")
            await pilot.pause()
            counts = app.screen.query_one("#queue-counts")
            assert "no worker alive" in str(counts.render())
            await pilot.press("w")
            # the worker's start, its claim and the screen's next poll
            await _wait(pilot, lambda: store.get_job(1)["status"] == "done" and "workers 1" in str(counts.render()),
                        15)
            assert store.get_job(1)["status"] == "done"
            assert "workers 1" in str(counts.render())
    finally:
        stop_workers(db, store, wait_s=20)
        store.close()


async def _wait(pilot, until, seconds: float) -> bool:
    import asyncio

    for _ in range(int(seconds * 10)):
        if until():
            return True
        await asyncio.sleep(0.1)
        await pilot.pause()
    return until()


async def test_queueing_from_the_tui_starts_a_worker_when_none_is_alive(tmp_path):
    """t (retry) queues a job again and, no worker being alive, starts one that runs it; d queues the
    machine check, which the live worker runs, and Enter on it shows its report."""
    from dataclasses import replace

    from db import open_store
    from emtui.app import create_app
    from engine.runs.detach import stop_workers, worker_rows
    from engine.settings import load_settings

    db = tmp_path / "q.db"
    store = open_store(db)
    job = store.enqueue_job("echo", {"say": "again"})
    assert store.cancel_job(job)
    app = create_app(store, keymap={}, settings=replace(load_settings(), tui_start_worker=True))
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("4")
            assert await _wait(pilot, lambda: app.screen.query_one("#jobs-table").row_count == 1, 10)
            await pilot.press("t")
            assert await _wait(pilot, lambda: store.get_job(job)["status"] == "done", 30)
            assert [w["alive"] for w in worker_rows(store)] == [True]
            await pilot.press("d")
            assert await _wait(pilot, lambda: store.get_job(job + 1) is not None
                               and store.get_job(job + 1)["status"] == "done", 90)
            assert len(worker_rows(store)) == 1  # the live worker ran it; no second one was started
            assert await _wait(pilot, lambda: app.screen.query_one("#jobs-table").row_count == 2, 10)
            await pilot.press("home", "enter")  # the newest job first: the check
            assert await _wait(pilot, lambda: type(app.screen).__name__ == "FullTextScreen", 10)
            shown = " ".join(str(w.render()) for w in app.screen.query("Static"))
            assert "Result" in shown and "Python" in shown and "4-bit" in shown  # the report as its table
            assert '"bitsandbytes"' not in shown  # not its JSON
    finally:
        stop_workers(db, store, wait_s=20)
        store.close()


async def test_queueing_from_the_tui_starts_no_worker_when_the_setting_says_not(tmp_path):
    from db import open_store
    from emtui.app import create_app
    from engine.runs.detach import worker_rows

    store = open_store(tmp_path / "q.db")
    job = store.enqueue_job("echo", {})
    assert store.cancel_job(job)
    app = create_app(store, keymap={})  # the suite's EMTUI_TUI_START_WORKER=false
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("4")
        assert await _wait(pilot, lambda: app.screen.query_one("#jobs-table").row_count == 1, 10)
        await pilot.press("t")
        assert await _wait(pilot, lambda: store.get_job(job)["status"] == "queued", 10)
        await pilot.pause(0.5)
        assert worker_rows(store) == []
    store.close()


def test_tokens_per_second_from_the_metrics_a_job_reported_and_nothing_from_what_is_not_a_number():
    reported = job(metrics='{"tokens_per_s": 812.4, "batch_size": 16, "model": "base"}')
    assert tokens_per_s_of(reported) == 812.4 and metrics_of(reported)["batch_size"] == 16
    assert tokens_per_s_of(job()) is None and metrics_of(job()) == {}  # a job that reported nothing
    for raw in ('{"tokens_per_s": "fast"}', '{"tokens_per_s": true}', '{"tokens_per_s": NaN}', "[1, 2]", "{not json"):
        assert tokens_per_s_of(job(metrics=raw)) is None, raw


def test_a_stored_summary_reads_as_its_tables_and_any_other_result_as_json(store):
    """A summary job's result (hundreds of rows) shows as the tables `emtui summary` prints, not as JSON."""
    import json

    from emtui.screens.queue import result_text
    from engine.results.report_format import to_json
    from engine.results.summary import SummaryOptions, build_summary
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    make_synthetic_study(store, SyntheticSpec(name="tiny", answers_per_condition=10, questions=2))
    report = json.loads(to_json(build_summary(store, SummaryOptions(study="tiny", n_resamples=50))))
    result = json.dumps({"study": "tiny", "summary": report})
    text = result_text({"kind": "summary", "result": result}, 80)
    assert text is not None and "Panel (mean)" in text and "treatment" in text and '"agreement"' not in text
    assert all(len(line) <= 80 for line in text.splitlines())
    other = result_text({"kind": "generate", "result": result}, 80)  # another kind's result: its JSON
    assert other is not None and '"agreement"' in other
