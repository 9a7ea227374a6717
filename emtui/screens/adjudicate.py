"""Adjudication: the items a campaign's annotators disagree on, for a lead to resolve.

A table of items whose human ratings span more than the scale's threshold (widest first):
code, metric, how many ratings, low–high, and the resolution if any. The highlighted item's
question and answer and each annotator's rating are shown below — still blind to model and
condition. Typing a value and Enter records the lead's resolution (stored apart: the raw
ratings are never changed); the lead is the session's annotator name, and may not be one of
the item's raters (:func:`engine.annotation.adjudication.adjudicate` refuses it; the screen says so first).
Every read and the resolution run in threads (:mod:`emtui.loading`).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from emtui.faults import says_faults
from emtui.loading import Loads
from emtui.screens.rate import answer_text, digit_bindings, plain
from emtui.widgets.paged_table import LOADING
from engine.common.text import flat


def _num(v: float | None) -> str:
    return "—" if v is None else f"{v:g}"


class AdjudicationScreen(Loads, Screen):
    BINDINGS = [
        *digit_bindings("adjudicate"),
        Binding("enter", "resolve", "Resolve", priority=True, id="adjudicate.resolve"),
        Binding("backspace", "delete", "Delete digit", show=False, priority=True, id="adjudicate.delete"),
        Binding("escape", "back", "Back", id="adjudicate.back"),
    ]
    AUTO_FOCUS = "#adjudicate-table"

    def __init__(self, campaign: str) -> None:
        super().__init__()
        self.campaign = campaign
        self.rows: list[dict[str, Any]] = []
        self.ratings: list[dict[str, Any]] = []
        self.scale: Any = None  # the campaign's scale, once read
        self.typed = ""

    @property
    def store(self) -> Any:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(id="adjudicate-status")
        with Vertical():
            yield DataTable(id="adjudicate-table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="adjudicate-detail", classes="rate-box"):
                yield Static(id="adjudicate-item")
        yield Static(id="adjudicate-entry")
        yield Footer()

    @says_faults
    def on_mount(self) -> None:
        self.query_one("#adjudicate-status", Static).update(Text(LOADING, style="dim"))
        self.read_items()

    def read_items(self) -> None:
        """The campaign's disagreements and its human ratings, read in a thread."""
        from engine.annotation.adjudication import disagreements
        from engine.annotation.campaigns import campaign_scale, get_campaign

        store, name = self.store, self.campaign

        def read() -> tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]:
            campaign = get_campaign(store, name)
            return (campaign_scale(campaign), disagreements(store, name),
                    store.campaign_rating_rows(int(campaign["id"])))  # human ratings only

        self.load("items", read, self.show_items)

    def show_items(self, got: tuple[Any, list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        self.scale, self.rows, self.ratings = got
        table = self.query_one("#adjudicate-table", DataTable)
        cursor = table.cursor_row
        table.clear(columns=True)
        table.add_columns("Item", "Metric", "Ratings", "Low–high", "Resolved", "By")
        for r in self.rows:
            table.add_row(Text(flat(r["code"])), Text(flat(r["metric"])), Text(str(r["n"]), justify="right"),
                          Text(f"{_num(r['low'])}–{_num(r['high'])}"), Text(_num(r["adjudicated"])),
                          Text(flat(r["adjudicated_by"])))
        table.border_title = f"Disagreements over the {self.scale.name} threshold, widest first"
        if self.rows:
            table.move_cursor(row=min(cursor, len(self.rows) - 1))
        status = Text(no_wrap=True, overflow="ellipsis")
        status.append(f"{len(self.rows)} item(s) to adjudicate", style="bold")
        status.append("   lead: ", style="dim")
        status.append(flat(getattr(self.app, "annotator", None)) or "(no name yet: w on the Annotate screen)",
                      style="dim")
        self.query_one("#adjudicate-status", Static).update(status)
        self.show_item()

    def current(self) -> dict[str, Any] | None:
        table = self.query_one("#adjudicate-table", DataTable)
        return self.rows[table.cursor_row] if self.rows and 0 <= table.cursor_row < len(self.rows) else None

    @says_faults
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.typed = ""
        self.show_item()

    def show_item(self) -> None:
        """The highlighted item: its question and answer(s) read in a thread."""
        row = self.current()
        box = self.query_one("#adjudicate-item", Static)
        if row is None:
            self.forget_load("item")
            box.update(Text("Nothing to adjudicate: the annotators agree within the threshold."))
            self.show_entry()
            return
        store, item_id = self.store, int(row["item_id"])
        self.load("item", lambda: store.item_view_row(item_id), lambda item: self.show_item_text(row, item))

    def show_item_text(self, row: dict[str, Any], item: dict[str, Any]) -> None:
        box = self.query_one("#adjudicate-item", Static)
        text = Text()
        text.append("Ratings\n", style="bold")  # first: what the lead resolves
        for r in self.item_ratings(row):
            text.append_text(plain(f"  {r['annotator']}: {_num(r['score'])}"))
            if r.get("note"):
                text.append_text(plain(f"  — {r['note']}", "dim"))
            text.append("\n")
        text.append("\nQuestion\n", style="bold")
        text.append_text(plain(item["question"]))
        if self.scale.pairwise:
            text.append("\n\nAnswer a\n", style="bold")
            text.append_text(answer_text(item["response_a"]))
            text.append("\n\nAnswer b\n", style="bold")
            text.append_text(answer_text(item["response_b"]))
        else:
            text.append("\n\nAnswer\n", style="bold")
            text.append_text(answer_text(item["response_a"]))
        box.update(text)
        self.query_one("#adjudicate-detail").scroll_home(animate=False)
        self.show_entry()

    def item_ratings(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        return [x for x in self.ratings if x["item_id"] == row["item_id"] and x["metric"] == row["metric"]]

    def lead_rated(self, row: dict[str, Any]) -> bool:
        """Whether the session's lead is one of the item's raters (then another lead resolves it)."""
        lead = getattr(self.app, "annotator", None)
        return bool(lead) and any(r["annotator"] == lead for r in self.item_ratings(row))

    def show_entry(self) -> None:
        text = Text()
        row = self.current()
        if row is not None and self.lead_rated(row):
            text.append("You rated this item: another lead resolves it", style="bold yellow")
        elif row is not None:
            what = "(1 = a, 2 = b, 0 = tie)" if self.scale.pairwise else f"({self.scale.range_text})"
            text.append(f"Resolved {flat(row['metric'])} {what}: ", style="bold")
            text.append(self.typed, style="bold reverse")
            text.append("▏  Enter records it (the ratings stay)", style="dim")
        self.query_one("#adjudicate-entry", Static).update(text)

    def action_digit(self, digit: str) -> None:
        if self.scale is None:  # not read yet
            return
        if self.scale.accepts_prefix(self.typed + digit):
            self.typed += digit
        else:
            self.app.bell()
        self.show_entry()

    def action_delete(self) -> None:
        self.typed = self.typed[:-1]
        self.show_entry()

    def action_resolve(self) -> None:
        from engine.annotation.adjudication import adjudicate
        from engine.annotation.errors import AnnotationError

        row = self.current()
        lead = getattr(self.app, "annotator", None)
        if row is None or self.reading("resolve"):
            return
        if not lead:
            self.notify("Say who you are first: w on the Annotate screen",
                        severity="warning")
            return
        store, name, typed = self.store, self.campaign, self.typed

        def failed(exc: BaseException) -> bool:
            if isinstance(exc, AnnotationError):
                self.notify(str(exc), severity="error", markup=False)
                return True
            return False  # a database fault: said

        def resolved(_: Any) -> None:
            self.typed = ""
            self.notify(f"{row['code']}: resolved", timeout=2, markup=False)
            self.read_items()

        self.load("resolve", lambda: adjudicate(store, name, row["code"], value=typed, lead=lead, metric=row["metric"]),
                  resolved, failed=failed)

    def action_back(self) -> None:
        self.dismiss()
