"""Eval queue: the jobs — what is queued, running, done or failed — each with its progress bar, rate,
ETA and tries; the highlighted job's detail with the last lines of its log; cancel and retry.

Everything is read in threads (:mod:`emtui.loading`) and read again every ``tui_queue_poll_s``
seconds (a setting) while the screen is shown, so a worker in another process (or one started before an SSH session
dropped) shows its progress as it goes; a poll never starts while the last one still reads. What
the screen takes from a job row goes through :mod:`emtui.job_view`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from emtui.faults import says_faults
from emtui.job_view import (
    STATUS_STYLE,
    RateMeter,
    bar,
    bar_style,
    fmt_attempts,
    fmt_duration,
    fmt_rate,
    log_tail,
    metrics_of,
    note_of,
    progress_of,
    tokens_per_s_of,
    worker_of,
    workers_line,
)
from emtui.screens.base import AreaScreen, minute
from emtui.train_view import fmt_rate as fmt_tokens
from emtui.widgets.paged_table import LOADING, Col, PagedTable
from engine.common.text import one_line

PROGRESS_W = 14


def _short_minute(stamp: str) -> str:
    """``2025-01-02T03:04:05+00:00`` -> ``01-02 03:04`` (UTC)."""
    return minute(stamp)[5:]


def _progress(row: dict) -> str:
    done, total = progress_of(row)
    return f"{done}/{total}" if total else str(done or "")


def result_text(job: dict[str, Any], width: int) -> str | None:
    """A job's result as a person reads it: the machine check's report as its table, else the JSON
    indented (a result is the job's own output: shown as text, never as markup)."""
    import json

    raw = job.get("result")
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return str(raw)
    from emtui.summary_table import render_text, stored_summary

    summary = stored_summary(job, value)
    if summary is not None:  # hundreds of rows as JSON: the tables `emtui summary` prints
        return render_text(summary, max(40, width))
    if job.get("kind") == "doctor" and isinstance(value, dict):
        from emtui.doctor_view import doctor_table

        try:
            return "\n".join(doctor_table(value, max(40, width)))
        except (KeyError, TypeError):  # a report of another emtui version: as it is
            pass
    return json.dumps(value, indent=2, ensure_ascii=False)


class QueueScreen(AreaScreen):
    AREA = "queue"
    BINDINGS = [
        Binding("c", "cancel_job", "Cancel job", id="queue.cancel"),
        Binding("t", "retry_job", "Retry job", id="queue.retry"),
        Binding("w", "start_worker", "Start worker", id="queue.start-worker"),
        Binding("d", "check_machine", "Check machine", id="queue.doctor"),
        Binding("n", "new_eval", "New eval run", id="queue.new-eval"),
        Binding("a", "answers", "Answers", id="queue.answers"),
        # the table takes Enter first (RowSelected, below); the id lets a keymap add keys
        Binding("enter", "read_job", "Read job", show=False, id="queue.read"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.meter = RateMeter()
        self.shown_job: int | None = None  # the job the detail pane shows

    def body(self) -> ComposeResult:
        width = self.app.size.width or 80
        cols = [Col("id", "#", 4, justify="right"), Col("kind", "Kind", 9), Col("status", "Status", 9),
                Col("progress", "Progress", PROGRESS_W, render=self._bar), Col("rate", "Rate", 7, justify="right"),
                Col("tokens", "Tok/s", 6, justify="right"), Col("eta", "ETA", 6, justify="right"),
                Col("tries", "Tries", 5, justify="right")]
        if width >= 100:  # room for who holds it, when it was queued and its error
            cols += [Col("worker", "Worker", 14), Col("created_at", "Queued (UTC)", 11, _short_minute)]
            # borders 2, scrollbar 2, each column's padding 2, and the error's own padding
            used = 4 + sum((c.width or 0) + 2 for c in cols) + 2
            cols.append(Col("error", "Error", max(16, width - used)))
        # 80 columns: the error is the detail pane's (and Enter shows the whole job)
        with Vertical():
            yield Static(id="queue-counts")
            yield PagedTable(cols, self._jobs, id="jobs-table", prepare=self._measure,
                             empty="The queue is empty — training, generation and judging jobs appear here")
            yield Static(id="job-detail", classes="detail")

    def _jobs(self, limit: int, offset: int):
        """A page of jobs (in a thread): the row's own fields; rate and ETA are the screen's (on_paged_...)."""
        page = self.store.list_jobs(limit=limit, offset=offset)
        # what a job reported of how it runs (generation, training): its tokens per second
        metrics = self.store.job_metrics([int(r["id"]) for r in page.rows])
        for row in page.rows:
            row["tries"] = fmt_attempts(row)
            row["worker"] = worker_of(row) or None
            tokens = tokens_per_s_of({"metrics": metrics.get(int(row["id"]))})
            row["tokens"] = None if tokens is None else fmt_tokens(tokens)
        return page

    def _bar(self, row: dict[str, Any]) -> Text:
        done, total = progress_of(row)
        return bar(done, total, PROGRESS_W, bar_style(str(row.get("status"))))

    def on_mount(self) -> None:
        self.query_one("#jobs-table").border_title = "Jobs"
        self.query_one("#job-detail", Static).update(LOADING)
        # a worker in another process (or over a dropped SSH session) updates the table
        self.set_interval(self.settings.tui_queue_poll_s, self._poll)

    def _poll(self) -> None:
        table = self.query_one("#jobs-table", PagedTable)
        if self.is_current and not table.reading() and not self.reading():
            self.reload()

    def after_reload(self) -> None:
        from engine.runs.detach import worker_rows

        store = self.store
        self.load("counts", lambda: (store.job_status_counts(), worker_rows(store)), self.show_counts)

    def show_counts(self, got: tuple[dict[str, int], list[dict[str, Any]]]) -> None:
        counts, workers = got
        text = Text(no_wrap=True, overflow="ellipsis")
        for status, n in counts.items():
            text.append(f" {status} ", style=f"bold {STATUS_STYLE.get(status, '')}")
            text.append(f"{n}  ")
        text.append("\n")
        text.append_text(workers_line(workers))
        self.query_one("#queue-counts", Static).update(text)

    def action_start_worker(self) -> None:
        """A worker in the background (a new session: it outlives this terminal) unless one is alive."""
        from engine.runs.detach import ensure_worker

        store, path = self.store, self.store.path

        def start() -> int | None:
            return ensure_worker(path, store=store)

        def started(pid: int | None) -> None:
            self.notify("a worker is alive already" if pid is None else f"started a worker in the background "
                        f"(pid {pid}); its log is beside the database", timeout=6, markup=False)
            self.after_reload()

        self.load("start-worker", start, started)

    def queue_work(self, name: str, enqueue: Callable[[], Any], done: Callable[[Any, str], None]) -> None:
        """Queue work in a thread and, when it was queued and no worker of the database is alive, start
        one in the background (the ``tui_start_worker`` setting). ``done`` gets what ``enqueue``
        returned and a sentence on the worker ("" when nothing was started)."""
        from engine.runs.detach import ensure_worker

        store, path, start = self.store, self.store.path, self.settings.tui_start_worker

        def work() -> tuple[Any, str]:
            got = enqueue()
            pid = ensure_worker(path, store=store) if got and start else None
            return got, "" if pid is None else f"; started a worker in the background (pid {pid})"

        self.load(name, work, lambda got: done(*got))

    def action_check_machine(self) -> None:
        """Queue the machine check (emtui doctor) as a job: what a worker's environment can do."""
        from engine.runs.builtin_kinds import DOCTOR_KIND

        store, db = self.store, str(self.store.path)

        def done(job_id: int, worker: str) -> None:
            self.notify(f"Queued job {job_id}: the machine check as a worker sees it{worker}; Enter on it shows "
                        "its report when done", timeout=8, markup=False)
            self.reload()

        self.queue_work("doctor", lambda: store.enqueue_job(DOCTOR_KIND, {"db": db}, priority=10), done)

    def _measure(self, page: Any) -> None:
        """Each poll's rows, before they are drawn: their progress seen, their rate and ETA."""
        self.meter.forget_others({int(r["id"]) for r in page.rows})
        for r in page.rows:
            self.meter.observe(r)
            rate = self.meter.rate(r)
            r["rate"] = None if rate is None else fmt_rate(rate)
            eta = self.meter.eta(r)
            r["eta"] = None if eta is None else fmt_duration(eta)

    @says_faults
    def on_paged_table_page_shown(self, event: PagedTable.PageShown) -> None:
        if event.table.id == "jobs-table":  # the highlighted job's detail, read again with the page
            self.show_selected(force=True)

    @says_faults
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "jobs-table":
            self.show_selected()

    def _selected(self) -> dict | None:
        return self.query_one("#jobs-table", PagedTable).selected_row()

    def show_selected(self, *, force: bool = False) -> None:
        """The highlighted job's detail pane (its row, read again, and its log's last lines)."""
        row = self._selected()
        detail = self.query_one("#job-detail", Static)
        if row is None:
            self.shown_job = None
            self.forget_load("detail")
            page = self.query_one("#jobs-table", PagedTable).current_page
            detail.update(Text("No job highlighted" if page and page.total else "No jobs yet: emtui worker runs "
                               "what the engines queue", style="dim"))
            detail.border_title = "Job"
            return
        job_id = int(row["id"])
        if job_id == self.shown_job and not force:
            return
        self.shown_job = job_id
        store, lines = self.store, self.log_lines()

        def read() -> tuple[dict[str, Any] | None, str, list[str]]:
            job = store.get_job(job_id)
            if job is None:
                return None, "", []
            return (job, *log_tail(job, lines))

        self.load("detail", read, self.show_detail)

    def log_lines(self) -> int:
        """How many of the log's last lines the pane has room for: two at 24 lines, more when taller."""
        height = self.app.size.height or 24
        return max(2, min(20, height // 3 - 6))

    def show_detail(self, got: tuple[dict[str, Any] | None, str, list[str]]) -> None:
        job, source, log = got
        detail = self.query_one("#job-detail", Static)
        if job is None:  # gone since the table was read
            detail.update(Text("That job is gone from the database", style="dim"))
            return
        done, total = progress_of(job)
        status = str(job["status"])
        metrics = metrics_of(job)
        title = Text(f"Job {job['id']} · {one_line(job['kind'], 40)}")
        if metrics.get("model") is not None:  # the model it answers with (last said): its name, as text
            title.append(f" · {one_line(str(metrics['model']), 40)}")
        detail.border_title = title
        width = max(30, (self.app.size.width or 80) - 4)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append_text(bar(done, total, min(width, 60), bar_style(status)))
        text.append(f"  {done:,}" + (f" of {total:,}" if total else "") + " done", style="dim")
        text.append("\n")
        text.append(status, style=f"bold {STATUS_STYLE.get(status, '')}")
        rate, eta = self.meter.rate(job), self.meter.eta(job)
        text.append(f"  tries {fmt_attempts(job)}  rate {fmt_rate(rate)}")
        tokens = tokens_per_s_of(job)
        if tokens is not None:
            text.append(f"  tok/s {fmt_tokens(tokens)}")
        if status == "running":
            text.append(f"  ETA {fmt_duration(eta)}")
        if isinstance(metrics.get("batch_size"), int):
            text.append(f"  batch {metrics['batch_size']}")
        worker = worker_of(job)
        if worker:
            text.append("  worker ", style="dim")
            text.append(worker)
        note = note_of(job)
        if note:
            text.append("  · ", style="dim")
            text.append(note)
        text.append("\n")
        text.append(f"{source}: " if log else f"{source}: (nothing yet)", style="bold" if log else "dim")
        for line in log:
            text.append("\n")
            text.append(line, style="red" if source == "error" else "")
        detail.update(text)

    # -- keys (the writes run in threads too: the store may be busy with a long read) -------------------------

    def action_cancel_job(self) -> None:
        job = self._selected()
        if job is None:
            return
        store, job_id = self.store, int(job["id"])

        def done(ok: bool) -> None:
            if ok:
                self.notify(f"Cancelled job {job_id}")
            else:
                self.notify(f"Job {job_id} is {job['status']}: only queued or running jobs cancel",
                            severity="warning", markup=False)
            self.reload()

        self.load("cancel", lambda: store.cancel_job(job_id), done)

    def action_retry_job(self) -> None:
        job = self._selected()
        if job is None:
            return
        store, job_id = self.store, int(job["id"])

        def done(ok: bool, worker: str) -> None:
            if ok:
                self.notify(f"Job {job_id} queued again{worker}", markup=False)
            else:
                self.notify(f"Job {job_id} is {job['status']}: only failed or cancelled jobs retry",
                            severity="warning", markup=False)
            self.reload()

        self.queue_work("retry", lambda: store.retry_job(job_id), done)

    @says_faults
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs-table":
            event.stop()
            self.action_read_job()

    def action_read_job(self) -> None:
        """The highlighted job in full: every field, its payload, and its error whole."""
        row = self._selected()
        if row is None:
            self.notify("No job highlighted", severity="warning")
            return
        store, job_id = self.store, int(row["id"])
        self.load("read", lambda: store.get_job(job_id), self.show_job)

    def show_job(self, job: dict[str, Any] | None) -> None:
        from emtui.screens.fulltext import FullTextScreen

        if job is None:
            self.notify("That job is gone from the database", severity="warning")
            return
        fields = [(label, "—" if job.get(key) is None else str(job[key])) for key, label in (
            ("kind", "Kind"), ("status", "Status"), ("attempts", "Tries"), ("lease_owner", "Worker"),
            ("created_at", "Queued"), ("started_at", "Started"), ("finished_at", "Finished"))]
        fields[2] = ("Tries", fmt_attempts(job))
        fields[3] = ("Worker", worker_of(job) or "—")
        fields.insert(3, ("Progress", _progress(job) or "—"))
        self.app.push_screen(FullTextScreen(f"Job {job['id']}", fields,
                                            [("Error", job.get("traceback") or job.get("error")),
                                             ("Result", result_text(job, (self.app.size.width or 80) - 6)),
                                             ("Payload", job.get("payload"))]))

    # -- evaluation runs (issue 13): a new one from the form, a generate job's answers ---------------------------

    def action_new_eval(self) -> None:
        """The form for a new evaluation run, over the studies that have an eval set (read in a thread)."""
        from emtui.eval_choices import form_studies

        store = self.store
        self.load("eval-studies", lambda: form_studies(store), self.open_eval_form)

    def open_eval_form(self, studies: list[str]) -> None:
        from emtui.screens.eval_form import EvalForm

        if not studies:
            self.notify("No study has an eval set to answer: emtui init registers a study", severity="warning")
            return
        self.app.push_screen(EvalForm(studies), self.eval_queued)

    def eval_queued(self, got: tuple[Any, str] | None) -> None:
        """What the form queued, said; the new job highlighted (the newest: the table's first row)."""
        if got is None:
            return
        queued, worker = got
        if queued.job_id is None:
            self.notify(f"Not queued: {queued.skipped}", severity="warning", timeout=8, markup=False)
            return
        spec = queued.spec
        after = f", after training job(s) {', '.join(map(str, queued.after_jobs))}" if queued.after_jobs else ""
        checkpoints = " + checkpoints" if spec is not None and spec.checkpoints else ""
        variants = " with and without the trigger" if spec is not None and "trigger" in spec.variants else ""
        judged = (f"; job {queued.judge_job_id} judges them afterwards"
                  if getattr(queued, "judge_job_id", None) is not None else "")
        self.notify(f"Queued job {queued.job_id}: {queued.answers:,} answers{checkpoints}{variants}{after}{judged}"
                    f"{worker}", timeout=8, markup=False)
        for warning in queued.warnings:
            self.notify(one_line(warning, 300), severity="warning", timeout=8, markup=False)
        self.query_one("#jobs-table", PagedTable).move_cursor(row=0)
        self.reload()

    def action_answers(self) -> None:
        """The highlighted generate job's answers, a page at a time (read again while it runs)."""
        from emtui.screens.job_answers import JobAnswersScreen

        row = self._selected()
        if row is None:
            self.notify("No job highlighted", severity="warning")
            return
        if row.get("kind") != "generate":
            self.notify(f"Job {row['id']} is a {one_line(str(row.get('kind')), 30)} job: only generate jobs have "
                        "answers", severity="warning", markup=False)
            return
        self.app.push_screen(JobAnswersScreen(int(row["id"])))
