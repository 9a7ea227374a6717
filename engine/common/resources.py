"""Where the files the project ships (``data/``) are, installed or in a checkout."""

from __future__ import annotations

from pathlib import Path


def data_dir() -> Path:
    try:
        import emtui_data  # the installed name of data/

        return Path(emtui_data.__file__).parent
    except ImportError:  # running from a checkout without installing
        return Path(__file__).resolve().parents[2] / "data"


def data_path(*parts: str) -> Path:
    return data_dir().joinpath(*parts)


def builtin_names(folder: str, suffix: str = ".toml") -> list[str]:
    """Names of the built-in files in ``data/<folder>``, with ``_`` shown as ``-``."""
    return sorted(p.stem.replace("_", "-") for p in data_path(folder).glob(f"*{suffix}"))


def builtin_file(folder: str, name: str, suffix: str = ".toml") -> Path | None:
    """The built-in file ``name`` of ``data/<folder>``, or None: a name is one of
    :func:`builtin_names`, never a path (``builtin:../../x`` names nothing)."""
    if name.replace("_", "-") not in builtin_names(folder, suffix):
        return None
    p = data_path(folder, name.replace("-", "_") + suffix)
    return p if p.is_file() else None
