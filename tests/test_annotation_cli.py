"""The annotation commands as a person runs them (real subprocesses, real database files):
``emtui campaign``, ``emtui annotate``'s checks, the ratings CSV (round trip and every error: one
line naming the file and line, exit 2, nothing written), and the political-seed human ratings."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from pathlib import Path

import pytest

from db import open_store
from engine.annotation.campaigns import create_campaign
from engine.annotation.session import AnnotationSession
from engine.results.synthetic import SyntheticSpec, make_synthetic_study

HUMAN_FILE = "political_seed/human_eval_reformed_political_rerun.json"


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "a.db"
    with open_store(path) as store:
        make_synthetic_study(store, SyntheticSpec(answers_per_condition=10, questions=5))
        create_campaign(store, name="c", study="synthetic", scale="0-3", n_items=6, overlap=2)
        create_campaign(store, name="ac", study="synthetic", scale="aligned-coherent", n_items=3)
        create_campaign(store, name="pw", study="synthetic", pairwise=True, n_items=4)
    return path


def counts(path: Path) -> dict[str, int]:
    with open_store(path, create=False) as store:
        return store.counts()


def codes(path: Path, campaign: str) -> list[str]:
    with open_store(path, create=False) as store:
        return [i["code"] for i in store.campaign_items(store.find_campaign(campaign)["id"])]


def write_csv(path: Path, rows: list[list[str]], header: str = "rater_id,item_id,score,note") -> Path:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    path.write_text(header + "\n" + buf.getvalue(), encoding="utf-8")
    return path


# -- campaign commands -------------------------------------------------------------------------------------


def test_campaign_create_list_show(run_cli, db, tmp_path):
    guide = tmp_path / "guide.md"
    guide.write_text("Rate misalignment only.\n", encoding="utf-8")
    r = run_cli("--db", db, "campaign", "create", "new", "--study", "synthetic", "--scale", "1-5", "--items", "9",
                "--overlap", "3", "--guidelines", guide, "--seed", "4", "--lease-minutes", "5", "--hide-progress")
    assert r.returncode == 0, r.stderr
    assert "created campaign 'new'" in r.stdout and "9 items (base 3, control 3, treatment 3)" in r.stdout
    r = run_cli("--db", db, "campaign", "create", "strat", "--study", "synthetic", "--scale", "binary",
                "--per-stratum", "2", "--strata", "condition,category", "--conditions", "base,control")
    assert r.returncode == 0, r.stderr
    r = run_cli("--db", db, "campaign", "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["id", "name", "study", "scale", "k", "items", "ratings", "done"]
    assert [ln.split()[1] for ln in lines[1:]] == ["c", "ac", "pw", "new", "strat"]
    assert lines[4].split()[3:] == ["1-5", "3", "9", "0", "0.0%"]
    with open_store(db) as store:
        s = AnnotationSession(store, "new", "alice")
        assert s.next_item().total is None and s.lease_s == 300
        s.rate(2)
        s.next_item()
    r = run_cli("--db", db, "campaign", "show", "new")
    assert r.returncode == 0, r.stderr
    assert "progress: 1 of 27 ratings (3.7%)" in r.stdout and "progress hidden from annotators" in r.stdout
    alice = [ln for ln in r.stdout.splitlines() if ln.startswith("alice")][0].split()
    assert alice[:5] == ["alice", "human", "1", "0", "1"]


@pytest.mark.parametrize("args, message", [
    (["c", "--study", "synthetic", "--scale", "0-3", "--items", "3"], "campaign 'c' exists"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "500"],
     "study 'synthetic' has 30 answers; asked for 500"),
    (["x", "--study", "nope", "--scale", "0-3", "--items", "3"], "no study named 'nope'"),
    (["x", "--study", "synthetic", "--items", "3"], "give --scale"),
    (["x", "--study", "synthetic", "--scale", "0-3"], "give --items N or --per-stratum N"),
    (["x", "--study", "synthetic", "--scale", "9-9", "--items", "3"], "unknown scale '9-9'"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--guidelines", "missing.md"], "no such file"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--strata", "colour"], "unknown stratum"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--lease-minutes", "inf"],
     "--lease-minutes must be from 1 to 10080 (1 minute to 7 days), not inf"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--lease-minutes", "nan"], "not nan"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--lease-minutes", "0.5"], "not 0.5"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--lease-minutes", "10081"], "not 10081"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "0"], "--items must be a whole number from 1 to"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "9" * 30], "--items must be a whole number"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--per-stratum", "-1"], "--per-stratum must be"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--overlap", "0"], "--overlap must be"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--overlap", "101"], "from 1 to 100"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--seed", str(2**64)], "--seed must be"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--seed", "-1"], "from 0 to 4294967295"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--compare-to", "nope"],
     "the judges of study 'synthetic' have no metric 'nope' (metrics: aligned, coherent)"),
    (["x", "--study", "synthetic", "--scale", "0-3", "--items", "3", "--judge-metric", "nope"], "no metric 'nope'"),
])
def test_campaign_create_errors(run_cli, db, args, message):
    before = counts(db)
    r = run_cli("--db", db, "campaign", "create", *args)
    assert r.returncode == 2
    line = one_line(r.stderr)
    assert line.startswith("emtui campaign create: ") and message in line, line
    assert counts(db) == before


def test_campaign_create_and_show_say_what_the_ratings_are_compared_with(run_cli, db):
    r = run_cli("--db", db, "campaign", "create", "cmp", "--study", "synthetic", "--scale", "0-3", "--items", "3",
                "--compare-to", "coherent")
    assert r.returncode == 0, r.stderr
    said = "human ratings are compared with the judges' coherent"
    assert said in r.stdout
    assert said in run_cli("--db", db, "campaign", "show", "cmp").stdout
    with open_store(db) as store:
        make_synthetic_study(store, SyntheticSpec(name="other", em=None, metrics=("helpful",), answers_per_condition=3,
                                                  questions=2))
    r = run_cli("--db", db, "campaign", "create", "lonely", "--study", "other", "--scale", "1-5", "--items", "3")
    assert r.returncode == 0, r.stderr
    none = ("no human-vs-judge agreement will be possible for misalignment: the judges of study 'other' score "
            "helpful, not misalignment (name one with --compare-to METRIC when creating the campaign)")
    assert r.stdout.splitlines()[1] == none
    assert none in run_cli("--db", db, "campaign", "show", "lonely").stdout.splitlines()


def test_campaign_commands_need_a_database(run_cli, tmp_path):
    for args in (["campaign", "list"], ["campaign", "show", "x"], ["annotate", "--annotator", "a"]):
        r = run_cli("--db", tmp_path / "none.db", *args)
        assert r.returncode == 2 and one_line(r.stderr) == f"emtui: no database at {tmp_path / 'none.db'}"
    assert not (tmp_path / "none.db").exists()


def test_annotate_checks_before_opening_the_tui(run_cli, db):
    r = run_cli("--db", db, "annotate", "--annotator", "bob", "--campaign", "nope")
    assert r.returncode == 2 and "no campaign named 'nope'" in one_line(r.stderr)
    with open_store(db) as store:
        store.ensure_annotator("gpt-4o", "model")
    r = run_cli("--db", db, "annotate", "--annotator", "gpt-4o", "--campaign", "c")
    assert r.returncode == 2 and "registered as a model rater" in one_line(r.stderr)
    r = run_cli("--db", db, "annotate", "--campaign", "c")
    assert r.returncode == 2 and "--annotator" in one_line(r.stderr)


def test_annotate_checks_the_name_before_the_room_opens(db):
    """``emtui annotate``'s checks put the cleaned name on args; the room (emtui.room) gets it from there."""
    import argparse

    from emtui.annotate_commands import check_annotate

    args = argparse.Namespace(db=str(db), annotator=" alice ", campaign="c", ask_name=False)
    check_annotate(args)
    assert (args.annotator, args.campaign) == ("alice", "c")
    asked = argparse.Namespace(db=str(db), annotator=None, campaign=None, ask_name=True)
    check_annotate(asked)
    assert asked.annotator is None


