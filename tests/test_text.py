"""engine/common/text.py: untrusted text (model answers, imported files) made safe for a terminal.

hypothesis is not installed here, so the property checks run on a seeded random corpus
built from the characters that matter (escape bytes, brackets, terminators, C0/C1, unicode)."""

import random

import pytest

from engine.common.text import one_line, strip_control

ESC, CSI8, OSC8, ST8, DCS8, BEL = "\x1b", "\x9b", "\x9d", "\x9c", "\x90", "\x07"


def bad_chars(text: str) -> list[str]:
    """Control characters left in ``text``: C0 (but tab and newline), DEL and C1."""
    return [c for c in text if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F]


@pytest.mark.parametrize("raw, clean", [
    # CSI: colours, cursor moves, clearing, private modes
    (f"{ESC}[31mred{ESC}[0m text", "red text"),
    (f"{ESC}[1;38;5;196mbold{ESC}[m", "bold"),
    (f"{ESC}[38;2;255;0;0mtruecolour{ESC}[39m", "truecolour"),
    (f"{ESC}[2J{ESC}[Hcleared", "cleared"),
    (f"a{ESC}[10;5Hb{ESC}[3Ac{ESC}[K", "abc"),
    (f"{ESC}[?25lhidden{ESC}[?25h", "hidden"),
    (f"{ESC}[?1049hscreen", "screen"),
    # OSC: window title, hyperlinks; BEL and ST terminators
    (f"{ESC}]0;pwned title{BEL}after", "after"),
    (f"{ESC}]2;title{ESC}\\after", "after"),
    (f"{ESC}]8;;https://evil.example{ESC}\\click{ESC}]8;;{ESC}\\ here", "click here"),
    (f"{ESC}]8;;https://evil.example{BEL}click{ESC}]8;;{BEL}", "click"),
    (f"{ESC}]52;c;ZXZpbA=={BEL}clipboard", "clipboard"),
    # DCS / APC / PM / SOS strings
    (f"{ESC}P1$r0m{ESC}\\after", "after"),
    (f"{ESC}_apc payload{ESC}\\after", "after"),
    (f"{ESC}^pm{ESC}\\after", "after"),
    # 8-bit CSI
    (f"{CSI8}31mred{CSI8}0m", "red"),
    (f"{CSI8}2Jx", "x"),
    # two-byte escapes
    (f"{ESC}Mreverse index", "reverse index"),
    (f"{ESC}Dx", "x"),
    # C0 / C1 controls
    ("a\x00b\x07c\x08d\x7fe", "abcde"),
    ("x\x85y\x8dz\x9fw", "xyzw"),
    ("form\x0cfeed\x0bvtab", "formfeedvtab"),
    # kept: tabs, newlines, unicode, emoji, literal brackets
    ("col1\tcol2\nline 2", "col1\tcol2\nline 2"),
    ("naïve café — 日本語 😀👍🏽 🇫🇷", "naïve café — 日本語 😀👍🏽 🇫🇷"),
    ("[31m is not an escape; a[0] = b[1]; {x: [y]}", "[31m is not an escape; a[0] = b[1]; {x: [y]}"),
    ("arr]]; ]0;not osc", "arr]]; ]0;not osc"),
    ("", ""),
    # carriage returns become newlines so overwritten text stays visible
    ("a\r\nb", "a\nb"),
    ("progress 10%\rprogress 20%", "progress 10%\nprogress 20%"),
    ("a\r\r\nb", "a\n\nb"),
])
def test_strip_control(raw, clean):
    assert strip_control(raw) == clean


def test_strip_control_none():
    assert strip_control(None) == ""


@pytest.mark.parametrize("raw", [
    f"{ESC}]0;unterminated title",
    f"{ESC}P unterminated dcs",
    f"x{ESC}",
    f"{ESC}[",
    f"{ESC}[31",
    f"{OSC8}8-bit osc{ST8}",
    f"{DCS8}8-bit dcs{ST8}",
    f"{ESC}c{ESC}7{ESC}8{ESC}(B{ESC}=",
    f"{ESC}{ESC}[31m{CSI8}{CSI8}",
])
def test_cut_off_and_odd_sequences_leave_no_control(raw):
    out = strip_control(raw)
    assert bad_chars(out) == []
    assert ESC not in out and CSI8 not in out


def test_cut_off_osc_swallows_its_payload():
    assert strip_control(f"ok {ESC}]0;title that never ends") == "ok "


PIECES = [ESC, f"{ESC}[", f"{ESC}]", f"{ESC}P", f"{ESC}\\", CSI8, OSC8, ST8, DCS8, BEL, "\r", "\n", "\t",
          "\x00", "\x08", "\x7f", "\x85", "[", "]", ";", "?", "0", "1", "3", "8", "m", "H", "J", "K", "P",
          "\\", "a", "b", " ", "é", "😀", "日", "{", "}"]


def corpus(n: int = 4000, seed: int = 20240601) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(PIECES) for _ in range(rng.randint(0, 24))) for _ in range(n)]


def is_subsequence(small: str, big: str) -> bool:
    it = iter(big)
    return all(c in it for c in small)


def test_property_no_control_characters_survive():
    for raw in corpus():
        out = strip_control(raw)
        assert bad_chars(out) == [], (raw, out)
        assert ESC not in out and CSI8 not in out


def test_property_only_removes_and_is_idempotent():
    for raw in corpus(seed=7):
        out = strip_control(raw)
        assert is_subsequence(out, raw.replace("\r\n", "\n").replace("\r", "\n")), (raw, out)
        assert strip_control(out) == out, (raw, out)


def test_property_plain_text_is_unchanged():
    rng = random.Random(3)
    plain = [c for c in PIECES if not bad_chars(c) and c not in (ESC, CSI8) and "\r" not in c
             and not c.startswith(ESC)]
    for _ in range(2000):
        raw = "".join(rng.choice(plain) for _ in range(rng.randint(0, 30)))
        assert strip_control(raw) == raw


@pytest.mark.parametrize("raw, width, expected", [
    ("short", 80, "short"),
    ("a" * 100, 10, "a" * 9 + "…"),
    ("exactly10!", 10, "exactly10!"),
    ("exactly11!!", 10, "exactly11" + "…"),
    ("  many \n\n spaces\tand\r\nlines  ", 80, "many spaces and lines"),
    (f"{ESC}[31mred{ESC}[0m and {ESC}]0;t{BEL}plain", 80, "red and plain"),
    ("😀" * 5, 3, "😀😀…"),
    (None, 80, ""),
    ("", 5, ""),
])
def test_one_line(raw, width, expected):
    out = one_line(raw, width)
    assert out == expected
    assert len(out) <= width and "\n" not in out


def test_one_line_default_width():
    out = one_line("word " * 50)
    assert len(out) == 80 and out.endswith("…")
