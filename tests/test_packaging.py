"""The distribution ships every package and the data files (pyproject lists packages by name)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_python_package_is_listed():
    listed = set(_pyproject()["tool"]["setuptools"]["packages"])
    found = set()
    for top in ("emtui", "engine", "db"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    missing = found - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"
    assert "emtui_data" in listed


def test_package_data_globs_cover_the_shipped_files():
    globs = _pyproject()["tool"]["setuptools"]["package-data"]["emtui_data"]
    suffixes = {g.rsplit(".", 1)[-1] for g in globs}
    for f in (ROOT / "data").rglob("*"):
        if f.is_file() and f.suffix != ".py" and "__pycache__" not in f.parts:
            assert f.suffix.lstrip(".") in suffixes, f"{f.relative_to(ROOT)} would not be installed"


def test_console_script_and_torch_pin():
    doc = _pyproject()
    assert doc["project"]["scripts"]["emtui"] == "emtui.cli:main"
    makefile = (ROOT / "Makefile").read_text()
    # torch is installed, pinned, before the project so CPU machines never fetch CUDA wheels
    assert makefile.index("$(TORCH)") < makefile.index("-e '.[test")
    assert "torch==2.13.0" in makefile
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
