"""Judges: every judge, live while a ``judge`` job runs — done / failed / retried / throttled, in flight and
concurrency, calls per second, tokens and cost — the running panel's budget, the highlighted judge's last
errors with the answer each belongs to (Enter: the answer whole), pause and resume; and the rubrics.

Figures come from the running job's metrics (written every 0.5 s by engine/judging/panel.py) for the
judges in it, else from the totals of every call a judge made (``judge_calls``); see
:mod:`emtui.judges_view`. Everything is read in threads (:mod:`emtui.loading`) and read again every
``tui_queue_poll_s`` seconds while the screen is shown, never while the last read is still out.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from db import Page
from emtui.faults import says_faults
from emtui.judges_view import (
    JUDGE_KIND,
    PanelJob,
    add_stats,
    budget_line,
    fmt_at,
    fmt_count,
    fmt_flight,
    fmt_per_s,
    fmt_usd,
    judge_lines,
    judge_row,
    judges_for,
    panel_job,
    state_text,
)
from emtui.screens.base import AreaScreen, static_page
from emtui.train_view import fmt_rate as fmt_amount
from emtui.widgets.paged_table import LOADING, Col, PagedTable
from engine.common.hashing import short
from engine.common.text import one_line

ERRORS_SHOWN = 50  # the highlighted judge's last errors (the table scrolls)
WIDE = 108         # from here the table has room for tokens and the limits
WIDEST = 150       # and from here for the model


@dataclass(frozen=True)
class PanelPage(Page):
    """A page of judges with what the status line says: the running judge jobs, what every call cost."""

    jobs: list[PanelJob] = field(default_factory=list)
    spent_usd: float = 0.0


class CallTotals:
    """Every judge's call totals (``judge_calls``), held by the screen and brought up to date with the calls
    logged since its last read: a poll while a panel logs thousands of calls a minute reads what is new,
    not a million calls (measured: 0.6 s for 900,000). A visit and ``r`` count them all again."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # a superseded read's thread may still be adding
        self.last_id = 0
        self.by_judge: dict[int, dict[str, Any]] = {}
        self.recount = True

    def read(self, store: Any) -> dict[int, dict[str, Any]]:
        with self.lock:
            if self.recount:
                self.recount, self.last_id, self.by_judge = False, 0, {}
            last, new = store.judge_call_totals_after(self.last_id)
            if last < self.last_id:  # the newest calls were deleted: count them all again
                last, new = store.judge_call_totals_after(0)
                self.by_judge = {}
            for judge_id, stats in new.items():
                self.by_judge[judge_id] = add_stats(self.by_judge.get(judge_id), stats)
            self.last_id = last
            return dict(self.by_judge)


def read_panel(store: Any, totals: CallTotals, limit: int, offset: int) -> PanelPage:
    """A page of judges with their figures (in a thread): the running judge jobs' reports for the judges in
    them, the totals of their calls for the others."""
    page = store.judges_page(limit=limit, offset=offset)
    jobs = [panel_job(job) for r in store.list_jobs(status="running", limit=50).rows
            if r["kind"] == JUDGE_KIND and (job := store.get_job(int(r["id"]))) is not None]
    in_job = judges_for(jobs)
    every = totals.read(store)
    batches = store.latest_judge_batches([int(r["id"]) for r in page.rows])
    rows = [judge_row(r, job=in_job.get(int(r["id"])), totals=every.get(int(r["id"])),
                      batch=batches.get(int(r["id"]))).as_row() for r in page.rows]
    spent = sum(float(s.get("cost_usd") or 0.0) for s in every.values())
    return PanelPage(rows, page.total, page.offset, page.limit, jobs=jobs, spent_usd=spent)


def read_errors(store: Any, judge_id: int, limit: int = ERRORS_SHOWN) -> list[dict[str, Any]]:
    """The judge's last errors, newest first: failed attempts (throttled, retryable, failed: ``judge_calls``)
    and replies that gave a metric no score (unparsed: the reply is kept), each with its answer and metric."""
    rows = [{"at": r["at"], "generation_id": r["generation_id"], "metric": r["metric"], "outcome": r["outcome"],
             "status": r["status"], "error": r["error"], "raw": None}
            for r in store.last_judge_errors(judge_id, limit=limit)]
    for r in store.last_judge_unparsed(judge_id, limit=limit):
        try:
            at = datetime.fromisoformat(str(r["created_at"])).timestamp()
        except ValueError:
            at = 0.0
        rows.append({"at": at, "generation_id": r["generation_id"], "metric": r["metric"], "outcome": "unparsed",
                     "status": None, "error": r["error"], "raw": r["raw"]})
    rows.sort(key=lambda r: -float(r["at"] or 0))
    return rows[:limit]


def full_time(at: Any) -> str:
    try:
        return datetime.fromtimestamp(float(at), UTC).isoformat(timespec="seconds")
    except (TypeError, OverflowError, OSError, ValueError):
        return "—"


def metric_name(metric: Any) -> str:
    """A call's metric: ``*`` is one call that scores every metric of the rubric."""
    return "all" if metric == "*" else str(metric)


