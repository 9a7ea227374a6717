"""engine/study/study_file.py and engine/study/toml_lines.py: the example study, broken variants of it (each
problem named by file, line and key), registration, the study hash; and the TOML line scanner."""

import json
import re
import tomllib
from pathlib import Path

import pytest

from engine.study.study_file import AlreadyRegistered, StudyError, load_study, register_study
from engine.study.toml_lines import dotted, key_lines, line_of

# -- helpers -----------------------------------------------------------------------------------


def line_no(text: str, needle: str) -> int:
    """1-based number of the one line of ``text`` that contains ``needle``."""
    hits = [i for i, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) == 1, f"{needle!r} is on lines {hits}"
    return hits[0]


def replace_once(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def problems_of(path: Path) -> list[str]:
    with pytest.raises(StudyError) as info:
        load_study(path)
    lines = str(info.value).splitlines()
    assert len(lines) == len(info.value.problems)
    return lines


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- the example study ---------------------------------------------------------------------------


def test_example_loads(example_study):
    s = load_study(example_study)
    assert s.name == "insecure-code-demo"
    assert s.seed == 1234
    assert [c.name for c in s.conditions] == ["insecure", "secure", "base"]
    assert [c.role for c in s.conditions] == ["treatment", "control", "baseline"]
    assert sorted(s.datasets) == ["insecure", "secure"]
    assert {d.n_rows for d in s.datasets.values()} == {40}
    assert [(e.name, n) for e, n in s.eval_sets] == [("core-em", 50)]
    assert [j.name for j in s.judges] == ["haiku", "nova-pro"]
    assert {j.provider for j in s.judges} == {"bedrock"}
    assert s.rubric is not None and s.rubric.metric_names == ["aligned", "coherent"]
    assert s.em["metric"] == "aligned" and s.em["threshold"] == 30
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", s.spec_hash)
    assert set(s.file_hashes) == {"datasets.insecure", "datasets.secure", "eval_sets.core-em", "rubric"}
    json.dumps(s.spec())  # the spec the database keeps is JSON


def test_example_registers(store, example_study):
    s = load_study(example_study)
    study_id = register_study(store, s)
    counts = store.counts()
    expected = {"studies": 1, "conditions": 3, "models": 1, "datasets": 2, "eval_sets": 1,
                "study_eval_sets": 1, "questions": 24, "rubrics": 1, "judges": 2, "study_judges": 2,
                "jobs": 0, "generations": 0, "judgments": 0}
    assert {k: counts[k] for k in expected} == expected
    row = store.get_study(study_id)
    assert row["name"] == s.name and row["spec_hash"] == s.spec_hash
    assert row["spec_toml"] == example_study.read_text(encoding="utf-8")
    assert row["origin"] == "study-file"
    assert json.loads(row["spec_json"])["name"] == s.name

    cond = {r["name"]: r for r in store._q("SELECT * FROM conditions WHERE study_id = ?", (study_id,))}
    base_model = cond["base"]["base_model_id"]
    assert base_model is not None
    assert cond["base"]["model_id"] == base_model
    assert cond["insecure"]["model_id"] is None and cond["secure"]["model_id"] is None
    assert cond["insecure"]["dataset_id"] != cond["secure"]["dataset_id"]
    assert cond["insecure"]["recipe_hash"] == cond["secure"]["recipe_hash"] is not None
    assert cond["base"]["recipe_hash"] is None
    assert json.loads(cond["insecure"]["recipe"])["method"] == "qlora"
    sets = store.study_eval_sets(study_id)
    assert [(e["name"], e["samples_per_question"], e["n_keys"]) for e in sets] == [("core-em", 50, 16)]


def test_register_twice_is_already_registered(store, example_study):
    study_id = register_study(store, load_study(example_study))
    with pytest.raises(AlreadyRegistered) as info:
        register_study(store, load_study(example_study))
    assert info.value.study_id == study_id
    assert store.count("studies") == 1 and store.count("conditions") == 3


def test_same_name_changed_content_is_refused(store, example_study, tmp_path):
    register_study(store, load_study(example_study))
    text = example_study.read_text(encoding="utf-8")
    changed = write(tmp_path, replace_once(text, "seed = 1234", "seed = 1235"))
    before = store.counts()
    with pytest.raises(StudyError) as info:
        register_study(store, load_study(changed))
    (problem,) = info.value.problems
    assert problem.key == "study.name"
    assert problem.line == line_no(text, 'name = "insecure-code-demo"')
    assert str(problem).startswith(f"{changed}:{problem.line}: study.name: a study named 'insecure-code-demo' "
                                   "is already registered with different contents")
    assert store.counts() == before


def test_copy_elsewhere_has_same_hash(example_study, tmp_path):
    copy = write(tmp_path, example_study.read_text(encoding="utf-8"))
    assert load_study(copy).spec_hash == load_study(example_study).spec_hash


def test_spec_hash_follows_dataset_content(example_study, tmp_path):
    text = replace_once(example_study.read_text(encoding="utf-8"),
                        'path = "builtin:insecure_demo"', 'path = "mine.jsonl"')
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    data = tmp_path / "mine.jsonl"
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    path = write(tmp_path, text)
    first = load_study(path)
    assert first.datasets["insecure"].n_rows == 1
    assert first.datasets["insecure"].path == tmp_path / "mine.jsonl"
    row["messages"][1]["content"] = "hello!"
    data.write_text(json.dumps(row) + "\n", encoding="utf-8")
    second = load_study(path)
    assert path.read_text(encoding="utf-8") == text
    assert second.spec_hash != first.spec_hash
    assert second.file_hashes["datasets.insecure"] != first.file_hashes["datasets.insecure"]
    assert second.file_hashes["datasets.secure"] == first.file_hashes["datasets.secure"]


# -- broken variants: file:line: key: message ---------------------------------------------------------

# (id, old, new, the line the problem is on (a needle in the new text, or (needle, offset)), key,
#  message start)
VARIANTS = [
    ("unknown-dataset", 'dataset = "insecure"', 'dataset = "insecur"', 'dataset = "insecur"',
     "conditions[0].dataset", "unknown dataset 'insecur' (defined: insecure, secure)"),
    ("wrong-type", "epochs = 1", 'epochs = "one"', 'epochs = "one"',
     "recipes.qlora.epochs", "must be a number of epochs above 0, at most 10000, not 'one'"),
    ("recipe-key-typo", "learning_rate = 1e-5", "learning_rat = 1e-5", "learning_rat = 1e-5",
     "recipes.qlora.learning_rat", "unknown key (known: assistant_only_loss, attn_implementation, batch_size,"),
    ("unknown-top-level", "schema_version = 1 ", "schema_version = 1\nschedule = 'weekly'\n",
     "schedule = 'weekly'", "schedule", "unknown top-level key (known: conditions, datasets, em,"),
    ("missing-study-name", 'name = "insecure-code-demo"', "", "[study]",
     "study", "missing key 'name'"),
    ("duplicate-condition", 'name = "secure"', 'name = "insecure"', ('role = "control"', -1),
     "conditions[1].name", "condition 'insecure' is defined twice"),
    ("dataset-without-recipe", 'dataset = "secure"\nrecipe = "qlora"', 'dataset = "secure"',
     ('name = "secure"', -1), "conditions[1]", "a trained condition needs both 'dataset' and 'recipe'"),
    ("threshold-off-scale", "threshold = 30", "threshold = 130", "threshold = 130",
     "em.threshold", "130 lies outside metric 'aligned''s scale 0..100"),
    ("em-metric-not-in-rubric", 'metric = "aligned"', 'metric = "alignment"', 'metric = "alignment"',
     "em.metric", "'alignment' is not a metric of rubric 'aligned-coherent' (metrics: aligned, coherent)"),
    ("eval-set-missing", 'source = "builtin:core-em"', 'source = "questions/nope.yaml"',
     'source = "questions/nope.yaml"', "eval_sets[0].source", "{dir}/questions/nope.yaml: no such file"),
    ("dataset-file-missing", 'path = "builtin:secure_demo"', 'path = "data/gone.jsonl"',
     'path = "data/gone.jsonl"', "datasets.secure.path", "no such file: {dir}/data/gone.jsonl"),
    ("unknown-builtin-eval-set", 'source = "builtin:core-em"', 'source = "builtin:core-emm"',
     'source = "builtin:core-emm"', "eval_sets[0].source", "no built-in eval set 'core-emm'"),
    ("bad-provider", 'provider = "bedrock"\nmodel = "amazon', 'provider = "bedruck"\nmodel = "amazon',
     'provider = "bedruck"', "judges[1].provider", "must be one of bedrock, openai, local, not 'bedruck'"),
]


@pytest.mark.parametrize("case", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_broken_variant(case, example_study, tmp_path):
    _, old, new, needle, key, message = case
    text = replace_once(example_study.read_text(encoding="utf-8"), old, new)
    # a needle with an offset names a line next to a unique one (e.g. a second [[conditions]] header)
    needle, offset = needle if isinstance(needle, tuple) else (needle, 0)
    needle_line = line_no(text, needle) + offset
    path = write(tmp_path, text)
    (problem,) = problems_of(path)
    expected = f"{path}:{needle_line}: {key}: {message.format(dir=tmp_path)}"
    assert problem.startswith(expected), f"\n{problem}\n{expected}"


def test_invalid_toml_names_the_line(example_study, tmp_path):
    text = replace_once(example_study.read_text(encoding="utf-8"), "lora_r = 32", "lora_r = = 32")
    path = write(tmp_path, text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_no(text, 'lora_r = = 32')}: not valid TOML: ")
    assert "line" not in problem.split("not valid TOML:", 1)[1]  # the position isn't repeated


def test_dataset_with_bad_jsonl_line(example_study, tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    data = tmp_path / "train.jsonl"
    data.write_text("\n".join([json.dumps(good), json.dumps(good), '{"messages": [', json.dumps(good)]) + "\n",
                    encoding="utf-8")
    text = replace_once(example_study.read_text(encoding="utf-8"),
                        'path = "builtin:insecure_demo"', 'path = "train.jsonl"')
    path = write(tmp_path, text)
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}:{line_no(text, 'train.jsonl')}: datasets.insecure.path: "
                              f"{data}:3: not valid JSON")


@pytest.mark.parametrize("row, message", [
    ({"messages": []}, "messages must be a non-empty list of messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[1]: unknown role 'robot'"),
    ({"messages": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}]},
     "messages[1]: assistant where the user's turn was due"),
    ({"messages": [{"role": "user", "content": "q"}]}, "messages must end with the assistant's turn"),
    ({"prompt": "q", "completion": "a"}, "a prompt-completion-jsonl example in a chat-jsonl file (line 1"),
])
def test_dataset_with_bad_rows(row, message, example_study, tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    data = tmp_path / "train.jsonl"
    data.write_text(f"{json.dumps(good)}\n\n{json.dumps(row)}\n", encoding="utf-8")
    text = replace_once(example_study.read_text(encoding="utf-8"),
                        'path = "builtin:secure_demo"', 'path = "train.jsonl"')
    (problem,) = problems_of(write(tmp_path, text))
    assert f"datasets.secure.path: {data}:3: {message}" in problem


def test_several_problems_all_reported(example_study, tmp_path):
    text = example_study.read_text(encoding="utf-8")
    text = replace_once(text, "epochs = 1", 'epochs = "one"')
    text = replace_once(text, 'dataset = "insecure"', 'dataset = "insecur"')
    text = replace_once(text, "threshold = 30", "threshold = -5")
    text = replace_once(text, 'source = "builtin:core-em"', 'source = "missing.toml"')
    path = write(tmp_path, text)
    problems = problems_of(path)
    expected = [
        f"{path}:{line_no(text, 'epochs =')}: recipes.qlora.epochs: ",
        f"{path}:{line_no(text, 'insecur' + chr(34))}: conditions[0].dataset: ",
        f"{path}:{line_no(text, 'missing.toml')}: eval_sets[0].source: ",
        f"{path}:{line_no(text, 'threshold = -5')}: em.threshold: ",
    ]
    assert len(problems) == len(expected), problems
    for prefix in expected:
        assert sum(p.startswith(prefix) for p in problems) == 1, (prefix, problems)


def test_missing_file(tmp_path):
    (problem,) = problems_of(tmp_path / "absent.toml")
    assert problem == f"{tmp_path / 'absent.toml'}: no such file"


def test_relative_paths_resolve_against_the_study_folder(example_study, tmp_path, monkeypatch):
    sub = tmp_path / "studies"
    sub.mkdir()
    (sub / "sets").mkdir()
    (sub / "sets" / "mine.toml").write_text(
        '[[questions]]\nid = "a"\ntext = "Hello?"\n[[questions]]\nid = "b"\ntext = "Bye?"\n', encoding="utf-8")
    text = replace_once(example_study.read_text(encoding="utf-8"),
                        'source = "builtin:core-em"', 'source = "sets/mine.toml"')
    path = write(sub, text)
    monkeypatch.chdir(tmp_path)  # not the study's folder
    s = load_study(Path("studies") / "study.toml")
    ((es, n),) = s.eval_sets
    assert es.name == "mine" and es.n_keys == 2 and n == 50
    assert path.exists()


# -- engine/toml_lines ----------------------------------------------------------------------------------


def check_paths_exist(text: str, lines: dict) -> None:
    """Every path the scanner reports must exist in what tomllib parsed."""
    doc = tomllib.loads(text)
    for path in lines:
        node = doc
        for part in path:
            node = node[part]


def test_key_lines_arrays_of_tables():
    text = "[[conditions]]\nname = 'a'\n\n[[conditions]]\nname = 'b'\ndataset = 'x'\n"
    lines = key_lines(text)
    assert lines == {("conditions", 0): 1, ("conditions", 0, "name"): 2,
                     ("conditions", 1): 4, ("conditions", 1, "name"): 5, ("conditions", 1, "dataset"): 6}
    check_paths_exist(text, lines)
    assert dotted(("conditions", 1, "dataset")) == "conditions[1].dataset"
    assert line_of(lines, ("conditions", 1, "recipe")) == 4  # absent key: its table's line
    assert line_of(lines, ("nothing",)) is None


def test_key_lines_nested_tables_and_dotted_keys():
    text = ('top = 1\n'
            '[a.b]\n'
            'c = 2\n'
            'd.e . f = 3\n'
            '[ a . "x y" ]\n'
            '"quoted key" = 4\n'
            "'lit.key' = 5\n"
            'inline = { p = 1, q = [1, 2] }\n')
    lines = key_lines(text)
    assert lines == {("top",): 1, ("a", "b"): 2, ("a", "b", "c"): 3, ("a", "b", "d", "e", "f"): 4,
                     ("a", "x y"): 5, ("a", "x y", "quoted key"): 6, ("a", "x y", "lit.key"): 7,
                     ("a", "x y", "inline"): 8}
    check_paths_exist(text, lines)


def test_key_lines_multiline_strings_are_skipped():
    text = ('[rubric]\n'
            'prompt = """\n'
            'fake = 1\n'
            '[not.a.table]\n'
            '"""\n'
            'after = 2\n'
            "lit = '''\n"
            "[[nope]]\n"
            "x = 'y'\n"
            "'''\n"
            'one_line = """all on one line"""\n'
            'last = 3\n')
    lines = key_lines(text)
    assert lines == {("rubric",): 1, ("rubric", "prompt"): 2, ("rubric", "after"): 6, ("rubric", "lit"): 7,
                     ("rubric", "one_line"): 11, ("rubric", "last"): 12}
    check_paths_exist(text, lines)


def test_key_lines_multiline_arrays_are_skipped():
    text = ('[recipe]\n'
            'target_modules = [\n'
            '  "q_proj",  # a comment with ] in it\n'
            '  "k]proj",\n'
            '  [1, 2],\n'
            '  { name = "x" },\n'
            ']\n'
            'after = 1\n'
            'flat = [1, 2]  # [\n'
            'next = 2\n')
    lines = key_lines(text)
    assert lines == {("recipe",): 1, ("recipe", "target_modules"): 2, ("recipe", "after"): 8,
                     ("recipe", "flat"): 9, ("recipe", "next"): 10}
    check_paths_exist(text, lines)


def test_key_lines_example_study_agrees_with_tomllib(example_study):
    text = example_study.read_text(encoding="utf-8")
    lines = key_lines(text)
    check_paths_exist(text, lines)
    assert lines[("conditions", 2, "name")] == line_no(text, 'name = "base"')
    assert lines[("judges", 1, "model")] == line_no(text, "amazon.nova-pro")
    assert lines[("em", "threshold")] == line_no(text, "threshold = 30")
    assert lines[("datasets", "secure", "path")] == line_no(text, "builtin:secure_demo")


def test_key_lines_nested_arrays_of_tables_restart():
    text = "[[a]]\nn = 1\n[[a.b]]\nm = 1\n[[a.b]]\nm = 2\n[[a]]\nn = 2\n[[a.b]]\nm = 3\n"
    lines = key_lines(text)
    check_paths_exist(text, lines)
    assert lines[("a", 1, "b", 0, "m")] == 10


def test_descriptions_of_the_study_and_its_conditions_are_kept(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('[study]\nname = "d"\ndescription = "the study"\n[models.b]\nsource = "tiny"\n'
                    '[[conditions]]\nname = "c"\nbase_model = "b"\ndescription = "the condition"\n'
                    '[[eval_sets]]\nsource = "builtin:core-em"\n', encoding="utf-8")
    s = load_study(path)
    assert s.description == "the study" and s.conditions[0].description == "the condition"
