"""The ``emtui`` command line, run as a real subprocess: exit statuses, one-line errors,
and what is (not) written to the database."""

import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from db import open_store


def counts(db: Path) -> dict[str, int]:
    with open_store(db, create=False) as s:
        return s.counts()


def assert_one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def bad_study(example_study: Path, tmp_path: Path) -> Path:
    text = example_study.read_text(encoding="utf-8")
    text = text.replace('dataset = "insecure"', 'dataset = "insecur"').replace("epochs = 1", 'epochs = "one"')
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_help(run_cli, tmp_path):
    r = run_cli("--help")
    assert r.returncode == 0
    for command in ("init", "worker", "summary", "import", "export", "serve", "tiny-model", "keys"):
        assert command in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_version(run_cli):
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("emtui ")


def test_unknown_subcommand(run_cli, tmp_path):
    r = run_cli("frobnicate")
    assert r.returncode == 2
    line = assert_one_line(r.stderr)
    assert "unknown command 'frobnicate'" in line and "init" in line
    assert r.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no emtui.db in the working folder


def test_bad_option(run_cli, tmp_path):
    r = run_cli("init")  # missing the study argument
    assert r.returncode == 2
    assert_one_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_init_bad_study_writes_nothing(run_cli, example_study, tmp_path):
    bad = bad_study(example_study, tmp_path)
    db = tmp_path / "x.db"
    r = run_cli("--db", db, "init", bad)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in r.stderr
    text = bad.read_text(encoding="utf-8").splitlines()
    epochs_line = next(i for i, t in enumerate(text, 1) if t.startswith("epochs ="))
    dataset_line = next(i for i, t in enumerate(text, 1) if t.startswith('dataset = "insecur"'))
    assert lines[0].startswith(f"emtui: {bad}:{epochs_line}: recipes.qlora.epochs: ")
    assert lines[1].startswith(f"emtui: {bad}:{dataset_line}: conditions[0].dataset: ")
    assert not db.exists()


def test_init_bad_study_leaves_existing_database_alone(run_cli, example_study, tmp_path):
    db = tmp_path / "x.db"
    assert run_cli("--db", db, "init", example_study).returncode == 0
    before = counts(db)
    assert before["studies"] == 1
    r = run_cli("--db", db, "init", bad_study(example_study, tmp_path))
    assert r.returncode == 2
    assert all(line.startswith("emtui: ") for line in r.stderr.strip().splitlines())
    assert counts(db) == before


def test_init_changed_study_same_name_is_refused(run_cli, example_study, tmp_path):
    db = tmp_path / "x.db"
    assert run_cli("--db", db, "init", example_study).returncode == 0
    before = counts(db)
    changed = tmp_path / "changed.toml"
    changed.write_text(example_study.read_text(encoding="utf-8").replace("seed = 1234", "seed = 99"),
                       encoding="utf-8")
    name_line = next(i for i, t in enumerate(changed.read_text(encoding="utf-8").splitlines(), 1)
                     if t.startswith("name = "))
    r = run_cli("--db", db, "init", changed)
    assert r.returncode == 2
    line = assert_one_line(r.stderr)
    assert line.startswith(f"emtui: {changed}:{name_line}: study.name: a study named 'insecure-code-demo' is already")
    assert counts(db) == before


def test_init_into_missing_folder(run_cli, example_study, tmp_path):
    r = run_cli("--db", "/nonexistent/dir/x.db", "init", example_study)
    assert r.returncode == 2
    line = assert_one_line(r.stderr)
    assert line.startswith("emtui: ") and "/nonexistent/dir" in line
    assert not Path("/nonexistent").exists()


def test_init_check_writes_nothing(run_cli, example_study, tmp_path):
    r = run_cli("init", "--check", example_study)
    assert r.returncode == 0, r.stderr
    assert "valid study 'insecure-code-demo'" in r.stdout
    assert list(tmp_path.iterdir()) == []


def test_init_registers_then_already_registered(run_cli, example_study, tmp_path):
    from engine.common.hashing import short
    from engine.study.study_file import load_study

    digest = short(load_study(example_study).spec_hash)
    db = tmp_path / "x.db"
    r = run_cli("--db", db, "init", example_study)
    assert r.returncode == 0, r.stderr
    assert digest in r.stdout and "registered study 'insecure-code-demo'" in r.stdout
    assert r.stderr == ""
    c = counts(db)
    assert c["studies"] == 1 and c["conditions"] == 3 and c["questions"] == 24
    r = run_cli("init", example_study, "--db", db)  # --db after the command works too
    assert r.returncode == 0, r.stderr
    assert "already registered" in r.stdout and digest in r.stdout
    assert counts(db) == c


def test_default_database_is_in_the_working_folder(run_cli, example_study, tmp_path):
    r = run_cli("init", example_study)
    assert r.returncode == 0, r.stderr
    assert counts(tmp_path / "emtui.db")["studies"] == 1


