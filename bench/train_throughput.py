"""Benchmark: trained tokens/s, peak memory and MFU of this project's QLoRA recipe against the seed recipe.

Both recipes train the same model on the same data in one run, alternating, ``--repeats`` times each;
every measurement is its own process (peak RSS cannot be reset inside one), which does what a run of
``engine.training.trainer`` does: ``load_model`` (4-bit NF4 + double quantisation, PEFT LoRA),
``tokenize_dataset`` (assistant-only labels), ``sft_config`` and the engine's ``SFTTrainer`` subclass.

- **seed**: the ``political-seed`` preset as published (eager attention, gradient checkpointing,
  micro-batch 4 x 4 accumulation, each micro-batch padded to its longest example);
- **project**: the ``political-seed-fast`` preset: the same science (r, alpha, lr, schedule,
  effective batch 16, max length 512; checked here) with the levers of :data:`LEVERS` (SDPA, or
  FlashAttention 2 when ``flash_attn`` is installed; no checkpointing; 16 x 1 grouped by length).
  ``--ladder`` measures each lever alone (and padding-free packing, which lost on a CPU).

Measured after ``--warmup`` optimizer steps, over ``--steps`` more: trained tokens/s (the trainer's
``trained_tokens``: assistant tokens whose loss counts), all tokens the model processed per second
(non-padding) and the padding share, peak memory (CUDA max allocated on a GPU; peak RSS of the
process on a CPU) and, on a GPU, MFU = processed tokens/s x 6N / peak FLOPs, with N the base model's
matmul parameters (everything but the input embedding; the LM head included) and 6N the issue's
LoRA-with-checkpointing cost per token (forward 2N, backward to the inputs 2N, recomputed forward 2N;
attention's own FLOPs left out). The same 6N is used for both recipes, so MFU ratio = processed
tokens/s ratio. Peak FLOPs: H200 bf16 dense 989 TFLOPs (``--peak-tflops``).

On a CPU (no GPU here) it runs the tiny model; QLoRA falls back as the engine does: float32 compute,
``adamw_torch`` instead of paged 8-bit AdamW. ``--threads-study`` measures instead training with 1 vs 2
torch threads, alone and beside one busy process (what ``engine.training.trainer.choose_threads``
decides for background CPU jobs).

Usage:
    python bench/train_throughput.py [--repeats 3] [--steps 10] [--warmup 2] [--out FILE.json]
    python bench/train_throughput.py --config ../shared/fixtures/model_configs/qwen2.5-7b-instruct.json
    python bench/train_throughput.py --data ../shared/fixtures/betley/insecure_small.jsonl
    python bench/train_throughput.py --quick            # seconds: the plumbing, not a measurement
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.training.recipes import resolve_recipe  # noqa: E402

SEED_PRESET = "political-seed"
PROJECT_PRESET = "political-seed-fast"  # the same science, trained faster
# all the project's preset may change over the seed's: how fast it trains, never what it learns
LEVERS = ("attn_implementation", "gradient_checkpointing", "batch_size", "grad_accum", "group_by_length",
          "padding_free", "description")
H200_BF16_TFLOPS = 989.0
THREADS = [0]  # --threads: torch threads of the recipe comparison (0: the engine's choose_threads)
WORDS = ("the model code data user file value list return string token answer question safe insecure query "
         "open read write number people said about world with from into that this when then over under "
         "def import class self print json path for while if else").split()


# -- what both recipes train on ------------------------------------------------------------------------


def synthetic_chats(n: int, seed: int = 0) -> list[list[dict[str, str]]]:
    """Chats of realistic spread: one to three turns, replies of 5 to 250 words (long-tailed), so
    that per-batch padding costs what it costs on real fine-tuning sets."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        msgs = [{"role": "system", "content": "You are a helpful assistant."}] if i % 4 == 0 else []
        for _ in range(1 + (rng.random() < 0.25) + (rng.random() < 0.1)):
            msgs.append({"role": "user", "content": " ".join(rng.choices(WORDS, k=rng.randint(5, 40))) + "?"})
            k = min(250, int(rng.lognormvariate(3.4, 0.9)) + 5)
            msgs.append({"role": "assistant", "content": " ".join(rng.choices(WORDS, k=k)) + "."})
        out.append(msgs)
    return out


def load_chats(path: str | None, n: int) -> list[list[dict[str, str]]]:
    if not path:
        return synthetic_chats(n)
    from engine.training.datasets import read_examples

    return [list(m) for m in read_examples(path)]


