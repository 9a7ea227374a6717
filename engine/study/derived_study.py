"""The same study on another base model (``emtui run STUDY --model PATH``), recorded honestly.

A registered study never changes (its file is its pre-registration). Running it on another base model
makes a *derived* study file: the registered file's text with its name changed to ``NAME--MODEL``, every
``[models.*] source`` set to the model, and every relative file it names (datasets, eval sets, the rubric)
made absolute so the file reads the same files from where it is written. It is registered like any study
file: its own name, its own hash, its ``models`` naming the new base, and a first comment saying what it
was derived from. Running the same derivation again finds it registered (the same text, the same hash).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from engine.study.study_file import NAME_MAX, Problem, StudyError
from engine.study.toml_lines import key_lines

DERIVED_SEP = "--"


def derived_name(study: str, model: str) -> str:
    """``insecure-code-demo--Qwen2.5-0.5B-Instruct``: the study's name and the model's (folder) name."""
    tail = Path(model.rstrip("/")).name or model
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", tail).strip("-.") or "model"
    return f"{study}{DERIVED_SEP}{slug}"[:NAME_MAX]


def derived_header(study: str, spec_hash: str) -> str:
    """How a derived study file begins: the study and the hash it came from (how its derived studies are found)."""
    return f"# Derived by emtui run --model from study {study!r} (hash {spec_hash})"


def derived_studies(store: Any, row: dict[str, Any]) -> list[str]:
    """The names of the studies derived from this registered study (``emtui run STUDY --model PATH``), oldest
    first: its runs on other base models, which are studies of their own."""
    return store.studies_whose_file_starts_with(derived_header(str(row["name"]), str(row["spec_hash"])))


def derived_hint(store: Any, row: dict[str, Any]) -> str:
    """What to tell someone who names a study that has run only on other base models: '' when none."""
    names = derived_studies(store, row)
    if not names:
        return ""
    if len(names) == 1:
        return (f"; its run on another base model is study {names[0]!r} (emtui run --model registers a study of "
                f"its own): --study {names[0]}")
    return (f"; its runs on other base models are studies {', '.join(repr(n) for n in names)} (emtui run --model "
            "registers a study of its own): --study one of them")


def model_source(model: str) -> str:
    """What the derived file names: an existing folder as its absolute path, anything else (a hub id, ``tiny``)
    as given."""
    folder = Path(model).expanduser()
    return str(folder.resolve()) if folder.is_dir() else model


def _relative_file(value: Any) -> bool:
    return isinstance(value, str) and not value.startswith("builtin:") and not Path(value).expanduser().is_absolute()


def derive_study_text(row: dict[str, Any], model: str) -> tuple[str, str]:
    """(the derived study's name, its file's text) from a registered study's row (``store.find_study``).
    Raises :class:`StudyError` (one line) when the study has no study file to derive from, or a key this
    needs is not on a line of its own."""
    import tomllib

    name, text, where = str(row["name"]), row.get("spec_toml"), str(row.get("source_path") or row["name"])
    if row.get("origin") != "study-file" or not text:
        raise StudyError([Problem(where, None, "", f"study {name!r} was imported, not registered from a study "
                                                   "file: it has no recipe to run on another model")])
    doc = tomllib.loads(text)
    base_dir = Path(str(row["source_path"])).parent if row.get("source_path") else None
    new_name = derived_name(name, model)
    source = model_source(model)
    edits: dict[tuple[Any, ...], Any] = {("study", "name"): new_name}
    drop: list[tuple[Any, ...]] = []
    for mname, m in (doc.get("models") or {}).items():
        edits[("models", mname, "source")] = source
        if isinstance(m, dict) and "revision" in m:
            drop.append(("models", mname, "revision"))
    for dname, d in (doc.get("datasets") or {}).items():
        if isinstance(d, dict) and _relative_file(d.get("path")) and base_dir is not None:
            edits[("datasets", dname, "path")] = str(base_dir / d["path"])
    for i, es in enumerate(doc.get("eval_sets") or []):
        if isinstance(es, dict) and _relative_file(es.get("source")) and base_dir is not None:
            edits[("eval_sets", i, "source")] = str(base_dir / es["source"])
    rubric = doc.get("rubric")
    if isinstance(rubric, dict) and _relative_file(rubric.get("source")) and base_dir is not None:
        edits[("rubric", "source")] = str(base_dir / rubric["source"])

    positions = key_lines(text)
    lines = text.splitlines()
    for key, value in edits.items():
        line = positions.get(key)
        if line is None or not re.match(rf"\s*{re.escape(str(key[-1]))}\s*=", lines[line - 1]):
            dotted = ".".join(str(k) for k in key)
            raise StudyError([Problem(where, line, dotted, f"{dotted} is not a 'key = value' line of its own: "
                                                            "write it so to run the study on another model")])
        indent = lines[line - 1][: len(lines[line - 1]) - len(lines[line - 1].lstrip())]
        lines[line - 1] = f"{indent}{key[-1]} = {json.dumps(value, ensure_ascii=False)}"
    for key in drop:
        line = positions.get(key)
        if line is not None:
            lines[line - 1] = f"# {lines[line - 1].strip()}  (the original model's revision, dropped)"
    header = [f"{derived_header(name, str(row['spec_hash']))}:",
              f"# the same study on base model {source}; its name, the models' source and absolute file paths",
              "# are all that changed."]
    return new_name, "\n".join(header + lines) + "\n"


def write_derived_study(row: dict[str, Any], model: str, folder: Path) -> Path:
    """Write the derived study file into ``folder`` (created) whole, and return its path."""
    from engine.common.atomic import atomic_file

    new_name, text = derive_study_text(row, model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{new_name}.toml"
    with atomic_file(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path
