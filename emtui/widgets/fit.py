"""Fit a table into the terminal's width: the label columns (names of conditions, models,
questions…) give way, cut with an ellipsis, so that the numbers beside them stay on screen.

Textual's DataTable sizes each column to its widest cell and scrolls sideways when they do not
fit; at 80 columns that pushes the numbers (and the ``n`` of each row) off screen. Here the
table's rows are built first, then the label columns are narrowed — the one with the most to
spare first, none below what it must keep — until every column fits the width given.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.widgets import DataTable

BORDER = 2  # a table's border, left and right
SCROLLBAR = 2  # a vertical scrollbar's width


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


def fill_table(table: DataTable, header: Sequence[tuple[Text, str]], rows: Sequence[tuple[str, Sequence[Text]]],
               *, labels: int, width: int, keep: Sequence[int] = ()) -> None:
    """Add ``header`` ((label, key) per column) and ``rows`` ((key, cells)) to an empty ``table``;
    the first ``labels`` columns are cut so that all of them fit ``width`` cells, each keeping at
    least ``keep`` cells (6 where not given) of its widest cell."""
    cells = [max([0, *(row[i].cell_len for _, row in rows)]) for i in range(len(header))]
    natural = [max(label.cell_len, c) for (label, _), c in zip(header, cells, strict=True)]
    floors = [min(k, c) for k, c in zip([*keep, *([6] * labels)], cells[:labels], strict=False)]
    widths = label_widths(natural[:labels], width - sum(natural[labels:]), floors, cells[:labels]) + natural[labels:]
    # fixed widths: the header never draws at a width the rows have not settled yet
    for i, (label, key) in enumerate(header):
        table.add_column(cut(label, widths[i], middle=False) if i < labels else label, key=key, width=widths[i])
    for key, row in rows:
        table.add_row(*(cut(c, widths[i]) if i < labels else c for i, c in enumerate(row)), key=key)
