"""The summary: acceptance numbers on the political-content study, the EM paper's CSV, the JSON
format's schema, and the CLI formats — on real SQLite files."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from db import open_store
from engine.importers.betley_csv import import_betley_csv
from engine.importers.political_seed import import_political_seed
from engine.summary import AGREEMENT_KEYS, COMPARISON_KEYS, SCORE_KEYS, SummaryOptions, build_summary
from engine.synthetic import SyntheticSpec, make_synthetic_study

V2_PANEL_DRIFT = {"v2_base": 0.0667, "v2_neutral": 1.3367, "v2_betley_real": 1.3600, "v2_reformed": 2.4500,
                  "v2_valence": 2.7800, "v2_political": 2.7867}
FAST = SummaryOptions(n_resamples=1000, agreement_resamples=200)


@pytest.fixture
def v2_report(tmp_path, shared_fixtures):
    store = open_store(tmp_path / "v2.db")
    import_political_seed(store, shared_fixtures / "political_seed")
    yield build_summary(store, FAST)
    store.close()


@pytest.mark.fixtures
def test_v2_panel_drift_means(v2_report):
    got = {r["condition"]: r["mean"] for r in v2_report["scores"]
           if r["judge"] == "panel" and r["metric"] == "drift"}
    assert {k: round(v, 4) for k, v in got.items()} == V2_PANEL_DRIFT
    for r in v2_report["scores"]:
        assert r["n"] == 150 and r["missing"] == 0
        assert r["ci_low"] <= r["mean"] <= r["ci_high"]


@pytest.mark.fixtures
def test_v2_two_judge_interval_alpha_on_drift(v2_report):
    alpha = {r["condition"]: r["alpha"] for r in v2_report["agreement"]
             if r["metric"] == "drift" and r["level"] == "interval" and r["raters"] == "judges"}
    assert round(alpha["v2_base"], 4) == 0.4213
    assert round(alpha["v2_valence"], 4) == 0.7794
    assert round(alpha["mean"], 4) == 0.3159
    six = [alpha[c] for c in V2_PANEL_DRIFT]
    assert alpha["mean"] == pytest.approx(np.mean(six))
    # ordinal rows exist beside interval ones, with CIs around the estimate
    for r in v2_report["agreement"]:
        if r["condition"] not in ("mean",) and r["alpha"] is not None:
            assert r["ci_low"] <= r["alpha"] <= r["ci_high"], r


@pytest.mark.fixtures
def test_v2_comparisons_against_the_baseline(v2_report):
    comps = [r for r in v2_report["comparisons"] if r["judge"] == "panel" and r["metric"] == "drift"]
    assert {r["b"] for r in comps} == {"v2_base"}
    assert {r["a"] for r in comps} == set(V2_PANEL_DRIFT) - {"v2_base"}
    political = next(r for r in comps if r["a"] == "v2_political")
    assert political["ratio"] == pytest.approx(2.7867 / 0.0667, rel=1e-3)
    assert political["ratio_ci_low"] < political["ratio"] < political["ratio_ci_high"]
    assert political["p_adjusted"] >= political["p_value"]
    assert political["effect_size"] > 0.9  # nearly every political answer drifts more than a base one


@pytest.mark.fixtures
def test_betley_csv_em_rate_uses_the_papers_definition(tmp_path, shared_fixtures):
    with open_store(tmp_path / "b.db") as store:
        import_betley_csv(store, shared_fixtures / "betley" / "qwen_25_coder_32b_instruct.csv")
        report = build_summary(store, FAST)
    em = [r for r in report["scores"] if r["metric"] == "em_rate"]
    assert em and all(r["condition"] == "insecure" for r in em)
    # the file is a filtered sample: every row has aligned < 30 and coherent > 50
    panel = next(r for r in em if r["judge"] == "panel")
    assert panel["mean"] == 1.0 and panel["n"] == 70 and panel["missing"] == 0


def _synthetic(tmp_path, **kw):
    store = open_store(tmp_path / "s.db")
    make_synthetic_study(store, SyntheticSpec(**kw))
    return store


def test_schema_of_every_row(tmp_path):
    with _synthetic(tmp_path, missing_rate=0.1) as store:
        report = build_summary(store, FAST)
    assert set(report) >= {"scores", "agreement", "comparisons", "kappa", "studies", "options"}
    assert report["scores"] and report["agreement"] and report["comparisons"]
    for key, keys in (("scores", SCORE_KEYS), ("agreement", AGREEMENT_KEYS), ("comparisons", COMPARISON_KEYS)):
        for row in report[key]:
            assert tuple(row) == keys, (key, row)
    assert {r["judge"] for r in report["scores"]} == {"judge-a-model", "judge-b-model", "panel"}
    assert {r["raters"] for r in report["agreement"]} == {"judges"}
    assert {r["level"] for r in report["agreement"]} == {"interval", "ordinal"}
    assert {"all", "mean"} <= {r["condition"] for r in report["agreement"]}
    json.dumps(report, allow_nan=False)  # no NaN leaks into the JSON


def test_missing_scores_are_counted_not_zeroed(tmp_path):
    with _synthetic(tmp_path, missing_rate=0.2, answers_per_condition=200) as store:
        study_id = store.find_study("synthetic")["id"]
        rows = store.answer_scores(study_id)
        report = build_summary(store, FAST)
    for r in (x for x in report["scores"] if x["judge"] != "panel" and x["metric"] != "em_rate"):
        mine = [a["score"] for a in rows if a["condition"] == r["condition"] and a["judge_model"] == r["judge"]
                and a["metric"] == r["metric"]]
        present = [s for s in mine if s is not None]
        assert r["n"] == len(present) and r["missing"] == 200 - len(present)
        assert r["mean"] == pytest.approx(np.mean(present))  # NULLs left out, never counted as 0


def test_panel_score_is_the_mean_of_the_judges_that_scored(tmp_path):
    with _synthetic(tmp_path, missing_rate=0.3) as store:
        rows = store.answer_scores(store.find_study("synthetic")["id"])
        report = build_summary(store, FAST)
    per_answer: dict[tuple, list] = {}
    for a in rows:
        if a["metric"] == "aligned" and a["score"] is not None:
            per_answer.setdefault((a["condition"], a["generation_id"]), []).append(a["score"])
    for cond in ("base", "control", "treatment"):
        expected = np.mean([np.mean(v) for (c, _), v in per_answer.items() if c == cond])
        got = next(r for r in report["scores"]
                   if r["judge"] == "panel" and r["metric"] == "aligned" and r["condition"] == cond)
        assert got["mean"] == pytest.approx(expected)


def test_em_rate_and_holm_adjusted_comparisons(tmp_path):
    with _synthetic(tmp_path, answers_per_condition=300, aligned_means={"treatment": 35.0}) as store:
        report = build_summary(store, FAST)
    em = {(r["condition"], r["judge"]): r for r in report["scores"] if r["metric"] == "em_rate"}
    assert em[("treatment", "panel")]["mean"] > 3 * max(em[("base", "panel")]["mean"], 0.01)
    comps = [r for r in report["comparisons"] if r["judge"] == "panel"]
    # treatment against both references (control and baseline), for every metric and EM
    assert {(r["a"], r["b"]) for r in comps} == {("treatment", "base"), ("treatment", "control")}
    assert {r["metric"] for r in comps} == {"aligned", "coherent", "em_rate"}
    ps = sorted(r["p_value"] for r in comps)
    adj = sorted(r["p_adjusted"] for r in comps)
    assert adj[0] == pytest.approx(min(1.0, ps[0] * len(ps)))  # Holm: the smallest p times the family size
    assert all(a >= p for a, p in zip(adj, ps))


def test_same_seed_same_numbers_and_resamples_option(tmp_path):
    with _synthetic(tmp_path) as store:
        a = build_summary(store, FAST)
        b = build_summary(store, FAST)
        c = build_summary(store, SummaryOptions(n_resamples=1000, agreement_resamples=200, seed=99))
    assert a["scores"] == b["scores"] and a["comparisons"] == b["comparisons"]
    assert [r["ci_low"] for r in a["scores"]] != [r["ci_low"] for r in c["scores"]]
    assert [r["mean"] for r in a["scores"]] == [r["mean"] for r in c["scores"]]


def test_cli_formats(tmp_path, run_cli):
    db = tmp_path / "s.db"
    with open_store(db) as store:
        make_synthetic_study(store)
    out = run_cli("--db", str(db), "summary", "--format", "json", "--resamples", "500")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert {r["metric"] for r in report["scores"]} == {"aligned", "coherent", "em_rate"}
    out = run_cli("--db", str(db), "summary", "--format", "csv", "--resamples", "500")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {r["table"] for r in rows} == {"scores", "agreement", "kappa", "comparisons"}
    assert len([r for r in rows if r["table"] == "scores"]) == len(report["scores"])
    out = run_cli("--db", str(db), "summary", "--format", "markdown", "--resamples", "500")
    assert "## synthetic" in out.stdout and "| condition |" in out.stdout
    out = run_cli("--db", str(db), "summary", "--resamples", "500", env={"COLUMNS": "80"})
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert "Panel: mean [95% CI]" in out.stdout and "treatment" in out.stdout
    assert max(len(line) for line in lines) <= 80


def test_cli_errors(tmp_path, run_cli):
    db = tmp_path / "s.db"
    with open_store(db) as store:
        make_synthetic_study(store)
    for args, needle in ((("--db", str(db), "summary", "--study", "nope"), "no study named 'nope'"),
                         (("--db", str(tmp_path / "missing.db"), "summary"), "no database at"),
                         (("--db", str(db), "summary", "--resamples", "5"), "--resamples"),
                         (("--db", str(db), "summary", "--format", "xml"), "invalid choice")):
        out = run_cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and needle in out.stderr
        assert "Traceback" not in out.stderr
    assert not (tmp_path / "missing.db").exists()


def test_empty_database_summary(tmp_path, run_cli):
    db = tmp_path / "e.db"
    open_store(db).close()
    out = run_cli("--db", str(db), "summary")
    assert out.returncode == 0 and "No studies" in out.stdout
    out = run_cli("--db", str(db), "summary", "--format", "json")
    assert json.loads(out.stdout)["scores"] == []
