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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.runs.progress import Progress
from engine.training.errors import TrainError
from engine.training.metrics_callback import CHECKPOINT_PREFIX, metrics_callback
from engine.training.model_setup import fsdp_args, load_model, sft_config
from engine.training.recipes import recipe_hash
from engine.training.sft_trainer import kl_batch_source, make_trainer_class

__all__ = ["TrainError", "TrainResult", "complete_checkpoints", "train"]


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


# -- the run ------------------------------------------------------------------------------------------


def train(store: Any, run_id: int, *, db_path: str | Path | None = None,
          progress: Progress | None = None) -> TrainResult:
    """Train run ``run_id`` (a ``train_runs`` row), resuming from its newest complete checkpoint. A run
    that fails or is cancelled says so in its row (rank 0), with the first line of the reason."""
    from engine.runs.progress import JobCancelled

    try:
        return _train(store, run_id, db_path=db_path, progress=progress)
    except JobCancelled:
        # a cancel someone asked for (the progress says so), or an attempt interrupted — its worker was
        # stopped or died — which the queue gives back and runs again: the run is queued, not cancelled
        if world()[0] == 0:
            asked = progress is not None and progress.cancelled()
            store.finish_train_run(run_id, status="cancelled" if asked else "queued",
                                   error="cancelled" if asked else None)
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
    if run["status"] == "done":  # its job ran again (run in the foreground first, or retried): nothing to do
        last = store.last_train_metrics(run_id)
        return TrainResult(train_run_id=run_id, model_id=run.get("output_model_id"), final_step=int(
            last.get("step") or 0), status="done", checkpoints=tuple(str(c["path"]) for c in store.run_checkpoints(
                run_id)), masking=str(run.get("masking") or ""),
            metrics={k: v for k, v in last.items() if k != "step"})
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
                                   extra=fsdp_args(recipe, model, world_size, chosen))
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
    writer = metrics_callback(store, run, progress, trainer_ref, recipe, rank, world_size)
    trainer = make_trainer_class()(
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
