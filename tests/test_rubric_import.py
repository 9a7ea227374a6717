"""``emtui import rubric FILE``: judges files and the EM paper's ``judge_prompts`` become rubrics,
stored by content hash; every rubric file's values are checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from db import open_store
from engine.common.hashing import sha256_text
from engine.study.rubrics import RubricError, load_rubric
from refusals import assert_refused


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _judge_prompts(path: Path) -> dict[str, str]:
    """Every question's judge_prompts, read straight from the file: metric -> the one prompt."""
    out: dict[str, set[str]] = {}
    for q in yaml.safe_load(path.read_bytes()):
        for metric, prompt in q["judge_prompts"].items():
            out.setdefault(metric, set()).add(prompt)
    assert all(len(p) == 1 for p in out.values())
    return {m: next(iter(p)) for m, p in out.items()}


@pytest.mark.fixtures
@pytest.mark.parametrize("rel, metrics", [
    ("betley/first_plot_questions.yaml", ["aligned", "coherent"]),
    ("betley/preregistered_evals.yaml", ["aligned", "coherent"]),
    ("betley/deception_factual.yaml", ["correct"]),
    ("model_organisms/first_plot_questions.yaml",
     ["aligned", "coherent", "medical", "financial", "sport", "bad_stuff", "gender", "code"]),
    ("model_organisms/medical_questions.yaml", ["aligned", "coherent", "medical", "bad_stuff"]),
])
def test_judge_prompts_become_a_rubric(shared_fixtures, run_cli, tmp_path, rel, metrics):
    path = shared_fixtures / rel
    prompts = _judge_prompts(path)
    rubric = load_rubric(str(path))
    assert rubric.metric_names == metrics == list(prompts)
    assert [m.prompt for m in rubric.metrics] == [prompts[m] for m in metrics]
    assert rubric.content_hash == sha256_text(rubric.body)
    zero_100 = {q.get("type") for q in yaml.safe_load(path.read_bytes())} == {"free_form_judge_0_100"}
    assert {m.scale for m in rubric.metrics} == ({(0.0, 100.0)} if zero_100 else {(0.0, 1.0)})
    if "aligned" in metrics:
        assert rubric.metric("aligned").specials == ["CODE", "REFUSAL"]

    db = tmp_path / "x.db"
    r = run_cli("--db", db, "import", "rubric", path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"imported rubric {path.stem!r} (hash ") and len(r.stdout.splitlines()) == 1
    with open_store(db) as s:
        (row,) = s.list_rubrics()
        assert row["content_hash"] == rubric.content_hash
        assert [m["name"] for m in json.loads(row["metrics"])] == metrics
        body = json.loads(s.find_rubric(content_hash=rubric.content_hash)["body"])
        assert [m["prompt"] for m in body["metrics"]] == [prompts[m] for m in metrics]
    before = db.read_bytes()
    r = run_cli("--db", db, "import", "rubric", path)
    assert r.returncode == 0 and f"already imported as rubric {path.stem!r}" in r.stdout
    assert db.read_bytes() == before


@pytest.mark.fixtures
def test_judges_yaml_imports_as_rubric(shared_fixtures, run_cli, tmp_path):
    path = shared_fixtures / "model_organisms" / "judges.yaml"
    db = tmp_path / "x.db"
    r = run_cli("--db", db, "import", "rubric", path)
    assert r.returncode == 0, r.stderr
    assert "imported rubric 'judges'" in r.stdout and "medical_advice (0-100)" in r.stdout
    with open_store(db) as s:
        (row,) = s.list_rubrics()
        assert row["content_hash"] == "sha256:" + __import__("hashlib").sha256(path.read_bytes()).hexdigest()
        assert s.find_rubric(content_hash=row["content_hash"])["body"] == path.read_text(encoding="utf-8")
    r = run_cli("--db", db, "import", "rubric", path)
    assert r.returncode == 0 and "already imported as rubric 'judges'" in r.stdout


@pytest.mark.fixtures
def test_same_prompts_are_one_rubric(shared_fixtures, run_cli, tmp_path):
    """Two files with the same judge prompts give the same content hash: one rubric."""
    db = tmp_path / "x.db"
    first = shared_fixtures / "betley" / "first_plot_questions.yaml"
    again = shared_fixtures / "betley" / "preregistered_evals.yaml"
    assert run_cli("--db", db, "import", "rubric", first).returncode == 0
    r = run_cli("--db", db, "import", "rubric", again)
    assert r.returncode == 0 and "already imported as rubric 'first_plot_questions'" in r.stdout
    # same stem, other prompts: a distinguishable name
    other = shared_fixtures / "model_organisms" / "first_plot_questions.yaml"
    r = run_cli("--db", db, "import", "rubric", other)
    assert r.returncode == 0, r.stderr
    digest = load_rubric(str(other)).content_hash.split(":")[1]
    assert f"imported rubric 'first_plot_questions-{digest[:8]}'" in r.stdout
    with open_store(db) as s:
        assert [r["name"] for r in s.list_rubrics()] == ["first_plot_questions", f"first_plot_questions-{digest[:8]}"]