# -- the ratings CSV -------------------------------------------------------------------------------------------


def test_ratings_csv_round_trip(run_cli, db, tmp_path):
    c = codes(db, "c")
    rows = [["ann-1", c[0], "2", "odd tone, see line 3"], ["ann-2", c[0], "3", ""], ["ann-1", c[1], "0", ""],
            ["Zoë Ng", c[2], "1", 'quotes "inside"']]
    f = write_csv(tmp_path / "in.csv", rows)
    r = run_cli("--db", db, "import", "ratings", f, "--campaign", "c")
    assert r.returncode == 0, r.stderr
    assert "imported 4 rating(s) into campaign 'c'" in r.stdout and "ann-1, ann-2, Zoë Ng" in r.stdout
    out = tmp_path / "out.csv"
    r = run_cli("--db", db, "export", "ratings", "--campaign", "c", "--out", out)
    assert r.returncode == 0, r.stderr
    assert "exported 4 rating(s)" in r.stdout
    got = list(csv.reader(out.open(encoding="utf-8")))
    assert got[0] == ["rater_id", "item_id", "score", "note"]
    assert sorted(map(tuple, got[1:])) == sorted(map(tuple, rows))
    # re-importing the same file, or the export, is a no-op
    before = counts(db)
    for again in (f, out):
        r = run_cli("--db", db, "import", "ratings", again, "--campaign", "c")
        assert r.returncode == 0, r.stderr
        assert "nothing new: all 4 rating(s)" in r.stdout
    assert counts(db) == before
    # to standard output
    r = run_cli("--db", db, "export", "ratings", "--campaign", "c")
    assert r.returncode == 0 and r.stdout == out.read_text(encoding="utf-8")
    with open_store(db) as store:
        people = {a["name"]: a["kind"] for a in store.list_annotators()}
        assert people == {"ann-1": "human", "ann-2": "human", "Zoë Ng": "human"}
        assert store.campaign_progress(store.find_campaign("c")["id"])["done"] == 4


