"""What the Eval queue shows of a job (emtui/job_view.py): the bar, rate and ETA, tries, the log's last lines —
from the first schema's columns and from the ones the queue adds (attempt limit, worker host and pid,
log file, progress note, traceback)."""

from __future__ import annotations

from emtui.job_view import (RateMeter, attempts_of, bar, fmt_attempts, fmt_duration, fmt_rate, log_tail, note_of,
                            tail, worker_of)


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
