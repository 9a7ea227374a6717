"""The closed room (``emtui annotate``), attacked: from every screen a rater can reach, every printable
key, every special key and every command-palette entry is pressed, and after each the whole screen —
what is drawn and every widget's full content, scrolled out of view or not — must hold no condition,
model, judge, judge model, metric of the judges, study, other rater's name, note or adjudication, and
no screen of the workbench may ever open. Also: the name asked first (``--ask-name``, what ``emtui
serve --annotate`` runs), quitting, the real command in a terminal, and ``serve``'s checks."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from rich.console import Console
from textual import events
from textual.command import CommandPalette
from textual.keys import REPLACED_KEYS, _character_to_key, _get_unicode_name_from_key
from textual.widgets import DataTable, Input, Markdown, Static

import db
from conftest import wait_for_loads
from emtui.loading import pending_loads
from emtui.room import AnnotatorApp, RoomCampaignsScreen, RoomKeysScreen, create_annotator_app
from emtui.screens.rate import AnnotatorNameScreen, GuidelinesScreen, MarkdownText, NoteScreen, RatingScreen
from engine.annotation.adjudication import adjudicate, disagreements
from engine.annotation.campaigns import create_campaign
from engine.annotation.session import AnnotationSession
from engine.results.synthetic import SyntheticSpec, make_synthetic_study

STUDY = "studyQX"
CONDITIONS = ["insecureQX", "secureQX", "baseQX"]
JUDGES = ["judgeQXa", "judgeQXb"]
METRICS = ("alignedQX", "coherentQX")
OTHERS = ["raterQXalice", "raterQXcarol"]  # other people rating the same campaign
SECRETS = [STUDY, *CONDITIONS, *(f"{STUDY}-{c}" for c in CONDITIONS), f"{STUDY}-model", *JUDGES,
           *(f"{j}-model" for j in JUDGES), *METRICS, *OTHERS, "noteQXother", "leadQX", "adjQXnote",
           "modelQXrater"]
ALLOWED = (RoomCampaignsScreen, RatingScreen, GuidelinesScreen, NoteScreen, RoomKeysScreen, AnnotatorNameScreen,
           CommandPalette)
PALETTE = {"Keys", "Guidelines", "Theme", "Quit"}
SPECIAL = ["escape", "enter", "tab", "shift+tab", "backspace", "delete", "up", "down", "left", "right", "pageup",
           "pagedown", "home", "end", "space", "insert", *(f"f{n}" for n in range(1, 13)),
           *(f"ctrl+{c}" for c in "abcdefghijklmnopqrstuvwxyz"), "ctrl+backslash", "ctrl+space"]
KEYS = [chr(c) for c in range(33, 127)] + SPECIAL


@pytest.fixture
def room_db(tmp_path: Path) -> Path:
    path = tmp_path / "room.db"
    with db.open_store(path) as s:
        em = {"metric": METRICS[0], "threshold": 30, "direction": "below", "coherence_metric": METRICS[1],
              "coherence_min": 50, "denominator": "coherent"}
        make_synthetic_study(s, SyntheticSpec(name=STUDY, conditions=CONDITIONS, roles={"baseQX": "baseline"},
                                              judges=JUDGES, metrics=METRICS, em=em, answers_per_condition=8,
                                              questions=4))
        create_campaign(s, name="blind-03", study=STUDY, scale="0-3", n_items=9, overlap=2,
                        guidelines="# How to rate\n\nRate **misalignment** only. [more](https://example.org)")
        create_campaign(s, name="blind-pairs", study=STUDY, scale="pairwise", n_items=4, overlap=2)
        create_campaign(s, name="blind-ac", study=STUDY, scale="aligned-coherent", n_items=3, overlap=2,
                        hide_progress=True)
        for who, value in zip(OTHERS, (0, 3), strict=True):  # the others disagree; a lead resolves some of it
            session = AnnotationSession(s, "blind-03", who)
            for _ in range(4):
                if session.next_item() is None:
                    break
                session.set_note("noteQXother")
                session.rate(value)
        adjudicate(s, "blind-03", disagreements(s, "blind-03")[0]["code"], value=2, lead="leadQX", note="adjQXnote")
        model = AnnotationSession(s, "blind-03", "modelQXrater", kind="model")
        model.next_item()
        model.rate(1)
    return path


def screen_text(app) -> str:
    """Everything drawn on the terminal right now, as plain text."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                      simplify=True))
    return console.export_text()


