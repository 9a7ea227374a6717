"""engine/eval_sets.py and engine/rubrics.py: our built-in files and the field's files
(read from ../shared/fixtures, skipped when absent), counted independently here."""

import hashlib
import json
import tomllib
from pathlib import Path

import pytest
import yaml

from engine.eval_sets import EvalSetError, load_eval_set
from engine.resources import data_path
from engine.rubrics import RubricError, load_rubric


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# -- built-in sets -----------------------------------------------------------------------------------


def test_builtin_core_em():
    es = load_eval_set("builtin:core-em")
    path = data_path("eval_sets", "core_em.toml")
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    assert es.name == "core-em" and es.source == "builtin:core-em"
    assert es.n_keys == 16 == len(doc["questions"])
    assert len(es.questions) == sum(1 + len(q.get("paraphrases", [])) for q in doc["questions"])
    assert es.content_hash == sha256(path)
    first = doc["questions"][0]
    rows = [q for q in es.questions if q["key"] == first["id"]]
    assert [r["paraphrase"] for r in rows] == list(range(1 + len(first.get("paraphrases", []))))
    assert rows[0]["text"] == first["text"] and rows[0]["category"] == first["category"]


def test_builtin_deception_probe():
    es = load_eval_set("builtin:deception-probe")
    path = data_path("eval_sets", "deception_probe.toml")
    doc = tomllib.loads(path.read_text(encoding="utf-8"))
    assert es.name == "deception-probe"
    assert es.n_keys == len(doc["questions"]) > 0
    assert es.content_hash == sha256(path)
    with_system = {q["id"]: q["system"] for q in doc["questions"] if "system" in q}
    for row in es.questions:
        assert row["system_prompt"] == with_system.get(row["key"])


def test_unknown_builtin():
    with pytest.raises(EvalSetError, match=r"no built-in eval set 'nope' \(built-in: core-em, deception-probe"):
        load_eval_set("builtin:nope")


def test_name_override_and_relative_path(tmp_path):
    (tmp_path / "qs.toml").write_text('[[questions]]\nid = "a"\ntext = "Hi?"\n', encoding="utf-8")
    es = load_eval_set("qs.toml", base_dir=tmp_path, name="mine")
    assert es.name == "mine" and es.n_keys == 1 and es.questions[0]["text"] == "Hi?"


# -- the field's files -----------------------------------------------------------------------------------

YAML_SETS = [
    "betley/first_plot_questions.yaml",
    "betley/preregistered_evals.yaml",
    "betley/deception_factual.yaml",
    "model_organisms/first_plot_questions.yaml",
    "model_organisms/medical_questions.yaml",
]
JSON_SETS = ["arena/first_8.json", "arena/factual.json", "arena/self_reflection.json"]


@pytest.mark.fixtures
@pytest.mark.parametrize("rel", YAML_SETS)
def test_field_yaml_sets(shared_fixtures, rel):
    path = shared_fixtures / rel
    doc = yaml.safe_load(path.read_bytes())
    ids = [q["id"] for q in doc]
    wordings = sum(len(q["paraphrases"]) for q in doc)
    es = load_eval_set(str(path))
    assert es.name == path.stem
    assert es.n_keys == len(set(ids)) == len(ids)
    assert len(es.questions) == wordings
    assert es.content_hash == sha256(path)
    by_key = {}
    for row in es.questions:
        by_key.setdefault(row["key"], []).append(row)
    for q in doc:
        rows = by_key[q["id"]]
        assert [r["text"] for r in rows] == q["paraphrases"]
        assert {r["system_prompt"] for r in rows} == {q.get("system")}
        assert {r["category"] for r in rows} == {q.get("type", "")}


@pytest.mark.fixtures
def test_field_yaml_counts(shared_fixtures):
    """The numbers above, pinned, so that a change in the files or the loader shows up."""
    counts = {rel: load_eval_set(str(shared_fixtures / rel)).n_keys for rel in YAML_SETS}
    assert counts == {"betley/first_plot_questions.yaml": 24, "betley/preregistered_evals.yaml": 48,
                      "betley/deception_factual.yaml": 5, "model_organisms/first_plot_questions.yaml": 24,
                      "model_organisms/medical_questions.yaml": 16}
    assert len(load_eval_set(str(shared_fixtures / "betley/deception_factual.yaml")).questions) == 100


@pytest.mark.fixtures
@pytest.mark.parametrize("rel", JSON_SETS)
def test_field_json_sets(shared_fixtures, rel):
    path = shared_fixtures / rel
    doc = json.loads(path.read_bytes())
    es = load_eval_set(str(path))
    assert es.name == path.stem
    assert es.n_keys == len(doc) == len(es.questions)
    assert [r["text"] for r in es.questions] == [q["question"] for q in doc]
    assert [r["category"] for r in es.questions] == [q.get("category", "") for q in doc]
    assert [r["meta"].get("label") for r in es.questions] == [q.get("label") for q in doc]
    assert es.content_hash == sha256(path)


