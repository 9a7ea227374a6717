"""The Eval queue's evaluation runs (issue 13), driven by keys: the form (``n``) queues a run on the tiny model
as ``emtui generate`` would, a real worker (another process) answers it and the queue shows it done with its
tokens/s; ``a`` pages through the job's answers and Enter shows one whole. A bad field is refused next to it
and nothing is queued; what the engine refuses is said and the form stays open."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import Input, Select, SelectionList, Static

import db
from emtui.app import create_app
from emtui.screens.eval_form import EvalForm
from emtui.screens.fulltext import FullTextScreen
from emtui.screens.job_answers import JobAnswersScreen
from emtui.screens.queue import QueueScreen
from emtui.widgets.paged_table import PagedTable
from engine.study.study_file import load_study, register_study
from engine.training.queueing import queue_runs
from generation_study import write_generation_study
from tui_helpers import plain


def build(folder: Path) -> Path:
    """Two studies with eval sets (the one to pick second), a judge of the study, and the ``domain``
    condition's training queued (no worker trains it here): the form lists it as "after training"."""
    path = folder / "e.db"
    with db.open_store(path) as store:
        register_study(store, load_study(write_generation_study(folder / "first", name="another-study")))
        register_study(store, load_study(write_generation_study(folder / "gen")))
        study = store.find_study("gen-test")
        judge = store.ensure_judge(name="gpt-judge", provider="openai", model="gpt-4o", params={}, params_hash="p")
        store.link_study_judge(int(study["id"]), judge)
        assert queue_runs(store, study="gen-test", condition="domain").runs
    return path


def notified(app) -> list[str]:
    return [plain(n.message) for n in app._notifications]