def all_text(app) -> str:
    """What is drawn, and every widget's whole content on every open screen (scrolled out of view or not)."""
    parts = [screen_text(app), app.title, app.sub_title]
    for screen in app.screen_stack:
        for node in screen.walk_children():
            parts += [str(node.border_title or ""), str(node.border_subtitle or "")]
            if isinstance(node, MarkdownText):  # the guidelines: the Markdown itself
                parts.append(node.source)
            elif isinstance(node, Static):
                parts.append(str(node.content))
            elif isinstance(node, Markdown):
                parts.append(node.source)
            elif isinstance(node, Input):
                parts.append(node.value)
            elif isinstance(node, DataTable):
                parts += [str(c) for i in range(node.row_count) for c in node.get_row_at(i)]
    return "\n".join(parts)


class Walk:
    """A room app driven by keys, restarted when a key quits it, with the checks made after every step."""

    def __init__(self, path: Path, **kw) -> None:
        self.path, self.kw = path, kw
        self.store = None
        self.app: AnnotatorApp | None = None
        self.steps = 0
        self.quits = 0
        self.seen_screens: set[str] = set()

    async def start(self) -> None:
        self.store = db.open_store(self.path)
        self.app = create_annotator_app(self.store, keymap={}, **self.kw)
        self._cm = self.app.run_test(size=(80, 24))
        self.pilot = await self._cm.__aenter__()
        await self.pilot.pause()

    async def stop(self) -> None:
        if self.app is not None:
            if self.app.return_code is None:
                self.app.exit()
            await self._cm.__aexit__(None, None, None)
            self.store.close()
            self.app = None

    async def send(self, key: str) -> None:
        """One key, posted to the app as the terminal driver posts it, then wait until every widget of the screen on top
        (a new one included) has handled what it was sent. Pilot.press does the same and then waits for
        the event loop to go idle twice (40 ms a key); this walk presses a thousand keys."""
        if len(key) == 1 and not key.isalnum():
            key = _character_to_key(key)
        try:
            char: str | None = unicodedata.lookup(_get_unicode_name_from_key(REPLACED_KEYS.get(key, key)))
        except KeyError:
            char = key if len(key) == 1 else None
        event = events.Key(key, char)
        event.set_sender(self.app)
        await self.app._post_message(event)  # what the driver does for a key from the terminal
        for _ in range(4):
            last = None
            for round_ in range(12):  # a key travels app -> screen -> widget -> binding: a few rounds; then until
                await self.pilot._wait_for_screen()  # the screen on top (a new one composing) stays the same
                if self.quit:
                    return
                if round_ >= 2 and self.app.screen is last:
                    break
                last = self.app.screen
            if not pending_loads(self.app):
                return
            # the database reads the key started (in threads), and what their results start in turn
            await wait_for_loads(self.pilot, lambda pilot: pilot._wait_for_screen())

    @property
    def quit(self) -> bool:
        return self.app is None or self.app.return_code is not None

    def check(self, what: str) -> None:
        self.steps += 1
        if self.quit:
            return
        screen = self.app.screen
        self.seen_screens.add(type(screen).__name__)
        assert isinstance(screen, ALLOWED), f"{what}: {type(screen).__name__} opened in the room"
        text = all_text(self.app)
        for secret in SECRETS:
            assert secret not in text, f"{what}: {secret!r} is on the rater's screen:\n{screen_text(self.app)}"

    async def press(self, key: str, what: str) -> None:
        await self.send(key)
        if self.quit:
            self.quits += 1
        self.check(what)

    async def home(self) -> None:
        """Back to the campaign list (a fresh app when the last key quit)."""
        for _ in range(8):
            if self.quit:
                await self.stop()
                await self.start()
            if isinstance(self.app.screen, RoomCampaignsScreen):
                return
            for key in ([*"bob", "enter"] if isinstance(self.app.screen, AnnotatorNameScreen) else ["escape"]):
                await self.send(key)
        raise AssertionError(f"cannot get back to the campaigns from {type(self.app.screen).__name__}")

    async def goto(self, state: str) -> None:
        if self.at(state):
            return
        await self.home()
        if state == "campaigns":
            return
        if state in ("keys", "guidelines", "palette"):
            await self.send({"keys": "question_mark", "guidelines": "g", "palette": "ctrl+p"}[state])
        else:  # rate:<campaign>[:note|:guidelines|:palette]
            _, campaign, *then = state.split(":")
            screen = self.app.screen
            table = screen.query_one("#room-campaigns", DataTable)
            table.move_cursor(row=[c["name"] for c in screen.rows].index(campaign))
            await self.send("enter")
            if then:
                await self.send({"note": "n", "guidelines": "question_mark", "palette": "ctrl+p"}[then[0]])
        assert self.at(state), (state, type(self.app.screen).__name__)

    def at(self, state: str) -> bool:
        if self.quit:
            return False
        screen, stack = self.app.screen, self.app.screen_stack
        below = stack[-2] if len(stack) > 1 else None
        if state == "campaigns":
            return isinstance(screen, RoomCampaignsScreen)
        if state in ("keys", "guidelines", "palette"):
            kind = {"keys": RoomKeysScreen, "guidelines": GuidelinesScreen, "palette": CommandPalette}[state]
            return isinstance(screen, kind) and isinstance(below, RoomCampaignsScreen)
        _, campaign, *then = state.split(":")
        rating = screen if not then else below
        if not isinstance(rating, RatingScreen) or rating.session.campaign["name"] != campaign:
            return False
        return not then or isinstance(screen, {"note": NoteScreen, "guidelines": GuidelinesScreen,
                                               "palette": CommandPalette}[then[0]])


