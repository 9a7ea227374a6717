"""A judge that is a causal LM on this machine (transformers): no API, no price, the same contract.

The model is loaded once, on the first call (bf16 on a GPU that has it, float32 on a CPU:
:func:`engine.generation.hf_backend.load_base`), and one call generates at a time: a lock covers the load
and each generation, so the panel's threads may call it at once. A call applies the model's chat template
to the system and user messages (:func:`engine.generation.prompts.render`, as generation does), then
generates greedily up to ``max_tokens`` (sampled at the call's temperature when it is above 0) and, when
``top_logprobs > 0``, returns the first generated token's top-N log-probabilities taken from the model's
raw next-token distribution (log-softmax of its logits), which is what the EM paper's scoring reads.

Numbers written digit by digit: when the call carries a ``number_scale`` and the judge's tokenizer cannot
write every number of it as one token (decided from the tokenizer once per scale and load:
:func:`engine.judging.number_tree.numbers_one_token`; Qwen2.5's and the tiny model's split digits), the
first token cannot say 75, so the reply also carries ``number_logprobs``: P(n) for every n of the scale,
walked exactly through the digit tree on top of the prompt's KV cache (engine/judging/number_tree.py).
The first time per load the model is checked to honour the walk's tree attention mask; one that does not
fails every such call with one line, never a wrong number. A tokenizer that writes every number as one
token keeps the paper's first-token path, unchanged.

Failures: a model that cannot be loaded is ``CallFailed(retryable=False, sent=False)``, the same line on
every later call without loading again; waiting for the lock longer than the call's ``timeout_s``, or a
generation that runs past what is left of it, is ``CallFailed(retryable=True)``; running out of GPU memory
is retryable, any other error of the model is not. Never :class:`Throttled`.

A judge with an ``adapter`` (a LoRA folder) answers as base+adapter (peft); the folder is in each reply's
``extra``. ``model`` in :meth:`LocalJudgeBackend.call` is the name the panel gives the judge: one backend serves the
one model it was made with, whatever the name. torch and transformers are imported inside the functions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.common.text import one_line
from engine.judging.backend import Call, CallFailed, Reply
from engine.judging.logprob import log_add

__all__ = ["LocalJudgeBackend"]

# transformers' from_pretrained is not safe in two threads at once (its meta-device init is process-wide):
# two local judges of one panel load one after the other
_LOAD_LOCK = threading.Lock()


class LocalJudgeBackend:
    """One causal LM (a folder, or a model id in the local Hugging Face cache) as a judge."""

    provider = "local"

    def __init__(self, model_dir: str | Path, *, device: str | None = None, adapter: str | Path | None = None,
                 problem: str | None = None) -> None:
        self.model_dir = str(model_dir)
        self.device = device
        self.adapter = str(adapter) if adapter else None
        self._lock = threading.Lock()
        self._loaded: Any = None
        self._one_token: dict[tuple[int, int], bool] = {}   # scale -> every number one token (per load)
        self._digits: Any = None        # the tokenizer's DigitVocab, found on the first walk
        self._tree_problem: str | None = None
        # a judge that cannot be made (its adapter is not trained yet): every call fails with this line
        self._load_error: str | None = f"local judge: {problem}" if problem else None

    def call(self, model: str, call: Call, *, timeout_s: float) -> Reply:
        deadline = time.monotonic() + timeout_s
        if not self._lock.acquire(timeout=max(timeout_s, 0.0)):
            raise CallFailed(f"local judge {self.model_dir}: busy for all of the call's {timeout_s:g} s",
                             retryable=True, sent=False)
        try:
            loaded = self._load()
            left = deadline - time.monotonic()
            if left <= 0:
                raise CallFailed(f"local judge {self.model_dir}: no time left after loading the model "
                                 f"(the call's {timeout_s:g} s)", retryable=True, sent=False)
            return self._generate(loaded, call, left, timeout_s)
        finally:
            self._lock.release()

    # -- under the lock ----------------------------------------------------------------------------

    def _load(self) -> Any:
        if self._loaded is not None:
            return self._loaded
        if self._load_error is not None:
            raise CallFailed(self._load_error, retryable=False, sent=False)
        from engine.generation.hf_backend import GenerationError, load_base

        try:
            with _LOAD_LOCK:
                loaded = load_base(self.model_dir, device=self.device)
                if self.adapter:
                    from peft import PeftModel

                    loaded.model = PeftModel.from_pretrained(loaded.model, self.adapter).eval()
                    loaded.chosen["adapter"] = self.adapter
            self._loaded = loaded
        except (GenerationError, OSError, ValueError, RuntimeError) as exc:
            self._load_error = f"local judge: {one_line(str(exc), 300) or type(exc).__name__}"
            raise CallFailed(self._load_error, retryable=False, sent=False) from None
        return self._loaded

    def _generate(self, loaded: Any, call: Call, left_s: float, timeout_s: float) -> Reply:
        import torch

        from engine.generation.prompts import messages, render

        tokenizer, model = loaded.tokenizer, loaded.model
        text = render(tokenizer, messages(call.prompt, call.system))
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(loaded.device)
        n_prompt = int(inputs["input_ids"].shape[1])
        sampled = call.temperature > 0
        settings: dict[str, Any] = (
            {"do_sample": True, "temperature": call.temperature, "top_p": 1.0, "top_k": 0} if sampled
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None})
        try:
            with torch.no_grad():
                out = model.generate(**inputs, **settings, max_new_tokens=call.max_tokens, max_time=left_s,
                                     output_logits=True, return_dict_in_generate=True,
                                     pad_token_id=tokenizer.pad_token_id)
        except torch.OutOfMemoryError:
            raise CallFailed(f"local judge {self.model_dir}: out of GPU memory", retryable=True) from None
        except (RuntimeError, ValueError) as exc:
            raise CallFailed(f"local judge {self.model_dir}: {one_line(str(exc), 300)}", retryable=False) from None
        new = [int(t) for t in out.sequences[0, n_prompt:]]
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if new and new[-1] in eos_ids:
            stop = "stop"
        elif len(new) >= call.max_tokens:
            stop = "length"
        else:  # generate's max_time ran out: a cut reply is not the judge's answer
            raise CallFailed(f"local judge {self.model_dir}: no reply within the call's {timeout_s:g} s",
                             retryable=True)
        wants = call.top_logprobs > 0 and bool(new)
        top = _top_logprobs(tokenizer, out.logits[0][0], call.top_logprobs) if wants else None
        one_token, numbers = None, None
        if wants and call.number_scale is not None:
            low, high = call.number_scale
            if (low, high) not in self._one_token:
                from engine.judging.number_tree import numbers_one_token

                self._one_token[(low, high)] = numbers_one_token(tokenizer, low, high)
            one_token = self._one_token[(low, high)]
            if not one_token:
                numbers = self._walk(loaded, out, inputs, n_prompt, (low, high))
        return Reply(text=tokenizer.decode(new, skip_special_tokens=True), input_tokens=n_prompt,
                     output_tokens=len(new), top_logprobs=top, stop_reason=stop,
                     extra=dict(loaded.chosen), number_logprobs=numbers, numbers_one_token=one_token)

    def _walk(self, loaded: Any, out: Any, inputs: Any, n_prompt: int, scale: tuple[int, int]) -> dict[int, float]:
        """P(n) for every n of the scale, through the digit tree (engine/judging/number_tree.py)."""
        import torch

        from engine.judging import number_tree as tree

        model = loaded.model
        if self._tree_problem is not None:
            raise CallFailed(self._tree_problem, retryable=False)
        try:
            if self._digits is None:   # once per load: the digit tokens, and the model honours the tree mask
                digits = tree.DigitVocab.of(loaded.tokenizer, int(out.logits[0].shape[-1]))
                if len(digits.inner) < 2:
                    raise tree.TreeMaskIgnored("the tokenizer has no digit tokens to write a number with")
                tree.check_tree_mask(model, [int(t) for t in inputs["input_ids"][0, :8]] + sorted(digits.inner)[:2])
                self._digits = digits
            cache = tree.prompt_cache(model, out, inputs, n_prompt)
            return tree.number_logprobs(model, cache, out.logits[0][0], n_prompt, self._digits, *scale)
        except tree.TreeMaskIgnored as exc:
            self._tree_problem = f"local judge {self.model_dir}: {exc}"
            raise CallFailed(self._tree_problem, retryable=False) from None
        except torch.OutOfMemoryError:
            raise CallFailed(f"local judge {self.model_dir}: out of GPU memory", retryable=True) from None
        except (RuntimeError, ValueError) as exc:
            raise CallFailed(f"local judge {self.model_dir}: reading the numbers digit by digit: "
                             f"{one_line(str(exc), 300)}", retryable=False) from None


def local_judge_params(store: Any, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """What :func:`engine.judging.backends.make_backend` needs to make a local judge of a ``judges`` row: its
    model's folder (``tiny`` is built next to the database) and its adapter's, or the reason it has none."""
    from engine.models.locate import adapter_location, model_location

    out: dict[str, Any] = {"model_dir": model_location({"source": model}, store.path)}
    if params.get("adapter"):
        out["adapter_dir"], out["problem"] = adapter_location(store, str(params["adapter"]))
    return out


def split_numbers_warning(store: Any, judge: Mapping[str, Any], rubric: Any) -> str | None:
    """What a plan says of a local logprob judge whose tokenizer writes the rubric's numbers digit by digit
    (its scores take the digit-tree walk); None when it writes them whole, or when its tokenizer is not on
    this machine yet (the tiny model is built by the first job, not by a plan)."""
    from engine.judging.prompts import rubric_calls

    scales = sorted({rc.call.number_scale for rc in rubric_calls(rubric, question="", answer="", logprobs=True)
                     if rc.logprobs and rc.call.number_scale is not None})
    if not scales:
        return None
    from engine.models.locate import model_location, tiny_folder

    source = str(judge["model"])
    where = tiny_folder(store.path) if source == "tiny" else Path(model_location({"source": source}, store.path))
    if source == "tiny" and not (where / "tokenizer.json").exists():
        return None
    try:
        from transformers import AutoTokenizer

        from engine.judging.number_tree import numbers_one_token

        tokenizer = AutoTokenizer.from_pretrained(str(where))
        split = [f"{low}..{high}" for low, high in scales if not numbers_one_token(tokenizer, low, high)]
    except (OSError, ValueError, ImportError):
        return None
    if not split:
        return None
    return (f"judge {judge['name']!r} (local) writes numbers digit by digit: its {', '.join(split)} scores are "
            "read through the digit tree, P(n) for every n (3 more forward passes a call on 0..100), not from "
            "the first token alone")


def _top_logprobs(tokenizer: Any, logits: Any, n: int) -> dict[str, float]:
    """The ``n`` most probable next tokens as text -> natural-log probability; tokens that decode to the
    same text (partial UTF-8 bytes) add their probabilities."""
    import torch

    logprobs = torch.log_softmax(logits.float(), dim=-1)
    values, ids = torch.topk(logprobs, min(n, int(logprobs.shape[-1])))
    out: dict[str, float] = {}
    for lp, token_id in zip(values.tolist(), ids.tolist(), strict=True):
        token = tokenizer.decode([token_id])
        out[token] = log_add(out[token], lp) if token in out else float(lp)
    return out
