"""Answers: the drill-down from a Results cell. :class:`AnswersScreen` lists one condition's
answers with each judge's score for one metric; :class:`AnswerScreen` shows one answer in full —
question, response, every judge's scores and raw output, and its human ratings.

Both are pushed over the Results screen; ``Esc`` goes back. Every text shown comes from the
database or a model: control sequences are stripped and nothing is read as markup. Every read runs
in a thread (:mod:`emtui.loading`): the study's metrics and judges come read already (the Results
screen's ``facts``), the answers a page at a time, an answer's judgments and ratings when it opens.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Footer, Static

from db import Page
from emtui.screens.base import AreaScreen, shown_text
from emtui.widgets.paged_table import LOADING, Col, PagedTable
from engine.common.text import flat, one_line, strip_control
from engine.study.em_rule import describe

EM = "em_rate"
PAGE_SIZE = 50
SHORT_RAW = 24  # a per-score raw value this short is shown next to its score, a longer one under the raw output


def fmt_score(value: Any) -> str | None:
    """A score as a person reads it: ``3``, ``90.36``; None stays None (shown as a dash)."""
    if value is None:
        return None
    v = float(value)
    return str(int(v)) if v.is_integer() else f"{v:.2f}".rstrip("0").rstrip(".")


def judge_labels(judges: list[dict[str, Any]]) -> dict[int, str]:
    """Judge id -> name, suffixed with ``#id`` where two judges share a name."""
    names = [j["name"] for j in judges]
    return {int(j["id"]): j["name"] if names.count(j["name"]) == 1 else f"{j['name']}#{j['id']}" for j in judges}


def em_note(em: dict[str, Any] | None) -> str:
    return f"EM: {describe(em)}" if em else ""


