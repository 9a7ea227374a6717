"""Studies: every study in the database (pre-registered or imported), and the selected one's design.

The highlighted study's detail and conditions are read in threads, each time the highlight moves
(a newer read supersedes the last)."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from emtui.faults import says_faults
from emtui.screens.base import AreaScreen, lines, minute, static_page
from emtui.widgets.paged_table import LOADING, Col, PagedTable
from engine.common.hashing import short
from engine.common.text import flat, one_line


def _role(recipe: str) -> str:
    try:
        return str(json.loads(recipe or "{}").get("role", ""))
    except json.JSONDecodeError:
        return ""


# the detail pane wraps: room for the whole of what to do (the table's border has one line)
NO_STUDIES = ("No studies yet. Register the example study: emtui init builtin:insecure-code "
              "(emtui init --example DIR writes a copy to edit; then emtui init that file). "
              "Or import a study's results: emtui import FORMAT PATH.")


def status_parts(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The chain's state and each condition's progress (engine/results/study_status.py), as detail lines."""
    from emtui.study_run_commands import condition_rows

    cost = report["cost"]
    parts = [("Chain", f"{report['state']} · {len(report['jobs'])} job(s) · judging ${cost['usd']:,.4f} "
                       f"({cost['sent']:,} calls)")]
    for name, _role, trained, answers, judged, failed in condition_rows(report):
        parts.append((f"  {name}", f"{trained} · answers {answers} · {judged} · failed {failed}"))
    failures = [j for j in report["jobs"] if j["status"] == "failed" and not j["failed_because_of"]]
    if failures:
        j = failures[-1]
        parts.append(("Failed", f"job {j['id']} ({j['kind']}): {j['error'] or 'no reason recorded'}"))
    return parts


