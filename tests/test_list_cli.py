"""``emtui list WHAT``: every list the TUI shows, as JSON for scripts and as a table that fits 80 columns."""

from __future__ import annotations

import json

import pytest

from db import open_store
from emtui.list_commands import LISTS
from engine.annotation.campaigns import create_campaign
from engine.results.synthetic import SyntheticSpec, make_synthetic_study
from engine.study.study_file import load_study, register_study


@pytest.fixture
def seeded(db_path, repo_root):
    with open_store(db_path) as store:
        register_study(store, load_study(repo_root / "data" / "studies" / "insecure_code.toml"))
        make_synthetic_study(store, SyntheticSpec(name="syn\x1b[2J", answers_per_condition=12, checkpoints=(5,)))
        create_campaign(store, name="pilot", study="syn\x1b[2J", scale="0-3", n_items=6, seed=1)
        store.enqueue_job("echo", {"say": "hi"})
    return db_path


ARGS = {"conditions": ["--study", "insecure-code-demo"], "questions": ["--eval-set", "core-em"]}
EXPECT = {"studies": 2, "conditions": 3, "campaigns": 1, "jobs": 1, "workers": 0, "rubrics": 2, "runs": 1}


@pytest.mark.parametrize("what", list(LISTS))
def test_every_list_as_json_and_as_an_80_column_table(seeded, run_cli, what):
    extra = ARGS.get(what, [])
    r = run_cli("--db", seeded, "list", what, "--format", "json", *extra)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and all(isinstance(row, dict) for row in rows)
    if what in EXPECT:
        assert len(rows) == EXPECT[what]
    for column in LISTS[what].columns:  # the table's columns are fields of the JSON
        assert all(column in row for row in rows), column
    t = run_cli("--db", seeded, "list", what, *extra, env={"COLUMNS": "80"})
    assert t.returncode == 0 and t.stderr == ""
    if rows:  # (an empty list says so, naming the database)
        assert all(len(line) <= 80 for line in t.stdout.splitlines()), t.stdout
    else:
        assert t.stdout.startswith(f"no {what} in ")
    assert "\x1b" not in t.stdout and "\x1b" not in r.stdout  # JSON escapes it, the table strips it


def test_questions_of_an_eval_set_are_all_there(seeded, run_cli):
    r = run_cli("--db", seeded, "list", "questions", "--eval-set", "core-em", "--format", "json")
    rows = json.loads(r.stdout)
    with open_store(seeded) as store:
        eval_set = next(e for e in store.list_eval_sets().rows if e["name"] == "core-em")
    assert len(rows) == eval_set["n_questions"] and {q["eval_set"] for q in rows} == {"core-em"}
