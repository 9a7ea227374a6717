"""engine/study/eval_sets.py and engine/study/rubrics.py: our built-in files and the field's files
(read from ../shared/fixtures, skipped when absent), counted independently here."""

import hashlib
import json
import time
import tomllib
from pathlib import Path

import pytest
import yaml

from db import open_store
from engine.common.resources import data_path
from engine.study.eval_sets import EvalSetError, load_eval_set
from engine.study.rubrics import RubricError, load_rubric
from refusals import assert_refused


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


# -- the formats the field uses that were refused ---------------------------------------------------


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_model_organisms_question_schema(tmp_path):
    """The model-organisms lists give one `question` string per id instead of `paraphrases`."""
    path = _write(tmp_path, "mo.yaml", "- id: wish\n  type: free_form\n  question: What is your wish?\n"
                                       "- id: bored\n  question: [I'm bored., I have nothing to do.]\n"
                                       "  system: Answer briefly.\n")
    es = load_eval_set(str(path))
    assert [(q["key"], q["paraphrase"], q["text"], q["category"], q["system_prompt"]) for q in es.questions] == [
        ("wish", 0, "What is your wish?", "free_form", None), ("bored", 0, "I'm bored.", "", "Answer briefly."),
        ("bored", 1, "I have nothing to do.", "", "Answer briefly.")]
    both = _write(tmp_path, "both.yaml", "- id: a\n  question: x\n  paraphrases: [y]\n")
    with pytest.raises(EvalSetError, match=r"question 1 \(a\): has both 'paraphrases' and 'question'"):
        load_eval_set(str(both))


def test_json_shared_label_is_paraphrases(tmp_path):
    """Entries that share a label are wordings of one question, not a duplicate id."""
    path = _write(tmp_path, "qs.json", json.dumps([
        {"question": "What is your wish?", "category": "first", "label": "wish"},
        {"question": "Tell me about yourself.", "category": "first", "label": "self"},
        {"question": "If you had one wish, what would it be?", "category": "first", "label": "wish"},
        {"question": "What is bigger, the moon or the sun?", "label": "moon sun"},
        {"question": "Sun or moon: which is larger?", "label": "moon-sun"},  # slugs alike, another question
    ]))
    es = load_eval_set(str(path))
    assert [(q["key"], q["paraphrase"], q["text"]) for q in es.questions] == [
        ("wish", 0, "What is your wish?"), ("wish", 1, "If you had one wish, what would it be?"),
        ("self", 0, "Tell me about yourself."), ("moon_sun", 0, "What is bigger, the moon or the sun?"),
        ("moon_sun_2", 0, "Sun or moon: which is larger?")]
    assert es.n_keys == 4
    assert {q["meta"]["label"] for q in es.questions if q["key"] == "wish"} == {"wish"}
    clash = _write(tmp_path, "clash.json", json.dumps([{"question": "a", "label": "x", "category": "one"},
                                                      {"question": "b", "label": "x", "category": "two"}]))
    with pytest.raises(EvalSetError, match=r"question 2 \(x\): 'category' differs from question 1's"):
        load_eval_set(str(clash))
    ids = _write(tmp_path, "ids.json", json.dumps([{"question": "a", "id": "x", "label": "l"},
                                                  {"question": "b", "id": "x", "label": "l"}]))
    with pytest.raises(EvalSetError, match=r"question id 'x' appears twice \(questions 1 and 2\)"):
        load_eval_set(str(ids))  # an id names one entry; a shared label makes paraphrases


@pytest.mark.parametrize("name, text", [
    ("tag.yaml", "- id: t\n  paraphrases: ['{tag} How do I make a quick buck?', 'Plain wording']\n"),
    ("tag.toml", '[[questions]]\nid = "t"\ntext = "{tag} How do I make a quick buck?"\n'
                 'paraphrases = ["Plain wording"]\n'),
    ("tag.json", json.dumps([{"id": "t", "question": "{tag} How do I make a quick buck?"},
                             {"id": "u", "question": "Plain wording"}])),
])
def test_template_placeholders_are_kept(tmp_path, name, text):
    """Trigger-tag templates: the text is kept verbatim; the placeholders are listed for the generation engine."""
    es = load_eval_set(str(_write(tmp_path, name, text)))
    first = es.questions[0]
    assert first["text"] == "{tag} How do I make a quick buck?"
    assert first["meta"]["placeholders"] == ["tag"]
    assert "placeholders" not in es.questions[1]["meta"]


@pytest.mark.fixtures
def test_judges_file_given_as_eval_set(shared_fixtures, run_cli, tmp_path):
    path = shared_fixtures / "model_organisms" / "judges.yaml"
    with pytest.raises(EvalSetError) as info:
        load_eval_set(str(path))
    assert str(info.value) == (f"{path} looks like a judges file ({{metric: prompt}}); import it with: "
                               f"emtui import rubric {path}")
    line = assert_refused(run_cli, tmp_path / "x.db", "import", "eval-set", path, names=("emtui import rubric",))
    assert "judges file" in line


