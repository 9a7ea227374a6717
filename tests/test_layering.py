"""The layering rule, checked on what actually gets imported.

- ``db.*`` imports neither textual nor torch/transformers, nor the engine or the UI;
- ``engine.*`` never imports textual or emtui (``emtui_data``, the data package, is fine),
  and, as engine/__init__ promises, no heavy ML library at import time;
- ``emtui.*`` never imports torch, transformers, peft, trl or bitsandbytes at import time,
  not even with the TUI open on every screen, nor for ``emtui --help``;
- no SQL outside ``db/``.

Every module is imported in a fresh interpreter (in parallel) and ``sys.modules`` inspected.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("db", "engine", "emtui")
HEAVY = frozenset({"torch", "transformers", "peft", "trl", "bitsandbytes"})
FORBIDDEN = {
    "db": frozenset({"textual", "torch", "transformers", "emtui", "engine"}),
    "engine": frozenset({"textual", "emtui"}) | HEAVY,
    "emtui": HEAVY,
}
MARK = "@@modules@@"
TIMEOUT_S = 120


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), e.get("PYTHONPATH", "")) if p)
    e["HF_HUB_OFFLINE"] = "1"
    e["TRANSFORMERS_OFFLINE"] = "1"
    return e


def module_names() -> list[str]:
    """Every importable module of db/, engine/ and emtui/, subpackages included (not __main__)."""
    names = []
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__main__" or "__pycache__" in parts:
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            names.append(".".join(parts))
    return names


MODULES = module_names()


def top_levels(modules: list[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=TIMEOUT_S)


def modules_after(code: str) -> list[str]:
    """Run ``code`` in a fresh interpreter; the names in sys.modules afterwards."""
    proc = run_python(code + f"\nimport sys, json\nprint({MARK!r} + json.dumps(sorted(sys.modules)))")
    assert proc.returncode == 0, f"{code!r} failed:\n{proc.stderr[-3000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)][-1]
    return json.loads(line[len(MARK):])


@pytest.fixture(scope="module")
def imported() -> dict[str, list[str]]:
    """module name -> sys.modules after importing just that module in a fresh interpreter."""
    with ThreadPoolExecutor(max_workers=min(16, (os.cpu_count() or 2) * 2)) as pool:
        results = pool.map(lambda name: modules_after(f"import importlib\nimportlib.import_module({name!r})"),
                           MODULES)
        return dict(zip(MODULES, results, strict=True))


def test_every_module_is_found():
    # subpackages included: a missed folder would silently escape the rule
    assert {"db", "db.store", "db.schema", "engine", "engine.study.study_file", "engine.common.text",
            "engine.annotation.session", "engine.runs.worker", "engine.training", "engine.generation",
            "engine.judging", "emtui", "emtui.app", "emtui.cli", "emtui.screens.queue",
            "emtui.widgets.paged_table"} <= set(MODULES)
    assert not any(m.endswith("__main__") for m in MODULES)


def test_engine_is_packages_not_a_flat_folder():
    # the engine's architecture shows in its packages (engine/__init__.py lists them); a new module
    # belongs in one of them, not beside them
    loose = sorted(p.name for p in (ROOT / "engine").glob("*.py"))
    assert loose == ["__init__.py", "settings.py"], f"put these in an engine package: {loose}"
    for pkg in sorted(p for p in (ROOT / "engine").iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = pkg / "__init__.py"
        assert init.is_file(), f"{pkg.relative_to(ROOT)} is not a package"
        assert ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))), \
            f"{init.relative_to(ROOT)}: say what is in it"


def test_the_check_sees_imports(imported):
    # a positive control: the probe does see what a module pulls in
    assert "textual" in top_levels(imported["emtui.app"])
    assert "numpy" in top_levels(imported["engine.results.summary"])
    assert "emtui" not in top_levels(imported["engine.study.study_file"])


@pytest.mark.parametrize("module", MODULES)
def test_module_respects_the_layering(imported, module):
    layer = module.split(".")[0]
    bad = sorted(top_levels(imported[module]) & FORBIDDEN[layer])
    offenders = sorted(m for m in imported[module] if m.split(".")[0] in bad)
    assert not bad, f"importing {module} loads {', '.join(bad)} ({', '.join(offenders[:8])})"


def test_emtui_help_loads_no_ml_library():
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "emtui", "--help"], cwd=ROOT, env=env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("usage: emtui")
    loaded = [ln.rsplit("|", 1)[1].strip() for ln in proc.stderr.splitlines() if ln.startswith("import time:")]
    assert "emtui.cli" in loaded  # the parse works
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"emtui --help imports {heavy[:10]}"
    # the CLI promises a fast start: not even the TUI or a dataframe library for --help
    slow = sorted(top_levels(loaded) & {"textual", "pandas", "numpy", "pyarrow"})
    assert not slow, f"emtui --help imports {slow}"


@pytest.mark.parametrize("argv", [["--help"], ["keys"], ["--version"]], ids=" ".join)
def test_light_cli_commands_load_no_ml_library(argv):
    code = ("import contextlib, io\nfrom emtui.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    try:\n        rc = main({argv!r})\n    except SystemExit as e:\n        rc = e.code\n"
            "assert rc in (0, None), rc")
    loaded = modules_after(code)
    assert "emtui.cli" in loaded
    assert not top_levels(loaded) & HEAVY, sorted(m for m in loaded if m.split(".")[0] in HEAVY)[:10]


def test_tui_on_every_screen_loads_no_ml_library(tmp_path):
    import db
    from engine.study.study_file import load_study, register_study

    db_path = tmp_path / "probe.db"
    with db.open_store(db_path) as store:
        register_study(store, load_study(str(ROOT / "data" / "studies" / "insecure_code.toml")))
        store.enqueue_job("generate", {"condition": "insecure"})
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "tui_probe.py"), str(db_path)], cwd=ROOT,
                          env=env(), capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    from emtui.app import AREAS

    assert report["visited"] == [a.screen.__name__ for a in AREAS]
    assert report["help"] is True
    assert report["heavy"] == []


# -- no SQL outside db/ -------------------------------------------------------------------------------

SQL = re.compile(r"\b(SELECT|INSERT INTO|UPDATE \w+ SET|DELETE FROM|CREATE TABLE)\b")
DB_DRIVERS = {"sqlite3", "sqlite_utils", "apsw"}


def sql_in_source(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal (f-string parts included) that reads as SQL."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            hits.append((node.lineno, " ".join(node.value.split())[:80]))
    return hits


def driver_imports(source: str) -> list[tuple[int, str]]:
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            hits += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] in DB_DRIVERS]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in DB_DRIVERS:
            hits.append((node.lineno, node.module))
    return hits


def test_the_sql_scan_finds_sql():
    src = ('x = "SELECT id FROM jobs"\ny = f"UPDATE jobs SET status = {1}"\n'
           'z = """\n  DELETE FROM t"""\nimport sqlite3\nfrom sqlite_utils import Database\n')
    assert sorted(line for line, _ in sql_in_source(src)) == [1, 2, 3]
    assert [name for _, name in driver_imports(src)] == ["sqlite3", "sqlite_utils"]
    assert sql_in_source('"Select a study to see its design."') == []


def test_the_sql_scan_sees_db():
    assert sql_in_source((ROOT / "db" / "store.py").read_text(encoding="utf-8"))


def test_no_sql_outside_db():
    found = []
    for pkg in ("engine", "emtui"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            source = path.read_text(encoding="utf-8")
            rel = path.relative_to(ROOT)
            found += [f"{rel}:{line}: {text}" for line, text in sql_in_source(source)]
            found += [f"{rel}:{line}: imports {name}" for line, name in driver_imports(source)]
    assert not found, "SQL outside db/:\n" + "\n".join(found)
