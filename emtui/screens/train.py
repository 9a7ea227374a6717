"""Train: fine-tuning runs — condition, preset, status, step / max, loss, tokens/s, ETA — and the
highlighted run's live curves (textual-plotext), progress, throughput, GPU, resolved configuration and
checkpoints. ``space`` marks runs whose loss curves are overlaid in one chart, to compare conditions.

Everything is read in threads (:mod:`emtui.loading`) and read again every ``tui_queue_poll_s`` seconds
while the screen is shown; a poll reads only the metric points after the last step it has
(:class:`emtui.train_view.SeriesCache`), so a run of 100,000 logged steps costs a poll what is new.
The keys queue (``engine.training.queueing.queue_training``), cancel the run's job, resume a run and
list its checkpoints; what the engine raises is said in a notification.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import DataTable, Static

from db import Page
from emtui.faults import says_faults
from emtui.job_view import STATUS_STYLE, bar, bar_style, fmt_duration
from emtui.screens.base import AreaScreen, minute
from emtui.tiny_banner import TINY_SHORT
from emtui.train_view import CHART_TITLES, SeriesCache, chart_metrics, fmt_rate, fmt_value, run_row, step_text
from emtui.widgets.metric_chart import MetricChart
from emtui.widgets.paged_table import LOADING, Col, PagedTable
from engine.common.text import flat, one_line, strip_control

WIDE = (110, 34)  # columns and lines from which the charts are a grid of four (else one, m cycles)


class TrainScreen(AreaScreen):
    AREA = "train"
    BINDINGS = [
        Binding("space", "mark", "Mark", id="train.mark"),
        Binding("m", "next_metric", "Metric", id="train.metric"),
        Binding("n", "queue_training", "Queue", id="train.queue"),
        Binding("c", "cancel_run", "Cancel", id="train.cancel"),
        Binding("e", "resume_run", "Resume", id="train.resume"),
        Binding("k", "checkpoints", "Checkpoints", id="train.checkpoints"),
        # the table takes Enter first (RowSelected, below); the id lets a keymap add keys
        Binding("enter", "read_run", "Read run", show=False, id="train.read"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cache = SeriesCache()
        self.marked: dict[int, str] = {}  # run id -> its label, in the order marked
        self.labels: dict[int, str] = {}  # run id -> "#id condition", from the rows seen
        self.shown_run: int | None = None
        self.metric_i = 0  # the one chart's metric at 80x24
        self.wide_layout = False

    def wide(self) -> bool:
        return (self.app.size.width or 80) >= WIDE[0] and (self.app.size.height or 24) >= WIDE[1]

    def body(self) -> ComposeResult:
        width = self.app.size.width or 80
        cols = [Col("id", "#", 5, justify="right", render=self._id_cell), Col("condition", "Condition", 11),
                Col("preset", "Preset", 8), Col("status", "Status", 9), Col("step", "Step", 9, justify="right"),
                Col("loss", "Loss", 6, justify="right"), Col("tokens", "Tok/s", 6, justify="right"),
                Col("eta", "ETA", 6, justify="right")]
        if width >= WIDE[0]:  # room for the study and when it started
            cols += [Col("study", "Study", 12), Col("started_at", "Started (UTC)", 16, minute)]
        with Vertical():
            yield PagedTable(cols, self._runs, id="train-runs-table",
                             empty="No training runs yet — n queues a study's conditions (emtui train), "
                                   "emtui worker runs them")
            with Horizontal(id="train-detail"):
                with Container(id="train-charts"):
                    for i in range(4):
                        yield MetricChart(id=f"train-chart-{i}")
                yield Static(id="train-info", classes="detail")

    def fit_layout(self) -> None:
        """Four charts in a grid when the terminal is large enough, else one (m cycles its metric)."""
        wide = self.wide()
        self.wide_layout = wide
        for node in self.query("#train-runs-table, #train-charts, #train-info"):
            node.set_class(wide, "wide")
        for i, chart in enumerate(self.query(MetricChart)):
            chart.display = wide or i == 0

    def on_resize(self) -> None:
        if self.wide() != self.wide_layout:
            self.fit_layout()
            self.draw_charts()

    def _runs(self, limit: int, offset: int) -> Page:
        """A page of runs with their last metrics (in a thread)."""
        store = self.store
        rows = [run_row(r) for r in store.train_runs_overview(limit=limit, offset=offset)]
        return Page(rows, store.count("train_runs"), offset, limit)

    def _id_cell(self, row: dict[str, Any]) -> Text:
        run_id = int(row["id"])
        text = Text("● " if run_id in self.marked else "  ", style="bold magenta", justify="right")
        text.append(str(run_id), style="")
        return text

    def on_mount(self) -> None:
        self.query_one("#train-runs-table").border_title = "Training runs"
        info = self.query_one("#train-info", Static)
        info.update(LOADING)
        info.border_title = "Run"
        self.fit_layout()
        self.set_interval(self.settings.tui_queue_poll_s, self._poll)

    def _poll(self) -> None:
        """Runs and the shown curves again (a worker elsewhere is training); never while the last poll reads."""
        table = self.query_one("#train-runs-table", PagedTable)
        if self.is_current and not table.reading() and not self.reading("series") and not self.reading("detail"):
            table.reload()

    # -- the highlighted run ---------------------------------------------------------------------------------

    def _selected(self) -> dict[str, Any] | None:
        return self.query_one("#train-runs-table", PagedTable).selected_row()

    @says_faults
    def on_paged_table_page_shown(self, event: PagedTable.PageShown) -> None:
        if event.table.id == "train-runs-table":
            page = event.table.current_page
            for row in page.rows if page else []:
                self.labels[int(row["id"])] = f"#{row['id']} {one_line(row['condition'], 20)}"
            self.show_selected(force=True)

    @says_faults
    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "train-runs-table":
            self.show_selected()

    def show_selected(self, *, force: bool = False) -> None:
        """The highlighted run's detail and the curves of it and of the marked runs (new points only)."""
        row = self._selected()
        run_id = None if row is None else int(row["id"])
        if run_id == self.shown_run and not force:
            return
        if run_id != self.shown_run:
            self.metric_i = 0
        self.shown_run = run_id
        if run_id is None:
            self.forget_load("detail")
            page = self.query_one("#train-runs-table", PagedTable).current_page
            info = self.query_one("#train-info", Static)
            info.update(Text("No run highlighted" if page and page.total else
                             "No runs yet: n queues a study's conditions; emtui worker trains them", style="dim"))
            info.border_title = "Run"
        else:
            store = self.store

            def read_detail() -> tuple[dict[str, Any] | None, dict[str, Any], int]:
                return store.get_train_run(run_id), store.last_train_metrics(run_id), len(store.run_checkpoints(run_id))

            self.load("detail", read_detail, self.show_info)
        self.read_series()

    def read_series(self) -> None:
        """Read the points after the last step seen of each shown run (the highlighted and the marked)."""
        shown = set(self.marked) | ({self.shown_run} if self.shown_run is not None else set())
        self.cache.keep_only(shown)
        if not shown:
            self.draw_charts()
            return
        store, after = self.store, {run_id: self.cache.after(run_id) for run_id in shown}

        def read() -> dict[int, dict[str, list[tuple[int, float]]]]:
            return {run_id: store.train_metric_series([run_id], after_step=a)[run_id] for run_id, a in after.items()}

        self.load("series", read, self.show_series)

    def show_series(self, got: dict[int, dict[str, list[tuple[int, float]]]]) -> None:
        for run_id, series in got.items():
            self.cache.merge(run_id, series)
        self.draw_charts()

    def slots(self) -> list[str]:
        """The metric of each chart: the four first at a grid, else the one ``m`` chose."""
        names = set(self.cache.get(self.shown_run)) if self.shown_run is not None else set()
        metrics = chart_metrics(names)
        charts = 4 if self.wide_layout else 1
        return metrics[:charts] if charts > 1 else [metrics[self.metric_i % len(metrics)]]

    def draw_charts(self) -> None:
        run_id = self.shown_run
        series = self.cache.get(run_id) if run_id is not None else {}
        for chart, metric in zip(self.query(MetricChart), self.slots(), strict=False):  # the hidden ones: as drawn
            if metric == "loss" and self.marked:  # the overlay: every marked run's loss
                data = {label: self.cache.get(r).get("loss", []) for r, label in self.marked.items()}
                chart.show(metric, f"Loss · {len(self.marked)} marked run(s)", data)
            elif run_id is None:
                chart.show(metric, CHART_TITLES[metric], {})
            else:
                chart.show(metric, f"{CHART_TITLES[metric]} · run {run_id}",
                           {self.labels.get(run_id, f"#{run_id}"): series.get(metric, [])})

    def show_info(self, got: tuple[dict[str, Any] | None, dict[str, Any], int]) -> None:
        run, last, n_checkpoints = got
        info = self.query_one("#train-info", Static)
        if run is None:
            info.update(Text("That run is gone from the database", style="dim"))
            return
        status = str(run["status"])
        info.border_title = Text(f"Run {run['id']} · {one_line(run['condition'], 24)}")
        # the offline demo's random model: its curves are real, what it learns is noise
        info.border_subtitle = Text(TINY_SHORT, style="bold black on yellow") if run.get("base_source") == "tiny" \
            else None
        width = max(20, info.size.width - 4 if info.size.width else 32)
        text = Text(no_wrap=True, overflow="ellipsis")
        step, max_steps = last.get("step"), run.get("max_steps") or last.get("max_steps")
        text.append_text(bar(int(step or 0), int(max_steps) if max_steps else None, width, bar_style(status)))
        text.append("\n")
        text.append(status, style=f"bold {STATUS_STYLE.get(status, '')}")
        text.append(f"  step {step_text(step, max_steps)}")
        if status == "running" and last.get("eta_s") is not None:
            text.append(f"  ETA {fmt_duration(last['eta_s'])}")
        text.append("\n")
        pairs = [("loss", "loss"), ("lr", "learning_rate"), ("grad", "grad_norm"), ("kl", "kl"), ("sft", "sft_loss"),
                 ("acc", "mean_token_accuracy"), ("epoch", "epoch")]
        values = [f"{label} {fmt_value(last[name])}" for label, name in pairs if name in last]
        for i in range(0, len(values), 3):
            text.append("  ".join(values[i:i + 3]) + "\n")
        if "tokens_per_s" in last:
            text.append(f"tokens/s {fmt_rate(last['tokens_per_s'])}")
        if "gpu_mem_gb" in last or "gpu_util" in last:
            text.append("  GPU")
            if "gpu_mem_gb" in last:
                text.append(f" {last['gpu_mem_gb']:.1f} GB")
            if "gpu_util" in last:
                text.append(f" {last['gpu_util']:.0f}%")
        text.append("\n")
        text.append("preset ", style="dim")
        text.append(one_line(run.get("preset") or "—", 40))
        text.append("\nmasking ", style="dim")
        text.append(one_line(run.get("masking") or "—", 30))
        text.append("\n")
        text.append(f"checkpoints {n_checkpoints}", style="" if n_checkpoints else "dim")
        text.append("  (k lists)" if n_checkpoints else "", style="dim")
        if run.get("merged_from"):  # trained on another box (emtui merge): its files stayed there
            text.append("\n")
            text.append(one_line(f"remote: {run.get('merged_host') or 'another box'} (merged)", 60),
                        style="yellow")
        if run.get("error"):
            text.append("\n")
            text.append(one_line(run["error"], 200), style="red")
        text.append("\n")
        text.append("recipe", style="bold")
        text.append(" (Enter: all)", style="dim")
        for key, value in recipe_items(run.get("recipe")):
            text.append("\n")
            text.append(f"{one_line(key, 24)} ", style="dim")
            text.append(one_line(value, 60))
        info.update(text)

    # -- keys ------------------------------------------------------------------------------------------------

    def action_mark(self) -> None:
        row = self._selected()
        if row is None:
            return
        run_id = int(row["id"])
        if run_id in self.marked:
            del self.marked[run_id]
        else:
            self.marked[run_id] = self.labels.get(run_id, f"#{run_id}")
        table = self.query_one("#train-runs-table", PagedTable)
        table.update_cell(str(run_id), "id", self._id_cell(row))
        self.read_series()

    def action_next_metric(self) -> None:
        self.metric_i += 1
        self.draw_charts()

    def action_cancel_run(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("No run highlighted", severity="warning")
            return
        run_id, job_id, status = int(row["id"]), row.get("job_id"), str(row["status"])
        if job_id is None:
            self.notify(f"Run {run_id} has no job to cancel", severity="warning")
            return
        store = self.store

        def cancel() -> bool:
            ok = store.cancel_job(int(job_id))
            if ok and status == "queued":  # no worker will ever start it: the run ends here
                store.finish_train_run(run_id, status="cancelled")
            return ok

        def done(ok: bool) -> None:
            if ok:
                self.notify(f"Cancelled run {run_id} (job {job_id})" + (
                    ": its worker stops it" if status == "running" else ""), markup=False)
            else:
                self.notify(f"Job {job_id} of run {run_id} is not queued or running: nothing to cancel",
                            severity="warning", markup=False)
            self.reload()

        self.load("cancel", cancel, done)

    def action_resume_run(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("No run highlighted", severity="warning")
            return
        run_id, status = int(row["id"]), str(row["status"])
        if status in ("running", "queued"):
            self.notify(f"Run {run_id} is {status}: only a stopped run resumes", severity="warning", markup=False)
            return
        study, condition = str(row["study"]), str(row["condition"])
        self.queue_training(f"Run {run_id} queued to resume from its newest checkpoint",
                            lambda q, store: q(store, study=study, condition=condition, resume_run=run_id))

    def action_queue_training(self) -> None:
        store = self.store

        def read() -> list[tuple[str, str | None]]:
            from emtui.screens.train_pickers import queue_choices

            studies = store.list_studies(limit=10_000).rows
            return queue_choices(studies, {int(s["id"]): store.study_conditions(int(s["id"])) for s in studies})

        self.load("choices", read, self.pick)

    def pick(self, choices: list[tuple[str, str | None]]) -> None:
        from emtui.screens.train_pickers import QueuePicker

        if not choices:
            self.notify("No study has a condition to train (one with a dataset): emtui init registers one",
                        severity="warning")
            return

        def chosen(choice: tuple[str, str | None] | None) -> None:
            if choice is None:
                return
            study, condition = choice
            what = f"{flat(study)} / {flat(condition)}" if condition else f"every trained condition of {flat(study)}"
            self.queue_training(f"Queued {what}",
                                lambda q, store: q(store, study=study, condition=condition))

        self.app.push_screen(QueuePicker(choices), chosen)

    def queue_training(self, said: str, call: Callable[[Callable[..., list[int]], Any], list[int]]) -> None:
        """``call(queue_training, store)`` in a thread; then a worker in the background where none is alive
        (the ``tui_start_worker`` setting). What the engine raises is said in a notification."""
        from engine.runs.detach import ensure_worker

        store, path, start = self.store, self.store.path, self.settings.tui_start_worker

        def work() -> tuple[list[int] | None, str, BaseException | None]:
            from engine.training.queueing import queue_training

            try:
                runs = call(queue_training, store)
            except Exception as exc:  # noqa: BLE001 - the engine's word on it, said; never a traceback
                return None, "", exc
            pid = ensure_worker(path, store=store) if runs and start else None
            return runs, "" if pid is None else f"; started a worker in the background (pid {pid})", None

        def done(got: tuple[list[int] | None, str, BaseException | None]) -> None:
            runs, worker, error = got
            if error is not None:
                if not self.app.say_fault(error):  # type: ignore[attr-defined]
                    self.notify(one_line(f"{type(error).__name__}: {error}", 300), title="Not queued",
                                severity="error", timeout=10, markup=False)
                return
            ids = ", ".join(map(str, runs or []))
            self.notify(f"{said}: run(s) {ids}{worker}" if ids else f"{said}: nothing to queue", markup=False)
            self.reload()

        self.load("queue", work, done)

    def action_checkpoints(self) -> None:
        row = self._selected()
        if row is None:
            self.notify("No run highlighted", severity="warning")
            return
        store, run_id, label = self.store, int(row["id"]), f"Checkpoints of run {row['id']} · {row['condition']}"

        def show(checkpoints: list[dict[str, Any]]) -> None:
            from emtui.screens.train_pickers import CheckpointList

            self.app.push_screen(CheckpointList(label, checkpoints))

        self.load("checkpoints", lambda: store.run_checkpoints(run_id), show)

    @says_faults
    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "train-runs-table":
            event.stop()
            self.action_read_run()

    def action_read_run(self) -> None:
        """The highlighted run in full: its fields, resolved recipe, provenance, error and checkpoints."""
        row = self._selected()
        if row is None:
            self.notify("No run highlighted", severity="warning")
            return
        store, run_id = self.store, int(row["id"])
        self.load("read", lambda: (store.get_train_run(run_id), store.run_checkpoints(run_id),
                                   store.last_train_metrics(run_id)), self.show_run)

    def show_run(self, got: tuple[dict[str, Any] | None, list[dict[str, Any]], dict[str, Any]]) -> None:
        from emtui.screens.fulltext import FullTextScreen

        run, checkpoints, last = got
        if run is None:
            self.notify("That run is gone from the database", severity="warning")
            return
        fields = [(label, "—" if run.get(key) is None else str(run[key])) for key, label in (
            ("study", "Study"), ("condition", "Condition"), ("status", "Status"), ("preset", "Preset"),
            ("masking", "Masking"), ("base_model", "Base model"), ("dataset", "Dataset"), ("seed", "Seed"),
            ("recipe_hash", "Recipe hash"), ("job_id", "Job"), ("output_dir", "Output"),
            ("output_model", "Model"), ("started_at", "Started"), ("finished_at", "Finished"))]
        if run.get("merged_from"):  # trained on another box: its output and checkpoints are paths there
            fields.append(("Merged from", f"{run['merged_from']} (host {run.get('merged_host') or 'unknown'})"))
        ckpts = "\n".join(f"step {c['step']}: {c['path']}" for c in checkpoints) or None
        metrics = "\n".join(f"{k}: {fmt_value(v)}" for k, v in sorted(last.items()) if k != "step") or None
        self.app.push_screen(FullTextScreen(f"Run {run['id']}", fields, [
            ("Error", run.get("error")), ("Recipe (resolved)", pretty_json(run.get("recipe"))),
            (f"Last metrics (step {last.get('step')})", metrics), ("Checkpoints", ckpts),
            ("Provenance", pretty_json(run.get("provenance")))]))


def recipe_items(raw: Any) -> list[tuple[str, str]]:
    """A stored recipe (JSON) as ``key value`` lines, nested keys dotted; not JSON: as it is."""
    try:
        value = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return [("", strip_control(str(raw)))]
    out: list[tuple[str, str]] = []

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict) and v:
            for k, sub in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), sub)
        else:
            out.append((prefix, json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v))

    walk("", value)
    return out


def pretty_json(raw: Any) -> str | None:
    if raw is None:
        return None
    try:
        return json.dumps(json.loads(raw) if isinstance(raw, str) else raw, indent=2, ensure_ascii=False)
    except ValueError:
        return str(raw)