class StudiesScreen(AreaScreen):
    AREA = "studies"
    BINDINGS = [Binding("g", "run_study", "Run study", id="studies.run")]

    def body(self) -> ComposeResult:
        with Vertical(id="studies-area"):
            width = self.app.size.width or 80
            # a derived study's name (emtui run --model: 'insecure-code-demo--qwen2.5-0.5b') whole where there is
            # room: the spare columns beyond the table's 105 go to the name, up to 40
            name_width = 20 + max(0, min(20, width - 106))
            cols = [Col("id", "#", 4, justify="right"), Col("name", "Study", name_width), Col("chain", "Chain", 11)]
            if width >= 100:  # at 80 columns the origin is the detail pane's
                cols.append(Col("origin", "Origin", 11))
            cols += [Col("spec_hash", "Hash", 12, short), Col("n_conditions", "Conds", 5, justify="right"),
                     Col("n_generations", "Answers", 8, justify="right"),
                     Col("created_at", "Created (UTC)", 16, minute)]
            yield PagedTable(
                cols, self._studies, id="studies-table",
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
        # a chain run by a worker elsewhere (emtui run, the demo) moves on: its state and counts read again
        self.set_interval(self.settings.tui_queue_poll_s, self._poll)

    def _poll(self) -> None:
        """The studies and the highlighted one's chain again while a chain on the page is queued or running (a
        study's status counts its answers and judgments: not read again while nothing runs)."""
        table = self.query_one("#studies-table", PagedTable)
        page = table.current_page
        moving = page is not None and any(r.get("chain") in ("queued", "running") for r in page.rows)
        if moving and self.is_current and not table.reading() and not self.reading("detail"):
            table.reload()

    def _studies(self, limit: int, offset: int):
        """A page of studies (in a thread), each with its chain's state (emtui status)."""
        from engine.results.study_status import chain_state

        page = self.store.list_studies(limit=limit, offset=offset)
        for row in page.rows:
            jobs = self.store.study_jobs(str(row["spec_hash"])) if row.get("spec_hash") else []
            row["chain"] = chain_state(jobs) if row.get("origin") == "study-file" else "imported"
        return page

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
        self.load("detail", lambda: (store.get_study(sid), store.study_eval_sets(sid), store.study_judges(sid),
                                     _status_of(store, sid)), self.show_detail)

    def show_detail(self, got: tuple[dict[str, Any] | None, list[dict[str, Any]], list[dict[str, Any]],
                                     dict[str, Any] | None]) -> None:
        info = self.query_one("#study-info", Static)
        study, sets, judges, report = got
        if study is None:  # removed since the table was read
            info.update("Select a study to see its design.")
            return
        info.update(lines(
            ("Study", study["name"]),
            # where its chain stands first: at 80x24 the design below it is cut
            *(status_parts(report) if report is not None and study["origin"] == "study-file" else []),
            ("Origin", study["origin"] + (f" ({study['source_path']})" if study["source_path"] else "")),
            ("Hash", short(study["spec_hash"], 16)),
            ("Eval sets", ", ".join(f"{s['name']} ({s['n_keys']} questions, {s['samples_per_question']} samples each)"
                                    for s in sets) or "none"),
            ("Judges", ", ".join(f"{j['name']} ({j['provider']})" for j in judges) or "none"),
            ("About", study["description"] or "—"),
        ))

    def action_run_study(self) -> None:
        """Queue the highlighted study's chain (emtui run): what it would queue is read first (a dry run, in a
        thread) and shown to confirm; then it is queued in a thread, and a worker started where none is alive."""
        row = self.query_one("#studies-table", PagedTable).selected_row()
        if row is None:
            self.notify("No study highlighted: register one with emtui init or emtui run FILE", severity="warning")
            return
        if row.get("origin") != "study-file":
            self.notify(f"{flat(row['name'])} was imported: it holds answers and scores, not a recipe to run",
                        severity="warning", markup=False)
            return
        store, name = self.store, str(row["name"])

        def planned(got: tuple[Any, BaseException | None]) -> None:
            plan, error = got
            if error is not None:
                self._not_queued(error)
                return
            from emtui.screens.study_run_confirm import ConfirmRun
            from emtui.study_run_commands import plan_lines

            lines = plan_lines(plan, str(store.path))
            if not plan.queued_jobs():
                self.notify(" ".join(lines[:1]), timeout=8, markup=False)
                return

            def answered(yes: bool | None) -> None:
                if yes:
                    self._queue_chain(name)

            self.app.push_screen(ConfirmRun(f"Run study {flat(name)}?", lines), answered)

        self.load("run-plan", lambda: _chain(store, name, dry_run=True), planned)

    def _queue_chain(self, name: str) -> None:
        from engine.runs.detach import ensure_worker

        store, path, start = self.store, self.store.path, self.settings.tui_start_worker

        def work() -> tuple[Any, BaseException | None, int | None]:
            plan, error = _chain(store, name, dry_run=False)
            pid = ensure_worker(path, store=store) if plan is not None and plan.queued_jobs() and start else None
            return plan, error, pid

        def done(got: tuple[Any, BaseException | None, int | None]) -> None:
            plan, error, pid = got
            if error is not None:
                self._not_queued(error)
                return
            stages = "; ".join(f"{s} {', '.join(map(str, getattr(plan, s).queued))}" for s in plan.STAGES
                               if getattr(plan, s).queued)
            worker = "" if pid is None else f"; started a worker in the background (pid {pid})"
            self.notify(f"Queued the chain of {flat(name)}: job(s) {stages}{worker}" if stages
                        else f"Nothing to queue for {flat(name)}", timeout=10, markup=False)
            self.reload()

        self.load("run", work, done)

    def _not_queued(self, error: BaseException) -> None:
        if not self.app.say_fault(error):  # type: ignore[attr-defined]
            self.notify(one_line(f"{error}", 300), title="Not queued", severity="error", timeout=10, markup=False)


def _status_of(store: Any, study_id: int) -> dict[str, Any] | None:
    from engine.results.study_status import study_status

    study = store.get_study(study_id)
    return study_status(store, str(study["name"])) if study is not None else None


def _chain(store: Any, name: str, *, dry_run: bool) -> tuple[Any, BaseException | None]:
    """queue_study in a thread: (the plan, None) or (None, why it was not queued: the engine's one line)."""
    from engine.runs.study_chain import queue_study

    try:
        return queue_study(store, name, dry_run=dry_run), None
    except Exception as exc:  # noqa: BLE001 - the engine's word on it, said in a notification; never a traceback
        return None, exc
