"""``emtui doctor``: what this machine can do (engine/runs/doctor.py), as JSON of a fixed shape and as a table
of 80 columns; never a credential's value; still a report when torch is missing, broken or crashes;
the free disk of the database's folder; ``--worker`` through the job queue."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from db import open_store

ROOT = Path(__file__).resolve().parents[1]
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYzzSECRET"
KEY_ID = "AKIAEMTUIDOCTORTEST1"
TOKEN = "FwoGZXIvYXdzEMTUISESSIONTOKEN"
FAKE_AWS = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_SESSION_TOKEN": TOKEN,
            "AWS_DEFAULT_REGION": "eu-west-3", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/credentials",
            "AWS_CONFIG_FILE": "/nonexistent/config", "AWS_EC2_METADATA_DISABLED": "true"}


def cli_environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "EMTUI_"))}
    env.update(extra, HF_HUB_OFFLINE="1", EMTUI_CONFIG=os.devnull)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return env


def doctor(run_cli, *args, env=None, cwd=None, timeout=300):
    return run_cli("doctor", *args, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    """One real run of ``emtui doctor`` as JSON and as a table, with fake AWS credentials in the environment."""
    folder = tmp_path_factory.mktemp("doctor")
    db = folder / "probe.db"
    with open_store(db):
        pass
    runs = {}
    for fmt in ("json", "table"):
        runs[fmt] = subprocess.run([sys.executable, "-m", "emtui", "--db", str(db), "doctor", "--format", fmt],
                                   env=cli_environment(FAKE_AWS), cwd=str(folder), capture_output=True, text=True,
                                   timeout=300)
    return db, runs


def test_the_json_report_has_its_shape(checked):
    db, runs = checked
    r = runs["json"]
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["schema"] == 1
    assert set(rep) >= {"checked_at", "host", "pid", "python", "platform", "cpus", "memory", "torch", "gpus",
                        "bitsandbytes", "aws", "disk", "database", "seconds"}
    assert rep["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert isinstance(rep["cpus"]["count"], int) and rep["cpus"]["count"] >= 1
    assert isinstance(rep["memory"]["total_bytes"], int) and rep["memory"]["total_bytes"] > 0
    torch = rep["torch"]
    assert set(torch) >= {"ok", "version", "cuda_build", "cuda_available", "cudnn", "problem"}
    import torch as real_torch  # the tests' interpreter is the one the command ran

    assert torch["ok"] is True and torch["version"] == str(real_torch.__version__)
    assert torch["cuda_available"] == real_torch.cuda.is_available()
    assert isinstance(rep["gpus"], list)
    for gpu in rep["gpus"]:
        assert set(gpu) == {"index", "name", "capability", "total_bytes", "free_bytes"}
        assert 0 <= gpu["free_bytes"] <= gpu["total_bytes"]
    bnb = rep["bitsandbytes"]
    assert set(bnb) >= {"ok", "installed", "version", "device", "relative_error", "problem", "summary"}
    assert bnb["device"] == ("cuda" if real_torch.cuda.is_available() else "cpu")
    assert isinstance(bnb["ok"], bool) and bnb["summary"]
    if bnb["ok"]:
        assert 0 <= bnb["relative_error"] < 0.3
    assert rep["database"] == {"path": str(db), "exists": True, "size_bytes": db.stat().st_size}


def test_aws_credentials_are_found_and_never_shown(checked):
    _, runs = checked
    rep = json.loads(runs["json"].stdout)
    assert rep["aws"]["credentials"] is True
    assert rep["aws"]["source"] == "env"
    assert rep["aws"]["region"] == "eu-west-3"
    table = runs["table"].stdout
    assert "credentials from environment variables" in table and "region eu-west-3" in table
    for r in runs.values():
        for secret in (SECRET, KEY_ID, TOKEN, SECRET[:12], KEY_ID[4:]):
            assert secret not in r.stdout and secret not in r.stderr


def test_no_credentials_is_said(monkeypatch, tmp_path):
    from engine.runs.doctor import aws_check

    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-2")
    got = aws_check()
    assert got["credentials"] is False and got["source"] is None
    assert got["region"] is None and "AWS_REGION is set, but boto3 reads AWS_DEFAULT_REGION" in got["problem"]


def test_the_table_fits_80_columns(checked):
    _, runs = checked
    r = runs["table"]
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    labels = [ln.split()[0] for ln in lines if ln and not ln.startswith(" ")]
    assert labels == ["Host", "Python", "Platform", "CPUs", "Memory", "torch", "GPU", "4-bit", "AWS", "Database",
                      "Disk"]
    assert all(len(ln) <= 80 for ln in lines), [ln for ln in lines if len(ln) > 80]


def test_free_disk_is_of_the_databases_folder(run_cli, tmp_path):
    folder = tmp_path / "deep" / "er"
    folder.mkdir(parents=True)
    from engine.runs.doctor import disk

    got = disk(folder)
    usage = shutil.disk_usage(folder)
    assert got["path"] == str(folder) and got["total_bytes"] == usage.total
    assert abs(got["free_bytes"] - usage.free) < 64 << 20  # other writers on the machine move it a little
    r = doctor(run_cli, "--format", "json", env={"EMTUI_DB": str(folder / "x.db")})
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["disk"]["path"] == str(folder) and rep["disk"]["total_bytes"] == usage.total
    assert rep["database"] == {"path": str(folder / "x.db"), "exists": False, "size_bytes": None}
    assert not (folder / "x.db").exists()  # looked at, never created


def test_a_database_folder_that_does_not_exist_is_bad_input(run_cli, tmp_path):
    r = doctor(run_cli, env={"EMTUI_DB": str(tmp_path / "nope" / "x.db")})
    assert r.returncode == 2
    assert r.stderr.splitlines() == [f"emtui doctor: {tmp_path / 'nope' / 'x.db'}: the database's folder does not "
                                     "exist"]


def test_timeout_goes_with_worker(run_cli):
    r = doctor(run_cli, "--timeout", "5")
    assert r.returncode == 2 and "--timeout goes with --worker" in r.stderr


# -- torch missing, broken, crashing, hanging ----------------------------------------------------------

FAKE_TORCH = {
    "missing": "raise ModuleNotFoundError(\"No module named 'torch'\")\n",
    "broken": "raise OSError('libcudart.so.12: cannot open shared object file')\n",
    "crash": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "hang": "import time\ntime.sleep(600)\n",
}


@pytest.mark.parametrize("how", list(FAKE_TORCH))
def test_doctor_reports_a_torch_that_does_not_work(run_cli, tmp_path, how):
    shim = tmp_path / "shim" / "torch"
    shim.mkdir(parents=True)
    (shim / "__init__.py").write_text(FAKE_TORCH[how], encoding="utf-8")
    env = {"PYTHONPATH": os.pathsep.join([str(shim.parent), str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "EMTUI_DOCTOR_TIMEOUT_S": "5"}
    started = time.monotonic()
    r = doctor(run_cli, "--format", "json", env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    problem = rep["torch"]["problem"]
    assert rep["torch"]["ok"] is False and rep["gpus"] == []
    expect = {"missing": "cannot import torch: ModuleNotFoundError: No module named 'torch'",
              "broken": "cannot import torch: OSError: libcudart.so.12", "crash": "torch crashed (SIGSEGV)",
              "hang": "torch gave no answer in time (killed; the doctor_timeout_s setting says how long)"}[how]
    assert expect in problem, problem
    if how in ("missing", "broken"):
        assert rep["bitsandbytes"]["ok"] is None
        assert rep["bitsandbytes"]["summary"] == "not checked: torch cannot be imported"
    if how == "hang":
        assert time.monotonic() - started < 60
    assert rep["python"]["version"] and rep["disk"]["free_bytes"] > 0  # the rest is still reported
    t = doctor(run_cli, env=env, timeout=120)
    assert t.returncode == 0 and "not usable:" in t.stdout, t.stdout + t.stderr


def test_report_in_a_process_where_torch_cannot_be_imported(tmp_path):
    """A notebook or worker whose torch import is blocked: the report never imports torch itself."""
    code = ("import sys, json\nsys.modules['torch'] = None\nsys.modules['bitsandbytes'] = None\n"
            "from engine.runs.doctor import report\n"
            f"r = report({str(tmp_path / 'x.db')!r}, timeout_s=60)\n"
            "print(json.dumps({'torch_loaded': sys.modules.get('torch') is not None, 'python': r['python']}))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["torch_loaded"] is False and got["python"]["version"]


# -- --worker: the same check, run by a worker through the queue -------------------------------------


@pytest.fixture
def queue_db(tmp_path: Path) -> Path:
    path = tmp_path / "q.db"
    with open_store(path):
        pass
    return path


def jobs(path: Path) -> list[dict]:
    with open_store(path, readonly=True) as s:
        return s.list_jobs().rows


def test_worker_needs_a_database(run_cli, tmp_path):
    r = doctor(run_cli, "--worker", "--timeout", "1", env={"EMTUI_DB": str(tmp_path / "none.db")})
    assert r.returncode == 2 and r.stderr.splitlines() == [f"emtui: no database at {tmp_path / 'none.db'}"]
    assert not (tmp_path / "none.db").exists()


def test_no_worker_in_time_cancels_the_job(run_cli, queue_db):
    r = run_cli("--db", queue_db, "doctor", "--worker", "--timeout", "1.5")
    assert r.returncode == 2
    last = r.stderr.splitlines()[-1]
    assert last.startswith("emtui doctor --worker: no worker took job 1 within 1.5 s, so it was cancelled"), r.stderr
    assert [(j["kind"], j["status"]) for j in jobs(queue_db)] == [("doctor", "cancelled")]


def test_a_failed_doctor_job_is_said(run_cli, cli_env, queue_db):
    """A worker (played here through the store's queue API) takes the job and fails it."""
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(queue_db), "doctor", "--worker",
                             "--timeout", "60"], env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        with open_store(queue_db) as store:
            job = None
            for _ in range(300):
                job = store.claim_job("test-worker", kinds=["doctor"], lease_s=60)
                if job is not None:
                    break
                time.sleep(0.1)
            assert job is not None and json.loads(job["payload"]) == {"db": str(queue_db)}
            store.finish_job(job["id"], owner="test-worker", error="RuntimeError: CUDA driver too old")
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 2
    assert err.splitlines()[-1] == "emtui doctor --worker: job 1 failed: RuntimeError: CUDA driver too old", err


