"""Shared fixtures: real SQLite files in tmp_path, the example study, the field's files, the CLI."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# the suite runs on emtui's defaults, not on the settings of whoever runs it (engine/settings.py)
os.environ["EMTUI_CONFIG"] = os.devnull
for _name in [n for n in os.environ if n.startswith("EMTUI_") and n not in ("EMTUI_CONFIG", "EMTUI_FIXTURES")]:
    del os.environ[_name]
# a TUI test that queues work starts no detached worker (one that outlives the test) unless it asks to
os.environ["EMTUI_TUI_START_WORKER"] = "false"

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from db import open_store
from emtui.loading import pending_loads

REPO_ROOT = Path(__file__).resolve().parents[1]


LOADS_TIMEOUT_S = 60.0


async def wait_for_loads(pilot: Pilot, pause) -> None:
    """Until no database read of the app is out (a read's result may start the next one: a detail pane)."""
    deadline = time.monotonic() + LOADS_TIMEOUT_S
    while pending := pending_loads(pilot.app):
        if time.monotonic() > deadline:
            raise AssertionError(f"database reads still out after {LOADS_TIMEOUT_S:.0f} s: {pending}")
        await asyncio.sleep(0.005)
        await pause(pilot)


# The modules that hold the suite's longest tests (measured with `pytest --durations=60`, 2026-12-01), run
# first: pytest-xdist hands tests out in collection order, so a long test left to the end runs alone while the
# other worker idles. Only the order of modules changes (each stays whole: its module fixtures set up once).
HEAVY_FIRST = ("test_room", "test_study_run", "test_training", "test_tui_hostile", "test_tui_reads",
               "test_train_screen", "test_layering", "test_generation", "test_generate_throughput",
               "test_tui_stalls", "test_tui", "test_judging", "test_demo", "test_eval_queue_screen")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest keep their order


@pytest.fixture(autouse=True)
def pauses_wait_for_reads(monkeypatch):
    """The TUI reads the database in threads (emtui.loading): a test's ``pilot.pause()`` (no delay) also
    waits until the reads its keys started are on the screen — what a person sees once the screen has
    loaded. ``pilot.pause(delay)`` stays a plain wait."""
    plain = Pilot.pause

    async def pause(self: Pilot, delay: float | None = None) -> None:
        await plain(self, delay)
        if delay is None:
            await wait_for_loads(self, plain)

    monkeypatch.setattr(Pilot, "pause", pause)


@pytest.fixture
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "emtui.db"


@pytest.fixture
def store(db_path: Path):
    s = open_store(db_path)
    yield s
    s.close()


@pytest.fixture
def example_study() -> Path:
    return REPO_ROOT / "data" / "studies" / "insecure_code.toml"


def shared_fixtures_dir() -> Path:
    """The field's files: ``$EMTUI_FIXTURES`` when set (a git worktree has no ../shared), else
    ../shared/fixtures next to the checkout."""
    return Path(os.environ.get("EMTUI_FIXTURES") or (REPO_ROOT / ".." / "shared" / "fixtures")).resolve()


@pytest.fixture
def shared_fixtures() -> Path:
    path = shared_fixtures_dir()
    if not path.is_dir():
        pytest.skip(f"{path} is absent: the field's files are read from there at test time")
    return path


def _cli_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a CLI subprocess runs in: offline, with the checkout importable."""
    full = dict(os.environ)
    full.pop("EMTUI_DB", None)
    full.update(env or {})
    full["HF_HUB_OFFLINE"] = "1"
    full["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full.get("PYTHONPATH", "")) if p)
    return full


@pytest.fixture
def cli_env():
    """Build the environment for a CLI subprocess started by hand (e.g. a server)."""
    return _cli_env


@pytest.fixture
def run_cli(tmp_path: Path):
    """Run ``python -m emtui *args`` in a subprocess (cwd: tmp_path unless given)."""

    def run(*args: str, env: dict[str, str] | None = None, cwd: Path | str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "emtui", *map(str, args)], env=_cli_env(env),
                              cwd=str(cwd or tmp_path), capture_output=True, text=True, timeout=timeout)

    return run


# -- tests/demo_db.py's database: built once a session, copied for each test that uses it -------------------


@pytest.fixture(scope="session")
def demo_db_file(tmp_path_factory) -> Path:
    """The demo database (tests/demo_db.py), built once; never write to it: use demo_copy or demo_store."""
    from demo_db import build

    return build(tmp_path_factory.mktemp("demo") / "demo.db")


@pytest.fixture
def demo_copy(demo_db_file: Path, tmp_path: Path) -> Path:
    """A copy of the demo database of this test's own."""
    path = tmp_path / "demo.db"
    path.write_bytes(demo_db_file.read_bytes())
    return path


@pytest.fixture
def demo_store(demo_copy: Path):
    """A store on this test's copy of the demo database."""
    import db

    store = db.open_store(demo_copy)
    yield store
    store.close()



# -- an OpenAI-compatible server on 127.0.0.1 (tests/openai_server.py) --------------------------------------


@pytest.fixture
def openai_server():
    """Start OpenAI-compatible test servers: ``openai_server(models, api_key=..., chat_reply=...)`` returns a
    started :class:`openai_server.OpenAIServer` (``models``: a ``ServedModels``, or None for chat only);
    each is closed after the test."""
    from openai_server import OpenAIServer

    started = []

    def start(models=None, **kwargs):
        server = OpenAIServer(models, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


# -- a Bedrock-Converse-compatible server on 127.0.0.1 (tests/converse_server.py) ----------------------------

# fake credentials, and nothing of this machine's AWS set-up (profiles, SSO, an instance role, a Bedrock API key)
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": "AKIAEMTUITESTKEY0001",
    "AWS_SECRET_ACCESS_KEY": "emtui-test-secret-access-key-0000000000",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_PROXY": "127.0.0.1,localhost",
}
AWS_UNSET = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_REGION",
             "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME", "AWS_BEARER_TOKEN_BEDROCK",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


def point_aws_at(mp: pytest.MonkeyPatch, folder: Path, **endpoints: str) -> None:
    """This machine's AWS chain replaced by fake keys (:data:`AWS_TEST_ENV`), no config or credentials file
    (they would be in ``folder``), and each ``AWS_ENDPOINT_URL_<SERVICE>=url`` of ``endpoints``."""
    for name in AWS_UNSET:
        mp.delenv(name, raising=False)
    for name, value in AWS_TEST_ENV.items():
        mp.setenv(name, value)
    mp.setenv("AWS_CONFIG_FILE", str(folder / "no-aws-config"))
    mp.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-aws-credentials"))
    for name, url in endpoints.items():
        mp.setenv(name, url)


def insert_numbered_answers(store: Any, n: int) -> None:
    """``n`` answers of the registered example study's base condition to its first question, written through
    the store: answer i says "This is answer number i." (the judging tests' servers read the number)."""
    base = next(c for c in store.study_conditions(1) if c["name"] == "base")
    question = store.questions_of_sets([1])[0]
    store.insert_generations([
        {"question_id": question["id"], "condition_id": base["id"], "model_id": base["model_id"],
         "settings": {"sampler": "row-generator/v1"}, "settings_hash": "sha256:s", "seed": i, "sample_index": i,
         "prompt": "p", "response": f"This is answer number {i}.", "study_hash": "h"} for i in range(n)])


@pytest.fixture
def converse_server(monkeypatch, tmp_path):
    """Start Bedrock-compatible test servers: ``converse_server(reply=..., latency_s=..., ...)`` returns a
    started :class:`converse_server.ConverseServer`, and (unless ``environment=False``) points this test's
    AWS environment at it: ``AWS_ENDPOINT_URL_BEDROCK_RUNTIME``, fake keys (:data:`AWS_TEST_ENV`), region
    us-east-1, no config or credentials file, no instance metadata. CLI subprocesses inherit it. ``tls=True``:
    HTTPS with a self-signed certificate (``AWS_CA_BUNDLE``), as a Bedrock API key needs. Each server is
    closed after the test."""
    import shutil

    from converse_server import ConverseServer

    started = []

    def start(*, environment: bool = True, tls: bool = False, **kwargs):
        if tls and shutil.which("openssl") is None:
            pytest.skip("the openssl command makes the HTTPS server's certificate; it is not installed")
        server = ConverseServer(tls_dir=tmp_path if tls else None, **kwargs).start()
        started.append(server)
        if environment:
            point_aws_at(monkeypatch, tmp_path, AWS_ENDPOINT_URL_BEDROCK_RUNTIME=server.url)
            if server.ca_bundle is not None:
                monkeypatch.setenv("AWS_CA_BUNDLE", str(server.ca_bundle))
        return server

    yield start
    for server in started:
        server.close()
