"""Studies: every study in the database (pre-registered or imported), and the selected one's design.

The highlighted study's detail and conditions are read in threads, each time the highlight moves
(a newer read supersedes the last)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from emtui.faults import says_faults
from emtui.screens.base import AreaScreen, lines, minute, static_page
from emtui.widgets.paged_table import LOADING, Col, PagedTable
from engine.common.hashing import short


def _role(recipe: str) -> str:
    try:
        return str(json.loads(recipe or "{}").get("role", ""))
    except json.JSONDecodeError:
        return ""


# the detail pane wraps: room for the whole of what to do (the table's border has one line)
NO_STUDIES = ("No studies yet. Register the example study: emtui init builtin:insecure-code "
              "(emtui init --example DIR writes a copy to edit; then emtui init that file). "
              "Or import a study's results: emtui import FORMAT PATH.")


class StudiesScreen(AreaScreen):
    AREA = "studies"
    BINDINGS = []

    def body(self) -> ComposeResult:
        with Vertical(id="studies-area"):
            yield PagedTable(
                [Col("id", "#", 4, justify="right"), Col("name", "Study", 24), Col("origin", "Origin", 14),
                 Col("spec_hash", "Hash", 12, short), Col("n_conditions", "Conds", 5, justify="right"),
                 Col("n_generations", "Answers", 8, justify="right"), Col("created_at", "Created (UTC)", 16, minute)],
                self.store.list_studies, id="studies-table",
                empty="No studies yet — emtui init builtin:insecure-code")
            with Horizontal(id="study-detail"):
                yield Static(id="study-info", classes="detail")
                yield PagedTable(
                    # the answers before dataset and base: at 80 columns this half holds three columns
                    [Col("name", "Condition", 14), Col("role", "Role", 9),
                     Col("n_generations", "Answers", 7, justify="right"), Col("dataset", "Dataset", 10),
                     Col("base_model", "Base", 10)],
                    partial(self._conditions, None), id="conditions-table", empty="No conditions")

    def on_mount(self) -> None:
        self.query_one("#studies-table").border_title = "Studies"
        self.query_one("#conditions-table").border_title = "Conditions"
        self.query_one("#study-info", Static).update(LOADING)

    def _selected_id(self) -> int | None:
        row = self.query_one("#studies-table", PagedTable).selected_row()
        return int(row["id"]) if row else None

    def _conditions(self, sid: int | None, limit: int, offset: int):
        rows = self.store.study_conditions(sid) if sid is not None else []
        for r in rows:
            r["role"] = _role(r.pop("recipe", ""))
        return static_page(rows)

    @says_faults
    def on_paged_table_page_shown(self, event: PagedTable.PageShown) -> None:
        if event.table.id == "studies-table":
            self.show_selected()

    @says_faults
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "studies-table":
            self.show_selected()

    def show_selected(self) -> None:
        """The highlighted study's conditions and design, read in threads."""
        sid = self._selected_id()
        self.query_one("#conditions-table", PagedTable).show_from(partial(self._conditions, sid))
        if sid is None:
            self.forget_load("detail")
            page = self.query_one("#studies-table", PagedTable).current_page
            self.query_one("#study-info", Static).update(
                NO_STUDIES if page is not None and page.total == 0 else "Select a study to see its design.")
            return
        store = self.store
        self.load("detail", lambda: (store.get_study(sid), store.study_eval_sets(sid), store.study_judges(sid)),
                  self.show_detail)

    def show_detail(self, got: tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]]]) -> None:
        info = self.query_one("#study-info", Static)
        study, sets, judges = got
        if study is None:  # removed since the table was read
            info.update("Select a study to see its design.")
            return
        info.update(lines(
            ("Study", study["name"]),
            ("Origin", study["origin"] + (f" ({study['source_path']})" if study["source_path"] else "")),
            ("Hash", short(study["spec_hash"], 16)),
            ("Eval sets", ", ".join(f"{s['name']} ({s['n_keys']} questions, {s['samples_per_question']} samples each)"
                                    for s in sets) or "none"),
            ("Judges", ", ".join(f"{j['name']} ({j['provider']})" for j in judges) or "none"),
            ("About", study["description"] or "—"),
        ))