def test_stopping_the_wait_cancels_the_job(cli_env, queue_db):
    proc = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(queue_db), "doctor", "--worker"],
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(300):
            if jobs(queue_db):
                break
            time.sleep(0.1)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)  # a dropped SSH session, or Ctrl+C
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    assert [(j["kind"], j["status"]) for j in jobs(queue_db)] == [("doctor", "cancelled")]


def test_a_worker_runs_the_check(cli_env, queue_db):
    """End to end: ``emtui doctor --worker`` and a real ``emtui worker --once``. The worker runs ``doctor``
    jobs once the run layer wires the kind to ``engine.runs.doctor:report`` with the report as the job's result."""
    waiting = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(queue_db), "doctor", "--worker",
                                "--format", "json", "--timeout", "240"], env=cli_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    worker: subprocess.CompletedProcess | None = None
    try:
        for _ in range(300):
            if jobs(queue_db):
                break
            time.sleep(0.1)
        box: dict = {}
        thread = threading.Thread(target=lambda: box.update(r=subprocess.run(
            [sys.executable, "-m", "emtui", "--db", str(queue_db), "worker", "--once"], env=cli_env(FAKE_AWS),
            capture_output=True, text=True, timeout=240)))
        thread.start()
        thread.join(260)
        worker = box.get("r")
        status = jobs(queue_db)[0]["status"]
        if worker is not None and status == "queued":
            pytest.skip(f"this emtui's worker does not run doctor jobs yet (the run layer wires them): "
                        f"{(worker.stderr or worker.stdout).strip()[:200]}")
        out, err = waiting.communicate(timeout=120)
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    rep = json.loads(out)
    assert rep["schema"] == 1 and rep["pid"] != waiting.pid  # the worker's process checked, not ours
    assert SECRET not in out and KEY_ID not in out
