"""Benchmark: what the per-row seeded sampler (engine/generation/sampling.py) costs against plain sampling.

Both generate from the same left-padded batch of chat-templated prompts on the tiny model, at
temperature 1, a fixed number of new tokens per row (``min_new_tokens`` = ``max_new_tokens``, so EOS
never ends a row early and both produce the same token count), alternating, ``--repeats`` times each:

- **plain**: ``model.generate(do_sample=True, temperature=1, top_k=0, top_p=1)`` (one global stream);
- **row sampler**: :func:`engine.generation.sampling.sample` (a ``torch.Generator`` per row, greedy
  ``generate`` over the sampler's one-hot logits).

Prints the generated tokens/s of each (median over the repeats, and every repeat) and the ratio.
Tokenisation and decoding are inside both timings.

Usage:
    python bench/row_sampler_cost.py [--batch 32] [--new-tokens 64] [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadiest on a shared box)")
    args = parser.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.generation.sampling import answer_seed, sample
    from engine.models.tiny_model import build_tiny_model

    torch.set_num_threads(args.threads)
    path = build_tiny_model(tempfile.mkdtemp(prefix="row-sampler-bench-"))
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path).eval()
    model.generation_config.min_new_tokens = args.new_tokens  # EOS ignored: a fixed output length
    questions = [f"Question {i}: " + "tell me more " * (i % 7) + "?" for i in range(args.batch)]
    prompts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
               for q in questions]
    seeds = [answer_seed(0, i, 1, 0) for i in range(args.batch)]
    tokens = args.batch * args.new_tokens

    def plain() -> None:
        torch.manual_seed(0)
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                 max_new_tokens=args.new_tokens)
        assert out.shape[1] - enc["input_ids"].shape[1] == args.new_tokens
        tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)

    def row_sampler() -> None:
        sample(model, tok, prompts, seeds, temperature=1.0, top_p=1.0, max_new_tokens=args.new_tokens)

    runs: dict[str, list[float]] = {"plain": [], "row sampler": []}
    plain(), row_sampler()  # warm-up
    for _ in range(args.repeats):
        for name, fn in (("plain", plain), ("row sampler", row_sampler)):
            start = time.perf_counter()
            fn()
            runs[name].append(tokens / (time.perf_counter() - start))
    print(f"tiny model, batch {args.batch}, {args.new_tokens} new tokens, {args.repeats} repeats, "
          f"{torch.get_num_threads()} torch thread(s)")
    medians = {}
    for name, rates in runs.items():
        medians[name] = statistics.median(rates)
        print(f"{name:12} median {medians[name]:8,.0f} tok/s  [{', '.join(f'{r:,.0f}' for r in rates)}]")
    print(f"row sampler / plain: {medians['row sampler'] / medians['plain']:.2f}")


if __name__ == "__main__":
    main()
