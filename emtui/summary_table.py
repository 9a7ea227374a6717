"""``emtui summary --format table``: the report as rich tables that fit an 80-column terminal.

The tables are :func:`engine.results.report_format.study_sections`, the same the Markdown prints. Every
title, header and cell is a :class:`rich.text.Text`: names from imported files are never read
as markup (``judge [/oops]`` prints as it is) and carry no control sequences."""

from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from engine.results.report_format import Section, cell, study_preamble, study_sections


def _table(sec: Section) -> Table:
    t = Table(title=Text(sec.title, style="bold"), title_justify="left", show_edge=False, pad_edge=False,
              header_style="bold", expand=False)
    for i, c in enumerate(sec.header):
        t.add_column(Text(c), justify="left" if i == 0 or i in sec.text_columns else "right", overflow="fold")
    for i, row in enumerate(sec.rows):
        t.add_row(*(Text(c) for c in row), style="dim" if i in sec.quiet_rows else None)
    return t


class PipeConsole(Console):
    """A Console for standard output that ends quietly when the reader goes away (``| head``), as
    every other emtui command does, instead of Rich's exit status 1."""

    def on_broken_pipe(self) -> None:
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # the interpreter's last flush then goes nowhere, quietly
        raise SystemExit(0)


def render(report: dict[str, Any], console: Console) -> None:
    if not report["studies"]:
        console.print(Text("No studies in this database: emtui init STUDY.toml, or emtui import ..."))
        return
    for st in report["studies"]:
        parts: list[Any] = [Text(cell(st["name"]), style="bold underline")]
        parts += [Text(line, style="dim" if i == 0 else "") for i, line in enumerate(study_preamble(report, st))]
        if not st.get("note"):
            parts += [_table(sec) for sec in study_sections(report, st["name"])]
        console.print(Group(*parts))
        console.print()


def render_text(report: dict[str, Any], width: int) -> str:
    """The tables as plain text ``width`` columns wide (a stored summary read back: ``emtui jobs log``, the
    job's pane)."""
    import io

    console = Console(file=io.StringIO(), width=width, color_system=None, force_terminal=False)
    render(report, console)
    return console.file.getvalue().rstrip("\n")  # type: ignore[attr-defined]


def stored_summary(job: dict[str, Any], result: Any) -> dict[str, Any] | None:
    """The report a ``summary`` job stored (engine/results/summary_job.py), or None for any other result."""
    from engine.results.summary_job import stored_report

    return stored_report(result) if job.get("kind") == "summary" else None