def _right(text: str) -> Text:
    return Text(text, justify="right")


def judge_columns(width: int) -> list[Col]:
    """The judges table's columns at ``width``: the counts, in flight / concurrency, calls/s and cost at 80;
    tokens and the limits from WIDE; the model from WIDEST; what is left widens the names."""
    cols = [Col("name", "Judge", 11), Col("state", "State", 8, render=state_text),
            Col("done", "Done", 6, fmt_count, justify="right"), Col("failed", "Fail", 5, fmt_count, justify="right"),
            Col("retried", "Retry", 5, fmt_count, justify="right"),
            Col("throttled", "Thrott", 6, fmt_count, justify="right"),
            Col("concurrency", "Conc", 5, render=lambda r: _right(fmt_flight(r))),
            Col("calls_per_s", "/s", 5, fmt_per_s, justify="right"),
            Col("cost_usd", "Cost", 7, fmt_usd, justify="right")]
    if width >= WIDE:
        cols += [Col("tokens", "Tokens", 7, fmt_amount, justify="right"),
                 Col("rpm", "Req/min", 7, fmt_amount, justify="right"),
                 Col("tpm", "Tok/min", 7, fmt_amount, justify="right")]
    # borders 2, scrollbar 2, each column's padding 2
    room = width - (4 + sum((c.width or 0) + 2 for c in cols))
    if width >= WIDEST:
        cols[0] = Col("name", "Judge", 16)
        cols.append(Col("model", "Model", room - 5 - 2))
    else:
        cols[0] = Col("name", "Judge", 11 + max(0, min(room, 30 - 11)))
    return cols


def error_columns(width: int) -> list[Col]:
    cols = [Col("at", "At (UTC)", 8, fmt_at), Col("generation_id", "Answer", 7, justify="right"),
            Col("metric", "Metric", 10, metric_name), Col("outcome", "What", 9),
            Col("status", "HTTP", 4, justify="right")]
    return [*cols, Col("error", "Error", max(16, width - (4 + sum((c.width or 0) + 2 for c in cols)) - 2))]


