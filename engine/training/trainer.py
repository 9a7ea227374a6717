"""One fine-tuning run: TRL's ``SFTTrainer`` with PEFT (LoRA / QLoRA) or full weights, metrics into the
database at every logging step, checkpoints recorded, resume from the newest complete checkpoint.

:func:`train` takes a ``train_runs`` row (made by :mod:`engine.training.queueing`) and trains it.
Everything it needs is in the database (the resolved recipe, the seed, the dataset by content
hash, the base model), so a queued run can be retried, resumed or run by hand from a notebook::

    from db import open_store
    from engine.training.trainer import train
    train(open_store("emtui.db"), run_id=3)

It runs under ``torchrun`` unchanged (every rank trains; rank 0 alone writes to the database).
torch, transformers, peft, trl and bitsandbytes are imported inside the functions that use them.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runs.progress import Progress
from engine.training.recipes import recipe_hash

CHECKPOINT_PREFIX = "checkpoint-"
_8BIT_OPTIMIZERS = ("adamw_8bit", "paged_adamw_8bit", "adamw_bnb_8bit", "paged_adamw_32bit", "paged_lion_8bit",
                    "lion_8bit")


class TrainError(RuntimeError):
    """A run that cannot train (one line: what and why)."""


@dataclass(frozen=True)
class TrainResult:
    """What a run produced: its row, the model it registered, its checkpoints, how the loss was masked."""

    train_run_id: int
    model_id: int | None               # the adapter (or full model), registered with its provenance
    final_step: int
    status: str                        # done | cancelled
    checkpoints: tuple[str, ...] = ()  # checkpoint folders, oldest first
    masking: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)  # the last logged values

    def as_json(self) -> dict[str, Any]:
        return {"train_run_id": self.train_run_id, "model_id": self.model_id, "final_step": self.final_step,
                "status": self.status, "checkpoints": list(self.checkpoints), "masking": self.masking,
                "metrics": dict(self.metrics)}


# -- checkpoints --------------------------------------------------------------------------------------


def complete_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, folder) of each complete checkpoint, oldest first. Checkpoints are written in place, so
    one cut short by a kill has no ``trainer_state.json`` (written last): it is skipped."""
    out = []
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    for child in folder.iterdir():
        step = child.name.removeprefix(CHECKPOINT_PREFIX)
        if child.is_dir() and child.name.startswith(CHECKPOINT_PREFIX) and step.isdigit() \
                and (child / "trainer_state.json").is_file():
            out.append((int(step), child))
    return sorted(out)


# -- the process --------------------------------------------------------------------------------------


