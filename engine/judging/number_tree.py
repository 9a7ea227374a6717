"""A local judge's probability of each whole number of a scale, walked exactly through its digit tokens.

The EM paper's score reads the judge's first next-token distribution (engine/judging/logprob.py). That is
exact only when the tokenizer writes every number of the scale as one token (GPT-4o: every number 0..999).
Qwen2.5's tokenizer — and this project's tiny model's, which uses Qwen's split pattern — writes numbers one
digit a token: the first token can only be 0..9, so a judge that means 75 would be scored about 7.

For such a tokenizer (:func:`numbers_one_token` is false) a local judge computes, for every integer n of
the scale::

    P(n) = P(the tokens of n) x P(the number ends there: the next token does not start with a digit)

summed over every way of writing n in the tokenizer's digit tokens (one way when every token is one
digit), with the leading-space form (`` 7``) counted as the paper's rule counts it. The walk goes level
by level from the prompt: level 1's distribution is the one generation already computed; each further
level is ONE forward pass over all of that level's prefixes at once, appended to the prompt's KV cache,
each prefix attending to the prompt and its own ancestors only (a tree attention mask, positions as if
it followed the prompt alone). A 0..100 scale takes 3 passes over at most 10, 90 and 1 one-token
prefixes, whatever the prompt's length.

Pruning: a prefix whose probability is below ``prune`` (default 1e-6) is not expanded; the numbers under
it count as not said. Each prefix pruned loses less than ``prune`` of the probability, so the numbers'
mass is short by at most (prefixes pruned) x 1e-6 (< 1e-4 on 0..100) — nothing next to the 25% a score
needs. The tests walk without pruning and match a brute-force forward pass per number.

torch is imported inside the functions.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from engine.judging.logprob import log_add

PRUNE = 1e-6
_FIRST = re.compile(r"\s*([0-9]+)")   # a number's first token: digits, after whitespace at most
_INNER = re.compile(r"[0-9]+")        # a later token of the same number: digits only


class TreeMaskIgnored(RuntimeError):
    """The model does not honour a custom 4D attention mask: the walk would be wrong."""


def numbers_one_token(tokenizer: Any, low: int, high: int) -> bool:
    """Whether the tokenizer writes every integer of low..high as one token (``"75"`` or ``" 75"``): then the
    first token's distribution scores the scale exactly (the paper's way)."""
    def one(text: str) -> bool:
        return len(tokenizer.encode(text, add_special_tokens=False)) == 1

    return all(one(str(n)) or one(f" {n}") for n in range(low, high + 1))


@dataclass(frozen=True)
class DigitVocab:
    """A tokenizer's digit tokens, found once per judge load: which may start a number, which continue one,
    and (as a mask over the model's vocabulary) every token that starts with a digit."""

    first: dict[int, str]      # token id -> its digits, for a token that may start a number (" 7", "7")
    inner: dict[int, str]      # token id -> its digits, for a token of digits only
    continues: Any             # bool tensor [vocab]: the token starts with a digit (the number goes on)

    @classmethod
    def of(cls, tokenizer: Any, vocab_size: int) -> DigitVocab:
        import torch

        n = min(len(tokenizer), vocab_size)
        texts = tokenizer.batch_decode([[i] for i in range(n)])
        first: dict[int, str] = {}
        inner: dict[int, str] = {}
        continues = torch.zeros(vocab_size, dtype=torch.bool)
        for i, text in enumerate(texts):
            if m := _FIRST.fullmatch(text):
                first[i] = m.group(1)
            if _INNER.fullmatch(text):
                inner[i] = text
            if text[:1].isascii() and text[:1].isdigit():
                continues[i] = True
        return cls(first, inner, continues)


@dataclass
class _Node:
    digits: str
    token: int
    logp: float                 # log P(the prompt is followed by this prefix's tokens)
    ancestors: tuple[int, ...]  # cache positions of the prefix's earlier tokens


def _wanted(digits: str, low: int, high: int) -> bool:
    """Whether a prefix written so far is a number of the scale or can become one (no leading zeros: "07"
    is not how a score is written)."""
    if len(digits) > 1 and digits[0] == "0":
        return False
    value = int(digits)
    if low <= value <= high:
        return True
    if value == 0:
        return False
    for k in range(1, len(str(high)) - len(digits) + 1):
        start = value * 10 ** k
        if start <= high and start + 10 ** k - 1 >= low:
            return True
    return False


def number_logprobs(model: Any, cache: Any, first: Any, n_prompt: int, vocab: DigitVocab, low: int,
                    high: int, *, prune: float = PRUNE) -> dict[int, float]:
    """log P(n) for each integer n of low..high that got any probability (see the module's doc). ``first`` is
    the next-token logits after the prompt, ``cache`` the prompt's KV cache (``n_prompt`` tokens; the walk
    appends to it). Needs ``low >= 0``."""
    import torch

    if low < 0:
        raise ValueError(f"a scale below 0 ({low}..{high}) is not walked digit by digit")
    first_lp = torch.log_softmax(first.float(), dim=-1)
    continues = vocab.continues.to(first_lp.device)[: first_lp.shape[-1]]
    level = [_Node(d, t, float(first_lp[t]), ()) for t, d in vocab.first.items() if _wanted(d, low, high)]
    out: dict[int, float] = {}
    depth = 0
    while level:
        level = [node for node in level if node.logp > -math.inf and math.exp(node.logp) >= prune]
        if not level:
            break
        past = cache.get_seq_length()
        lp = _tree_step(model, cache, level, n_prompt, past, depth)
        nxt = []
        for i, node in enumerate(level):
            here = node.ancestors + (past + i,)
            if low <= int(node.digits) <= high:
                goes_on = float(torch.exp(lp[i][continues]).sum())
                ends = node.logp + math.log1p(-goes_on) if goes_on < 1.0 else -math.inf
                value = int(node.digits)
                out[value] = log_add(out[value], ends) if value in out else ends
            for t, d in vocab.inner.items():
                if _wanted(node.digits + d, low, high):
                    nxt.append(_Node(node.digits + d, t, node.logp + float(lp[i, t]), here))
        level = nxt
        depth += 1
    return {n: lp for n, lp in out.items() if lp > -math.inf}


def _tree_step(model: Any, cache: Any, level: list[_Node], n_prompt: int, past: int, depth: int) -> Any:
    """One forward pass over a level's prefixes (one new token each), every one seeing the prompt and its
    own ancestors only: the rows of log-softmax after each."""
    import torch

    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    q = len(level)
    blocked = torch.finfo(dtype if dtype.is_floating_point else torch.float32).min
    mask = torch.full((1, 1, q, past + q), blocked, dtype=dtype, device=device)
    mask[..., :n_prompt] = 0
    for i, node in enumerate(level):
        if node.ancestors:
            mask[0, 0, i, list(node.ancestors)] = 0
        mask[0, 0, i, past + i] = 0
    ids = torch.tensor([[node.token for node in level]], device=device)
    positions = torch.full((1, q), n_prompt + depth, dtype=torch.long, device=device)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                    **{cache_keyword(model): cache})
    return torch.log_softmax(out.logits[0].float(), dim=-1)


