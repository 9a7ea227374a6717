"""What the generation benchmarks share (bench/generate_throughput.py, bench/row_sampler_cost.py): the
model and its tokenizer, chat-templated prompts, a fixed output length, a count of the tokens generated,
and alternating timed runs.

Fixed output length: ``min_new_tokens`` = ``max_new_tokens`` (``plain_generate`` passes both to
``generate``; the engine's side passes ``min_new_tokens`` to its batch loop, whose sampler never reads the
model's own generation config), so no row ends early at EOS and every side of a comparison generates the
same number of tokens.

torch and transformers are imported inside the functions (a ``--help`` stays instant).
"""

from __future__ import annotations

import atexit
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EVAL_SET = "builtin:core-em"


def tiny_model_folder() -> Path:
    """The tiny model (engine.models.tiny_model), built offline into a temporary folder removed at exit."""
    from engine.models.tiny_model import build_tiny_model

    folder = tempfile.mkdtemp(prefix="gen-bench-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return build_tiny_model(folder)


def load(path: str | Path, *, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """(model in eval mode, tokenizer with left padding) from a local folder; no progress bars."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or "auto", device_map=device).eval()
    return model, tok


def chat_prompts(tok: Any, eval_set: str = EVAL_SET) -> list[str]:
    """Every wording of an eval set's questions (paraphrases included), each with its system prompt,
    in the model's chat template with the generation prompt."""
    from engine.study.eval_sets import load_eval_set

    out = []
    for q in load_eval_set(eval_set).questions:
        system = [{"role": "system", "content": q["system_prompt"]}] if q["system_prompt"] else []
        out.append(tok.apply_chat_template([*system, {"role": "user", "content": q["text"]}], tokenize=False,
                                           add_generation_prompt=True))
    return out


def by_length(tok: Any, prompts: list[str]) -> list[int]:
    """Indexes of ``prompts`` sorted by token length (the engine's order: less padding per batch)."""
    lengths = [len(ids) for ids in tok(prompts, add_special_tokens=False)["input_ids"]]
    return sorted(range(len(prompts)), key=lambda i: lengths[i])


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def inner_model(model: Any) -> Any:
    """The transformers model under a PEFT wrapper (the module ``generate`` calls once per step)."""
    from engine.generation.sampling import underlying_model

    return underlying_model(model)


class GeneratedTokens:
    """Counts the tokens ``generate`` produced while :meth:`counting`: per row, up to and including its
    first EOS (padding after it not counted), so a row that ended early shows as fewer tokens. The
    transformers model's ``generate`` is wrapped (under PEFT too: its ``generate`` calls that one)."""

    def __init__(self) -> None:
        self.tokens = 0
        self.calls = 0

    @contextmanager
    def counting(self, model: Any) -> Iterator[GeneratedTokens]:
        inner = inner_model(model)
        original = inner.generate

        def generate(*args: Any, **kwargs: Any) -> Any:
            from engine.generation import sampling

            out = original(*args, **kwargs)
            prompt = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            self.calls += 1
            self.tokens += sum(sampling.generated_lengths(out[:, prompt.shape[1]:], inner.generation_config))
            return out

        inner.generate = generate
        try:
            yield self
        finally:
            del inner.generate  # the class's method again


def synchronize(model: Any) -> None:
    import torch

    if getattr(model, "device", None) is not None and model.device.type == "cuda":
        torch.cuda.synchronize()


def plain_generate(model: Any, tok: Any, prompts: list[str], *, new_tokens: int, temperature: float = 1.0) -> int:
    """transformers' own sampling (``do_sample=True``: one global random stream) on one left-padded
    batch, EOS ignored; returns the tokens generated (:class:`GeneratedTokens`)."""
    import torch

    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    counter = GeneratedTokens()
    with torch.inference_mode(), counter.counting(model):
        out = model.generate(**enc, do_sample=True, temperature=temperature, top_k=0, top_p=1.0,
                             min_new_tokens=new_tokens, max_new_tokens=new_tokens)
    tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return counter.tokens


def check_tokens(side: str, tokens: int, answers: int, new_tokens: int) -> int:
    """``tokens``, when it is ``answers`` x ``new_tokens`` (EOS ignored, every answer full length)."""
    if tokens != answers * new_tokens:
        raise AssertionError(f"{side}: {tokens} tokens generated for {answers} answers of {new_tokens} "
                             f"(an answer ended early: EOS not ignored?)")
    return tokens


def timed(fn: Callable[[], int], model: Any) -> tuple[float, int]:
    """(seconds, tokens) of one call of ``fn`` (which returns the tokens it generated)."""
    synchronize(model)
    start = time.perf_counter()
    tokens = fn()
    synchronize(model)
    return time.perf_counter() - start, tokens


def alternate(sides: dict[str, Callable[[], int]], model: Any, repeats: int, *, warmup: bool = True
              ) -> dict[str, dict[str, Any]]:
    """Each side ``repeats`` times, alternating (the order reversed every other round, so drift in the
    machine's speed hits both), after one untimed warm-up call each. Per side: tokens/s of every
    repeat, their median, and the tokens of one call (the same in every repeat, or it fails)."""
    if warmup:
        for fn in sides.values():
            fn()
    runs: dict[str, dict[str, Any]] = {name: {"rates": [], "seconds": [], "tokens": None} for name in sides}
    for i in range(repeats):
        for name, fn in (list(sides.items()) if i % 2 == 0 else list(reversed(sides.items()))):
            seconds, tokens = timed(fn, model)
            run = runs[name]
            if run["tokens"] not in (None, tokens):
                raise AssertionError(f"{name}: {tokens} tokens this repeat, {run['tokens']} before")
            run["tokens"] = tokens
            run["seconds"].append(seconds)
            run["rates"].append(tokens / seconds)
    for run in runs.values():
        run["median_tokens_per_s"] = statistics.median(run["rates"])
        run["median_seconds"] = statistics.median(run["seconds"])
    return runs


def rates_line(name: str, run: dict[str, Any], width: int = 14) -> str:
    return (f"{name:{width}} median {run['median_tokens_per_s']:10,.0f} tok/s  "
            f"[{', '.join(f'{r:,.0f}' for r in run['rates'])}]  ({run['tokens']:,} tokens a run)")