def world() -> tuple[int, int]:
    """(rank, world size) from torchrun's environment; (0, 1) when not distributed."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def choose_threads(world_size: int) -> int:
    """CPU threads for this process: ``$EMTUI_TRAIN_THREADS``, else the cores but one shared out among
    the ranks (at least one each). Chosen, never left to torch: torch's threads wait for each other
    at every operation, so one core taken by another process (the TUI, a worker, a test suite)
    stalls them all. Measured on 2 cores (bench/train_throughput.py --threads-study, BENCHMARKS.md):
    beside one busy process 2 threads trained 2.3-3.3x slower than 1 thread, and even with the box
    merely shared 1 thread was faster."""
    env = os.environ.get("EMTUI_TRAIN_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, (cores - 1) // max(1, world_size))


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


# -- data ---------------------------------------------------------------------------------------------


def tokenize_dataset(tokenizer: Any, conversations: list[list[dict[str, str]]],
                     max_length: int) -> tuple[list[dict[str, list[int]]], int, str]:
    """Each conversation as ``input_ids`` + ``labels`` (-100 where not trained), cut to
    ``max_length``. Returns (rows, how many were dropped because the cut left no trained token,
    the masking path). TRL would drop those silently; emtui counts and reports them."""
    from engine.training.masking import masking_path, tokenize_chat

    path = masking_path(tokenizer)
    rows, dropped = [], 0
    for messages in conversations:
        ex = tokenize_chat(tokenizer, messages, max_length=max_length)
        if ex.n_trained == 0:
            dropped += 1
            continue
        rows.append({"input_ids": list(ex.input_ids), "labels": list(ex.labels)})
    return rows, dropped, path


# -- the model ----------------------------------------------------------------------------------------


def _lora_layers(value: Any, n_layers: int) -> list[int] | None:
    if value is None:
        return None
    if value == "middle":
        return [n_layers // 2]
    layers = [int(v) for v in value]
    if any(v >= n_layers for v in layers):
        raise TrainError(f"layers_to_transform {layers}: the model has {n_layers} layers (0..{n_layers - 1})")
    return layers


def no_bf16_repack(model: Any) -> int:
    """bitsandbytes' CPU fast path repacks 4-bit weights in place on any no-grad forward; the next
    training step then crashes (Qwen2) or silently trains on wrong gradients. Turn it off on every
    4-bit layer of a training process. Returns how many layers were set."""
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            n += 1
    return n


def load_model(location: str, recipe: Mapping[str, Any], *, device: str) -> tuple[Any, dict[str, Any]]:
    """The model to train and what was chosen for it (recorded in the run's provenance)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    cuda = device == "cuda"
    dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": recipe["attn_implementation"]}
    chosen: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "device": device}
    method = recipe["method"]
    if method == "qlora":
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype, bnb_4bit_quant_storage=dtype)
        chosen["quantization"] = "nf4+double-quant"
        if cuda:
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model = AutoModelForCausalLM.from_pretrained(location, **kwargs)
    if method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(recipe["gradient_checkpointing"]))
        if not cuda:
            chosen["bf16_repack_off_layers"] = no_bf16_repack(model)
    if method in ("qlora", "lora"):
        from peft import LoraConfig, PeftModel, get_peft_model

        if recipe.get("resume_adapter"):  # re-alignment: go on training an existing adapter
            model = PeftModel.from_pretrained(model, str(recipe["resume_adapter"]), is_trainable=True)
            chosen["continued_from_adapter"] = str(recipe["resume_adapter"])
        else:
            n_layers = int(getattr(model.config, "num_hidden_layers", 0) or 0)
            config = LoraConfig(
                r=int(recipe["lora_r"]), lora_alpha=float(recipe["lora_alpha"]),
                lora_dropout=float(recipe["lora_dropout"]), target_modules=recipe["target_modules"],
                use_rslora=bool(recipe["rslora"]),
                layers_to_transform=_lora_layers(recipe["layers_to_transform"], n_layers),
                task_type="CAUSAL_LM")
            model = get_peft_model(model, config)
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        chosen["trainable_parameters"] = int(trainable)
    elif method != "full":
        raise TrainError(f"unknown method {method!r} (qlora, lora, full)")
    return model, chosen


# -- the trainer --------------------------------------------------------------------------------------


