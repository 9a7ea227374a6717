"""What the Eval queue screen shows of a job, from the job's row: its progress as a bar, its rate and
ETA, its tries, who runs it, its log's last lines.

Every field the screen reads from a job row goes through the accessors here, so that the queue's
schema can grow (attempt limits, progress notes, the worker's host, pid and log file) without the
screen changing: an accessor reads the new column when the row has it and falls back to what
the first schema has. Nothing here imports Textual or touches the database.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from engine.common.text import strip_control

BAR_FULL, BAR_EMPTY = "█", "░"
BAR_PARTS = " ▏▎▍▌▋▊▉"  # eighths of a cell
STATUS_STYLE = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "dim"}
RATE_WINDOW_S = 60.0  # the rate is measured over the progress seen in the last minute
LOG_TAIL_BYTES = 64 * 1024  # a log's last lines are read from its end: a log of gigabytes costs the same


# -- accessors: the job row's fields ------------------------------------------------------------------


def progress_of(job: dict[str, Any]) -> tuple[int, int | None]:
    """(done, total): total None when the job has not said how much there is."""
    done = int(job.get("progress_done") or 0)
    total = job.get("progress_total")
    return done, (int(total) if total else None)


def metrics_of(job: dict[str, Any]) -> dict[str, Any]:
    """What the job last reported of how it runs (its ``metrics`` JSON: a generate job's ``tokens_per_s``,
    ``batch_size`` and ``model``); {} when it reported nothing or the JSON is not an object."""
    raw = job.get("metrics")
    if not raw:
        return {}
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def tokens_per_s_of(job: dict[str, Any]) -> float | None:
    """Tokens per second the job last reported (generation, training), None when it reported none."""
    value = metrics_of(job).get("tokens_per_s")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def attempts_of(job: dict[str, Any]) -> tuple[int, int | None]:
    """(tries so far, the most it gets): the limit from ``max_attempts`` where the queue keeps one."""
    limit = job.get("max_attempts")
    return int(job.get("attempts") or 0), (int(limit) if limit else None)


def note_of(job: dict[str, Any]) -> str:
    """What the job last said about what it is doing (its ``note``), if anything."""
    return strip_control(str(job.get("note") or job.get("progress_note") or ""))


def workers_line(workers: list[dict[str, Any]]) -> Text:
    """One line of the workers of this database: each alive one's ``host:pid``, its GPUs, its job and
    how long ago it renewed its heartbeat; when none is alive, how to start one."""
    alive = [w for w in workers if w.get("alive")]
    text = Text(no_wrap=True, overflow="ellipsis")
    if not alive:
        text.append(" no worker alive", style="bold yellow")
        text.append(" — w starts one in the background (emtui worker --detach)", style="dim")
        return text
    text.append(f" workers {len(alive)}", style="bold")
    for w in alive:
        text.append("  ")
        text.append(strip_control(f"{w['host']}:{w['pid']}"))
        if w.get("n_gpus"):
            text.append(f" gpu {strip_control(str(w.get('gpus') or w['n_gpus']))}", style="cyan")
        job = f" #{w['job_id']} {strip_control(str(w.get('job_kind') or ''))}" if w.get("job_id") else " idle"
        text.append(job, style="" if w.get("job_id") else "dim")
        text.append(f" {fmt_duration(max(0.0, float(w.get('heartbeat_age_s') or 0)))} ago", style="dim")
    return text


def worker_of(job: dict[str, Any]) -> str:
    """Who runs (or last ran) it: ``host:pid`` where the queue records them, else the lease owner."""
    host, pid = job.get("worker_host"), job.get("worker_pid")
    if host or pid:
        return strip_control(f"{host or '?'}:{pid or '?'}")
    return strip_control(str(job.get("lease_owner") or ""))


def log_path_of(job: dict[str, Any]) -> Path | None:
    """The log file of the job (``log_path``, or the worker's ``worker_log``) where the queue keeps one."""
    for key in ("log_path", "worker_log"):
        if job.get(key):
            return Path(str(job[key]))
    return None


def failure_of(job: dict[str, Any]) -> str:
    """Why it failed: the traceback where the queue keeps one, else the error line."""
    return str(job.get("traceback") or job.get("error") or "")


def epoch(stamp: str | None) -> float | None:
    """A stored UTC time (ISO 8601) as Unix seconds; None when there is none or it does not parse."""
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return None


# -- the progress bar -----------------------------------------------------------------------------------


def bar(done: int, total: int | None, width: int, style: str = "cyan") -> Text:
    """``███▌░░░░ 45%`` in ``width`` cells; with no total, the count done."""
    if not total:
        return Text(f"{done:,}" if done else "—", style="" if done else "dim")
    frac = min(1.0, max(0.0, done / total))
    pct = f" {int(frac * 100):>3}%"
    cells = max(1, width - len(pct))
    eighths = int(frac * cells * 8)
    full, part = divmod(eighths, 8)
    drawn = BAR_FULL * full + (BAR_PARTS[part] if part and full < cells else "")
    text = Text(drawn, style=style)
    text.append(BAR_EMPTY * (cells - len(drawn)), style="dim")
    text.append(pct)
    return text


def bar_style(status: str) -> str:
    return {"failed": "red", "cancelled": "dim", "done": "green"}.get(status, "cyan")


# -- rate and ETA -----------------------------------------------------------------------------------------


class RateMeter:
    """Items per second of each job, from the progress seen at each poll (the last minute of it);
    before a job has moved twice under our eyes, its average since it started."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self.seen: dict[int, deque[tuple[float, int]]] = {}

    def observe(self, job: dict[str, Any], now: float | None = None) -> None:
        now = time.time() if now is None else now
        done, _ = progress_of(job)
        samples = self.seen.setdefault(int(job["id"]), deque())
        if samples and done < samples[-1][1]:  # started over (a new try): what came before says nothing
            samples.clear()
        samples.append((now, done))
        while len(samples) > 2 and now - samples[1][0] > self.window_s:
            samples.popleft()

    def rate(self, job: dict[str, Any], now: float | None = None) -> float | None:
        """Items per second, None when nothing can be said (not started, nothing done)."""
        now = time.time() if now is None else now
        done, _ = progress_of(job)
        samples = self.seen.get(int(job["id"]))
        if job.get("status") == "running" and samples and len(samples) >= 2:
            (t0, d0), (t1, d1) = samples[0], samples[-1]
            if t1 > t0 and d1 > d0:
                return (d1 - d0) / (t1 - t0)
        started = epoch(job.get("started_at"))
        end = epoch(job.get("finished_at")) if job.get("status") != "running" else now
        if started is None or end is None or end <= started or done <= 0:
            return None
        return done / (end - started)

    def eta(self, job: dict[str, Any], now: float | None = None) -> float | None:
        """Seconds left for a running job with a total, at its rate; None when unknown."""
        done, total = progress_of(job)
        if job.get("status") != "running" or not total:
            return None
        rate = self.rate(job, now)
        if not rate:
            return None
        return max(0.0, (total - done) / rate)

    def forget_others(self, ids: set[int]) -> None:
        for job_id in [i for i in self.seen if i not in ids]:
            del self.seen[job_id]


def fmt_rate(rate: float | None) -> str:
    """``12.3/s``, ``45/m`` (under one a second), ``—``."""
    if rate is None:
        return "—"
    if rate >= 100:
        return f"{rate:,.0f}/s"
    if rate >= 1:
        return f"{rate:.1f}/s"
    per_minute = rate * 60
    return f"{per_minute:.1f}/m" if per_minute >= 1 else f"{per_minute * 60:.1f}/h"


def fmt_duration(seconds: float | None) -> str:
    """``45s``, ``4m05s``, ``2h13m``, ``3d04h``, ``—``."""
    if seconds is None or math.isnan(seconds) or math.isinf(seconds):
        return "—"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def fmt_attempts(job: dict[str, Any]) -> str:
    tries, limit = attempts_of(job)
    return f"{tries}/{limit}" if limit else str(tries)


# -- the log's last lines ---------------------------------------------------------------------------------


def tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (read from its end), control sequences stripped;
    raises OSError when it cannot be read."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - LOG_TAIL_BYTES))
        data = f.read()
    text = data.decode("utf-8", errors="replace")
    got = text.splitlines()
    if size > LOG_TAIL_BYTES and got:  # the first line read is (likely) the end of a longer one
        got = got[1:]
    return [strip_control(line) for line in got[-lines:]] if lines > 0 else []


def log_tail(job: dict[str, Any], lines: int) -> tuple[str, list[str]]:
    """(what is shown, its last lines): the job's log file where it has one, else its failure."""
    path = log_path_of(job)
    if path is not None:
        try:
            return f"log {path}", tail(path, lines)
        except OSError as exc:
            return f"log {path}", [f"(cannot read it: {exc.strerror or exc})"]
    failure = failure_of(job)
    if failure:
        return "error", [strip_control(line) for line in failure.splitlines()[-lines:]]
    return "log", []
