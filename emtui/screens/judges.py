"""Judges: the judge models (provider, model id, parameters), their judgment counts, and the rubrics."""

from __future__ import annotations

import json

from textual.app import ComposeResult
from textual.containers import Vertical

from emtui.screens.base import AreaScreen, static_page
from emtui.widgets.paged_table import Col, PagedTable
from engine.common.hashing import short


def _metric_names(metrics: str) -> str:
    try:
        return ", ".join(m["name"] for m in json.loads(metrics or "[]"))
    except (json.JSONDecodeError, KeyError, TypeError):
        return ""


class JudgesScreen(AreaScreen):
    AREA = "judges"
    BINDINGS = []

    def body(self) -> ComposeResult:
        with Vertical():
            yield PagedTable(
                [Col("name", "Judge", 14), Col("provider", "Provider", 8), Col("model", "Model", 40),
                 Col("n_judgments", "Judgments", 9, justify="right"), Col("n_failed", "Failed", 6, justify="right")],
                self.store.list_judges, id="judges-table",
                empty="No judges — a study file's [[judges]] defines the panel")
            yield PagedTable(
                [Col("name", "Rubric", 20), Col("metrics", "Metrics", 30), Col("content_hash", "Hash", 12, short),
                 Col("n_judgments", "Judgments", 9, justify="right")],
                self._rubrics, id="rubrics-table", empty="No rubrics")

    def _rubrics(self, limit: int, offset: int):
        rows = self.store.list_rubrics()
        for r in rows:
            r["metrics"] = _metric_names(r["metrics"])
        return static_page(rows)

    def on_mount(self) -> None:
        self.query_one("#judges-table").border_title = "Judge panel"
        self.query_one("#rubrics-table").border_title = "Rubrics (by content hash)"
