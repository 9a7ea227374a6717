"""Fit a table into the terminal's width: the label columns (names of conditions, models,
questions…) give way, cut with an ellipsis, so that the numbers beside them stay on screen.

Textual's DataTable sizes each column to its widest cell and scrolls sideways when they do not
fit; at 80 columns that pushes the numbers (and the ``n`` of each row) off screen. Here the
table's rows are built first, then the label columns are narrowed — the one with the most to
spare first, none below what it must keep — until every column fits the width given.

A long table (a breakdown by question: 1,000 rows) takes its rows a chunk a frame
(:func:`put_fitted`), and its rows can be built and fitted in a thread (:func:`fit_table`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.widgets import DataTable

from emtui.loading import hold, release

BORDER = 2  # a table's border, left and right
SCROLLBAR = 2  # a vertical scrollbar's width
CHUNK_ROWS = 50  # rows a table takes per frame (put_fitted)
_FILL = "_emtui_fill"  # the fill a table is taking (a newer one drops an older one's rest)


MIDDLE_CUT = 16  # names this long are cut in the middle; shorter ones (words) at the end


def cut(text: Text, width: int, *, middle: bool = True) -> Text:
    """``text`` at most ``width`` cells wide (its styles kept). A long name is cut after its first
    third, ``qwen2.5-…insecure-seed-1``, so that names which differ at the end (replicates, seeds)
    stay apart; a short one (or any, with ``middle=False``) at the end: ``treatme…``."""
    if text.cell_len <= width:
        return text
    if width < 8 or not middle or text.cell_len < MIDDLE_CUT:
        out = text.copy()
        out.truncate(max(1, width), overflow="ellipsis")
        return out
    head = (width - 1) // 3  # names tend to share their start and differ at the end: keep more of it
    tail = width - 1 - head
    while True:
        out = text[:head]
        out.append("…")
        out.append_text(text[len(text.plain) - tail:] if tail else Text(""))
        if out.cell_len <= width or head + tail == 0:  # wide characters: give back a cell at a time
            return out
        if head >= tail:
            head -= 1
        else:
            tail -= 1


def label_widths(natural: Sequence[int], room: int, floors: Sequence[int], cells: Sequence[int] = ()) -> list[int]:
    """Widths for label columns whose natural widths are ``natural``, summing to ``room`` if they
    can: first a header wider than its column's cells is cut to them (``cells``: the widest cell
    of each column), then the column with the most to spare above its floor gives a cell, and so
    on, none below its floor."""
    widths = list(natural)
    over = sum(widths) - room
    for i, c in enumerate(cells):
        cut_header = min(max(0, over), max(0, widths[i] - max(c, floors[i])))
        widths[i] -= cut_header
        over -= cut_header
    while over > 0:
        shrinkable = [k for k in range(len(widths)) if widths[k] > floors[k]]
        if not shrinkable:
            break
        i = max(shrinkable, key=lambda k: widths[k] - floors[k])
        widths[i] -= 1
        over -= 1
    return widths


@dataclass(frozen=True)
class Fitted:
    """A table's columns ((label, key, width) each) and rows ((key, cells) each), cut to fit."""

    columns: list[tuple[Text, str, int]]
    rows: list[tuple[str, list[Text]]]


def fit_table(header: Sequence[tuple[Text, str]], rows: Sequence[tuple[str, Sequence[Text]]], *, labels: int,
              width: int, keep: Sequence[int] = ()) -> Fitted:
    """``header`` ((label, key) per column) and ``rows`` ((key, cells)), the first ``labels`` columns cut so
    that all of them fit ``width`` cells, each keeping at least ``keep`` cells (6 where not given) of its
    widest cell. Touches no widget: a thread may fit a long table."""
    cells = [max([0, *(row[i].cell_len for _, row in rows)]) for i in range(len(header))]
    natural = [max(label.cell_len, c) for (label, _), c in zip(header, cells, strict=True)]
    floors = [min(k, c) for k, c in zip([*keep, *([6] * labels)], cells[:labels], strict=False)]
    widths = label_widths(natural[:labels], width - sum(natural[labels:]), floors, cells[:labels]) + natural[labels:]
    columns = [(cut(label, widths[i], middle=False) if i < labels else label, key, widths[i])
               for i, (label, key) in enumerate(header)]
    return Fitted(columns, [(key, [cut(c, widths[i]) if i < labels else c for i, c in enumerate(row)])
                            for key, row in rows])


def put_fitted(table: DataTable, fitted: Fitted) -> None:
    """Add ``fitted``'s columns and rows to an empty ``table``: up to twice :data:`CHUNK_ROWS` rows at once;
    more, a chunk a frame — DataTable measures every cell of the rows just added before it draws again (1,000
    rows: 0.1 s of the UI thread), so a long table fills while keys and redraws go on. Until the last
    chunk, the fill counts as a load still out (:func:`emtui.loading.pending_loads`); a table cleared or
    filled again meanwhile drops the rest."""
    # fixed widths: the header never draws at a width the rows have not settled yet
    for label, key, width in fitted.columns:
        table.add_column(label, key=key, width=width)
    fill = object()
    table.__dict__[_FILL] = fill

    def add(start: int) -> None:
        if table.__dict__.get(_FILL) is not fill:  # filled again: the newer fill goes on
            return
        if table.row_count != start:  # cleared
            release(table, "fill")
            return
        # a table a little over a chunk at once: a second chunk would draw the whole table again
        end = len(fitted.rows) if len(fitted.rows) - start <= 2 * CHUNK_ROWS else start + CHUNK_ROWS
        for key, row in fitted.rows[start:end]:
            table.add_row(*row, key=key)
        if end < len(fitted.rows):
            hold(table, "fill")
            table.call_after_refresh(add, end)
        else:
            release(table, "fill")

    add(0)


def fill_table(table: DataTable, header: Sequence[tuple[Text, str]], rows: Sequence[tuple[str, Sequence[Text]]],
               *, labels: int, width: int, keep: Sequence[int] = ()) -> None:
    """Add ``header`` and ``rows`` to an empty ``table``, fitted to ``width`` (:func:`fit_table`)."""
    put_fitted(table, fit_table(header, rows, labels=labels, width=width, keep=keep))
