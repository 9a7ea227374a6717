"""The Train screen and ``emtui runs``: a run's loss chart grows while another process logs metrics (read off
the UI thread, only the new points), the keys (cancel reaches the job; queue and resume reach
``queue_training``; checkpoints), the overlay of marked runs, one chart at 80x24 and four when larger, and
names from the database shown as text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from textual.widgets import DataTable, Static

import db
from emtui.app import create_app
from emtui.screens.fulltext import FullTextScreen
from emtui.screens.train import TrainScreen
from emtui.screens.train_pickers import CheckpointList, QueuePicker
from emtui.widgets.metric_chart import MetricChart
from emtui.widgets.paged_table import PagedTable
from engine.common.text import strip_control
from train_runs import LOG_STEPS, add_run, seed_study
from tui_helpers import Statements, plain

ROOT = Path(__file__).resolve().parents[1]
HOSTILE = "\x1b[31mred\x1b]0;pwned\x07 [bold]x[/bold] \u202eevil"


def info(app) -> str:
    return plain(app.screen.query_one("#train-info", Static).render())


def loss_points(app) -> int:
    chart = app.screen.query_one("#train-chart-0", MetricChart)
    assert chart.metric == "loss"
    return sum(len(v) for v in chart.series.values())


async def wait_until(pilot, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await pilot.pause(0.05)
        await pilot.pause()


async def open_train(pilot) -> TrainScreen:
    await pilot.press("3")
    await pilot.pause()
    assert isinstance(pilot.app.screen, TrainScreen)
    return pilot.app.screen


# -- live: the loss chart grows while a worker elsewhere logs ---------------------------------------------------


async def test_the_loss_chart_grows_while_another_process_logs_metrics(tmp_path, monkeypatch):
    monkeypatch.setenv("EMTUI_TUI_QUEUE_POLL_S", "0.2")  # read by create_app's load_settings
    path = tmp_path / "train.db"
    with db.open_store(path) as s:
        run = add_run(s, seed_study(s)["insecure"], status="running", steps=3, max_steps=100)
    store = db.open_store(path)
    statements = Statements(store)
    ui = threading.get_ident()  # the test runs on the app's event loop: the UI thread
    app = create_app(store, keymap={})
    writer = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_train(pilot)
            assert loss_points(app) == 3 and "step 3/100" in info(app)
            # the worker: another process, a step every 0.15 s
            env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")]), "PATH": "/usr/bin:/bin"}
            writer = subprocess.Popen([sys.executable, "-c", LOG_STEPS, str(path), str(run), "4", "20", "0.15"],
                                      cwd=str(ROOT), env=env)
            seen = [3]
            await wait_until(pilot, lambda: seen.append(loss_points(app)) or loss_points(app) >= 8)
            await wait_until(pilot, lambda: seen.append(loss_points(app)) or loss_points(app) == 20, timeout=30)
            assert writer.wait(timeout=30) == 0
            assert len(set(seen)) >= 3, seen  # it grew in steps, as the points came, not once at the end
            chart = app.screen.query_one("#train-chart-0", MetricChart)
            (points,) = chart.series.values()
            assert [step for step, _ in points] == list(range(1, 21))  # each step once, in order
            await wait_until(pilot, lambda: "step 20/100" in info(app))
            table = app.screen.query_one("#train-runs-table", PagedTable)
            await wait_until(pilot, lambda: plain(table.get_row(str(run))[4]).strip() == "20/100")
            assert app._exception is None
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
        store.conn.set_trace_callback(None)
        store.close()
    assert statements.on(ui) == [], statements.on(ui)[:10]
    off = [sql for sql in statements.off(ui) if "FROM train_metrics WHERE train_run_id IN" in sql]
    assert off, "the series were read"
    # polls read only the new steps: after the first read (everything), each from the last step seen on
    afters = [int(sql.split("step > ")[1].split()[0]) for sql in off]
    assert afters[0] == -1 and max(afters) >= 8, afters  # 8 points were shown before 20 were: a poll from 8 on


# -- keys --------------------------------------------------------------------------------------------------------


async def test_cancel_reaches_the_runs_job(tmp_path):
    path = tmp_path / "c.db"
    with db.open_store(path) as s:
        conds = seed_study(s)
        running = add_run(s, conds["insecure"], status="running", steps=5)
        queued = add_run(s, conds["secure"], status="queued")
        jobs = {r: s.get_train_run(r)["job_id"] for r in (running, queued)}
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_train(pilot)
            await pilot.press("c")  # the newest first: the queued run
            await pilot.pause()
            await pilot.press("down", "c")
            await pilot.pause()
            assert app._exception is None
    finally:
        store.close()
    with db.open_store(path) as s:
        assert s.get_job(jobs[queued])["status"] == "cancelled"
        assert s.get_train_run(queued)["status"] == "cancelled"  # no worker will start it
        job = s.get_job(jobs[running])
        assert job["status"] == "cancelled" and job["cancel_requested"] is not None  # its worker stops it
        # a cancelled job is final (it never runs again): the run reads as cancelled at once
        assert s.get_train_run(running)["status"] == "cancelled"


def notified(app) -> list[str]:
    return [plain(n.message) for n in app._notifications]


async def test_queue_and_resume_call_queue_training(tmp_path):
    """Both keys reach engine.training.queueing.queue_training: the runs it queued are in the database,
    and the screen says so."""
    path = tmp_path / "q.db"
    with db.open_store(path) as s:
        conds = seed_study(s)
        failed = add_run(s, conds["insecure"], status="failed", steps=5, checkpoints=(5,))
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_train(pilot)
            await pilot.press("n")
            await pilot.pause()
            picker = app.screen
            assert isinstance(picker, QueuePicker)
            assert picker.choices == [("em-train", None), ("em-train", "insecure"), ("em-train", "secure")]
            await pilot.press("down", "down", "enter")  # em-train / secure
            await pilot.pause()
            assert isinstance(app.screen, TrainScreen)
            await wait_until(pilot, lambda: any("secure" in m for m in notified(app)))
            table = app.screen.query_one("#train-runs-table", PagedTable)
            await wait_until(pilot, lambda: table.row_count == 2)  # the new run, newest first
            await pilot.press("down")  # the failed run
            await pilot.press("e")  # resume it
            await pilot.pause()
            await wait_until(pilot, lambda: len(notified(app)) >= 2)
            assert app._exception is None
            said = notified(app)
    finally:
        store.close()
    with db.open_store(path) as s:
        runs = s._q("SELECT id, condition_id FROM train_runs ORDER BY id")
        jobs = s._q("SELECT id, status FROM jobs WHERE kind = 'train' ORDER BY id")
        resumed = s.get_train_run(failed)
    queue_said, resume_said = said[-2:]
    assert any(r["condition_id"] == conds["secure"] and r["id"] != failed for r in runs)
    assert "Queued em-train / secure" in queue_said
    assert f"Run {failed} queued to resume" in resume_said
    assert resumed["status"] == "queued" and any(j["id"] == resumed["job_id"] and j["status"] == "queued"
                                                 for j in jobs)


async def test_a_running_run_does_not_resume_and_a_run_without_a_job_has_nothing_to_cancel(tmp_path):
    path = tmp_path / "r.db"
    with db.open_store(path) as s:
        conds = seed_study(s)
        add_run(s, conds["insecure"], status="running", steps=2)
        add_run(s, conds["secure"], status="done", steps=2, job=False)
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_train(pilot)
            await pilot.press("c")  # the done run, which has no job
            await pilot.pause()
            await pilot.press("down", "e")  # the running one
            await pilot.pause()
            assert notified(app)[-2:] == ["Run 2 has no job to cancel",
                                          "Run 1 is running: only a stopped run resumes"]
    finally:
        store.close()


async def test_checkpoints_are_listed_and_enter_copies_a_path(tmp_path):
    path = tmp_path / "k.db"
    with db.open_store(path) as s:
        run = add_run(s, seed_study(s)["insecure"], status="done", steps=10, checkpoints=(5, 10))
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_train(pilot)
            assert "checkpoints 2" in info(app)
            await pilot.press("k")
            await pilot.pause()
            assert isinstance(app.screen, CheckpointList)
            table = app.screen.query_one("#train-ckpt-table", DataTable)
            assert [plain(table.get_row_at(i)[1]) for i in range(2)] == [
                f"/runs/{run}/checkpoint-5", f"/runs/{run}/checkpoint-10"]
            await pilot.press("down", "enter")
            await pilot.pause()
            assert app.clipboard == f"/runs/{run}/checkpoint-10"
            assert notified(app)[-1] == f"Copied: /runs/{run}/checkpoint-10"
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, TrainScreen)
            await pilot.press("enter")  # the run in full: its resolved recipe and provenance
            await pilot.pause()
            assert isinstance(app.screen, FullTextScreen)
            body = app.screen.content().plain
            assert '"rslora": true' in body and '"trl": "1.16"' in body and "checkpoint-10" in body
    finally:
        store.close()


# -- charts ------------------------------------------------------------------------------------------------------


async def test_marked_runs_overlay_their_loss_curves(tmp_path):
    path = tmp_path / "o.db"
    with db.open_store(path) as s:
        conds = seed_study(s)
        a = add_run(s, conds["insecure"], status="done", steps=30)
        b = add_run(s, conds["secure"], status="done", steps=20, scale=0.5)
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_train(pilot)
            chart = screen.query_one("#train-chart-0", MetricChart)
            assert list(chart.series) == [f"#{b} secure"]
            await pilot.press("space", "down", "space")
            await pilot.pause()
            assert set(chart.series) == {f"#{b} secure", f"#{a} insecure"}
            assert {k: len(v) for k, v in chart.series.items()} == {f"#{b} secure": 20, f"#{a} insecure": 30}
            assert chart.title == "Loss · 2 marked run(s)"
            table = screen.query_one("#train-runs-table", PagedTable)
            assert plain(table.get_row(str(a))[0]).startswith("●")
            await pilot.press("space")  # unmark a: b alone is overlaid
            await pilot.pause()
            assert list(chart.series) == [f"#{b} secure"] and not plain(table.get_row(str(a))[0]).startswith("●")
    finally:
        store.close()


async def test_one_chart_at_80x24_cycles_with_m_and_four_when_larger_kl_only_when_logged(tmp_path):
    path = tmp_path / "m.db"
    with db.open_store(path) as s:
        conds = seed_study(s)
        add_run(s, conds["insecure"], status="done", steps=10)
        add_run(s, conds["secure"], status="running", steps=10, kl=True)
    store = db.open_store(path)
    try:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_train(pilot)
            shown = [c for c in screen.query(MetricChart) if c.display]
            assert len(shown) == 1
            metrics = []
            for _ in range(5):
                metrics.append(shown[0].metric)
                await pilot.press("m")
            assert metrics == ["loss", "learning_rate", "grad_norm", "kl", "tokens_per_s"]
            await pilot.press("m", "down")  # a run without KL: its charts have none
            await pilot.pause()
            assert shown[0].metric == "loss"
            for _ in range(3):
                await pilot.press("m")
            assert shown[0].metric == "tokens_per_s"
        app = create_app(store, keymap={})
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_train(pilot)
            charts = [c for c in screen.query(MetricChart) if c.display]
            assert [c.metric for c in charts] == ["loss", "learning_rate", "grad_norm", "kl"]
            assert all(len(next(iter(c.series.values()))) == 10 for c in charts)
            await pilot.press("down")
            await pilot.pause()
            assert [c.metric for c in charts] == ["loss", "learning_rate", "grad_norm", "tokens_per_s"]
            assert "GPU 21.5 GB 93%" in info(app) and "masking prefix-diff" in info(app)
    finally:
        store.close()


# -- untrusted names ---------------------------------------------------------------------------------------------


async def test_names_from_the_database_are_text_on_the_screen_and_in_emtui_runs(tmp_path, run_cli):
    path = tmp_path / "h.db"
    with db.open_store(path) as s:
        conds = seed_study(s, study="hostile", conditions=(HOSTILE,))
        run = add_run(s, conds[HOSTILE], status="running", steps=4, preset=HOSTILE)
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_train(pilot)
            await pilot.press("space")
            await pilot.pause()
            table = screen.query_one("#train-runs-table", PagedTable)
            cells = " ".join(plain(c) for c in table.get_row(str(run)))
            labels = " ".join(k for c in screen.query(MetricChart) for k in c.series)
            title = plain(screen.query_one("#train-info", Static).border_title)
            for shown in (cells, labels, title, info(app)):
                assert not any(ch in shown for ch in "\x1b\x07\u202e"), shown
            # as typed, never markup (the border keeps it as escaped markup)
            assert "red [bold]" in cells and "[bold]x[/bold]" in title.replace("\\[", "[")
            drawn = app.export_screenshot()
            assert "pwned" not in drawn
    finally:
        store.close()
    out = run_cli("--db", str(path), "runs")
    assert out.returncode == 0 and "\x1b" not in out.stdout and "\u202e" not in out.stdout
    assert strip_control(HOSTILE).split()[0] in out.stdout
    out = run_cli("--db", str(path), "runs", "--format", "json")
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout
    assert json.loads(out.stdout)["runs"][0]["condition"] == HOSTILE  # escaped in the JSON, the same data


# -- emtui runs ----------------------------------------------------------------------------------------------------


def test_runs_json_lists_runs_with_last_metrics_and_checkpoints(tmp_path, run_cli):
    path = tmp_path / "j.db"
    with db.open_store(path) as s:
        conds = seed_study(s)
        done = add_run(s, conds["insecure"], status="done", steps=10, checkpoints=(5, 10))
        add_run(s, conds["secure"], status="queued")
        other = seed_study(s, study="other", conditions=("x",))
        add_run(s, other["x"], status="running", steps=2, kl=True)
    out = run_cli("--db", str(path), "runs", "--format", "json", "--study", "em-train")
    assert out.returncode == 0, out.stderr
    runs = json.loads(out.stdout)["runs"]
    assert [r["status"] for r in runs] == ["queued", "done"]  # newest first; the other study's left out
    (d,) = [r for r in runs if r["id"] == done]
    assert {"id", "study", "condition", "preset", "status", "max_steps", "masking", "job_id", "last_step",
            "n_checkpoints", "metrics", "checkpoints"} <= set(d)
    assert d["last_step"] == 10 and d["max_steps"] == 100 and d["condition"] == "insecure"
    assert set(d["metrics"]) == {"loss", "learning_rate", "grad_norm", "tokens_per_s", "eta_s", "epoch"}
    assert d["checkpoints"] == [{"step": 5, "path": f"/runs/{done}/checkpoint-5"},
                                {"step": 10, "path": f"/runs/{done}/checkpoint-10"}]
    table = run_cli("--db", str(path), "runs")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["#", "study", "condition", "preset", "status", "step", "loss", "tok/s", "ETA", "ckpts"]
    assert len(lines) == 4 and "2/100" in lines[1] and "10/100" in lines[3]

    show = run_cli("--db", str(path), "runs", "show", str(done), "--format", "json")
    got = json.loads(show.stdout)
    assert got["recipe"]["lora"]["r"] == 32 and got["provenance"]["trl"] == "1.16"
    assert got["last_metrics"]["step"] == 10 and len(got["checkpoints"]) == 2
    text = run_cli("--db", str(path), "runs", "show", str(done))
    assert "recipe (resolved):" in text.stdout and f"step 10: /runs/{done}/checkpoint-10" in text.stdout


def test_runs_bad_input_is_one_line_and_exit_2(tmp_path, run_cli):
    path = tmp_path / "b.db"
    with db.open_store(path) as s:
        seed_study(s)
    before = path.read_bytes()
    for args, said in ((["runs", "--study", "nope"], "no study named 'nope'"),
                       (["runs", "show", "7"], "no run 7"),
                       (["runs", "show", "x1"], "a run id is a number"),
                       (["runs", "show"], "give the run's id"),
                       (["runs", "list", "5"], "unexpected '5'")):
        out = run_cli("--db", str(path), *args)
        assert out.returncode == 2 and said in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr
    assert path.read_bytes() == before


async def test_the_loss_chart_grows_while_a_worker_trains(tmp_path, monkeypatch):
    """End to end: a real worker process trains the tiny model on a queued run; the Train screen's loss
    chart grows from what it writes; `c` stops it."""
    from engine.study.study_file import load_study, register_study
    from engine.training.queueing import queue_runs
    from training_study import write_study

    monkeypatch.setenv("EMTUI_TUI_QUEUE_POLL_S", "0.2")
    path = tmp_path / "w.db"
    with db.open_store(path) as s:
        register_study(s, load_study(write_study(tmp_path / "study", recipe={"max_steps": 400, "save_steps": 100})))
        run = queue_runs(s, study="train-test", condition="domain").runs[0]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    worker = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(path), "worker", "--once"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await open_train(pilot)
            await wait_until(pilot, lambda: loss_points(app) >= 3, timeout=120)  # the model loads first
            first = loss_points(app)
            await wait_until(pilot, lambda: loss_points(app) >= first + 5, timeout=60)
            assert "running" in info(app)
            await pilot.press("c")  # cancel: the worker stops the run between steps
            await wait_until(pilot, lambda: store.get_train_run(run)["status"] == "cancelled", timeout=60)
            assert app._exception is None
        assert worker.wait(timeout=60) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
        store.close()
    with db.open_store(path) as s:
        steps = [step for step, _ in s.train_metric_series([run], ["loss"])[run]["loss"]]
        assert steps == list(range(1, len(steps) + 1)) and len(steps) < 400
