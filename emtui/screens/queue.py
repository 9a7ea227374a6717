"""Eval queue: the jobs table — what is queued, running, done or failed — with cancel and retry."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from emtui.screens.base import AreaScreen
from emtui.widgets.paged_table import Col, PagedTable

STATUS_STYLE = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "dim"}


def _progress(row: dict) -> str:
    total = row.get("progress_total")
    return f"{row['progress_done']}/{total}" if total else str(row.get("progress_done") or "")


class QueueScreen(AreaScreen):
    AREA = "queue"
    BINDINGS = [
        Binding("c", "cancel_job", "Cancel job", id="queue.cancel"),
        Binding("t", "retry_job", "Retry job", id="queue.retry"),
    ]
    POLL_S = 2.0

    def body(self) -> ComposeResult:
        with Vertical():
            yield Static(id="queue-counts")
            yield PagedTable(
                [Col("id", "#", 5, justify="right"), Col("kind", "Kind", 10), Col("status", "Status", 9),
                 Col("progress", "Progress", 10), Col("attempts", "Tries", 5, justify="right"),
                 Col("lease_owner", "Worker", 16), Col("created_at", "Queued", 20), Col("error", "Error", 30)],
                self._jobs, id="jobs-table",
                empty="The queue is empty — training, generation and judging jobs appear here")

    def _jobs(self, limit: int, offset: int):
        page = self.store.list_jobs(limit=limit, offset=offset)
        for row in page.rows:
            row["progress"] = _progress(row)
        return page

    def on_mount(self) -> None:
        self.query_one("#jobs-table").border_title = "Jobs"
        # a worker in another process (or over a dropped SSH session) updates the table
        self.set_interval(self.POLL_S, self._poll)

    def _poll(self) -> None:
        if self.is_current:
            self.reload()

    def after_reload(self) -> None:
        counts = self.store.job_status_counts()
        text = Text()
        for status, n in counts.items():
            text.append(f" {status} ", style=f"bold {STATUS_STYLE[status]}")
            text.append(f"{n}  ")
        self.query_one("#queue-counts", Static).update(text)

    def _selected(self) -> dict | None:
        return self.query_one("#jobs-table", PagedTable).selected_row()

    def action_cancel_job(self) -> None:
        job = self._selected()
        if job and self.store.cancel_job(int(job["id"])):
            self.notify(f"Cancelled job {job['id']}")
        elif job:
            self.notify(f"Job {job['id']} is {job['status']}: only queued or running jobs cancel",
                        severity="warning")
        self.reload()

    def action_retry_job(self) -> None:
        job = self._selected()
        if job and self.store.retry_job(int(job["id"])):
            self.notify(f"Job {job['id']} queued again")
        elif job:
            self.notify(f"Job {job['id']} is {job['status']}: only failed or cancelled jobs retry",
                        severity="warning")
        self.reload()