class AnswersScreen(AreaScreen):
    """One condition's answers, a page at a time, with each judge's score for one metric."""

    AREA = "results"
    AUTO_FOCUS = "#answers-table"
    BINDINGS = [
        Binding("enter", "open", "Open answer", priority=True, id="answers.open"),
        Binding("m", "next_metric", "Metric", id="answers.metric"),
        Binding("escape", "back", "Back", id="answers.back"),
    ]

    def __init__(self, *, study_id: int, study_name: str, condition_id: int, condition: str, metric: str,
                 facts: dict[str, Any], em: dict[str, Any] | None = None) -> None:
        """``facts``: the study's ``metrics``, ``human_metrics`` and ``judges``, read before (in a thread:
        :func:`emtui.screens.results.study_facts`)."""
        super().__init__()
        self.study_id = study_id
        self.study_name = study_name
        self.condition_id = condition_id
        self.condition = condition
        self.em = em or None
        # the judges' metrics, then those only people rated (a human-rated study may have no judges)
        self.human_metrics: list[str] = list(facts["human_metrics"])
        judged: list[str] = list(facts["metrics"])
        self.metrics = judged + [m for m in self.human_metrics if m not in judged]
        # an EM rate is computed from one metric (and coherence): list that metric's scores
        self.metric = (em or {}).get("metric", metric) if metric == EM else metric
        if self.metric not in self.metrics and self.metrics:
            self.metric = self.metrics[0]
        self.from_em = metric == EM
        self.judges: list[dict[str, Any]] = list(facts["judges"])
        self.labels = judge_labels(self.judges)
        self.preview_width = 60  # the answer column's width (body)

    def body(self) -> ComposeResult:
        yield Static(id="answers-info")
        width = self.app.size.width or 80
        longest = max((len(one_line(v, 200)) for v in self.labels.values()), default=8)
        judge_w = 8 if width < 100 else min(16, max(8, longest))  # wider terminals: whole names
        cols = [Col("question_key", "Question", 14)]
        # borders 2, question 14 + 2, judges, panel 6 + 2, humans 6 + 2, answer's padding 2, scrollbar 2
        fixed = 2 + 16 + (judge_w + 2) * len(self.judges) + 8 + (8 if self.human_metrics else 0) + 2 + 2
        self.preview_width = max(16, width - fixed)
        cols.append(Col("preview", "Answer", self.preview_width))
        # labels are Text: a judge's name is never read as markup
        cols += [Col(f"j{j['id']}", Text(one_line(self.labels[int(j["id"])], judge_w)),  # type: ignore[arg-type]
                     judge_w, justify="right") for j in self.judges]
        cols.append(Col("panel", "Panel", 6, justify="right"))
        if self.human_metrics:  # the mean of the people's ratings, apart from the judges
            cols.append(Col("humans", "Humans", 6, justify="right"))
        yield PagedTable(cols, self.fetch, id="answers-table", page_size=PAGE_SIZE,
                         empty="No answers in this condition")

    def on_mount(self) -> None:
        self.query_one(Footer).compact = True
        self.set_title()

    def set_title(self) -> None:
        self.query_one("#answers-table").border_title = Text(
            f"Answers of {one_line(self.condition, 30)}: scores for {one_line(self.metric, 20)} (Enter: open)")

    def fetch(self, limit: int, offset: int) -> Page:
        """A page of answers with each judge's score for the metric shown (in a thread)."""
        page = self.store.answers_page(self.condition_id, limit=limit, offset=offset)
        for r in page.rows:
            r["id"] = r["generation_id"]
            # cut here, in the thread: the UI thread flattens only what the column shows (one_line again: the same)
            r["preview"] = None if r["response"] is None else one_line(r["response"], self.preview_width)
            values = []
            for j in r["judgments"]:
                score = j["scores"].get(self.metric)
                r[f"j{j['judge_id']}"] = fmt_score(score)
                if score is not None:
                    values.append(float(score))
            r["panel"] = fmt_score(round(sum(values) / len(values), 2)) if values else None
        if self.human_metrics:
            humans = self.store.human_rating_means([r["id"] for r in page.rows], self.metric)
            for r in page.rows:
                mean = humans.get(int(r["id"]))
                r["humans"] = None if mean is None else fmt_score(round(mean, 2))
        return page

    def after_reload(self) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        text.append("Study ", style="dim")
        text.append(flat(self.study_name), style="bold")  # one line each: a name's line breaks made spaces
        text.append("  condition ", style="dim")
        text.append(flat(self.condition), style="bold")
        text.append("  metric ", style="dim")
        text.append(flat(self.metric), style="bold")
        if self.from_em:
            text.append("\n" + flat(em_note(self.em)) + "  (the EM rate's metric)", style="dim")
        else:
            text.append("\nJudges: ", style="dim")
            text.append(flat(", ".join(self.labels.values())) or "none")
            if self.human_metrics:
                text.append("  Humans: ", style="dim")
                text.append("the mean of the people's ratings")
            text.append("  · m: next metric", style="dim")
        self.query_one("#answers-info", Static).update(text)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_next_metric(self) -> None:
        if not self.metrics:
            return
        i = self.metrics.index(self.metric) if self.metric in self.metrics else -1
        self.metric = self.metrics[(i + 1) % len(self.metrics)]
        self.from_em = False
        self.set_title()
        self.reload()

    def action_open(self) -> None:
        row = self.query_one("#answers-table", PagedTable).selected_row()
        if row is None:
            self.notify("No answer to open", severity="warning")
            return
        self.app.push_screen(AnswerScreen(row, study_name=self.study_name, condition=self.condition,
                                          condition_id=self.condition_id, metric=self.metric))


