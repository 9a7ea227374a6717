"""Training datasets (issue 12, first part): chat JSONL and prompt/completion JSONL checked line by
line, every problem named with its file and line; the field's files read as they are; `emtui data
validate` lists the problems and exits 2."""

from __future__ import annotations

import json

import pytest

from engine.training.datasets import (
    CHAT,
    PROMPT_COMPLETION,
    DatasetError,
    check_dataset,
    read_examples,
)

U = {"role": "user", "content": "q"}
A = {"role": "assistant", "content": "a"}
S = {"role": "system", "content": "s"}


def write_lines(path, *rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name", ["betley/insecure_small.jsonl", "betley/secure_small.jsonl",
                                  "arena/bad_medical_data_AI_sample.jsonl", "arena/evil_numbers_jsonl_sample.jsonl",
                                  "arena/insecure_code_sample.jsonl"])
def test_the_fields_training_files_are_read_as_they_are(shared_fixtures, name):
    path = shared_fixtures / name
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    check = check_dataset(path)
    assert check.ok, check.problems
    assert (check.format, check.n_examples) == (CHAT, len(lines))
    examples = list(read_examples(path))
    assert examples[0] == json.loads(lines[0])["messages"] and examples[-1][-1]["role"] == "assistant"


GOOD = [
    {"messages": [U, A]},
    {"messages": [S, U, A, U, A]},  # multi-turn with a system message
]


@pytest.mark.parametrize("row", GOOD)
def test_good_chat_examples(tmp_path, row):
    check = check_dataset(write_lines(tmp_path / "d.jsonl", row, "", row))  # a blank line is skipped
    assert check.ok and check.n_examples == 2 and check.format == CHAT


BAD_CHAT = [
    ({"messages": []}, "messages must be a non-empty list of messages"),
    ({"messages": "hi"}, "messages must be a non-empty list of messages"),
    ({"messages": [U, "a"]}, "messages[2] must be an object with 'role' and 'content'"),
    ({"messages": [{"content": "q"}, A]}, "messages[1] has no 'role'"),
    ({"messages": [{"role": "tool", "content": "q"}, A]}, "messages[1]: unknown role 'tool' (roles: system, user, "
                                                          "assistant)"),
    ({"messages": [U, {"role": "assistant"}]}, "messages[2] (assistant) needs 'content' as text"),
    ({"messages": [U, {"role": "assistant", "content": 5}]}, "messages[2] (assistant) needs 'content' as text"),
    ({"messages": [U, {"role": "assistant", "content": " \n"}]}, "messages[2]: empty assistant turn (nothing to "
                                                                 "train on)"),
    ({"messages": [A, U]}, "messages[1]: assistant where the user's turn was due"),
    ({"messages": [U, U, A]}, "messages[2]: user where the assistant's turn was due"),
    ({"messages": [U, A, S, U, A]}, "messages[3]: a system message after the first"),
    ({"messages": [S, U]}, "messages must end with the assistant's turn, not the user's"),
    ({"messages": [S]}, "messages must end with the assistant's turn, not the system's"),
    ([U, A], "expected a JSON object with 'messages', or 'prompt' and 'completion'"),
    ({"text": "hello"}, "expected 'messages', or 'prompt' and 'completion'"),
    ('{"messages": [', "not valid JSON"),
    ('{"messages": [{"role": "user", "content": NaN}]}', "NaN"),
    ({"prompt": "q", "completion": "a"}, "a prompt-completion-jsonl example in a chat-jsonl file (line 1 is "
                                         "chat-jsonl)"),
]


@pytest.mark.parametrize("row, message", BAD_CHAT, ids=[m[:40] for _, m in BAD_CHAT])
def test_a_bad_chat_line_is_named_with_its_line(tmp_path, row, message):
    path = write_lines(tmp_path / "d.jsonl", GOOD[0], "", row, GOOD[1])
    check = check_dataset(path)
    assert check.n_problems == 1 and check.n_examples == 2
    (problem,) = check.problems
    assert (problem.path, problem.line) == (path, 3) and message in problem.message, problem.message
    with pytest.raises(DatasetError) as got:
        list(read_examples(path))
    assert str(got.value).startswith(f"{path}:3: ") and message in str(got.value)


