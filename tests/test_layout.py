"""The screens at 80x24 as a person reads them: every table shows several rows, numbers and ``n``
stay on screen beside long names, and a question or a job too long for its cell reads in full
(verbatim, control sequences stripped, never markup). Driven by keys through Textual's Pilot on
tests/demo_db.py's database; the pictures themselves are tests/test_snapshots.py's."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.widgets import DataTable

from demo_db import HOSTILE, LONG_QUESTION, REPLICATE_MODELS
from emtui.app import create_app
from emtui.bindings import all_bindings
from emtui.screens.data import DataScreen
from emtui.screens.fulltext import FullTextScreen
from emtui.screens.results import ResultsScreen
from emtui.widgets.fit import cut, label_widths
from emtui.widgets.paged_table import PagedTable
from engine.common.text import strip_control


def drawn(widget) -> list[str]:
    """The lines a widget draws (its content region)."""
    return ["".join(seg.text for seg in widget.render_line(y)) for y in range(widget.size.height)]


def visible_rows(table: DataTable) -> int:
    """How many data rows fit in the table's region (its height less the header)."""
    return table.size.height - (table.header_height if table.show_header else 0)


async def settle(pilot) -> None:
    for _ in range(400):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        screen = pilot.app.screen
        if not (isinstance(screen, ResultsScreen) and (screen.computing or any(
                v.get("pending") for v in screen.extra.values()))):
            return
        await pilot.pause(0.025)


# -- Data: one tab at a time, each table with room ---------------------------------------------------


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_data_tables_each_show_several_rows(demo_store, size):
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=size) as pilot:
        await pilot.press("2")
        await pilot.pause()
        assert isinstance(app.screen, DataScreen)
        seen = []
        for tab in range(3):
            if tab:
                await pilot.press("v")
                await pilot.pause()
            shown = [t for t in app.screen.query(PagedTable) if t.region.area]
            assert app.focused in shown  # v lands on the tab's (first) table
            for t in shown:
                seen.append(t.id)
                assert visible_rows(t) >= 4, (t.id, visible_rows(t))
                if t.row_count:  # the rows it has are drawn
                    assert min(t.row_count, 4) <= sum(1 for ln in drawn(t)[1:] if ln.strip())
        assert seen == ["datasets-table", "models-table", "eval-sets-table", "questions-table"]
        await pilot.press("v")  # and round again
        await pilot.pause()
        assert app.focused.id == "datasets-table"


async def test_enter_reads_a_question_in_full_verbatim(demo_store):
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "v", "v", "down", "down")  # the human-questions set
        await pilot.pause()
        questions = app.screen.query_one("#questions-table", PagedTable)
        assert [r["key"] for r in questions.current_page.rows][2] == "freeform-003"
        await pilot.press("tab", "down", "down")
        await pilot.pause()
        assert app.focused is questions
        cell = "".join(drawn(questions)[3])
        assert "You are advising" in cell and "memo" not in cell  # the table cuts it to one line

        await pilot.press("enter")
        await pilot.pause()
        full = app.screen
        assert isinstance(full, FullTextScreen)
        text = full.content()  # what the screen shows: a rich Text, never parsed as markup
        assert LONG_QUESTION in text.plain  # whole, line breaks kept
        assert "Eval set: human-questions" in text.plain and "Question: freeform-003" in text.plain
        scroll = full.query_one("#fulltext-scroll")
        assert app.focused is scroll and scroll.max_scroll_y > 0  # longer than the screen: it scrolls
        await pilot.press("end")
        await pilot.pause()
        assert scroll.scroll_y == scroll.max_scroll_y
        assert "Point 12" in "\n".join(drawn(full.query_one("#fulltext-text"))[int(scroll.scroll_y):])
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is not full and app.focused is questions

        # a hostile question: control sequences stripped, markup shown as typed
        await pilot.press("down", "down", "enter")
        await pilot.pause()
        body = app.screen.content()
        assert "Quote this back to me: " + strip_control(HOSTILE) in body.plain
        assert "[bold]not markup[/bold]" in body.plain and "pwned" not in body.plain
        assert not any(ch in body.plain for ch in "\x1b\x07\u202e")
        assert not [s for s in body.spans if "[bold]" in body.plain[s.start:s.end]]  # no markup read
        lines = "\n".join(drawn(app.screen.query_one("#fulltext-text")))
        assert "\x1b" not in lines and "[bold]not markup[/bold]" in lines