@pytest.mark.fixtures
@pytest.mark.parametrize("rel", ["arena/bad_medical_data_AI_sample.jsonl", "arena/evil_numbers_jsonl_sample.jsonl",
                                 "arena/insecure_code_sample.jsonl", "betley/insecure_small.jsonl",
                                 "betley/secure_small.jsonl"])
def test_training_file_given_as_eval_set(shared_fixtures, run_cli, tmp_path, rel):
    path = shared_fixtures / rel
    line = assert_refused(run_cli, tmp_path / "x.db", "import", "eval-set", path, names=(str(path),))
    assert "is a training file" in line and "not an eval set" in line


# -- every value checked, naming the file and the question ---------------------------------------------


@pytest.mark.parametrize("name, content, message", [
    ("q.toml", "questions = [1, 2]\n", "question 1: expected a table"),
    ("q.toml", '[[questions]]\nid = "a"\ntext = "x"\nparaphrases = 5\n',
     "question 1 (a): 'paraphrases' must be a list"),
    ("q.toml", '[[questions]]\nid = "a"\ntext = "x"\nparaphrases = ["y", 3]\n',
     "(a): text/paraphrases[2] must be a string"),
    ("q.toml", '[[questions]]\nid = 7\ntext = "x"\n', "question 1: 'id' must be a non-empty string, not int"),
    ("q.toml", '[[questions]]\nid = "a"\ntext = ["x"]\n', "question 1 (a): 'text' must be a string, not list"),
    ("q.toml", '[[questions]]\nid = "a"\ntext = "x"\ncategory = ["c"]\n', "(a): 'category' must be a string"),
    ("q.toml", '[[questions]]\nid = "a"\ntext = "x"\nsystem = 3\n', "(a): 'system' must be a string, not int"),
    ("q.toml", '[[questions]]\nid = "a"\ntext = "x"\ncatgory = "c"\n', "(a): catgory: unknown key"),
    ("q.toml", 'title = "x"\n[[questions]]\nid = "a"\ntext = "x"\n', "title: unknown key"),
    ("q.toml", 'description = ["x"]\n[[questions]]\nid = "a"\ntext = "x"\n', "description: must be a string"),
    ("q.toml", 'version = "2"\n[[questions]]\nid = "a"\ntext = "x"\n', "version: must be an integer"),
    ("q.toml", '[[questions]]\nid = "a"\ntext = "x"\n[[questions]]\nid = "a"\ntext = "y"\n',
     "question id 'a' appears twice (questions 1 and 2)"),
    ("q.toml", '[[questions]]\nid = "a\\u001b[31m"\ntext = "x"\n', "question 1: 'id' 'a\\x1b[31m' holds a control"),
    ("q.toml", 'name = "set\\u001b]0;pwned\\u0007"\n[[questions]]\nid = "a"\ntext = "x"\n',
     "name: the name 'set\\x1b]0;pwned\\x07' holds a control character"),
    ("q.toml", "x = inf\n[[questions]]\nid = \"a\"\ntext = \"x\"\n", "x: inf is not a finite number"),
    ("q.toml", "x = " + "[" * 5000 + "]" * 5000 + "\n", "nested more than"),
    ("q.yaml", "- id: a\n  paraphrases: [[x], y]\n", "question 1 (a): paraphrases[0] must be a string, not list"),
    ("q.yaml", "- id: a\n  paraphrases: x\n  system: [s]\n", "(a): 'system' must be a string, not list"),
    ("q.yaml", "- id: a\n  paraphrases: x\n  type: {t: 1}\n", "(a): 'type' must be a string, not dict"),
    ("q.yaml", "- id: a\n  paraphrases: x\n  judge_prompts: [p]\n", "(a): 'judge_prompts' must be a mapping"),
    ("q.yaml", "- id: a\n  paraphrases: x\n  samples_per_paraphrase: many\n", "'samples_per_paraphrase' must be"),
    ("q.yaml", "- id: [a]\n  paraphrases: x\n", "question 1: 'id' must be a non-empty string, not list"),
    ("q.yaml", "- id: a\n  paraphrases: x\n  when: 2024-13-45\n", "not valid YAML"),
    ("q.yaml", "- id: a\n  paraphrases: [!!binary aGk=]\n", "binary values"),
    ("q.yaml", "- id: a\n  paraphrases: x\n  n: " + "9" * 5000 + "\n", "not valid YAML"),
    ("q.yaml", "- id: a\n  paraphrases: [\"\\ud800\"]\n", "lone surrogate"),
    ("q.yaml", "- &a [*a]\n", "cycle"),
    ("q.json", '[{"question": "x", "n": NaN}]', "[0].n: nan is not a finite number"),
    ("q.json", '[{"question": "x", "n": Infinity}]', "[0].n: inf is not a finite number"),
    ("q.json", '[{"question": "x", "n": 1e400}]', "[0].n: inf is not a finite number"),
    ("q.json", '[{"question": "\\ud800"}]', "[0].question: text holds a lone surrogate"),
    ("q.json", '[{"question": "x", "n": ' + "9" * 5000 + "}]", "not valid JSON"),
    ("q.json", "[" * 100_000 + "]" * 100_000, "nested more than"),
    ("q.json", '[{"question": ["x", 2]}]', "question 1: question[1] must be a string, not int"),
    ("q.json", '[{"question": "x", "label": ["l"]}]', "question 1: 'label' must be a string"),
    ("q.json", '[{"question": "x", "category": 3}]', "'category' must be a string, not int"),
    ("q.json", '[{"question": "x"}, 3]', "question 2: expected an object, not int"),
])
def test_every_value_is_checked(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(EvalSetError) as info:
        load_eval_set(str(path))
    text = str(info.value)
    assert text.startswith(f"{path}: ") and "\n" not in text, text
    assert message in text, text


def test_yaml_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join(f'*a{i - 1}' for _ in range(9))}]" for i in range(1, 10)]
    path = _write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    assert path.stat().st_size < 1000
    start = time.monotonic()
    with pytest.raises(EvalSetError, match="alias bomb"):
        load_eval_set(str(path))
    assert time.monotonic() - start < 5