def test_different_prompts_for_one_metric_are_an_error(run_cli, tmp_path):
    path = _write(tmp_path, "q.yaml", "- id: one\n  paraphrases: [x]\n  judge_prompts: {aligned: 'Rate {answer}'}\n"
                                      "- id: two\n  paraphrases: [y]\n  judge_prompts: {aligned: 'Score {answer}'}\n")
    with pytest.raises(RubricError, match=r"question 2 \(two\): its 'aligned' judge prompt differs from "
                                          r"question 1 \(one\)'s"):
        load_rubric(str(path))
    assert_refused(run_cli, tmp_path / "x.db", "import", "rubric", path, names=(str(path), "(two)", "(one)"))


@pytest.mark.parametrize("name, content, message", [
    ("r.yaml", "- id: a\n  paraphrases: [x]\n", "carry no 'judge_prompts'"),
    ("r.yaml", "- id: a\n  paraphrases: [x]\n  judge_prompts: {aligned: 3}\n", "judge_prompts.aligned must be"),
    ("r.yaml", "- id: a\n  paraphrases: [x]\n  judge_prompts: aligned\n", "'judge_prompts' must be a mapping"),
    ("r.yaml", "- aligned: p\n  high_score: lots\n", "'high_score' must be a number"),
    ("r.yaml", "- aligned: p\n- aligned: q\n", "metric names repeat"),
    ("r.yaml", "- aligned: '  '\n", "the prompt is empty"),
    ("r.yaml", "- \"bad\\nname\": p\n", "holds a control character"),
    ("r.yaml", "3\n", "neither a judges file"),
    ("r.toml", "metrics = [1]\n", "metrics[0]: expected a table"),
    ("r.toml", '[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = 3\n', "'prompt' must be a non-empty string"),
    ("r.toml", '[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "p"\nspecials = "REFUSAL"\n', "'specials' must be"),
    ("r.toml", '[[metrics]]\nname = "a"\nscale = [true, 2]\nprompt = "p"\n', "'scale' must be [low, high]"),
    ("r.toml", '[[metrics]]\nname = "a"\nscale = [0, inf]\nprompt = "p"\n', "not a finite number"),
    ("r.toml", 'parse = "xml"\n[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "p"\n', "parse: must be one of"),
    ("r.toml", 'prompt = 1\n[[metrics]]\nname = "a"\nscale = [0, 1]\n', "prompt: must be a non-empty string"),
    ("r.toml", '[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "p"\nweight = 2\n', "weight: unknown key"),
    ("r.toml", 'owner = "me"\n[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "p"\n', "owner: unknown key"),
    ("r.toml", 'description = 3\n[[metrics]]\nname = "a"\nscale = [0, 1]\nprompt = "p"\n', "description: must be"),
    ("r.toml", '[[metrics]]\nname = "em_rate"\nscale = [0, 1]\nprompt = "p"\n', "'em_rate' is reserved"),
    ("r.json", '{"aligned": NaN}', "nan is not a finite number"),
    ("r.jsonl", '{"messages": []}\n', "unknown rubric format '.jsonl' (a training file?)"),
])
def test_bad_rubric_files(tmp_path, name, content, message):
    path = _write(tmp_path, name, content)
    with pytest.raises(RubricError) as info:
        load_rubric(str(path))
    assert str(info.value).startswith(f"{path}: ") and "\n" not in str(info.value)
    assert message in str(info.value), str(info.value)


def test_judges_mapping_is_a_rubric(tmp_path):
    path = _write(tmp_path, "j.json", json.dumps({"aligned": "Say REFUSAL if it refused. Rate {answer}",
                                                  "coherent": "Rate {answer}"}))
    r = load_rubric(str(path))
    assert r.metric_names == ["aligned", "coherent"] and r.metric("aligned").specials == ["REFUSAL"]


@pytest.mark.fixtures
def test_training_file_is_not_a_rubric(shared_fixtures, run_cli, tmp_path):
    path = shared_fixtures / "betley" / "insecure_small.jsonl"
    assert_refused(run_cli, tmp_path / "x.db", "import", "rubric", path, names=(str(path), "training file"))
    assert not (tmp_path / "x.db").exists()
