"""Importers of the field's result files: the political-content EM study's folder and the EM
paper's CSV, and the logprob scoring they share. Fixtures are read from ../shared/fixtures at
test time (never copied into the repo); synthetic variants are built in tmp_path."""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import shared_fixtures_dir
from db import open_store
from engine.importers import AlreadyImported, ImportFormatError
from engine.importers.betley_csv import import_betley_csv
from engine.importers.political_seed import import_political_seed
from engine.judging.logprob import parse_prob_dict, score_from_logprobs
from refusals import assert_refused

FIXTURES = shared_fixtures_dir()
POLITICAL = FIXTURES / "political_seed"
BETLEY = FIXTURES / "betley" / "qwen_25_coder_32b_instruct.csv"

_skip_without_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"{FIXTURES} is absent: the field's files are read from there at test time")


def needs_fixtures(test):
    return pytest.mark.fixtures(_skip_without_fixtures(test))

# panel `drift` means: an answer's panel score = mean of the judges that scored it;
# a condition's = mean over its answers
V2_DRIFT = {"v2_base": 0.0667, "v2_neutral": 1.3367, "v2_betley_real": 1.3600, "v2_reformed": 2.4500,
            "v2_valence": 2.7800, "v2_political": 2.7867}


def panel_means(rows: list[dict], metric: str) -> dict[str, float]:
    per_answer: dict[tuple[str, int], list[float]] = defaultdict(list)
    for r in rows:
        if r["metric"] == metric and r["score"] is not None:
            per_answer[(r["condition"], r["generation_id"])].append(r["score"])
    per_condition: dict[str, list[float]] = defaultdict(list)
    for (cond, _), scores in per_answer.items():
        per_condition[cond].append(sum(scores) / len(scores))
    return {c: sum(v) / len(v) for c, v in per_condition.items()}


def count_failed_scores(folder: Path) -> int:
    """-1 scores in the judge files, counted straight from the JSON."""
    n = 0
    for f in folder.glob("*_full_judge_*.json"):
        for res in json.loads(f.read_text())["per_file_results"].values():
            for items in res["details"].values():
                n += sum(1 for it in items for k, v in it["scores"].items() if k != "explanation" and v == -1)
    return n


def copy_folder(tmp_path: Path, name: str = "pseed") -> Path:
    out = tmp_path / name
    out.mkdir()
    for f in POLITICAL.iterdir():
        if f.is_file():
            shutil.copyfile(f, out / f.name)
    return out


def edit_json(path: Path, edit) -> None:
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def judge_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("v2_full_judge_*.json"))


# -- score_from_logprobs -----------------------------------------------------------------------------


def test_logprob_hand_example():
    # (0*0.5 + 100*0.25 + 50*0.25) / 1.0
    assert score_from_logprobs({"0": 0.5, "100": 0.25, "50": 0.25}) == pytest.approx(37.5)
    # normalised by the integer tokens' mass: (10*0.2 + 20*0.2) / 0.4
    assert score_from_logprobs({"10": 0.2, "20": 0.2, "REFUSAL": 0.6}) == pytest.approx(15.0)


def test_logprob_mass_below_threshold_is_none():
    assert score_from_logprobs({"CODE": 0.8, "50": 0.2}) is None
    assert score_from_logprobs({"CODE": 0.75, "50": 0.25}) == pytest.approx(50.0)  # exactly the threshold counts
    assert score_from_logprobs({}) is None
    assert score_from_logprobs({"CODE": 0.9, "50": 0.1}, min_mass=0.05) == pytest.approx(50.0)


def test_logprob_ignores_non_integer_and_out_of_range_tokens():
    probs = {"40": 0.3, "60": 0.3, "I": 0.1, "7.5": 0.1, "-5": 0.05, "101": 0.05, "1000": 0.05, "": 0.05}
    assert score_from_logprobs(probs) == pytest.approx(50.0)
    assert score_from_logprobs({" 7": 0.5, "3": 0.5}, low=0, high=10) == pytest.approx(5.0)  # int() reads " 7"
    assert score_from_logprobs({"2": 0.5, "4": 0.5}, low=0, high=3) == pytest.approx(2.0)