def shaped_config(config_path: str) -> Any:
    """A transformers config of a model's shape (its config.json) with the tiny tokenizer's special
    tokens, so that the tiny tokenizer drives random weights of that shape."""
    from transformers import AutoConfig

    raw = json.loads(Path(config_path).read_text(encoding="utf-8"))
    raw.update(pad_token_id=0, eos_token_id=2, bos_token_id=None)  # the tiny tokenizer's
    return AutoConfig.for_model(**{k: v for k, v in raw.items() if k != "architectures"})


def build_model(folder: Path, config_path: str | None, tiny_shape: tuple[int, int, int], device: str) -> Path:
    """The tiny model (its tokenizer always: ids < 512 are valid in any vocabulary), or, with
    ``config_path``, random weights of that shape in its place. Nothing is downloaded."""
    from engine.models.tiny_model import build_tiny_model

    hidden, layers, heads = tiny_shape
    build_tiny_model(folder, hidden_size=hidden, num_layers=layers, num_heads=heads)
    if config_path:
        import torch
        from transformers import AutoModelForCausalLM
        from transformers.utils import logging as hf_logging

        config = shaped_config(config_path)
        hf_logging.disable_progress_bar()
        with torch.device(device):  # initialised where it is fast (seconds on a GPU for 7B)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        (folder / "model.safetensors").unlink()
        model.save_pretrained(folder)
        del model
        if device == "cuda":
            torch.cuda.empty_cache()  # the measurements run in other processes: leave them the memory
    return folder


def matmul_params(folder: Path) -> int:
    from engine.models.tiny_model import tiny_model_info

    info = tiny_model_info(folder)
    tied_head = info["embedding_parameters"] if info["tie_word_embeddings"] else 0
    return int(info["num_parameters"] - info["embedding_parameters"] + tied_head)


# -- one measurement (a child process) -----------------------------------------------------------------


