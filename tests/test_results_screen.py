"""Pilot tests of the Results screen and its drill-down (the Answers screens), on real SQLite
files: the political-content study imported from ../shared/fixtures (skipped when absent), and
a tiny synthetic study built through the store's methods (always runs)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from rich.text import Text
from textual.widgets import DataTable, Static

import db
from conftest import shared_fixtures_dir
from emtui.app import AREAS, create_app
from emtui.bindings import all_bindings
from emtui.screens.answers import AnswerScreen, AnswersScreen
from emtui.screens.help import HelpScreen
from emtui.screens.results import ResultsScreen
from emtui.widgets.bar_chart import BarChart
from emtui.widgets.paged_table import PagedTable
from engine.common.text import strip_control
from engine.settings import Settings
from engine.study.study_file import load_study, register_study
from tui_helpers import plain

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = shared_fixtures_dir() / "political_seed"
RESULTS_KEY = next(a.key for a in AREAS if a.name == "results")
CONDITIONS = ["v2_base", "v2_betley_real", "v2_neutral", "v2_political", "v2_reformed", "v2_valence"]


# -- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def political_db(tmp_path_factory) -> Path:
    """The political-content study imported once per module; each test copies the file."""
    if not FIXTURES.is_dir():
        pytest.skip(f"{FIXTURES} is absent: the political-seed files are read from ../shared/fixtures")
    from engine.importers.political_seed import import_political_seed

    path = tmp_path_factory.mktemp("political") / "political.db"
    store = db.open_store(path)
    import_political_seed(store, FIXTURES)
    store.close()
    return path


@pytest.fixture
def political_store(political_db, tmp_path):
    path = tmp_path / "p.db"
    shutil.copy(political_db, path)
    store = db.open_store(path)
    yield store
    store.close()


@pytest.fixture
def empty_store(tmp_path):
    store = db.open_store(tmp_path / "e.db")
    yield store
    store.close()


EVIL = "\x1b[31mred\x1b]0;pwned\x07 [bold]x[/bold]"
SYN_EM = {"metric": "aligned", "threshold": 30, "direction": "below", "coherence_metric": "coherent",
          "coherence_min": 50, "denominator": "coherent"}
# aligned / coherent per answer: (judge a, judge b); None is a failed score
SYN_SCORES = {
    "base": [((90, 80), (95, 85)), ((80, 70), (90, 90)), ((70, 90), (60, 80)), ((100, 100), (None, 90))],
    "tuned" + EVIL: [((10, 80), (20, 70)), ((20, 90), (25, 80)), ((90, 60), (85, 70)), ((5, 20), (10, 30))],
}


def make_synthetic(store) -> int:
    """Two studies: one registered without scores, then a two-judge study with an EM definition."""
    register_study(store, load_study(str(ROOT / "data" / "studies" / "insecure_code.toml")))
    sid = store.add_study(name="synthetic", description="tiny", origin="test", spec_hash="sha256:syn",
                          spec={"em": SYN_EM, "seed": 1})
    model = store.ensure_model(name="m", kind="external", source="test")
    questions = [{"key": f"q{i}", "category": "c", "text": f"Question {i}?"} for i in range(4)]
    set_id = store.ensure_eval_set(name="syn", source="test", content_hash="syn", questions=questions)
    qids = [q["id"] for q in store.list_questions(set_id).rows]
    rubric = store.ensure_rubric(name="ac", content_hash="ac", body="rate",
                                 metrics=[{"name": "aligned"}, {"name": "coherent"}])
    judges = [store.ensure_import_judge(name=n, model=f"{n}-model", params={}) for n in ("judge-a", "judge-b")]
    for j in judges:
        store.link_study_judge(sid, j)
    for role, (cname, answers) in zip(("baseline", "treatment"), SYN_SCORES.items(), strict=True):
        cid = store.add_condition(study_id=sid, name=cname, recipe={"role": role})
        gids = store.insert_generations([
            {"question_id": qids[i], "condition_id": cid, "model_id": model, "settings": {"c": cname},
             "settings_hash": cname, "seed": 0, "sample_index": 0, "prompt": f"Question {i}?",
             "response": f"{cname} answer {i}: " + "long text " * 40 + EVIL}
            for i in range(len(answers))])
        store.insert_judgments(
            {"generation_id": g, "judge_id": j, "rubric_id": rubric,
             "raw_output": f"raw from {jn} on {g} {EVIL}",
             "scores": {"aligned": s[0], "coherent": s[1]}}
            for g, per_judge in zip(gids, answers, strict=True)
            for j, jn, s in zip(judges, ("a", "b"), per_judge, strict=True))
    return sid


@pytest.fixture
def synthetic_store(empty_store):
    make_synthetic(empty_store)
    return empty_store


# -- helpers -------------------------------------------------------------------------------------


def row(table: DataTable, index: int) -> list[str]:
    return [plain(c).strip() for c in table.get_row_at(index)]


def title(widget) -> str:
    return Text.from_markup(widget.border_title or "").plain


def subtitle(widget) -> str:
    return Text.from_markup(widget.border_subtitle or "").plain


def static_text(widget: Static) -> str:
    return plain(widget.render())


def grid(app) -> DataTable:
    return app.screen.query_one("#results-grid", DataTable)


def grid_cells(app) -> dict[str, dict[str, str]]:
    """{condition: {column label: cell}} of the scores grid."""
    t = grid(app)
    labels = [plain(c.label).strip() for c in t.columns.values()]
    return {r[0]: dict(zip(labels, r, strict=True)) for r in (row(t, i) for i in range(t.row_count))}


def chart_lines(app) -> list[str]:
    chart = app.screen.query_one("#results-chart", BarChart)
    return chart.chart(chart.content_region.width).plain.splitlines()


async def open_results(pilot) -> ResultsScreen:
    await pilot.press(RESULTS_KEY)
    await settle(pilot)
    assert isinstance(pilot.app.screen, ResultsScreen)
    return pilot.app.screen


async def settle(pilot) -> None:
    """Let the summary worker finish and its result reach the screen."""
    await pilot.pause()
    for _ in range(400):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        screen = pilot.app.screen
        if not isinstance(screen, ResultsScreen) or not screen.computing:
            break
        await pilot.pause(0.025)
    screen = pilot.app.screen
    if isinstance(screen, ResultsScreen):
        assert not screen.computing, "the summary did not finish in 10 s"


# -- the political-content study ------------------------------------------------------------------


@pytest.mark.fixtures
async def test_panel_table_judges_and_chart(political_store):
    app = create_app(political_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        status = static_text(screen.query_one("#results-status", Static))
        assert "Study 1/1 political-seed" in status and "judge panel" in status
        assert "by category" in status and "checkpoints 0" in status
        t = grid(app)
        assert app.focused is t
        assert title(t).startswith("Panel (mean) · mean [95% CI]")
        assert f"{Settings().tui_resamples:,} resamples" in title(t) and "10,000" in title(t)
        panel = grid_cells(app)
        assert list(panel) == CONDITIONS
        assert panel["v2_base"]["drift"].startswith("0.07 [")
        assert panel["v2_political"]["drift"].startswith("2.79 [")
        assert panel["v2_betley_real"]["drift"].startswith("1.36 [")
        assert panel["v2_base"]["n/miss"] == "150/0"
        lo, hi = panel["v2_political"]["drift"].split("[")[1].rstrip("]").split(",")
        assert float(lo) < 2.79 < float(hi)

        # the chart: a bar per condition (v2_base's is too short to draw) with its whisker
        lines = chart_lines(app)
        assert len(lines) == len(CONDITIONS) + 1  # + the scale
        for name, line in zip(CONDITIONS, lines[:-1], strict=True):
            assert line.startswith(name), line
            assert ("├" in line and "┤" in line) or "┼" in line, line
            assert name == "v2_base" or "█" in line, line
        assert lines[-1].strip().startswith("0") and lines[-1].rstrip().endswith("3")
        assert "drift" in title(screen.query_one("#results-chart-box"))
        assert lines[CONDITIONS.index("v2_political")].count("█") > lines[0].count("█")

        # j cycles the judge: panel -> Claude 3 Haiku -> Mistral -> panel
        await pilot.press("j")
        await pilot.pause()
        assert title(t).startswith("Claude 3 Haiku")
        haiku = grid_cells(app)
        assert haiku["v2_betley_real"]["drift"].startswith("0.84 [")
        assert haiku != panel
        assert "Claude 3 Haiku" in title(screen.query_one("#results-chart-box"))
        await pilot.press("j")
        await pilot.pause()
        assert title(t).startswith("Mistral Large 3")
        assert grid_cells(app)["v2_betley_real"]["drift"].startswith("1.88 [")
        await pilot.press("j")
        await pilot.pause()
        assert grid_cells(app) == panel

        # m cycles the chart's metric
        await pilot.press("m")
        await pilot.pause()
        assert "persona" in title(screen.query_one("#results-chart-box"))
        assert chart_lines(app)[CONDITIONS.index("v2_political")].endswith(panel["v2_political"]["persona"])


@pytest.mark.fixtures
async def test_agreement_comparisons_and_counts_views(political_store):
    app = create_app(political_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        for view in ("rates", "breakdowns", "agreement"):
            await pilot.press("v")
            await pilot.pause()
            assert f"view {view}" in static_text(screen.query_one("#results-status", Static))
        agreement = screen.query_one("#results-agreement", DataTable)
        assert app.focused is agreement
        assert "Krippendorff α" in title(agreement)
        rows = [row(agreement, i) for i in range(agreement.row_count)]
        assert len(rows) == (len(CONDITIONS) + 2) * 3  # conditions, all, mean × 3 metrics
        firsts = [r[0] for r in rows if r[0]]
        assert firsts == [*CONDITIONS, "all", "mean"]
        mean_drift = rows[firsts.index("mean") * 3]
        assert mean_drift[1] == "drift" and "[" not in mean_drift[2]  # the mean of α has no CI
        assert "view agreement" in static_text(screen.query_one("#results-status", Static))

        await pilot.press("v")
        await pilot.pause()
        comparisons = screen.query_one("#results-comparisons", DataTable)
        assert app.focused is comparisons
        assert title(comparisons).startswith("Comparisons · panel")
        rows = [row(comparisons, i) for i in range(comparisons.row_count)]
        assert len(rows) == 5 * 3  # five conditions against the baseline, three metrics
        political = next(r for r in rows if r[0] == "v2_political vs v2_base" and r[1] == "drift")
        assert political[2].startswith("41.80 [") and political[3] == "<1e-4" and political[4] == "+1.00"
        await pilot.press("j")  # comparisons follow the judge
        await pilot.pause()
        assert title(comparisons).startswith("Comparisons · Claude 3 Haiku")

        await pilot.press("v")
        await pilot.pause()
        counts = screen.query_one("#results-table", PagedTable)
        assert counts.row_count == len(CONDITIONS)
        await pilot.press("v")  # back to the scores
        await pilot.pause()
        assert app.focused is grid(app)


@pytest.mark.fixtures
async def test_breakdowns_by_category_and_question_on_request(political_store):
    app = create_app(political_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        await pilot.press("b")  # straight to the breakdowns view, by the first dimension found
        await pilot.pause()
        by = screen.query_one("#results-by", DataTable)
        assert app.focused is by
        assert title(by).startswith("Panel (mean) by category")
        rows = [row(by, i) for i in range(by.row_count)]
        assert len(rows) == len(CONDITIONS) * 3  # persona, freeform, safety per condition
        assert rows[0][0] == "v2_base" and {r[1] for r in rows} == {"freeform", "persona", "safety"}
        assert all(r[2] == "50" for r in rows)  # 50 probes per category and condition
        # at 80 columns n and every number are on screen: the label columns give way
        drawn = ["".join(s.text for s in by.render_line(y)) for y in range(by.size.height)]
        assert drawn[0].split()[:3] == ["condition", "category", "n"]
        for line in drawn[1:len(rows) + 1]:
            assert line.split()[1 if line.startswith(" ") else 2] == "50", line
            assert line.rstrip().endswith("]"), line
        # the panel's drift per category comes from the same answers as the condition's
        report = screen.report
        base = [r for r in report["breakdowns"] if r["condition"] == "v2_base" and r["judge"] == "panel"
                and r["metric"] == "drift"]
        assert sum(r["mean"] * r["n"] for r in base) / 150 == pytest.approx(0.0667, abs=1e-4)
        await pilot.press("b")  # questions: computed when asked
        await settle(pilot)
        for _ in range(200):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause()
            if "Computing" not in subtitle(by):
                break
        assert title(by).startswith("Panel (mean) by question")
        groups = {row(by, i)[1] for i in range(by.row_count)}
        assert len(groups) > 20
        await pilot.press("j")  # a judge's breakdown
        await pilot.pause()
        assert title(by).startswith("Claude 3 Haiku by question")
        await pilot.press("b")  # and round again
        await pilot.pause()
        assert title(by).startswith("Claude 3 Haiku by category")


@pytest.mark.fixtures
async def test_drill_down_from_political_drift(political_store):
    app = create_app(political_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await open_results(pilot)
        t = grid(app)
        drift_col = [plain(c.label).strip() for c in t.columns.values()].index("drift")
        t.move_cursor(row=CONDITIONS.index("v2_political"), column=drift_col)
        await pilot.press("enter")
        await pilot.pause()
        answers = app.screen
        assert isinstance(answers, AnswersScreen)
        assert answers.condition == "v2_political" and answers.metric == "drift"
        table = answers.query_one("#answers-table", PagedTable)
        assert app.focused is table
        assert subtitle(table).startswith("1–50 of 150")
        info = static_text(answers.query_one("#answers-info", Static))
        assert "v2_political" in info and "drift" in info
        labels = [plain(c.label) for c in table.columns.values()]
        assert labels[:2] == ["Question", "Answer"] and labels[-1] == "Panel"

        cid = answers.condition_id
        first = political_store.answers_page(cid, limit=1, offset=0).rows[0]
        shown = row(table, 0)
        assert shown[0] == first["question_key"]
        scores = [j["scores"]["drift"] for j in first["judgments"]]
        assert len(scores) == 2
        assert shown[2:4] == [f"{s:g}" for s in scores]

        await pilot.press("right_square_bracket")  # pages
        await pilot.pause()
        assert subtitle(table).startswith("51–100 of 150")
        await pilot.press("left_square_bracket")
        await pilot.pause()

        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, AnswerScreen)
        text = static_text(detail.query_one("#answer-text", Static))
        assert strip_control(first["question"]) in text
        assert strip_control(first["response"]) in text  # in full, not a preview
        judgments = political_store.generation_judgments(first["generation_id"])
        for j in judgments:
            if j["metric"] == "drift":
                assert f"drift {j['score']:g}" in text
        for raw in {j["raw_output"] for j in judgments}:
            assert strip_control(raw) in text
        assert "Claude 3 Haiku" in text and "Mistral Large 3" in text
        assert "no human ratings" in text

        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is answers
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)
        assert grid(app).cursor_coordinate == (CONDITIONS.index("v2_political"), drift_col)


# -- a tiny synthetic study (no fixtures needed) -------------------------------------------------------


async def test_synthetic_study_em_rate_drill_down_and_untrusted_text(synthetic_store):
    app = create_app(synthetic_store, keymap={})
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_results(pilot)
        status = static_text(screen.query_one("#results-status", Static))
        assert "Study 2/2 synthetic" in status  # the first study with scores, not the empty one
        cells = grid_cells(app)
        tuned = "tuned" + strip_control(EVIL)
        assert list(cells) == ["base", tuned]
        labels = [plain(c.label).strip() for c in grid(app).columns.values()]
        assert labels == ["condition", "em_rate", "aligned", "coherent", "n/miss"]
        # panel aligned of base: the answers' judge means (92.5, 85, 65, 100) -> 85.625
        assert cells["base"]["aligned"].startswith("85.62 [")
        assert cells["base"]["em_rate"].startswith("0.0% [")
        # tuned: panel (aligned, coherent) = (15, 75), (22.5, 85), (87.5, 65), (7.5, 25): 2 misaligned
        # of the 3 coherent ones
        assert cells[tuned]["em_rate"].startswith("66.7% [")
        assert cells["base"]["n/miss"] == "4/0"
        # the chart shows the EM rate first, as percentages
        lines = chart_lines(app)
        assert "EM rate" in title(screen.query_one("#results-chart-box"))
        assert lines[1].rstrip().endswith("66.7% [" + cells[tuned]["em_rate"].split("[")[1])
        assert lines[-1].rstrip().endswith("100%")
        # untrusted names: cleaned and shown verbatim, never markup
        drawn = "\n".join("".join(s.text for s in grid(app).render_line(y)) for y in range(grid(app).size.height))
        assert "[bold]x[/bold]" in drawn and "\x1b" not in drawn

        # one judge: judge-a's aligned for base is 85
        await pilot.press("j")
        await pilot.pause()
        assert title(grid(app)).startswith("judge-a")
        assert grid_cells(app)["base"]["aligned"].startswith("85.00 [")
        await pilot.press("j")
        await pilot.pause()
        assert title(grid(app)).startswith("judge-b")
        # judge-b's failed score is missing, not zero: aligned 3 scored, 1 missing; coherent 4, 0
        assert grid_cells(app)["base"]["n/miss"] == "3/1, 4/0"

        # Enter on the EM rate cell lists the EM metric's scores
        grid(app).move_cursor(row=1, column=1)
        await pilot.press("enter")
        await pilot.pause()
        answers = app.screen
        assert isinstance(answers, AnswersScreen)
        assert answers.metric == "aligned" and answers.from_em
        table = answers.query_one("#answers-table", PagedTable)
        assert subtitle(table) == "1–4 of 4"
        assert [row(table, i)[2:] for i in range(4)] == [["10", "20", "15"], ["20", "25", "22.5"],
                                                         ["90", "85", "87.5"], ["5", "10", "7.5"]]
        assert "EM: aligned < 30" in static_text(answers.query_one("#answers-info", Static))
        await pilot.press("m")  # the next metric
        await pilot.pause()
        assert answers.metric == "coherent"
        assert row(table, 0)[2:] == ["80", "70", "75"]
        await pilot.press("enter")
        await pilot.pause()
        detail = app.screen
        assert isinstance(detail, AnswerScreen)
        text = static_text(detail.query_one("#answer-text", Static))
        assert "Question 0?" in text and "raw from a" in text and "raw from b" in text
        assert "[bold]x[/bold]" in text and "pwned" not in text and "\x1b" not in text
        assert "coherent 80" in text and "aligned 10" in text
        drawn = "\n".join("".join(s.text for s in detail.query_one("#answer-text").render_line(y))
                          for y in range(detail.query_one("#answer-text").size.height))
        assert "\x1b" not in drawn
        await pilot.press("escape", "escape")
        await settle(pilot)
        assert isinstance(app.screen, ResultsScreen)

        # the study without scores says so; n / p move between studies
        await pilot.press("n")
        await pilot.pause()
        assert "Study 1/2 insecure-code-demo" in static_text(screen.query_one("#results-status", Static))
        assert title(grid(app)).startswith("No judged answers in this study yet")
        assert grid(app).row_count == 0
        await pilot.press("enter")  # nothing to drill into: a warning, no crash
        await pilot.pause()
        assert app.screen is screen
        await pilot.press("p")
        await settle(pilot)
        assert "Study 2/2 synthetic" in static_text(screen.query_one("#results-status", Static))
        assert grid(app).row_count == 2

        # r forgets the cache and computes again
        await pilot.press("r")
        await settle(pilot)
        assert grid_cells(app)["base"]["aligned"].startswith("85.62 [")


def store_chain_summary(store, study: str, study_hash: str) -> int:
    """The chain's last stage, as a worker runs it: a ``summary`` job claimed, its handler run, its result
    stored. Returns the job's id."""
    from engine.results.summary_job import summary_job
    from engine.runs.context import JobContext
    from engine.runs.progress import Progress

    found = store.find_study(study)
    job_id = store.enqueue_job("summary", {"study_id": found["id"], "study": study}, study_hash=study_hash)
    claimed = store.claim_job("test:1", kinds=["summary"])
    assert claimed["id"] == job_id
    result = summary_job(JobContext(job=claimed, store=store, progress=Progress(), db_path=Path(store.path)))
    store.finish_job(job_id, owner="test:1", result=result)
    return job_id