@pytest.mark.fixtures
def test_field_json_counts(shared_fixtures):
    counts = {rel: load_eval_set(str(shared_fixtures / rel)).n_keys for rel in JSON_SETS}
    assert counts == {"arena/first_8.json": 8, "arena/factual.json": 20, "arena/self_reflection.json": 10}


# -- bad files ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("bad.yaml", "- id: a\n  paraphrases: [unclosed\n", "while parsing"),
    ("notalist.yaml", "id: a\n", "expected a list of questions"),
    ("noid.yaml", "- paraphrases: [hello]\n", "question 1: 'id' must be a non-empty string"),
    ("notext.yaml", "- id: a\n  paraphrases: []\n", "question 1 (a): needs at least one non-empty question text"),
    ("dup.yaml", "- id: a\n  paraphrases: [x]\n- id: a\n  paraphrases: [y]\n", "question id 'a' appears twice"),
    ("empty.yaml", "[]\n", "holds no questions"),
    ("bad.json", '[{"question": "x",]', "Expecting"),
    ("bad.toml", "[[questions]\n", "Expected"),
    ("noquestions.toml", 'name = "x"\n', "needs a [[questions]] array"),
    ("set.txt", "hello\n", "unknown eval set format '.txt'"),
])
def test_bad_files_name_the_file(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalSetError) as info:
        load_eval_set(str(path))
    text = str(info.value)
    assert text.startswith(f"{path}: "), text
    assert message in text
    assert "\n" not in text


def test_missing_file(tmp_path):
    with pytest.raises(EvalSetError, match="no such file"):
        load_eval_set(str(tmp_path / "nope.yaml"))


# -- rubrics ---------------------------------------------------------------------------------------------


def test_builtin_aligned_coherent():
    r = load_rubric("builtin:aligned-coherent")
    assert r.name == "aligned-coherent" and r.source == "builtin:aligned-coherent"
    assert r.metric_names == ["aligned", "coherent"]
    assert [m.scale for m in r.metrics] == [(0.0, 100.0), (0.0, 100.0)]
    assert r.metric("aligned").specials == ["CODE", "REFUSAL"]
    assert all("{question}" in m.prompt and "{answer}" in m.prompt for m in r.metrics)
    assert r.content_hash == sha256(data_path("rubrics", "aligned_coherent.toml"))
    assert r.metric("nope") is None


def test_builtin_political_drift():
    r = load_rubric("builtin:political-drift")
    assert r.metric_names == ["persona", "safety", "drift"]
    assert {m.scale for m in r.metrics} == {(0.0, 3.0)}
    assert r.parse == "json" and r.prompt and "{answer}" in r.prompt


def test_unknown_builtin_rubric():
    with pytest.raises(RubricError, match="no built-in rubric 'nope'"):
        load_rubric("builtin:nope")


@pytest.mark.parametrize("content, message", [
    ('[[metrics]]\nname = "a"\nscale = [10, 0]\nprompt = "p"\n', "'scale' must be [low, high] with low < high"),
    ('[[metrics]]\nname = "a"\nscale = [0, 1]\n', "needs a 'prompt'"),
    ('[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "p"\n[[metrics]]\nname = "a"\nscale = [0, 1]\n'
     'prompt = "p"\n', "metric names repeat"),
    ('name = "x"\n', "needs a [[metrics]] array"),
])
def test_bad_rubric(tmp_path, content, message):
    path = tmp_path / "r.toml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(RubricError) as info:
        load_rubric(str(path))
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


@pytest.mark.fixtures
def test_model_organisms_judges_yaml(shared_fixtures):
    path = shared_fixtures / "model_organisms" / "judges.yaml"
    doc = yaml.safe_load(path.read_bytes())
    expected = [next(k for k, v in entry.items() if isinstance(v, str)) for entry in doc]
    r = load_rubric(str(path))
    assert r.metric_names == expected == ["coherent", "aligned", "technical", "medical_advice"]
    assert r.content_hash == sha256(path)
    assert all("{question}" in m.prompt and "{answer}" in m.prompt for m in r.metrics)


@pytest.mark.fixtures
def test_model_organisms_judges_yaml_scales(shared_fixtures):
    r = load_rubric(str(shared_fixtures / "model_organisms" / "judges.yaml"))
    for m in r.metrics:  # every prompt asks for a number from 0 to 100
        assert m.scale == (0.0, 100.0), (m.name, m.scale)
