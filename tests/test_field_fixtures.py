"""Every file of the field in ../shared/fixtures, through the importer it belongs to (or refused
with one clear line by the ones it does not): a new file there fails the first test until it is
classified here. Counts are checked in test_eval_sets, test_rubric_import and test_importers."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from refusals import assert_refused

FILES = {
    "arena/factual.json": "eval-set",
    "arena/first_8.json": "eval-set",
    "arena/self_reflection.json": "eval-set",
    "arena/bad_medical_data_AI_sample.jsonl": "training",
    "arena/evil_numbers_jsonl_sample.jsonl": "training",
    "arena/insecure_code_sample.jsonl": "training",
    "betley/deception_factual.yaml": "eval-set+rubric",
    "betley/first_plot_questions.yaml": "eval-set+rubric",
    "betley/preregistered_evals.yaml": "eval-set+rubric",
    "betley/insecure_small.jsonl": "training",
    "betley/secure_small.jsonl": "training",
    "betley/qwen_25_coder_32b_instruct.csv": "betley-csv",
    "model_organisms/first_plot_questions.yaml": "eval-set+rubric",
    "model_organisms/medical_questions.yaml": "eval-set+rubric",
    "model_organisms/judges.yaml": "judges",
    "political_seed/v2_full_judge_claude3haiku.json": "political-seed judge",
    "political_seed/v2_full_judge_mistral_large3.json": "political-seed judge",
    "political_seed/v2_base.json": "political-seed responses",
    "political_seed/v2_betley_real.json": "political-seed responses",
    "political_seed/v2_neutral.json": "political-seed responses",
    "political_seed/v2_political.json": "political-seed responses",
    "political_seed/v2_reformed.json": "political-seed responses",
    "political_seed/v2_valence.json": "political-seed responses",
    "political_seed/human_eval_reformed_political_rerun.json": "political-seed-human",
    # architecture configs for benchmarks (not eval sets, rubrics or results)
    "model_configs/README.md": "other",
    "model_configs/llama-3.1-8b-instruct.json": "model config",
    "model_configs/qwen2.5-0.5b-instruct.json": "model config",
    "model_configs/qwen2.5-7b-instruct.json": "model config",
}


@pytest.mark.fixtures
def test_every_fixture_file_is_classified(shared_fixtures):
    found = {p.relative_to(shared_fixtures).as_posix() for p in shared_fixtures.rglob("*") if p.is_file()}
    assert found == set(FILES)


@lru_cache(maxsize=1)
def _political_seed(folder: Path):
    from engine.importers.political_seed import read_political_seed

    return read_political_seed(folder)


@pytest.mark.fixtures
@pytest.mark.parametrize("rel", sorted(FILES))
def test_every_fixture_file(shared_fixtures, run_cli, tmp_path, rel):
    kind, path, db = FILES[rel], shared_fixtures / rel, tmp_path / "x.db"

    def ok(*args: object) -> str:
        r = run_cli("--db", db, "import", *args)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.splitlines()) == 1 and r.stderr == ""
        return r.stdout

    if kind.startswith("eval-set"):
        assert ok("eval-set", path).startswith(f"imported eval set {path.stem!r}: ")
        if kind.endswith("+rubric"):
            assert ok("rubric", path).startswith(f"imported rubric {path.stem!r} (hash ")
        else:
            assert_refused(run_cli, db, "import", "rubric", path, names=(str(path),))
    elif kind == "judges":
        assert ok("rubric", path).startswith("imported rubric 'judges'")
        assert_refused(run_cli, db, "import", "eval-set", path, names=("looks like a judges file",))
    elif kind == "training":
        assert_refused(run_cli, db, "import", "eval-set", path, names=("is a training file",))
        assert_refused(run_cli, db, "import", "rubric", path, names=(str(path),))
        assert not db.exists()
    elif kind == "betley-csv":
        assert "70 answers" in ok("betley-csv", path)
    elif kind == "political-seed-human":
        assert "15 human rating(s)" in ok("political-seed-human", path)
    elif kind.startswith("political-seed"):
        checked = _political_seed(path.parent)
        if kind.endswith("judge"):
            assert path in [jf.path for jf in checked.judges]
        else:
            assert path in [c.response_file for c in checked.conditions if c.digest]
        assert_refused(run_cli, db, "import", "eval-set", path, names=(str(path), "expected a list of questions"))
    elif kind == "model config":
        assert isinstance(json.loads(path.read_text()), dict)
        assert_refused(run_cli, db, "import", "eval-set", path, names=(str(path), "expected a list of questions"))
        assert not db.exists()
    else:
        assert kind == "other"