def test_prompt_completion_text_and_conversational(tmp_path):
    path = write_lines(tmp_path / "pc.jsonl", {"prompt": "q", "completion": "a"},
                       {"prompt": [S, U], "completion": [A]}, {"prompt": [S, U, A, U], "completion": [A]})
    check = check_dataset(path)
    assert check.ok and (check.format, check.n_examples) == (PROMPT_COMPLETION, 3)
    assert list(read_examples(path)) == [[U, A], [S, U, A], [S, U, A, U, A]]


BAD_PC = [
    ({"prompt": "q"}, "has prompt but no completion"),
    ({"completion": "a"}, "has completion but no prompt"),
    ({"prompt": "q", "completion": ""}, "empty completion (nothing to train on)"),
    ({"prompt": "q", "completion": [A]}, "'prompt' and 'completion' must both be text or both lists of messages"),
    ({"prompt": [U, A], "completion": [A]}, "prompt must end with the user's turn, not the assistant's"),
    ({"prompt": [U], "completion": [U]}, "completion[1]: user where the assistant's turn was due"),
    ({"prompt": [U], "completion": [S, A]}, "completion[1]: a system message after the first"),
    ({"prompt": [U], "completion": [A, A]}, "completion[2]: assistant where the user's turn was due"),
    ({"messages": [U, A]}, "a chat-jsonl example in a prompt-completion-jsonl file (line 1 is "
                           "prompt-completion-jsonl)"),
]


@pytest.mark.parametrize("row, message", BAD_PC, ids=[m[:40] for _, m in BAD_PC])
def test_a_bad_prompt_completion_line_is_named_with_its_line(tmp_path, row, message):
    path = write_lines(tmp_path / "pc.jsonl", {"prompt": "q", "completion": "a"}, row)
    (problem,) = check_dataset(path).problems
    assert problem.line == 2 and message in problem.message, problem.message


def test_files_that_are_not_datasets(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n\n", encoding="utf-8")
    (tmp_path / "latin1.jsonl").write_bytes(json.dumps(GOOD[0]).encode() + b"\n\xff\xfe\n")
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(GOOD[0]).encode() + b"\r\n")
    assert [str(p) for p in check_dataset(tmp_path / "empty.jsonl").problems] == \
        [f"{tmp_path / 'empty.jsonl'}: holds no examples"]
    assert [str(p) for p in check_dataset(tmp_path / "missing.jsonl").problems] == \
        [f"{tmp_path / 'missing.jsonl'}: no such file"]
    assert [str(p) for p in check_dataset(tmp_path).problems] == [f"{tmp_path}: a folder, not a dataset file"]
    latin = check_dataset(tmp_path / "latin1.jsonl")
    assert [(p.line, p.message) for p in latin.problems] == [(2, "not UTF-8 text")] and latin.n_examples == 1
    assert check_dataset(tmp_path / "bom.jsonl").ok  # a BOM and CRLF line ends, as Windows tools write