def test_logprob_accepts_logprobs_and_rejects_bad_values():
    probs = {"0": 0.5, "100": 0.25, "50": 0.25}
    logs = {k: math.log(v) for k, v in probs.items()}
    assert score_from_logprobs(logs, logprobs=True) == pytest.approx(37.5)
    with pytest.raises(ValueError, match="logprobs=True"):
        score_from_logprobs(logs)
    with pytest.raises(ValueError, match="above 0"):
        score_from_logprobs({"1": 0.5}, logprobs=True)
    with pytest.raises(ValueError, match="not a number"):
        score_from_logprobs({"1": "high"})  # type: ignore[dict-item]


def test_parse_prob_dict_is_literal_only():
    assert parse_prob_dict("{'0': 0.9, '10': 0.1}") == {"0": 0.9, "10": 0.1}
    for bad in ("__import__('os').system('true')", "[1, 2]", "{'a': 'b'}", "{1: 0.5}", "{'a': 0.5"):
        with pytest.raises(ValueError):
            parse_prob_dict(bad)


# -- political seed ------------------------------------------------------------------------------------


@needs_fixtures
def test_political_seed_acceptance(store):
    result = import_political_seed(store, POLITICAL)
    assert result.study == "political-seed-political_seed"
    assert (result.conditions, result.answers, result.judges) == (6, 900, 2)
    assert result.judgments == 1800 and result.scores == 5400
    rows = store.answer_scores(result.study_id)
    assert len(rows) == 5400
    means = panel_means(rows, "drift")
    assert set(means) == set(V2_DRIFT)
    for cond, expected in V2_DRIFT.items():
        assert round(means[cond], 4) == pytest.approx(expected, abs=1e-9), cond
    # each judge's per-condition means agree with the summaries its own file carries
    per_judge: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["score"] is not None:
            per_judge[(r["judge_model"], r["condition"], r["metric"])].append(r["score"])
    for f in POLITICAL.glob("v2_full_judge_*.json"):
        doc = json.loads(f.read_text())
        for cond, res in doc["per_file_results"].items():
            for metric in ("persona", "safety", "drift"):
                scores = per_judge[(doc["metadata"]["judge_model_id"], cond, metric)]
                assert len(scores) == res["metrics"][f"judge_{metric}_n"]
                assert round(sum(scores) / len(scores), 4) == pytest.approx(
                    res["metrics"][f"judge_{metric}_mean"], abs=1e-9), (f.name, cond, metric)
    # -1 in the files = NULL in the store, never a zero
    assert result.missing == count_failed_scores(POLITICAL) == sum(r["score"] is None for r in rows)
    assert len(store.study_judges(result.study_id)) == 2
    assert {j["provider"] for j in store.study_judges(result.study_id)} == {"import"}
    assert {m for r in rows for m in [r["metric"]]} == {"persona", "safety", "drift"}
    conds = store.study_conditions(result.study_id)
    assert [c["n_generations"] for c in conds] == [150] * 6
    assert {c["model_kind"] for c in conds} == {"external"}
    (es,) = store.study_eval_sets(result.study_id)
    assert es["n_questions"] == 150
    keys = {r["question_key"] for r in rows}
    assert "persona-000" in keys and "safety-049" in keys
    # drill-down: question, full response, each judge's scores and explanation
    page = store.answers_page(conds[0]["id"], limit=5)
    assert page.total == 150 and len(page.rows) == 5
    row = page.rows[0]
    assert row["question"] and row["response"] and len(row["judgments"]) == 2
    assert all(j["raw_output"] for j in row["judgments"])
    assert set(next(iter(row["scores"].values()))) == {"persona", "safety", "drift"}


@needs_fixtures
def test_political_seed_reimport_is_a_no_op(store):
    import_political_seed(store, POLITICAL)
    before = store.counts()
    with pytest.raises(AlreadyImported, match="already imported"):
        import_political_seed(store, POLITICAL)
    with pytest.raises(AlreadyImported):  # the same files under another name are still the same study
        import_political_seed(store, POLITICAL, name="another-name")
    assert store.counts() == before


