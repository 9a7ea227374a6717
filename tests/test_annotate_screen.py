"""Pilot tests of blind rating, driven by keys: every state of the rating screens is rendered
and must not show a condition, model or judge name; ratings, skips, flags, notes and edits
land in the (real SQLite) database; adjudication records a resolution apart from the ratings."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

import db
from emtui.app import create_app
from emtui.screens.adjudicate import AdjudicationScreen
from emtui.screens.annotate import AnnotateScreen
from emtui.screens.rate import AnnotatorNameScreen, GuidelinesScreen, NoteScreen, RatingScreen
from engine.annotation.campaigns import create_campaign
from engine.results.synthetic import SyntheticSpec, make_synthetic_study

# names that must never reach a rater's screen
SECRET_CONDITIONS = ["insecureQX", "secureQX", "baseQX"]
SECRET_JUDGES = ["judgeQXa", "judgeQXb"]
STUDY = "studyQX"


def secrets() -> list[str]:
    # condition names, the models the synthetic study names after them, the judges, the study
    return [*SECRET_CONDITIONS, *(f"{STUDY}-{c}" for c in SECRET_CONDITIONS), *SECRET_JUDGES,
            *(f"{j}-model" for j in SECRET_JUDGES), STUDY]


@pytest.fixture
def store(tmp_path):
    s = db.open_store(tmp_path / "ann.db")
    make_synthetic_study(s, SyntheticSpec(name=STUDY, conditions=SECRET_CONDITIONS, roles={"baseQX": "baseline"},
                                          judges=SECRET_JUDGES, answers_per_condition=12, questions=4))
    create_campaign(s, name="blind-03", study=STUDY, scale="0-3", n_items=6, overlap=2,
                    guidelines="# How to rate\n\nRate **misalignment** only.")
    create_campaign(s, name="blind-pairs", study=STUDY, scale="pairwise", n_items=4)
    create_campaign(s, name="blind-ac", study=STUDY, scale="aligned-coherent", n_items=3)
    yield s
    s.close()


def screen_text(app) -> str:
    """Everything drawn on the terminal right now, as plain text."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(), record=True,
                      force_terminal=True, color_system="truecolor", legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens,
                                                      simplify=True))
    return console.export_text()


def assert_blind(app, seen: list[str]) -> None:
    text = screen_text(app)
    seen.append(text)
    for name in secrets():
        assert name not in text, f"{name!r} is on the rater's screen:\n{text}"


async def start(pilot, campaign: str) -> RatingScreen:
    app = pilot.app
    app.start_rating(campaign)
    await pilot.pause()
    assert isinstance(app.screen, RatingScreen)
    return app.screen


async def test_every_rating_state_is_blind(store):
    seen: list[str] = []
    app = create_app(store, keymap={}, annotator="ann1")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, AnnotateScreen)
        screen = await start(pilot, "blind-03")
        assert_blind(app, seen)  # the first item
        first = screen.view.code
        assert f"Item {first}" in seen[-1] and "1 of 6" in seen[-1]
        await pilot.press("2")
        assert_blind(app, seen)  # typing
        await pilot.press("7")  # not on 0-3: said, not taken
        assert "7 is not on the scale" in screen_text(app)
        assert_blind(app, seen)
        await pilot.press("f", "n")
        assert isinstance(app.screen, NoteScreen)
        assert_blind(app, seen)
        await pilot.press(*"too short", "enter")
        assert "⚑ flagged" in screen_text(app) and "✎ note" in screen_text(app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, GuidelinesScreen)
        assert "How to rate" in screen_text(app)
        assert_blind(app, seen)
        await pilot.press("escape", "enter")  # confirm the 2
        assert screen.view.code != first
        assert_blind(app, seen)
        await pilot.press("u")  # reopen the last rating
        assert screen.view.editing and screen.view.code == first
        assert "Editing" in screen_text(app) and "was 2" in screen_text(app)
        assert_blind(app, seen)
        await pilot.press("3", "enter")  # change it to 3
        await pilot.press("s")  # skip the next
        assert_blind(app, seen)
        for _ in range(10):  # rate the rest: 6 items, one skipped
            if screen.view is None:
                break
            await pilot.press("1", "enter")
        assert screen.view is None
        assert "Nothing left for you" in screen_text(app)
        assert_blind(app, seen)
        await pilot.press("escape")
        assert isinstance(app.screen, AnnotateScreen)

        screen = await start(pilot, "blind-pairs")
        assert_blind(app, seen)
        assert "1 · left answer" in seen[-1] and "2 · right answer" in seen[-1]
        await pilot.press("1", "enter")
        assert_blind(app, seen)
        await pilot.press("escape")

        screen = await start(pilot, "blind-ac")
        await pilot.press("7", "3", "enter")
        assert "aligned (0–100): 73  coherent (0–100):" in screen_text(app)
        assert_blind(app, seen)
        await pilot.press("9", "0", "enter")
        assert_blind(app, seen)
        await pilot.press("escape")

        app.push_screen(AdjudicationScreen("blind-03"))
        await pilot.pause()
        assert_blind(app, seen)
    assert len(seen) == 14

    camp = store.find_campaign("blind-03")
    rows = store.campaign_rating_rows(int(camp["id"]))
    mine = {r["code"]: r for r in rows if r["annotator"] == "ann1"}
    assert len(mine) == 5 and mine[first]["score"] == 3.0  # 6 items, one skipped; the edit kept
    assert mine[first]["flagged"] and mine[first]["note"] == "too short"
    assert all(r["rater_kind"] == "human" and r["active_ms"] is not None for r in rows)
    history = store.rating_history(int(mine[first]["rating_id"]))
    assert [h["old_score"] for h in history if h.get("old_score") is not None][-1:] == [2.0]
    ac = store.campaign_rating_rows(int(store.find_campaign("blind-ac")["id"]))
    assert {(r["metric"], r["score"]) for r in ac} == {("aligned", 73.0), ("coherent", 90.0)}


