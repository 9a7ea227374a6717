"""What keeps the UI thread from stalling while screens load (bench/tui_stall.py measures it at 1M scores):
each mechanism does its job and changes nothing a person sees.
"""

from __future__ import annotations

import re

from rich.style import Style
from rich.text import Text
from textual.app import App
from textual.geometry import Region
from textual.widgets import DataTable

from emtui.app import AREAS, create_app
from emtui.loading import pending_loads
from emtui.screens.answers import AnswersScreen
from emtui.screens.base import static_page
from emtui.widgets.area_bar import AreaBar
from emtui.widgets.bar_chart import BAR_STYLE, OVER_BAR_STYLE, WHISKER_STYLE, Bar, BarChart
from emtui.widgets.fit import CHUNK_ROWS, Fitted, fit_table, put_fitted
from emtui.widgets.paged_table import Col, PagedTable
from engine.common.text import one_line

# -- the stylesheet is not parsed again when an area is first shown ----------------------------------------


def help_hint_style(app) -> Style:
    """How the area bar's ``? help`` is drawn on the screen shown (the same on every area's screen)."""
    bar = app.screen.query_one(AreaBar)
    strip = bar.render_lines(Region(0, 0, bar.size.width, 1))[0]
    style = next(seg.style for seg in strip if "? help" in seg.text)
    assert style is not None and style.color != style.bgcolor  # readable: the theme's colours, resolved
    return style


async def test_showing_an_area_does_not_parse_the_stylesheet_again(demo_store):
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        first = help_hint_style(app)
        reparsed: list[str] = []
        reparse = app.stylesheet.reparse

        def counted() -> None:
            reparsed.append(type(app.screen).__name__)
            reparse()

        app.stylesheet.reparse = counted  # Textual's, counted: 20-40 ms each at 1M scores
        for _ in range(2):  # first visits, then second ones
            for area in AREAS[1:] + AREAS[:1]:
                await pilot.press(area.key)
                await pilot.pause()
                assert type(app.screen) is area.screen
                assert help_hint_style(app) == first
        assert reparsed == []


async def test_an_area_shown_after_a_theme_change_has_the_new_theme(demo_store):
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("2")
        await pilot.pause()
        await pilot.press("1")
        await pilot.pause()
        dark = help_hint_style(app)
        app.theme = "textual-light"
        await pilot.pause()
        light = help_hint_style(app)
        assert light != dark
        for key in "27":  # a screen made before the change, one made after it
            await pilot.press(key)
            await pilot.pause()
            assert help_hint_style(app) == light


async def test_an_area_shown_again_is_not_restyled_and_looks_as_it_did(demo_store):
    """Textual restyles a mode's whole screen each time it is shown, and a restyled table draws every cell
    again (30-60 ms at 120x40): not needed, and what is drawn is the same."""
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        first = {}
        for area in AREAS[1:] + AREAS[:1]:
            await pilot.press(area.key)
            await pilot.pause()
            first[area.name] = drawn(app)
        restyled: list[str] = []
        update_nodes = app.stylesheet.update_nodes

        def counted(nodes, animate=False):
            nodes = list(nodes)
            restyled.extend(type(n).__name__ for n in nodes if isinstance(n, DataTable))
            return update_nodes(nodes, animate=animate)

        app.stylesheet.update_nodes = counted
        for area in AREAS[1:] + AREAS[:1]:
            await pilot.press(area.key)
            await pilot.pause()
            assert drawn(app) == first[area.name], area.name
        assert restyled == []


def drawn(app) -> str:
    """The screen as an SVG, without the id that differs between two screenshots."""
    return re.sub(r"terminal-\d+", "terminal", app.export_screenshot())


# -- the bar chart draws a run of cells of one style as one span -------------------------------------------


def test_a_bar_is_a_few_spans_not_one_per_cell():
    chart = BarChart()
    cells = chart.bar_cells(Bar("c", 0.6, 0.4, 0.8), 100, 0.0, 1.0)
    # the bar (mean 0.6) up to the whisker (0.4 to 0.8), the whisker over the bar to 0.6, then alone; the rest
    assert cells.plain == "█" * 40 + "├" + "─" * 39 + "┤" + " " * 19
    assert [(s.start, s.end, str(s.style)) for s in cells.spans] == [
        (0, 40, BAR_STYLE), (40, 60, OVER_BAR_STYLE), (60, 81, WHISKER_STYLE), (81, 100, BAR_STYLE)]


# -- a long table takes its rows a chunk a frame -------------------------------------------------------------


