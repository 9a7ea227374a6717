"""The closed room: the app ``emtui annotate`` runs for a person who rates blind.

It is a separate, small Textual app, not the workbench in a mode: it has no area screens, no
area keys and no palette entries to them, so nothing a rater presses can show a condition,
model, judge, score or another rater's rating. What it offers:

- the campaigns (:class:`RoomCampaignsScreen`): name, scale, items (unless the campaign hides
  progress) and how many the rater has rated — Enter rates, ``g`` shows the guidelines, ``?``
  the keys, ``q`` or Esc quits;
- the blind rating screen (:class:`emtui.screens.rate.RatingScreen`), with its note and
  guidelines; Esc goes back to the campaigns;
- the command palette (Ctrl+P) with only: Keys, Guidelines (while rating), Theme, Quit.

``ask_name``: the app first asks who is rating (``emtui annotate --ask-name``, what ``emtui serve
--annotate`` runs per browser session); a name registered as a model rater is refused. Links in
guidelines are never opened (on a server that would start a browser in the rater's terminal).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Static

from emtui.faults import SaysFaults, fault_line, says_faults
from emtui.idle_gc import CollectsWhenIdle
from emtui.loading import Loads
from emtui.screens.rate import AnnotatorNameScreen, GuidelinesScreen, RatingScreen, open_rating
from emtui.widgets.fit import cut
from engine.common.text import flat
from engine.settings import Settings, load_settings

if TYPE_CHECKING:
    from db import Store


class RoomCampaignsScreen(Loads, Screen):
    """The campaigns a rater can rate, and nothing about anyone else's work."""

    BINDINGS = [
        Binding("enter", "rate", "Rate", priority=True, id="room.rate"),
        Binding("g", "guidelines", "Guidelines", id="room.guidelines"),
        Binding("question_mark", "keys", "Keys", key_display="?", id="room.keys"),
        Binding("q", "app.quit", "Quit", id="room.quit"),
        Binding("escape", "app.quit", "Quit", show=False, id="room.quit-esc"),
    ]
    AUTO_FOCUS = "#room-campaigns"

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, Any]] = []

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(id="room-who")
        with Vertical(id="room-body"):
            yield DataTable(id="room-campaigns", cursor_type="row", zebra_stripes=True)
            yield Static(id="room-about")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one("#room-campaigns", DataTable)
        table.add_columns("Campaign", "Scale", "Items", "You rated")
        table.border_title = "Campaigns — Enter: rate"

    @says_faults
    def on_screen_resume(self) -> None:
        self.read_campaigns()

    @says_faults
    def on_resize(self) -> None:
        if self.is_mounted and self.is_current:
            self.read_campaigns()

    def read_campaigns(self) -> None:
        """The campaigns, each with what this rater may know of it: its scale, its size (unless hidden)
        and their own count (read in a thread)."""
        from engine.annotation.campaigns import get_campaign

        store, who = self.store, getattr(self.app, "annotator", None)

        def read() -> list[tuple[dict[str, Any], dict[str, Any], int]]:
            me = store.find_annotator(who) if who else None
            out = []
            for row in store.list_campaigns():
                c = get_campaign(store, int(row["id"]))
                out.append((row, c, store.annotator_done_count(int(c["id"]), int(me["id"])) if me else 0))
            return out

        self.load("campaigns", read, self.show_campaigns)

    def show_campaigns(self, campaigns: list[tuple[dict[str, Any], dict[str, Any], int]]) -> None:
        who = getattr(self.app, "annotator", None)
        table = self.query_one("#room-campaigns", DataTable)
        cursor = table.cursor_row
        table.clear()
        self.rows = []
        # a long name is cut (its end kept: pilot-1, pilot-2), so that scale, items and the count stay on screen
        name_width = max(12, (self.app.size.width or 80) - 47)
        for row, c, mine in campaigns:
            hidden = bool(c["settings"].get("hide_progress"))
            self.rows.append(c)
            table.add_row(cut(Text(flat(c["name"])), name_width), Text(flat(c["scale"])),
                          Text("—" if hidden else str(row["n_items"]), justify="right"),
                          Text(str(mine), justify="right"))
        if self.rows:
            table.move_cursor(row=min(max(cursor, 0), len(self.rows) - 1))
        text = Text(no_wrap=True, overflow="ellipsis")
        if who:
            text.append("Rating as ", style="dim")
            text.append(flat(who), style="bold")
        else:
            text.append("Who is rating? (your name is asked first)", style="dim")
        self.query_one("#room-who", Static).update(text)
        about = Text()
        if not self.rows:
            about.append("No campaign to rate yet: ask the lead of the study. q quits.", style="bold")
        else:
            about.append("Answers come one at a time under an opaque code; who or what wrote them is never "
                         "shown, nor anyone else's ratings.", style="dim")
        self.query_one("#room-about", Static).update(about)

    def selected(self) -> dict[str, Any] | None:
        table = self.query_one("#room-campaigns", DataTable)
        return self.rows[table.cursor_row] if self.rows and 0 <= table.cursor_row < len(self.rows) else None

    def action_rate(self) -> None:
        c = self.selected()
        if c is None:
            self.notify("No campaign to rate", severity="warning")
            return
        self.app.start_rating(c["name"])  # type: ignore[attr-defined]

    def action_guidelines(self) -> None:
        c = self.selected()
        if c is not None:
            self.app.show_guidelines(c)  # type: ignore[attr-defined]

    def action_keys(self) -> None:
        self.app.action_keys()  # type: ignore[attr-defined]


