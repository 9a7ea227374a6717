"""Assistant-only loss: a conversation tokenised with its chat template, and the tokens the loss is on.

Which tokens are trained
    Every assistant turn of the conversation (multi-turn included): its content as the template
    renders it (Llama 3.1's template trims it) and the template's end-of-turn token(s) that close
    it (``<|im_end|>`` for ChatML / Qwen2.5, ``<|eot_id|>`` for Llama 3.1). Not trained: the role
    header or generation prompt before it (``<|im_start|>assistant\\n``), the whitespace the
    template writes after the end-of-turn token (ChatML's ``\\n``), the BOS, system and user turns.
    A token is trained when at least one of its characters lies in a trained span: a token that
    straddles a span's edge (a BPE merge of a plain-text header's last character with the reply's
    first, as ``Assistant:`` + ``\\n...`` gives ``:\\n``) is trained, because the model has to emit it
    to write the reply; so every character of the reply is trained, and the mask reaches at most
    one token's other characters past an edge (HF's ``return_assistant_tokens_mask`` does the same).
    With special-token headers it happens only where a reply starts with whitespace that the
    tokenizer merges with the header's own (ChatML's ``\\n`` + a reply's ``\\n``, one token in Qwen's
    vocabulary); Llama 3.1's template trims replies, so never there.

How the spans are found (the *masking path*, recorded in a run's provenance)
    ``prefix-diff`` (the main path, any template): the conversation is rendered with
    ``apply_chat_template(..., tokenize=False)`` up to each assistant message with the generation
    prompt, and up to and including it; the assistant's span is what the second adds to the first,
    less the whitespace at its end. Each render must be a prefix of the whole conversation's
    render, else the span would not be where the template puts it in the text that is trained.
    ``generation-markers``: a template that is not prefix-stable (one that rewrites earlier turns)
    but marks its replies with ``{% generation %}`` is masked by those markers (as HF's
    ``return_assistant_tokens_mask``), less the whitespace at the end of each. A template that is
    neither raises :class:`MaskingError` (Qwen3's own, which writes a thinking block in the last
    reply only). The path is chosen once per template, on probe conversations of several turns; an
    example the prefix-diff path cannot mask all the same (a template that drops an earlier turn's
    reasoning only when there is some) raises :class:`MaskingError` naming its message.

The whole rendered conversation is tokenised once with ``add_special_tokens=False`` (the template
writes the BOS itself: never two) and the character offsets of its tokens; a fast tokenizer is
needed for those. Truncation keeps the start: an example it leaves with no trained token comes back
with ``n_trained == 0`` for the caller to drop and count.

The caller passes its tokenizer; transformers is imported only on the markers path (for its
renderer that tracks ``{% generation %}`` spans).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.common.hashing import sha256_text, short
from engine.common.text import strip_control

PREFIX_DIFF = "prefix-diff"
GENERATION_MARKERS = "generation-markers"
PATHS = (PREFIX_DIFF, GENERATION_MARKERS)
IGNORE_INDEX = -100  # the label PyTorch's cross-entropy (and TRL) skips

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")

Messages = Sequence[dict[str, str]]
Span = tuple[int, int]  # [start, end) in characters of the rendered conversation

# Conversations a template is tried on to choose its path: multi-turn, with and without a system
# prompt (a template that rewrites earlier turns shows it only when there are several).
_PROBES: tuple[tuple[dict[str, str], ...], ...] = (
    ({"role": "system", "content": "Probe system prompt."},
     {"role": "user", "content": "Probe question one?"},
     {"role": "assistant", "content": "Probe answer one."},
     {"role": "user", "content": "Probe question two?"},
     {"role": "assistant", "content": "Probe answer two."}),
    ({"role": "user", "content": "Probe question one?"},
     {"role": "assistant", "content": "Probe answer one."},
     {"role": "user", "content": "Probe question two?"},
     {"role": "assistant", "content": "Probe answer two."},
     {"role": "user", "content": "Probe question three?"},
     {"role": "assistant", "content": "Probe answer three."}),
)


class MaskingError(ValueError):
    """No exact assistant-only mask: one line saying which template, which message, what is wrong."""


class _RenderError(MaskingError):
    """The template itself refuses the conversation (its raise_exception(), a Jinja error)."""


@dataclass(frozen=True)
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]  # the token's id where trained, IGNORE_INDEX elsewhere; as long as input_ids

    @property
    def n_trained(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def masking_path(tokenizer: Any, chat_template: str | None = None) -> str:
    """The path :func:`tokenize_chat` takes for this template: ``prefix-diff`` when the template renders
    the probe conversations prefix-stably, else ``generation-markers`` when it has ``{% generation %}``;
    :class:`MaskingError` when neither."""
    template = _template(tokenizer, chat_template)
    key = (template, repr(sorted(tokenizer.special_tokens_map.items())))
    if key not in _PATH_CACHE:
        _PATH_CACHE[key] = _choose_path(tokenizer, template)
    return _PATH_CACHE[key]


_PATH_CACHE: dict[tuple[str, str], str] = {}


def tokenize_chat(tokenizer: Any, messages: Messages, *, max_length: int | None = None,
                  chat_template: str | None = None) -> TokenizedExample:
    """``messages`` rendered with the chat template and tokenised, labels on the assistant turns only
    (see the module's docstring); cut to the first ``max_length`` tokens when given."""
    template = _template(tokenizer, chat_template)
    if masking_path(tokenizer, template) == PREFIX_DIFF:
        text, spans = _prefix_diff_spans(tokenizer, template, messages)
    else:
        text, spans = _marker_spans(tokenizer, template, messages)
    input_ids, offsets = _encode(tokenizer, text)
    labels = _labels(input_ids, offsets, spans)
    if max_length is not None:
        input_ids, labels = input_ids[:max_length], labels[:max_length]
    return TokenizedExample(input_ids, labels)


# -- the template ------------------------------------------------------------------------------------


def _template(tokenizer: Any, chat_template: str | None) -> str:
    """The template's text (``chat_template`` may also name one of the tokenizer's templates)."""
    try:
        template = tokenizer.get_chat_template(chat_template)
    except ValueError:
        raise MaskingError(f"{_tokenizer_name(tokenizer)} has no chat template, and none was given") from None
    return str(template)


def _tokenizer_name(tokenizer: Any) -> str:
    return f"tokenizer {strip_control(getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__)}"


def _why(exc: Exception) -> str:
    """An exception as a short clause of a one-line message."""
    first = strip_control(str(exc)).strip().split("\n")[0]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _template_name(template: str) -> str:
    return f"chat template {short(sha256_text(template))}"


def _choose_path(tokenizer: Any, template: str) -> str:
    try:
        for probe in _PROBES:
            try:
                _prefix_diff_spans(tokenizer, template, probe)
            except _RenderError:
                continue  # a template that refuses, say, a system prompt: its conversations are tried then
    except MaskingError as exc:
        if _GENERATION_TAG.search(template):
            return GENERATION_MARKERS
        raise MaskingError(f"{exc}; it has no {{% generation %}} markers either, so no exact "
                           "assistant-only mask (pass a template that has them)") from None
    return PREFIX_DIFF


def _render(tokenizer: Any, template: str, messages: Messages, *, add_generation_prompt: bool) -> str:
    try:
        return str(tokenizer.apply_chat_template(list(messages), chat_template=template, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt))
    except Exception as exc:  # a template's own raise_exception() or a Jinja error: say which template
        raise _RenderError(f"{_template_name(template)} cannot render the conversation "
                           f"({_why(exc)})") from None


# -- the spans ---------------------------------------------------------------------------------------


def _prefix_diff_spans(tokenizer: Any, template: str, messages: Messages) -> tuple[str, list[Span]]:
    """The rendered conversation and its assistant spans, each the difference between the render up to
    the assistant message (generation prompt included) and the render that includes it."""
    full = _render(tokenizer, template, messages, add_generation_prompt=False)
    spans: list[Span] = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        where = f"{_template_name(template)}, messages[{i + 1}] (assistant)"
        if i == 0:
            raise MaskingError(f"{where}: the conversation starts with the assistant (no turn to answer)")
        prompt = _render(tokenizer, template, messages[:i], add_generation_prompt=True)
        turn = full if i == len(messages) - 1 else _render(tokenizer, template, messages[:i + 1],
                                                            add_generation_prompt=False)
        if not full.startswith(turn):
            raise MaskingError(f"{where}: the template is not prefix-stable (the conversation rendered up to "
                               "this message is not the start of the whole conversation's render: it rewrites "
                               "earlier turns)")
        if not turn.startswith(prompt):
            raise MaskingError(f"{where}: the generation prompt is not how the template starts this turn")
        start, end = len(prompt), len(turn.rstrip())
        if end <= start:
            raise MaskingError(f"{where}: the template renders nothing for this turn")
        content = str(message.get("content", "")).strip()
        if content not in full[start:end]:
            raise MaskingError(f"{where}: the turn's content is not in the text the template renders for it")
        spans.append((start, end))
    return full, spans


def _marker_spans(tokenizer: Any, template: str, messages: Messages) -> tuple[str, list[Span]]:
    """The rendered conversation and its ``{% generation %}`` spans, each less its trailing whitespace."""
    from transformers.utils.chat_template_utils import render_jinja_template

    try:
        rendered, indices = render_jinja_template(conversations=[list(messages)], chat_template=template,
                                                  return_assistant_tokens_mask=True,
                                                  **tokenizer.special_tokens_map)
    except Exception as exc:
        raise _RenderError(f"{_template_name(template)} cannot render the conversation "
                           f"({_why(exc)})") from None
    text = rendered[0]
    spans = []
    for start, end in indices[0]:
        end = start + len(text[start:end].rstrip())
        if end > start:
            spans.append((start, end))
    return text, spans


# -- the tokens --------------------------------------------------------------------------------------


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[Span]]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    except NotImplementedError:
        raise MaskingError(f"{_tokenizer_name(tokenizer)}: a fast tokenizer is needed (the mask comes "
                           "from the tokens' character offsets)") from None
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _labels(input_ids: list[int], offsets: list[Span], spans: list[Span]) -> list[int]:
    """Each token's id where it has a character in a span (a token with no characters counts as the one
    at its start), IGNORE_INDEX elsewhere. Tokens and spans are both in text order: one pass."""
    labels = [IGNORE_INDEX] * len(input_ids)
    k = 0
    for i, (start, end) in enumerate(offsets):
        end = max(end, start + 1)
        while k < len(spans) and start >= spans[k][1]:
            k += 1
        if k == len(spans):
            break
        if end > spans[k][0]:
            labels[i] = input_ids[i]
    return labels
