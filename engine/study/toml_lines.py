"""Line numbers for TOML keys, so that validation errors can say where a key is.

``tomllib`` gives values without positions. This scanner walks the text once and
records, for every table header and ``key = value`` line, the key path it defines:
``("conditions", 1, "dataset")`` for the ``dataset`` key of the second
``[[conditions]]`` table. It only has to agree with tomllib on files tomllib
accepted, so it handles headers, arrays of tables, dotted and quoted keys, and
skips multi-line strings and arrays.
"""

from __future__ import annotations

import re

Path = tuple[str | int, ...]

_BARE = r"[A-Za-z0-9_-]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"|\'[^\']*\''
_KEY = rf"(?:{_BARE}|{_QUOTED})(?:\s*\.\s*(?:{_BARE}|{_QUOTED}))*"
_HEADER = re.compile(rf"^\s*(\[\[?)\s*({_KEY})\s*\]\]?")
_ASSIGN = re.compile(rf"^\s*({_KEY})\s*=")


def _split_key(key: str) -> list[str]:
    parts = re.findall(rf"{_BARE}|{_QUOTED}", key)
    return [_unescape(p[1:-1]) if p[:1] == '"' else p[1:-1] if p[:1] == "'" else p for p in parts]


_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b", '"': '"', "\\": "\\"}


def _unescape(text: str) -> str:
    """A TOML basic string's escapes decoded, as tomllib does, so a quoted key finds its line."""
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        if code[0] in "uU":
            try:
                return chr(int(code[1:], 16))
            except ValueError:
                return m.group()
        return _ESCAPES.get(code, m.group())
    return re.sub(r"\\(u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|.)", one, text)


def key_lines(text: str) -> dict[Path, int]:
    """Map each key path to its 1-based line number."""
    lines: dict[Path, int] = {}
    array_counts: dict[tuple, int] = {}
    current: Path = ()
    in_multiline: str | None = None
    depth = 0  # open brackets of a multi-line array value
    for lineno, line in enumerate(text.splitlines(), start=1):
        if in_multiline:
            if in_multiline in line:
                in_multiline = None
            continue
        if depth > 0:
            depth += _bracket_delta(line)
            continue
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _HEADER.match(line)
        if m:
            parts = tuple(_split_key(m.group(2)))
            if m.group(1) == "[[":
                idx = array_counts.get(parts, -1) + 1
                array_counts[parts] = idx
                # arrays nested in this element restart their numbering under it
                for nested in [k for k in array_counts if len(k) > len(parts) and k[: len(parts)] == parts]:
                    del array_counts[nested]
                # a nested array of tables restarts when its parent element changes
                current = (*_resolve(parts, array_counts), idx)
            else:
                current = _resolve(parts, array_counts)
            lines.setdefault(current, lineno)
            continue
        m = _ASSIGN.match(line)
        if m:
            path = (*current, *_split_key(m.group(1)))
            lines.setdefault(path, lineno)
            rest = line[m.end():]
            for quote in ('"""', "'''"):
                if rest.count(quote) == 1:
                    in_multiline = quote
            depth = max(0, _bracket_delta(_strip_strings(rest)))
    return lines


def _resolve(parts: tuple[str, ...], array_counts: dict[tuple, int]) -> Path:
    """Insert the current index after each prefix that is an array of tables."""
    out: list[str | int] = []
    for i, part in enumerate(parts):
        out.append(part)
        prefix = parts[: i + 1]
        if prefix in array_counts and i + 1 < len(parts):
            out.append(array_counts[prefix])
    return tuple(out)


def _strip_strings(s: str) -> str:
    return re.sub(_QUOTED, '""', s.split("#", 1)[0] if '"' not in s and "'" not in s else s)


def _bracket_delta(s: str) -> int:
    s = re.sub(_QUOTED, "", s)
    s = s.split("#", 1)[0]
    return s.count("[") - s.count("]")


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``, or of its nearest enclosing table when the key itself is absent."""
    for n in range(len(path), 0, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def dotted(path: Path) -> str:
    """``("conditions", 1, "dataset")`` -> ``conditions[1].dataset``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + part
    return out
