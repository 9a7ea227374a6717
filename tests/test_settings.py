"""One settings object (engine/settings.py): defaults < config file < environment, every bad value one
line naming the file and key (or the variable), the README's table of every setting, and the places
that read them (the database, the CLI, the TUI, campaigns, the keymap)."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest

import db as dbmod
from engine.settings import Settings, SettingsError, load_settings, markdown_table, setting_infos

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment whose config folder is empty and whose EMTUI_* variables are unset."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMTUI_")}
    env["EMTUI_CONFIG"] = ""  # empty is unset (conftest sets /dev/null for the rest of the suite)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    (tmp_path / "xdg" / "emtui").mkdir(parents=True)
    return env


def write_config(env: dict[str, str], text: str) -> Path:
    path = Path(env["XDG_CONFIG_HOME"]) / "emtui" / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def settings_json(run_cli, env: dict[str, str], *args: str) -> dict:
    r = run_cli(*args, "settings", "--format", "json", env=env)
    assert r.returncode == 0, r.stderr
    return {row["name"]: row for row in json.loads(r.stdout)["settings"]}


# -- precedence ---------------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set(home):
    s = load_settings(home)
    assert {i.name: getattr(s, i.name) for i in setting_infos() if i.name != "keymap"} == \
        {i.name: i.default for i in setting_infos() if i.name != "keymap"}
    assert {s.source(i.name) for i in setting_infos()} == {"default"}
    assert s.keymap_file() == Path(home["XDG_CONFIG_HOME"]) / "emtui" / "keymap.toml"
    assert s.config_file == str(Path(home["XDG_CONFIG_HOME"]) / "emtui" / "config.toml")


def test_environment_over_file_over_default(home):
    write_config(home, "job_lease_s = 300\ntui_resamples = 500\ndb = \"from-file.db\"\n")
    home["EMTUI_TUI_RESAMPLES"] = "700"
    s = load_settings(home)
    assert (s.job_lease_s, s.source("job_lease_s")) == (300.0, "file")
    assert (s.tui_resamples, s.source("tui_resamples")) == (700, "env")
    assert (s.worker_poll_s, s.source("worker_poll_s")) == (2.0, "default")
    assert (s.db, s.source("db")) == ("from-file.db", "file")
    assert isinstance(s.job_lease_s, float) and isinstance(s.tui_resamples, int)


def test_emtui_config_names_the_file(home, tmp_path):
    write_config(home, "job_max_attempts = 7\n")  # the usual place: not read when EMTUI_CONFIG names another
    other = tmp_path / "elsewhere.toml"
    other.write_text("job_max_attempts = 5\n", encoding="utf-8")
    home["EMTUI_CONFIG"] = str(other)
    s = load_settings(home)
    assert (s.job_max_attempts, s.config_file) == (5, str(other))
    home["EMTUI_CONFIG"] = str(tmp_path / "missing.toml")
    with pytest.raises(SettingsError, match=r"^EMTUI_CONFIG: .*missing\.toml: no such file$"):
        load_settings(home)


def test_emtui_settings_says_where_each_value_came_from(run_cli, home):
    write_config(home, "job_lease_s = 300\ntui_resamples = 500\n")
    rows = settings_json(run_cli, {**home, "EMTUI_TUI_RESAMPLES": "700"})
    assert set(rows) == {i.name for i in setting_infos()}
    assert (rows["job_lease_s"]["value"], rows["job_lease_s"]["source"]) == (300.0, "file")
    assert (rows["tui_resamples"]["value"], rows["tui_resamples"]["source"]) == (700, "env")
    assert (rows["worker_poll_s"]["value"], rows["worker_poll_s"]["source"]) == (2.0, "default")
    assert rows["job_lease_s"]["env"] == "EMTUI_JOB_LEASE_S"
    r = run_cli("settings", env={**home, "EMTUI_TUI_RESAMPLES": "700"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.split() == ["tui_resamples", "env", "700"] for ln in lines)
    assert any(ln.split() == ["job_lease_s", "file", "300", "s"] for ln in lines)
    # 80 columns, but for the paths (the config file, the keymap), which are as long as they are
    assert all(len(ln) <= 80 for ln in lines if not ln.startswith(("# config file:", "keymap "))), lines


def test_the_queue_settings_exist():
    """The run layer wires these (engine/runs): they must be here, with these names."""
    s = Settings()
    assert (s.job_lease_s, s.job_heartbeat_s, s.job_max_attempts, s.job_cancel_grace_s, s.worker_poll_s) == \
        (120.0, 15.0, 3, 30.0, 2.0)


# -- bad values: one line naming the file and key, or the variable --------------------------------------

FILE_CASES = [
    ("job_lease_s = \"soon\"\n", r"job_lease_s must be a number from 0.2 to 86,400 \(seconds\), not 'soon'"),
    ("job_lease_s = 5\n", r"job_lease_s \(5 s\) must be at least twice job_heartbeat_s \(15 s\)"),
    ("job_max_attempts = 2.5\n", r"job_max_attempts must be a whole number from 1 to 1,000, not 2\.5"),
    ("job_max_attempts = true\n", r"job_max_attempts must be a whole number from 1 to 1,000, not True"),
    ("tui_resamples = 99\n", r"tui_resamples must be a whole number from 100 to 100,000, not 99"),
    ("tui_start_worker = 1\n", r"tui_start_worker must be true or false, not 1"),
    ("tui_start_worker = \"yes\"\n", r"tui_start_worker must be true or false, not 'yes'"),
    ("worker_poll_s = nan\n", r"worker_poll_s: nan is not a finite number"),
    ("worker_poll_s = inf\n", r"worker_poll_s: inf is not a finite number"),
    ("db = 5\n", r"db must be a file name \(text\), not 5"),
    ("db = \"\"\n", r"db must be a file name \(text\), not ''"),
    ("[queue]\njob_lease_s = 60\n", r"queue: unknown setting \(see 'emtui settings'\)"),
    ("job_leese_s = 60\n", r"job_leese_s: unknown setting"),
    ("job_lease_s = \n", r"line 1: not valid TOML"),
    ("a = " + "[" * 5000 + "]" * 5000 + "\n", r"nested more than 64 levels deep"),
    ("job_heartbeat_s = 200\n", r"job_heartbeat_s \(200 s\) must be at most half of job_lease_s \(120 s\)"),
]


@pytest.mark.parametrize("text, message", FILE_CASES, ids=[c[1][:40] for c in FILE_CASES])
def test_a_bad_config_file_is_one_line_naming_file_and_key(run_cli, home, tmp_path, text, message):
    path = write_config(home, text)
    with pytest.raises(SettingsError) as got:
        load_settings(home)
    assert len(got.value.problems) == 1
    # through the CLI: exit 2, one line on stderr naming the file, nothing written (no database made)
    target = tmp_path / "new.db"
    r = run_cli("--db", target, "init", "builtin:insecure-code", env=home)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"emtui: {path}: "), r.stderr
    assert __import__("re").search(message, lines[0]), lines[0]
    assert "Traceback" not in r.stderr and not target.exists()


ENV_CASES = [
    ("EMTUI_BUSY_TIMEOUT_S", "soon", "EMTUI_BUSY_TIMEOUT_S must be a number from 0 to 3,600 (seconds), not 'soon'"),
    ("EMTUI_BUSY_TIMEOUT_S", "-1", "not '-1'"),
    ("EMTUI_JOB_LEASE_S", "nan", "EMTUI_JOB_LEASE_S must be a number from 0.2 to 86,400 (seconds), not 'nan'"),
    ("EMTUI_JOB_LEASE_S", "1e400", "not '1e400'"),
    ("EMTUI_JOB_MAX_ATTEMPTS", "3.0", "EMTUI_JOB_MAX_ATTEMPTS must be a whole number from 1 to 1,000, not '3.0'"),
    ("EMTUI_TUI_RESAMPLES", "9" * 5000, "EMTUI_TUI_RESAMPLES must be a whole number"),
    ("EMTUI_ANNOTATION_RENEW_S", "60", "EMTUI_ANNOTATION_RENEW_S must be a number from 1 to 55 (seconds), not '60'"),
    ("EMTUI_TUI_START_WORKER", "maybe", "EMTUI_TUI_START_WORKER must be true or false (or yes/no, on/off, 1/0), "
     "not 'maybe'"),
    ("EMTUI_JOB_HEARTBEAT_S", "500", "EMTUI_JOB_HEARTBEAT_S (500 s) must be at most half of job_lease_s (120 s)"),
]


@pytest.mark.parametrize("name, value, message", ENV_CASES, ids=[f"{c[0]}={c[1][:8]}" for c in ENV_CASES])
def test_a_bad_variable_is_one_line_naming_it(run_cli, home, tmp_path, name, value, message):
    target = tmp_path / "new.db"
    r = run_cli("--db", target, "init", "builtin:insecure-code", env={**home, name: value})
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert len(lines[0]) < 300  # a 5,000-digit value is shown cut
    assert "Traceback" not in r.stderr and not target.exists()


def test_every_bad_value_is_a_line_of_its_own(home):
    path = write_config(home, "job_lease_s = \"x\"\nfoo = 1\n")
    home["EMTUI_TUI_RESAMPLES"] = "5"
    with pytest.raises(SettingsError) as got:
        load_settings(home)
    assert got.value.problems == [
        f"{path}: job_lease_s must be a number from 0.2 to 86,400 (seconds), not 'x'",
        f"{path}: foo: unknown setting (see 'emtui settings')",
        "EMTUI_TUI_RESAMPLES must be a whole number from 100 to 100,000, not '5'",
    ]


def test_a_config_file_that_is_not_a_file(home):
    path = Path(home["XDG_CONFIG_HOME"]) / "emtui" / "config.toml"
    os.mkfifo(path)  # read forever if read naively
    with pytest.raises(SettingsError, match=r"config\.toml: not a regular file"):
        load_settings(home)


def test_an_empty_variable_is_unset(home):
    home["EMTUI_JOB_LEASE_S"] = ""
    assert load_settings(home).source("job_lease_s") == "default"


# -- the README documents every setting ---------------------------------------------------------------


def test_the_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = markdown_table()
    assert table in readme, ("the README's settings table is out of date: paste the output of "
                             "`emtui settings --format markdown` into README.md (section Settings)")
    for info in setting_infos():
        assert f"`{info.name}`" in table and f"`{info.env}`" in table


def test_the_cli_help_says_the_default_database():
    from emtui.cli import DEFAULT_DB

    assert DEFAULT_DB == Settings().db


# -- the places that read them -----------------------------------------------------------------------


def test_the_db_setting_from_the_config_file(run_cli, home, tmp_path):
    write_config(home, "db = \"from-file.db\"\n")
    r = run_cli("init", "builtin:insecure-code", env=home, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "from-file.db").is_file() and not (tmp_path / "emtui.db").exists()
    r = run_cli("init", "builtin:insecure-code", env={**home, "EMTUI_DB": str(tmp_path / "env.db")}, cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "env.db").is_file()


def test_busy_timeout_from_the_config_file_reaches_the_database(run_cli, home, tmp_path):
    target = tmp_path / "locked.db"
    dbmod.open_store(target).close()
    write_config(home, "busy_timeout_s = 0.3\n")
    holder = sqlite3.connect(target, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        r = run_cli("--db", target, "init", "builtin:insecure-code", env=home, timeout=20)
    finally:
        holder.rollback()
        holder.close()
    assert r.returncode == 2
    assert "the database is locked by another process (waited 0.3 s" in r.stderr, r.stderr


def test_open_store_takes_the_busy_timeout(db_path, monkeypatch):
    monkeypatch.setenv("EMTUI_BUSY_TIMEOUT_S", "7")
    with dbmod.open_store(db_path) as s:  # a notebook: db/ reads the variable itself
        assert s.busy_timeout_ms == 7000
    with dbmod.open_store(db_path, busy_timeout_s=0.25) as s:  # the CLI passes the setting
        assert s.busy_timeout_ms == 250
    with pytest.raises(dbmod.StoreError, match="between 0 and 3600"):
        dbmod.open_store(db_path, busy_timeout_s=float("nan"))


def test_campaign_lease_setting_is_the_default_lease(run_cli, tmp_path):
    from db import open_store
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    target = tmp_path / "c.db"
    with open_store(target) as store:
        make_synthetic_study(store, SyntheticSpec(answers_per_condition=4, questions=2))
    args = ["--db", target, "campaign", "create"]
    r = run_cli(*args, "a", "--study", "synthetic", "--scale", "0-3", "--items", "2",
                env={"EMTUI_CAMPAIGN_LEASE_S": "900"})
    assert r.returncode == 0, r.stderr
    assert "lease 15 min" in r.stdout
    r = run_cli(*args, "b", "--study", "synthetic", "--scale", "0-3", "--items", "2", "--lease-minutes", "20",
                env={"EMTUI_CAMPAIGN_LEASE_S": "900"})
    assert r.returncode == 0 and "lease 20 min" in r.stdout, r.stdout + r.stderr


def test_keymap_setting_names_the_keymap_file(run_cli, home, tmp_path):
    keymap = tmp_path / "my keys.toml"
    write_config(home, f"keymap = {json.dumps(str(keymap))}\n")
    r = run_cli("keys", env=home)
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith(f"# keymap file: {keymap}"), r.stdout
    keymap.write_text('"app.results" = 5\n', encoding="utf-8")
    r = run_cli("--db", tmp_path / "k.db", env=home)  # the TUI reads it before it starts
    assert r.returncode == 2 and f"{keymap}: app.results: keys must be a string" in r.stderr, r.stderr


async def test_the_tui_uses_the_apps_settings(store):
    """The Results screen's resamples and the rating screen's timings come from the app's settings."""
    from emtui.app import create_app
    from emtui.screens.rate import open_rating
    from engine.annotation.campaigns import create_campaign
    from engine.results.synthetic import SyntheticSpec, make_synthetic_study

    make_synthetic_study(store, SyntheticSpec(answers_per_condition=4, questions=2))
    create_campaign(store, name="c", study="synthetic", scale="0-3", n_items=2)
    settings = Settings(tui_resamples=150, tui_agreement_resamples=120, annotation_renew_s=7.0,
                        annotation_idle_gap_s=45.0, tui_queue_poll_s=0.5)
    app = create_app(store, keymap={}, settings=settings)
    app.annotator = "ann"
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.press("7")
        for _ in range(200):
            await pilot.app.workers.wait_for_complete()
            await pilot.pause(0.02)
            screen = pilot.app.screen
            if getattr(screen, "reports", None):
                break
        report = next(iter(pilot.app.screen.reports.values()))
        assert report["options"]["n_resamples"] == 150
        title = str(pilot.app.screen.query_one("#results-grid").border_title)
        assert "150 resamples" in title, title
        open_rating(pilot.app, "c")
        await pilot.pause()
        session = pilot.app.screen.session
        assert (session.renew_s, session.idle_gap_s) == (7.0, 45.0)


def test_settings_load_without_heavy_imports():
    import subprocess

    code = ("import sys; from engine.settings import load_settings; load_settings(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in {'textual', 'torch', 'numpy', 'emtui'}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


def test_emtui_config_dev_null_reads_no_file(home):
    write_config(home, "job_max_attempts = 7\n")
    home["EMTUI_CONFIG"] = os.devnull
    assert load_settings(home).job_max_attempts == 3


@pytest.mark.parametrize("text, want", [("true", True), ("False", False), (" yes ", True), ("off", False),
                                        ("1", True), ("0", False)])
def test_a_true_or_false_setting_from_the_environment(home, text, want):
    assert load_settings({**home, "EMTUI_TUI_START_WORKER": text}).tui_start_worker is want


def test_a_true_or_false_setting_from_the_file(home):
    write_config(home, "tui_start_worker = false\n")
    s = load_settings(home)
    assert (s.tui_start_worker, s.source("tui_start_worker")) == (False, "file")
