"""The progress protocol: the no-op, the console (a bar on a terminal, plain lines otherwise), a
job's in the database (never blocking the caller), and `emtui summary` / `emtui import` with a
bar on a terminal and their output otherwise unchanged."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import threading
import time

import pytest

from db import open_store
from engine.runs.job_progress import JobProgress
from engine.runs.progress import (
    ConsoleProgress,
    JobCancelled,
    Progress,
    console_progress,
    eta_text,
)


def test_the_no_op_progress():
    p = Progress()
    p.set_total(10)
    p.advance(3)
    p.note("x")
    p.metrics({"loss": 1.0})
    assert (p.total, p.done, p.cancelled()) == (10, 3, False)
    p.check()  # not cancelled: no raise
    with Progress() as q:
        q.advance()


def test_check_raises_job_cancelled_which_except_exception_does_not_catch():
    class Cancelled(Progress):
        def cancelled(self) -> bool:
            return True

    with pytest.raises(JobCancelled):
        try:
            Cancelled().check()
        except Exception:  # noqa: BLE001 - a handler's broad except must not swallow it
            pytest.fail("JobCancelled was caught as an Exception")


def test_console_progress_writes_plain_lines_when_not_a_terminal():
    out = io.StringIO()
    p = ConsoleProgress("import \x1b[31mx", stream=out, every_s=3600)
    p.set_total(4)
    for _ in range(4):
        p.advance()
    p.note("writing\x1b[2J rows")
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("import x: 0/4 (")  # the first line, then only notes within the hour
    assert lines[-1].startswith("import x · writing rows: 4/4 (")
    assert "\x1b" not in out.getvalue()
    assert type(console_progress("quiet", plain=False, stream=io.StringIO())) is Progress


def test_console_progress_draws_a_bar_on_a_terminal():
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as stream:
            p = console_progress("training", plain=False, stream=stream)
            assert isinstance(p, ConsoleProgress)
            p.set_total(10)
            p.advance(5)
            p.note("epoch 2")
            time.sleep(0.3)  # rich refreshes on its own thread
            p.close()
        seen = b""
        while select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 65536)
    finally:
        os.close(master)
        os.close(slave)
    text = seen.decode("utf-8", "replace")
    assert "training" in text and "5/10" in text and "epoch 2" in text


def test_eta_text():
    assert [eta_text(s) for s in (None, float("nan"), -1, 0, 59.4, 61, 3725)] == ["", "", "", "0s", "59s", "1m01s",
                                                                                  "1h02m"]


# -- a job's progress in the database ------------------------------------------------------------------


@pytest.fixture
def claimed(store):
    job = store.enqueue_job("k", {}, progress_total=7)
    store.claim_job("w", kinds=["k"], lease_s=60)
    return job


def test_job_progress_is_written_throttled_and_in_full_at_close(store, claimed):
    log = io.StringIO()
    p = JobProgress(store, claimed, "w", flush_s=0.05, total=7, log=log)
    p.set_total(100)
    p.note("loading the model")
    p.note("loading the model")  # the same note twice is one line of history
    for _ in range(40):
        p.advance()
        time.sleep(0.03)
    p.metrics({"loss": 0.25, "tokens_per_s": 900})
    p.note("epoch 2")
    p.advance(10)
    p.close()
    row = store.get_job(claimed)
    assert (row["progress_done"], row["progress_total"], row["note"]) == (50, 100, "epoch 2")
    assert '"loss":0.25' in row["metrics"] and row["rate"] > 5 and row["progress_at"]
    notes = [e["text"] for e in store.job_events(claimed) if e["event"] == "note"]
    assert notes == ["loading the model", "epoch 2"]
    assert "note: loading the model" in log.getvalue()
    assert not p.cancelled()


def test_job_progress_never_blocks_the_caller_on_a_locked_database(store, claimed, db_path):
    p = JobProgress(store, claimed, "w", flush_s=0.02, log=io.StringIO())
    blocker = open_store(db_path)
    held = threading.Event()

    def hold_the_write_lock():
        with blocker.transaction():  # another process writing a large batch
            held.set()
            time.sleep(1.0)

    t = threading.Thread(target=hold_the_write_lock)
    t.start()
    held.wait()
    slowest = 0.0
    for _ in range(2000):
        t0 = time.perf_counter()
        p.advance()
        slowest = max(slowest, time.perf_counter() - t0)
    t.join()
    blocker.close()
    p.close()
    assert slowest < 0.05, f"advance() blocked for {slowest * 1000:.0f} ms"
    assert store.get_job(claimed)["progress_done"] == 2000


def test_job_progress_learns_of_a_cancel_and_of_a_takeover(store, claimed, db_path):
    other = open_store(db_path)
    p = JobProgress(store, claimed, "w", flush_s=0.02, log=io.StringIO())
    assert not p.cancelled()
    other.cancel_job(claimed)
    deadline = time.monotonic() + 3
    while not p.cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert p.cancelled()
    with pytest.raises(JobCancelled):
        p.check()
    p.close()

    job = store.enqueue_job("k", {})
    store.claim_job("w", kinds=["k"], lease_s=-1)
    q = JobProgress(store, job, "w", flush_s=0.02, log=io.StringIO())
    assert other.claim_job("w2", kinds=["k"])["id"] == job  # its lease ran out: another worker took it
    q.advance()
    deadline = time.monotonic() + 3
    while not q.cancelled() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert q.cancelled()
    q.close()
    assert store.get_job(job)["progress_done"] == 0  # the new owner's progress is left alone
    other.close()


# -- the commands: a bar on a terminal, their output otherwise unchanged ------------------------------------------


def _run_with_stderr_on_a_terminal(args, cli_env, cwd):
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "emtui", *map(str, args)], env=cli_env({"COLUMNS": "100"}),
                                cwd=cwd, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        seen = b""
        while True:
            ready = select.select([master], [], [], 0.1)[0]
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:
                    chunk = b""
                seen += chunk
                if not chunk and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
        out = proc.stdout.read()
        proc.wait(timeout=60)
        return proc.returncode, out, seen.decode("utf-8", "replace")
    finally:
        os.close(master)


def test_summary_shows_progress_on_a_terminal_and_prints_the_same(run_cli, cli_env, tmp_path):
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    db = tmp_path / "s.db"
    with open_store(db) as store:
        make_synthetic_study(store, SyntheticSpec(answers_per_condition=30))
    args = ["--db", db, "summary", "--format", "json", "--resamples", "200"]
    plain = run_cli(*args)
    assert plain.returncode == 0 and plain.stderr == ""
    rc, out, terminal = _run_with_stderr_on_a_terminal(args, cli_env, tmp_path)
    assert rc == 0 and out == plain.stdout
    assert "summary" in terminal and "1/1" in terminal


def test_import_shows_progress_on_a_terminal_and_says_the_same(run_cli, cli_env, tmp_path, shared_fixtures):
    csv = shared_fixtures / "betley" / "qwen_25_coder_32b_instruct.csv"
    plain = run_cli("--db", tmp_path / "a.db", "import", "betley-csv", csv)
    assert plain.returncode == 0 and plain.stderr == ""
    rc, out, terminal = _run_with_stderr_on_a_terminal(["--db", tmp_path / "b.db", "import", "betley-csv", csv],
                                                        cli_env, tmp_path)
    assert rc == 0 and out == plain.stdout.replace("a.db", "b.db")
    assert "import betley-csv" in terminal


def test_figures_show_progress_on_a_terminal_and_print_the_same(run_cli, cli_env, tmp_path):
    pytest.importorskip("matplotlib")
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    db = tmp_path / "s.db"
    with open_store(db) as store:
        make_synthetic_study(store, SyntheticSpec(answers_per_condition=20))
    plain = run_cli("--db", db, "figures", "--out", tmp_path / "a", "--format", "png", "--resamples", "100")
    assert plain.returncode == 0 and plain.stderr == ""
    rc, out, terminal = _run_with_stderr_on_a_terminal(
        ["--db", db, "figures", "--out", tmp_path / "b", "--format", "png", "--resamples", "100"], cli_env, tmp_path)
    assert rc == 0 and out == plain.stdout.replace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert "figures" in terminal and "2/2" in terminal  # the summary's study, then the study drawn


class _Recording(Progress):
    def __init__(self, cancel_after_notes: int | None = None) -> None:
        super().__init__()
        self.notes: list[str] = []
        self.cancel_after_notes = cancel_after_notes

    def note(self, text: str) -> None:
        self.notes.append(text)

    def cancelled(self) -> bool:
        return self.cancel_after_notes is not None and len(self.notes) >= self.cancel_after_notes


def test_figures_report_each_study_drawn_and_stop_when_cancelled(store, tmp_path):
    pytest.importorskip("matplotlib")
    from engine.results.figures import FigureOptions, make_figures
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    make_synthetic_study(store, SyntheticSpec(answers_per_condition=20))
    progress = _Recording()
    opts = FigureOptions.parse(formats="png", n_resamples=100, metric=None)
    result = make_figures(store, tmp_path / "figs", opts=opts, progress=progress)
    assert result.written and (progress.done, progress.total) == (2, 2)
    assert progress.notes[-1].endswith(": drawing")
    stopped = _Recording(cancel_after_notes=1)  # cancelled while the summary reads
    with pytest.raises(JobCancelled):
        make_figures(store, tmp_path / "none", opts=opts, progress=stopped)
    assert not (tmp_path / "none").exists()  # nothing written, no empty folder left
