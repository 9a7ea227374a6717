"""Untrusted text (model outputs, imported files) made safe for a terminal."""

from __future__ import annotations

import re

# CSI (ESC [ ... final), OSC (ESC ] ... BEL or ST), other two-byte ESC sequences, then the
# remaining C0/C1 control characters except tab and newline.
_ANSI = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"            # CSI
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, terminated by BEL or ST (or cut off)
    r"|\x1b[PX^_][^\x1b]*(?:\x1b\\)?"       # DCS / SOS / PM / APC strings
    r"|\x1b[@-Z\\-_]"                       # two-byte escapes
    r"|\x9b[0-?]*[ -/]*[@-~]"               # 8-bit CSI
)
# C0/C1 controls but tab and newline, and the bidirectional embeddings, overrides and isolates
# (U+202A-U+202E, U+2066-U+2069) that can make text display in another order than it reads.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def strip_control(text: str | None) -> str:
    """Remove terminal control sequences, control characters and bidirectional overrides;
    keep tabs and newlines.

    A carriage return becomes a newline (``\\r\\n`` one newline) so overwritten lines stay visible.
    """
    if not text:
        return ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ANSI.sub("", text)
    return _CONTROL.sub("", text)


_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def visible(text: str) -> str:
    """Untrusted text for a message, its control characters and bidirectional overrides written
    as escapes (``\\x1b[2J``) so a person sees that they are there, and the terminal does not act on them."""
    return _INVISIBLE.sub(lambda m: f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                          else f"\\u{ord(m.group()):04x}", text)


def flat(text: object) -> str:
    """Untrusted text as one clean line: control sequences stripped, runs of whitespace (line
    breaks too) made one space."""
    return " ".join(strip_control("" if text is None else str(text)).split())


def one_line(text: str | None, width: int = 80) -> str:
    """A cleaned single-line preview, cut to ``width`` characters with an ellipsis."""
    line = flat(text)
    return line if len(line) <= width else line[: max(0, width - 1)] + "…"


def json_safe(text: str) -> str:
    """JSON text in which the characters a terminal would act on or reorder (C1 controls, the
    bidirectional overrides and isolates, line and paragraph separators) are written as \\u escapes:
    the same data, safe to print. (json.dumps already escapes C0 controls such as ESC.)"""
    return _UNSAFE_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
