"""Results: per condition, how many answers, judgments and human ratings the database holds."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from emtui.screens.base import AreaScreen, lines
from emtui.widgets.paged_table import Col, PagedTable


class ResultsScreen(AreaScreen):
    AREA = "results"
    BINDINGS = []

    def body(self) -> ComposeResult:
        with Vertical():
            yield Static(id="results-totals", classes="detail")
            yield PagedTable(
                [Col("study", "Study", 18), Col("condition", "Condition", 16),
                 Col("n_generations", "Answers", 8, justify="right"),
                 Col("n_judgments", "Judged", 7, justify="right"), Col("n_failed", "Failed", 6, justify="right"),
                 Col("n_human_ratings", "Human", 6, justify="right")],
                self.store.condition_overview, id="results-table",
                empty="No conditions yet — register a study (emtui init) or import results (emtui import)")

    def on_mount(self) -> None:
        self.query_one("#results-table").border_title = "Conditions"

    def after_reload(self) -> None:
        s = self.store
        self.query_one("#results-totals", Static).update(lines(
            ("Answers", f"{s.count('generations')}   judgments {s.count('judgments')}   "
                        f"scores {s.count('judgment_scores')}   ratings {s.count('ratings')}"),
        ))