def _make_trainer_class() -> type:
    """SFTTrainer that counts the trained tokens it sees and adds the KL term. Built on first use so
    importing this module does not import trl."""
    import torch
    from trl import SFTTrainer

    class EmSFTTrainer(SFTTrainer):
        kl_weight: float = 0.0
        kl_batches: Callable[[int], dict[str, Any]] | None = None
        trained_tokens: int = 0
        micro_steps: int = 0

        def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                         num_items_in_batch: Any = None) -> Any:
            if model.training:
                labels = inputs.get("labels")
                if labels is not None:  # the tokens whose loss counts (the first is never predicted)
                    self.trained_tokens += int((labels[:, 1:] != -100).sum().item())
            out = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                       num_items_in_batch=num_items_in_batch)
            if not model.training or self.kl_batches is None:
                return out
            loss = out[0] if return_outputs else out
            batch = self.kl_batches(self.micro_steps)
            self.micro_steps += 1
            kl = self._kl(model, batch, with_grad=self.kl_weight > 0)
            self._metrics["train"]["kl"].append(float(kl.detach().item()))
            if self.kl_weight > 0:
                scaled = self.loss_is_scaled_for_ga if self.loss_is_scaled_for_ga is not None else (
                    (self.model_accepts_loss_kwargs and num_items_in_batch is not None)
                    or self.compute_loss_func is not None)
                # the SFT loss of an accumulation window sums to its mean: so must the KL term
                term = self.kl_weight * kl / (self.current_gradient_accumulation_steps if scaled else 1)
                loss = loss + term
            return (loss, out[1]) if return_outputs else loss

        def _kl(self, model: Any, batch: dict[str, Any], *, with_grad: bool) -> Any:
            """KL(reference || trained) per token: summed over the vocabulary, averaged over the KL
            batch's trained positions. The reference is the same weights with the adapter off."""
            device = next(model.parameters()).device
            ids = batch["input_ids"].to(device)
            attn = batch["attention_mask"].to(device)
            mask = (batch["labels"] != -100).to(device)
            with torch.no_grad(), self.accelerator.unwrap_model(model).disable_adapter():
                ref = model(input_ids=ids, attention_mask=attn, use_cache=False).logits.float()
            ctx = torch.enable_grad() if with_grad else torch.no_grad()
            with ctx:
                cur = model(input_ids=ids, attention_mask=attn, use_cache=False).logits.float()
                ref_logp = torch.log_softmax(ref, dim=-1)
                cur_logp = torch.log_softmax(cur, dim=-1)
                per_pos = (ref_logp.exp() * (ref_logp - cur_logp)).sum(-1)
                # position t predicts token t+1: the trained positions are those whose next token is trained
                pred_mask = torch.zeros_like(mask)
                pred_mask[:, :-1] = mask[:, 1:]
                return (per_pos * pred_mask).sum() / pred_mask.sum().clamp(min=1)

    return EmSFTTrainer