class AnswerScreen(AreaScreen):
    """One answer in full: question, response, each judge's scores and raw output, human ratings."""

    AREA = "results"
    AUTO_FOCUS = "#answer-scroll"
    BINDINGS = [Binding("escape", "back", "Back", id="answers.close")]

    def __init__(self, row: dict[str, Any], *, study_name: str, condition: str, condition_id: int,
                 metric: str) -> None:
        super().__init__()
        self.row = row
        self.study_name = study_name
        self.condition = condition
        self.condition_id = condition_id
        self.metric = metric

    def body(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll(id="answer-scroll"):
                yield Static(Text(LOADING, style="dim"), id="answer-text")

    def on_mount(self) -> None:
        self.query_one("#answer-scroll").border_title = Text(
            f"Answer {self.row['generation_id']} of {one_line(self.condition, 30)} (↑↓ PgUp PgDn scroll, Esc back)")

    def action_back(self) -> None:
        self.app.pop_screen()

    def after_reload(self) -> None:
        store, generation_id = self.store, int(self.row["generation_id"])
        self.load("answer",
                  lambda: (store.generation_judgments(generation_id), store.generation_ratings(generation_id)),
                  lambda got: self.query_one("#answer-text", Static).update(self.content(*got)))

    @staticmethod
    def human_ratings(ratings: list[dict[str, Any]]) -> str:
        if not ratings:
            return "no human ratings"
        # model raters are listed apart, so no one mistakes them for people
        lines = [f"{r['rater_kind']:5} {r['annotator']}: {r['metric']} = "
                 f"{'—' if r['score'] is None else r['score']:g}" + (f"  ({r['note']})" if r["note"] else "")
                 + ("  [flagged]" if r["flagged"] else "") for r in ratings]
        return "\n".join(lines)

    def content(self, judgments: list[dict[str, Any]], ratings: list[dict[str, Any]]) -> Text:
        """The answer in full, from its row and its ``judgments`` and ``ratings`` (read in a thread)."""
        r = self.row
        text = Text()

        def head(title: str) -> None:
            if text.plain:
                text.rstrip()
                text.append("\n\n")
            text.append(title, style="bold underline")
            text.append("\n")

        def field(label: str, value: Any) -> None:
            text.append(f"{label}: ", style="bold")
            text.append(strip_control("" if value is None else str(value)))
            text.append("\n")

        head(f"Answer {r['generation_id']}")
        field("Study", self.study_name)
        field("Condition", self.condition)
        field("Model", r.get("model"))
        where = [f"key {r.get('question_key')}"]
        if r.get("category"):
            where.append(f"category {r['category']}")
        if r.get("paraphrase"):
            where.append(f"paraphrase {r['paraphrase']}")
        where.append(f"sample {r.get('sample_index') or 0}")
        field("Item", ", ".join(str(w) for w in where))
        head(f"Scores by judge ({one_line(self.metric, 30)} first)")
        by_judgment: dict[int, list[dict[str, Any]]] = {}
        for j in judgments:
            by_judgment.setdefault(int(j["judgment_id"]), []).append(j)
        if not by_judgment:
            text.append("not judged yet")
        for rows in by_judgment.values():
            first = rows[0]
            text.append(strip_control(first["judge"]), style="bold")
            text.append(":")
            scores = sorted((s for s in rows if s["metric"] is not None),
                            key=lambda s: (s["metric"] != self.metric, s["metric"]))
            for s in scores:
                style = "bold reverse" if s["metric"] == self.metric else ""
                text.append("  ")
                text.append(f"{strip_control(s['metric'])} {fmt_score(s['score']) or 'missing'}", style=style)
                raw = "" if s.get("raw") is None else strip_control(str(s["raw"]))
                if raw and raw != fmt_score(s["score"]) and len(raw) <= SHORT_RAW:
                    text.append(f" (raw {raw})", style="dim")
            if not scores:
                text.append("  no scores recorded")
            if first["status"] != "ok":
                text.append(f"  [{strip_control(first['status'])}]", style="bold red")
            text.append("\n")
            if first.get("error"):
                text.append("  error: ", style="bold red")
                text.append(strip_control(first["error"]) + "\n")
        head("Question")
        text.append(shown_text(r.get("question")) if r.get("question") else Text("—"))
        head("Response")
        text.append(shown_text(r.get("response")) if r.get("response") else Text("—"))
        for rows in by_judgment.values():
            first = rows[0]
            model = "" if first["judge_model"] == first["judge"] else f" ({one_line(first['judge_model'], 40)})"
            head(f"Raw output: {one_line(first['judge'], 30)}{model}")
            raw_output = first.get("raw_output")
            text.append(shown_text(raw_output) if raw_output else Text("— (none recorded)"))
            for s in rows:  # long per-score raw values (e.g. a logprob distribution) go here
                raw = "" if s.get("raw") is None else strip_control(str(s["raw"]))
                if s["metric"] is not None and len(raw) > SHORT_RAW:
                    text.append(f"\n{strip_control(s['metric'])} raw: ", style="bold")
                    text.append(raw)
        head("Human ratings")
        text.append(strip_control(self.human_ratings(ratings)))  # names and notes are untrusted
        return text