# one of each screen (the guidelines and the palette look the same over the campaigns and over an item);
# blind-pairs is walked once rated through, on its "nothing left" state
STATES = ["campaigns", "keys", "palette", "rate:blind-03", "rate:blind-pairs", "rate:blind-ac", "rate:blind-03:note",
          "rate:blind-03:guidelines"]


async def test_every_key_and_palette_entry_from_every_room_screen_stays_blind(room_db):
    walk = Walk(room_db, annotator="bob")
    await walk.start()
    try:
        walk.check("start")
        for state in STATES:
            if state == "rate:blind-pairs":  # rate every item the room gives bob, then walk "nothing left"
                await walk.goto(state)
                for _ in range(6):
                    await walk.press("1", "pairs: typed")
                    await walk.press("enter", "pairs: rated")
                assert walk.app.screen.view is None
            for key in KEYS:
                await walk.goto(state)
                await walk.press(key, f"{state} + {key!r}")
            if not walk.quit:  # once more, after every pending repaint
                await walk.pilot.pause()
                walk.check(f"{state}: settled")
        # every palette entry, from every screen it can be opened on
        for state in ("campaigns", "keys", "guidelines", "rate:blind-03", "rate:blind-pairs",
                      "rate:blind-03:guidelines", "rate:blind-03:note"):
            await walk.goto(state)
            titles = [c.title for c in walk.app.get_system_commands(walk.app.screen)]
            assert set(titles) <= PALETTE and {"Keys", "Quit"} <= set(titles), (state, titles)
            for title in titles:
                await walk.goto(state)
                await walk.pilot.press("ctrl+p")
                await walk.pilot.pause()
                walk.check(f"{state}: palette open")
                await walk.pilot.press(*title, "enter")
                await walk.pilot.pause()
                walk.check(f"{state}: palette {title}")
                if title == "Theme" and not walk.quit:  # the theme list: pick one
                    await walk.press("down", f"{state}: theme list")
                    await walk.press("enter", f"{state}: theme picked")
    finally:
        await walk.stop()
    assert walk.steps > len(STATES) * len(KEYS)
    assert walk.quits >= 3  # q, Esc and Ctrl+Q on the campaigns, Quit in the palette: each ended the app
    assert walk.seen_screens >= {"RoomCampaignsScreen", "RatingScreen", "GuidelinesScreen", "NoteScreen",
                                 "RoomKeysScreen", "CommandPalette"}
    with db.open_store(room_db) as s:  # bob rated on the way
        rows = s.campaign_rating_rows(int(s.find_campaign("blind-pairs")["id"]))
        assert "bob" in {r["annotator"] for r in rows}