def check_tree_mask(model: Any, tokens: list[int]) -> None:
    """Raise :class:`TreeMaskIgnored` unless the model honours a tree mask: the last of two sibling tokens
    appended to ``tokens`` must get the logits it gets appended alone (a model that ignored the mask would
    let it see its sibling). Run once per judge load."""
    import torch

    device = next(model.parameters()).device
    prompt, a, b = tokens[:-2], tokens[-2], tokens[-1]
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([prompt + [b]], device=device)).logits[0, -1].float()
        cache = cache_of(model(input_ids=torch.tensor([prompt], device=device), use_cache=True))
        level = [_Node("", a, 0.0, ()), _Node("", b, 0.0, ())]
        tree = _tree_step(model, cache, level, len(prompt), len(prompt), 0)[1]
    # total variation between the two next-token distributions: bf16's rounding stays far below 2%
    gap = 0.5 * float((tree.exp() - torch.softmax(alone, dim=-1)).abs().sum())
    tolerance = 1e-4 if next(model.parameters()).dtype == torch.float32 else 2e-2
    if not gap <= tolerance:
        raise TreeMaskIgnored(f"the model does not honour a tree attention mask (next-token distributions "
                              f"{gap:.2%} apart): numbers written digit by digit cannot be scored exactly")


def cache_keyword(model: Any) -> str:
    """The forward argument that takes a KV cache: ``cache`` from transformers 5.2x, ``past_key_values`` before
    (a peft model's forward takes **kwargs: its base model's says)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(type(base).forward).parameters else "past_key_values"


def cache_of(output: Any) -> Any:
    """The KV cache a forward pass or ``generate`` returned (``cache``, or ``past_key_values`` before 5.2x)."""
    found = getattr(output, "cache", None)
    return found if found is not None else getattr(output, "past_key_values", None)


def prompt_cache(model: Any, generated: Any, inputs: Any, n_prompt: int) -> Any:
    """The prompt's KV cache: ``generate``'s own, cut back to the prompt (no second prefill), else (a cache
    that cannot be cut) a fresh forward pass over the prompt."""
    import torch

    cache = cache_of(generated)
    try:
        extra = cache.get_seq_length() - n_prompt
        if extra > 0:
            cache.crop(-extra)   # negative: drop that many (every transformers version reads it so)
        if cache.get_seq_length() == n_prompt:
            return cache
    except (AttributeError, TypeError, ValueError, NotImplementedError):
        pass
    with torch.no_grad():
        return cache_of(model(**inputs, use_cache=True))
