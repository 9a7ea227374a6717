"""Reading the field's files, which are untrusted: bounded sizes, bounded parsers, and values
that every later command (summary, export, figures, the TUI) can handle.

The parsers wrap :mod:`engine.common.safe_load` (bounded depth, finite numbers, YAML alias limits)
and add what SQLite and JSON need of text: no lone surrogates (``"\\ud800"`` in JSON is valid
syntax, but SQLite cannot store it). Problems raise :class:`~engine.common.safe_load.LoadError`
naming the place (line or key path) but not the file: each loader adds its file.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

from engine.common.safe_load import LoadError, check_tree, json_loads, toml_loads, yaml_load

MAX_DOCUMENT_BYTES = 64 << 20   # an eval set, rubric or result file as JSON / YAML / TOML
MAX_TABLE_BYTES = 1 << 30       # a result CSV (read row by row, but every row is kept)
MAX_LABEL_CHARS = 200           # a name: question id, condition, metric, category, judge
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def path_text(path: object) -> str:
    """A path as text that UTF-8 (and so the database) can hold: a file name in another encoding
    reaches Python as lone surrogates, written here as ``\\xNN`` escapes of its bytes."""
    text = str(path)
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the file name's own bytes
    except UnicodeEncodeError:  # a surrogate no file name makes: written as its code point
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def path_problem(path: object) -> str | None:
    """Why ``path`` can't be recorded (None when it can): emtui keeps paths and names as text, and a
    file name that is not UTF-8 is not text. Name the path with :func:`path_text`."""
    if path_text(path) == str(path):
        return None
    return "the path is not UTF-8 text (a file name in another encoding?); rename it"


def source_file(source: str, base_dir: Path | None, what: str) -> Path:
    """A file named in a study or on the command line (relative to ``base_dir`` when given), or
    ValueError saying why it is not one: a folder, missing, or a name that is not UTF-8."""
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not {what}")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    problem = path_problem(path.resolve())
    if problem:
        raise ValueError(f"{path_text(path)}: {problem}")
    return path


def read_bytes(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The file's bytes; :class:`LoadError` when it is too large, unreadable, or not a regular file
    (a pipe or a device such as /dev/zero would never end)."""
    if path.exists() and not path.is_file():
        raise LoadError("not a regular file (a folder, a device or a pipe?)")
    try:
        size = path.stat().st_size
        if size > limit:
            raise LoadError(f"the file is {size:,} bytes, more than the {limit:,} a file of this kind may have")
        return path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read ({exc.strerror or exc})") from None


def read_text(path: Path, *, limit: int = MAX_DOCUMENT_BYTES) -> str:
    return decode(read_bytes(path, limit=limit))


def decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise LoadError(f"line {line}: not UTF-8 text") from None


def parse_json(text: str | bytes) -> Any:
    """A JSON document, bounded; a NaN/Infinity/1e400 is named by its key path."""
    try:
        doc = json_loads(text)
    except LoadError as exc:
        if "not a finite number" in str(exc):
            _locate_non_finite(text)
        raise
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise LoadError(f"not valid JSON ({exc})") from None
    check_values(doc)
    return doc


def _locate_non_finite(text: str | bytes) -> None:
    """Raise a :class:`LoadError` naming the key path of the first non-finite number (the
    strict parser stops at it without saying where). Plain ``json`` reads NaN/Infinity and
    turns 1e400 into inf, and the tree check names the place."""
    try:
        loose = json.loads(text)
    except (ValueError, RecursionError):
        return
    check_tree(loose)


