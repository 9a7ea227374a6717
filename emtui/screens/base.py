"""What every area screen shares: header and footer, a refresh key, reload on every visit.

Every read runs in a thread worker (:mod:`emtui.loading`): :meth:`AreaScreen.reload` asks each
table for its page and :meth:`AreaScreen.after_reload` starts the screen's other reads; what
follows a table's rows (a detail pane) answers :class:`PagedTable.PageShown`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events
from textual._context import NoActiveAppError
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header

from db import Page
from emtui.faults import says_faults
from emtui.loading import Loads
from emtui.widgets.area_bar import AreaBar
from emtui.widgets.paged_table import PagedTable
from engine.common.text import strip_control
from engine.settings import Settings

if TYPE_CHECKING:
    from db import Store


SHOWN_CHARS = 500_000  # characters of one text laid out: 3.7 million (100,000 lines) kept a screen 14 s


def shown_text(value: Any, *, hint: str = "") -> Text:
    """Untrusted text (an answer, a question, a judge's output) as plain Text — control sequences
    stripped, never markup — laid out at most :data:`SHOWN_CHARS` far; a longer one says how much
    more there is (and ``hint``), so a screen never stops answering keys to lay out megabytes."""
    text = Text(strip_control("" if value is None else str(value)))
    if len(text.plain) > SHOWN_CHARS:
        more = len(text.plain) - SHOWN_CHARS
        text = text[:SHOWN_CHARS]
        text.append(f"\n\n(… and {more:,} more characters, not shown: too long to show here.{hint})",
                    style="bold yellow")
    return text


def static_page(rows: list[dict[str, Any]]) -> Page:
    """A short list already in memory, shown through the same paged table."""
    return Page(rows, len(rows), 0, len(rows))


def minute(stamp: str) -> str:
    """A stored UTC time to the minute: ``2025-01-02T03:04:05+00:00`` -> ``2025-01-02 03:04``."""
    return stamp[:16].replace("T", " ")


def lines(*parts: tuple[str, str]) -> Text:
    """``label: value`` lines; values are untrusted: control sequences stripped, never read as markup."""
    text = Text()
    for i, (label, value) in enumerate(parts):
        if i:
            text.append("\n")
        text.append(f"{label}: ", style="bold")
        text.append(strip_control(value))
    return text


class AreaScreen(Loads, Screen):
    """One area of the workbench. Subclasses yield their body from :meth:`body`."""

    AREA = ""
    BINDINGS = [Binding("r", "reload", "Refresh", id="screen.refresh")]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # A mode's screen starts "styled before the app's last CSS change" (-1), so Textual re-parses every
        # stylesheet and restyles every screen when it is first shown — twice (App._init_mode, then
        # switch_mode) and once more on its next visit: 20-40 ms each on the UI thread. Once a first screen
        # is up, the stylesheet has the theme's variables and nothing needs it: the new widgets take the
        # stylesheet as it is when they mount (a theme changed later still counts). The first screen keeps
        # Textual's refresh: that is where the theme's variables are first put into the stylesheet.
        try:
            app = self.app
        except NoActiveAppError:  # made outside a running app: Textual's own refresh then
            return
        if app.screen_stack:
            self._css_update_count = app._css_update_count

    def on_mount(self) -> None:
        # the first screen too: styled with the theme's variables now, so its next visit need not refresh
        self._css_update_count = self.app._css_update_count

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    @property
    def settings(self) -> Settings:
        """The app's settings (engine.settings): poll intervals, on-screen resamples."""
        return getattr(self.app, "settings", None) or Settings()

    def compose(self) -> ComposeResult:
        from emtui.app import AREAS  # the app module imports the screens

        yield Header()
        yield AreaBar([(a.name, a.title, a.key) for a in AREAS], self.AREA, id="area-bar")
        yield from self.body()
        yield Footer()

    def body(self) -> ComposeResult:  # pragma: no cover - every area overrides it
        yield from ()

    def on_screen_resume(self, event: events.ScreenResume) -> None:
        # Textual restyles every widget of a mode's screen each time the mode is shown (twice the first
        # time), and so redraws all of it: 30-60 ms on the UI thread. It need not: a theme changed meanwhile
        # is applied before this (the app's count of CSS updates), and Textual itself does not when a
        # screen above this one closes. (This handler runs before Textual's, which reads the flag.)
        event.refresh_styles = False
        self.reload()

    @says_faults
    def reload(self) -> None:
        """Read everything this screen shows again (in threads: this returns at once)."""
        for table in self.query(PagedTable):
            table.reload()
        self.after_reload()

    def after_reload(self) -> None:
        """Hook: start the screen's reads other than its tables' pages (counts, a summary)."""

    def action_reload(self) -> None:
        self.reload()
        self.notify("Reloaded from the database", timeout=1.5)
