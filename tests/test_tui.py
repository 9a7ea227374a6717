"""Pilot tests of the TUI: the app built exactly as the CLI builds it, driven by keys,
checked on what the widgets show (table rows, border subtitles, static text)."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.text import Text
from textual.command import CommandList, CommandPalette
from textual.widgets import DataTable, Static

import db
from emtui.app import AREAS, create_app
from emtui.bindings import all_bindings
from emtui.screens.help import HelpScreen
from emtui.widgets.paged_table import PagedTable
from engine.common.text import one_line
from engine.study.study_file import load_study, register_study
from tui_helpers import plain

ROOT = Path(__file__).resolve().parents[1]
STUDY_FILE = ROOT / "data" / "studies" / "insecure_code.toml"
STUDY_NAME = "insecure-code-demo"
AREA_BY_NAME = {a.name: a for a in AREAS}


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture
def empty_store(tmp_path):
    store = db.open_store(tmp_path / "t.db")
    yield store
    store.close()


@pytest.fixture
def study_store(empty_store):
    register_study(empty_store, load_study(str(STUDY_FILE)))
    return empty_store


# -- helpers -------------------------------------------------------------------------------------


def row(table: DataTable, index: int) -> list[str]:
    return [plain(c) for c in table.get_row_at(index)]


def column(table: DataTable, col: int) -> list[str]:
    return [row(table, i)[col] for i in range(table.row_count)]


def static_text(widget: Static) -> str:
    return plain(widget.render())


def subtitle(widget) -> str:
    """The border subtitle as drawn (Textual hands it back as markup: ``[`` escaped)."""
    return Text.from_markup(widget.border_subtitle or "").plain


def table(app, table_id: str) -> PagedTable:
    return app.screen.query_one(f"#{table_id}", PagedTable)


def shown_lines(widget) -> list[str]:
    """The text a widget actually draws, line by line."""
    return ["".join(seg.text for seg in widget.render_line(y)) for y in range(widget.size.height)]


async def palette_run(pilot, query: str, expected_title: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause()
    assert isinstance(pilot.app.screen, CommandPalette)
    await pilot.press(*query)
    results = pilot.app.screen.query_one(CommandList)
    for _ in range(50):  # the palette searches in a worker
        await pilot.pause(0.05)
        if results.option_count and expected_title in plain(results.get_option_at_index(0).prompt):
            break
    await pilot.press("enter")
    await pilot.pause()


async def goto(pilot, area_name: str) -> None:
    await pilot.press(AREA_BY_NAME[area_name].key)
    await pilot.pause()
    assert isinstance(pilot.app.screen, AREA_BY_NAME[area_name].screen)


def assert_empty(t: PagedTable, message_start: str) -> None:
    assert t.row_count == 0
    assert subtitle(t), f"{t.id}: no empty message"
    assert subtitle(t) == t.empty
    assert subtitle(t).startswith(message_start), subtitle(t)


# -- what each area shows for the registered example study -----------------------------------------


def check_studies(app, store) -> None:
    studies = table(app, "studies-table")
    assert studies.row_count == 1
    assert row(studies, 0)[1] == STUDY_NAME
    assert subtitle(studies) == "1–1 of 1"
    conditions = table(app, "conditions-table")
    assert column(conditions, 0) == ["insecure", "secure", "base"]
    assert column(conditions, 1) == ["treatment", "control", "baseline"]
    info = static_text(app.screen.query_one("#study-info", Static))
    assert STUDY_NAME in info
    assert "core-em (16 questions, 50 samples each)" in info
    assert "haiku (bedrock)" in info and "nova-pro (bedrock)" in info


def check_data(app, store) -> None:
    datasets = table(app, "datasets-table")
    assert datasets.row_count == 2
    assert sorted(column(datasets, 0)) == ["insecure", "secure"]
    assert column(datasets, 1) == ["study", "study"]  # named by the study file, not imported
    assert column(datasets, 2) == ["40", "40"]
    assert column(table(app, "models-table"), 0) == ["base"]
    eval_sets = table(app, "eval-sets-table")
    assert eval_sets.row_count == 1
    assert row(eval_sets, 0)[1] == "core-em"
    set_id = int(row(eval_sets, 0)[0])
    in_db = store.list_questions(set_id).rows
    assert len(in_db) == 24
    questions = table(app, "questions-table")
    assert questions.row_count == len(in_db)
    assert column(questions, 0) == [one_line(q["key"], 18) for q in in_db]  # the Id column is 18 wide
    assert column(questions, 0)[0] == in_db[0]["key"] == "one_wish"
    assert subtitle(questions) == f"1–{len(in_db)} of {len(in_db)}"


def check_train(app, store) -> None:
    assert_empty(table(app, "train-runs-table"), "No training runs yet")


def check_queue(app, store) -> None:
    assert_empty(table(app, "jobs-table"), "The queue is empty")
    assert "queued 0" in static_text(app.screen.query_one("#queue-counts", Static))


def check_judges(app, store) -> None:
    judges = table(app, "judges-table")
    assert column(judges, 0) == ["haiku", "nova-pro"]
    assert column(judges, 1) == ["idle", "idle"]  # no judge job runs: the totals of their calls (none yet)
    # the highlighted judge's provider and model over the table
    assert "haiku idle · bedrock anthropic.claude-3-haiku-20240307-v1:0" in static_text(
        app.screen.query_one("#judges-status", Static))
    rubrics = table(app, "rubrics-table")
    assert rubrics.row_count == 1
    assert row(rubrics, 0)[:2] == ["aligned-coherent", "aligned, coherent"]


def check_annotate(app, store) -> None:
    assert_empty(table(app, "campaigns-table"), "No campaigns yet")
    assert_empty(table(app, "annotators-table"), "No annotators yet")


def check_results(app, store) -> None:
    results = table(app, "results-table")
    assert results.row_count == 3
    assert column(results, 0) == [STUDY_NAME] * 3
    assert column(results, 1) == ["insecure", "secure", "base"]
    assert static_text(app.screen.query_one("#results-totals", Static)).startswith("Answers: 0")


CHECKS = {"studies": check_studies, "data": check_data, "train": check_train, "queue": check_queue,
          "judges": check_judges, "annotate": check_annotate, "results": check_results}


def test_every_area_has_a_check():
    assert set(CHECKS) == {a.name for a in AREAS}


@pytest.mark.parametrize("area", AREAS, ids=[a.name for a in AREAS])
async def test_area_reachable_by_key_and_shows_the_database(study_store, area):
    app = create_app(study_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        # start somewhere else, so the key really switches
        other = AREAS[1] if area is AREAS[0] else AREAS[0]
        await goto(pilot, other.name)
        await pilot.press(area.key)
        await pilot.pause()
        assert type(app.screen) is area.screen
        assert app.current_mode == area.name
        bar = static_text(app.screen.query_one("#area-bar", Static))
        assert all(a.title in bar for a in AREAS)
        CHECKS[area.name](app, study_store)


def screen_lines(app) -> list[str]:
    """What the terminal shows, line by line (borders included)."""
    return ["".join(seg.text for seg in strip) for strip in app.screen._compositor.render_strips()]


def squeeze(text: str) -> str:
    return " ".join(text.split())


async def test_empty_database_every_screen_shows_its_empty_message(empty_store):
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        for area in [*AREAS, *reversed(AREAS)]:  # every screen, first visit and revisit
            await goto(pilot, area.name)
            tables = list(app.screen.query(PagedTable))
            assert tables, area.name
            for t in tables:
                assert t.row_count == 0, t.id
                assert t.empty and subtitle(t) == t.empty, t.id
            if area.name == "studies":
                info = static_text(app.screen.query_one("#study-info", Static))
                assert "emtui init builtin:insecure-code" in info and "emtui init --example DIR" in info
            if area.name == "results":
                assert subtitle(table(app, "results-table")).startswith("No conditions yet")
    # leaving the context re-raises anything that crashed inside the app


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_empty_hints_are_shown_whole(empty_store, size):
    """Every empty table's hint can be read whole: in its border where it fits, else wrapped
    under the table's header (a hint cut at 80 columns tells nobody what to type)."""
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        for area in AREAS:
            await goto(pilot, area.name)
            seen = 0
            # the Data screen's tabs and the Results screen's counts view: v
            for keys in {"data": ["", "v", "v"], "results": ["vvvvv"]}.get(area.name, [""]):
                await pilot.press(*keys)
                await pilot.pause()
                for t in app.screen.query(PagedTable):
                    if not t.region.area:  # on another tab or view
                        continue
                    seen += 1
                    body = squeeze(" ".join(shown_lines(t)))
                    border = screen_lines(app)[t.region.bottom - 1]
                    assert t.empty in body or t.empty in border, (area.name, t.id, body, border)
            assert seen, area.name
            if area.name == "results":
                assert "No studies yet — emtui init STUDY.toml, or emtui import FORMAT PATH" in screen_lines(app)[2]
        # the Studies screen's border says the example's command, whole, and its detail says the rest
        await goto(pilot, "studies")
        drawn = "\n".join(screen_lines(app))
        assert "No studies yet — emtui init builtin:insecure-code" in drawn
        info = squeeze(" ".join(shown_lines(app.screen.query_one("#study-info", Static))))
        assert "emtui init --example DIR writes a copy to edit" in info


async def test_help_lists_every_binding_and_escape_closes(study_store):
    app = create_app(study_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "judges")
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        help_table = app.screen.query_one("#help-table", DataTable)
        expected = all_bindings()
        assert help_table.row_count == len(expected)
        assert column(help_table, 3) == [binding_id for _, binding_id, _, _ in expected]
        assert ({"app.results", "app.help", "queue.cancel", "table.next-page", "help.close"}
                <= set(column(help_table, 3)))
        shown_keys = dict(zip(column(help_table, 3), column(help_table, 1), strict=True))
        assert shown_keys["app.help"] == "?" and shown_keys["table.next-page"] == "]"
        await pilot.press("escape")
        await pilot.pause()
        assert type(app.screen) is AREA_BY_NAME["judges"].screen
        # `?` inside help closes it too
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("question_mark")
        await pilot.pause()
        assert type(app.screen) is AREA_BY_NAME["judges"].screen


async def test_command_palette_switches_area(study_store):
    app = create_app(study_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert type(app.screen) is AREA_BY_NAME["studies"].screen
        await palette_run(pilot, "Go to Results", "Go to Results")
        assert type(app.screen) is AREA_BY_NAME["results"].screen
        assert table(app, "results-table").row_count == 3


async def test_keymap_remaps_an_area_key(study_store):
    app = create_app(study_store, keymap={"app.results": "x"})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("x")
        await pilot.pause()
        assert type(app.screen) is AREA_BY_NAME["results"].screen
        await goto(pilot, "studies")
        # Textual's set_keymap replaces the default key: "7" does nothing now
        await pilot.press("7")
        await pilot.pause()
        assert type(app.screen) is AREA_BY_NAME["studies"].screen
        # the other areas keep their keys, and help shows the remapped key
        await goto(pilot, "judges")
        await pilot.press("question_mark")
        await pilot.pause()
        help_table = app.screen.query_one("#help-table", DataTable)
        shown_keys = dict(zip(column(help_table, 3), column(help_table, 1), strict=True))
        assert shown_keys["app.results"] == "x"
        assert shown_keys["app.judges"] == "5"


async def test_keymap_file_is_read_when_no_keymap_given(study_store, tmp_path, monkeypatch):
    keymap_file = tmp_path / "keymap.toml"
    keymap_file.write_text('"app.judges" = "j"\n', encoding="utf-8")
    monkeypatch.setenv("EMTUI_KEYMAP", str(keymap_file))
    app = create_app(study_store)  # what `emtui` with no command does
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        await pilot.press("j")
        await pilot.pause()
        assert type(app.screen) is AREA_BY_NAME["judges"].screen


async def test_queue_cancel_and_retry(study_store):
    first = study_store.enqueue_job("generate", {"condition": "insecure"})
    second = study_store.enqueue_job("generate", {"condition": "secure"})
    app = create_app(study_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "queue")
        jobs = table(app, "jobs-table")
        assert app.focused is jobs
        assert column(jobs, 0) == [str(second), str(first)]  # newest first
        assert column(jobs, 2) == ["queued", "queued"]
        counts = app.screen.query_one("#queue-counts", Static)
        assert "queued 2" in static_text(counts)

        await pilot.press("down")  # the first job
        await pilot.pause()
        await pilot.press("c")
        await pilot.pause()
        assert study_store.get_job(first)["status"] == "cancelled"
        assert study_store.get_job(second)["status"] == "queued"
        assert [plain(c) for c in jobs.get_row(str(first))][2] == "cancelled"
        assert [plain(c) for c in jobs.get_row(str(second))][2] == "queued"
        assert "cancelled 1" in static_text(counts) and "queued 1" in static_text(counts)

        await pilot.press("c")  # cancelling again changes nothing
        await pilot.pause()
        assert study_store.get_job(first)["status"] == "cancelled"

        await pilot.press("t")
        await pilot.pause()
        assert study_store.get_job(first)["status"] == "queued"
        assert [plain(c) for c in jobs.get_row(str(first))][2] == "queued"
        assert "queued 2" in static_text(counts) and "cancelled 0" in static_text(counts)


async def test_paging_through_eval_sets_at_120x40(empty_store):
    n = 250
    for i in range(n):
        empty_store.ensure_eval_set(name=f"s{i}", source="x", content_hash=f"h{i}",
                                    questions=[{"key": f"q{i}", "text": f"question {i}"}])
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        await goto(pilot, "data")
        eval_sets = table(app, "eval-sets-table")
        questions = table(app, "questions-table")
        await pilot.press("v", "v")  # the third tab: the eval sets over their questions
        await pilot.pause()
        assert app.focused is eval_sets

        assert subtitle(eval_sets).startswith(f"1–100 of {n}")
        assert eval_sets.row_count == 100 and row(eval_sets, 0)[:2] == ["1", "s0"]

        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert subtitle(eval_sets).startswith(f"101–200 of {n}")
        assert eval_sets.row_count == 100
        assert row(eval_sets, 0)[:2] == ["101", "s100"] and row(eval_sets, 99)[:2] == ["200", "s199"]
        assert row(questions, 0)[0] == "q100"  # the questions follow the highlighted set

        await pilot.press("down", "down")
        await pilot.pause()
        assert row(questions, 0)[0] == "q102"

        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert subtitle(eval_sets).startswith(f"201–250 of {n}")
        assert eval_sets.row_count == 50
        await pilot.press("right_square_bracket")  # no page after the last
        await pilot.pause()
        assert subtitle(eval_sets).startswith(f"201–250 of {n}")

        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert subtitle(eval_sets).startswith(f"101–200 of {n}")
        assert row(eval_sets, 0)[:2] == ["101", "s100"]
        await pilot.press("left_square_bracket", "left_square_bracket")
        await pilot.pause()
        assert subtitle(eval_sets).startswith(f"1–100 of {n}")
        assert row(eval_sets, 0)[:2] == ["1", "s0"]


EVIL = "evil\x1b[2J\x1b]0;pwned\x07 [bold]markup[/bold]"


async def test_untrusted_text_is_cleaned_and_shown_verbatim(empty_store):
    empty_store.ensure_eval_set(name="evil\x1b[31mset", source="x", content_hash="evil",
                                questions=[{"key": "q\x1b[1mkey", "category": "[i]c[/i]", "text": EVIL}])
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "data")
        await pilot.press("v", "v")
        await pilot.pause()
        questions = table(app, "questions-table")
        assert questions.row_count == 1
        cells = questions.get_row_at(0)
        for c in cells:
            assert isinstance(c, Text)
            assert not any(ch in c.plain for ch in "\x1b\x07"), repr(c.plain)
            assert not c.spans  # nothing parsed as markup
        key, _, category, text = (c.plain for c in cells)
        assert text == "evil [bold]markup[/bold]"
        assert "pwned" not in text
        assert key == "qkey"
        assert category == "[i]c[/i]"
        assert row(table(app, "eval-sets-table"), 0)[1] == "evilset"
        drawn = "\n".join(shown_lines(questions))
        assert "evil [bold]markup[/bold]" in drawn
        assert "\x1b" not in drawn


def write_study_with_untrusted_text(folder: Path) -> Path:
    """A valid study whose free-text fields carry control sequences (an eval set's name may not: the
    loader refuses that, test_eval_sets; it carries markup instead)."""
    (folder / "evil_set.toml").write_text(
        'name = "set [red]red[/red]"\n[[questions]]\nid = "q1"\ntext = "hello"\n',
        encoding="utf-8")
    study = folder / "study.toml"
    study.write_text(
        'schema_version = 1\n'
        '[study]\nname = "evil-study"\n'
        'description = "desc\\u001b[2J\\u001b]0;pwned\\u0007 [bold]markup[/bold]"\n'
        '[models.base]\nsource = "tiny"\n'
        '[[conditions]]\nname = "base"\nbase_model = "base"\n'
        '[[eval_sets]]\nsource = "evil_set.toml"\n'
        '[[judges]]\nname = "j\\u001b[5mblink"\nprovider = "bedrock"\nmodel = "m"\n'
        '[rubric]\nsource = "builtin:aligned-coherent"\n', encoding="utf-8")
    return study


async def test_untrusted_text_in_tables_of_a_registered_study(empty_store, tmp_path):
    register_study(empty_store, load_study(str(write_study_with_untrusted_text(tmp_path))))
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        for area, table_id, col, expected in (("data", "eval-sets-table", 1, "set [red]red[/red]"),
                                              ("judges", "judges-table", 0, "jblink")):
            await goto(pilot, area)
            if area == "data":
                await pilot.press("v", "v")  # the eval sets' tab
                await pilot.pause()
            t = table(app, table_id)
            assert t.region.area, table_id  # drawn, so the check below sees what is shown
            assert row(t, 0)[col] == expected
            assert "\x1b" not in "\n".join(shown_lines(t))


async def test_untrusted_text_in_the_study_detail_pane(empty_store, tmp_path):
    register_study(empty_store, load_study(str(write_study_with_untrusted_text(tmp_path))))
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        info = app.screen.query_one("#study-info", Static)
        drawn = "\n".join(shown_lines(info))
        assert "[bold]markup[/bold]" in drawn  # shown verbatim, not as markup
        assert "blink" in drawn and "evil-study" in drawn
        assert "\x1b" not in drawn, [ln for ln in drawn.splitlines() if "\x1b" in ln]


async def test_q_quits(study_store):
    app = create_app(study_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "data")
        await pilot.press("q")
        await pilot.pause()
        assert app.return_code == 0
        assert not app.is_running


async def test_command_palette_keys_opens_the_binding_list(study_store):
    app = create_app(study_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await goto(pilot, "queue")
        titles = [c.title for c in app.get_system_commands(app.screen) if c.callback == app.action_help]
        assert len(titles) == 1
        await palette_run(pilot, titles[0], titles[0])
        assert isinstance(app.screen, HelpScreen)