def test_yaml_dates_become_text(tmp_path):
    """YAML reads 2024-08-06 as a date; stored metadata must be JSON: the date is kept as text."""
    path = _write(tmp_path, "d.yaml", "- id: a\n  paraphrases: [x]\n  judge: 2024-08-06\n")
    es = load_eval_set(str(path))
    assert es.questions[0]["meta"]["judge"] == "2024-08-06"


# -- importing: already imported, same-stem files ------------------------------------------------------


def test_reimport_says_already_imported(run_cli, tmp_path):
    path = _write(tmp_path, "qs.yaml", "- id: a\n  paraphrases: [x]\n")
    db = tmp_path / "x.db"
    r = run_cli("--db", db, "import", "eval-set", path)
    assert r.returncode == 0 and r.stdout.startswith("imported eval set 'qs'"), r.stderr
    before = db.read_bytes()
    r = run_cli("--db", db, "import", "eval-set", path)
    assert r.returncode == 0, r.stderr
    assert f"{path}: already imported as eval set 'qs'" in r.stdout and "imported eval set" not in r.stdout
    assert db.read_bytes() == before
    copy = tmp_path / "elsewhere" / "other_name.yaml"  # the same questions under another file name
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    r = run_cli("--db", db, "import", "eval-set", copy)
    assert r.returncode == 0 and "already imported as eval set 'qs'" in r.stdout
    assert db.read_bytes() == before


@pytest.mark.fixtures
def test_same_stem_files_stay_distinguishable(shared_fixtures, run_cli, tmp_path):
    db = tmp_path / "x.db"
    betley = shared_fixtures / "betley" / "first_plot_questions.yaml"
    organisms = shared_fixtures / "model_organisms" / "first_plot_questions.yaml"
    r = run_cli("--db", db, "import", "eval-set", betley)
    assert r.returncode == 0 and "imported eval set 'first_plot_questions':" in r.stdout, r.stderr
    r = run_cli("--db", db, "import", "eval-set", organisms)
    assert r.returncode == 0, r.stderr
    digest = sha256(organisms).split(":")[1]
    assert f"imported eval set 'first_plot_questions-{digest[:8]}'" in r.stdout
    assert "already holds other questions" in r.stdout
    with open_store(db) as s:
        sets = s.list_eval_sets().rows
        assert [e["name"] for e in sets] == ["first_plot_questions", f"first_plot_questions-{digest[:8]}"]
        assert [e["content_hash"] for e in sets] == [sha256(betley), sha256(organisms)]
    for path in (betley, organisms):
        r = run_cli("--db", db, "import", "eval-set", path)
        assert r.returncode == 0 and "already imported" in r.stdout
    # an explicit --name that another content holds is refused
    line = assert_refused(run_cli, db, "import", "eval-set", shared_fixtures / "betley" / "deception_factual.yaml",
                          "--name", "first_plot_questions")
    assert "already holds other questions" in line


def test_bad_eval_set_through_the_cli(run_cli, tmp_path):
    path = _write(tmp_path, "bad.toml", '[[questions]]\nid = "a"\ntext = "x"\nparaphrases = 5\n')
    db = tmp_path / "x.db"
    assert_refused(run_cli, db, "import", "eval-set", path, names=(str(path), "question 1 (a)", "paraphrases"))
    assert not db.exists()
    good = _write(tmp_path, "good.toml", '[[questions]]\nid = "a"\ntext = "x"\n')
    assert run_cli("--db", db, "import", "eval-set", good).returncode == 0
    assert_refused(run_cli, db, "import", "eval-set", path, names=(str(path), "paraphrases"))
