"""A DataTable that pages through a listing from SQLite instead of loading it whole.

DataTable slows down past ~100k cells, so only one page (``page_size`` rows) is ever
loaded; ``]`` and ``[`` move between pages. A page is read in a thread (:mod:`emtui.loading`):
``fetch`` runs there and must not touch widgets; the rows shown stay until the new page
arrives, and a first load says "Loading…" in the border. When a page is shown the table posts
:class:`PagedTable.PageShown`, which a screen answers with what depends on it (a detail pane).
Every cell is untrusted text: control sequences are stripped and the text is shown as-is, never
parsed as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import JustifyMethod
from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.strip import Strip
from textual.widgets import DataTable

from db import Page
from emtui.loading import Loads
from engine.common.text import one_line

LOADING = "Loading…"


@dataclass(frozen=True)
class Col:
    key: str
    label: str
    width: int | None = None
    fmt: Callable[[Any], str] | None = None
    justify: JustifyMethod = "left"
    # the whole cell from the whole row (a progress bar): drawn as given, not cut to one line
    render: Callable[[dict[str, Any]], Text] | None = None


def cell(value: Any, width: int = 60, justify: JustifyMethod = "left") -> Text:
    if value is None:
        return Text("—", style="dim", justify=justify)
    return Text(one_line(str(value), width), justify=justify)


class PagedTable(Loads, DataTable):
    BINDINGS = [
        Binding("]", "next_page", "Next page", id="table.next-page"),
        Binding("[", "prev_page", "Prev page", id="table.prev-page"),
    ]

    def __init__(self, columns: list[Col], fetch: Callable[..., Page], *, empty: str,
                 page_size: int = 100, prepare: Callable[[Page], None] | None = None, **kwargs: Any) -> None:
        """``fetch(limit=, offset=)`` reads a page (in a thread); ``prepare(page)``, on the UI thread before
        the page is drawn, adds what only the screen knows to its rows."""
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.cols = columns
        self.fetch = fetch
        self.prepare = prepare
        self.empty = empty
        self.page_size = page_size
        self.page_offset = 0
        self.current_page: Page | None = None

    def on_mount(self) -> None:
        for c in self.cols:
            self.add_column(c.label, key=c.key, width=c.width)

    class PageShown(Message):
        """A page was read and is on screen (``table.current_page``)."""

        def __init__(self, table: PagedTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> PagedTable:
            return self.table

    def reload(self) -> None:
        """Read the current page again, in a thread (keeps the cursor row when it still exists)."""
        fetch, limit, offset = self.fetch, self.page_size, self.page_offset

        def read() -> Page:
            page = fetch(limit=limit, offset=offset)
            if page.total and offset >= page.total:  # the listing shrank under us
                page = fetch(limit=limit, offset=max(0, (page.total - 1) // limit * limit))
            return page

        if self.current_page is None:
            self.border_subtitle = LOADING
        self.load("page", read, self.show_page)

    def show_from(self, fetch: Callable[..., Page]) -> None:
        """List what ``fetch`` reads (from its first page): a table that follows another's selection."""
        self.fetch = fetch
        self.page_offset = 0
        self.reload()

    def show_page(self, page: Page) -> None:
        if self.prepare is not None:
            self.prepare(page)
        shown = self.current_page
        # a page read again as it was (a screen shown again, a poll) is left as drawn: new rows would draw
        # every cell again (20-40 ms for a screenful) to show the same
        if shown is None or (page.offset, page.total, page.rows) != (shown.offset, shown.total, shown.rows):
            self.put_rows(page)
        self.current_page = page
        self.border_subtitle = Text(self.describe(page))  # our words, but never read as markup
        self.post_message(self.PageShown(self))

    def put_rows(self, page: Page) -> None:
        self.page_offset = page.offset
        row = self.cursor_row
        self.clear()
        for r in page.rows:
            cells = []
            for c in self.cols:
                if c.render is not None:
                    cells.append(c.render(r))
                    continue
                value = r.get(c.key)
                cells.append(cell(c.fmt(value) if c.fmt and value is not None else value,
                                  c.width or 60, c.justify))
            self.add_row(*cells, key=str(r.get("id", len(self.rows))))
        if page.rows:
            self.move_cursor(row=min(row, len(page.rows) - 1))

    def describe(self, page: Page) -> str:
        if page.total == 0:
            return self.empty
        first, last = page.offset + 1, page.offset + len(page.rows)
        more = "  ([ ] pages)" if page.total > len(page.rows) else ""
        return f"{first}–{last} of {page.total}{more}"

    def render_line(self, y: int) -> Strip:
        """An empty table says why, and what to do, under its header: the whole hint, wrapped
        (the border has one line for it, cut at 80 columns when it is long)."""
        page = self.current_page
        if self.row_count or page is None or page.total or not self.empty:
            return super().render_line(y)
        line = y - (self.header_height if self.show_header else 0) - 1  # a blank line first
        width = self.size.width
        wrapped = Text(self.empty).wrap(self.app.console, max(10, width - 2))
        if not 0 <= line < len(wrapped):
            return super().render_line(y)
        segments = list(Text(" ").append_text(wrapped[line]).render(self.app.console))
        return Strip(segments).adjust_cell_length(width).apply_style(self.rich_style)

    def selected_row(self) -> dict[str, Any] | None:
        if not self.current_page or not self.current_page.rows or self.cursor_row < 0:
            return None
        return self.current_page.rows[min(self.cursor_row, len(self.current_page.rows) - 1)]

    def action_next_page(self) -> None:
        if self.current_page and self.page_offset + self.page_size < self.current_page.total:
            self.page_offset += self.page_size
            self.reload()

    def action_prev_page(self) -> None:
        if self.page_offset > 0:
            self.page_offset = max(0, self.page_offset - self.page_size)
            self.reload()
