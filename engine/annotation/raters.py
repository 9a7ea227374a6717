"""Who rates and what they may write: annotator names and rater notes, checked before they are
stored (names and notes are shown to leads in tables and reports, and written to exports)."""

from __future__ import annotations

import unicodedata

from engine.annotation.errors import AnnotationError, shorten

ANNOTATOR_NAME_MAX = 100
# control, format (bidi overrides, zero-width), surrogate, private-use, unassigned, line/paragraph separators
_NOT_TEXT = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def check_annotator_name(name: object) -> str:
    """An annotator's name, stripped; AnnotationError when it is empty, longer than 100 characters, or
    holds a character that is not plain text (control, bidi override, zero-width, separator): names are
    shown to leads in tables and reports, and must read as what they are."""
    text = name.strip() if isinstance(name, str) else ""
    if not text:
        raise AnnotationError("an annotator needs a name")
    if len(text) > ANNOTATOR_NAME_MAX:
        raise AnnotationError(f"annotator name {shorten(text)!r} is longer than {ANNOTATOR_NAME_MAX} characters")
    bad = next((ch for ch in text if unicodedata.category(ch) in _NOT_TEXT), None)
    if bad is not None:
        raise AnnotationError(f"annotator name {shorten(text)!r} holds a control or invisible character "
                              f"(U+{ord(bad):04X})")
    return text


NOTE_MAX = 10_000


def check_note(note: object) -> str | None:
    """A rater's note, stripped (None when empty); AnnotationError when it is longer than 10,000 characters
    or holds a terminal control character or bidi override (tabs and line breaks are fine): notes are
    shown to leads and written to exports."""
    text = note.strip() if isinstance(note, str) else ""
    if not text:
        return None
    if len(text) > NOTE_MAX:
        raise AnnotationError(f"the note is {len(text)} characters long; at most {NOTE_MAX}")
    bad = next((ch for ch in text if (unicodedata.category(ch) == "Cc" and ch not in "\t\n\r") or ch in _BIDI),
               None)
    if bad is not None:
        raise AnnotationError(f"the note holds a control character (U+{ord(bad):04X})")
    return text


_BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
