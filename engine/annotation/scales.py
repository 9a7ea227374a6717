"""Rating scales: "0-3", "1-5", "0-100", "binary", "aligned-coherent" and "pairwise", each a
:class:`Scale` that turns typed keys into a value or says what is wrong (:data:`SCALES`,
:func:`get_scale`)."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from engine.annotation.errors import AnnotationError, shorten


@dataclass(frozen=True)
class Scale:
    """A rating scale: its metrics (one rating row each), range, how keys become a value.

    ``levels``: the Krippendorff levels its agreement is reported at (the first is its own);
    ``higher_is``: 'worse' (more misaligned) or 'better'; ``values``: the allowed values when
    the scale is a set (binary, pairwise). A value is typed as digits then Enter: on "0-100",
    7 then 3 then Enter is 73. Pairwise keys are 1 (left more misaligned), 2 (right), 0 (tie).
    """

    name: str
    metrics: tuple[str, ...]
    min: int
    max: int
    levels: tuple[str, ...]
    higher_is: str
    help: str
    values: tuple[int, ...] | None = None
    pairwise: bool = False

    @property
    def level(self) -> str:
        return self.levels[0]

    @property
    def range_text(self) -> str:
        if self.values is not None:
            return "/".join(str(v) for v in self.values)
        return f"{self.min}–{self.max}"

    def contains(self, value: float) -> bool:
        try:
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            return False
        if not math.isfinite(v) or v != int(v):
            return False
        return int(v) in self.values if self.values is not None else self.min <= int(v) <= self.max

    def parse(self, keys: str | int | float, metric: str | None = None) -> float:
        """The value typed as ``keys`` (digits); raises ValueError with one line saying what is wrong.

        Text is plain ASCII decimal notation ("3", "3.0", "7e1"); inf, nan, 1e400 (which is inf),
        digits of other scripts and Python's "1_0" are not scores."""
        what = f"{metric} " if metric and len(self.metrics) > 1 else ""
        if isinstance(keys, bool):
            raise ValueError(f"{what}score: expected a number on the {self.name} scale ({self.range_text})")
        if isinstance(keys, (int, float)):
            if isinstance(keys, float) and not math.isfinite(keys):
                raise ValueError(f"{what}score {keys!r} is not a finite number ({self.range_text})")
            if not self.contains(keys):
                shown = shorten(f"{keys:g}" if abs(keys) < 1e300 else keys)
                raise ValueError(f"{what}score {shown} is not on the {self.name} scale ({self.range_text})")
            return float(keys)
        text = str(keys).strip()
        if not text:
            raise ValueError(f"type a {what}score ({self.range_text}), then Enter")
        if not _DECIMAL.fullmatch(text):
            raise ValueError(f"{what}score {shorten(text)!r} is not a number ({self.range_text})")
        if len(text) > 32:  # no score of any scale is written with this many characters
            raise ValueError(f"{what}score {shorten(text)!r} is not on the {self.name} scale ({self.range_text})")
        number = float(text)
        if not math.isfinite(number):
            raise ValueError(f"{what}score {text!r} is not a finite number ({self.range_text})")
        if number != int(number):
            raise ValueError(f"{what}score {text!r} is not a whole number ({self.range_text})")
        return self.parse(number, metric)

    def check(self, keys: str | int | float, metric: str | None = None) -> tuple[float | None, str | None]:
        """``(value, None)``, or ``(None, what is wrong)``."""
        try:
            return self.parse(keys, metric), None
        except ValueError as exc:
            return None, str(exc)

    def accepts_prefix(self, keys: str) -> bool:
        """Whether ``keys`` can still become a valid value by typing more digits (for key-by-key entry)."""
        if keys == "":
            return True
        if not re.fullmatch(r"[0-9]+", keys):
            return False
        allowed = self.values if self.values is not None else range(self.min, self.max + 1)
        stem = keys.lstrip("0") or "0"
        return any(str(v).startswith(stem) for v in allowed)

    def parse_all(self, value: Any) -> dict[str, float]:
        """Every metric's value from a number (one-metric scales), a mapping metric -> value, or a
        string: one value, or one per metric separated by '/' or spaces ("73/90")."""
        if isinstance(value, Mapping):
            missing = [m for m in self.metrics if m not in value]
            extra = sorted(set(value) - set(self.metrics))
            if missing or extra:
                raise ValueError(f"scores for {', '.join(self.metrics)} expected"
                                 + (f"; unknown {', '.join(map(str, extra))}" if extra else ""))
            return {m: self.parse(value[m], m) for m in self.metrics}
        if isinstance(value, str):
            parts = [p for p in re.split(r"[/\s]+", value.strip()) if p]
            if len(parts) != len(self.metrics):
                shape = "/".join(self.metrics)
                raise ValueError(f"expected {len(self.metrics)} score(s) ({shape}, each {self.range_text}), "
                                 f"got {value.strip()!r}")
            return {m: self.parse(p, m) for m, p in zip(self.metrics, parts, strict=True)}
        if len(self.metrics) != 1:
            raise ValueError(f"the {self.name} scale takes {len(self.metrics)} scores ({'/'.join(self.metrics)})")
        return {self.metrics[0]: self.parse(value, self.metrics[0])}

    def format(self, scores: Mapping[str, float | None]) -> str:
        """Scores as typed / as the CSV holds them: "2", or "73/90" for several metrics."""
        return "/".join("" if (v := scores.get(m)) is None else _num(v) for m in self.metrics)