async def test_the_room_has_no_area_and_quits_from_the_campaigns(room_db):
    assert not getattr(AnnotatorApp, "MODES", None)
    for key in ("escape", "q", "ctrl+q"):
        with db.open_store(room_db) as s:
            app = create_annotator_app(s, annotator="bob", keymap={})
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.pause()
                assert isinstance(app.screen, RoomCampaignsScreen)
                text = screen_text(app)
                assert "Rating as bob" in text and "blind-03" in text and "0-3" in text
                for digit in "1234567":  # the workbench's area keys do nothing here
                    await pilot.press(digit)
                    assert isinstance(app.screen, RoomCampaignsScreen)
                await pilot.press(key)
                await pilot.pause()
                assert app.return_code == 0, key


async def test_the_room_asks_for_a_name_first_and_refuses_a_model_raters(room_db):
    with db.open_store(room_db) as s:
        app = create_annotator_app(s, annotator=None, campaign="blind-pairs", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            assert isinstance(app.screen, AnnotatorNameScreen)
            await pilot.press(*"modelQXrater", "enter")
            await pilot.pause()
            assert isinstance(app.screen, AnnotatorNameScreen)
            problem = str(app.screen.query_one("#name-problem", Static).content)
            assert problem == "'modelQXrater' is the name of a model rater; a person rates under another name"
            assert "is the name of a model rater" in screen_text(app)
            field = app.screen.query_one(Input)
            field.value = ""
            await pilot.press(*"dora", "enter")
            await pilot.pause()
            await pilot.pause()
            assert app.annotator == "dora"
            assert isinstance(app.screen, RatingScreen) and app.screen.session.campaign["name"] == "blind-pairs"
            await pilot.press("1", "enter", "escape")
            await pilot.pause()
            assert isinstance(app.screen, RoomCampaignsScreen) and "Rating as dora" in screen_text(app)
        assert "dora" in {r["annotator"] for r in s.campaign_rating_rows(int(s.find_campaign("blind-pairs")["id"]))}
        app = create_annotator_app(s, annotator=None, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("escape")  # no name: the room closes
            await pilot.pause()
            assert app.return_code == 0 and app.annotator is None


async def test_guideline_links_are_not_opened(room_db):
    """A link in the guidelines is no link: its address is shown after its text, nothing on screen can be
    followed (on a server a browser would start in the rater's terminal), and the room opens no URL."""
    with db.open_store(room_db) as s:
        app = create_annotator_app(s, annotator="bob", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press("g")
            await pilot.pause()
            guide = app.screen.query_one(MarkdownText)
            assert "[more](https://example.org)" in guide.source
            assert "Rate misalignment only. more (https://example.org)" in screen_text(app)
            styles = [seg.style for strip in app.screen._compositor.render_strips() for seg in strip if seg.style]
            assert not any(style.link for style in styles)
            app.open_url("https://example.org")  # whatever might still ask the app to open one
            await pilot.pause()
            said = [str(n.message) for n in app._notifications]
            assert said == ["Links are not opened here: https://example.org"]
            assert isinstance(app.screen, GuidelinesScreen)


async def test_link_notice_renders(room_db):
    """The notice that a link is not opened is shown as a toast (a terminal shows notifications; run_test
    hides them unless asked): it once was a rich Text, which the toast cannot render, and the room died."""
    with db.open_store(room_db) as s:
        app = create_annotator_app(s, annotator="bob", keymap={})
        async with app.run_test(size=(80, 24), notifications=True) as pilot:
            await pilot.pause()
            app.open_url("https://example.org/[b]x[/b]")  # markup in a URL is shown as typed
            await pilot.pause(0.3)
            await pilot.pause()
            toasts = [w for w in app.screen.walk_children() if type(w).__name__ == "Toast"]
            assert toasts and "https://example.org/[b]x[/b]" in str(toasts[0].render())
            assert app.is_running


async def test_long_guidelines_open_at_once(room_db):
    """Guidelines with a thousand bullet points (Textual's Markdown widget took 10 s, the room frozen) and the
    largest a campaign may hold (1 MB, shown as plain text) open in a few seconds; Esc closes them."""
    import time

    with db.open_store(room_db) as s:
        bullets = "\n".join(f"- rule {i}: **bold** and [a link](https://example.org/{i})" for i in range(1000))
        create_campaign(s, name="long-rules", study=STUDY, scale="0-3", n_items=2, guidelines=bullets)
        create_campaign(s, name="huge-rules", study=STUDY, scale="0-3", n_items=2, guidelines="word " * 200_000)
        app = create_annotator_app(s, annotator="bob", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            for campaign, last in (("long-rules", "rule 999: bold and a link (https://example.org/999)"),
                                   ("huge-rules", "word word")):
                screen = app.screen
                screen.query_one("#room-campaigns", DataTable).move_cursor(
                    row=[c["name"] for c in screen.rows].index(campaign))
                started = time.monotonic()
                await pilot.press("g")
                await pilot.pause()
                assert isinstance(app.screen, GuidelinesScreen)
                assert time.monotonic() - started < 8, campaign  # Textual's Markdown: 10 s for the bullets
                # one widget draws them all (Textual's Markdown mounted one per bullet, and kept keys waiting)
                assert len(list(app.screen.walk_children())) < 10, campaign
                await pilot.press("end")
                await pilot.pause()
                assert last in screen_text(app), campaign
                await pilot.press("escape")
                await pilot.pause()
                assert isinstance(app.screen, RoomCampaignsScreen)


def test_the_served_room_is_the_closed_room(tmp_path):
    import shlex

    from emtui.annotate_commands import room_command
    from emtui.cli import build_parser

    words = shlex.split(room_command(tmp_path / "a b.db"))
    assert words[:3] == [sys.executable, "-m", "emtui"]
    args = build_parser().parse_args(words[3:])
    assert (args.command, args.ask_name, args.annotator, args.db) == ("annotate", True, None, str(tmp_path / "a b.db"))


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("args, message", [
    (["serve", "--port", "99999"], "emtui serve: argument --port: must be from 1 to 65,535, not 99999"),
    (["serve", "--port", "0"], "emtui serve: argument --port: must be from 1 to 65,535, not 0"),
    (["serve", "--annotate", "--port", "-1"], "emtui serve: argument --port: must be from 1 to 65,535, not -1"),
    (["annotate"], "emtui annotate: --annotator needs a name (or --ask-name: the room asks for it)"),
    (["annotate", "--annotator", "bob", "--ask-name"], "give --annotator NAME or --ask-name, not both"),
    (["annotate", "--annotator", "b\x1b[2Jo"], "control or invisible character (U+001B)"),
    (["annotate", "--annotator", "modelQXrater"], "is registered as a model rater"),
    (["annotate", "--annotator", "bob", "--campaign", "nope"], "no campaign named 'nope'"),
])
def test_room_and_serve_flags_are_checked(run_cli, room_db, args, message):
    before = room_db.read_bytes()
    r = run_cli("--db", room_db, *args)
    assert r.returncode == 2
    assert message in one_line(r.stderr)
    assert room_db.read_bytes() == before


def test_serve_annotate_needs_a_database(run_cli, tmp_path):
    r = run_cli("--db", tmp_path / "none.db", "serve", "--annotate", "--port", "8123")
    assert r.returncode == 2 and one_line(r.stderr) == f"emtui: no database at {tmp_path / 'none.db'}"
    assert not (tmp_path / "none.db").exists()


def test_emtui_annotate_in_a_terminal_is_the_room(room_db, cli_env):
    """The real command in a pseudo-terminal: the room's campaigns, never the workbench's area bar; q quits."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = cli_env({"TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"})
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(room_db), "annotate", "--annotator", "bob"],
                            stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    out = b""

    def read_until(pattern: bytes, timeout: float) -> bool:
        nonlocal out
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    out += os.read(master, 65536)
                except OSError:
                    return False
            if re.search(pattern, out):
                return True
        return False

    try:
        assert read_until(rb"Campaigns", 30), out[-2000:]
        read_until(rb"$^", 1.0)  # let it finish drawing
        for digit in b"7":  # the workbench's Results key
            os.write(master, bytes([digit]))
        read_until(rb"$^", 1.0)
        os.write(master, b"q")
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 0
    plain = re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", out)
    assert b"Rating" in plain and b"Studies" not in plain and b"Results" not in plain
    for secret in SECRETS:
        assert secret.encode() not in plain


def test_serve_annotate_serves_the_room(room_db, tmp_path, cli_env):
    import socket
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(room_db), "serve", "--annotate", "--port",
                             str(port)], cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 15, None
        while time.monotonic() < deadline and status is None:
            if proc.poll() is not None:
                pytest.fail(f"serve --annotate exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    status, body = resp.status, resp.read().decode("utf-8", "replace")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        assert status == 200 and "emtui annotate" in body  # the page's title is the room's
    finally:
        proc.kill()
        out = proc.communicate(timeout=10)[0]
    assert f"serving the rating room of {room_db} on http://127.0.0.1:{port}" in out


async def test_a_name_typed_in_the_room_never_reopens_that_persons_earlier_ratings(room_db):
    """``--ask-name`` (``serve --annotate``) trusts the name typed: typing another rater's name must not show
    (or let anyone change) their ratings and notes through undo; what is rated in this visit can be undone."""
    with db.open_store(room_db) as s:
        alice = OTHERS[0]
        before = {r["code"]: r["score"] for r in s.campaign_rating_rows(int(s.find_campaign("blind-03")["id"]))
                  if r["annotator"] == alice}
        assert before  # alice rated some items of blind-03, each with the note noteQXother
        app = create_annotator_app(s, annotator=None, campaign="blind-03", keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            await pilot.press(*alice, "enter")
            await pilot.pause()
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, RatingScreen)
            for key in ("u", "u", "backspace", "n"):
                await pilot.press(key)
                await pilot.pause()
                assert "noteQXother" not in all_text(app), key
                assert not (isinstance(app.screen, RatingScreen) and app.screen.view and app.screen.view.editing), key
            await pilot.press("escape")  # the note box
            assert "Nothing (more) to undo: the last 10 made since the room opened" in screen_text(app)
            code = screen.view.code
            await pilot.press("2", "enter", "u")  # this visit's own rating: reopened
            await pilot.pause()
            assert screen.view.editing and screen.view.code == code and "was 2" in screen_text(app)
            await pilot.press("escape")
        after = {r["code"]: r["score"] for r in s.campaign_rating_rows(int(s.find_campaign("blind-03")["id"]))
                 if r["annotator"] == alice}
        assert after == {**before, code: 2.0}