async def test_the_chains_stored_summary_is_shown_at_once_while_nothing_changed(synthetic_store):
    """A study whose chain stored its summary (10,000 resamples) shows it without computing one, and says so;
    once an answer's score changes it is stale, and r computes the screen's own (today's path)."""
    store = synthetic_store
    job = store_chain_summary(store, "synthetic", "sha256:syn")
    app = create_app(store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        status = static_text(screen.query_one("#results-status", Static))
        assert f"the chain's summary (job {job}, " in status and " UTC)" in status, status
        assert "10,000 resamples (stored)" in title(grid(app))
        assert grid_cells(app)["base"]["aligned"].startswith("85.62 [")
        with store.transaction():  # a score changed since: the stored summary is not the current one
            store.conn.execute("UPDATE judgment_scores SET score = 40 WHERE score = 90")
        for _ in range(200):
            await pilot.pause(0.05)
            status = static_text(screen.query_one("#results-status", Static))
            if "stale" in status:
                break
        assert "stale (changes): r recomputes" in status and "chain's summary" not in status, status
        await pilot.press("r")
        await settle(pilot)
        status = static_text(screen.query_one("#results-status", Static))
        assert "stale" not in status and "chain's summary" not in status, status
        assert "2,000 resamples (summary: 10,000)" in title(grid(app))
        assert not grid_cells(app)["base"]["aligned"].startswith("85.62 [")  # the changed score counted


async def test_empty_database_shows_an_empty_state(empty_store):
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_results(pilot)
        assert static_text(screen.query_one("#results-status", Static)).startswith("No studies yet")
        assert title(grid(app)) == "No studies in this database"
        assert grid(app).row_count == 0
        assert "No studies" in chart_lines(app)[0]
        for key in ("n", "p", "j", "m", "enter", "v", "v", "v", "v"):
            await pilot.press(key)
            await pilot.pause()
        assert app.screen is screen


async def test_help_lists_the_results_and_answers_keys(empty_store):
    app = create_app(empty_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await open_results(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        ids = {binding_id for _, binding_id, _, _ in all_bindings()}
        expected = {"results.next-study", "results.prev-study", "results.judge", "results.metric",
                    "results.view", "results.answers", "answers.open", "answers.metric", "answers.back",
                    "answers.close"}
        assert expected <= ids
        help_ids = {plain(c) for c in app.screen.query_one("#help-table", DataTable).get_column_at(3)}
        assert expected <= help_ids
    for cls in (ResultsScreen, AnswersScreen, AnswerScreen):  # every binding has an id of its area
        for b in cls.BINDINGS:
            assert b.id and b.id.split(".")[0] in ("results", "answers"), b


async def test_rates_and_checkpoint_curves(tmp_path):
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    store = db.open_store(tmp_path / "ck.db")
    make_synthetic_study(store, SyntheticSpec(answers_per_condition=60, checkpoints=(100, 200, 300),
                                              refusal_rate=0.1, aligned_means={"treatment": 20.0}))
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_results(pilot)
            assert "checkpoints 3" in static_text(screen.query_one("#results-status", Static))
            await pilot.press("v")
            await pilot.pause()
            rates = screen.query_one("#results-rates", DataTable)
            labels = [plain(c.label).strip() for c in rates.columns.values()]
            assert labels == ["condition", "EM", "n", "coherent", "n", "refusals", "n"]
            rows = {r[0]: r for r in (row(rates, i) for i in range(rates.row_count))}
            assert list(rows) == ["base", "control", "treatment"]
            assert all(r[5].endswith("]") and "%" in r[5] for r in rows.values())
            await pilot.press("b")
            await pilot.pause()
            by = screen.query_one("#results-by", DataTable)
            assert title(by).startswith("Panel (mean) by checkpoint")
            groups = [row(by, i)[1] for i in range(by.row_count)]
            assert groups == ["final", "final", "step 100", "step 200", "step 300", "final"]
            curves = static_text(screen.query_one("#results-curves", Static))
            assert curves.startswith("Curves over checkpoints: EM rate")
            line = next(ln for ln in curves.splitlines() if ln.startswith("treatment"))
            spark = line.split()[1]
            assert len(spark) == 4 and spark[-1] in "▆▇█" and spark[0] in "▁▂▃"  # EM grows with training
            assert "(step 100 … final)" in line
            await pilot.press("m")  # the curves follow the chart's metric
            await pilot.pause()
            assert "aligned" in static_text(screen.query_one("#results-curves", Static)).splitlines()[0]
    finally:
        store.close()


# -- a study only people rated: the summary's human rows on the screen --------------------------------


HUMAN_FILE = FIXTURES / "human_eval_reformed_political_rerun.json"


def counts_rows(app) -> list[dict[str, str]]:
    t = app.screen.query_one("#results-table", PagedTable)
    labels = [plain(c.label).strip() for c in t.columns.values()]
    return [dict(zip(labels, row(t, i), strict=True)) for i in range(t.row_count)]


@pytest.mark.fixtures
async def test_political_seed_human_study_shows_the_human_mean(tmp_path):
    """`emtui summary` reports the author's mean 1.80 [1.27, 2.33]; Results said "No judged answers"."""
    if not HUMAN_FILE.is_file():
        pytest.skip(f"{HUMAN_FILE} is absent")
    from engine.importers.political_seed_human import import_political_seed_human
    from engine.results.summary import SummaryOptions, build_summary

    store = db.open_store(tmp_path / "h.db")
    try:
        import_political_seed_human(store, HUMAN_FILE)
        summary = [r for r in build_summary(store, SummaryOptions())["scores"] if r["judge"] == "human"]
        assert [(round(r["mean"], 2), round(r["ci_low"], 2), round(r["ci_high"], 2)) for r in summary] == \
            [(1.80, 1.27, 2.33)]
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_results(pilot)
            status = static_text(screen.query_one("#results-status", Static))
            assert "judge humans (" in status
            assert title(grid(app)).startswith("humans (")
            cells = grid_cells(app)
            assert list(cells) == ["rerun_reformed_political"]
            shown = cells["rerun_reformed_political"]
            assert shown["misalignment"].startswith("1.80 [") and shown["n/miss"] == "15/0"
            low, high = (float(x) for x in shown["misalignment"].split("[")[1].rstrip("]").split(","))
            assert low == pytest.approx(1.27, abs=0.07) and high == pytest.approx(2.33, abs=0.07)  # 2,000 resamples
            assert "misalignment" in title(screen.query_one("#results-chart-box"))
            await pilot.press(*"vvvvv")  # counts: 15 answers, none judged, 15 rated
            await pilot.pause()
            [counts] = counts_rows(app)
            assert {k: counts[k] for k in ("Answers", "Judged", "Failed", "Rated")} == \
                {"Answers": "15", "Judged": "0", "Failed": "0", "Rated": "15"}
    finally:
        store.close()


@pytest.mark.fixtures
async def test_counts_view_counts_answers_judged_not_judgments(political_store):
    """Two judges judged each of 150 answers: Judged is 150, not the 300 judgments."""
    app = create_app(political_store, keymap={})
    async with app.run_test(size=(80, 24)) as pilot:
        await open_results(pilot)
        await pilot.press(*"vvvvv")
        await pilot.pause()
        rows = counts_rows(app)
        assert [r["Answers"] for r in rows] == ["150"] * 6
        assert [r["Judged"] for r in rows] == ["150"] * 6
        assert political_store.count("judgments") == 1800  # two per answer


async def test_human_only_study_and_its_answers(tmp_path):
    """A study no judge scored, rated by two people: Results shows the human rows (and drills into
    the ratings), and the counts view counts answers, each no more than there are."""
    from demo_db import HUMAN_SCORES, build

    store = db.open_store(build(tmp_path / "demo.db"))
    try:
        app = create_app(store, keymap={})
        async with app.run_test(size=(80, 24)) as pilot:
            screen = await open_results(pilot)
            await pilot.press("n", "n")  # synthetic -> replicates -> human-only
            await settle(pilot)
            assert "Study 3/3 human-only" in static_text(screen.query_one("#results-status", Static))
            assert title(grid(app)).startswith("humans (human-pilot)")
            per_answer = [sum(s) / len(s) for s in zip(*HUMAN_SCORES.values(), strict=True)]
            mean = sum(per_answer) / len(per_answer)
            cells = grid_cells(app)["reformed-political"]
            assert cells["misalignment"].startswith(f"{mean:.2f} [") and cells["n/miss"] == "6/0"
            await pilot.press("j")  # the only "judge" is the people: j stays there
            await pilot.pause()
            assert title(grid(app)).startswith("humans (human-pilot)")

            grid(app).move_cursor(row=0, column=1)
            await pilot.press("enter")  # the answers behind the cell: each one's mean human rating
            await pilot.pause()
            answers = app.screen
            assert isinstance(answers, AnswersScreen) and answers.metric == "misalignment"
            table = answers.query_one("#answers-table", PagedTable)
            labels = [plain(c.label) for c in table.columns.values()]
            assert labels == ["Question", "Answer", "Panel", "Humans"]
            shown = sorted(float(row(table, i)[3]) for i in range(table.row_count))
            assert shown == sorted(per_answer)
            await pilot.press("escape")
            await settle(pilot)

            await pilot.press(*"vvvvv")
            await pilot.pause()
            rows = counts_rows(app)
            assert [r["Condition"] for r in rows] == ["base", "control", "treatment", "insecure", "secure",
                                                      "reformed-political"]
            for r in rows:
                assert int(r["Judged"]) <= int(r["Answers"]) and int(r["Rated"]) <= int(r["Answers"]), r
            assert rows[-1] == {"Study": "human-only", "Condition": "reformed-political", "Answers": "6", "Judged": "0",
                                "Failed": "0", "Rated": "6"}
            assert rows[0]["Judged"] == rows[0]["Answers"] == "40"  # two judges, 40 answers judged
    finally:
        store.close()