def kl_batch_source(rows: list[dict[str, list[int]]], batch_size: int, seed: int,
                    pad_id: int) -> Callable[[int], dict[str, Any]]:
    """The KL batch of micro-step ``i``: a function of ``i`` alone (a seeded permutation walked in
    order), so a resumed run sees the very batches an uninterrupted one would."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(rows), generator=gen).tolist()

    def batch(i: int) -> dict[str, Any]:
        picked = [rows[order[(i * batch_size + k) % len(rows)]] for k in range(batch_size)]
        width = max(len(r["input_ids"]) for r in picked)
        ids = torch.full((len(picked), width), pad_id, dtype=torch.long)
        labels = torch.full((len(picked), width), -100, dtype=torch.long)
        attn = torch.zeros((len(picked), width), dtype=torch.long)
        for j, r in enumerate(picked):
            n = len(r["input_ids"])
            ids[j, :n] = torch.tensor(r["input_ids"])
            labels[j, :n] = torch.tensor(r["labels"])
            attn[j, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": attn}

    return batch


def sft_config(recipe: Mapping[str, Any], *, output_dir: str | Path, seed: int, cuda: bool,
               world_size: int = 1, extra: Mapping[str, Any] | None = None) -> tuple[Any, str]:
    """TRL's ``SFTConfig`` for a resolved recipe, and the optimizer it trains with (bitsandbytes' 8-bit
    optimizers need a GPU: plain AdamW on a CPU). ``bench/train_throughput.py`` measures runs made so."""
    import torch
    from trl import SFTConfig

    optimizer = str(recipe["optimizer"])
    if not cuda and optimizer in _8BIT_OPTIMIZERS:
        optimizer = "adamw_torch"
    warmup: float = int(recipe["warmup_steps"]) or float(recipe.get("warmup_ratio") or 0.0)
    config = SFTConfig(
        output_dir=str(output_dir), seed=seed, data_seed=seed,
        per_device_train_batch_size=int(recipe["batch_size"]),
        gradient_accumulation_steps=int(recipe["grad_accum"]),
        learning_rate=float(recipe["learning_rate"]), lr_scheduler_type=str(recipe["lr_scheduler"]),
        warmup_steps=warmup, weight_decay=float(recipe["weight_decay"]), optim=optimizer,
        num_train_epochs=float(recipe["epochs"]), max_steps=int(recipe["max_steps"] or -1),
        logging_steps=int(recipe["logging_steps"]), save_strategy="steps", save_steps=int(recipe["save_steps"]),
        gradient_checkpointing=bool(recipe["gradient_checkpointing"]) and recipe["method"] != "qlora",
        bf16=cuda and torch.cuda.is_bf16_supported(), use_cpu=not cuda,
        report_to=[], disable_tqdm=True, max_length=None, dataloader_num_workers=0,
        ddp_find_unused_parameters=False if world_size > 1 else None,
        # throughput levers (bench/train_throughput.py): a micro-batch as one unpadded row, or batches of
        # examples of similar length (less padding, no packed attention mask)
        padding_free=bool(recipe.get("padding_free", False)),
        train_sampling_strategy="group_by_length" if recipe.get("group_by_length") else "random",
        **(extra or {}),  # FSDP (_fsdp_args)
    )
    return config, optimizer


def _gpu_stats() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    out = {"gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30}
    try:  # nvidia-ml-py, where installed: what the GPU itself says
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        out["gpu_util"] = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
    except Exception:  # noqa: BLE001 - no NVML: the utilisation is simply not logged
        pass
    return out


def _fsdp_args(recipe: Mapping[str, Any], model: Any, world_size: int, chosen: dict[str, Any]) -> dict[str, Any]:
    """FSDP for a full fine-tune of a model too large for one device: each decoder layer its own shard
    unit. On one process it changes nothing (and says so)."""
    if not recipe.get("fsdp"):
        return {}
    if recipe["method"] != "full":
        raise TrainError("fsdp shards a full fine-tune; an adapter run (lora, qlora) trains with DDP")
    if world_size < 2:
        chosen["fsdp"] = "off: one process"
        return {}
    layers = list(getattr(model, "_no_split_modules", None) or [])
    chosen["fsdp"] = {"wrap": layers, "world_size": world_size}
    return {"fsdp": True, "fsdp_config": {"transformer_layer_cls_to_wrap": layers,
                                          "state_dict_type": "FULL_STATE_DICT"}}


def _metrics_callback(store: Any, run: Mapping[str, Any], progress: Progress | None, trainer_ref: list[Any],
                      recipe: Mapping[str, Any], rank: int, world_size: int) -> Any:
    from transformers import TrainerCallback

    run_id = int(run["id"])
    floor, patience = recipe.get("early_stop_loss"), int(recipe.get("early_stop_patience") or 5)
    kl_weight = float(recipe.get("kl_weight") or 0)

    class MetricsWriter(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.step0 = 0
            self.tokens0 = 0
            self.last_t, self.last_tokens = self.t0, 0
            self.below = 0
            self.cancelled = False
            self.early_stopped = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.t0 = self.last_t = time.monotonic()
            self.step0 = state.global_step  # a resumed run starts here
            if rank == 0:
                store.set_train_run_max_steps(run_id, int(state.max_steps))
            if progress is not None:
                progress.set_total(state.max_steps)
                if state.global_step:
                    progress.advance(state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                   **kw: Any) -> None:
            if not logs or "loss" not in logs:
                return
            trainer = trainer_ref[0]
            now = time.monotonic()
            tokens = trainer.trained_tokens * world_size  # every rank trains on its share of the batch
            values: dict[str, float] = {k: float(logs[k]) for k in (
                "loss", "learning_rate", "grad_norm", "mean_token_accuracy", "entropy", "epoch", "kl")
                if isinstance(logs.get(k), (int, float))}
            if "kl" in values:
                values["sft_loss"] = values["loss"] - kl_weight * values["kl"]
            if now > self.last_t:
                values["tokens_per_s"] = (tokens - self.last_tokens) / (now - self.last_t)
            self.last_t, self.last_tokens = now, tokens
            values["trained_tokens"] = float(tokens)
            values["max_steps"] = float(state.max_steps)
            done = state.global_step - self.step0
            if done > 0:
                values["eta_s"] = (now - self.t0) / done * max(0, state.max_steps - state.global_step)
            values.update(_gpu_stats())
            if rank == 0:
                store.log_train_metrics(run_id, state.global_step, values)
                if progress is not None:
                    progress.metrics({k: round(v, 6) for k, v in values.items()
                                      if k in ("loss", "kl", "tokens_per_s", "learning_rate")})
            if floor is not None:
                self.below = self.below + 1 if values["loss"] < float(floor) else 0
                if self.below >= patience:
                    self.early_stopped = True
                    control.should_training_stop = True

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if progress is not None:
                progress.advance(1)
                if progress.cancelled():
                    self.cancelled = True
                    control.should_training_stop = True

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if rank == 0:  # a checkpoint is a model too: generation can answer from every one (curves)
                step = int(state.global_step)
                folder = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{step}"
                model_id = store.ensure_model(
                    name=f"{run['study']}/{run['condition']}/run{run_id}/step{step}",
                    kind="full" if recipe["method"] == "full" else "adapter", source=f"train_run:{run_id}:step{step}",
                    base_model_id=int(run["base_model_id"]), path=str(folder),
                    provenance={"train_run": run_id, "step": step, "recipe_hash": run["recipe_hash"],
                                "dataset_hash": run["dataset_hash"], "seed": int(run["seed"])})
                store.add_checkpoint(train_run_id=run_id, step=step, path=str(folder), model_id=model_id)

    return MetricsWriter()


def train(store: Any, run_id: int, *, db_path: str | Path | None = None,
          progress: Progress | None = None) -> TrainResult:
    """Train run ``run_id`` (a ``train_runs`` row), resuming from its newest complete checkpoint. A run
    that fails or is cancelled says so in its row (rank 0), with the first line of the reason."""
    from engine.runs.progress import JobCancelled

    try:
        return _train(store, run_id, db_path=db_path, progress=progress)
    except JobCancelled:
        if world()[0] == 0:
            store.finish_train_run(run_id, status="cancelled", error="cancelled")
        raise
    except BaseException as exc:
        if world()[0] == 0 and store.get_train_run(run_id) is not None:
            reason = (str(exc).splitlines() or [""])[0][:500] or type(exc).__name__
            store.finish_train_run(run_id, status="failed", error=reason)
        raise


def _train(store: Any, run_id: int, *, db_path: str | Path | None,
           progress: Progress | None) -> TrainResult:
    run = store.get_train_run(run_id)
    if run is None:
        raise TrainError(f"no training run {run_id}")
    db_path = Path(db_path or store.path)
    recipe = json.loads(run["recipe"])
    if recipe_hash(recipe) != run["recipe_hash"]:
        raise TrainError(f"run {run_id}: its recipe does not match its recorded hash")
    rank, world_size = world()

    import warnings

    import torch

    torch.set_num_threads(choose_threads(world_size))
    # TRL's config sets transformers' deprecated alias itself: the warning says nothing about this run
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing. is deprecated", category=FutureWarning)
    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback
    from transformers.trainer_utils import set_seed

    from engine.models.locate import model_location
    from engine.runs.paths import run_dir
    from engine.training.datasets import dataset_messages

    base = store.get_model(int(run["base_model_id"]))
    location = model_location(base, db_path)
    seed = int(run["seed"])
    set_seed(seed)
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"

    tokenizer = AutoTokenizer.from_pretrained(location)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model, chosen = load_model(location, recipe, device=device)
    max_positions = int(getattr(model.config, "max_position_embeddings", 0) or 0) or int(recipe["max_seq_len"])
    max_length = min(int(recipe["max_seq_len"]), max_positions)

    rows, dropped, masking = tokenize_dataset(tokenizer, dataset_messages(store, int(run["dataset_id"])),
                                              max_length)
    if not rows:
        raise TrainError(f"run {run_id}: no example has a trained token within {max_length} tokens")
    kl_rows: list[dict[str, list[int]]] = []
    if recipe.get("kl_dataset"):
        if recipe["method"] == "full":
            raise TrainError("a KL term needs an adapter (its reference is the model with the adapter off); "
                             "method 'full' has none")
        kl_id = store.find_study_dataset(int(run["study_id"]), str(recipe["kl_dataset"]))
        kl_rows, _, _ = tokenize_dataset(tokenizer, dataset_messages(store, kl_id), max_length)
        if not kl_rows:
            raise TrainError(f"kl_dataset {recipe['kl_dataset']!r} has no example with a trained token")

    output_dir = Path(run["output_dir"] or (run_dir(db_path) / "train" / str(run_id)))
    config, optimizer = sft_config(recipe, output_dir=output_dir, seed=seed, cuda=cuda, world_size=world_size,
                                   extra=_fsdp_args(recipe, model, world_size, chosen))
    if optimizer != str(recipe["optimizer"]):
        chosen["optimizer"] = optimizer
    provenance = {
        "base_model": base["name"], "base_source": base["source"], "dataset": run["dataset"],
        "dataset_hash": run["dataset_hash"], "recipe_hash": run["recipe_hash"], "preset": run["preset"],
        "seed": seed, "masking": masking, "dropped_examples": dropped, "examples": len(rows),
        "max_length": max_length, "world_size": world_size, "chosen": chosen,
        "versions": library_versions(), "study_hash": run["study_hash"],
    }
    checkpoints = complete_checkpoints(output_dir)
    resume = str(checkpoints[-1][1]) if checkpoints else None
    if progress is not None:
        progress.note(f"{len(rows)} examples, masking {masking}"
                      + (f", {dropped} dropped (no trained token within {max_length})" if dropped else "")
                      + (f"; resuming from step {checkpoints[-1][0]}" if resume else ""))

    trainer_ref: list[Any] = []
    writer = _metrics_callback(store, run, progress, trainer_ref, recipe, rank, world_size)
    trainer = _make_trainer_class()(
        model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
        callbacks=[writer])
    trainer.remove_callback(PrinterCallback)  # logs go to the database, not stdout
    if isinstance(chosen.get("fsdp"), dict):  # what accelerate made of it, not what was asked
        chosen["fsdp"]["enabled"] = bool(getattr(trainer, "is_fsdp_enabled", False))
        if not chosen["fsdp"]["enabled"] and progress is not None:  # accelerate shards over GPUs only
            progress.note("fsdp: not enabled on these devices (accelerate shards over GPUs only): trains as DDP")
    trainer_ref.append(trainer)
    if kl_rows:
        trainer.kl_weight = float(recipe.get("kl_weight") or 0)
        trainer.kl_batches = kl_batch_source(kl_rows, int(recipe["batch_size"]), seed, int(tokenizer.pad_token_id))
        if resume:  # the KL batches go on where the checkpoint's step left them
            trainer.micro_steps = checkpoints[-1][0] * int(recipe["grad_accum"])
    if rank == 0:
        store.start_train_run(run_id, max_steps=int(run["max_steps"] or 0), output_dir=str(output_dir), masking=masking,
                              provenance=provenance)
    trainer.train(resume_from_checkpoint=resume)

    step = int(trainer.state.global_step)
    status = "cancelled" if writer.cancelled else "done"
    model_id = None
    if rank == 0:
        final = output_dir / "final"
        trainer.save_model(str(final))
        tokenizer.save_pretrained(str(final))
        if status == "done":
            kind = "full" if recipe["method"] == "full" else "adapter"
            model_id = store.ensure_model(
                name=f"{run['study']}/{run['condition']}/run{run_id}", kind=kind, source=f"train_run:{run_id}",
                base_model_id=int(run["base_model_id"]), path=str(final),
                provenance={**provenance, "train_run": run_id, "final_step": step,
                            "early_stopped": writer.early_stopped})
            store.set_condition_model(int(run["condition_id"]), model_id)
        store.finish_train_run(run_id, status=status, output_model_id=model_id)
    last = store.last_train_metrics(run_id)
    return TrainResult(train_run_id=run_id, model_id=model_id, final_step=step, status=status,
                       checkpoints=tuple(str(p) for _, p in complete_checkpoints(output_dir)), masking=masking,
                       metrics={k: v for k, v in last.items() if k != "step"})


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.training.trainer --db DB --train-run N``: one run, in this process (what each rank
    of ``torchrun`` executes)."""
    import argparse

    from db import open_store

    parser = argparse.ArgumentParser(prog="python -m engine.training.trainer")
    parser.add_argument("--db", required=True)
    parser.add_argument("--train-run", type=int, required=True)  # not --run: torchrun would take it as --run-path
    args = parser.parse_args(argv)
    with open_store(args.db, create=False) as store:
        result = train(store, args.train_run, db_path=args.db)
    if world()[0] == 0:
        print(json.dumps(result.as_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