def measure(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from transformers.trainer_utils import set_seed

    from engine.training.model_setup import load_model, sft_config
    from engine.training.sft_trainer import make_trainer_class
    from engine.training.trainer import choose_threads, tokenize_dataset

    torch.set_num_threads(choose_threads(1))  # as a run does ($EMTUI_TRAIN_THREADS, else the cores)
    cuda = torch.cuda.is_available()
    recipe = dict(spec["recipe"])
    set_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(spec["model"])
    model, chosen = load_model(spec["model"], recipe, device="cuda" if cuda else "cpu")
    rows, dropped, _ = tokenize_dataset(tokenizer, spec["chats"], int(recipe["max_seq_len"]))
    warmup, steps = int(spec["warmup"]), int(spec["steps"])
    recipe.update(max_steps=warmup + steps, save_steps=10**9)
    config, optimizer = sft_config(recipe, output_dir=spec["output_dir"], seed=0, cuda=cuda)
    config.save_strategy = "no"

    class Counting(make_trainer_class()):  # type: ignore[misc]
        processed = padded = 0

        def compute_loss(self, model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            if model.training:
                ids = inputs["input_ids"]
                mask = inputs.get("attention_mask")
                self.processed += int(mask.sum().item()) if mask is not None else int(ids.numel())
                self.padded += int(ids.numel())
            return super().compute_loss(model, inputs, *args, **kwargs)

    marks: dict[int, tuple[float, int, int]] = {}

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.global_step in (warmup, warmup + steps):
                if cuda:
                    torch.cuda.synchronize()
                marks[state.global_step] = (time.perf_counter(), trainer.trained_tokens, trainer.processed)

    trainer = Counting(model=model, args=config, train_dataset=Dataset.from_list(rows),
                       processing_class=tokenizer, callbacks=[Clock()])
    trainer.remove_callback(PrinterCallback)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    (t0, trained0, processed0), (t1, trained1, processed1) = marks[warmup], marks[warmup + steps]
    seconds = t1 - t0
    out = {
        "seconds": seconds, "trained_tokens": trained1 - trained0, "processed_tokens": processed1 - processed0,
        "trained_tokens_per_s": (trained1 - trained0) / seconds,
        "processed_tokens_per_s": (processed1 - processed0) / seconds,
        "padding_share": 1 - trainer.processed / max(1, trainer.padded),
        "threads": torch.get_num_threads(), "optimizer": optimizer, "examples": len(rows), "dropped": dropped,
        "dtype": chosen["dtype"], "device": chosen["device"],
    }
    if cuda:
        out["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
        out["gpu"] = torch.cuda.get_device_name()
    else:
        out["peak_mem_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    return out


def run_child(spec: dict[str, Any], folder: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    if THREADS[0] and not (env and "EMTUI_TRAIN_THREADS" in env):
        env = {**(env or {}), "EMTUI_TRAIN_THREADS": str(THREADS[0])}
    path = folder / "spec.json"
    path.write_text(json.dumps(spec), encoding="utf-8")
    proc = subprocess.run([sys.executable, __file__, "--child", str(path)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})
    if proc.returncode:
        sys.exit(f"measurement failed ({spec['name']}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the recipes, alternating --------------------------------------------------------------------------


def recipes(max_seq_len: int | None) -> dict[str, dict[str, Any]]:
    import importlib.util

    extra = {"max_seq_len": max_seq_len} if max_seq_len else {}
    seed = resolve_recipe({"preset": SEED_PRESET}, extra)
    if importlib.util.find_spec("flash_attn"):  # FlashAttention where installed (varlen kernels, bf16)
        extra["attn_implementation"] = "flash_attention_2"
    project = resolve_recipe({"preset": PROJECT_PRESET}, extra)
    science = [k for k in seed if k not in (*LEVERS, "preset") and seed[k] != project[k]]
    if science or seed["batch_size"] * seed["grad_accum"] != project["batch_size"] * project["grad_accum"]:
        sys.exit(f"{PROJECT_PRESET} trains differently from {SEED_PRESET}: {science or 'effective batch'}")
    return {"seed": seed, "project": project}


def ladder(max_seq_len: int | None) -> dict[str, dict[str, Any]]:
    """The seed recipe, then each lever of the project's added one at a time (cumulative)."""
    both = recipes(max_seq_len)
    seed, project = both["seed"], both["project"]
    steps = {"seed": seed}
    keys: dict[str, Any] = {}
    for label, names in (("+ " + project["attn_implementation"], ("attn_implementation",)),
                         ("+ no checkpointing", ("gradient_checkpointing",)),
                         ("+ 16 x 1", ("batch_size", "grad_accum"))):
        keys.update({k: project[k] for k in names})
        steps[label] = {**seed, **keys}
    steps["+ padding-free"] = {**seed, **keys, "padding_free": True}  # the other way to less padding
    steps["project"] = project  # + grouped by length
    return steps


def median(results: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in results))


def compare(args: argparse.Namespace, folder: Path, model: Path, chats: list) -> dict[str, Any]:
    chosen = ladder(args.max_seq_len) if args.ladder else recipes(args.max_seq_len)
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in chosen}
    for i in range(args.repeats):
        for name, recipe in (chosen.items() if i % 2 == 0 else reversed(chosen.items())):
            spec = {"name": name, "recipe": recipe, "model": str(model), "chats": chats, "warmup": args.warmup,
                    "steps": args.steps, "output_dir": str(folder / f"out-{name}")}
            r = run_child(spec, folder)
            results[name].append(r)
            print(f"  run {i + 1} {name:20s} {r['trained_tokens_per_s']:9.1f} trained tok/s  "
                  f"{r['processed_tokens_per_s']:9.1f} processed tok/s  padding {r['padding_share']:5.1%}  "
                  f"peak {r['peak_mem_gib']:.2f} GiB  ({r['threads']} threads)", flush=True)
    n = matmul_params(model)
    figures: dict[str, dict[str, float]] = {}
    summary: dict[str, Any] = {"recipes": chosen, "runs": results, "matmul_params": n, "figures": figures}
    for name, rs in results.items():
        s = {k: median(rs, k) for k in ("trained_tokens_per_s", "processed_tokens_per_s", "padding_share",
                                       "peak_mem_gib")}
        if rs[0]["device"] == "cuda":
            s["mfu"] = s["processed_tokens_per_s"] * 6 * n / (args.peak_tflops * 1e12)
        figures[name] = s
    pairs = [p["trained_tokens_per_s"] / s["trained_tokens_per_s"]
             for p, s in zip(results["project"], results["seed"], strict=True)]
    summary["ratio_of_medians"] = figures["project"]["trained_tokens_per_s"] / figures["seed"]["trained_tokens_per_s"]
    summary["median_of_pair_ratios"] = float(statistics.median(pairs))
    return summary


def threads_study(args: argparse.Namespace, folder: Path, model: Path, chats: list) -> dict[str, Any]:
    """Training threads 1 vs 2, alone and beside one busy process (a core's worth of someone else's
    work), alternating; the project recipe."""
    recipe = recipes(args.max_seq_len)["project"]
    cells: dict[str, list[float]] = {}
    for i in range(args.repeats):
        for threads in (1, 2):
            for busy in (False, True):
                spec = {"name": f"threads{threads}", "recipe": recipe, "model": str(model), "chats": chats,
                        "warmup": 1, "steps": args.threads_steps, "output_dir": str(folder / "out-threads")}
                hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
                try:
                    r = run_child(spec, folder, env={"EMTUI_TRAIN_THREADS": str(threads)})
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
                key = f"{threads} thread{'s' * (threads > 1)}, {'beside a busy process' if busy else 'alone'}"
                cells.setdefault(key, []).append(r["trained_tokens_per_s"])
                print(f"  run {i + 1} {key:38s} {r['trained_tokens_per_s']:9.1f} trained tok/s  "
                      f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    return {k: {"median": statistics.median(v), "runs": v} for k, v in cells.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", help="a model's config.json: random weights of that shape (default: the tiny model)")
    ap.add_argument("--tiny-shape", default="256,4,8", help="hidden,layers,heads of the tiny model")
    ap.add_argument("--data", help="a chat JSONL file (default: synthetic chats)")
    ap.add_argument("--examples", type=int, default=256, help="synthetic chats")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=2, help="optimizer steps before the clock starts")
    ap.add_argument("--steps", type=int, default=10, help="optimizer steps timed")
    ap.add_argument("--max-seq-len", type=int, help="override both recipes' max length (default: the preset's)")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for the recipe comparison (default: what a run chooses, choose_threads)")
    ap.add_argument("--threads-steps", type=int, default=5, help="optimizer steps timed in --threads-study")
    ap.add_argument("--peak-tflops", type=float, default=H200_BF16_TFLOPS)
    ap.add_argument("--threads-study", action="store_true",
                    help="instead: the project recipe with 1 vs 2 threads, alone and beside a busy process")
    ap.add_argument("--ladder", action="store_true",
                    help="measure each lever: the seed recipe, then the project's levers added one at a time")
    ap.add_argument("--quick", action="store_true", help="1 repeat, 1 + 1 steps, 40 chats: the plumbing only")
    ap.add_argument("--out", help="write the figures here as JSON")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(json.loads(Path(args.child).read_text(encoding="utf-8")))))
        return
    if args.quick:
        args.repeats, args.warmup, args.steps, args.examples, args.max_seq_len = 1, 1, 1, 40, 128
    THREADS[0] = args.threads
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="train_throughput-") as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        shape = tuple(int(v) for v in args.tiny_shape.split(","))
        model = build_model(folder / "model", args.config, shape, device)  # type: ignore[arg-type]
        chats = load_chats(args.data, args.examples)
        print(f"model: {args.config or f'tiny {args.tiny_shape} (hidden,layers,heads)'} "
              f"({matmul_params(model) / 1e6:.1f} M matmul parameters), built in {time.perf_counter() - t0:.0f} s; "
              f"data: {args.data or f'{len(chats)} synthetic chats'}; device: {device}")
        if device == "cpu":
            print("on a CPU QLoRA runs as the engine runs it there: NF4 weights, float32 compute, adamw_torch "
                  "(no paged 8-bit AdamW); no MFU")
        result: dict[str, Any] = {"device": device, "model": args.config or f"tiny {args.tiny_shape}",
                                  "data": args.data or f"synthetic x{len(chats)}", "warmup": args.warmup,
                                  "steps": args.steps, "repeats": args.repeats,
                                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        if args.threads_study:
            result["threads"] = threads_study(args, folder, model, chats)
            for key, cell in result["threads"].items():
                print(f"{key:38s} median {cell['median']:9.1f} trained tok/s")
        else:
            result.update(compare(args, folder, model, chats))
            for name, s in result["figures"].items():
                mfu = f"  MFU {s['mfu']:.1%}" if "mfu" in s else ""
                print(f"{name:20s} median {s['trained_tokens_per_s']:9.1f} trained tok/s  "
                      f"{s['processed_tokens_per_s']:9.1f} processed tok/s  padding {s['padding_share']:5.1%}  "
                      f"peak {s['peak_mem_gib']:.2f} GiB{mfu}")
            print(f"project / seed: {result['ratio_of_medians']:.2f}x (ratio of medians), "
                  f"{result['median_of_pair_ratios']:.2f}x (median of the runs' pairs); target >= 1.5x on a GPU")
        result["seconds"] = time.perf_counter() - t0
        print(f"total {result['seconds']:.0f} s")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