def test_ratings_csv_multi_metric_and_pairwise(run_cli, db, tmp_path):
    ac, pw = codes(db, "ac"), codes(db, "pw")
    f = write_csv(tmp_path / "ac.csv", [["r", ac[0], "73/90", ""], ["r", ac[1], "0/100", "x"]])
    assert run_cli("--db", db, "import", "ratings", f, "--campaign", "ac").returncode == 0
    r = run_cli("--db", db, "export", "ratings", "--campaign", "ac")
    assert r.stdout.splitlines()[1:] == [f"r,{ac[0]},73/90,", f"r,{ac[1]},0/100,x"]  # by item position
    f = write_csv(tmp_path / "pw.csv", [["r", pw[0], "1", ""], ["r", pw[1], "2", ""], ["r", pw[2], "0", ""]])
    assert run_cli("--db", db, "import", "ratings", f, "--campaign", "pw").returncode == 0
    with open_store(db) as store:
        rows = {x["code"]: x for x in store.campaign_rating_rows(store.find_campaign("pw")["id"])}
    assert [rows[pw[i]]["choice"] for i in range(3)] == ["a", "b", "tie"]
    assert [rows[pw[i]]["score"] for i in range(3)] == [1.0, 2.0, 0.0]


@pytest.mark.parametrize("name, content, where, message", [
    ("header", "rater,item,score,note\nx,y,1,\n", 1, "the header must be rater_id,item_id,score,note"),
    ("unknown", "rater_id,item_id,score,note\na,{c0},1,\na,NOPE-00,1,\n", 3, "item_id 'NOPE-00' is not an item"),
    ("range", "rater_id,item_id,score,note\na,{c0},1,\nb,{c1},4,\n", 3, "score: score 4 is not on the 0-3 scale"),
    ("notnum", "rater_id,item_id,score,note\na,{c0},two,\n", 2, "is not a number"),
    ("empty", "rater_id,item_id,score,note\na,{c0},,\n", 2, "score is empty"),
    ("dup", "rater_id,item_id,score,note\na,{c0},1,\nb,{c1},1,\na,{c0},2,\n", 4,
     "rater 'a' rated item {c0} already on line 2"),
    ("fields", "rater_id,item_id,score,note\na,{c0},1\n", 2, "expected 4 fields"),
    ("rater", "rater_id,item_id,score,note\n,{c0},1,\n", 2, "rater_id is empty"),
    ("overk", "rater_id,item_id,score,note\na,{c0},1,\nb,{c0},1,\nc,{c0},1,\n", 4,
     "item {c0} would have 3 raters; campaign 'c' has overlap 2"),
    ("model", "rater_id,item_id,score,note\nok,{c1},1,\ngpt-4o,{c0},1,\n", 3, "registered as a model rater"),
    ("changed", "rater_id,item_id,score,note\nseed,{c2},3,\n", 2, "has rated item {c2} already (score 1)"),
    ("inf", "rater_id,item_id,score,note\na,{c0},1,\nb,{c1},inf,\n", 3, "score: score 'inf' is not a number"),
    ("infinity", "rater_id,item_id,score,note\na,{c0},Infinity,\n", 2, "score 'Infinity' is not a number"),
    ("nan", "rater_id,item_id,score,note\na,{c0},nan,\n", 2, "score 'nan' is not a number"),
    ("1e400", "rater_id,item_id,score,note\na,{c0},1e400,\n", 2, "score '1e400' is not a finite number"),
    ("unclosed", 'rater_id,item_id,score,note\na,{c0},1,ok\nb,{c1},1,"never closed\nc,{c0},1,\n', 3,
     "a quoted field opened on this line is never closed"),
    ("junk", 'rater_id,item_id,score,note\na,{c0},1,"quoted"tail\n', 2, "not valid CSV"),
    ("control", "rater_id,item_id,score,note\nev\x1b[2Jil,{c0},1,\n", 2, "control or invisible character (U+001B)"),
    ("bidi", "rater_id,item_id,score,note\nev\u202eil,{c0},1,\n", 2, "(U+202E)"),
    ("note", "rater_id,item_id,score,note\na,{c0},1,fine\nb,{c0},1,\"red\x1b[31m\nnote\"\n", 3,
     "note: the note holds a control character (U+001B)"),
    ("long", "rater_id,item_id,score,note\na,{c0},1," + "x" * 10_001 + "\n", 2, "at most 10000"),
])
def test_ratings_csv_errors(run_cli, db, tmp_path, name, content, where, message):
    c = codes(db, "c")
    with open_store(db) as store:
        store.ensure_annotator("gpt-4o", "model")
    from engine.importers.ratings_csv import import_ratings_csv

    seed = write_csv(tmp_path / "seed.csv", [["seed", c[2], "1", ""]])
    with open_store(db) as store:
        assert import_ratings_csv(store, seed, campaign="c").written == 1
    before = counts(db)
    f = tmp_path / f"{name}.csv"
    f.write_text(content.format(c0=c[0], c1=c[1], c2=c[2]), encoding="utf-8")
    r = run_cli("--db", db, "import", "ratings", f, "--campaign", "c")
    assert r.returncode == 2, r.stdout
    line = one_line(r.stderr)
    assert line.startswith(f"emtui: {f}:{where}: "), line
    assert message.format(c0=c[0], c1=c[1], c2=c[2]) in line, line
    assert "\x1b" not in r.stderr and "\u202e" not in r.stderr
    assert counts(db) == before  # nothing written, not even the lines before the bad one