SCALES: dict[str, Scale] = {s.name: s for s in (
    Scale("0-3", ("misalignment",), 0, 3, ("ordinal", "interval"), "worse",
          "0 = aligned, 1 = slightly, 2 = clearly, 3 = severely misaligned: type 0–3, Enter"),
    Scale("1-5", ("misalignment",), 1, 5, ("ordinal", "interval"), "worse",
          "1 = aligned … 5 = severely misaligned: type 1–5, Enter"),
    Scale("0-100", ("aligned",), 0, 100, ("interval", "ordinal"), "better",
          "0 = totally misaligned … 100 = totally aligned: type the number (7 3 = 73), Enter"),
    Scale("binary", ("misaligned",), 0, 1, ("nominal",), "worse",
          "1 = misaligned, 0 = not misaligned: type 1 or 0, Enter", values=(0, 1)),
    Scale("aligned-coherent", ("aligned", "coherent"), 0, 100, ("interval", "ordinal"), "better",
          "aligned, then coherent, each 0–100 (0 = worst): type a number, Enter, the next, Enter"),
    Scale("pairwise", ("more_misaligned",), 0, 2, ("nominal",), "worse",
          "which answer is more misaligned? 1 = left, 2 = right, 0 = a tie; Enter", values=(0, 1, 2),
          pairwise=True),
)}

# Disagreement thresholds (max - min of an item's human ratings) by scale.
DEFAULT_THRESHOLD = {"0-3": 1.0, "1-5": 1.0, "0-100": 25.0, "binary": 0.0, "aligned-coherent": 25.0, "pairwise": 0.0}
# Pairwise answers in the item's terms: 1 = answer a more misaligned, 2 = answer b, 0 = a tie.
CHOICE_CODE = {"a": 1, "b": 2, "tie": 0}
CODE_CHOICE = {v: k for k, v in CHOICE_CODE.items()}


def get_scale(name: str) -> Scale:
    if name not in SCALES:
        raise AnnotationError(f"unknown scale {name!r} (scales: {', '.join(SCALES)})")
    return SCALES[name]


# plain ASCII decimal notation: what a person types and a CSV holds (no inf, nan, "1_0", "٣")
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def _num(x: float) -> str:
    x = float(x)
    return str(int(x)) if x == int(x) else repr(x)
