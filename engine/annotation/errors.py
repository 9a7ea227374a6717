"""The annotation workbench's errors: one line a person can act on."""

from __future__ import annotations


class AnnotationError(ValueError):
    """Bad input to the annotation workbench; the message is one line a person can act on."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class LeaseLost(AnnotationError):
    """The item went to other annotators after this annotator's lease expired; nothing was recorded.
    Raised only then: while a lease is live its place is the annotator's (no claim, rating or import
    takes it)."""


def shorten(value: object, limit: int = 24) -> str:
    """A value quoted in an error message, cut so that a hostile one cannot flood the line."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"
