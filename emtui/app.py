"""The emtui Textual app: one screen per area, reachable by a single key and from the
command palette. Build it with :func:`create_app` — the CLI and the tests use the same factory."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from emtui.faults import SaysFaults
from emtui.idle_gc import CollectsWhenIdle
from emtui.loading import Loads
from emtui.screens.annotate import AnnotateScreen
from emtui.screens.base import AreaScreen
from emtui.screens.data import DataScreen
from emtui.screens.help import HelpScreen
from emtui.screens.judges import JudgesScreen
from emtui.screens.queue import QueueScreen
from emtui.screens.results import ResultsScreen
from emtui.screens.studies import StudiesScreen
from emtui.screens.train import TrainScreen
from engine.settings import Settings, load_settings

if TYPE_CHECKING:
    from db import Store


@dataclass(frozen=True)
class Area:
    name: str
    title: str
    key: str
    screen: type[AreaScreen]
    about: str


AREAS: tuple[Area, ...] = (
    Area("studies", "Studies", "1", StudiesScreen, "every study: its conditions, eval sets and judges"),
    Area("data", "Data", "2", DataScreen, "datasets, models, eval sets and questions"),
    Area("train", "Train", "3", TrainScreen, "fine-tuning runs and checkpoints"),
    Area("queue", "Eval queue", "4", QueueScreen, "queued, running and finished jobs"),
    Area("judges", "Judges", "5", JudgesScreen, "the judge panel and rubrics"),
    Area("annotate", "Annotate", "6", AnnotateScreen, "human evaluation campaigns and annotators"),
    Area("results", "Results", "7", ResultsScreen, "answers, judgments and ratings per condition"),
)


class EmtuiApp(Loads, SaysFaults, CollectsWhenIdle, App[None]):
    TITLE = "emtui"
    CSS_PATH = ["styles/app.tcss"]
    MODES = {a.name: a.screen for a in AREAS}
    DEFAULT_MODE = "studies"
    BINDINGS = [
        *(Binding(a.key, f"switch_mode('{a.name}')", a.title, show=False, id=f"app.{a.name}") for a in AREAS),
        Binding("question_mark", "help", "Help", key_display="?", id="app.help"),
        Binding("q", "quit", "Quit", id="app.quit"),
    ]

    def __init__(self, store: Store, *, keymap: dict[str, str] | None = None, annotator: str | None = None,
                 campaign: str | None = None, settings: Settings | None = None) -> None:
        super().__init__()
        self.store = store
        self.settings = settings or Settings()  # poll intervals, on-screen resamples, the rating screen's timings
        self.keymap = dict(keymap or {})
        self.sub_title = str(store.path)
        self.annotator = annotator  # who rates / adjudicates in this workbench session (a lead)
        self.start_campaign = campaign

    def on_mount(self) -> None:
        if self.keymap:
            self.set_keymap(self.keymap)
        if self.annotator is not None:  # a lead named up front: straight to the Annotate area (and the campaign)
            self.switch_mode("annotate")
            if self.start_campaign is not None:
                self.call_after_refresh(self.start_rating, self.start_campaign)

    def start_rating(self, campaign: str) -> None:
        """Blind rating of ``campaign`` as :attr:`annotator`; a problem is said, not raised."""
        from emtui.screens.rate import open_rating

        open_rating(self, campaign)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Textual's own "Keys" panel is replaced by ours, which shows binding ids and the keymap
        yield from (c for c in super().get_system_commands(screen) if c.title != "Keys")
        for area in AREAS:
            yield SystemCommand(f"Go to {area.title}", f"[{area.key}] {area.about}",
                                partial(self.switch_mode, area.name))
        yield SystemCommand("Keys", "every key binding and its id", self.action_help)


def create_app(store: Store, *, keymap: dict[str, str] | None = None, annotator: str | None = None,
               campaign: str | None = None, settings: Settings | None = None) -> EmtuiApp:
    """The one way to build the app: reads the settings (environment, config file) and the keymap file
    unless they are given. ``annotator`` (and ``campaign``): open on the Annotate area rating as that person
    (a lead; people who only rate get ``emtui annotate``, the closed room of :mod:`emtui.room`)."""
    settings = settings or load_settings()
    if keymap is None:
        from emtui.bindings import load_keymap

        keymap = load_keymap(settings.keymap_file())
    return EmtuiApp(store, keymap=keymap, annotator=annotator, campaign=campaign, settings=settings)
