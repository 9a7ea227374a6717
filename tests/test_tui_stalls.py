"""What keeps the UI thread from stalling while screens load (bench/tui_stall.py measures it at 1M scores):
each mechanism does its job and changes nothing a person sees.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from demo_db import build

import db
from rich.style import Style
from textual.geometry import Region
from textual.widgets import DataTable

from emtui.app import AREAS, create_app
from emtui.widgets.area_bar import AreaBar
from emtui.widgets.bar_chart import BAR_STYLE, OVER_BAR_STYLE, WHISKER_STYLE, Bar, BarChart


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory) -> Path:
    return build(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture
def demo_store(demo_path, tmp_path):
    path = tmp_path / "demo.db"
    path.write_bytes(demo_path.read_bytes())
    with db.open_store(path) as store:
        yield store


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