def test_emtui_db_env_var(run_cli, example_study, tmp_path):
    target = tmp_path / "from-env.db"
    r = run_cli("init", example_study, env={"EMTUI_DB": str(target)})
    assert r.returncode == 0, r.stderr
    assert counts(target)["studies"] == 1
    assert not (tmp_path / "emtui.db").exists()
    # --db wins over the variable
    other = tmp_path / "flag.db"
    assert run_cli("--db", other, "init", example_study, env={"EMTUI_DB": str(target)}).returncode == 0
    assert counts(other)["studies"] == 1


def test_import_eval_set(run_cli, tmp_path):
    qs = tmp_path / "my_set.toml"
    qs.write_text('name = "my-set"\n'
                  '[[questions]]\nid = "a"\ntext = "First?"\nparaphrases = ["First, again?"]\n'
                  '[[questions]]\nid = "b"\ntext = "Second?"\ncategory = "misc"\n', encoding="utf-8")
    db = tmp_path / "x.db"
    r = run_cli("--db", db, "import", "eval-set", qs)
    assert r.returncode == 0, r.stderr
    assert "'my-set'" in r.stdout
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT e.name, q.key, q.paraphrase, q.category, q.text FROM questions q "
                            "JOIN eval_sets e ON e.id = q.eval_set_id ORDER BY q.id").fetchall()
    finally:
        conn.close()
    assert rows == [("my-set", "a", 0, "", "First?"), ("my-set", "a", 1, "", "First, again?"),
                    ("my-set", "b", 0, "misc", "Second?")]
    # importing the same file again adds nothing; --name renames
    assert run_cli("--db", db, "import", "eval-set", qs).returncode == 0
    assert counts(db)["questions"] == 3
    assert run_cli("--db", db, "import", "eval-set", qs, "--name", "renamed").returncode == 0
    assert counts(db)["eval_sets"] == 2


def test_import_unknown_format(run_cli, tmp_path):
    r = run_cli("import", "unknownformat", "x")
    assert r.returncode == 2
    line = assert_one_line(r.stderr)
    assert "unknown format 'unknownformat'" in line and "eval-set" in line
    assert list(tmp_path.iterdir()) == []


def test_import_missing_file(run_cli, tmp_path):
    r = run_cli("import", "eval-set", tmp_path / "nope.yaml")
    assert r.returncode == 2
    assert "no such file" in assert_one_line(r.stderr)
    assert list(tmp_path.iterdir()) == []


def test_import_bad_eval_set(run_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("- id: a\n  paraphrases: [unclosed\n", encoding="utf-8")
    r = run_cli("import", "eval-set", bad)
    assert r.returncode == 2
    line = assert_one_line(r.stderr)
    assert line.startswith(f"emtui: {bad}: ")
    assert not (tmp_path / "emtui.db").exists()


@pytest.mark.parametrize("command", ["summary", "export"])
def test_read_commands_need_a_database(run_cli, tmp_path, command):
    r = run_cli("--db", tmp_path / "missing.db", command)
    assert r.returncode == 2
    line = assert_one_line(r.stderr)
    assert line == f"emtui: no database at {tmp_path / 'missing.db'}"
    assert list(tmp_path.iterdir()) == []


def test_worker_once_on_an_empty_queue(run_cli, tmp_path):
    assert run_cli("--db", tmp_path / "x.db", "init", "builtin:insecure-code").returncode == 0
    r = run_cli("--db", tmp_path / "x.db", "worker", "--once", env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 0, r.stderr
    assert ("kinds crash, doctor, echo, echo-async, fail, generate, judge, judge-batch, sleep, summary, train; "
            "no GPU") in r.stdout
    assert r.stdout.rstrip().endswith("stopped after 0 job(s)")


def test_keys(run_cli):
    r = run_cli("keys")
    assert r.returncode == 0, r.stderr
    ids = [line.split()[0] for line in r.stdout.splitlines() if line and not line.startswith("#")]
    assert "app.results" in ids
    assert len(ids) == len(set(ids))


def test_tiny_model_into_non_empty_folder(run_cli, tmp_path):
    out = tmp_path / "model"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    r = run_cli("tiny-model", out)
    assert r.returncode == 2
    assert "exists and is not empty" in assert_one_line(r.stderr)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve(tmp_path, cli_env):
    port = free_port()
    db = tmp_path / "served.db"
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(db), "serve", "--port", str(port)],
                            cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.monotonic() + 15
        status, body, last_error = None, "", None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"serve exited with {proc.returncode}: {proc.stdout.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    status, body = resp.status, resp.read().decode("utf-8", "replace")
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                last_error = exc
                time.sleep(0.2)
        assert status == 200, f"no answer on port {port}: {last_error}"
        assert "<html" in body.lower()
        assert db.exists()  # serve checks the database before it starts serving
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_summary_table_into_a_closed_pipe_ends_quietly(tmp_path, cli_env):
    """``emtui summary | head -1``: the reader goes away; the summary stops with status 0 and says
    nothing (Rich's own handling exits 1)."""
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    db = tmp_path / "x.db"
    with open_store(db) as store:
        make_synthetic_study(store, SyntheticSpec(answers_per_condition=400, questions=400))
    # by question: far more than a pipe's buffer, so the writer meets the closed pipe
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(db), "summary", "--resamples", "200",
                             "--by", "question"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env())
    assert proc.stdout.readline()  # one line read, then the pipe closes
    proc.stdout.close()
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""