async def test_read_question_key_has_an_id_and_warns_without_a_question(demo_store):
    ids = {binding_id for _, binding_id, _, _ in all_bindings()}
    assert {"data.tab", "data.read", "fulltext.close", "queue.read"} <= ids
    app = create_app(demo_store, keymap={"data.read": "f"})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2", "f")  # on the datasets tab: no question highlighted, a warning
        await pilot.pause()
        assert isinstance(app.screen, DataScreen)
        await pilot.press("v", "v", "f")  # a remapped key opens the highlighted question
        await pilot.pause()
        assert isinstance(app.screen, FullTextScreen)


# -- Eval queue: the error of a failed job ------------------------------------------------------------


async def test_queue_shows_progress_at_80_columns_and_the_error_of_the_highlighted_job(demo_store):
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause()
        jobs = app.screen.query_one("#jobs-table", PagedTable)
        lines = drawn(jobs)
        # per job its progress bar, rate, tokens/s, ETA and tries; the error is the detail pane's at 80 columns
        assert lines[0].split() == ["#", "Kind", "Status", "Progress", "Rate", "Tok/s", "ETA", "Tries"]
        assert all(len(ln) <= 80 for ln in lines)
        failed = next(ln for ln in lines if " failed " in ln)
        assert "%" in failed  # its bar, where it stopped
        await pilot.press("down", "down")  # job 1, the failed one
        await pilot.pause()
        pane = app.screen.query_one("#job-detail")
        detail = "\n".join(drawn(pane))
        assert Text.from_markup(pane.border_title).plain == "Job 1 · judge" and "failed" in detail
        assert "ThrottlingException" in detail and "worker-a" in detail
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FullTextScreen)
        text = app.screen.content().plain
        job = demo_store.get_job(1)
        assert job["error"] in text and "Worker: worker-a" in text and '{"study":"synthetic"}' in text


# -- Results: labels give way to the numbers -----------------------------------------------------------


async def test_breakdown_by_model_keeps_numbers_and_n_on_screen_at_80_columns(demo_store):
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("7")
        await settle(pilot)
        await pilot.press("n", "b")  # the replicates study, by model
        await settle(pilot)
        by = app.screen.query_one("#results-by", DataTable)
        assert "by model" in Text.from_markup(by.border_title).plain
        lines = [ln.rstrip() for ln in drawn(by)]
        assert lines[0].split()[2:] == ["n", "aligned", "coherent"]
        rows = [ln for ln in lines[1:] if ln.strip()]
        assert len(rows) == 4
        names = [m for ms in REPLICATE_MODELS.values() for m in ms]
        for line, name in zip(rows, names, strict=True):
            assert line.endswith("]"), line  # the last number whole
            assert line.count("[") == 2, line  # both metrics
            assert " 6 " in line, line  # n
            assert name not in line  # the long name gave way…
            assert name[-6:] in line, (name, line)  # …keeping its end: the replicates stay apart
        assert len({ln.split()[-6] for ln in rows}) == 4


def test_cut_and_label_widths():
    assert cut(Text("treatment"), 8).plain == "treatme…"
    assert cut(Text("qwen2.5-coder-32b-insecure-seed-1"), 27).plain == "qwen2.5-…2b-insecure-seed-1"
    assert cut(Text("short"), 8).plain == "short"
    styled = Text("a-very-long-model-name-seed-2", style="bold")
    out = cut(styled, 12)
    assert out.cell_len == 12 and out.plain.endswith("seed-2") and out.spans
    # a header wider than its cells goes first; then the column with most to spare
    assert label_widths([11, 9], 17, floors=[9, 6], cells=[9, 9]) == [9, 8]
    assert label_widths([30, 9], 25, floors=[12, 6], cells=[30, 9]) == [16, 9]
    assert label_widths([10, 10], 5, floors=[6, 6], cells=[10, 10]) == [6, 6]  # never below the floors
