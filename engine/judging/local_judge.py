"""A judge that is a causal LM on this machine (transformers): no API, no price, the same contract.

The model is loaded once, on the first call (bf16 on a GPU that has it, float32 on a CPU:
:func:`engine.generation.hf_backend.load_base`), and one call generates at a time: a lock covers the load
and each generation, so the panel's threads may call it at once. A call applies the model's chat template
to the system and user messages (:func:`engine.generation.prompts.render`, as generation does), then
generates greedily up to ``max_tokens`` (sampled at the call's temperature when it is above 0) and, when
``top_logprobs > 0``, returns the first generated token's top-N log-probabilities taken from the model's
raw next-token distribution (log-softmax of its logits), which is what the EM paper's scoring reads.

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
        top = _top_logprobs(tokenizer, out.logits[0][0], call.top_logprobs) if call.top_logprobs > 0 and new \
            else None
        return Reply(text=tokenizer.decode(new, skip_special_tokens=True), input_tokens=n_prompt,
                     output_tokens=len(new), top_logprobs=top, stop_reason=stop,
                     extra=dict(loaded.chosen))


def local_judge_params(store: Any, model: str, params: dict[str, Any]) -> dict[str, Any]:
    """What :func:`engine.judging.backends.make_backend` needs to make a local judge of a ``judges`` row: its
    model's folder (``tiny`` is built next to the database) and its adapter's, or the reason it has none."""
    from engine.models.locate import adapter_location, model_location

    out: dict[str, Any] = {"model_dir": model_location({"source": model}, store.path)}
    if params.get("adapter"):
        out["adapter_dir"], out["problem"] = adapter_location(store, str(params["adapter"]))
    return out


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
