"""Eval queue: the jobs table — what is queued, running, done or failed — with cancel and retry."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from emtui.faults import says_faults
from emtui.screens.base import AreaScreen, minute
from emtui.widgets.paged_table import Col, PagedTable

STATUS_STYLE = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "dim"}


def _short_minute(stamp: str) -> str:
    """``2025-01-02T03:04:05+00:00`` -> ``01-02 03:04`` (UTC)."""
    return minute(stamp)[5:]


def _progress(row: dict) -> str:
    total = row.get("progress_total")
    return f"{row['progress_done']}/{total}" if total else str(row.get("progress_done") or "")


class QueueScreen(AreaScreen):
    AREA = "queue"
    BINDINGS = [
        Binding("c", "cancel_job", "Cancel job", id="queue.cancel"),
        Binding("t", "retry_job", "Retry job", id="queue.retry"),
        # the table takes Enter first (RowSelected, below); the id lets a keymap add keys
        Binding("enter", "read_job", "Read job", show=False, id="queue.read"),
    ]

    def body(self) -> ComposeResult:
        width = self.app.size.width or 80
        cols = [Col("id", "#", 5, justify="right"), Col("kind", "Kind", 9), Col("status", "Status", 9),
                Col("progress", "Progress", 9)]
        if width >= 100:  # room for who holds it and how often it was tried
            cols += [Col("attempts", "Tries", 5, justify="right"), Col("lease_owner", "Worker", 16),
                     Col("created_at", "Queued (UTC)", 16, minute)]
        else:  # 80 columns: the error needs the room (Enter shows the whole job)
            cols.append(Col("created_at", "Queued", 11, _short_minute))
        # borders 2, scrollbar 2, each column's padding 2, and the error's own padding
        used = 4 + sum((c.width or 0) + 2 for c in cols) + 2
        cols.append(Col("error", "Error", max(16, width - used)))
        with Vertical():
            yield Static(id="queue-counts")
            yield PagedTable(cols, self._jobs, id="jobs-table",
                             empty="The queue is empty — training, generation and judging jobs appear here")

    def _jobs(self, limit: int, offset: int):
        page = self.store.list_jobs(limit=limit, offset=offset)
        for row in page.rows:
            row["progress"] = _progress(row)
        return page

    def on_mount(self) -> None:
        self.query_one("#jobs-table").border_title = "Jobs"
        # a worker in another process (or over a dropped SSH session) updates the table
        self.set_interval(self.settings.tui_queue_poll_s, self._poll)

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
                        severity="warning", markup=False)
        self.reload()

    def action_retry_job(self) -> None:
        job = self._selected()
        if job and self.store.retry_job(int(job["id"])):
            self.notify(f"Job {job['id']} queued again")
        elif job:
            self.notify(f"Job {job['id']} is {job['status']}: only failed or cancelled jobs retry",
                        severity="warning", markup=False)
        self.reload()

    @says_faults
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "jobs-table":
            event.stop()
            self.action_read_job()

    def action_read_job(self) -> None:
        """The highlighted job in full: every field, its payload, and its error whole."""
        from emtui.screens.fulltext import FullTextScreen

        row = self._selected()
        job = self.store.get_job(int(row["id"])) if row else None
        if job is None:
            self.notify("No job highlighted", severity="warning")
            return
        fields = [(label, "—" if job.get(key) is None else str(job[key])) for key, label in (
            ("kind", "Kind"), ("status", "Status"), ("attempts", "Tries"), ("lease_owner", "Worker"),
            ("created_at", "Queued"), ("started_at", "Started"), ("finished_at", "Finished"))]
        fields.insert(3, ("Progress", _progress(job) or "—"))
        self.app.push_screen(FullTextScreen(f"Job {job['id']}", fields,
                                            [("Error", job.get("error")), ("Payload", job.get("payload"))]))
