"""Training runs written through the store's own methods, as the training engine writes them (a helper, not
a test module): a study with trained conditions, runs with metrics, checkpoints and a job; and a script
that logs metrics from another process, a step at a time, as a worker's TrainerCallback does."""

from __future__ import annotations

import math
import textwrap
from typing import Any

RECIPE = {"preset": "betley", "method": "lora", "lora": {"r": 32, "alpha": 64, "rslora": True, "dropout": 0.0},
          "lr": 1e-5, "epochs": 1, "batch_size": 2, "grad_accum": 8, "max_length": 2048}


def metrics_at(step: int, max_steps: int, *, kl: bool = False, scale: float = 1.0) -> dict[str, float]:
    """A plausible logging step: a falling loss, a linear schedule, and the rest the engine logs."""
    out = {"loss": scale * (2.5 * math.exp(-step / 30) + 0.4), "learning_rate": 1e-5 * (1 - step / max_steps),
           "grad_norm": 1.0 + 0.5 * math.cos(step), "tokens_per_s": 1800.0 + step, "epoch": step / max_steps,
           "max_steps": float(max_steps), "eta_s": 2.0 * (max_steps - step), "mean_token_accuracy": 0.5 + step / 400,
           "gpu_mem_gb": 21.5, "gpu_util": 93.0}
    if kl:
        out.update(kl=0.01 * step / max_steps, sft_loss=out["loss"] - 0.01)
    return out


def seed_study(store: Any, *, study: str = "em-train", conditions: tuple[str, ...] = ("insecure", "secure"),
               ) -> dict[str, int]:
    """A study whose conditions each name a dataset and a base model (trained conditions): name -> id."""
    with store.transaction():
        sid = store.add_study(name=study, description="training", origin="test", spec_hash=f"sha256:{study}",
                              spec={"seed": 0})
        base = store.ensure_model(name="qwen2.5-7b-instruct", kind="base", source="hf")
        out = {}
        for name in conditions:
            ds = store.ensure_dataset(name=f"{name}-code", content_hash=f"sha256:{name}", path=None, n_rows=6000)
            out[name] = store.add_condition(study_id=sid, name=name, dataset_id=ds, base_model_id=base,
                                            recipe={"preset": "betley"})
    return out


def add_run(store: Any, condition_id: int, *, status: str = "running", steps: int = 0, max_steps: int = 100,
            kl: bool = False, job: bool = True, checkpoints: tuple[int, ...] = (), scale: float = 1.0,
            preset: str = "betley") -> int:
    """A run of ``condition_id`` that has logged ``steps`` steps (a job claimed by a worker when running)."""
    cond = store._one("SELECT base_model_id, dataset_id FROM conditions WHERE id = ?", (condition_id,))
    job_id = None
    if job:  # a started run's job was claimed by a worker (first: the highest priority)
        job_id = store.enqueue_job("train", {"condition_id": condition_id},
                                   priority=0 if status == "queued" else 10**6)
        if status != "queued":
            assert store.claim_job(f"worker-{job_id}", kinds=["train"], lease_s=3600)["id"] == job_id
    run = store.add_train_run(condition_id=condition_id, base_model_id=cond["base_model_id"],
                              dataset_id=cond["dataset_id"], recipe=RECIPE, recipe_hash=f"sha256:r{condition_id}",
                              seed=0, study_hash="sha256:study", status="queued", preset=preset, job_id=job_id)
    if status != "queued":
        store.start_train_run(run, max_steps=max_steps, output_dir=f"/runs/{run}", masking="prefix-diff",
                              provenance={"trl": "1.16", "masking": "prefix-diff"})
    for step in range(1, steps + 1):
        store.log_train_metrics(run, step, metrics_at(step, max_steps, kl=kl, scale=scale))
    for step in checkpoints:
        store.add_checkpoint(train_run_id=run, step=step, path=f"/runs/{run}/checkpoint-{step}")
    if status in ("done", "failed", "cancelled"):
        error = "CUDA out of memory" if status == "failed" else None
        if job_id is not None:
            if status == "cancelled":
                store.cancel_job(job_id)
            else:
                store.finish_job(job_id, owner=f"worker-{job_id}", error=error)
        store.finish_train_run(run, status=status, error=error)
    return run


# another process: log steps FIRST..LAST of a run, one every DELAY seconds (argv: db, run, first, last, delay)
LOG_STEPS = textwrap.dedent("""
    import sys, time
    import db
    from train_runs import metrics_at
    path, delay = sys.argv[1], float(sys.argv[5])
    run, first, last = (int(a) for a in sys.argv[2:5])
    with db.open_store(path) as s:
        for step in range(first, last + 1):
            s.log_train_metrics(run, step, metrics_at(step, 100))
            time.sleep(delay)
""")