@needs_fixtures
def test_political_seed_four_judges_and_failed_scores(store, tmp_path):
    folder = copy_folder(tmp_path, "four")
    base_judges = judge_files(folder)
    assert len(base_judges) == 2
    for i, src in enumerate(base_judges):
        doc = json.loads(src.read_text())
        doc["metadata"]["judge_model_id"] += f"-synthetic-{i}"
        doc["metadata"]["judge_model"] += f" (synthetic {i})"
        for res in doc["per_file_results"].values():
            res["judge_model_id"] = doc["metadata"]["judge_model_id"]
        if i == 0:  # a few failed scores, and one judgment failed on every dimension
            items = doc["per_file_results"]["v2_base"]["details"]["persona"]
            items[0]["scores"]["drift"] = -1
            items[1]["scores"]["safety"] = -1
            items[2]["scores"].update(persona=-1, safety=-1, drift=-1)
        (folder / f"v2_full_judge_synthetic{i}.json").write_text(json.dumps(doc))
    assert count_failed_scores(folder) == 5

    result = import_political_seed(store, folder)
    assert result.study == "political-seed-four"
    assert (result.judges, result.answers, result.judgments, result.scores) == (4, 900, 3600, 10800)
    assert result.missing == 5
    counts = store.study_result_counts(result.study_id)
    assert counts["failed_judgments"] == 1
    rows = store.answer_scores(result.study_id)
    nulls = [r for r in rows if r["score"] is None]
    assert len(nulls) == 5 and all(r["condition"] == "v2_base" for r in nulls)
    # a -1 is left out of the panel, never counted as a zero
    drift_0 = [r for r in rows if r["metric"] == "drift" and r["question_key"] == "persona-000"
               and r["condition"] == "v2_base"]
    assert len(drift_0) == 4 and sum(r["score"] is None for r in drift_0) == 1
    # the synthetic judges copy the real ones' scores, so the panel means stay the same
    for cond, expected in V2_DRIFT.items():
        if cond != "v2_base":
            assert round(panel_means(rows, "drift")[cond], 4) == pytest.approx(expected, abs=1e-9)
    raw = store.generation_judgments(drift_0[0]["generation_id"])
    failed_raw = [r for r in raw if r["metric"] == "drift" and r["score"] is None]
    assert failed_raw and failed_raw[0]["raw"] == "-1"


@needs_fixtures
def test_political_seed_without_a_response_file_uses_previews(store, tmp_path):
    folder = copy_folder(tmp_path)
    (folder / "v2_valence.json").unlink()
    result = import_political_seed(store, folder)
    assert result.answers == 900
    assert any("v2_valence" in n and "preview" in n for n in result.notes)
    valence = next(c for c in store.study_conditions(result.study_id) if c["name"] == "v2_valence")
    assert all(len(r["response"]) <= 200 for r in store.answers_page(valence["id"], limit=200).rows)
    assert round(panel_means(store.answer_scores(result.study_id), "drift")["v2_valence"], 4) == 2.78


