"""Data: training datasets, models, evaluation sets and their questions.

Three tabs, one table (or the eval sets over their questions) at a time, so that each table has
the screen's height: at 80x24 four tables side by side showed one row each. ``v`` moves to the
next tab; ``Enter`` on a question opens it in full.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, TabbedContent, TabPane

from db import Page
from emtui.faults import says_faults
from emtui.screens.base import AreaScreen
from emtui.widgets.paged_table import Col, PagedTable
from engine.common.hashing import short

TABS = (("tab-datasets", "Datasets", "datasets-table"), ("tab-models", "Models", "models-table"),
        ("tab-eval-sets", "Eval sets & questions", "eval-sets-table"))


class DataScreen(AreaScreen):
    AREA = "data"
    BINDINGS = [
        Binding("v", "next_tab", "Next tab", id="data.tab"),
        # the questions table takes Enter first (RowSelected, below); the id lets a keymap add keys
        Binding("enter", "read_question", "Read question", show=False, id="data.read"),
    ]

    def body(self) -> ComposeResult:
        width = self.app.size.width or 80
        with TabbedContent(id="data-tabs"):
            with TabPane("Datasets", id="tab-datasets"):
                yield PagedTable(
                    [Col("name", "Dataset", 30), Col("shown_origin", "Origin", 7),
                     Col("n_rows", "Rows", 8, justify="right"), Col("n_conditions", "Used by", 7, justify="right"),
                     Col("content_hash", "Hash", 12, short)],
                    self.store.list_datasets, id="datasets-table",
                    empty="No datasets — emtui data import FILE, or a study file names them (emtui init)")
            with TabPane("Models", id="tab-models"):
                yield PagedTable(
                    [Col("name", "Model", 24), Col("kind", "Kind", 8), Col("base", "Base", 14),
                     Col("source", "Source", max(20, width - 58))],
                    self.store.list_models, id="models-table", empty="No models")
            with TabPane("Eval sets & questions", id="tab-eval-sets"):
                yield PagedTable(
                    [Col("id", "#", 4, justify="right"), Col("name", "Eval set", 24),
                     Col("n_keys", "Questions", 9, justify="right"), Col("n_questions", "Wordings", 8, justify="right"),
                     Col("source", "Source", max(16, width - 59))],
                    self.store.list_eval_sets, id="eval-sets-table",
                    empty="No eval sets — emtui init STUDY, or emtui import eval-set FILE")
                # borders 2, scrollbar 2, Id 18 + 2, # 2 + 2, category 10 + 2, question's padding 2
                yield PagedTable(
                    [Col("key", "Id", 18), Col("paraphrase", "#", 2, justify="right"),
                     Col("category", "Category", 10), Col("text", "Question", max(20, width - 42))],
                    self._questions_of(None), id="questions-table",
                    empty="Select an eval set to list its questions")

    def on_mount(self) -> None:
        for table_id, title in (("datasets-table", "Datasets"), ("models-table", "Models"),
                                ("eval-sets-table", "Eval sets"), ("questions-table", "Questions (Enter: read)")):
            self.query_one(f"#{table_id}").border_title = title

    def _questions_of(self, eval_set_id: int | None) -> Callable[..., Page]:
        """What the questions table reads (in a thread): the questions of one eval set."""
        self.questions_of = eval_set_id
        if eval_set_id is None:
            return lambda limit, offset: Page([], 0, 0, limit)
        return partial(self.store.list_questions, eval_set_id)

    def follow_eval_set(self) -> None:
        """The questions follow the highlighted eval set (from their first page when it changed)."""
        row = self.query_one("#eval-sets-table", PagedTable).selected_row()
        set_id = int(row["id"]) if row else None
        if set_id != self.questions_of:
            self.query_one("#questions-table", PagedTable).show_from(self._questions_of(set_id))

    @says_faults
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "eval-sets-table":
            self.follow_eval_set()

    @says_faults
    def on_paged_table_page_shown(self, event: PagedTable.PageShown) -> None:
        if event.table.id == "eval-sets-table":
            self.follow_eval_set()

    @says_faults
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "questions-table":
            event.stop()
            self.action_read_question()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        table = next(t for pane, _, t in TABS if pane == event.pane.id)
        self.query_one(f"#{table}").focus()

    def action_next_tab(self) -> None:
        tabs = self.query_one("#data-tabs", TabbedContent)
        panes = [pane for pane, _, _ in TABS]
        tabs.active = panes[(panes.index(tabs.active) + 1) % len(panes)] if tabs.active in panes else panes[0]

    def action_read_question(self) -> None:
        """The highlighted question in full: its eval set, id, wording, category, system prompt, text."""
        from emtui.screens.fulltext import FullTextScreen

        tabs = self.query_one("#data-tabs", TabbedContent)
        question = self.query_one("#questions-table", PagedTable).selected_row()
        if tabs.active != "tab-eval-sets" or question is None:
            self.notify("No question highlighted: v to Eval sets & questions", severity="warning")
            return
        eval_set: dict[str, Any] = self.query_one("#eval-sets-table", PagedTable).selected_row() or {}
        fields = [("Eval set", str(eval_set.get("name", ""))), ("Question", str(question["key"])),
                  ("Paraphrase", str(question["paraphrase"])), ("Category", str(question["category"] or "—"))]
        self.app.push_screen(FullTextScreen(
            f"Question {question['key']}", fields,
            [("System prompt", question.get("system_prompt")), ("Question", question["text"])]))
