"""Parsers for untrusted files (JSON, TOML, YAML) with bounds.

Every value they return is one later commands can handle: nesting at most
:data:`MAX_DEPTH` deep, no NaN or infinite numbers (JSON's ``NaN``/``Infinity`` and
``1e400``, TOML's ``inf``/``nan``), and for YAML at most :data:`MAX_NODES` nodes once
aliases are expanded (a 500-byte "billion laughs" file would otherwise expand to
gigabytes when it is walked). Problems raise :class:`LoadError`, whose message names
the place (a JSON line, a key path) but not the file: callers add the file.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64
MAX_NODES = 1_000_000


class LoadError(ValueError):
    """Content that parses but must not be accepted (or does not parse); one line."""


def _where(path: list[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "the top level"


def check_tree(value: Any, *, max_depth: int = MAX_DEPTH, finite: bool = True) -> None:
    """Walk a parsed document without recursion: refuse nesting deeper than ``max_depth``
    and (``finite``) NaN or infinite floats, naming the key path."""
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, dict):
            if len(path) >= max_depth:
                raise LoadError(f"{_where(path)}: nested more than {max_depth} levels deep")
            stack.extend((v, [*path, k]) for k, v in node.items())
        elif isinstance(node, list):
            if len(path) >= max_depth:
                raise LoadError(f"{_where(path)}: nested more than {max_depth} levels deep")
            stack.extend((v, [*path, i]) for i, v in enumerate(node))
        elif finite and isinstance(node, float) and not math.isfinite(node):
            raise LoadError(f"{_where(path)}: {node!r} is not a finite number")


def _refuse_constant(name: str) -> Any:
    raise LoadError(f"{name} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise LoadError(f"{text} is not a finite number (too large for a float)")
    return value


def json_loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` refusing NaN/Infinity, numbers too large for a float, and deep nesting.
    A syntax error raises :class:`LoadError` naming the line and column."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise LoadError(f"line {exc.lineno} column {exc.colno}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise LoadError(f"nested more than {max_depth} levels deep") from None
    check_tree(value, max_depth=max_depth)
    return value


def toml_loads(text: str, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """``tomllib.loads`` refusing ``inf``/``nan`` and deep nesting (tomllib recurses per
    level, so a 5,000-deep array would otherwise end in RecursionError). Syntax errors are
    left as ``tomllib.TOMLDecodeError`` (their message carries the line)."""
    import tomllib

    try:
        doc = tomllib.loads(text)
    except RecursionError:
        raise LoadError(f"nested more than {max_depth} levels deep") from None
    check_tree(doc, max_depth=max_depth)
    return doc


def yaml_load(text: str | bytes, *, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> Any:
    """``yaml.safe_load`` that first measures the document's node graph: aliases are fine
    (the field's YAML files use them) but the expanded size, the depth and cycles are
    bounded before anything is built. ``yaml.YAMLError`` is left to the caller."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, max_depth=max_depth, max_nodes=max_nodes)
        value = loader.construct_document(node)
    finally:
        loader.dispose()
    check_tree(value, max_depth=max_depth)
    return value


def _measure(root: Any, *, max_depth: int, max_nodes: int) -> None:
    """Expanded node count and depth of a composed YAML graph, memoised per node (so the
    walk is linear in the file even when expansion is exponential); refuses cycles."""
    import yaml

    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    # iterative post-order walk: (node, children visited?)
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node, yaml)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            if size[key] > max_nodes:
                raise LoadError(f"more than {max_nodes:,} values once its aliases are expanded "
                                "(an alias bomb?)")
            if depth[key] > max_depth + 1:
                raise LoadError(f"nested more than {max_depth} levels deep")
            continue
        if key in size:
            continue
        if key in on_path:
            raise LoadError("an alias refers to a node that contains it (a cycle)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node, yaml) if id(k) not in size)


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def assignment(text: str) -> tuple[str, Any]:
    """``key=value`` from a command line: the value read as TOML (``lr=2e-5``, ``rslora=true``,
    ``target_modules=["q_proj"]``), else taken as the text itself (``optimizer=adamw_torch``).
    A ``ValueError`` when there is no ``=`` or no key."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected key=value")
    try:
        value = toml_loads(f"v = {raw.strip()}")["v"]
    except (LoadError, ValueError):  # not a TOML value: the text itself
        value = raw.strip()
    return key, value
