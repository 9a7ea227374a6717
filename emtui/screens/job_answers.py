"""A generate job's answers (``a`` on the Eval queue): model (``@step`` for a checkpoint), question key /
paraphrase, variant (T: with the trigger), sample, seed and the answer on one line, a page at a time, read
again while the job runs; Enter shows one answer whole — question, the exact prompt the model got, answer,
settings, seed and settings hash (:class:`emtui.screens.fulltext.FullTextScreen`).

Answers are model output: control sequences stripped, never read as markup. Every read runs in a thread
(:mod:`emtui.loading`)."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from db import Page
from emtui.faults import says_faults
from emtui.job_view import STATUS_STYLE, progress_of, tokens_per_s_of
from emtui.screens.base import AreaScreen
from emtui.train_view import fmt_rate as fmt_tokens
from emtui.widgets.paged_table import Col, PagedTable
from engine.common.text import one_line

PAGE_SIZE = 100
LIVE = ("queued", "running")  # a job whose answers may still grow: read again every poll


def model_label(row: dict[str, Any]) -> str:
    """``model`` or ``model@step`` for a checkpoint's answer."""
    step = row.get("checkpoint_step")
    return f"{row['model']}@{step}" if step is not None else str(row["model"])


class JobAnswersScreen(AreaScreen):
    AREA = "queue"
    AUTO_FOCUS = "#job-answers-table"
    BINDINGS = [
        Binding("escape", "back", "Back", id="job-answers.back"),
        # the table takes Enter first (RowSelected, below); the id lets a keymap add keys
        Binding("enter", "open", "Open answer", show=False, id="job-answers.open"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.status: str | None = None  # the job's, as last read
        self.preview_width = 40

    def body(self) -> ComposeResult:
        width = self.app.size.width or 80
        cols = [Col("model_cell", "Model", 14 if width < 100 else 20), Col("question_cell", "Question", 14),
                Col("variant_cell", "V", 1), Col("sample_index", "#", 3, justify="right")]
        if width >= 100:  # room for the seed (at 80 columns: Enter shows it)
            cols.append(Col("seed", "Seed", 20, justify="right"))
        # borders 2, scrollbar 2, each column's padding 2, the answer's own padding 2
        used = 4 + sum((c.width or 0) + 2 for c in cols) + 2
        self.preview_width = max(16, width - used)
        cols.append(Col("preview", "Answer", self.preview_width))
        with Vertical():
            yield Static(id="job-answers-info")
            yield PagedTable(cols, self.fetch, id="job-answers-table", page_size=PAGE_SIZE,
                             empty="No answers yet: they appear here as the job writes them")

    def on_mount(self) -> None:
        self.query_one("#job-answers-table").border_title = Text(f"Answers of job {self.job_id} (Enter: in full)")
        self.set_interval(self.settings.tui_queue_poll_s, self._poll)

    def _poll(self) -> None:
        table = self.query_one("#job-answers-table", PagedTable)
        if self.is_current and self.status in LIVE and not table.reading() and not self.reading():
            self.reload()

    def fetch(self, limit: int, offset: int) -> Page:
        """A page of the job's answers, each cut to one line here, in the thread."""
        page = self.store.job_answers_page(self.job_id, limit=limit, offset=offset)
        rows = []
        for r in page.rows:
            rows.append({**r, "id": r["generation_id"], "model_cell": one_line(model_label(r), 40),
                         "question_cell": f"{r['question_key']}/{r['paraphrase']}",
                         "variant_cell": "T" if r["variant"] == "trigger" else "",
                         "preview": one_line(r["response"], self.preview_width)})
        return Page(rows, page.total, page.offset, page.limit)

    def after_reload(self) -> None:
        store, job_id = self.store, self.job_id
        self.load("job", lambda: store.get_job(job_id), self.show_job)

    def show_job(self, job: dict[str, Any] | None) -> None:
        info = self.query_one("#job-answers-info", Static)
        if job is None:
            self.status = None
            info.update(Text(f"Job {self.job_id} is gone from the database", style="dim"))
            return
        self.status = str(job["status"])
        done, total = progress_of(job)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append(f"Job {job['id']} ", style="bold")
        text.append(self.status, style=f"bold {STATUS_STYLE.get(self.status, '')}")
        text.append(f"  {done:,}" + (f" of {total:,}" if total else "") + " answers written")
        tokens = tokens_per_s_of(job)
        if tokens is not None:
            text.append(f"  tok/s {fmt_tokens(tokens)}")
        if self.status in LIVE:
            text.append("  (read again as it runs)", style="dim")
        text.append("\nT: with the trigger · Enter: the answer whole (prompt, settings) · Esc back", style="dim")
        info.update(text)

    def action_back(self) -> None:
        self.app.pop_screen()

    @says_faults
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "job-answers-table":
            event.stop()
            self.action_open()

    def action_open(self) -> None:
        from emtui.screens.fulltext import FullTextScreen

        row = self.query_one("#job-answers-table", PagedTable).selected_row()
        if row is None:
            self.notify("No answer highlighted", severity="warning")
            return
        self.app.push_screen(FullTextScreen(f"Answer {row['generation_id']} of job {self.job_id}",
                                            answer_fields(row), answer_sections(row)))


def answer_fields(row: dict[str, Any]) -> list[tuple[str, str]]:
    """One answer's ``label: value`` lines (FullTextScreen strips control sequences from each)."""
    return [("Answer", str(row["generation_id"])), ("Model", model_label(row)),
            ("Question", f"{row['question_key']}, paraphrase {row['paraphrase']}"),
            ("Variant", "with the trigger" if row["variant"] == "trigger" else "without the trigger"),
            ("Sample", str(row["sample_index"])), ("Seed", str(row["seed"])),
            ("Settings hash", str(row["settings_hash"])),
            ("Tokens", "—" if row.get("n_tokens") is None else str(row["n_tokens"]))]


def answer_sections(row: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The question, the exact prompt, the answer and the settings it was made with, each whole."""
    try:
        settings = json.dumps(json.loads(row["settings"] or "{}"), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        settings = str(row["settings"])
    return [("Question", row["question"]),
            ("Prompt (exactly as the model got it)", row.get("prompt") or "(not recorded)"),
            ("Answer", row["response"]), ("Settings", settings)]
