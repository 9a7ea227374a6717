"""PROVISIONAL: replaced by the masking work (generation-markers only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != -100)


def masking_path(tokenizer: Any, chat_template: str | None = None) -> str:
    return "generation-markers"


def tokenize_chat(tokenizer: Any, messages: list[dict[str, str]], *, max_length: int | None = None,
                  chat_template: str | None = None) -> TokenizedExample:
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    if max_length:
        ids, mask = ids[:max_length], mask[:max_length]
    return TokenizedExample(list(ids), [i if m else -100 for i, m in zip(ids, mask, strict=True)])