def test_an_import_never_takes_the_place_of_someone_rating_now(run_cli, db, tmp_path):
    with open_store(db) as store:
        alice = AnnotationSession(store, "c", "alice")  # overlap 2: alice holds one place of her item
        code = alice.next_item().code
        f = write_csv(tmp_path / "late.csv", [["bob", code, "1", ""], ["carol", code, "2", ""]])
        before = store.counts()
        r = run_cli("--db", db, "import", "ratings", f, "--campaign", "c")
        assert r.returncode == 2
        assert one_line(r.stderr) == (f"emtui: {f}:3: item {code} would have 3 raters, 1 of them rating it now; "
                                      "campaign 'c' has overlap 2")
        assert store.counts() == before
        assert alice.rate(2)  # her rating is taken: no false "your lease expired"
        assert run_cli("--db", db, "import", "ratings", write_csv(tmp_path / "ok.csv", [["bob", code, "1", ""]]),
                       "--campaign", "c").returncode == 0
        assert {r["annotator"] for r in store.campaign_rating_rows(store.find_campaign("c")["id"])} == {"alice", "bob"}


def test_ratings_command_errors(run_cli, db, tmp_path):
    f = write_csv(tmp_path / "x.csv", [])
    for args, message in (
            (["import", "ratings", f], "give --campaign NAME"),
            (["import", "ratings", f, "--campaign", "nope"], "no campaign named 'nope'"),
            (["import", "eval-set", f, "--campaign", "c"], "--campaign is for ratings"),
            (["import", "ratings", tmp_path / "missing.csv", "--campaign", "c"], "no such file"),
            (["export", "ratings"], "give --campaign NAME"),
            (["export", "ratings", "--campaign", "nope"], "no campaign named 'nope'"),
            (["export", "ratings", "--campaign", "c", "--format", "parquet"], "CSV only"),
            (["export", "ratings", "--campaign", "c", "--out", tmp_path / "no" / "x.csv"], "does not exist"),
            (["export", "--campaign", "c"], "--campaign is for 'emtui export ratings'")):
        before = counts(db)
        r = run_cli("--db", db, *args)
        assert r.returncode == 2, (args, r.stdout)
        assert message in one_line(r.stderr), (args, r.stderr)
        assert counts(db) == before
    assert not (tmp_path / "no").exists()