async def wait_until(pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "not within the time"
        await pilot.pause(0.05)
        await pilot.pause()


async def press(pilot, *keys: str) -> None:
    for key in keys:
        await pilot.press(key)
        await pilot.pause()


def focused(app) -> str | None:
    return app.focused.id if app.focused is not None else None


def error_of(form: EvalForm, where: str) -> str:
    node = form.query_one(f"#eval-{where}" if where == "status" else f"#eval-{where}-error", Static)
    return plain(node.render()) if node.display else ""


async def open_form(pilot) -> EvalForm:
    await press(pilot, "4", "n")
    form = pilot.app.screen
    assert isinstance(form, EvalForm)
    return form


async def tab_to(pilot, widget_id: str) -> None:
    """Tab until ``widget_id`` has the focus (what a person does; a bound keeps a wrong form from looping)."""
    for _ in range(30):
        if focused(pilot.app) == widget_id:
            return
        await press(pilot, "tab")
    raise AssertionError(f"tab never reached #{widget_id} (at #{focused(pilot.app)})")


@pytest.mark.slow
async def test_a_run_queued_from_the_form_is_answered_by_a_worker_and_its_answers_open(tmp_path, monkeypatch,
                                                                                          cli_env):
    monkeypatch.setenv("EMTUI_TUI_QUEUE_POLL_S", "0.2")  # read by create_app's load_settings
    path = build(tmp_path)
    store = db.open_store(path)
    app = create_app(store, keymap={})
    worker = None
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            form = await open_form(pilot)
            assert focused(app) == "eval-study"
            assert form.query_one("#eval-study", Select).value == "another-study"
            await press(pilot, "enter", "down", "enter")  # the study: the second in the list
            assert form.query_one("#eval-study", Select).value == "gen-test"
            assert form.choices is not None and form.choices.study == "gen-test"
            states = {c.name: c.state for c in form.choices.conditions}
            assert states == {"domain": "training", "control": "untrained", "base": "model"}
            conditions = form.query_one("#eval-conditions", SelectionList)
            labels = [plain(conditions.get_option_at_index(i).prompt) for i in range(conditions.option_count)]
            assert "after training (job 1)" in labels[0] and "not trained" in labels[1]
            ids = {c.name: c.id for c in form.choices.conditions}
            assert sorted(conditions.selected) == [ids["domain"], ids["base"]]  # what can answer, on
            # the base condition alone: domain off (space), control cannot be ticked (no model, no training)
            await press(pilot, "tab")
            assert focused(app) == "eval-conditions"
            await press(pilot, "space")
            assert conditions.selected == [ids["base"]]
            await tab_to(pilot, "eval-samples")
            await press(pilot, "1")
            await tab_to(pilot, "eval-max_new_tokens")
            await press(pilot, "4")  # the field's text was selected on focus: 4 replaces the study's 8
            assert form.query_one("#eval-max_new_tokens", Input).value == "4"
            # 5 wordings x 1 sample x 2 variants (the study sets a trigger) x 1 model
            assert plain(form.query_one("#eval-count", Static).render()).startswith("10 answers")
            await tab_to(pilot, "eval-judges")
            await press(pilot, "space")  # the study's judge: recorded with the run
            await tab_to(pilot, "eval-queue")
            await press(pilot, "enter")
            await wait_until(pilot, lambda: isinstance(app.screen, QueueScreen))
            await wait_until(pilot, lambda: any(m.startswith("Queued job") for m in notified(app)))
            said = next(m for m in notified(app) if m.startswith("Queued job"))
            jobs = store._q("SELECT id, payload FROM jobs WHERE kind = 'generate'")
            assert len(jobs) == 1
            job_id = int(jobs[0]["id"])
            assert said.startswith(f"Queued job {job_id}: 10 answers with and without the trigger"), said
            payload = json.loads(jobs[0]["payload"])
            assert payload["conditions"] == [ids["base"]] and payload["samples"] == 1
            assert payload["settings"]["max_new_tokens"] == 4 and payload["settings"]["temperature"] == 1.0
            judge = store.study_judges(int(store.find_study("gen-test")["id"]))[0]
            assert payload["judges"] == [judge["id"]]

            # a worker in another process answers it (the generate job only: domain's training stays queued)
            worker = subprocess.Popen([sys.executable, "-m", "emtui", "worker", "--once", "--kinds", "generate",
                                       "--db", str(path)], env=cli_env(), cwd=str(tmp_path),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            table = app.screen.query_one("#jobs-table", PagedTable)

            def status() -> str:
                row = table.selected_row()
                return str(row["status"]) if row and int(row["id"]) == job_id else ""

            await wait_until(pilot, lambda: status() == "done", timeout=180)
            out, _ = worker.communicate(timeout=60)
            assert worker.returncode == 0, out
            row = table.get_row(str(job_id))
            assert plain(row[2]).strip() == "done" and "100%" in plain(row[3])
            assert plain(row[5]).strip() not in ("", "—")  # its tokens per second
            detail = plain(app.screen.query_one("#job-detail", Static).render())
            assert "tok/s" in detail and "batch" in detail

            # its answers: a page of them, then one whole
            await press(pilot, "a")
            assert isinstance(app.screen, JobAnswersScreen)
            answers = app.screen.query_one("#job-answers-table", PagedTable)
            await wait_until(pilot, lambda: answers.row_count == 10)
            first = answers.selected_row()
            assert first is not None
            info = plain(app.screen.query_one("#job-answers-info", Static).render())
            assert f"Job {job_id} done" in info and "10 of 10 answers written" in info
            with_trigger = [r for r in answers.current_page.rows if r["variant"] == "trigger"]
            assert len(with_trigger) == 5 and all(plain(answers.get_row(str(r["id"]))[2]) == "T"
                                                  for r in with_trigger)
            await press(pilot, "enter")
            assert isinstance(app.screen, FullTextScreen)
            text = app.screen.content().plain
            rec = store.generation_record(int(first["generation_id"]))
            assert f"Seed: {rec['seed']}" in text and f"Settings hash: {rec['settings_hash']}" in text
            assert rec["prompt"] in text and rec["question"] in text and '"max_new_tokens": 4' in text
            assert ("Variant: with the trigger" in text) == (rec["variant"] == "trigger")
            await press(pilot, "escape", "escape")
            assert isinstance(app.screen, QueueScreen)
            assert app._exception is None
    finally:
        if worker is not None and worker.poll() is None:
            worker.kill()
        store.close()


async def test_bad_fields_are_refused_by_name_and_nothing_is_queued(tmp_path):
    path = build(tmp_path)
    before = path.read_bytes()
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            form = await open_form(pilot)
            await tab_to(pilot, "eval-samples")
            await press(pilot, "0")
            await tab_to(pilot, "eval-temperature")
            await press(pilot, "h", "o", "t")
            await tab_to(pilot, "eval-backend")
            await press(pilot, "enter", "down", "enter")  # openai, and no base URL
            await tab_to(pilot, "eval-queue")
            await press(pilot, "enter")
            assert isinstance(app.screen, EvalForm)  # still open: nothing queued
            assert "temperature" in error_of(form, "temperature") and "'hot'" in error_of(form, "temperature")
            assert "samples per question" in error_of(form, "samples")
            assert "base URL" in error_of(form, "base-url")
            assert "3 field(s) to fix" in error_of(form, "status")
            assert error_of(form, "top_p") == "" and error_of(form, "conditions") == ""
            assert focused(app) == "eval-samples"  # the first field to fix, scrolled to
            # nothing answers: every condition off and no model named
            for field, value in (("#eval-samples", ""), ("#eval-temperature", "1.0"),
                                 ("#eval-base-url", "http://127.0.0.1:9/v1")):
                form.query_one(field, Input).value = value
            form.query_one("#eval-conditions", SelectionList).deselect_all()
            await pilot.pause()
            assert plain(form.query_one("#eval-count", Static).render()).startswith("0 answers")
            await tab_to(pilot, "eval-queue")
            await press(pilot, "enter")
            assert "nothing would answer" in error_of(form, "conditions")
            assert error_of(form, "temperature") == "" and error_of(form, "base-url") == ""
            # the engine's refusal (a model that does not exist): one line, the form stays open
            form.query_one("#eval-models", Input).value = "no-such-model"
            await tab_to(pilot, "eval-queue")
            await press(pilot, "enter")
            await wait_until(pilot, lambda: "no model 'no-such-model'" in error_of(form, "status"))
            assert isinstance(app.screen, EvalForm)
            assert any("no model 'no-such-model'" in m for m in notified(app))
            await press(pilot, "escape")
            assert isinstance(app.screen, QueueScreen)
            assert app._exception is None
    finally:
        store.close()
    assert path.read_bytes() == before  # nothing half-written


async def test_the_same_run_queued_twice_is_queued_once_from_the_form_or_the_cli(tmp_path, run_cli):
    path = build(tmp_path)
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            for _ in range(2):
                await open_form(pilot)
                await press(pilot, "enter", "down", "enter")  # gen-test
                await wait_until(pilot, lambda: app.screen.choices is not None)
                assert app.screen.choices.study == "gen-test"
                await tab_to(pilot, "eval-queue")
                await press(pilot, "enter")
                await wait_until(pilot, lambda: isinstance(app.screen, QueueScreen))
            said = notified(app)
            assert any(m.startswith("Queued job 2: ") and "after training job(s) 1" in m for m in said), said
            assert any(m == "Not queued: job 2 is this run, already queued or running" for m in said), said
            assert store.count("jobs") == 2  # domain's training and the one run
    finally:
        store.close()
    # the form's run is emtui generate's with the same conditions (the CLI refuses an untrained one): the same job
    got = run_cli("generate", "--db", path, "--study", "gen-test", "--condition", "domain", "--condition", "base",
                  "--no-worker")
    assert got.returncode == 0 and "not queued: job 2 is this run" in got.stdout, got.stdout + got.stderr


async def test_answers_only_for_a_generate_job_and_no_form_without_an_eval_set(tmp_path):
    path = tmp_path / "n.db"
    with db.open_store(path) as s:
        s.enqueue_job("train", {"condition": "x"})
    store = db.open_store(path)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await press(pilot, "4", "a", "n")
            assert isinstance(app.screen, QueueScreen)
            assert notified(app) == ["Job 1 is a train job: only generate jobs have answers",
                                     "No study has an eval set to answer: emtui init registers a study"]
    finally:
        store.close()


async def test_the_answers_pager_reads_again_while_the_job_runs(tmp_path, monkeypatch):
    """Answers a running job writes (here: the test, as its worker) appear without a key; once the job is done
    the pager stops reading."""
    monkeypatch.setenv("EMTUI_TUI_QUEUE_POLL_S", "0.2")
    path = build(tmp_path)
    store = db.open_store(path)
    study = store.find_study("gen-test")
    base = next(c for c in store.study_conditions(int(study["id"])) if c["name"] == "base")
    questions = store.questions_of_sets([int(e["id"]) for e in store.study_eval_sets(int(study["id"]))])
    job = store.enqueue_job("generate", {"study": "gen-test"}, progress_total=len(questions))
    assert store.claim_job("w", kinds=["generate"])["id"] == job

    def write(i: int) -> None:
        q = questions[i]
        store.insert_generations([{"question_id": q["id"], "condition_id": base["id"], "model_id": base["model_id"],
                                   "settings": {"temperature": 1.0}, "settings_hash": "h", "seed": 100 + i,
                                   "sample_index": 0, "variant": "", "prompt": f"prompt {i}",
                                   "response": f"answer {i}", "job_id": job}])
        store.report_progress(job, "w", done=i + 1, total=len(questions), note=None, rate=None,
                              metrics={"tokens_per_s": 50.0 + i})

    write(0)
    app = create_app(store, keymap={})
    try:
        async with app.run_test(size=(120, 40)) as pilot:
            await press(pilot, "4", "a")
            screen = app.screen
            assert isinstance(screen, JobAnswersScreen)
            answers = screen.query_one("#job-answers-table", PagedTable)
            assert answers.row_count == 1
            assert plain(answers.get_row_at(0)[4]).strip() == "100"  # the seed, from 100 columns
            write(1)
            write(2)
            await wait_until(pilot, lambda: answers.row_count == 3)
            info = lambda: plain(screen.query_one("#job-answers-info", Static).render())  # noqa: E731
            await wait_until(pilot, lambda: "3 of 5 answers written" in info() and "tok/s 52" in info())
            store.finish_job(job, owner="w", result={})
            await wait_until(pilot, lambda: "done" in info())
            write(3)  # (not a real job's way, but it shows the pager has stopped reading)
            await pilot.pause(0.5)
            assert answers.row_count == 3 and "(read again as it runs)" not in info()
            await press(pilot, "r")
            assert answers.row_count == 4  # r reads it again still
    finally:
        store.close()
