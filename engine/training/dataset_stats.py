"""What a training dataset holds: examples, turns, lengths (characters, and tokens with a
tokenizer), exact duplicates, and the examples over a maximum token length (which truncation
would cut, or leave with nothing to train on).

Token lengths are of the whole example as the tokenizer's chat template renders it — what the
trainer sees. transformers is imported only when a tokenizer is given.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.training.datasets import Example, Messages, iter_examples


@dataclass(frozen=True)
class Lengths:
    """A length distribution: min, median, 95th percentile, max, mean."""

    n: int
    min: int
    median: float
    p95: float
    max: int
    mean: float

    @classmethod
    def of(cls, values: Sequence[int]) -> Lengths | None:
        if not values:
            return None
        import numpy as np

        arr = np.asarray(values)
        return cls(len(values), int(arr.min()), float(np.median(arr)), float(np.percentile(arr, 95)), int(arr.max()),
                   float(arr.mean()))


@dataclass
class DatasetStats:
    path: Path | None                   # None: a stored dataset (``dataset``) with no file
    format: str | None
    examples: int
    assistant_turns: int
    multi_turn: int                     # examples with more than one assistant turn
    with_system: int                    # examples with a system message
    duplicates: int                     # examples identical to an earlier one (all turns, exactly)
    characters: dict[str, Lengths | None] = field(default_factory=dict)  # "prompt", "response" (assistant turns)
    tokens: Lengths | None = None       # the whole example through the chat template
    tokenizer: str | None = None
    max_length: int | None = None
    over_max: list[int] = field(default_factory=list)  # lines of the examples longer than max_length tokens
    dataset: str | None = None          # the stored dataset's name (its examples read from the database)

    def as_json(self) -> dict[str, Any]:
        def dist(v: Lengths | None) -> dict[str, Any] | None:
            return None if v is None else v.__dict__.copy()

        return {"path": None if self.path is None else str(self.path), "dataset": self.dataset,
                "format": self.format, "examples": self.examples,
                "assistant_turns": self.assistant_turns, "multi_turn": self.multi_turn, "with_system": self.with_system,
                "duplicates": self.duplicates, "characters": {k: dist(v) for k, v in self.characters.items()},
                "tokens": dist(self.tokens), "tokenizer": self.tokenizer, "max_length": self.max_length,
                "over_max": self.over_max}


def _token_count(tokenizer: Any, messages: Messages) -> int:
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    if hasattr(ids, "keys"):  # transformers 5 gives a BatchEncoding
        ids = ids["input_ids"]
    return len(ids)


def load_tokenizer(folder: str | Path) -> Any:
    """A tokenizer with a chat template from a local folder (never the hub); ValueError says why not."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ValueError(f"--tokenizer {path}: not a folder (a local model or tokenizer folder)")
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ValueError(f"--tokenizer {path}: no tokenizer there ({str(exc).splitlines()[0][:200]})") from None
    if not getattr(tok, "chat_template", None):
        raise ValueError(f"--tokenizer {path}: the tokenizer has no chat template")
    tok.model_max_length = 1 << 62  # only counting: no "longer than the maximum" warning per long example
    return tok


def dataset_stats(path: str | Path, *, tokenizer: Any = None, tokenizer_name: str | None = None,
                  max_length: int | None = None) -> DatasetStats:
    """Statistics of a dataset that :func:`~engine.training.datasets.check_dataset` finds good
    (DatasetError at its first problem otherwise); the file is read once."""
    return examples_stats(iter_examples(path), Path(path), tokenizer=tokenizer, tokenizer_name=tokenizer_name,
                          max_length=max_length)


def examples_stats(examples: Iterable[Example], path: Path | None, *, dataset: str | None = None,
                   tokenizer: Any = None, tokenizer_name: str | None = None,
                   max_length: int | None = None) -> DatasetStats:
    """Statistics of these examples (of the file ``path``, or of the stored dataset ``dataset``); ``over_max``
    names each example by its ``line``."""
    prompts: list[int] = []
    responses: list[int] = []
    tokens: list[int] = []
    seen: set[bytes] = set()
    stats = DatasetStats(path, None, 0, 0, 0, 0, 0, tokenizer=tokenizer_name, max_length=max_length, dataset=dataset)
    for line, fmt, msgs in examples:
        stats.format = fmt
        stats.examples += 1
        turns = sum(m["role"] == "assistant" for m in msgs)
        stats.assistant_turns += turns
        stats.multi_turn += turns > 1
        stats.with_system += msgs[0]["role"] == "system"
        digest = hashlib.sha256(json.dumps(msgs, sort_keys=True, ensure_ascii=False).encode("utf-8")).digest()
        stats.duplicates += digest in seen
        seen.add(digest)
        prompts.append(sum(len(m["content"]) for m in msgs if m["role"] != "assistant"))
        responses.extend(len(m["content"]) for m in msgs if m["role"] == "assistant")
        if tokenizer is not None:
            n = _token_count(tokenizer, msgs)
            tokens.append(n)
            if max_length is not None and n > max_length:
                stats.over_max.append(line)
    stats.characters = {"prompt": Lengths.of(prompts), "response": Lengths.of(responses)}
    stats.tokens = Lengths.of(tokens)
    return stats