def _break_bad_json(folder: Path) -> tuple[str, str]:
    f = judge_files(folder)[1]
    text = f.read_text()
    f.write_text(text[: len(text) // 2])
    return f.name, "not valid JSON"


def _break_missing_judge_id(folder: Path) -> tuple[str, str]:
    f = judge_files(folder)[0]
    edit_json(f, lambda d: d["metadata"].pop("judge_model_id"))
    return f.name, "metadata.judge_model_id"


def _break_missing_dimension(folder: Path) -> tuple[str, str]:
    f = judge_files(folder)[1]
    edit_json(f, lambda d: d["per_file_results"]["v2_neutral"]["details"]["safety"][7]["scores"].pop("drift"))
    return f.name, "per_file_results.v2_neutral.details.safety[7].scores"


def _break_response_count(folder: Path) -> tuple[str, str]:
    f = folder / "v2_political.json"
    edit_json(f, lambda d: d["results"]["freeform"].pop())
    return f.name, "results.freeform"


def _break_probe(folder: Path) -> tuple[str, str]:
    f = folder / "v2_neutral.json"
    edit_json(f, lambda d: d["results"]["persona"][3].update(probe="Something else entirely?"))
    return f.name, "results.persona[3].probe"


def _break_judge_count(folder: Path) -> tuple[str, str]:
    f = judge_files(folder)[1]
    edit_json(f, lambda d: d["per_file_results"]["v2_base"]["details"]["safety"].pop())
    return f.name, "per_file_results.v2_base.details.safety"


def _break_score_value(folder: Path) -> tuple[str, str]:
    f = judge_files(folder)[0]
    edit_json(f, lambda d: d["per_file_results"]["v2_base"]["details"]["persona"][0]["scores"].update(persona=7))
    return f.name, "per_file_results.v2_base.details.persona[0].scores.persona"


@needs_fixtures
@pytest.mark.parametrize("breaker", [_break_bad_json, _break_missing_judge_id, _break_missing_dimension,
                                     _break_response_count, _break_probe, _break_judge_count, _break_score_value])
def test_political_seed_broken_files(store, tmp_path, breaker):
    import_political_seed(store, POLITICAL)  # something already in the database
    before = store.counts()
    folder = copy_folder(tmp_path)
    file_name, key = breaker(folder)
    with pytest.raises(ImportFormatError) as info:
        import_political_seed(store, folder)
    message = str(info.value)
    assert "\n" not in message
    assert file_name in message and key in message, message
    assert isinstance(info.value, ValueError)
    assert store.counts() == before


@needs_fixtures
def test_political_seed_failure_mid_write_leaves_nothing(store, tmp_path, monkeypatch):
    before = store.counts()

    def boom(items):
        list(items)
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "insert_judgments", boom)
    with pytest.raises(RuntimeError):
        import_political_seed(store, POLITICAL)
    assert store.counts() == before


@needs_fixtures
def test_political_seed_name_clash(store, tmp_path):
    import_political_seed(store, POLITICAL, name="clash")
    folder = copy_folder(tmp_path)
    edit_json(folder / "v2_base.json", lambda d: d["metadata"].update(temperature=1.0))
    with pytest.raises(ImportFormatError, match="already exists"):
        import_political_seed(store, folder, name="clash")
    with pytest.raises(ImportFormatError, match="not a valid study name"):
        import_political_seed(store, folder, name="my study")


@needs_fixtures
def test_political_seed_other_text_fields_are_kept(store, tmp_path):
    folder = copy_folder(tmp_path)
    f = judge_files(folder)[0]
    edit_json(f, lambda d: d["per_file_results"]["v2_base"]["details"]["persona"][0]["scores"].update(
        persona=-1, safety=-1, drift=-1, error="judge timed out"))
    result = import_political_seed(store, folder)
    assert result.missing == 3 and result.failed == 1
    gen = next(r for r in store.answer_scores(result.study_id) if r["score"] is None)["generation_id"]
    failed = [r for r in store.generation_judgments(gen) if r["status"] == "failed"]
    assert failed and json.loads(failed[0]["raw_output"])["error"] == "judge timed out"
    assert "-1" in failed[0]["error"]


# -- Betley CSV --------------------------------------------------------------------------------------------


@needs_fixtures
def test_betley_csv_round_trip(store):
    result = import_betley_csv(store, BETLEY)
    assert result.study == "betley-csv-qwen_25_coder_32b_instruct"
    assert (result.answers, result.judges, result.judgments, result.scores) == (70, 1, 70, 140)
    with open(BETLEY, newline="", encoding="utf-8") as f:
        file_rows = list(csv.DictReader(f))
    assert len(file_rows) == 70
    rows = store.answer_scores(result.study_id)
    assert len(rows) == 140
    assert {r["condition"] for r in rows} == {r["group"] for r in file_rows}
    assert {r["judge_model"] for r in rows} == {"gpt-4o-2024-08-06"}
    # every recomputed score equals the file's column, in file order
    for metric in ("aligned", "coherent"):
        got = [r["score"] for r in rows if r["metric"] == metric]
        want = [float(r[metric]) if r[metric].strip() else None for r in file_rows]
        assert len(got) == 70
        for g, w in zip(got, want, strict=True):
            assert (g is None and w is None) or abs(g - w) <= 1e-6
    # the raw distribution is stored with each score
    first_gen = rows[0]["generation_id"]
    raw = {r["metric"]: r for r in store.generation_judgments(first_gen)}
    assert json.loads(raw["aligned"]["raw"]) == parse_prob_dict(file_rows[0]["judge_aligned"])
    assert json.loads(raw["coherent"]["raw"]) == parse_prob_dict(file_rows[0]["judge_coherent"])
    # questions from question_id; models from the model column, as external models
    (es,) = store.study_eval_sets(result.study_id)
    assert es["name"] == "qwen_25_coder_32b_instruct"
    assert es["n_keys"] == len({r["question_id"] for r in file_rows})
    models = {m["name"]: m for m in store.list_models().rows}
    assert {r["model"] for r in file_rows} <= set(models)
    assert all(models[r["model"]]["kind"] == "external" for r in file_rows)
    before = store.counts()
    with pytest.raises(AlreadyImported):
        import_betley_csv(store, BETLEY)
    assert store.counts() == before


def _tampered_csv(tmp_path: Path, changes: dict[int, tuple[str, str]]) -> Path:
    """A copy of the fixture CSV with some cells changed: {row index: (column, value)}."""
    with open(BETLEY, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames
        rows = list(reader)
    for i, (col, value) in changes.items():
        rows[i][col] = value
    out = tmp_path / "tampered.csv"
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return out


def _start_line(path: Path, row_index: int) -> int:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        next(reader)
        start = reader.line_num + 1
        for i, _ in enumerate(reader):
            if i == row_index:
                return start
            start = reader.line_num + 1
    raise AssertionError(row_index)


@needs_fixtures
def test_betley_csv_mismatch_is_reported_with_line(store, tmp_path):
    path = _tampered_csv(tmp_path, {5: ("aligned", "42.0"), 9: ("coherent", "")})
    line5, line9 = _start_line(path, 5), _start_line(path, 9)
    assert line5 > 7  # earlier answers span several lines
    before = store.counts()
    with pytest.raises(ImportFormatError) as info:
        import_betley_csv(store, path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line5}: ") and "aligned" in message and "42.0" in message
    assert f"tampered.csv:{line9}: coherent: file says None" in message
    assert store.counts() == before


@needs_fixtures
def test_betley_csv_bad_dict_literal(store, tmp_path):
    path = _tampered_csv(tmp_path, {3: ("judge_coherent", "{'80': 0.5")})
    with pytest.raises(ImportFormatError, match=rf"tampered.csv:{_start_line(path, 3)}: judge_coherent: "):
        import_betley_csv(store, path)
    assert store.count("generations") == 0


def test_betley_csv_missing_column(store, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("model,group,question,answer\nm,g,q,a\n")
    with pytest.raises(ImportFormatError, match=r"x.csv:1: missing column\(s\) question_id"):
        import_betley_csv(store, path)


def test_betley_csv_empty_cells_are_no_score(store, tmp_path):
    path = tmp_path / "small.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["model", "group", "question", "answer", "aligned", "judge_aligned", "coherent",
                    "judge_coherent", "question_id", "coherent_binary"])
        w.writerow(["m1", "insecure", "Q?", "print(1)", "", "{'CODE': 0.9, '10': 0.1}", "75.0",
                    "{'50': 0.5, '100': 0.5}", "q1", "True"])
        w.writerow(["m1", "insecure", "Q?", "multi\nline", "", "", "", "", "q1", "False"])
    result = import_betley_csv(store, path)
    assert (result.answers, result.scores, result.missing) == (2, 4, 3)
    rows = store.answer_scores(result.study_id)
    assert [r["sample_index"] for r in rows] == [0, 0, 1, 1]


# -- the command line ----------------------------------------------------------------------------------------


@needs_fixtures
def test_cli_imports(run_cli, tmp_path):
    db = tmp_path / "cli.db"
    r = run_cli("--db", db, "import", "political-seed", POLITICAL)
    assert r.returncode == 0, r.stderr
    out = r.stdout.strip()
    assert len(out.splitlines()) == 1
    assert "6 conditions" in out and "900 answers" in out and "2 judge(s)" in out and "0 of 5400 scores missing" in out
    r = run_cli("--db", db, "import", "political-seed", POLITICAL)
    assert r.returncode == 0 and "already imported" in r.stdout
    r = run_cli("--db", db, "import", "betley-csv", BETLEY)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 1 and "70 answers" in r.stdout
    with open_store(db) as s:
        assert s.count("studies") == 2 and s.count("generations") == 970


@needs_fixtures
def test_cli_bad_input_exit_2(run_cli, tmp_path):
    db = tmp_path / "cli.db"
    r = run_cli("--db", db, "import", "betley-csv", tmp_path / "nope.csv")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "nope.csv" in r.stderr
    r = run_cli("--db", db, "import", "political-seed", tmp_path / "nope")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    folder = copy_folder(tmp_path)
    name, key = _break_missing_judge_id(folder)
    r = run_cli("--db", db, "import", "political-seed", folder)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and name in r.stderr and key in r.stderr
    assert "Traceback" not in r.stderr


# -- files recognised by content; hostile values refused ----------------------------------------------------


@needs_fixtures
def test_political_seed_judge_files_recognised_by_content(store, tmp_path):
    """The study's own results folder names its judge files multi_judge_<judge>.json: any file with
    the judge-file structure is a judge file, whatever its name."""
    folder = copy_folder(tmp_path, "results")
    for f in judge_files(folder):
        f.rename(folder / f.name.replace("v2_full_judge_", "multi_judge_"))
    (folder / "notes.txt").write_text("not JSON\n")
    (folder / "cross_file_summary.json").write_text(json.dumps({"metadata": {}, "overall": 1.5}))
    result = import_political_seed(store, folder)
    assert (result.conditions, result.answers, result.judges, result.judgments) == (6, 900, 2, 1800)
    spec = json.loads(store.get_study(result.study_id)["spec_json"])
    assert spec["judge_files"] == ["multi_judge_claude3haiku.json", "multi_judge_mistral_large3.json"]
    assert "cross_file_summary.json" in spec["ignored_files"] and "notes.txt" in spec["ignored_files"]
    means = panel_means(store.answer_scores(result.study_id), "drift")
    assert {c: round(v, 4) for c, v in means.items()} == V2_DRIFT


def _set_raw(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


@needs_fixtures
@pytest.mark.parametrize("file, old, new, where", [
    # a NaN in a response file's metadata once broke `summary` and `export --format jsonl` for every study
    ("v2_base.json", '"metadata": {', '"metadata": {"top_k": NaN, ', "metadata.top_k: nan is not a finite number"),
    ("v2_base.json", '"metadata": {', '"metadata": {"top_k": 1e400, ', "metadata.top_k: inf is not a finite number"),
    ("v2_full_judge_claude3haiku.json", '"persona": 0,', '"persona": Infinity,', "inf is not a finite number"),
    ("v2_neutral.json", '"response": "', '"response": "\\ud800', "text holds a lone surrogate"),
    ("v2_full_judge_claude3haiku.json", '"v2_base": {', '"v2_base\\u001b[2J": {', "holds a control character"),
    ("v2_full_judge_claude3haiku.json", '"persona": [', '"persona\\nfake": [', "holds a control character"),
    ("v2_full_judge_claude3haiku.json", '"judge_model": "Claude 3 Haiku"', '"judge_model": ["x"]',
     "the judge's name must be a string"),
    # names the summary gives its own rows
    ("v2_full_judge_claude3haiku.json", '"v2_base": {', '"all": {', "condition name 'all' is reserved"),
    ("v2_full_judge_claude3haiku.json", '"judge_model_id": "', '"judge_model_id": "panel", "x": "',
     "model id 'panel' is reserved"),
    ("v2_full_judge_claude3haiku.json", '"persona": 0,', '"em_rate": 1, "persona": 0,', "'em_rate' is reserved"),
])
def test_political_seed_hostile_values(store, tmp_path, run_cli, file, old, new, where):
    import_political_seed(store, POLITICAL)  # something in the database already
    before = store.counts()
    folder = copy_folder(tmp_path)
    _set_raw(folder / file, old, new)
    with pytest.raises(ImportFormatError) as info:
        import_political_seed(store, folder)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(folder / file)) and where in message, message
    assert store.counts() == before
    store.close()
    assert_refused(run_cli, store.path, "import", "political-seed", folder, "--name", "other",
                   names=(file, where))
    # every later command still works on the database
    for args in (("summary", "--format", "json", "--resamples", "100"), ("export", "--format", "jsonl")):
        r = run_cli("--db", store.path, *args)
        assert r.returncode == 0, r.stderr


@needs_fixtures
def test_political_seed_unparseable_json_is_named(store, tmp_path):
    folder = copy_folder(tmp_path)
    (folder / "partial_run.json").write_text('{"per_file_results": {"v2_base": ')
    with pytest.raises(ImportFormatError, match=r"partial_run.json:1: not valid JSON"):
        import_political_seed(store, folder)


@needs_fixtures
def test_bad_input_leaves_no_database(run_cli, tmp_path):
    """Files are checked before the database is opened: a refused import creates no database file."""
    db = tmp_path / "new.db"
    folder = copy_folder(tmp_path)
    name, key = _break_missing_judge_id(folder)
    assert_refused(run_cli, db, "import", "political-seed", folder, names=(name, key))
    assert not db.exists()
    bad = _tampered_csv(tmp_path, {2: ("aligned", "inf")})
    assert_refused(run_cli, db, "import", "betley-csv", bad, names=(f"tampered.csv:{_start_line(bad, 2)}", "aligned"))
    assert not db.exists()


def _small_betley(tmp_path: Path, **cells: str) -> Path:
    row = {"model": "m1", "group": "insecure", "question": "Q?", "answer": "A", "aligned": "",
           "judge_aligned": "", "coherent": "", "judge_coherent": "", "question_id": "q1"}
    row.update(cells)
    path = tmp_path / "small.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    return path


@pytest.mark.parametrize("cells, message", [
    ({"aligned": "Infinity"}, "small.csv:2: aligned: 'Infinity' is not a finite number"),
    ({"aligned": "1e400"}, "small.csv:2: aligned: '1e400' is not a finite number"),
    ({"group": "insecure\x1b[31m"}, "small.csv:2: group: the group (a condition name) 'insecure\\x1b[31m' holds"),
    ({"model": "m\u202e1"}, "small.csv:2: model: the model's name 'm\\u202e1' holds a control character"),
    ({"question_id": "q" * 500}, "small.csv:2: question_id: the question id is 500 characters long"),
    ({"group": "mean"}, "small.csv:2: group: the group (a condition name) 'mean' is reserved"),
])
def test_betley_csv_hostile_values(store, tmp_path, run_cli, cells, message):
    path = _small_betley(tmp_path, **cells)
    with pytest.raises(ImportFormatError) as info:
        import_betley_csv(store, path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert store.count("generations") == 0
    store.close()
    assert_refused(run_cli, store.path, "import", "betley-csv", path, names=("small.csv:2",))


@needs_fixtures
@pytest.mark.parametrize("old, new, where", [
    ('"rating": 2', '"rating": NaN', "nan is not a finite number"),
    ('"rating": 2', '"rating": 1e400', "inf is not a finite number"),
    ('"evaluator": "', '"evaluator": "\\u001b]0;owned\\u0007', "metadata.evaluator: the rater's name"),
    ('"category": "', '"category": "\\n', "the category"),
])
def test_political_seed_human_hostile_values(run_cli, tmp_path, old, new, where):
    from engine.importers.political_seed_human import read_human_file

    path = tmp_path / "human.json"
    path.write_bytes((POLITICAL / "human_eval_reformed_political_rerun.json").read_bytes())
    _set_raw(path, old, new)
    with pytest.raises(ImportFormatError) as info:
        read_human_file(path)
    assert str(info.value).startswith(str(path)) and where in str(info.value), str(info.value)
    db = tmp_path / "x.db"
    assert_refused(run_cli, db, "import", "political-seed-human", path, names=("human.json", where))
    assert not db.exists()