class RoomKeysScreen(ModalScreen[None]):
    """Every key of the room, as the keymap has them; Esc or ? closes."""

    BINDINGS = [
        Binding("escape", "dismiss", "Close", id="room.keys-close"),
        Binding("question_mark", "dismiss", "Close", show=False, id="room.keys-close-alt"),
    ]

    def compose(self) -> ComposeResult:
        from emtui.bindings import key_label

        keymap = getattr(self.app, "keymap", {})
        with Vertical(id="help-box"):
            yield Static(Text("Keys  (Esc closes)", style="bold"))
            table: DataTable[Text] = DataTable(id="help-table", cursor_type="row", zebra_stripes=True)
            table.add_columns("Where", "Key", "What")
            for where, binding_id, key, description in room_bindings():
                if binding_id.startswith("rate.digit-"):  # ten rows that say one thing
                    if binding_id != "rate.digit-0":
                        continue
                    key, description = "0–9", "type the score, digit by digit"
                table.add_row(Text(where), Text(key_label(keymap.get(binding_id, key))), Text(description))
            yield table


def room_bindings() -> list[tuple[str, str, str, str]]:
    """(where, id, default key, description) of every key of the room."""
    from emtui.bindings import binding_rows
    from emtui.screens.rate import NoteScreen

    return (binding_rows("campaigns", RoomCampaignsScreen.BINDINGS) + binding_rows("rating", RatingScreen.BINDINGS)
            + binding_rows("note", NoteScreen.BINDINGS) + binding_rows("guidelines", GuidelinesScreen.BINDINGS)
            + binding_rows("keys", RoomKeysScreen.BINDINGS) + binding_rows("name", AnnotatorNameScreen.BINDINGS))


class AnnotatorApp(Loads, SaysFaults, CollectsWhenIdle, App[None]):
    """The closed room (see the module's docstring). Build it with :func:`create_annotator_app`."""

    TITLE = "emtui annotate"
    CSS_PATH = ["styles/app.tcss"]

    def __init__(self, store: Store, *, annotator: str | None, campaign: str | None = None,
                 keymap: dict[str, str] | None = None, settings: Settings | None = None) -> None:
        super().__init__()
        self.store = store
        self.settings = settings or Settings()  # the rating screen's lease renewal and idle gap
        self.annotator = annotator
        self.start_campaign = campaign
        self.keymap = dict(keymap or {})
        # a name typed here is trusted as it is: anyone may type another rater's name, so only ratings made
        # after the room opened can be reopened (undo) — never that person's earlier ones
        self.reopen_after: int | None = store.last_rating_id() if annotator is None else None

    def get_default_screen(self) -> Screen:
        return RoomCampaignsScreen()

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        if self.annotator is None:
            self.push_screen(AnnotatorNameScreen(check=self.check_name, cancel="Esc quits"), self.named)
        elif self.start_campaign is not None:
            self.call_after_refresh(self.start_rating, self.start_campaign)

    def check_name(self, name: str) -> str | None:
        """Why ``name`` cannot rate here, or None: a person rates under a plain name no model rater has."""
        from engine.annotation.errors import AnnotationError
        from engine.annotation.raters import check_annotator_name

        try:
            name = check_annotator_name(name)
        except AnnotationError as exc:
            return str(exc)
        try:
            found = self.store.find_annotator(name)
        except Exception as exc:  # a database fault: said under the field, and the name can be sent again
            line = fault_line(exc, self.store.path)
            if line is None:
                raise
            return line
        if found is not None and found["kind"] != "human":
            return f"{name!r} is the name of a {found['kind']} rater; a person rates under another name"
        return None

    @says_faults
    def named(self, name: str | None) -> None:
        if not name:
            self.exit()
            return
        self.annotator = name
        self.screen.read_campaigns()  # type: ignore[attr-defined]
        if self.start_campaign is not None:
            self.start_rating(self.start_campaign)

    def start_rating(self, campaign: str) -> None:
        """Blind rating of ``campaign`` as :attr:`annotator`; a problem is said, not raised."""
        open_rating(self, campaign)

    def show_guidelines(self, campaign: dict[str, Any]) -> None:
        from engine.annotation.campaigns import campaign_scale

        self.push_screen(GuidelinesScreen(campaign.get("guidelines") or "", campaign_scale(campaign).help))

    def action_keys(self) -> None:
        if not isinstance(self.screen, RoomKeysScreen):
            self.push_screen(RoomKeysScreen())

    def open_url(self, url: str, *, new_tab: bool = True) -> None:
        # a link in the guidelines: on a server, opening it would start a browser in this terminal
        self.notify(f"Links are not opened here: {url}", timeout=6, markup=False)  # never markup

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # only these: Textual's own (Screenshot writes files, Keys shows every widget's keys) are left out
        yield SystemCommand("Keys", "every key of this screen and the others", self.action_keys)
        if isinstance(screen, RatingScreen):
            yield SystemCommand("Guidelines", "the campaign's guidelines and scale", screen.action_guidelines)
        elif isinstance(screen, RoomCampaignsScreen) and screen.selected() is not None:
            yield SystemCommand("Guidelines", "the highlighted campaign's guidelines and scale",
                                screen.action_guidelines)
        yield SystemCommand("Theme", "change the colours", self.action_change_theme)
        yield SystemCommand("Quit", "leave (an item you hold stays yours until its lease runs out)", self.action_quit)


def create_annotator_app(store: Store, *, annotator: str | None, campaign: str | None = None,
                         keymap: dict[str, str] | None = None, settings: Settings | None = None) -> AnnotatorApp:
    """The closed room for ``annotator`` (None: the app asks for a name first), opening on ``campaign``'s
    rating screen when given. Reads the settings and the keymap file unless they are given."""
    settings = settings or load_settings()
    if keymap is None:
        from emtui.bindings import load_keymap

        keymap = load_keymap(settings.keymap_file())
    return AnnotatorApp(store, annotator=annotator, campaign=campaign, keymap=keymap, settings=settings)