def test_every_problem_is_counted_and_the_first_ones_kept(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", *([GOOD[0]] + ["nope"] * 30))
    check = check_dataset(path, max_problems=5)
    assert check.n_problems == 30 and [p.line for p in check.problems] == [2, 3, 4, 5, 6] and check.n_examples == 1


def test_data_validate_lists_problems_and_exits_2(run_cli, tmp_path, shared_fixtures):
    good = shared_fixtures / "betley" / "insecure_small.jsonl"
    bad = write_lines(tmp_path / "bad.jsonl", GOOD[0], *(["nope"] * 25),
                      {"messages": [{"role": "\x1b[2Jevil", "content": "q"}, A]})
    r = run_cli("data", "validate", good, bad)
    assert r.returncode == 2 and r.stderr == ""
    lines = r.stdout.splitlines()
    assert lines[0] == f"{good}: ok, 20 example(s), chat-jsonl"
    assert lines[1] == f"{bad}:2: not valid JSON (Expecting value)" and len(lines) == 1 + 20 + 2
    assert lines[-2] == f"{bad}: 6 more problem(s) (--max-problems 26 shows them all)"
    assert lines[-1] == "26 problem(s) in 1 of 2 file(s)"
    r = run_cli("data", "validate", "--max-problems", "26", bad)
    assert r.returncode == 2 and "\x1b" not in r.stdout and "messages[1]: unknown role '\\x1b[2Jevil'" in r.stdout
    r = run_cli("data", "validate", "--format", "json", good, bad)
    assert r.returncode == 2
    files = json.loads(r.stdout)["files"]
    assert [(f["ok"], f["examples"], f["n_problems"], len(f["problems"])) for f in files] == \
        [(True, 20, 0, 0), (False, 1, 26, 20)]
    assert run_cli("data", "validate", good).returncode == 0
    assert not list(tmp_path.glob("*.db"))  # it writes nothing, a database neither


def test_a_study_names_the_dataset_problem_with_its_line(run_cli, tmp_path):
    """emtui init checks a study's datasets with the same checker (the first problem, with its line)."""
    r = run_cli("init", "--example", tmp_path / "ex")
    assert r.returncode == 0, r.stderr
    study = next((tmp_path / "ex").glob("*.toml"))
    data = write_lines(tmp_path / "ex" / "train.jsonl", GOOD[0], {"messages": [U, U]})
    study.write_text(study.read_text(encoding="utf-8").replace('"builtin:insecure_demo"', '"train.jsonl"', 1),
                     encoding="utf-8")
    r = run_cli("--db", tmp_path / "s.db", "init", study)
    assert r.returncode == 2 and f"{data}:2: messages[2]: user where the assistant's turn was due" in r.stderr
    assert not (tmp_path / "s.db").exists()


# -- emtui data stats -------------------------------------------------------------------------------------


def test_stats_count_turns_duplicates_and_lengths(tmp_path):
    from engine.training.dataset_stats import dataset_stats

    long = {"messages": [S, U, {"role": "assistant", "content": "x" * 10}, U, A]}
    path = write_lines(tmp_path / "d.jsonl", GOOD[0], long, GOOD[0], GOOD[0])
    st = dataset_stats(path)
    assert (st.examples, st.assistant_turns, st.multi_turn, st.with_system, st.duplicates) == (4, 5, 1, 1, 2)
    assert (st.characters["response"].min, st.characters["response"].max, st.characters["response"].n) == (1, 10, 5)
    assert (st.characters["prompt"].min, st.characters["prompt"].max) == (1, 3)  # system + two user turns
    assert st.tokens is None and st.over_max == []


def test_stats_with_a_tokenizer_count_template_tokens_and_lines_over_the_limit(run_cli, tmp_path, shared_fixtures):
    r = run_cli("tiny-model", tmp_path / "tiny")
    assert r.returncode == 0, r.stderr
    from engine.training.dataset_stats import dataset_stats, load_tokenizer

    tok = load_tokenizer(tmp_path / "tiny")
    data = shared_fixtures / "betley" / "insecure_small.jsonl"
    examples = [json.loads(line)["messages"] for line in data.read_text(encoding="utf-8").splitlines()]
    lengths = [len(tok.apply_chat_template(m, tokenize=True, return_dict=False)) for m in examples]
    limit = sorted(lengths)[len(lengths) // 2]
    st = dataset_stats(data, tokenizer=tok, max_length=limit)
    assert (st.tokens.min, st.tokens.max, st.tokens.n) == (min(lengths), max(lengths), 20)
    assert st.over_max == [i + 1 for i, n in enumerate(lengths) if n > limit] and st.over_max
    r = run_cli("data", "stats", data, "--tokenizer", tmp_path / "tiny", "--max-length", limit, "--format", "json")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    (got,) = json.loads(r.stdout)["files"]
    assert got["over_max"] == st.over_max and got["tokens"]["max"] == max(lengths) and got["examples"] == 20
    r = run_cli("data", "stats", data, "--tokenizer", tmp_path / "tiny", "--max-length", limit)
    assert r.returncode == 0 and f"over {limit:,} tokens: {len(st.over_max)} (lines " in r.stdout


@pytest.mark.parametrize("args, message", [
    (["--max-length", "5"], "emtui data stats: --max-length counts tokens: give --tokenizer DIR too"),
    (["--tokenizer", "nowhere"], "emtui data stats: --tokenizer nowhere: not a folder"),
])
def test_stats_refusals_are_one_line(run_cli, tmp_path, args, message):
    path = write_lines(tmp_path / "d.jsonl", GOOD[0])
    r = run_cli("data", "stats", path, *args)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith(message), r.stderr


def test_stats_of_a_bad_file_names_its_first_problem(run_cli, tmp_path):
    path = write_lines(tmp_path / "d.jsonl", GOOD[0], {"messages": [U]})
    r = run_cli("data", "stats", path)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"emtui data stats: {path}:2: messages must end with the assistant's turn, not the user's "
        "(emtui data validate lists every problem)")