class JudgesScreen(AreaScreen):
    AREA = "judges"
    BINDINGS = [
        Binding("p", "pause_judge", "Pause/resume judge", id="judges.pause"),
        # the errors table takes Enter first (RowSelected, below); the id lets a keymap add keys
        Binding("enter", "read_error", "Read error", show=False, id="judges.read-error"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown_errors: tuple[Any, ...] | None = None  # (judge id, its error counts) the errors table shows
        self.totals = CallTotals()

    def reload(self) -> None:
        """Everything again, the calls' totals counted afresh (calls deleted meanwhile, or written by hand)."""
        self.totals.recount = True
        self.shown_errors = None
        super().reload()

    def body(self) -> ComposeResult:
        width = self.app.size.width or 80
        with Vertical():
            yield Static(id="judges-status")
            yield PagedTable(judge_columns(width), self._judges, id="judges-table",
                             empty="No judges — a study file's [[judges]] defines the panel")
            yield PagedTable(error_columns(width), lambda limit, offset: static_page([]), id="judge-errors-table",
                             empty="No judge highlighted")
            yield PagedTable(
                [Col("name", "Rubric", 18), Col("metrics", "Metrics", 26), Col("content_hash", "Hash", 12, short),
                 Col("n_judgments", "Judgments", 9, justify="right")],
                self._rubrics, id="rubrics-table", empty="No rubrics")

    def on_resize(self) -> None:
        """Columns for the new width (tokens and limits from WIDE, the model from WIDEST, the rest to the
        names and the error)."""
        width = self.app.size.width or 80
        for table_id, cols in (("#judges-table", judge_columns(width)), ("#judge-errors-table", error_columns(width))):
            table = self.query_one(table_id, PagedTable)
            if [(c.key, c.width) for c in cols] == [(c.key, c.width) for c in table.cols]:
                continue
            table.cols = cols
            if not table.columns:  # not mounted yet: it adds these
                continue
            row = table.cursor_row
            table.clear(columns=True)
            for c in cols:
                table.add_column(c.label, key=c.key, width=c.width)
            if table.current_page is not None:
                table.put_rows(table.current_page)
                table.move_cursor(row=min(row, max(0, table.row_count - 1)))
    def _judges(self, limit: int, offset: int) -> PanelPage:
        return read_panel(self.store, self.totals, limit, offset)

    def _rubrics(self, limit: int, offset: int) -> Page:
        rows = self.store.list_rubrics()
        for r in rows:
            r["metrics"] = _metric_names(r["metrics"])
        return static_page(rows)

    def on_mount(self) -> None:
        self.query_one("#judges-table").border_title = "Judge panel"
        self.query_one("#judge-errors-table").border_title = "Last errors"
        self.query_one("#rubrics-table").border_title = "Rubrics (by content hash)"
        self.query_one("#judges-status", Static).update(LOADING)
        # a panel running in a worker elsewhere reports every 0.5 s: its figures follow
        self.set_interval(self.settings.tui_queue_poll_s, self._poll)

    def _poll(self) -> None:
        table = self.query_one("#judges-table", PagedTable)
        if self.is_current and not table.reading() and not self.reading():
            table.reload()

    # -- what follows the judges' page: the status lines and the highlighted judge's errors ----------------

    def _selected(self) -> dict[str, Any] | None:
        return self.query_one("#judges-table", PagedTable).selected_row()

    @says_faults
    def on_paged_table_page_shown(self, event: PagedTable.PageShown) -> None:
        if event.table.id == "judges-table":
            self.show_selected()

    @says_faults
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "judges-table":
            self.show_selected()

    def show_selected(self) -> None:
        """The status lines (the running panel, the highlighted judge) and, when the highlighted judge or
        its failures changed, its last errors read again."""
        table = self.query_one("#judges-table", PagedTable)
        page = table.current_page
        row = self._selected()
        status = Text(no_wrap=True, overflow="ellipsis")
        if isinstance(page, PanelPage):
            status.append_text(budget_line(page.jobs, page.spent_usd))
            status.append("\n")
        status.append_text(judge_lines(row))
        self.query_one("#judges-status", Static).update(status)
        errors = self.query_one("#judge-errors-table", PagedTable)
        key = None if row is None else (row["id"], row.get("failed"), row.get("retried"), row.get("errors"))
        if key == self.shown_errors and errors.current_page is not None:
            return
        self.shown_errors = key
        if row is None:
            errors.border_title = "Last errors"
            errors.empty = "No judge highlighted" if page and page.total else "No judges"
            errors.show_from(lambda limit, offset: static_page([]))
            return
        judge_id, store = int(row["id"]), self.store
        title = Text(f"Last errors of {one_line(row['name'], 30)}")
        title.append(" · Enter: one whole", style="dim")
        errors.border_title = title
        errors.empty = ("Imported scores: never called" if row.get("provider") == "import"
                        else "No errors: every call answered and every reply read")
        errors.show_from(lambda limit, offset: static_page(read_errors(store, judge_id)))

    # -- keys -------------------------------------------------------------------------------------------------

    def action_pause_judge(self) -> None:
        """Pause the highlighted judge, or resume it: a running panel reads the flag every 2 s and starts no
        new call for a paused judge (what is in flight finishes)."""
        row = self._selected()
        if row is None:
            self.notify("No judge highlighted", severity="warning")
            return
        name = one_line(row["name"], 40)
        if row.get("provider") == "import":
            self.notify(f"{name} holds imported scores: it is never called, there is nothing to pause",
                        severity="warning", markup=False)
            return
        judge_id, store = int(row["id"]), self.store

        def flip() -> bool:
            pause = judge_id not in store.paused_judges([judge_id])
            store.set_judge_paused(judge_id, pause)
            return pause

        def done(paused: bool) -> None:
            if paused:
                running = " a running panel starts no new call for it (within 2 s);" if row.get("job_id") else ""
                self.notify(f"Paused {name}:{running} p resumes it", markup=False)
            else:
                self.notify(f"Resumed {name}", markup=False)
            self.query_one("#judges-table", PagedTable).reload()

        self.load("pause", flip, done)

    @says_faults
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "judge-errors-table":
            event.stop()
            self.action_read_error()

    def action_read_error(self) -> None:
        """The highlighted error whole, with the answer it belongs to (its question and text) and the
        judge's reply where one came."""
        error = self.query_one("#judge-errors-table", PagedTable).selected_row()
        judge = self._selected()
        if error is None or judge is None:
            self.notify("No error highlighted: Tab moves to the errors", severity="warning")
            return
        store, gid = self.store, int(error["generation_id"])
        self.load("answer", lambda: store.generation_record(gid), lambda answer: self.show_error(judge, error, answer))

    def show_error(self, judge: dict[str, Any], error: dict[str, Any], answer: dict[str, Any] | None) -> None:
        from emtui.screens.fulltext import FullTextScreen

        gid = error["generation_id"]
        at = error.get("at")
        fields = [("Judge", f"{judge['name']} ({judge['provider']} {judge['model']})"), ("Answer", str(gid)),
                  ("Metric", metric_name(error["metric"])), ("What", str(error["outcome"])),
                  ("HTTP status", "—" if error.get("status") is None else str(error["status"])),
                  ("At (UTC)", full_time(at))]
        if answer is not None:
            fields += [("Question", f"{answer['question_key']}, paraphrase {answer['paraphrase']}"),
                       ("Answered by", str(answer["model"]))]
        sections: list[tuple[str, str | None]] = [("Error", error.get("error") or "")]
        if error.get("raw") is not None:
            sections.append(("The judge's reply", error["raw"]))
        if answer is None:
            sections.append(("Answer", "(that answer is gone from the database)"))
        else:
            sections += [("Question", answer["question"]), ("Answer", answer["response"])]
        self.app.push_screen(FullTextScreen(f"Answer {gid} · {judge['name']}", fields, sections))


def _metric_names(metrics: str) -> str:
    try:
        return ", ".join(m["name"] for m in json.loads(metrics or "[]"))
    except (json.JSONDecodeError, KeyError, TypeError):
        return ""
