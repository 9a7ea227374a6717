"""Results: one study at a time — scores with CIs per condition × metric (the panel, then each
judge), a bar chart with CI whiskers, EM / coherence / refusal rates, breakdowns by model,
checkpoint (with curves), question, category and trigger, agreement among judges, comparisons
between conditions, and drill-down to the answers behind a cell.

The numbers are :func:`engine.results.summary.build_summary`'s, computed in a child process (the screen never
waits on them, and its numpy never holds the UI's GIL: :mod:`emtui.summary_process`) with fewer
bootstrap resamples than ``emtui summary`` (the tables say how many),
and kept per study until ``r`` asks the database again. A study whose chain stored its summary (the ``summary``
job, engine/results/summary_job.py) shows that one at once while it is current — nothing it reads has changed
since (the data version it recorded) — and the status line says so; a stale one is computed again as above.
Every other read (the counts, the studies, a study's conditions and metrics) runs in a thread too
(:mod:`emtui.loading`).

New answers, judgments or ratings — written by a worker, an annotator, another terminal — are
noticed within :data:`POLL_S` seconds by the store's data version (:meth:`db.Store.data_version`):
the counts are read again at once, and the status line says the summary's numbers are stale
until ``r`` computes them again (a study that had no scores gets its summary by itself).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import ContentSwitcher, DataTable, Footer, Static

from emtui.faults import fault_line, says_faults
from emtui.screens.base import AreaScreen, lines
from emtui.summary_process import ComputeFailed
from emtui.widgets.bar_chart import Bar, BarChart
from emtui.widgets.fit import BORDER, SCROLLBAR, Fitted, fill_table, fit_table, put_fitted
from emtui.widgets.paged_table import LOADING, Col, PagedTable
from engine.common.text import flat, one_line, strip_control
from engine.results.report_format import (
    RATE_LABELS,
    SIDE_RATES,
    fmt_ci,
    fmt_p,
    is_rate,
    judges_of,
    main_metrics,
    panel_title,
    score_grid,
    ties_text,
)

CLI_RESAMPLES = 10_000  # what `emtui summary` uses, said in the titles (on screen: the tui_resamples setting)
CLI_AGREEMENT_RESAMPLES = 1_000
VIEWS = (("scores", "results-scores"), ("rates", "results-rates"), ("breakdowns", "results-breakdowns"),
         ("agreement", "results-agreement"), ("comparisons", "results-comparisons"), ("counts", "results-counts"))
EM = "em_rate"
# the summary breaks answers down automatically (engine.results.breakdowns.AUTO_BREAKDOWNS, where they
# vary within a condition); `b` offers these on top, computed when asked (questions are many)
ON_REQUEST = ("question",)
SPARKS = "▁▂▃▄▅▆▇█"
POLL_S = 2.0  # how often the shown screen asks whether the results changed (to move to the settings)
# what a change of each of the data version's counters is called (db.Store.data_version)
CHANGED = {"generations": "new answers", "conditions": "new answers", "judgments": "new judgments",
           "judgment_scores": "new judgments", "ratings": "new ratings", "adjudications": "new ratings",
           "study_em_rules": "a new EM rule", "changes": "changes"}


def what_changed(then: dict[str, int], now: dict[str, int]) -> str:
    """``new judgments, new ratings``: what differs between two data versions."""
    keys = [*CHANGED, *sorted((set(then) | set(now)) - set(CHANGED))]
    said = dict.fromkeys(CHANGED.get(k, "changes") for k in keys if then.get(k) != now.get(k))
    return ", ".join(said) or "changes"


def clean(value: Any, style: str = "", *, justify: str = "left") -> Text:
    """Text from the database for one line (a cell, a status line), safe to show: control sequences
    stripped, line breaks and tabs made spaces (a name's second line would push the rest out), never markup."""
    text = " ".join(strip_control("" if value is None else str(value)).replace("\t", " ").splitlines())
    return Text(text, style=style, justify=justify)  # type: ignore[arg-type]


def num(value: str, style: str = "") -> Text:
    """A numeric cell (our own text), right-aligned with a space before it."""
    return Text(" " + value, style=style, justify="right")


def ci_text(row: dict[str, Any] | None, metric: str) -> str:
    if row is None:
        return "—"
    return fmt_ci(row["mean"], row["ci_low"], row["ci_high"], percent=is_rate(metric), compact=True)


def ci_text_plain(value: float, metric: str) -> str:
    return fmt_ci(value, None, None, percent=is_rate(metric))


def short_time(at: str) -> str:
    """``12-01 03:29 UTC`` of a stored ISO 8601 UTC time (as it is when not one)."""
    return f"{at[5:10]} {at[11:16]} UTC" if len(at) >= 16 and at[10] == "T" else at


def judge_label(judge: tuple[str, str], panel: str) -> str:
    """The judge shown, short enough for a table's title at 80 columns."""
    return panel if judge[0] == "panel" else one_line(judge[1], 20)


def sparkline(values: list[float | None], low: float, high: float) -> str:
    """One character per value on the scale low..high (a space where there is none)."""
    out = []
    for v in values:
        if v is None:
            out.append(" ")
            continue
        frac = 0.0 if high <= low else (v - low) / (high - low)
        out.append(SPARKS[min(len(SPARKS) - 1, max(0, int(round(frac * (len(SPARKS) - 1)))))])
    return "".join(out)


def elsewhere(store: Any, what: str, *args: Any) -> Any:
    """A summary or breakdowns (:mod:`emtui.summary_process`), in a child process; called in a thread
    worker, whose cancellation kills the child. An in-memory database (no file to share) is computed
    here instead."""
    from textual.worker import get_current_worker

    from emtui import summary_process

    if str(store.path) == ":memory:":
        try:
            return summary_process.WHAT[what](store, *args)
        except Exception as exc:  # noqa: BLE001 - a database fault is raised, anything else shown
            if fault_line(exc, store.path) is not None:
                raise
            raise summary_process.ComputeFailed(f"{type(exc).__name__}: {exc}") from None
    worker = get_current_worker()
    return summary_process.compute(store.path, what, *args, cancelled=lambda: worker.is_cancelled)


def study_facts(store: Any, study_id: int) -> dict[str, Any]:
    """What the screen needs of a study besides its summary (read in a thread): whether it has
    scores, its conditions, the judges' and the people's metrics, its judges, its checkpoints."""
    metrics = store.study_metrics(study_id)
    human = store.study_human_metrics(study_id)
    from emtui.tiny_banner import is_tiny

    return {"scored": bool(metrics or human), "metrics": metrics, "human_metrics": human,
            "conditions": store.study_condition_rows(study_id), "judges": store.study_judges(study_id),
            "checkpoints": store.study_checkpoint_count(study_id), "tiny": is_tiny(store.study_conditions(study_id))}


def table_width(size: tuple[int, int], rows: int, share: float = 1.0) -> int:
    """The cells a results table of ``rows`` rows can use on a screen of ``size``: its width less the table's
    border, and less a scrollbar when the rows are more than the table (``share`` of the view's height)
    shows."""
    width, height = size
    # the view: less header, area bar, two status lines, footer; the table: less border, header row
    scrolls = rows > int((height - 5) * share) - 3
    return max(20, width - BORDER - (SCROLLBAR if scrolls else 0))


def breakdown_table(rows: list[dict[str, Any]], judge: str, dim: str, size: tuple[int, int]
                    ) -> tuple[Fitted, list[dict[str, Any]], list[tuple[str, str]]] | None:
    """One judge's breakdown by ``dim`` as a table fitted to a screen of ``size`` (None when the judge has no
    rows), with the judge's rows and their (condition, group) pairs. Touches no widget: runs in a thread."""
    mine = [r for r in rows if r["judge"] == judge]
    if not mine:
        return None
    metrics = main_metrics(list(dict.fromkeys(r["metric"] for r in mine)))
    grid = {(r["condition"], r["group"], r["metric"]): r for r in mine}
    # n comes right after the labels: with many metrics the last columns scroll, n does not
    header = [(Text("condition"), "condition"), (Text(" " + dim), "group"), (Text(" n", justify="right"), "n"),
              *((Text(" " + RATE_LABELS.get(m, m), justify="right"), m) for m in metrics)]
    # a majority vote left answers of some group undecided: how many, per metric, last (as the scores grid)
    tied = [m for m in metrics if any(r.get("ties") for r in mine if r["metric"] == m)]
    if tied:
        header.append((Text(" ties"), "ties"))
    pairs = list(dict.fromkeys((r["condition"], r["group"]) for r in mine))
    out = []
    last = None
    for c, g in pairs:
        ns = [grid[(c, g, m)]["n"] for m in metrics if (c, g, m) in grid and not is_rate(m)]
        out.append((f"{c}\x1f{g}", [clean(c) if c != last else Text(""), clean(" " + g),
                                      num(str(max(ns, default=0))),
                                      *(num(ci_text(grid.get((c, g, m)), m)) for m in metrics),
                                      *([clean(" " + ties_text(grid, c, tied, g))] if tied else [])]))
        last = c
    fitted = fit_table(header, out, labels=2, width=table_width(size, len(out)),
                       keep=(6, 12))  # a group (step 100, a model) keeps its name
    return fitted, mine, pairs


class ResultsScreen(AreaScreen):
    AREA = "results"
    AUTO_FOCUS = "#results-grid"
    BINDINGS = [
        Binding("n", "next_study", "Next study", id="results.next-study"),
        Binding("p", "prev_study", "Prev", id="results.prev-study"),
        Binding("j", "next_judge", "Judge", id="results.judge"),
        Binding("m", "next_metric", "Metric", id="results.metric"),
        Binding("v", "next_view", "View", id="results.view"),
        Binding("b", "next_breakdown", "By", id="results.breakdown"),
        # the grid's subtitle says so; the footer has no room for it at 80 columns
        Binding("enter", "answers", "Answers", priority=True, show=False, id="results.answers"),
    ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.studies: list[dict[str, Any]] | None = None  # None: not read yet
        self.study_id: int | None = None
        # per study id, read in a thread: whether it has scores, its conditions, metrics, judges, checkpoints
        self.facts: dict[int, dict[str, Any]] = {}
        self.reports: dict[int, dict[str, Any]] = {}  # computed summaries, per study id
        self.report_versions: dict[int, dict[str, int]] = {}  # the data version each summary was computed at
        self.stored: dict[int, tuple[int, str]] = {}  # studies shown with their chain's stored summary: (job, when)
        self.errors: dict[int, str] = {}
        self.pending: set[int] = set()  # studies whose summary is being computed
        self.version: dict[str, int] | None = None  # the data version last seen
        self.judge_index = 0  # 0: the panel, then each judge
        self.metric_index = 0
        self.view_index = 0
        self.breakdown_index = 0
        self.extra: dict[tuple[int, str], dict[str, Any]] = {}  # on-request breakdowns: (study, dim) -> report
        self.drawn: dict[str, tuple[Any, ...]] = {}  # per view, the inputs it was last drawn from (view_inputs)

    # -- layout ---------------------------------------------------------------------------------

    def body(self) -> ComposeResult:
        yield Static(id="results-tiny", classes="tiny-banner")  # shown over a study of the tiny model
        yield Static(id="results-status")
        with ContentSwitcher(initial="results-scores", id="results-views"):
            with Vertical(id="results-scores"):
                yield DataTable(id="results-grid", cursor_type="cell", cell_padding=0, zebra_stripes=True)
                with VerticalScroll(id="results-chart-box"):  # Tab reaches it: many conditions scroll
                    yield BarChart(id="results-chart")
            yield DataTable(id="results-rates", cursor_type="row", cell_padding=0, zebra_stripes=True)
            with Vertical(id="results-breakdowns"):
                yield DataTable(id="results-by", cursor_type="row", cell_padding=0, zebra_stripes=True)
                yield Static(id="results-curves", classes="detail")
            yield DataTable(id="results-agreement", cursor_type="row", cell_padding=0, zebra_stripes=True)
            yield DataTable(id="results-comparisons", cursor_type="row", cell_padding=0, zebra_stripes=True)
            with Vertical(id="results-counts"):
                yield Static(id="results-totals", classes="detail")
                yield DataTable(id="results-judging", cursor_type="row", cell_padding=0, zebra_stripes=True)
                yield PagedTable(
                    [Col("study", "Study", 18), Col("condition", "Condition", 18),
                     Col("n_generations", "Answers", 8, justify="right"),
                     Col("n_judged", "Judged", 7, justify="right"),
                     Col("n_failed", "Failed", 6, justify="right"),
                     Col("n_rated", "Rated", 6, justify="right")],
                    self.store.condition_overview, id="results-table",
                    empty="No conditions yet — emtui init STUDY.toml, or emtui import FORMAT PATH")

    def on_mount(self) -> None:
        self.query_one(Footer).compact = True  # eight keys in 80 columns
        # every column counts answers: judged (by one judge or more), with a failed judgment, rated by a person
        self.query_one("#results-table").border_title = "Answers per condition: judged, failed, rated by people"
        self.query_one("#results-status", Static).update(Text(LOADING, style="dim"))
        # answers, judgments and ratings written elsewhere (a worker, an annotator): noticed within POLL_S
        self.set_interval(POLL_S, self.poll_version)

    # -- what is shown ----------------------------------------------------------------------------

    @property
    def study(self) -> dict[str, Any] | None:
        return next((s for s in self.studies or [] if s["id"] == self.study_id), None)

    @property
    def report(self) -> dict[str, Any] | None:
        return self.reports.get(self.study_id) if self.study_id is not None else None

    def judges(self) -> list[tuple[str, str]]:
        """(judge id, label) of the shown study: the panel first, then each judge."""
        report, study = self.report, self.study
        if not report or not study:
            return []
        js = judges_of(report, study["name"])
        return [j for j in js if j[0] == "panel"] + [j for j in js if j[0] != "panel"]

    def judge(self) -> tuple[str, str] | None:
        js = self.judges()
        return js[self.judge_index % len(js)] if js else None

    def grid(self) -> tuple[list[str], list[str], dict]:
        """(conditions, metrics, cells) of the shown study and judge."""
        report, study, judge = self.report, self.study, self.judge()
        if not report or not study or not judge:
            return [], [], {}
        conditions, metrics, cells = score_grid(report, study["name"], judge[0])
        return conditions, main_metrics(metrics), cells

    def chart_metric(self) -> str | None:
        _, metrics, _ = self.grid()
        return metrics[self.metric_index % len(metrics)] if metrics else None

    # -- loading ------------------------------------------------------------------------------------

    def after_reload(self) -> None:
        """The counts, the studies and the data version, read in a thread; then the shown study's facts
        and summary (:meth:`show`)."""
        store = self.store

        def read() -> tuple[str, list[dict[str, Any]], dict[str, int]]:
            version = store.data_version()  # first: a write after it makes the numbers read below stale
            totals = (f"{store.count('generations')}   judgments {store.count('judgments')}   "
                      f"scores {store.count('judgment_scores')}   ratings {store.count('ratings')}")
            return totals, store.list_studies(limit=1_000_000).rows, version

        self.load("overview", read, self.overview_read)

    def overview_read(self, got: tuple[str, list[dict[str, Any]], dict[str, int]]) -> None:
        totals, studies, version = got
        self.query_one("#results-totals", Static).update(lines(("Answers", totals)))
        self.studies = studies
        self.version = version
        ids = [st["id"] for st in studies]
        # a study without scores may have gained some since: ask again (a study with scores keeps its facts)
        self.facts = {i: f for i, f in self.facts.items() if f["scored"] and i in ids}
        if self.study_id not in ids:  # first visit, or the study is gone: the first with scores
            self.study_id = next((i for i in ids if self.scored(i)), ids[0] if ids else None)
            if self.study_id is not None and not self.scored(self.study_id) and len(ids) > 1:
                self.find_scored(ids)
                return
        self.show()

    def find_scored(self, ids: list[int]) -> None:
        """First visit: the first study with scores is shown (its facts read in a thread)."""
        store = self.store

        def read() -> dict[int, dict[str, Any]]:
            found: dict[int, dict[str, Any]] = {}
            for i in ids:
                found[i] = study_facts(store, i)
                if found[i]["scored"]:
                    break
            return found

        def then(found: dict[int, dict[str, Any]]) -> None:
            self.facts.update(found)
            if self.study_id not in self.facts or not self.facts[self.study_id]["scored"]:
                self.study_id = next((i for i in ids if self.scored(i)), self.study_id)
            self.show()

        self.load("facts", read, then)

    def scored(self, study_id: int | None) -> bool:
        """Whether a study has any judged or human-rated answers, as far as its facts are read."""
        return study_id is not None and bool(self.facts.get(study_id, {}).get("scored"))

    def ensure_facts(self) -> bool:
        """Whether the shown study's facts are here; when not, they are read (in a thread) and shown."""
        sid = self.study_id
        if sid is None or sid in self.facts:
            return True
        store = self.store

        def then(facts: dict[str, Any]) -> None:
            self.facts[sid] = facts
            if sid == self.study_id:
                self.show()

        self.load("facts", lambda: study_facts(store, sid), then)
        return False

    def poll_version(self) -> None:
        """Every POLL_S while shown: has anything the numbers come from changed (in a thread)?"""
        if self.is_current and not self.reading("version") and not self.reading("overview"):
            self.load("version", self.store.data_version, self.version_read)

    def version_read(self, version: dict[str, int]) -> None:
        if version == self.version:
            return
        self.facts.clear()  # conditions, metrics, scores may have come: read again (the summaries stay)
        # cheap: the counts and the studies' facts; the summaries are said to be stale (r computes them)
        self.query_one("#results-table", PagedTable).reload()
        self.after_reload()

    def stale(self) -> str | None:
        """What changed since the shown study's summary was computed, or None when nothing did."""
        sid = self.study_id
        then = self.report_versions.get(sid) if sid is not None and sid in self.reports else None
        if then is None or self.version is None or then == self.version:
            return None
        return what_changed(then, self.version)

    def action_reload(self) -> None:
        """``r``: forget the computed summaries and compute the shown study's again."""
        for sid in self.pending:
            self.forget_load(f"summary-{sid}")
        for sid, dim in [k for k, v in self.extra.items() if v.get("pending")]:
            self.forget_load(f"breakdown-{sid}-{dim}")
        self.reports.clear()
        self.report_versions.clear()
        self.stored.clear()
        self.extra.clear()
        self.errors.clear()
        self.facts.clear()
        self.pending.clear()
        super().action_reload()

    def ensure_report(self) -> None:
        sid, study = self.study_id, self.study
        if sid is None or study is None or sid in self.reports or sid in self.pending:
            return
        if not self.scored(sid):
            return
        self.pending.add(sid)
        store, name = self.store, study["name"]
        resamples, agreement_resamples = self.settings.tui_resamples, self.settings.tui_agreement_resamples

        def compute() -> tuple[dict[str, Any] | None, str | None, dict[str, int], tuple[int, str] | None]:
            from engine.results.summary_job import current_summary

            kept = current_summary(store, name)  # the chain's own, when nothing changed since: no computing
            if kept is not None:
                return kept.report, None, kept.version, (kept.job_id, kept.finished_at)
            version = store.data_version()  # before: what is written while it computes makes it stale
            # engine.results.summary's SummaryOptions, built in the child (importing it here would import numpy)
            options = {"study": name, "n_resamples": resamples, "agreement_resamples": agreement_resamples}
            try:  # a database fault is raised: said in one line (the next visit tries again)
                return elsewhere(store, "summary", options), None, version, None
            except ComputeFailed as exc:  # shown on the screen, not raised into the UI
                return None, str(exc), version, None

        def failed(exc: BaseException) -> bool:
            self.pending.discard(sid)
            return False  # said as a database fault

        self.load(f"summary-{sid}", compute, lambda got: self.computed(sid, *got), failed=failed)

    @says_faults
    def computed(self, study_id: int, report: dict[str, Any] | None, error: str | None,
                 version: dict[str, int], stored: tuple[int, str] | None = None) -> None:
        self.pending.discard(study_id)
        self.stored.pop(study_id, None)
        if report is not None:
            self.reports[study_id] = report
            self.report_versions[study_id] = version
            if stored is not None:
                self.stored[study_id] = stored
        else:
            self.errors[study_id] = error or "unknown error"
        if study_id == self.study_id:
            self.show()

    @property
    def computing(self) -> bool:
        return self.study_id in self.pending

    # -- drawing ----------------------------------------------------------------------------------

    def view_size(self) -> tuple[int, int]:
        """The screen's (width, height), read before a thread builds a table for it."""
        width, height = self.size if self.size.width else self.app.size
        return width, height

    def table_width(self, rows: int, share: float = 1.0) -> int:
        return table_width(self.view_size(), rows, share)

    @says_faults
    def on_resize(self) -> None:
        if self.is_mounted:
            self.show()

    def show(self) -> None:
        if self.ensure_facts():
            self.ensure_report()
        self.show_status()
        self.show_view()

    def show_view(self) -> None:
        """Draw the view on screen (only it: the others are drawn when they are switched to — drawing all six
        each time the numbers came or a key changed the judge cost the UI thread up to 0.1 s at 1M scores).
        A view drawn from the same inputs is left as it is (coming back to the screen, or to the view): a
        table filled again draws every cell again, 20-40 ms."""
        view = VIEWS[self.view_index][0]
        inputs = self.view_inputs(view)
        drawn = self.drawn.get(view)
        if (drawn is not None and drawn[:-1] == inputs[:-1] and len(drawn[-1]) == len(inputs[-1])
                and all(a is b for a, b in zip(drawn[-1], inputs[-1], strict=True))):
            return
        if view == "scores":
            self.show_grid()
            self.show_chart()
        elif view == "counts":
            self.show_judging()
        else:
            {"rates": self.show_rates, "breakdowns": self.show_breakdowns, "agreement": self.show_agreement,
             "comparisons": self.show_comparisons}[view]()
        self.drawn[view] = self.view_inputs(view)  # after: drawing may ask for a breakdown (a pending one)

    def view_inputs(self, view: str) -> tuple[Any, ...]:
        """What drawing ``view`` reads: values, then the objects read (compared by identity: a summary, the
        study's facts, an on-request breakdown are replaced, never changed in place)."""
        sid, study, dim = self.study_id, self.study, self.breakdown()
        return (view, self.empty_reason(), sid, study and study["name"], self.judge_index, self.metric_index, dim,
                self.view_size(), (self.report, self.facts.get(sid) if sid is not None else None,
                                   self.extra.get((sid, dim)) if sid is not None and dim else None))

    def show_status(self) -> None:
        status = self.query_one("#results-status", Static)
        study, studies = self.study, self.studies or []
        facts = self.facts.get(int(study["id"])) if study is not None else None
        self.show_tiny(bool(facts and facts.get("tiny")))
        if self.studies is None:
            status.update(Text(LOADING, style="dim"))
            return
        if study is None:
            status.update(Text("No studies yet — emtui init STUDY.toml, or emtui import FORMAT PATH",
                               style="bold"))
            return
        index = [s["id"] for s in studies].index(study["id"]) + 1
        first = Text(no_wrap=True, overflow="ellipsis")
        stale = self.stale()
        if stale:  # first: a long study name must not push it off the line
            first.append(f"stale ({stale}): r recomputes", style="bold reverse yellow")
            first.append("  ")
        first.append(f"Study {index}/{len(studies)} ", style="bold")
        first.append_text(clean(study["name"], "bold"))
        first.append_text(clean(f"  {study['origin']}", "dim"))
        kept = self.stored.get(int(study["id"])) if not stale else None
        if kept is not None and int(study["id"]) in self.reports:
            first.append(f"  the chain's summary (job {kept[0]}, {short_time(kept[1])})", style="green")
        second = Text(no_wrap=True, overflow="ellipsis")
        judge = self.judge()
        second.append("judge ", style="dim")
        second.append_text(clean(one_line(judge[1], 28) if judge else "—"))
        second.append("  view ", style="dim")
        second.append(VIEWS[self.view_index][0])
        dim = self.breakdown()
        second.append("  by ", style="dim")
        second.append(dim or "—")
        facts = self.facts.get(int(study["id"]))
        second.append(f"  checkpoints {facts['checkpoints'] if facts else '…'}", style="dim")
        status.update(Text("\n").join([first, second]))

    def show_tiny(self, tiny: bool) -> None:
        from emtui.tiny_banner import banner

        line = self.query_one("#results-tiny", Static)
        if tiny and not line.display:
            line.update(banner())
        line.display = tiny

    def empty_reason(self) -> str | None:
        """Why no numbers are shown for the current study, or None when they are."""
        sid = self.study_id
        if self.studies is None:
            return LOADING
        if sid is None:
            return "No studies in this database"
        if sid in self.reports:
            return None
        if sid in self.errors:
            return f"The summary failed: {self.errors[sid]}"
        if sid not in self.facts:
            return "Reading the study…"
        if not self.scored(sid):
            return "No judged answers in this study yet: nothing to summarise"
        return f"Computing the summary ({self.settings.tui_resamples:,} bootstrap resamples)…"

    def show_grid(self) -> None:
        table = self.query_one("#results-grid", DataTable)
        cursor = table.cursor_coordinate
        table.clear(columns=True)
        reason = self.empty_reason()
        judge = self.judge()
        if reason or judge is None:
            table.border_title = clean(reason or "No scores")
            table.border_subtitle = None
            return
        conditions, metrics, cells = self.grid()
        who = self.judge_title(judge)
        table.border_title = Text(f"{who} · mean [95% CI] · {self.resamples_said()}")
        table.border_subtitle = Text("n/miss: answers scored/missing (per metric if unequal) · Enter: answers")
        header = [(Text("condition"), "condition"),
                  *((clean(" " + m, justify="right"), m) for m in metrics),
                  (Text(" n/miss", justify="right"), "n")]
        # a majority vote left answers undecided: how many, per metric (engine/results/panel_aggregate.py)
        tied = [m for m in metrics if any((cells.get((c, m)) or {}).get("ties") for c in conditions)]
        if tied:
            header.append((Text(" ties"), "ties"))
        rows = []
        for c in conditions:
            # one n/missing when the metrics agree, else one per metric in the columns' order
            ns = list(dict.fromkeys(f"{r['n']}/{r['missing']}" for m in metrics if m != EM
                                    for r in [cells.get((c, m))] if r is not None))
            if not ns:  # only an EM rate: its own denominator
                ns = [f"{r['n']}/{r['missing']}" for r in [cells.get((c, EM))] if r is not None]
            rows.append((c, [clean(c), *(num(ci_text(cells.get((c, m)), m)) for m in metrics),
                             num(", ".join(ns) or "—"), *([clean(" " + ties_text(cells, c, tied))] if tied else [])]))
        fill_table(table, header, rows, labels=1, width=self.table_width(len(rows), 0.6))  # the grid: max 60%
        if table.row_count:
            table.move_cursor(row=min(cursor.row, table.row_count - 1),
                              column=min(cursor.column, len(header) - 1))

    def resamples_said(self, *, agreement: bool = False) -> str:
        """The bootstrap resamples behind the shown numbers: the chain's stored summary's own, or the screen's
        (fewer than ``emtui summary``'s, said beside them)."""
        report = self.report
        if self.study_id in self.stored and report is not None:
            n = report["options"]["agreement_resamples" if agreement else "n_resamples"]
            return f"{n:,} resamples (stored)"
        if agreement:
            return f"{self.settings.tui_agreement_resamples:,} resamples (summary: {CLI_AGREEMENT_RESAMPLES:,})"
        return f"{self.settings.tui_resamples:,} resamples (summary: {CLI_RESAMPLES:,})"

    def judge_title(self, judge: tuple[str, str]) -> str:
        """A table's judge: ``Panel (median)`` says the aggregate its numbers used."""
        report, study = self.report, self.study
        if judge[0] == "panel" and report and study:
            return panel_title(report, study["name"])
        return judge_label(judge, "Panel")

    def show_judging(self) -> None:
        """Per judge × condition of the shown study: answers judged, failed (the commonest reason), not
        judged yet — from the summary (failures are not missing answers: they were judged and failed). Shown
        only with a summary that has judges: the status line and the counts say why there is none."""
        table = self.query_one("#results-judging", DataTable)
        table.clear(columns=True)
        report, study = self.report, self.study
        rows = [r for r in report.get("judging", []) if r["study"] == study["name"]] \
            if report and study and not self.empty_reason() else []
        table.display = bool(rows)
        if not rows or study is None:
            return
        title = Text("Judging · ")
        title.append_text(clean(one_line(study["name"], 24)))
        title.append(" · judged · failed · not yet judged, per judge")
        table.border_title = title
        table.border_subtitle = Text("failed: no reply, or no score read from it · n: next study")
        header = [(Text("judge"), "judge"), (Text(" condition"), "condition"),
                  (Text(" judged", justify="right"), "judged"), (Text(" failed", justify="right"), "failed"),
                  (Text(" not yet", justify="right"), "not-yet"), (Text(" commonest failure"), "why")]
        out = []
        for i, r in enumerate(rows):
            why = clean(" " + (f"{r['failure']} ({r['failure_n']})" if r["failure"] else "—"),
                        "" if r["failure"] else "dim")
            out.append((str(i), [clean(r["judge_name"]), clean(" " + r["condition"]), num(str(r["judged"])),
                                 num(str(r["failed"]), "bold" if r["failed"] else "dim"),
                                 num(str(r["not_judged"]), "" if r["not_judged"] else "dim"), why]))
        fill_table(table, header, out, labels=2, width=self.table_width(len(out)))

    def show_chart(self) -> None:
        chart = self.query_one("#results-chart", BarChart)
        box = self.query_one("#results-chart-box")
        reason = self.empty_reason()
        judge, metric = self.judge(), self.chart_metric()
        if reason or judge is None or metric is None:
            box.border_title, box.border_subtitle = "Chart", None
            chart.set_message(reason or "No scores")
            return
        conditions, _, cells = self.grid()
        bars = [Bar(c, *(None, None, None) if cells.get((c, metric)) is None else
                    (cells[(c, metric)]["mean"], cells[(c, metric)]["ci_low"], cells[(c, metric)]["ci_high"]))
                for c in conditions]
        chart.set_bars(bars, percent=metric == EM)
        what = "EM rate" if metric == EM else f"mean {one_line(metric, 20)}"
        who = judge_label(judge, "panel")
        box.border_title = Text(f"{what} by condition · {who} · ├─┤ 95% CI")
        box.border_subtitle = Text("m: metric")

    def show_agreement(self) -> None:
        table = self.query_one("#results-agreement", DataTable)
        table.clear(columns=True)
        report, study, reason = self.report, self.study, self.empty_reason()
        if reason or not report or not study:
            table.border_title = clean(reason or "Agreement")
            table.border_subtitle = None
            return
        rows = [r for r in report["agreement"] if r["study"] == study["name"] and r["raters"] == "judges"]
        people = [r for r in report["agreement"] if r["study"] == study["name"] and r["raters"] != "judges"
                  and r["condition"] == "all"]
        table.border_title = Text(f"Krippendorff α [95% CI] · {self.resamples_said(agreement=True)}")
        if not rows and not people:
            table.border_subtitle = Text("Agreement needs two or more judges (this study has one) or rated campaigns")
            return
        table.border_subtitle = Text("all: α over every answer · mean: mean of the conditions' α (no CI)")
        by = {(r["condition"], r["metric"], r["level"]): r for r in rows}
        header = [(Text("condition"), "condition"), (Text(" metric"), "metric"),
                  (Text(" interval α [CI]", justify="right"), "interval"),
                  (Text(" ordinal α [CI]", justify="right"), "ordinal"), (Text(" items", justify="right"), "items")]
        out: list[tuple[str, list[Text]]] = []
        metrics = list(dict.fromkeys(r["metric"] for r in rows))
        for c in dict.fromkeys(r["condition"] for r in rows):
            for i, m in enumerate(metrics):
                found = [by.get((c, m, level)) for level in ("interval", "ordinal")]
                cells = [num(fmt_ci(r["alpha"], r["ci_low"], r["ci_high"], compact=True) if r else "—")
                         for r in found]
                items = max((r["n_items"] for r in found if r), default=0)
                out.append((f"{c}\x1f{m}", [clean(c) if i == 0 else Text(""), clean(" " + m), *cells,
                                              num(str(items))]))
        # people (rating campaigns): α among the humans, and of their consensus against the judges
        for r in people:
            levels = [r if r["level"] == level else None for level in ("interval", "ordinal")]
            if r["level"] not in ("interval", "ordinal"):
                levels = [r, None]  # nominal scales: one value, in the first column
            label = Text(no_wrap=True, overflow="ellipsis")
            label.append_text(clean(f"{r['campaign']}: ", "dim"))
            label.append_text(clean(r["raters"]))
            out.append((f"people\x1f{r['campaign']}\x1f{r['raters']}\x1f{r['metric']}\x1f{r['level']}",
                          [label, clean(" " + r["metric"] + ("" if r["level"] in ("interval", "ordinal")
                                                              else f" ({r['level']})")),
                           *[num(fmt_ci(x["alpha"], x["ci_low"], x["ci_high"], compact=True)) if x else Text("")
                             for x in levels], num(str(r["n_items"]))]))
        fill_table(table, header, out, labels=2, width=self.table_width(len(out)))

    def show_comparisons(self) -> None:
        table = self.query_one("#results-comparisons", DataTable)
        table.clear(columns=True)
        report, study, reason, judge = self.report, self.study, self.empty_reason(), self.judge()
        if reason or not report or not study or not judge:
            table.border_title = clean(reason or "Comparisons")
            return
        rows = [r for r in report["comparisons"] if r["study"] == study["name"] and r["judge"] == judge[0]]
        correction = report["options"]["correction"]
        who = judge_label(judge, "panel")
        table.border_title = Text(f"Comparisons · {who} · ratio a/b [95% CI] · p ({correction}) · rank-biserial r")
        shown = f"{self.resamples_said()} · j: judge"
        table.border_subtitle = Text(shown if rows else self.no_comparisons(judge))
        header = [(Text("a vs b"), "pair"), (Text(" metric"), "metric"),
                  (Text(" ratio a/b [CI]", justify="right"), "ratio"), (Text(" p adj", justify="right"), "p"),
                  (Text(" r", justify="right"), "r"), (Text(" n a/b", justify="right"), "n")]
        out = []
        for i, r in enumerate(rows):
            pair = clean(r["a"])
            pair.append(" vs ", style="dim")
            pair.append_text(clean(r["b"]))
            out.append((str(i), [pair, clean(" " + r["metric"]),
                                   num(fmt_ci(r["ratio"], r["ratio_ci_low"], r["ratio_ci_high"], compact=True)),
                                   num(fmt_p(r["p_adjusted"])),
                                   num("—" if r["effect_size"] is None else f"{r['effect_size']:+.2f}"),
                                   num(f"{r['n_a']}/{r['n_b']}")]))
        if out:
            fill_table(table, header, out, labels=2, width=self.table_width(len(out)))

    def no_comparisons(self, judge: tuple[str, str]) -> str:
        """Why the comparisons table is empty for the study and judge shown."""
        study = self.study
        facts = self.facts.get(int(study["id"])) if study else None
        n = len(facts["conditions"]) if facts else 2
        if n < 2:
            return "No comparisons: the study has one condition"
        if judge[0] == "human":
            return "No comparisons of human ratings (j: a judge's)"
        return "No comparisons for this judge"

    def show_rates(self) -> None:
        table = self.query_one("#results-rates", DataTable)
        table.clear(columns=True)
        report, study, reason, judge = self.report, self.study, self.empty_reason(), self.judge()
        if reason or not report or not study or not judge:
            table.border_title = clean(reason or "Rates")
            table.border_subtitle = None
            return
        conditions, metrics, cells = score_grid(report, study["name"], judge[0])
        rates = [m for m in (EM, *SIDE_RATES) if m in metrics]
        who = self.judge_title(judge)
        table.border_title = Text(f"{who} · EM, coherent and refusal rates [95% CI]")
        if not rates:
            table.border_subtitle = Text("The study defines no EM rule (study file [em]): no rates")
            return
        table.border_subtitle = Text("each rate over the answers with the verdicts it needs · n: its denominator")
        header = [(Text("condition"), "condition")]
        for m in rates:
            header += [(Text(" " + RATE_LABELS[m], justify="right"), m), (Text(" n", justify="right"), f"{m}-n")]
        out = []
        for c in conditions:
            row: list[Text] = [clean(c)]
            for m in rates:
                r = cells.get((c, m))
                row += [num(ci_text(r, m)), num("—" if r is None else str(r["n"]), "dim")]
            out.append((c, row))
        fill_table(table, header, out, labels=1, width=self.table_width(len(out)))

    def breakdowns_available(self) -> list[str]:
        """The dimensions `b` cycles through: those the summary found, then the on-request ones."""
        report, study = self.report, self.study
        if not report or not study:
            return []
        found = list(dict.fromkeys(r["by"] for r in report.get("breakdowns", []) if r["study"] == study["name"]))
        return found + [d for d in ON_REQUEST if d not in found]

    def breakdown(self) -> str | None:
        dims = self.breakdowns_available()
        return dims[self.breakdown_index % len(dims)] if dims else None

    def breakdown_rows(self, dim: str) -> list[dict[str, Any]] | None:
        """Rows of one dimension for the shown study; None while an on-request one is computed."""
        report, study = self.report, self.study
        if not report or not study:
            return []
        rows = [r for r in report.get("breakdowns", []) if r["study"] == study["name"] and r["by"] == dim]
        if rows or dim not in ON_REQUEST:
            return rows
        key = (int(study["id"]), dim)
        if key not in self.extra:
            self.extra[key] = {"pending": True}
            self.compute_breakdown(int(study["id"]), study["name"], dim)
            return None
        got = self.extra[key]
        return None if got.get("pending") else got.get("rows", [])

    def compute_breakdown(self, study_id: int, name: str, dim: str) -> None:
        """An on-request breakdown (by question: many groups), computed in a thread."""
        store, resamples = self.store, self.settings.tui_resamples

        def compute() -> dict[str, Any]:
            try:
                return {"rows": elsewhere(store, "breakdowns", name, (dim,), {"n_resamples": resamples})}
            except ComputeFailed as exc:  # shown on the screen
                return {"rows": [], "error": str(exc)}

        self.load(f"breakdown-{study_id}-{dim}", compute, lambda got: self.breakdown_computed((study_id, dim), got))

    def breakdown_computed(self, key: tuple[int, str], got: dict[str, Any]) -> None:
        self.extra[key] = got
        if VIEWS[self.view_index][0] == "breakdowns":
            self.show_view()

    def show_breakdowns(self) -> None:
        table = self.query_one("#results-by", DataTable)
        curves = self.query_one("#results-curves", Static)
        self.forget_load("breakdown-table")
        table.clear(columns=True)
        curves.display = False
        report, study, reason, judge, dim = self.report, self.study, self.empty_reason(), self.judge(), self.breakdown()
        if reason or not report or not study or not judge or dim is None:
            table.border_title = clean(reason or "Breakdowns")
            table.border_subtitle = None
            return
        rows = self.breakdown_rows(dim)
        who = self.judge_title(judge)
        table.border_title = Text(f"{who} by {dim} · mean [95% CI] · {self.settings.tui_resamples:,} resamples")
        if rows is None:
            table.border_subtitle = Text(f"Computing the breakdown by {dim}…")
            return
        table.border_subtitle = None
        error = self.extra.get((int(study["id"]), dim), {}).get("error")
        size, judge_id = self.view_size(), judge[0]

        def then(got: tuple[Fitted, list[dict[str, Any]], list[tuple[str, str]]] | None) -> None:
            if got is None:
                table.border_subtitle = clean(error or f"Nothing to break down by {dim}")
                return
            fitted, mine, pairs = got
            table.border_subtitle = Text("b: by model / checkpoint / category / trigger / question · j: judge")
            put_fitted(table, fitted)
            if dim == "checkpoint":
                curves.update(self.curves_text(mine, pairs))
                curves.display = True

        # in a thread: by question, a judge's rows are 1,000 (0.05-0.1 s to build and fit)
        self.load("breakdown-table", lambda: breakdown_table(rows, judge_id, dim, size), then)

    def curves_text(self, rows: list[dict[str, Any]], pairs: list[tuple[str, str]]) -> Text:
        """A sparkline per condition of the chart metric over its checkpoints (final last)."""
        metric = self.chart_metric() or ""
        by = {(r["condition"], r["group"], r["metric"]): r for r in rows}
        values = [r["mean"] for r in rows if r["metric"] == metric and r["mean"] is not None]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        out = Text(no_wrap=True, overflow="ellipsis")
        label = "EM rate" if metric == EM else metric
        out.append(f"Curves over checkpoints: {flat(label)} (m: metric), scale {ci_text_plain(low, metric)}"
                   f"–{ci_text_plain(high, metric)}\n", style="bold")
        for c in dict.fromkeys(c for c, _ in pairs):
            groups = [g for cc, g in pairs if cc == c]
            if len(groups) < 2:  # final weights only: no curve
                continue
            means = [by[(c, g, metric)]["mean"] if (c, g, metric) in by else None for g in groups]
            out.append_text(clean(one_line(c, 18).ljust(18)))
            out.append(" " + sparkline(means, low, high) + "  ", style="bold blue")
            ends = [v for v in means if v is not None]
            if ends:
                out.append(f"{ci_text_plain(ends[0], metric)} → {ci_text_plain(ends[-1], metric)}", style="dim")
            out.append(f"  ({groups[0]} … {groups[-1]})\n", style="dim")
        return out

    # -- keys ---------------------------------------------------------------------------------------

    def _move_study(self, step: int) -> None:
        if self.studies is None:
            return  # not read yet
        if not self.studies:
            self.notify("No studies in this database", severity="warning")
            return
        ids = [s["id"] for s in self.studies]
        i = ids.index(self.study_id) if self.study_id in ids else 0
        self.study_id = ids[(i + step) % len(ids)]
        self.judge_index = self.metric_index = self.breakdown_index = 0
        self.show()

    def action_next_study(self) -> None:
        self._move_study(1)

    def action_prev_study(self) -> None:
        self._move_study(-1)

    def action_next_judge(self) -> None:
        js = self.judges()
        if len(js) > 1:
            self.judge_index = (self.judge_index + 1) % len(js)
        self.show()

    def action_next_metric(self) -> None:
        _, metrics, _ = self.grid()
        if metrics:
            self.metric_index = (self.metric_index + 1) % len(metrics)
        self.show_view()

    def action_next_breakdown(self) -> None:
        """``b``: the next breakdown dimension (and the breakdowns view)."""
        dims = self.breakdowns_available()
        if not dims and self.computing:  # the numbers are on their way: the view says so, then shows them
            self.set_view("breakdowns")
            return
        if not dims:
            self.notify("Nothing to break down yet", severity="warning")
            return
        if VIEWS[self.view_index][0] == "breakdowns":
            self.breakdown_index = (self.breakdown_index + 1) % len(dims)
            self.show_view()
            self.show_status()
        else:
            self.set_view("breakdowns")

    def set_view(self, name: str) -> None:
        self.view_index = [v[0] for v in VIEWS].index(name)
        self.query_one("#results-views", ContentSwitcher).current = VIEWS[self.view_index][1]
        focus = {"scores": "#results-grid", "rates": "#results-rates", "breakdowns": "#results-by",
                 "agreement": "#results-agreement", "comparisons": "#results-comparisons",
                 "counts": "#results-table"}[name]
        self.query_one(focus).focus()
        self.show_status()
        self.show_view()
        self.refresh_bindings()

    def action_next_view(self) -> None:
        self.set_view(VIEWS[(self.view_index + 1) % len(VIEWS)][0])

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide the keys the current view has no use for (the footer has little room)."""
        view = VIEWS[self.view_index][0]
        if action == "next_judge":
            return view in ("scores", "rates", "breakdowns", "comparisons")
        if action == "next_metric":
            return view in ("scores", "breakdowns")
        if action == "answers":
            return view == "scores"
        return True

    def action_answers(self) -> None:
        """Enter: the answers behind the highlighted cell (its condition, metric and judge)."""
        if VIEWS[self.view_index][0] != "scores":
            return
        study, report = self.study, self.report
        conditions, metrics, _ = self.grid()
        if not study or not report or not conditions:
            self.notify("No scores to drill into", severity="warning")
            return
        table = self.query_one("#results-grid", DataTable)
        row, col = table.cursor_coordinate
        condition = conditions[min(row, len(conditions) - 1)]
        metric = metrics[col - 1] if 1 <= col <= len(metrics) else (self.chart_metric() or metrics[0])
        em = next((s.get("em") for s in report["studies"] if s["name"] == study["name"]), None)
        store, sid = self.store, int(study["id"])

        def read() -> dict[str, Any]:  # the study's facts as they are now (the condition may be gone)
            return study_facts(store, sid)

        def then(facts: dict[str, Any]) -> None:
            from emtui.screens.answers import AnswersScreen

            cond_ids = {c["name"]: int(c["id"]) for c in facts["conditions"]}
            if condition not in cond_ids:
                self.notify("That condition is gone from the database: press r", severity="warning")
                return
            self.app.push_screen(AnswersScreen(study_id=sid, study_name=study["name"],
                                               condition_id=cond_ids[condition], condition=condition,
                                               metric=metric, em=em, facts=facts))

        self.load("answers", read, then)