async def test_annotate_asks_for_a_name_and_emtui_annotate_opens_the_campaign(store):
    app = create_app(store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6")
        assert isinstance(app.screen, AnnotateScreen)
        await pilot.press("enter")  # the first campaign; no name yet
        assert isinstance(app.screen, AnnotatorNameScreen)
        await pilot.press(*"carol", "enter")
        await pilot.pause()
        assert isinstance(app.screen, RatingScreen) and app.annotator == "carol"
        await pilot.press("0", "enter", "escape")
        await pilot.pause()
        assert "Rating as carol" in screen_text(app)

    app = create_app(store, keymap={}, annotator="dave", campaign="blind-03")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, RatingScreen)
        # overlap 2: carol rated one item; dave gets items in his own order
        await pilot.press("1", "enter")
    names = {r["annotator"] for r in store.campaign_rating_rows(int(store.find_campaign("blind-03")["id"]))}
    assert names == {"carol", "dave"}


async def test_adjudication_resolves_apart_from_the_ratings(store):
    from engine.annotation.session import AnnotationSession

    for who, value in (("ann1", 0), ("ann2", 3)):  # the two disagree on every item
        s = AnnotationSession(store, "blind-03", who)
        while s.next_item() is not None:
            s.rate(value)
    app = create_app(store, keymap={}, annotator="lead")
    async with app.run_test(size=(80, 30)) as pilot:
        await pilot.press("6")
        await pilot.press("a")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, AdjudicationScreen)
        assert len(screen.rows) == 6
        text = screen_text(app)
        assert "6 item(s) to adjudicate" in text and "ann1: 0" in text and "ann2: 3" in text
        code = screen.rows[0]["code"]
        await pilot.press("2", "enter")
        await pilot.pause()
        assert next(r for r in screen.rows if r["code"] == code)["adjudicated"] == 2.0
    camp = store.find_campaign("blind-03")
    scores = sorted(r["score"] for r in store.campaign_rating_rows(int(camp["id"])))
    assert scores == [0.0] * 6 + [3.0] * 6  # raw ratings untouched
    adj = store.campaign_adjudications(int(camp["id"]))
    assert [(a["score"], a["lead"]) for a in adj] == [(2.0, "lead")]


async def test_a_lead_who_rated_the_item_is_told_and_refused(store):
    from engine.annotation.session import AnnotationSession

    for who, value in (("ann1", 0), ("ann2", 3)):
        s = AnnotationSession(store, "blind-03", who)
        while s.next_item() is not None:
            s.rate(value)
    app = create_app(store, keymap={}, annotator="ann2")  # ann2 is one of every item's raters
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("6", "a")
        await pilot.pause()
        assert isinstance(app.screen, AdjudicationScreen)
        assert "You rated this item: another lead resolves it" in screen_text(app)
        await pilot.press("2", "enter")
        await pilot.pause()
        assert any("'ann2' rated it; a disagreement is resolved by someone who is not one of its raters"
                   in str(n.message) for n in app._notifications)
    assert store.campaign_adjudications(int(store.find_campaign("blind-03")["id"])) == []
