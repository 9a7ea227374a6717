"""A generation run: plan the missing answers, answer them model by model (each base loaded once), write
each batch as it is done. Killed at any point, the next attempt plans again and writes exactly what is
missing (the store's unique key on an answer's identity makes a repeated row impossible)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from engine.generation.plan import Item, Target, items, missing, targets
from engine.generation.prompts import render
from engine.generation.settings import hashed_settings, settings_hash
from engine.generation.spec import GenerationResult, GenerationSpec
from engine.runs.progress import JobCancelled, Progress

OPENAI_CHUNKS = 4   # an endpoint call sends this many times the concurrency; rows are written between calls


class _Writer:
    """Rows into the store, batch by batch; counts what it wrote and how fast."""

    def __init__(self, store: Any, spec: GenerationSpec, progress: Progress, job_id: int | None) -> None:
        self.store, self.spec, self.progress, self.job_id = store, spec, progress, job_id
        self.digest = settings_hash(spec.settings)
        self.hashed = hashed_settings(spec.settings)
        self.written = self.tokens = 0
        self.answering_s = 0.0               # time spent answering: loads left out of tokens/s
        self.since: float | None = None

    def resume(self) -> None:
        """Answering (again): a model is loaded."""
        self.since = time.monotonic()

    def pause(self) -> None:
        """Not answering (a model is being loaded)."""
        if self.since is not None:
            self.answering_s += time.monotonic() - self.since
            self.since = None

    def elapsed(self) -> float:
        return self.answering_s + (time.monotonic() - self.since if self.since is not None else 0.0)

    def write(self, batch: Sequence[Item], prompts: Sequence[str], answers: Sequence[tuple[str, int | None]],
              engine_info: dict[str, Any]) -> None:
        settings = {**self.hashed, "engine": engine_info}
        rows = [{"question_id": it.question_id, "condition_id": it.target.condition_id,
                 "model_id": it.target.model_id, "checkpoint_id": it.target.checkpoint_id, "settings": settings,
                 "settings_hash": self.digest, "seed": it.seed, "sample_index": it.sample_index,
                 "variant": it.variant, "prompt": prompt, "response": text, "n_tokens": n,
                 "study_hash": self.spec.study_hash, "job_id": self.job_id}
                for it, prompt, (text, n) in zip(batch, prompts, answers, strict=True)]
        self.store.insert_generations(rows, return_ids=False)
        self.written += len(rows)
        self.tokens += sum(n or 0 for _, n in answers)
        elapsed = max(1e-6, self.elapsed())
        self.progress.advance(len(rows))
        self.progress.metrics({"tokens_per_s": round(self.tokens / elapsed, 1), "tokens": self.tokens,
                               "answers": self.written, **{k: v for k, v in engine_info.items()
                                                           if k in ("batch_size", "model")}})


def _groups(todo: Sequence[Item]) -> list[tuple[str, list[Item]]]:
    """Items grouped by the weights that must be in memory: a base (for itself and its adapters) or a
    full model. Order kept within a group."""
    def load_key(it: Item) -> str:
        t = it.target
        return f"model:{t.base_model_id if t.kind == 'adapter' else t.model_id}"

    keyed: dict[str, list[Item]] = {}
    for it in todo:
        keyed.setdefault(load_key(it), []).append(it)
    return [(key, group) for key, group in keyed.items()]


def _base_location(store: Any, key: str, db_path: Any) -> str:
    from engine.models.locate import model_location

    model = store.get_model(int(key.split(":", 1)[1]))
    return model_location(model, db_path)


def _by_target(group: Sequence[Item]) -> list[tuple[Target, list[Item]]]:
    # base first (it needs no adapter), then each adapter in turn
    ordered = sorted(group, key=lambda it: (it.target.kind == "adapter", it.target.model_id,
                                            it.target.checkpoint_id or 0))
    return [(t, list(g)) for t, g in groupby(ordered, key=lambda it: it.target)]


def generate(spec: GenerationSpec, *, store: Any, db_path: Any, progress: Progress | None = None,
             job_id: int | None = None) -> GenerationResult:
    """Write every missing answer of ``spec``."""
    progress = progress or Progress()
    started = time.monotonic()
    progress.note("planning")
    run_targets = targets(store, spec.as_payload(), db_path=db_path)
    everything = items(store, spec.as_payload(), spec.settings, run_targets)
    todo = missing(store, everything, spec.settings)
    progress.set_total(len(todo))
    writer = _Writer(store, spec, progress, job_id)
    loads, batch = 0, None
    for key, group in _groups(todo):
        if progress.cancelled():
            raise JobCancelled("cancelled")
        location = _base_location(store, key, db_path)
        if spec.backend == "openai":
            _answer_by_endpoint(spec, location, group, writer, progress)
        else:
            loads += 1
            batch = _answer_locally(spec, location, group, writer, progress)
    if progress.cancelled():
        raise JobCancelled("cancelled")
    return GenerationResult(written=writer.written, existing=len(everything) - len(todo), tokens=writer.tokens,
                            models=len(run_targets), base_loads=loads, seconds=round(time.monotonic() - started, 3),
                            batch_size=batch, tokens_per_s=round(writer.tokens / writer.elapsed(), 1)
                            if writer.written and writer.elapsed() > 0 else None)


def _answer_locally(spec: GenerationSpec, location: str, group: list[Item], writer: _Writer,
                    progress: Progress) -> int:
    from engine.generation.hf_backend import Row, answer_in_batches, auto_batch_size, load_base

    progress.note(f"loading {location}")
    writer.pause()
    loaded = load_base(location, quantization=spec.quantization)
    writer.resume()
    size = None
    rendered: dict[tuple[tuple[str, str], ...], str] = {}  # samples and models share their prompts
    for target, its in _by_target(group):
        prompts = [rendered.get(it.chat) or rendered.setdefault(it.chat, render(loaded.tokenizer, it.chat_messages()))
                   for it in its]
        rows = [Row(p, it.seed, it) for p, it in zip(prompts, its, strict=True)]
        with loaded.active(target.location if target.kind == "adapter" else None, f"m{target.model_id}") as model:
            if spec.settings.get("batch_size"):
                size = int(spec.settings["batch_size"])
            elif size is None:
                longest = max(len(loaded.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts)
                size = auto_batch_size(model, longest_prompt=longest,
                                       max_new_tokens=int(spec.settings["max_new_tokens"]), device=loaded.device)
            info = {"backend": "transformers", "batch_size": size, "model": target.name, **loaded.chosen}
            progress.note(f"{target.name}: {len(its)} answers, batch {size}")

            def on_batch(batch: list[Row], answers: list[tuple[str, int]], info: dict[str, Any] = info) -> None:
                writer.write([r.ref for r in batch], [r.prompt for r in batch], answers, info)

            def on_resize(n: int, info: dict[str, Any] = info) -> None:
                info["batch_size"] = n
                progress.note(f"out of GPU memory: batch size halved to {n}")

            size = answer_in_batches(model, loaded.tokenizer, rows, dict(spec.settings), batch_size=size,
                                     on_batch=on_batch, should_stop=progress.cancelled, on_resize=on_resize)
        if progress.cancelled():
            break
    return int(size or 0)


def _default_served_name(target: Target) -> str:
    """The name a server serves a model under unless told: the base by what ``vllm serve`` was given (its
    source: a hub id or a folder), an adapter by its name in the store (``--lora-modules NAME=path``)."""
    if target.kind == "adapter":
        return target.name
    return target.location if target.kind == "base" else target.name


def _answer_by_endpoint(spec: GenerationSpec, location: str, group: list[Item], writer: _Writer,
                        progress: Progress) -> None:
    from transformers import AutoTokenizer

    from engine.generation.openai_backend import complete

    assert spec.base_url is not None
    writer.resume()
    tokenizer = AutoTokenizer.from_pretrained(location)
    rendered: dict[tuple[tuple[str, str], ...], str] = {}
    for target, its in _by_target(group):
        served = spec.served_names.get(str(target.model_id)) or _default_served_name(target)
        info = {"backend": "openai", "base_url": spec.base_url, "served_model": served, "model": target.name}
        progress.note(f"{target.name}: {len(its)} answers from {spec.base_url} as {served!r}")
        step = max(1, spec.concurrency * OPENAI_CHUNKS)
        for start in range(0, len(its), step):
            if progress.cancelled():
                return
            chunk = its[start:start + step]
            prompts = [rendered.get(it.chat) or rendered.setdefault(it.chat, render(tokenizer, it.chat_messages()))
                       for it in chunk]
            done = complete(spec.base_url, served, prompts, [it.seed for it in chunk],
                            temperature=float(spec.settings["temperature"]), top_p=float(spec.settings["top_p"]),
                            top_k=int(spec.settings["top_k"] or 0),
                            max_new_tokens=int(spec.settings["max_new_tokens"]),
                            repetition_penalty=float(spec.settings.get("repetition_penalty") or 1.0),
                            concurrency=spec.concurrency, cancelled=progress.cancelled)
            writer.write(chunk, prompts, [(c.text, c.n_tokens) for c in done], info)
