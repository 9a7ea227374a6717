"""The workbench and the rating room under operational faults, driven by keys: the database locked by
another connection (as another process's import or worker would), made read-only, deleted or damaged
under the running app, an item's lease taken by someone else mid-rating, a campaign without items.
Each fault is said on screen in one line naming the file; the app neither ends with a traceback nor
stops answering keys, and what was typed is kept to try again."""

from __future__ import annotations

import io
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rich.console import Console

import db
from db import StoreError
from emtui.app import create_app
from emtui.room import RoomCampaignsScreen, create_annotator_app
from emtui.screens.queue import QueueScreen
from emtui.screens.rate import RatingScreen
from engine.annotation.campaigns import create_campaign
from engine.annotation.session import AnnotationSession
from engine.results.synthetic import SyntheticSpec, make_synthetic_study

LOCKED = "the database is locked by another process"


@pytest.fixture
def fault_db(monkeypatch) -> Iterator[Path]:
    monkeypatch.setenv("EMTUI_BUSY_TIMEOUT_S", "0.1")  # a locked write gives up at once
    # a short path, whatever pytest's tmp folder is (pytest-xdist makes it longer): the messages name
    # the file, and at 80x24 a long path would push the end of the message out of its box
    folder = Path(tempfile.mkdtemp(prefix="ft", dir="/tmp" if os.path.isdir("/tmp") else None))
    path = folder / "faults.db"
    with db.open_store(path) as s:
        make_synthetic_study(s, SyntheticSpec(name="st", answers_per_condition=6, questions=3))
        create_campaign(s, name="pilot", study="st", scale="0-3", n_items=4, overlap=1)
        create_campaign(s, name="single", study="st", scale="0-3", n_items=1, overlap=1)
        s.enqueue_job("judge", {"study": "st"})
    yield path
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def locked(path: Path):
    """Another connection holds the write lock (BEGIN IMMEDIATE), as an import in another process does."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


def screen_text(app) -> str:
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                      simplify=True))
    return console.export_text()


class Squeezed(str):
    """A screen's text where ``part in text`` ignores whitespace: a long line wraps anywhere, a file's
    path mid-name too (how long a path is depends on where the test's tmp folder is)."""

    def __contains__(self, part: object) -> bool:
        return isinstance(part, str) and "".join(part.split()) in "".join(self.split())


def squeezed(app) -> Squeezed:
    """The screen's text with the wrapping undone (a long line wraps in the entry box)."""
    return Squeezed(" ".join(line.strip(" │") for line in screen_text(app).splitlines()))


def said(app) -> list[str]:
    return [str(n.message) for n in app._notifications]


def alive(app) -> None:
    assert app._exception is None, app._exception
    assert app.return_code is None


def ratings(path: Path, campaign: str, who: str) -> dict[str, float]:
    with db.open_store(path) as s:
        rows = s.campaign_rating_rows(int(s.find_campaign(campaign)["id"]))
    return {r["code"]: r["score"] for r in rows if r["annotator"] == who}


async def test_a_rating_confirmed_while_the_database_is_locked_is_said_and_kept_to_try_again(fault_db):
    with db.open_store(fault_db) as store:
        app = create_annotator_app(store, annotator="bob", campaign="pilot", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, RatingScreen)
            code = screen.view.code
            with locked(fault_db):
                await pilot.press("2", "enter")  # typing works while locked; the rating cannot be written
                await pilot.pause()
                alive(app)
                assert app.screen is screen and screen.view.code == code and screen.typed == ["2"]
                text = squeezed(app)
                assert f"Not recorded: {fault_db}: {LOCKED}" in text, text
                await pilot.press("enter")  # still locked: said again, nothing lost
                await pilot.pause()
                alive(app)
                assert screen.view.code == code
            await pilot.press("enter")  # the lock is gone: the same rating is stored, the next item comes
            await pilot.pause()
            alive(app)
            assert screen.view.code != code
    assert ratings(fault_db, "pilot", "bob") == {code: 2.0}


async def test_opening_a_campaign_while_the_database_is_locked_is_said(fault_db):
    with db.open_store(fault_db) as store:
        app = create_annotator_app(store, annotator="bob", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            with locked(fault_db):
                await pilot.press("enter")
                await pilot.pause()
                alive(app)
                assert isinstance(app.screen, RoomCampaignsScreen)
                assert len(said(app)) == 1 and f"{fault_db}: {LOCKED}" in said(app)[0]
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, RatingScreen) and app.screen.view is not None


async def test_an_item_that_cannot_be_loaded_is_said_and_enter_tries_again(fault_db):
    with db.open_store(fault_db) as store:
        app = create_annotator_app(store, annotator="bob", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            session = AnnotationSession(store, "pilot", "bob")  # joined; the item is claimed on screen
            with locked(fault_db):
                app.push_screen(RatingScreen(session))
                await pilot.pause()
                alive(app)
                screen = app.screen
                assert isinstance(screen, RatingScreen) and screen.view is None
                text = squeezed(app)
                assert "The next item could not be loaded" in text and LOCKED in text
                assert "Enter: try again" in text
                await pilot.press("1", "enter")
                await pilot.pause()
                alive(app)
                assert screen.view is None
            await pilot.press("enter")
            await pilot.pause()
            assert screen.view is not None and "could not be loaded" not in squeezed(app)


async def test_a_database_made_read_only_under_the_room_is_said(fault_db):
    with db.open_store(fault_db) as store:
        app = create_annotator_app(store, annotator="bob", campaign="pilot", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            store.conn.execute("PRAGMA query_only = ON")  # every write now fails as on a read-only file
            await pilot.press("3", "enter")
            await pilot.pause()
            alive(app)
            assert f"Not recorded: {fault_db}: the database file or its folder is read-only" in squeezed(app)
            await pilot.press("s")
            await pilot.pause()
            assert "Not skipped:" in squeezed(app)
            alive(app)
    assert ratings(fault_db, "pilot", "bob") == {}


async def test_a_database_deleted_under_the_room_is_said_and_nothing_is_written_to_the_lost_file(fault_db):
    with db.open_store(fault_db) as store:
        app = create_annotator_app(store, annotator="bob", campaign="pilot", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            for suffix in ("", "-wal", "-shm"):
                Path(f"{fault_db}{suffix}").unlink(missing_ok=True)
            await pilot.press("1", "enter")
            await pilot.pause()
            alive(app)
            text = squeezed(app)
            assert "Not recorded:" in text
            assert "the database file was deleted or replaced while emtui had it open" in text
            assert screen.view is not None and screen.typed == ["1"]
            await pilot.press("escape", "enter")  # the campaigns, and again into rating: said, not raised
            await pilot.pause()
            alive(app)


def test_a_write_to_a_database_file_deleted_or_replaced_since_it_was_opened_is_refused(tmp_path):
    path = tmp_path / "gone.db"
    store = db.open_store(path)
    try:
        with store.transaction():
            store.enqueue_job("judge", {})
        os.replace(db.open_store(tmp_path / "other.db").path, path)  # another database moved over it
        with pytest.raises(StoreError, match="deleted or replaced while emtui had it open; nothing was written"):
            with store.transaction():
                store.enqueue_job("judge", {})
        path.unlink()
        with pytest.raises(StoreError, match="deleted or replaced"):
            with store.transaction():
                pass
    finally:
        store.close()
    with db.open_store(tmp_path / "again.db") as fresh:  # an unchanged file is written as ever
        with fresh.transaction():
            fresh.enqueue_job("judge", {})
        assert fresh.count("jobs") == 1


async def test_the_workbench_says_a_locked_or_damaged_database_and_goes_on(fault_db):
    with db.open_store(fault_db) as store:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("4")
            await pilot.pause()
            assert isinstance(app.screen, QueueScreen)
            with locked(fault_db):
                await pilot.press("c")  # cancel the job: a write
                await pilot.pause()
                alive(app)
                await pilot.press("6", "w", *"lead", "enter", "enter")  # rate a campaign: joining writes
                await pilot.pause()
                alive(app)
            assert [LOCKED in line for line in said(app)] == [True, True], said(app)
            with open(fault_db, "r+b") as f:  # the file damaged under the app: every read fails
                f.truncate(4096)
            for key in ("1", "2", "7", "r", "4"):
                await pilot.press(key)
                await pilot.pause()
                alive(app)
            assert any("not a SQLite database, or a damaged one" in line for line in said(app)), said(app)


async def test_an_item_whose_lease_went_to_someone_else_mid_rating_is_said_and_not_recorded(fault_db):
    with db.open_store(fault_db) as store:
        app = create_annotator_app(store, annotator="bob", campaign="single", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            screen = app.screen
            code = screen.view.code
            with db.open_store(fault_db) as other:  # bob pauses for long; his lease runs out, carol takes the item
                other.conn.execute("UPDATE assignments SET lease_expires = 0")
                carol = AnnotationSession(other, "single", "carol")
                assert carol.next_item().code == code
                carol.rate(0)
            await pilot.press("3", "enter")
            await pilot.pause()
            alive(app)
            text = squeezed(app)
            assert "That item went to another annotator after a long pause; your rating was not recorded" in text
            assert "Nothing left for you to rate" in text and "You rated 0 item(s)" in text
    assert ratings(fault_db, "single", "bob") == {} and ratings(fault_db, "single", "carol") == {code: 0.0}


async def test_a_campaign_without_items_says_there_is_nothing_to_rate(fault_db):
    with db.open_store(fault_db) as store:
        study = store.find_study("st")
        store.create_campaign_rows(study_id=int(study["id"]), name="empty", scale="0-3", overlap=1, guidelines="",
                                   seed=0, settings={}, items=[])  # as an older database might hold
        app = create_annotator_app(store, annotator="bob", campaign="empty", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            alive(app)
            assert isinstance(app.screen, RatingScreen) and app.screen.view is None
            text = squeezed(app)
            assert "Nothing left for you to rate in this campaign" in text
            assert "You rated 0 item(s) and skipped 0. Esc: back to the campaigns." in text
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.screen, RoomCampaignsScreen) and "empty" in screen_text(app)
