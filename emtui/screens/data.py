"""Data: training datasets, models, evaluation sets and their questions."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Grid
from textual.widgets import DataTable

from db import Page
from emtui.screens.base import AreaScreen
from emtui.widgets.paged_table import Col, PagedTable
from engine.hashing import short


class DataScreen(AreaScreen):
    AREA = "data"
    BINDINGS = []

    def body(self) -> ComposeResult:
        with Grid(id="data-grid"):
            yield PagedTable(
                [Col("name", "Dataset", 16), Col("n_rows", "Rows", 6, justify="right"),
                 Col("n_conditions", "Used", 4, justify="right"), Col("content_hash", "Hash", 12, short)],
                self.store.list_datasets, id="datasets-table",
                empty="No datasets — a study file names them (emtui init)")
            yield PagedTable(
                [Col("name", "Model", 14), Col("kind", "Kind", 8), Col("source", "Source", 30)],
                self.store.list_models, id="models-table", empty="No models")
            yield PagedTable(
                [Col("id", "#", 4, justify="right"), Col("name", "Eval set", 18),
                 Col("n_keys", "Questions", 9, justify="right"), Col("n_questions", "Wordings", 8, justify="right"),
                 Col("source", "Source", 28)],
                self.store.list_eval_sets, id="eval-sets-table",
                empty="No eval sets — emtui init STUDY, or emtui import eval-set FILE")
            yield PagedTable(
                [Col("key", "Id", 18), Col("paraphrase", "#", 2, justify="right"),
                 Col("category", "Category", 10), Col("text", "Question", 60)],
                self._questions, id="questions-table", empty="Select an eval set to list its questions")

    def on_mount(self) -> None:
        for table_id, title in (("datasets-table", "Datasets"), ("models-table", "Models"),
                                ("eval-sets-table", "Eval sets"), ("questions-table", "Questions")):
            self.query_one(f"#{table_id}").border_title = title

    def _questions(self, limit: int, offset: int) -> Page:
        row = self.query_one("#eval-sets-table", PagedTable).selected_row()
        if row is None:
            return Page([], 0, 0, limit)
        return self.store.list_questions(int(row["id"]), limit=limit, offset=offset)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "eval-sets-table":
            questions = self.query_one("#questions-table", PagedTable)
            questions.page_offset = 0
            questions.reload()
