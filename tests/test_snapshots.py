"""Snapshots of every screen at 80x24 and 120x40 (pytest-textual-snapshot): a layout that breaks —
a table cut to one row, a number pushed off screen, a hint cut short — changes the picture and
fails here. The pictures are SVG files under tests/__snapshots__/test_snapshots/; after a change
that is meant, look at the report pytest writes and accept the new ones with
``pytest tests/test_snapshots.py --snapshot-update``.

The database is tests/demo_db.py's (fixed content, fixed clock, no file paths) and the header's
path is set to ``demo.db``, so the pictures are the same on every run and machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import db
from demo_db import build
from emtui.app import create_app
from emtui.screens.results import ResultsScreen
from judge_panels import live_panel

SIZES = {"80x24": (80, 24), "120x40": (120, 40)}
# screen name -> the keys that open it from the Studies screen. On the Data screen the eval sets
# are synthetic-questions, replicate-questions, human-questions; freeform-003 is the long question.
SCREENS = {
    "studies": [],
    "data-datasets": ["2"],
    "data-models": ["2", "v"],
    "data-eval-sets": ["2", "v", "v", "down", "down"],
    "data-question-in-full": ["2", "v", "v", "down", "down", "tab", "down", "down", "enter"],
    "train": ["3"],  # a failed KL-regularised run highlighted: its loss, learning rate, grad norm and KL
    "train-overlay": ["3", "space", "down", "down", "space"],  # two runs' loss curves in one chart
    "train-checkpoints": ["3", "down", "down", "k"],
    "queue": ["4"],
    "queue-job-in-full": ["4", "down", "down", "enter"],
    "queue-new-eval": ["4", "n"],  # the form over the demo's first study: its conditions hold imported answers
    "queue-answers": ["4", "down", "a"],  # the queued generate job: no answers yet
    "judges": ["5"],
    # a running panel (SETUPS): haiku highlighted, its last errors; nova-pro paused
    "judges-live": ["5", "down", "down", "down"],
    "annotate": ["6"],
    "results-scores": ["7"],
    "results-scores-judge": ["7", "j"],
    "results-rates": ["7", "v"],
    "results-by-checkpoint": ["7", "b"],
    "results-by-category": ["7", "b", "b"],
    "results-agreement": ["7", "v", "v", "v"],
    "results-comparisons": ["7", "v", "v", "v", "v"],
    "results-counts": ["7", "v", "v", "v", "v", "v"],
    "results-by-model": ["7", "n", "b"],
    "results-human-only": ["7", "n", "n"],
    "results-human-only-agreement": ["7", "n", "n", "v", "v", "v"],
    "answers": ["7", "right", "right", "enter"],
    "answer-in-full": ["7", "right", "right", "enter", "enter"],
    "answers-human-only": ["7", "n", "n", "right", "enter"],
    "help": ["question_mark"],
}

# what a screen's picture needs added to the demo database first
SETUPS = {"judges-live": live_panel}

# an empty database: what each screen says to do
EMPTY_SCREENS = {"empty-studies": [], "empty-data": ["2", "v", "v"], "empty-train": ["3"], "empty-annotate": ["6"],
                 "empty-results": ["7"], "empty-results-counts": ["7", "v", "v", "v", "v", "v"]}


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture
def stable_env(monkeypatch):
    """The help screen names the keymap file: the same path everywhere; and colours whatever the
    terminal running the tests asks for."""
    monkeypatch.setenv("HOME", "/home/researcher")
    for name in ("XDG_CONFIG_HOME", "EMTUI_KEYMAP", "NO_COLOR", "TEXTUAL"):
        monkeypatch.delenv(name, raising=False)


def open_app(path: Path):
    store = db.open_store(path)
    app = create_app(store, keymap={})
    app.sub_title = "demo.db"  # the header shows the database's path: not a temporary folder's
    return app, store


async def settle(pilot) -> None:
    """Wait until the Results screen's summary (computed in a thread) is on the screen."""
    from textual.worker import WorkerCancelled

    for _ in range(400):
        try:
            await pilot.app.workers.wait_for_complete()
        except WorkerCancelled:  # an exclusive read replaced by a newer one (a refresh on a loaded box): wait again
            await pilot.pause(0.025)
            continue
        await pilot.pause()
        screen = pilot.app.screen
        busy = isinstance(screen, ResultsScreen) and (screen.computing or any(
            v.get("pending") for v in screen.extra.values()))
        if not busy:
            return
        await pilot.pause(0.025)
    raise AssertionError("the summary did not finish")


def press_and_settle(keys: list[str]):
    async def run_before(pilot) -> None:
        await settle(pilot)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)

    return run_before


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", SCREENS)
def test_screen(snap_compare, demo_db, tmp_path, stable_env, screen, size):
    path = tmp_path / "demo.db"
    shutil.copy(demo_db, path)  # the screens write nothing, but each test gets its own file
    if screen in SETUPS:
        SETUPS[screen](path)
    app, store = open_app(path)
    try:
        assert snap_compare(app, terminal_size=SIZES[size], run_before=press_and_settle(SCREENS[screen]))
    finally:
        store.close()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("screen", EMPTY_SCREENS)
def test_empty_screen(snap_compare, tmp_path, stable_env, screen, size):
    app, store = open_app(tmp_path / "empty.db")
    try:
        assert snap_compare(app, terminal_size=SIZES[size], run_before=press_and_settle(EMPTY_SCREENS[screen]))
    finally:
        store.close()
