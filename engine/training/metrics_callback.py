"""What a run writes while it trains: a ``TrainerCallback`` that logs every logging step's metrics to the
database (rank 0 only; upserted by run and step, so a resumed run's repeated steps replace theirs), reports
through the progress protocol, stops the run when it is cancelled or its loss stays under the floor, and
records each checkpoint (as a model of its own).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.runs.progress import Progress

CHECKPOINT_PREFIX = "checkpoint-"


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


def metrics_callback(store: Any, run: Mapping[str, Any], progress: Progress | None, trainer_ref: list[Any],
                     recipe: Mapping[str, Any], rank: int, world_size: int) -> Any:
    from transformers import TrainerCallback

    run_id = int(run["id"])
    floor, patience = recipe.get("early_stop_loss"), int(recipe.get("early_stop_patience") or 5)
    kl_weight = float(recipe.get("kl_weight") or 0)

    class MetricsWriter(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = time.monotonic()
            self.step0 = 0
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
