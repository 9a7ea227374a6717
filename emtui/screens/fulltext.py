"""A text in full — ``Enter`` on a question of the Data screen, or on a job of the Eval queue:
what a table cell cuts to one line.

The text comes from a file or a model: it is shown verbatim — line breaks and all — with terminal
control sequences stripped, never read as markup, in a box that scrolls (↑ ↓ PgUp PgDn Home End).
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from emtui.screens.base import lines, shown_text
from engine.common.text import one_line


class FullTextScreen(Screen[None]):
    AUTO_FOCUS = "#fulltext-scroll"
    BINDINGS = [Binding("escape", "close", "Close", id="fulltext.close")]

    def __init__(self, title: str, fields: list[tuple[str, str]], sections: list[tuple[str, str | None]]) -> None:
        """``fields``: ``label: value`` lines above the text; ``sections``: (heading, text) in order
        (a section whose text is None is left out)."""
        super().__init__()
        self.heading = title
        self.fields = fields
        self.sections = [(h, t) for h, t in sections if t is not None]

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="fulltext-box"):
            with VerticalScroll(id="fulltext-scroll"):
                yield Static(self.content(), id="fulltext-text")
        yield Footer()

    def action_close(self) -> None:
        self.dismiss()

    def on_mount(self) -> None:
        box = self.query_one("#fulltext-box")
        box.border_title = Text(one_line(self.heading, 60))
        box.border_subtitle = Text("↑↓ PgUp PgDn scroll · Esc closes")

    def content(self) -> Text:
        text = lines(*self.fields)
        for heading, body in self.sections:
            text.append("\n\n" if text.plain else "")
            text.append(heading, style="bold underline")
            text.append("\n")
            text.append(shown_text(body) if body and body.strip() else Text("—"))  # verbatim: never markup
        return text
