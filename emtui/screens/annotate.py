"""Annotate: human-evaluation campaigns and annotators (blind rating sessions start here)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical

from emtui.screens.base import AreaScreen, static_page
from emtui.widgets.paged_table import Col, PagedTable


class AnnotateScreen(AreaScreen):
    AREA = "annotate"
    BINDINGS = []

    def body(self) -> ComposeResult:
        with Vertical():
            yield PagedTable(
                [Col("id", "#", 4, justify="right"), Col("name", "Campaign", 20), Col("scale", "Scale", 16),
                 Col("overlap", "k", 3, justify="right"), Col("n_items", "Items", 6, justify="right"),
                 Col("n_ratings", "Ratings", 7, justify="right")],
                lambda limit, offset: static_page(self.store.list_campaigns()), id="campaigns-table",
                empty="No campaigns yet — blind rating campaigns come with the annotation workbench")
            yield PagedTable(
                [Col("name", "Annotator", 20), Col("kind", "Rater", 6), Col("n_ratings", "Ratings", 7, justify="right")],
                lambda limit, offset: static_page(self.store.list_annotators()), id="annotators-table",
                empty="No annotators yet")

    def on_mount(self) -> None:
        self.query_one("#campaigns-table").border_title = "Campaigns"
        self.query_one("#annotators-table").border_title = "Annotators (human and model raters are kept apart)"
