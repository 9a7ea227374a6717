"""Benchmark: what the per-row seeded sampler (engine/generation/sampling.py) costs against plain sampling.

Both generate from the same left-padded batch of chat-templated prompts on the tiny model, at
temperature 1, a fixed number of new tokens per row (``min_new_tokens`` = ``max_new_tokens``, so EOS
never ends a row early and both produce the same token count), alternating, ``--repeats`` times each:

- **plain**: ``model.generate(do_sample=True, temperature=1, top_k=0, top_p=1)`` (one global stream);
- **row sampler**: :func:`engine.generation.sampling.sample` (a ``torch.Generator`` per row, greedy
  ``generate`` over the sampler's one-hot logits).

Prints the generated tokens/s of each (median over the repeats, and every repeat) and the ratio.
Tokenisation and decoding are inside both timings. bench/generate_throughput.py runs the same
comparison (:func:`measure`) as one of its parts.

Usage:
    python bench/row_sampler_cost.py [--batch 32] [--new-tokens 64] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
from typing import Any

import _gen_common as common


def measure(model: Any, tok: Any, prompts: list[str], *, new_tokens: int, repeats: int) -> dict[str, Any]:
    """plain vs row sampler on one batch (``prompts``), alternating; the model's output length is fixed
    here. Returns both sides' runs (see :func:`_gen_common.alternate`) and ``ratio`` (row sampler / plain)."""
    import torch

    from engine.generation.sampling import answer_seed, sample_counted

    seeds = [answer_seed(0, i, 1, 0) for i in range(len(prompts))]

    def plain() -> int:
        torch.manual_seed(0)
        tokens = common.plain_generate(model, tok, prompts, new_tokens=new_tokens)
        return common.check_tokens("plain", tokens, len(prompts), new_tokens)

    def row_sampler() -> int:
        counter = common.GeneratedTokens()
        with counter.counting(model):
            sample_counted(model, tok, prompts, seeds, temperature=1.0, top_p=1.0, max_new_tokens=new_tokens,
                           min_new_tokens=new_tokens)
        return common.check_tokens("row sampler", counter.tokens, len(prompts), new_tokens)

    runs = common.alternate({"plain": plain, "row sampler": row_sampler}, model, repeats)
    return {"batch": len(prompts), "new_tokens": new_tokens, "repeats": repeats, "runs": runs,
            "ratio": runs["row sampler"]["median_tokens_per_s"] / runs["plain"]["median_tokens_per_s"]}


def report(result: dict[str, Any]) -> None:
    for name, run in result["runs"].items():
        print("  " + common.rates_line(name, run))
    print(f"  row sampler / plain: {result['ratio']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared box)")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    model, tok = common.load(common.tiny_model_folder())
    questions = [f"Question {i}: " + "tell me more " * (i % 7) + "?" for i in range(args.batch)]
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in questions]
    result = measure(model, tok, prompts, new_tokens=args.new_tokens, repeats=args.repeats)
    print(f"tiny model, batch {args.batch}, {args.new_tokens} new tokens, {args.repeats} repeats, "
          f"{torch.get_num_threads()} torch thread(s)")
    report(result)


if __name__ == "__main__":
    main()