class OneTable(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.moves: list[tuple[int, int]] = []  # (cursor row, rows in the table) as each move is answered

    def compose(self):
        yield DataTable(id="t", cursor_type="row")

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.moves.append((event.cursor_row, event.data_table.row_count))


def numbered(n: int, tag: str) -> Fitted:
    return fit_table([(Text("row"), "row")], [(f"{tag}{i}", [Text(f"{tag} {i}")]) for i in range(n)],
                     labels=1, width=20)


async def test_a_long_table_fills_a_chunk_a_frame_and_answers_keys_meanwhile():
    app = OneTable()
    async with app.run_test() as pilot:
        table = app.query_one(DataTable)
        table.focus()
        total = 5 * CHUNK_ROWS + 7
        put_fitted(table, numbered(total, "a"))
        assert table.row_count == CHUNK_ROWS  # the first chunk at once: the rest later
        assert pending_loads(app) == ["DataTable#t: fill"]
        await pilot.press("down", "down", "down")  # (a pause after keys waits for pending loads)
        assert table.row_count == total and pending_loads(app) == []
        assert table.cursor_row == 3
        assert [row for row, _ in app.moves[-3:]] == [1, 2, 3]
        assert app.moves[-3][1] < total  # the first key was answered while the table still filled
        assert [str(table.get_row_at(i)[0]) for i in (0, total - 1)] == ["a 0", f"a {total - 1}"]


async def test_a_table_of_up_to_two_chunks_fills_at_once():
    app = OneTable()
    async with app.run_test():
        table = app.query_one(DataTable)
        put_fitted(table, numbered(2 * CHUNK_ROWS, "a"))  # a second chunk would draw it all again
        assert table.row_count == 2 * CHUNK_ROWS and pending_loads(app) == []


async def test_a_table_filled_again_or_cleared_midway_drops_the_rest_of_the_old_rows():
    app = OneTable()
    async with app.run_test() as pilot:
        table = app.query_one(DataTable)
        put_fitted(table, numbered(3 * CHUNK_ROWS, "a"))
        table.clear(columns=True)
        put_fitted(table, numbered(2 * CHUNK_ROWS + 1, "b"))
        await pilot.pause()
        assert table.row_count == 2 * CHUNK_ROWS + 1
        assert {str(row[0])[0] for row in (table.get_row_at(i) for i in range(table.row_count))} == {"b"}
        table.clear(columns=True)
        put_fitted(table, numbered(3 * CHUNK_ROWS, "c"))
        table.clear(columns=True)  # and nothing after
        await pilot.pause()
        assert table.row_count == 0 and pending_loads(app) == []


# -- a page read again as it was is not drawn again ----------------------------------------------------------


class OnePagedTable(App[None]):
    def __init__(self, rows: list[dict]) -> None:
        super().__init__()
        self.listing = rows
        self.pages_shown = 0

    def on_paged_table_page_shown(self) -> None:
        self.pages_shown += 1

    def compose(self):
        yield PagedTable([Col("name", "Name", 10)], lambda limit, offset: static_page(list(self.listing)),
                         id="t", empty="nothing")

    def say_fault(self, exc: BaseException) -> bool:
        return False


async def test_a_page_read_again_unchanged_is_left_as_drawn():
    app = OnePagedTable([{"id": 1, "name": "a"}, {"id": 2, "name": "b"}])
    async with app.run_test() as pilot:
        table = app.query_one(PagedTable)
        table.reload()
        await pilot.pause()
        table.focus()
        await pilot.press("down")
        drawn, shown = table.get_row_at(0)[0], app.pages_shown
        table.reload()  # the same rows: the cells drawn stay, the cursor too, and the page still says it is shown
        await pilot.pause()
        assert table.get_row_at(0)[0] is drawn and table.cursor_row == 1 and app.pages_shown == shown + 1
        app.listing[0] = {"id": 1, "name": "renamed"}
        table.reload()
        await pilot.pause()
        assert str(table.get_row_at(0)[0]) == "renamed" and table.cursor_row == 1
        assert table.border_subtitle == "1–2 of 2"


async def test_results_shown_again_keep_their_tables_and_redraw_what_changed(demo_store):
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("7")
        await pilot.pause()
        grid = app.screen.query_one("#results-grid", DataTable)
        drawn = grid.get_row_at(0)[1]
        title = str(grid.border_title)
        for keys in (["1", "7"], ["v", "v", "v", "v", "v", "v"]):  # another area and back; every view and back
            await pilot.press(*keys)
            await pilot.pause()
            assert grid.get_row_at(0)[1] is drawn  # left as drawn: the same summary, judge and size
        await pilot.press("j")  # the next judge: drawn again
        await pilot.pause()
        assert str(grid.border_title) != title and grid.get_row_at(0)[1] is not drawn
        await pilot.press("j", "j", "j", "j", "j")
        await pilot.pause()
        assert str(grid.border_title) == title  # round to the panel
        panel = grid.get_row_at(0)[1]
        await pilot.press("r")  # computed again: a new summary, drawn
        await pilot.pause()
        assert grid.get_row_at(0)[1] is not panel and str(grid.get_row_at(0)[1]) == str(panel)


# -- answer previews are cut in the loader thread ----------------------------------------------------------

async def test_an_answer_preview_is_cut_in_the_thread_as_the_table_shows_it(demo_store):
    """The answers' page is read in a thread, each response cut there to the Answer column: the UI thread
    flattens no whole response, and the cell is the same as one cut from the whole."""
    app = create_app(demo_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("7")
        await pilot.pause()
        await pilot.press("enter")
        await pilot.pause()
        while pending_loads(app):
            await pilot.pause()
        screen = app.screen
        assert isinstance(screen, AnswersScreen)
        table = screen.query_one("#answers-table", PagedTable)
        page = table.current_page
        assert page is not None and page.rows
        width = screen.preview_width
        for i, r in enumerate(page.rows):
            whole = None if r["response"] is None else one_line(r["response"], width)
            assert r["preview"] == whole
            assert table.get_row_at(i)[1].plain == (whole if whole is not None else "—")
        screen.preview_width = 12  # a narrow column: fetch (what the thread runs) cuts the responses to it
        short = screen.fetch(limit=5, offset=0).rows
        assert any(r["preview"].endswith("…") for r in short)
        assert all(r["preview"] == one_line(r["response"], 12) for r in short if r["response"] is not None)
