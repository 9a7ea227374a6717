"""Annotate: human-evaluation campaigns and annotators; Enter starts blind rating.

The lead's view, in the workbench: every campaign with its scale, overlap k, items, ratings and
how far it is; the annotators (human and model raters apart). Enter on a campaign opens the blind
rating screen (:class:`emtui.screens.rate.RatingScreen`) as the name asked for here (``w``). ``a``
lists the items the humans disagree on, for a lead to adjudicate. Annotators use
``emtui annotate`` instead: the closed room of :mod:`emtui.room`, which never reaches this screen.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Static

from emtui.faults import says_faults
from emtui.screens.base import AreaScreen, static_page
from emtui.widgets.paged_table import Col, PagedTable
from engine.common.text import flat


class AnnotateScreen(AreaScreen):
    AREA = "annotate"
    AUTO_FOCUS = "#campaigns-table"
    BINDINGS = [
        Binding("enter", "rate", "Rate", id="annotate.rate"),
        Binding("w", "who", "Who am I", id="annotate.who"),
        Binding("a", "adjudicate", "Disagreements", id="annotate.adjudicate"),
    ]

    def body(self) -> ComposeResult:
        with Vertical():
            yield Static(id="annotate-who")
            yield PagedTable(
                [Col("id", "#", 4, justify="right"), Col("name", "Campaign", 22), Col("scale", "Scale", 16),
                 Col("overlap", "k", 3, justify="right"), Col("n_items", "Items", 6, justify="right"),
                 Col("n_ratings", "Ratings", 7, justify="right"), Col("done_pct", "Done %", 6, justify="right")],
                lambda limit, offset: static_page(self.store.list_campaigns()), id="campaigns-table",
                empty="No campaigns yet — emtui campaign create NAME --study S --scale 0-3 --items N")
            yield PagedTable(
                [Col("name", "Annotator", 20), Col("kind", "Rater", 6),
                 Col("n_ratings", "Ratings", 7, justify="right")],
                lambda limit, offset: static_page(self.store.list_annotators()), id="annotators-table",
                empty="No annotators yet")

    def on_mount(self) -> None:
        self.query_one("#campaigns-table").border_title = "Campaigns (Enter: rate)"
        self.query_one("#annotators-table").border_title = "Annotators (human and model raters are kept apart)"

    def after_reload(self) -> None:
        who = getattr(self.app, "annotator", None)
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("Rating as ", style="dim")
        text.append(flat(who) or "(nobody yet: Enter or w asks)", style="bold")
        self.query_one("#annotate-who", Static).update(text)

    @says_faults
    def on_data_table_row_selected(self, event: Any) -> None:
        # Enter on the campaigns table (the table takes Enter before the screen's binding)
        if event.data_table.id == "campaigns-table":
            event.stop()
            self.action_rate()

    def selected_campaign(self) -> dict[str, Any] | None:
        return self.query_one("#campaigns-table", PagedTable).selected_row()

    def ask_name(self, then: Any = None) -> None:
        """Ask who is rating; with a name, remember it for the session and go on with ``then``."""
        from emtui.screens.rate import AnnotatorNameScreen

        def named(name: str | None) -> None:
            if name:
                self.app.annotator = name  # type: ignore[attr-defined]
                self.after_reload()
                if then is not None:
                    then()

        self.app.push_screen(AnnotatorNameScreen(), named)

    def action_who(self) -> None:
        self.ask_name()

    def action_rate(self) -> None:
        campaign = self.selected_campaign()
        if campaign is None:
            self.notify("No campaign to rate: create one with emtui campaign create", severity="warning")
            return
        start = partial(self.app.start_rating, campaign["name"])  # type: ignore[attr-defined]
        if getattr(self.app, "annotator", None):
            start()
        else:
            self.ask_name(then=start)

    def action_adjudicate(self) -> None:
        campaign = self.selected_campaign()
        if campaign is None:
            self.notify("No campaign selected", severity="warning")
            return
        from emtui.screens.adjudicate import AdjudicationScreen

        self.app.push_screen(AdjudicationScreen(campaign["name"]))