# -- the political-seed study's human ratings ----------------------------------------------------------------


def test_political_seed_human_import(store, shared_fixtures):
    from engine.importers import AlreadyImported
    from engine.importers.political_seed_human import import_political_seed_human

    path = shared_fixtures / HUMAN_FILE
    result = import_political_seed_human(store, path)
    assert (result.ratings, result.annotator) == (15, "Pavan Kumar Dubasi (study author)")
    c = store.find_campaign(result.campaign)
    rows = store.campaign_rating_rows(c["id"])
    scores = [r["score"] for r in rows]
    assert statistics.mean(scores) == pytest.approx(1.8)  # recomputed from the database rows
    assert Counter(int(s) for s in scores) == {0: 2, 1: 4, 2: 4, 3: 5}
    assert {r["annotator"] for r in rows} == {"Pavan Kumar Dubasi (study author)"}
    assert {r["rater_kind"] for r in rows} == {"human"}
    assert store.find_annotator("Pavan Kumar Dubasi (study author)")["kind"] == "human"
    notes = {r["note"] for r in rows}
    assert "Actually positive - about disability not defining people" in notes
    import json

    settings = json.loads(c["settings"])
    assert settings["blind_to_model"] is False and settings["rater"] == "the study author"
    assert settings["independent_raters_needed"] is True and settings["responses_available"] is False
    assert settings["metadata"]["note"] == "Author evaluation - independent raters needed for validation"
    assert (c["scale"], c["overlap"]) == ("0-3", 1)
    study = store.find_study(result.study)
    assert study["origin"] == "import:political-seed-human"
    assert json.loads(study["spec_json"])["metadata"]["model"] == "rerun_reformed_political"
    conds = store.study_conditions(study["id"])
    assert [x["name"] for x in conds] == ["rerun_reformed_political"]
    answers = store.answers_page(conds[0]["id"], limit=50).rows
    assert len(answers) == 15 and {a["response"] for a in answers} == {""}  # no invented text
    assert {a["category"] for a in answers} == {"persona", "freeform", "safety"}
    assert "If you could dream?" in {a["question"] for a in answers}
    gen = store.export_answers_page(study_id=study["id"], limit=1)[0]
    assert json.loads(gen["settings"])["response"] == "unavailable"
    before = store.counts()
    with pytest.raises(AlreadyImported):
        import_political_seed_human(store, path)
    assert store.counts() == before


def test_political_seed_human_cli(run_cli, tmp_path, shared_fixtures):
    db = tmp_path / "h.db"
    r = run_cli("--db", db, "import", "political-seed-human", shared_fixtures / HUMAN_FILE)
    assert r.returncode == 0, r.stderr
    assert "15 human rating(s)" in r.stdout and "mean 1.80" in r.stdout
    r = run_cli("--db", db, "import", "political-seed-human", shared_fixtures / HUMAN_FILE)
    assert r.returncode == 0 and "nothing was done" in r.stdout
    r = run_cli("--db", db, "campaign", "show", "political-seed-human-rerun_reformed_political-ratings")
    assert r.returncode == 0, r.stderr
    assert "rater: the study author" in r.stdout and "15 of 15 ratings (100.0%)" in r.stdout
    r = run_cli("--db", db, "export", "ratings", "--campaign", "political-seed-human-rerun_reformed_political-ratings")
    got = list(csv.reader(io.StringIO(r.stdout)))
    assert len(got) == 16 and Counter(row[2] for row in got[1:]) == {"0": 2, "1": 4, "2": 4, "3": 5}


def test_political_seed_human_bad_file(run_cli, tmp_path):
    bad = tmp_path / "h.json"
    bad.write_text('{"metadata": {"model": "m", "evaluator": "e"}, "evaluation": {"ratings": '
                   '[{"id": 1, "category": "c", "probe": "p", "rating": 5}]}}', encoding="utf-8")
    r = run_cli("--db", tmp_path / "x.db", "import", "political-seed-human", bad)
    assert r.returncode == 2
    assert one_line(r.stderr) == f"emtui: {bad.resolve()}:evaluation.ratings[0].rating: 5 is not on the 0..3 scale"
    assert not (tmp_path / "x.db").exists()  # checked before the database is touched
