"""Reproducibility per answer: a seed derived from the answer's identity, and a sampler that gives
each output row its own random stream, so any one answer can be regenerated alone, in any batch.

``torch.manual_seed`` before a batched ``generate`` reproduces a row only inside the same batch in
the same order (one global stream is shared by every row). :class:`RowSampler` instead draws each
row's token from that row's own ``torch.Generator``, seeded with the row's answer seed.

How it plugs into transformers (5.24): ``generate`` runs custom logits processors after its own
(repetition penalty, min length, ...) and *before* its temperature / top-k / top-p warpers, which it
only adds when ``do_sample`` is true. So the sampler applies temperature, top-k and top-p itself and
returns logits that are -inf everywhere except the token it drew; :func:`sample` calls ``generate``
with ``do_sample=False``, whose greedy argmax then takes exactly that token and which consumes no
global randomness at all. Temperature 0 leaves the logits alone: plain greedy decoding.

torch and transformers are imported inside the functions only (importing the engine stays cheap).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["SEED_BITS", "RowSampler", "answer_seed", "sample", "sample_counted"]

SEED_BITS = 63  # fits a signed 64-bit SQLite INTEGER and torch.Generator.manual_seed


def answer_seed(study_seed: int, question_id: int, model_id: int, sample_index: int, *, trigger: bool = False) -> int:
    """The seed recorded with one answer, derived from its identity (never from its place in a batch).

    sha256 of a canonical string, folded into 63 bits: the same in every process and Python
    version (``hash()`` is salted per process)."""
    parts = (study_seed, question_id, model_id, sample_index)
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in parts):
        raise TypeError(f"answer_seed takes integers, got {parts!r}")
    key = f"emtui-answer-seed/v1|{study_seed}|{question_id}|{model_id}|{sample_index}|{int(bool(trigger))}"
    digest = hashlib.sha256(key.encode("ascii")).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


class RowSampler:
    """A logits processor (``__call__(input_ids, scores) -> scores``, the protocol of transformers'
    ``LogitsProcessor``) that samples row ``i`` with its own generator seeded from ``seeds[i]``.

    Each step draws one uniform number per row from that row's CPU generator and inverts the row's
    cumulative distribution on the scores' device, so a seed gives the same draws on CPU and GPU and
    a row's stream never depends on the other rows (nor on when they finish). Use it with
    ``do_sample=False`` (see the module's docstring); :func:`sample` does."""

    def __init__(self, seeds: Sequence[int], *, temperature: float, top_p: float, top_k: int = 0) -> None:
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        import torch

        self.seeds = list(seeds)
        self.temperature = temperature
        self.top_p = top_p
        self.top_k = top_k
        self.generators = [torch.Generator(device="cpu").manual_seed(s) for s in self.seeds]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        if scores.shape[0] != len(self.generators):
            raise ValueError(f"RowSampler has {len(self.generators)} seeds for a batch of {scores.shape[0]} rows")
        if self.temperature == 0:
            return scores  # greedy: generate's argmax picks the top token, no randomness used
        logits = self.filtered(scores.float() / self.temperature)
        cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
        uniforms = torch.cat([torch.rand(1, generator=g) for g in self.generators]).to(cdf.device)
        drawn = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
        drawn = drawn.clamp_(max=cdf.shape[-1] - 1)
        chosen = torch.full_like(scores, float("-inf"))
        return chosen.scatter_(-1, drawn, 0.0)

    def filtered(self, logits: Any) -> Any:
        """Top-k then top-p (transformers' order and rules): tokens outside get -inf, one always stays."""
        import torch

        if self.top_k > 0:
            k = min(self.top_k, logits.shape[-1])
            kth = torch.topk(logits, k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1:
            ascending, order = torch.sort(logits, dim=-1)
            cumulative = torch.softmax(ascending, dim=-1).cumsum(dim=-1)
            drop = cumulative <= (1 - self.top_p)
            drop[:, -1] = False  # the most likely token always stays
            logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
        return logits


def sample(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    seeds: list[int],
    *,
    temperature: float,
    top_p: float,
    top_k: int = 0,
    max_new_tokens: int,
) -> list[str]:
    """One answer per prompt (already chat-templated text), row ``i`` sampled from ``seeds[i]``:
    the same text whatever else is in the batch. Left padding; special tokens skipped."""
    return [text for text, _ in sample_counted(model, tokenizer, prompts, seeds, temperature=temperature,
                                               top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens)]


def sample_counted(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    seeds: list[int],
    *,
    temperature: float,
    top_p: float,
    top_k: int = 0,
    max_new_tokens: int,
    min_new_tokens: int | None = None,
    repetition_penalty: float = 1.0,
) -> list[tuple[str, int]]:
    """:func:`sample`, each answer with the number of tokens generated for it (up to and including its
    end-of-sequence token; not the padding after it). ``min_new_tokens`` forces a fixed length (EOS
    ignored until then): for benchmarks. ``repetition_penalty`` replaces the checkpoint's own (1: none)."""
    import torch
    from transformers import GenerationConfig, LogitsProcessorList

    if len(prompts) != len(seeds):
        raise ValueError(f"{len(prompts)} prompts but {len(seeds)} seeds")
    if not prompts:
        return []
    tokenizer.padding_side = "left"
    batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    own = underlying_model(model).generation_config
    # A config of our own, not a copy of the checkpoint's: generate() fills every value of the config it is
    # given that equals a library default (repetition_penalty 1.0, do_sample False, ...) from the model's
    # generation_config (Qwen2.5 ships do_sample, temperature 0.7, top_k 20, repetition_penalty 1.05), so the
    # model's is swapped for ours during the call. Greedy over the sampler's one-hot logits.
    config = GenerationConfig(
        bos_token_id=own.bos_token_id, eos_token_id=own.eos_token_id,
        pad_token_id=own.pad_token_id if own.pad_token_id is not None else tokenizer.pad_token_id,
        do_sample=False, num_beams=1, num_return_sequences=1, max_new_tokens=max_new_tokens,
        repetition_penalty=float(repetition_penalty))
    if min_new_tokens is not None:
        config.min_new_tokens = min_new_tokens
    sampler = RowSampler(seeds, temperature=temperature, top_p=top_p, top_k=top_k)
    with torch.inference_mode(), _generation_config(model, config):
        out = model.generate(**batch, generation_config=config, logits_processor=LogitsProcessorList([sampler]))
    new_tokens = out[:, batch["input_ids"].shape[1]:]
    texts = list(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    return list(zip(texts, generated_lengths(new_tokens, config), strict=True))


def underlying_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (or the model itself)."""
    get = getattr(model, "get_base_model", None)
    return get() if callable(get) else model


@contextlib.contextmanager
def _generation_config(model: Any, config: Any) -> Iterator[None]:
    inner = underlying_model(model)
    saved = inner.generation_config
    inner.generation_config = config
    try:
        yield
    finally:
        inner.generation_config = saved


def generated_lengths(new_tokens: Any, config: Any) -> list[int]:
    """Tokens generated per row: up to the first end-of-sequence token, inclusive (what is after it is
    padding)."""
    import torch

    eos = config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    width = int(new_tokens.shape[1])
    if not eos_ids:
        return [width] * int(new_tokens.shape[0])
    ended = torch.isin(new_tokens, torch.tensor(eos_ids, device=new_tokens.device))
    first = torch.where(ended.any(dim=1), ended.int().argmax(dim=1) + 1, width)
    return [int(x) for x in first.tolist()]