def parse_yaml(text: str | bytes) -> Any:
    """A YAML document, bounded (depth, alias expansion, no cycles), as JSON-able values."""
    import yaml

    try:
        doc = yaml_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        what = " ".join("; ".join(str(x) for x in (exc.context, exc.problem) if x).split())
        raise LoadError(f"{where}not valid YAML ({what})") from None
    except yaml.YAMLError as exc:
        raise LoadError(f"not valid YAML ({' '.join(str(exc).split())})") from None
    except RecursionError:
        raise LoadError("nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:  # e.g. a date 2024-13-45, a 5,000-digit number
        raise LoadError(f"not valid YAML ({' '.join(str(exc).split())})") from None
    doc = json_safe(doc)
    check_values(doc)
    return doc


def parse_toml(text: str) -> dict[str, Any]:
    """A TOML document, bounded; a syntax error names its line."""
    import tomllib

    try:
        doc = toml_loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise LoadError(f"{f'line {m.group(1)}: ' if m else ''}not valid TOML ({msg})") from None
    except ValueError as exc:
        raise LoadError(f"not valid TOML ({exc})") from None
    doc = json_safe(doc)
    check_values(doc)
    return doc


def json_safe(value: Any) -> Any:
    """YAML and TOML values as JSON values: dates and times become ISO text, sets lists,
    bytes are refused; mapping keys must be text (numbers and dates become their text)."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, (datetime.date, datetime.time)):
                k = k.isoformat()
            elif isinstance(k, bool) or k is None:
                k = json.dumps(k)
            elif isinstance(k, (int, float)):
                k = str(k)
            elif not isinstance(k, str):
                raise LoadError(f"a mapping key of type {type(k).__name__} is not supported")
            out[k] = json_safe(v)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [json_safe(v) for v in items]
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        raise LoadError("binary values (!!binary) are not supported")
    return value


def check_values(value: Any) -> None:
    """Refuse what SQLite and UTF-8 cannot hold, naming the key path: text with lone
    surrogates, integers beyond 64 bits."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, str):
            _check_text(node, where)
        elif isinstance(node, int) and not isinstance(node, bool) and not -(1 << 63) <= node < (1 << 63):
            raise LoadError(f"{where or 'the top level'}: the integer is too large (more than 64 bits)")
        elif isinstance(node, dict):
            for k, v in node.items():
                _check_text(str(k), where)
                stack.append((v, f"{where}.{k}" if where else str(k)))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))


def _check_text(text: str, where: str) -> None:
    if text.isascii():
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise LoadError(f"{where or 'the top level'}: text holds a lone surrogate (\\ud800-\\udfff), "
                        "which is not a character") from None


def label_problem(value: Any, what: str = "a name") -> str | None:
    """Why ``value`` cannot be a name (a question id, condition, metric, category, judge), or
    None: a non-empty one-line string of at most :data:`MAX_LABEL_CHARS` characters without
    control characters or bidirectional overrides."""
    if not isinstance(value, str):
        return f"{what} must be a string, not {type(value).__name__}"
    if not value.strip():
        return f"{what} is empty"
    if len(value) > MAX_LABEL_CHARS:
        return f"{what} is {len(value):,} characters long (at most {MAX_LABEL_CHARS})"
    bad = _CONTROL.search(value)
    if bad:
        return f"{what} {value[:40]!r} holds a control character ({ascii(bad.group())})"
    if path_text(value) != value:  # a file name's bytes that are not UTF-8 (lone surrogates)
        return f"{what} '{path_text(value)[:60]}' is not UTF-8 text (a file name in another encoding?)"
    return None


# Names the summary gives its own rows: an imported metric, condition or judge of that name would be
# taken for them (a metric "em_rate", a condition "all", a judge "panel").
RESERVED = {
    "metric": frozenset({"em_rate", "coherence_rate", "refusal_rate"}),
    "condition": frozenset({"all", "mean"}),
    "judge": frozenset({"panel", "human"}),
}


def name_problem(value: Any, kind: str, what: str) -> str | None:
    """:func:`label_problem`, and the names the summary keeps for its own rows of ``kind``
    (``metric``, ``condition`` or ``judge``)."""
    problem = label_problem(value, what)
    if problem is None and value in RESERVED[kind]:
        problem = f"{what} {value!r} is reserved (the summary's own {kind} rows are named so)"
    return problem


def placeholders(text: str) -> list[str]:
    """The ``{name}`` placeholders of a template text, in order, once each (``{tag}`` in a
    trigger-tag question; the generation engine fills them)."""
    return list(dict.fromkeys(_PLACEHOLDER.findall(text)))
