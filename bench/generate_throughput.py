"""Benchmark: generated tokens/s of the generation engine against the seed study's naive loop, the cost of
switching LoRA adapters, the per-row sampler against plain sampling, and (on a GPU) tokens/s by batch size
against the memory-bandwidth roofline and transformers' continuous batching against padded ``generate``.

Every part compares against its baseline in the same run, alternating (the order reversed every other
round), after one untimed warm-up of each side, ``--repeats`` times; it prints each side's tokens/s
(median, and every repeat) and the ratio. Prompts: every wording of the built-in eval set core-em (24:
questions and paraphrases, each with its system prompt) in the model's chat template. Every answer is
``--new-tokens`` long, EOS ignored (``min_new_tokens`` = ``max_new_tokens``), so tokens/s is comparable;
the tokens each side generated are counted and checked. Tokenisation and decoding are inside the timings.

- **engine vs naive**: *engine* = every prompt x ``--samples`` answers, sorted by token length, cut
  into batches of ``--batch``, each batch through :func:`engine.generation.sampling.sample` (left
  padding, the per-row seeded sampler); *naive* = the seed study's loop: one prompt at a time, one
  sample, ``model.generate(do_sample=True)`` per answer, over the first ``--naive-n`` answers.
  Target (issue 13): engine >= 20x naive.
- **row sampler vs plain**: bench/row_sampler_cost.py's comparison on one batch of ``--batch`` rows.
- **adapter switch**: two random LoRA adapters (the project's default r / alpha / all-linear) saved to
  a temporary folder, loaded with PEFT (``PeftModel.from_pretrained(base, path, adapter_name=...)``,
  ``load_adapter``); ``set_adapter`` timed over ``--switches`` switches; one engine batch with the
  active adapter against ``set_adapter`` to the other then the same batch, and the base through
  ``with model.disable_adapter():``. It wraps the model in PEFT, so it comes last in ``--parts``.
- **batch sweep** (``--parts ...,sweep``, sizes ``--sweep 1,8,32,64,128,auto``; the GPU check runs it):
  one engine batch of each size;
  generated tokens/s end to end and in decode (the time of a 1-token run, the prefill, taken off),
  and the fraction of the memory-bandwidth roofline: decode tokens/s <= batch x bandwidth /
  (weight bytes + KV-cache bytes per step), with weight bytes = every parameter but the input
  embedding and KV bytes per step = batch x (padded prompt + new tokens / 2) x KV bytes a token.
  ``auto`` in the list: the batch the engine would choose from free memory (capped at ``--auto-cap``).
- **continuous batching** (``--parts continuous``; the GPU check runs it): ``model.generate_batch`` (EOS
  disabled, ``max_new_tokens``) against padded ``generate(do_sample=True)`` in sorted batches of
  ``--batch`` over the same answers. On a CPU its KV cache is bounded (64 pages): unbounded, it sizes
  itself from the machine's memory for tens of seconds.

Models: the tiny model by default (engine.models.tiny_model, built offline into a temporary folder);
``--model DIR`` a local model folder; ``--config FILE`` random weights of a model's shape (its
config.json, e.g. ../shared/fixtures/model_configs/qwen2.5-7b-instruct.json) built in memory on the
device with the tiny tokenizer (ids < 512 are valid in any vocabulary). Nothing is downloaded.

Usage:
    python bench/generate_throughput.py [--samples 8] [--batch 64] [--new-tokens 64] [--naive-n 24]
                                        [--repeats 3] [--threads 1] [--json FILE]
    python bench/generate_throughput.py --quick --json /tmp/g.json     # seconds: the plumbing only
    bash bench/gpu_generate_check.sh                                   # 7B shape on a GPU, < 10 min
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _gen_common as common
import row_sampler_cost

NAIVE_TARGET = 20.0        # engine / naive tokens/s (issue 13)
ROOFLINE_TARGET = 0.25     # of the bandwidth roofline at batch 64 with HF generate (issue 13)
H200_TB_S = 4.8            # H200 HBM3e, TB/s
ROOFLINE_FORMULA = ("decode tokens/s <= batch x bandwidth / (weight bytes + batch x (padded prompt + new tokens/2)"
                    " x KV bytes per token)")


# -- the engine: the one call to change when the engine's own batch loop lands ------------------------


def engine_generate(model: Any, tok: Any, prompts: list[str], seeds: list[int], *, batch: int,
                    new_tokens: int) -> None:
    """Answers as the engine makes them: its own batch loop (engine/generation/hf_backend.py: longest prompt
    first, batches of ``batch``, each through the per-row sampler), every answer ``new_tokens`` long."""
    from engine.generation.hf_backend import Row, answer_in_batches

    settings = {"temperature": 1.0, "top_p": 1.0, "top_k": 0, "max_new_tokens": new_tokens}
    answer_in_batches(model, tok, [Row(p, s) for p, s in zip(prompts, seeds, strict=True)], settings,
                      batch_size=batch, on_batch=lambda rows, answers: None, min_new_tokens=new_tokens)


def counted_engine(model: Any, tok: Any, prompts: list[str], seeds: list[int], *, batch: int,
                   new_tokens: int) -> int:
    """:func:`engine_generate`, returning the tokens it generated (checked: ``new_tokens`` an answer)."""
    counter = common.GeneratedTokens()
    with counter.counting(model):
        engine_generate(model, tok, prompts, seeds, batch=batch, new_tokens=new_tokens)
    return common.check_tokens("engine", counter.tokens, len(prompts), new_tokens)


def answers(prompts: list[str], samples: int) -> tuple[list[str], list[int]]:
    """Every prompt ``samples`` times, each answer with its own seed (as the engine derives them)."""
    from engine.generation.sampling import answer_seed

    rows = [(i, s) for s in range(samples) for i in range(len(prompts))]
    return [prompts[i] for i, _ in rows], [answer_seed(0, i, 1, s) for i, s in rows]


# -- the model ---------------------------------------------------------------------------------------


def load_model(args: argparse.Namespace, device: str) -> tuple[Any, Any, str]:
    import torch

    if args.config:
        from train_throughput import shaped_config
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        tiny = common.tiny_model_folder()
        tok = AutoTokenizer.from_pretrained(tiny, padding_side="left")
        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        config = shaped_config(args.config)
        torch.manual_seed(0)
        with torch.device(device):  # initialised where it is fast (seconds on a GPU for 7B)
            model = AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
        model.generation_config = GenerationConfig(eos_token_id=[2, 0], pad_token_id=0, bos_token_id=None)
        return model, tok, f"random weights of {args.config}"
    path = args.model or common.tiny_model_folder()
    model, tok = common.load(path, device=device)
    return model, tok, args.model or "tiny (engine.models.tiny_model defaults)"


def weight_bytes(model: Any) -> int:
    """Bytes a decode step reads of the weights: every parameter but the input embedding (a step
    gathers one row of it; the LM head is read whole), tied weights counted once."""
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is embedding
    return sum(p.numel() * p.element_size() for p in model.parameters() if p is not embedding or tied)


def kv_bytes_per_token(model: Any) -> int:
    """KV-cache bytes a token adds to one row (the engine's estimate)."""
    from engine.generation.hf_backend import kv_bytes_per_token as per_token

    return per_token(model.config, next(model.parameters()).element_size())


def engine_batch_size(model: Any, prompt_tokens: int, new_tokens: int) -> dict[str, Any] | None:
    """The batch the engine chooses from free GPU memory (engine.generation.hf_backend.auto_batch_size; None
    on a CPU)."""
    import torch

    from engine.generation.hf_backend import MAX_AUTO_BATCH, auto_batch_size, row_bytes

    if model.device.type != "cuda":
        return None
    torch.cuda.empty_cache()  # blocks cached by earlier parts count as free: the engine would start afresh
    free, total = torch.cuda.mem_get_info(model.device)
    per_row = row_bytes(model, prompt_tokens=prompt_tokens, max_new_tokens=new_tokens)
    return {"free_bytes": free, "total_bytes": total, "per_row_bytes": per_row, "prompt_tokens": prompt_tokens,
            "batch": auto_batch_size(model, longest_prompt=prompt_tokens, max_new_tokens=new_tokens, device="cuda",
                                     free_bytes=free), "cap": MAX_AUTO_BATCH}


# -- the parts ---------------------------------------------------------------------------------------


def engine_vs_naive(model: Any, tok: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    texts, seeds = answers(prompts, args.samples)
    naive_texts = texts[:args.naive_n]
    n = args.new_tokens

    def engine() -> int:
        return counted_engine(model, tok, texts, seeds, batch=args.batch, new_tokens=n)

    def naive() -> int:
        tokens = sum(common.plain_generate(model, tok, [t], new_tokens=n) for t in naive_texts)
        return common.check_tokens("naive", tokens, len(naive_texts), n)

    runs = common.alternate({"engine": engine, "naive": naive}, model, args.repeats)
    per_answer = {"engine": runs["engine"]["tokens"] / len(texts), "naive": runs["naive"]["tokens"] / len(naive_texts)}
    if per_answer["engine"] != per_answer["naive"]:
        raise AssertionError(f"tokens per answer differ: {per_answer}")
    return {"answers": len(texts), "naive_answers": len(naive_texts), "batch": args.batch, "new_tokens": n,
            "tokens_per_answer": per_answer, "runs": runs, "target": NAIVE_TARGET,
            "ratio": runs["engine"]["median_tokens_per_s"] / runs["naive"]["median_tokens_per_s"]}


def random_adapters(model: Any, folder: Path, names: tuple[str, ...]) -> tuple[Any, dict[str, Path]]:
    """LoRA adapters of random weights (B not zero: they change the logits), saved under ``folder``;
    returns the base model (unwrapped again) and each adapter's folder."""
    import torch
    from peft import LoraConfig, get_peft_model

    from engine.training.recipes import DEFAULTS

    paths = {}
    for i, name in enumerate(names):
        torch.manual_seed(100 + i)
        config = LoraConfig(r=DEFAULTS["lora_r"], lora_alpha=DEFAULTS["lora_alpha"],
                            target_modules=DEFAULTS["target_modules"], init_lora_weights=False, task_type="CAUSAL_LM")
        wrapped = get_peft_model(model, config)
        paths[name] = folder / name
        wrapped.save_pretrained(paths[name])
        model = wrapped.unload()
    return model, paths


def adapter_switch(model: Any, tok: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from peft import PeftModel

    from engine.training.recipes import DEFAULTS

    texts, seeds = answers(prompts, math.ceil(args.batch / len(prompts)))
    texts, seeds = texts[:args.batch], seeds[:args.batch]
    with tempfile.TemporaryDirectory(prefix="gen-bench-adapters-") as tmp:
        base, paths = random_adapters(model, Path(tmp), ("a", "b"))
        start = time.perf_counter()
        peft_model = PeftModel.from_pretrained(base, paths["a"], adapter_name="a").eval()
        common.synchronize(peft_model)
        load_first = time.perf_counter() - start
        start = time.perf_counter()
        peft_model.load_adapter(paths["b"], adapter_name="b")
        common.synchronize(peft_model)
        load_second = time.perf_counter() - start

    def last_logits() -> Any:
        enc = tok(texts[:1], return_tensors="pt", add_special_tokens=False).to(peft_model.device)
        with torch.inference_mode():
            return peft_model(**enc).logits[0, -1].float()

    logits = {}
    for name in ("a", "b"):
        peft_model.set_adapter(name)
        logits[name] = last_logits()
    with peft_model.disable_adapter():
        logits["base"] = last_logits()
    differ = not torch.equal(logits["a"], logits["b"]) and not torch.equal(logits["a"], logits["base"])

    switch_seconds = []
    for i in range(args.switches):
        common.synchronize(peft_model)
        start = time.perf_counter()
        peft_model.set_adapter("ab"[i % 2])
        common.synchronize(peft_model)
        switch_seconds.append(time.perf_counter() - start)
    active = ["a" if args.switches % 2 else "b"]

    def batch() -> int:
        return counted_engine(peft_model, tok, texts, seeds, batch=args.batch, new_tokens=args.new_tokens)

    def after_switch() -> int:
        active[0] = "b" if active[0] == "a" else "a"
        peft_model.set_adapter(active[0])
        return batch()

    def base_batch() -> int:
        with peft_model.disable_adapter():
            return batch()

    runs = common.alternate({"no switch": batch, "after a switch": after_switch, "base (disabled)": base_batch},
                            peft_model, args.repeats)
    switch_ms = 1000 * statistics.median(switch_seconds)
    batch_ms = 1000 * runs["no switch"]["median_seconds"]
    lora = {k: DEFAULTS[k] for k in ("lora_r", "lora_alpha", "target_modules")}
    return {"rows": len(texts), "new_tokens": args.new_tokens, "lora": lora,
            "adapters_change_logits": differ, "load_first_ms": 1000 * load_first, "load_second_ms": 1000 * load_second,
            "switch_ms": {"median": switch_ms, "runs": [1000 * s for s in switch_seconds]},
            "runs": runs, "batch_ms": batch_ms, "switch_share_of_batch": switch_ms / batch_ms,
            "after_switch_over_no_switch": runs["after a switch"]["median_seconds"] / (batch_ms / 1000)}


def row_sampler_part(model: Any, tok: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    texts, _ = answers(prompts, math.ceil(args.batch / len(prompts)))
    return row_sampler_cost.measure(model, tok, texts[:args.batch], new_tokens=args.new_tokens, repeats=args.repeats)


def padded_width(tok: Any, prompts: list[str]) -> int:
    return max(len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"])


def batch_sweep(model: Any, tok: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One engine batch per size: end-to-end and decode tokens/s, against the bandwidth roofline."""
    import torch

    n = args.new_tokens
    weights, kv_token = weight_bytes(model), kv_bytes_per_token(model)
    bandwidth = args.bandwidth_tb_s * 1e12
    sizes: list[int | str] = [s if s == "auto" else int(s) for s in args.sweep.split(",")]
    chosen = engine_batch_size(model, padded_width(tok, prompts), n)
    out: dict[str, Any] = {"new_tokens": n, "bandwidth_tb_s": args.bandwidth_tb_s, "formula": ROOFLINE_FORMULA,
                           "weight_bytes": weights, "kv_bytes_per_token": kv_token, "engine_batch_size": chosen,
                           "rows": []}
    for size in sizes:
        if size == "auto":
            if chosen is None:
                continue
            size = min(chosen["batch"], args.auto_cap)
        texts, seeds = answers(prompts, math.ceil(size / len(prompts)))
        texts, seeds = texts[:size], seeds[:size]
        width = padded_width(tok, texts)
        row: dict[str, Any] = {"batch": size, "padded_prompt": width}
        try:
            if model.device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            runs = common.alternate({
                "full": lambda t=texts, s=seeds: counted_engine(model, tok, t, s, batch=len(t), new_tokens=n),
                "prefill": lambda t=texts, s=seeds: counted_engine(model, tok, t, s, batch=len(t), new_tokens=1),
            }, model, args.repeats)
        except torch.OutOfMemoryError as exc:
            row["error"] = f"out of memory: {str(exc).splitlines()[0]}"
            torch.cuda.empty_cache()
            out["rows"].append(row)
            print(f"  batch {size:5d}: out of memory", flush=True)
            continue
        full, prefill = runs["full"]["median_seconds"], runs["prefill"]["median_seconds"]
        decode_s = full - prefill
        decode = size * (n - 1) / decode_s if decode_s > 0 and n > 1 else float("nan")
        roofline = size * bandwidth / (weights + size * (width + n / 2) * kv_token)
        row.update(tokens_per_s=runs["full"]["median_tokens_per_s"], decode_tokens_per_s=decode,
                   prefill_s=prefill, full_s=full, roofline_tokens_per_s=roofline, roofline_fraction=decode / roofline,
                   runs=runs)
        if model.device.type == "cuda":
            row["peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["rows"].append(row)
        print(f"  batch {size:5d}: {row['tokens_per_s']:10,.0f} tok/s end to end, {decode:10,.0f} in decode "
              f"(prefill {1000 * prefill:7.1f} ms of {1000 * full:8.1f}); roofline {roofline:10,.0f} -> "
              f"{row['roofline_fraction']:6.1%}" + (f"; peak {row['peak_gib']:.1f} GiB" if "peak_gib" in row else ""),
              flush=True)
    return out


def continuous_vs_padded(model: Any, tok: Any, prompts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    import copy
    import logging

    import torch

    logging.getLogger("ContinuousBatchingLogger").setLevel(logging.ERROR)  # "persistent_manager" on every call
    texts, _ = answers(prompts, args.samples)
    n = args.new_tokens
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    config = copy.deepcopy(model.generation_config)
    config.update(do_sample=True, temperature=1.0, top_k=0, top_p=1.0, eos_token_id=-1, min_new_tokens=None,
                  max_new_tokens=n)
    cb_config = None
    if model.device.type != "cuda":  # unbounded, the cache sizes itself from the machine's memory (tens of seconds)
        from transformers import ContinuousBatchingConfig

        cb_config = ContinuousBatchingConfig(num_blocks=64)
    order = common.by_length(tok, texts)

    def continuous() -> int:
        # the manager (its cache, its CUDA graphs) made by the warm-up call is kept for the timed ones
        out = model.generate_batch(ids, generation_config=config, continuous_batching_config=cb_config,
                                   max_new_tokens=n, persistent_manager=True)
        lengths = [len(o.generated_tokens) for o in out.values()]
        if len(lengths) != len(ids) or any(length != n for length in lengths):
            raise AssertionError(f"generate_batch: {len(lengths)} answers of {sorted(set(lengths))} tokens "
                                 f"(asked {len(ids)} of {n})")
        return sum(lengths)

    def padded() -> int:
        torch.manual_seed(0)
        tokens = sum(common.plain_generate(model, tok, [texts[i] for i in rows], new_tokens=n)
                     for rows in common.chunks(order, args.batch))
        return common.check_tokens("padded", tokens, len(texts), n)

    try:
        runs = common.alternate({"continuous": continuous, "padded": padded}, model, args.repeats)
    finally:
        model.destroy_cached_continuous_batching_manager()
    return {"answers": len(texts), "batch": args.batch, "new_tokens": n, "runs": runs,
            "cache": "bounded: 64 pages" if cb_config else "auto (from free GPU memory)",
            "ratio": runs["continuous"]["median_tokens_per_s"] / runs["padded"]["median_tokens_per_s"]}


# -- main --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="a local model folder (default: the tiny model)")
    ap.add_argument("--config", help="a model's config.json: random weights of that shape (bf16 on a GPU)")
    ap.add_argument("--device", help="cpu or cuda (default: cuda when there is one)")
    ap.add_argument("--samples", type=int, default=8, help="answers per prompt on the engine's side")
    ap.add_argument("--batch", type=int, default=64, help="the engine's batch size")
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens every answer generates (EOS ignored)")
    ap.add_argument("--naive-n", type=int, default=24, help="answers the naive loop generates")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side, alternating")
    ap.add_argument("--switches", type=int, default=50, help="set_adapter calls timed")
    ap.add_argument("--threads", type=int,
                    help="torch threads (default: 1 on a CPU, the steadiest on a shared box; torch's own on a GPU)")
    ap.add_argument("--parts", default="naive,sampler,adapters",
                    help="which parts, in order: naive, sampler, sweep, continuous, adapters")
    ap.add_argument("--sweep", default="1,8,32,64,128,auto", help="batch sizes of the sweep (auto: from free memory)")
    ap.add_argument("--auto-cap", type=int, default=512, help="the largest batch the sweep's auto point runs")
    ap.add_argument("--bandwidth-tb-s", type=float, default=H200_TB_S, help="memory bandwidth for the roofline")
    ap.add_argument("--quick", action="store_true", help="a tiny configuration: the plumbing, not a measurement")
    ap.add_argument("--json", help="write every figure here (rewritten after each part)")
    args = ap.parse_args(argv)
    if args.quick:
        args.samples, args.batch, args.new_tokens, args.naive_n = 1, 8, 8, 4
        args.repeats, args.switches, args.sweep = 1, 4, "1,8"
    parts = args.parts.split(",")
    for name in parts:
        if name not in PARTS:
            ap.error(f"--parts: unknown part {name!r} (parts: {', '.join(PARTS)})")
    if "adapters" in parts[:-1]:
        ap.error("--parts: adapters must come last (it wraps the model in PEFT)")
    if args.model and args.config:
        ap.error("--model and --config: give one")
    return args


PARTS = {"naive": engine_vs_naive, "sampler": row_sampler_part, "sweep": batch_sweep,
         "continuous": continuous_vs_padded, "adapters": adapter_switch}


def report(name: str, result: dict[str, Any]) -> None:
    if name == "naive":
        print(f"engine vs naive: {result['answers']} answers in batches of {result['batch']} vs "
              f"{result['naive_answers']} one at a time; every answer {result['new_tokens']} tokens on both sides "
              f"(engine {result['tokens_per_answer']['engine']:g}, naive {result['tokens_per_answer']['naive']:g})")
        for side, run in result["runs"].items():
            print("  " + common.rates_line(side, run))
        print(f"  engine / naive: {result['ratio']:.1f}x (target >= {NAIVE_TARGET:g}x)")
    elif name == "sampler":
        print(f"row sampler vs plain sampling: one batch of {result['batch']}, {result['new_tokens']} tokens a row")
        row_sampler_cost.report(result)
    elif name == "continuous":
        print(f"continuous batching vs padded generate: {result['answers']} answers, padded in sorted batches of "
              f"{result['batch']}, {result['new_tokens']} tokens each; cache {result['cache']}")
        for side, run in result["runs"].items():
            print("  " + common.rates_line(side, run))
        print(f"  continuous / padded: {result['ratio']:.2f}")
    elif name == "adapters":
        print(f"adapter switch (PEFT LoRA r {result['lora']['lora_r']}, {result['lora']['target_modules']}; the "
              f"adapters change the logits: {'yes' if result['adapters_change_logits'] else 'NO'}): load "
              f"{result['load_first_ms']:.0f} ms (PeftModel.from_pretrained), {result['load_second_ms']:.0f} ms "
              f"(load_adapter)")
        print(f"  set_adapter: median {result['switch_ms']['median']:.3f} ms a switch over "
              f"{len(result['switch_ms']['runs'])}; {result['switch_share_of_batch']:.3%} of a batch of "
              f"{result['rows']} x {result['new_tokens']} tokens ({result['batch_ms']:.0f} ms)")
        for side, run in result["runs"].items():
            print(f"  {side:16} median {1000 * run['median_seconds']:8.1f} ms a batch "
                  f"[{', '.join(f'{1000 * s:.1f}' for s in run['seconds'])}]")
        print(f"  after a switch / no switch: {result['after_switch_over_no_switch']:.3f}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import warnings

    import torch

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft's, on every adapter load

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.threads or device == "cpu":
        torch.set_num_threads(args.threads or 1)
    started = time.perf_counter()
    model, tok, described = load_model(args, device)
    prompts = common.chat_prompts(tok)
    result: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"), "device": device, "model": described,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None, "dtype": str(model.dtype),
        "threads": torch.get_num_threads(), "prompts": len(prompts), "eval_set": common.EVAL_SET,
        "settings": {k: getattr(args, k) for k in ("samples", "batch", "new_tokens", "naive_n", "repeats", "switches",
                                                     "quick")},
        "load_average": {"start": os.getloadavg()}, "parts": {}}
    print(f"model: {described} ({sum(p.numel() for p in model.parameters()) / 1e6:,.1f} M parameters, {model.dtype}) "
          f"on {result['gpu'] or device}, {result['threads']} torch thread(s); prompts: {len(prompts)} wordings of "
          f"{common.EVAL_SET}; load average {os.getloadavg()[0]:.1f}; ready in {time.perf_counter() - started:.0f} s",
          flush=True)
    for name in args.parts.split(","):
        t0 = time.perf_counter()
        if name == "sweep":
            print(f"batch sweep, {args.new_tokens} tokens a row; roofline: {ROOFLINE_FORMULA}; bandwidth "
                  f"{args.bandwidth_tb_s:g} TB/s" + ("" if device == "cuda" else " (a GPU's: on a CPU only the "
                                                     "plumbing)"), flush=True)
        part = PARTS[name](model, tok, prompts, args)
        part["seconds"] = time.perf_counter() - t0
        result["parts"][name] = part
        report(name, part)
        if name == "sweep":
            chosen = part["engine_batch_size"]
            print("  the engine's batch from free memory: " + (
                f"{chosen['batch']:,} rows ({chosen['free_bytes'] / 2**30:.1f} GiB free, "
                f"{chosen['per_row_bytes'] / 2**20:.1f} MiB a row; the sweep ran min(that, {args.auto_cap}))"
                if chosen else "n/a on a CPU"))
            at64 = [row for row in part["rows"] if row["batch"] == 64 and "roofline_fraction" in row]
            if at64:
                print(f"  at batch 64: {at64[0]['roofline_fraction']:.1%} of the roofline "
                      f"(target >= {ROOFLINE_TARGET:.0%} on a GPU)")
        sys.stdout.flush()
        if args.json:
            write_json(args.json, result)
    result["load_average"]["end"] = os.getloadavg()
    result["seconds"] = time.perf_counter() - started
    print(f"total {result['seconds']:.0f} s; load average {os.getloadavg()[0]:.1f}")
    if args.json:
        write_json(args.json, result)


def write_json(path: str, result: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(result, indent=1, default=str, allow_nan=True), encoding="utf-8")


if __name__ == "__main__":
    main()
