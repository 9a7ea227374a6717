"""The transformers backend: a base model loaded once for every model that shares it, adapters switched
with PEFT's API, prompts answered in batches.

- **One load, many models.** The base is loaded once; each LoRA adapter (a fine-tune, or one checkpoint of
  its run) is attached by name (``PeftModel.from_pretrained(base, path, adapter_name=...)``, then
  ``load_adapter``), made active with ``set_adapter``, and deleted when its answers are written (a run
  over 50 checkpoints holds one adapter at a time). The base answers under ``disable_adapter()``, which
  gives exactly its own logits. A full fine-tune is a model of its own, loaded alone.
- **Batches.** Prompts longest first (an out-of-memory shows on the first batch, not hours in), left
  padding, each output row sampled from its own seed (:mod:`engine.generation.sampling`), so batching
  never changes an answer. The batch size: the run's ``batch_size`` when set, else chosen from free GPU
  memory (the KV cache a row needs at full length); a CUDA out-of-memory halves it and retries the same
  prompts instead of failing.

torch, transformers and peft are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.generation.sampling import sample_counted

CPU_BATCH = 32                 # CPU: measured flat past ~16-32 rows on the tiny model (bench/generate_throughput.py)
MAX_AUTO_BATCH = 256
MEMORY_SHARE = 0.85            # of the free GPU memory the rows may take (fragmentation, the allocator's slack)
OOM_ABOVE_ENV = "EMTUI_GENERATE_OOM_ABOVE"  # a test hook: batches over N rows raise CUDA's out-of-memory


class GenerationError(RuntimeError):
    """A model that cannot answer (one line)."""


@dataclass
class Loaded:
    """A base model in memory with the adapters attached to it now."""

    location: str
    model: Any
    tokenizer: Any
    device: str
    chosen: dict[str, Any]                     # dtype, device, quantization: stored with each answer
    adapters: set[str] = field(default_factory=set)
    loads: int = 1

    @contextlib.contextmanager
    def active(self, adapter_path: str | None, name: str) -> Iterator[Any]:
        """The model answering as the base (``adapter_path`` None) or as the adapter at ``adapter_path``."""
        if adapter_path is None:
            if self.adapters:
                with self.model.disable_adapter():
                    yield self.model
            else:
                yield self.model
            return
        import warnings

        from peft import PeftModel

        # peft asks transformers a deprecated question when it attaches an adapter: nothing about this run
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing. is deprecated", category=FutureWarning)
        if not self.adapters:
            self.model = PeftModel.from_pretrained(self.model, adapter_path, adapter_name=name)
        else:
            self.model.load_adapter(adapter_path, adapter_name=name)
        self.adapters.add(name)
        self.model.set_adapter(name)
        self.model.eval()
        try:
            yield self.model
        finally:
            # keep one adapter attached (a PeftModel needs one); drop the rest as soon as they are done
            if len(self.adapters) > 1:
                keep = next(a for a in sorted(self.adapters) if a != name)
                self.model.set_adapter(keep)
                self.model.delete_adapter(name)
                self.adapters.discard(name)


def pick_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_base(location: str, *, quantization: str | None = None, device: str | None = None) -> Loaded:
    """A base model (or a full fine-tune) for generation: bf16 on a GPU that has it, float32 on a CPU;
    ``quantization="nf4"`` loads it in 4 bits (bitsandbytes)."""
    import logging

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a job's log / a command's stderr: no per-shard "Loading weights" bars
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # its optional CPU kernels: not this run's concern
    device = device or pick_device()
    cuda = device == "cuda"
    if not cuda:
        from engine.training.trainer import choose_threads

        torch.set_num_threads(choose_threads(1))
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    chosen: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "device": device}
    if quantization == "nf4":
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype)
        chosen["quantization"] = "nf4+double-quant"
    elif quantization is not None:
        raise GenerationError(f"unknown quantization {quantization!r} (nf4, or none)")
    if cuda:
        kwargs["device_map"] = {"": 0}
    try:
        tokenizer = AutoTokenizer.from_pretrained(location)
        model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise GenerationError(f"cannot load model {location}: {first}") from None
    if not cuda and quantization is None:
        model.to(device)
    model.eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return Loaded(location=location, model=model, tokenizer=tokenizer, device=device, chosen=chosen)


def kv_bytes_per_token(config: Any, dtype_bytes: int = 2) -> int:
    """Bytes of KV cache one token takes over all layers (keys and values)."""
    text = getattr(config, "text_config", None) or config
    layers = int(getattr(text, "num_hidden_layers", 1) or 1)
    heads = int(getattr(text, "num_attention_heads", 1) or 1)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(text, "head_dim", None) or int(getattr(text, "hidden_size", 64)) // heads)
    return 2 * layers * kv_heads * head_dim * dtype_bytes


def row_bytes(model: Any, *, prompt_tokens: int, max_new_tokens: int) -> int:
    """GPU memory one answer takes at its longest: its KV cache (prompt + new tokens), the prefill's largest
    activations of a layer (prompt x (2 x intermediate + 4 x hidden)), and five float32 copies of the
    logits (generate's, the sampler's softmax, cumulative sum, filtered copy and one-hot)."""
    config = getattr(model.config, "text_config", None) or model.config
    element = next(model.parameters()).element_size()
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    intermediate = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
    vocab = int(getattr(config, "vocab_size", 32_000) or 32_000)
    return (kv_bytes_per_token(model.config, element) * (prompt_tokens + max_new_tokens)
            + prompt_tokens * (2 * intermediate + 4 * hidden) * element + 5 * vocab * 4)


def auto_batch_size(model: Any, *, longest_prompt: int, max_new_tokens: int, device: str,
                    free_bytes: int | None = None) -> int:
    """Rows per batch from free GPU memory (:func:`row_bytes` each, in ``MEMORY_SHARE`` of what is free;
    an out-of-memory later halves it); ``CPU_BATCH`` on a CPU."""
    if device != "cuda":
        return CPU_BATCH
    import torch

    if free_bytes is None:
        free_bytes = int(torch.cuda.mem_get_info()[0])
    per_row = row_bytes(model, prompt_tokens=longest_prompt, max_new_tokens=max_new_tokens)
    return max(1, min(MAX_AUTO_BATCH, int(free_bytes * MEMORY_SHARE) // max(1, per_row)))


def _is_oom(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


def _oom_hook(rows: int) -> None:
    """``$EMTUI_GENERATE_OOM_ABOVE=N``: a batch over N rows fails as a GPU out of memory would (tests of the
    halving run on CPUs)."""
    limit = os.environ.get(OOM_ABOVE_ENV, "").strip()
    if limit.isdigit() and rows > int(limit):
        import torch

        raise torch.cuda.OutOfMemoryError(f"{OOM_ABOVE_ENV}={limit}: {rows} rows")


@dataclass(frozen=True)
class Row:
    """One answer to make: its templated prompt and seed (and anything the caller wants back)."""

    prompt: str
    seed: int
    ref: Any = None


def answer_in_batches(model: Any, tokenizer: Any, rows: Sequence[Row], settings: dict[str, Any], *,
                      batch_size: int, on_batch: Callable[[list[Row], list[tuple[str, int]]], None],
                      should_stop: Callable[[], bool] = lambda: False,
                      on_resize: Callable[[int], None] = lambda n: None, min_new_tokens: int | None = None) -> int:
    """Answer ``rows`` longest prompt first, ``batch_size`` at a time (halved on out-of-memory), calling
    ``on_batch(rows, [(text, n_tokens)])`` after each batch. Returns the batch size it ended with.
    ``min_new_tokens``: a fixed answer length (EOS ignored until then), for benchmarks."""
    lengths = [len(ids) for ids in tokenizer([r.prompt for r in rows], add_special_tokens=False)["input_ids"]] \
        if rows else []
    order = sorted(range(len(rows)), key=lambda i: -lengths[i])
    queue = [rows[i] for i in order]
    start = 0
    size = max(1, int(batch_size))
    while start < len(queue):
        if should_stop():
            break
        batch = queue[start:start + size]
        try:
            _oom_hook(len(batch))
            answers = sample_counted(model, tokenizer, [r.prompt for r in batch], [r.seed for r in batch],
                                     temperature=float(settings["temperature"]), top_p=float(settings["top_p"]),
                                     top_k=int(settings["top_k"] or 0),
                                     max_new_tokens=int(settings["max_new_tokens"]),
                                     repetition_penalty=float(settings.get("repetition_penalty") or 1.0),
                                     min_new_tokens=min_new_tokens)
        except Exception as exc:
            if not _is_oom(exc) or size == 1:
                raise
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            size = max(1, size // 2)
            on_resize(size)
            continue
        on_batch(batch, answers)
        start += len(batch)
    return size
