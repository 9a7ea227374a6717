"""The training engine on the tiny model, on CPU: LoRA, QLoRA and full runs whose metrics land in the
database, the KL term, resume after SIGKILL with identical losses, early stop, cancellation, the
dropped-example count, 2-process DDP under torchrun, and a run through the queue and a worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from db import open_store
from engine.runs.progress import JobCancelled, Progress
from engine.study.study_file import load_study, register_study
from engine.training.queueing import QueueError, queue_runs, requeue_run
from engine.training.trainer import complete_checkpoints, train
from training_study import write_study

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study_db(tmp_path_factory):
    """One registered study (and the tiny model, built once) that the tests queue their runs in."""
    folder = tmp_path_factory.mktemp("train")
    path = write_study(folder)
    db = folder / "t.db"
    with open_store(db) as store:
        register_study(store, load_study(path))
    return db


@pytest.fixture
def store(study_db):
    with open_store(study_db) as s:
        yield s


def queue(store, condition="domain", **overrides) -> int:
    queued = queue_runs(store, study="train-test", condition=condition, overrides=overrides, again=True)
    assert len(queued.runs) == 1
    return queued.runs[0]


def series(store, run_id, name):
    return store.train_metric_series([run_id], [name])[run_id].get(name, [])


@pytest.mark.parametrize("method", ["lora", "qlora", "full"])
def test_a_run_writes_its_metrics_checkpoints_and_model(store, study_db, method):
    run_id = queue(store, method=method)
    result = train(store, run_id, db_path=study_db)

    assert result.status == "done" and result.final_step == 30
    loss = series(store, run_id, "loss")
    assert [s for s, _ in loss] == list(range(1, 31))           # every logging step, once
    assert loss[-1][1] < loss[0][1]                              # it learned something
    for name in ("learning_rate", "grad_norm", "tokens_per_s", "epoch", "mean_token_accuracy", "eta_s"):
        assert len(series(store, run_id, name)) == 30, name
    assert all(v > 0 for _, v in series(store, run_id, "tokens_per_s"))

    checkpoints = store.run_checkpoints(run_id)
    assert [c["step"] for c in checkpoints] == [10, 20, 30]
    assert all((Path(c["path"]) / "trainer_state.json").is_file() for c in checkpoints)
    for c in checkpoints:  # each a model of its own, for checkpoint-wise evaluation
        ckpt = store.get_model(c["model_id"])
        assert ckpt["path"] == c["path"] and json.loads(ckpt["provenance"])["step"] == c["step"]

    run = store.get_train_run(run_id)
    assert run["status"] == "done" and run["max_steps"] == 30 and run["masking"]
    model = store.get_model(result.model_id)
    assert model["kind"] == ("full" if method == "full" else "adapter")
    assert Path(model["path"]).is_dir()
    prov = json.loads(model["provenance"])
    assert prov["train_run"] == run_id and prov["recipe_hash"] == run["recipe_hash"]
    assert prov["dataset_hash"].startswith("sha256:") and prov["seed"] == 7 and prov["masking"] == run["masking"]
    assert {"torch", "transformers", "peft", "trl"} <= set(prov["versions"])
    cond = [c for c in store.study_conditions(store.find_study("train-test")["id"]) if c["name"] == "domain"][0]
    assert cond["model_id"] == result.model_id                  # the condition now evaluates its fine-tune
    if method == "qlora":
        assert prov["chosen"]["quantization"] == "nf4+double-quant"
        assert prov["chosen"]["bf16_repack_off_layers"] > 0     # the CPU repack trap is switched off


def test_the_kl_term_starts_at_zero_and_keeps_the_model_closer(store, study_db):
    free = queue(store, kl_dataset="kl", kl_weight=0.0, learning_rate=5e-3, max_steps=16)  # KL measured only
    held = queue(store, kl_dataset="kl", kl_weight=5.0, learning_rate=5e-3, max_steps=16)
    train(store, free, db_path=study_db)
    train(store, held, db_path=study_db)

    kl_free, kl_held = series(store, free, "kl"), series(store, held, "kl")
    assert kl_free[0] == (1, 0.0) and kl_held[0] == (1, 0.0)   # the adapter starts at zero: the reference itself
    assert len(kl_held) == 16 and len(series(store, held, "sft_loss")) == 16
    assert kl_held[-1][1] < 0.9 * kl_free[-1][1]
    # the logged loss is the SFT term plus the weighted KL term
    loss, sft = dict(series(store, held, "loss")), dict(series(store, held, "sft_loss"))
    assert loss[16] == pytest.approx(sft[16] + 5.0 * dict(kl_held)[16])


def test_qlora_with_a_kl_term_trains(store, study_db):
    # the KL reference is a no-grad forward between training steps: the bitsandbytes CPU repack trap
    run_id = queue(store, method="qlora", kl_dataset="kl", kl_weight=1.0, max_steps=6, save_steps=3)
    assert train(store, run_id, db_path=study_db).status == "done"
    assert len(series(store, run_id, "kl")) == 6


def test_qlora_trains_on_after_an_evaluation_forward(study_db):
    """bitsandbytes' CPU fast path repacks 4-bit weights in place on an eval-mode no-grad forward; the next
    training step then fails on Qwen2 (on a CPU with AVX512-BF16). load_model switches that off."""
    import torch

    from engine.models.locate import ensure_tiny
    from engine.training.model_setup import load_model
    from engine.training.recipes import resolve_recipe

    model, chosen = load_model(str(ensure_tiny(study_db)), resolve_recipe({"method": "qlora"}), device="cpu")
    assert chosen["bf16_repack_off_layers"] > 0
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    ids = torch.randint(3, 500, (2, 32), generator=torch.Generator().manual_seed(0))

    def step() -> float:
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        return float(loss.detach())

    first = step()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)
    model.train()
    assert step() < first


def _train_process(db: Path, run_id: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    return subprocess.Popen([sys.executable, "-m", "engine.training.trainer", "--db", str(db), "--train-run",
                             str(run_id)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_then_resume_gives_identical_losses_and_no_duplicate_rows(store, study_db):
    whole = queue(store, max_steps=16, save_steps=4)
    cut = queue(store, max_steps=16, save_steps=4)
    assert store.get_train_run(whole)["recipe_hash"] == store.get_train_run(cut)["recipe_hash"]
    train(store, whole, db_path=study_db)

    proc = _train_process(study_db, cut)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # kill it after a checkpoint, mid-way to the next
        steps = [s for s, _ in series(store, cut, "loss")]
        if store.run_checkpoints(cut) and steps and steps[-1] >= 6:
            break
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    logged_before = max(s for s, _ in series(store, cut, "loss"))
    assert logged_before < 16
    output = Path(store.get_train_run(cut)["output_dir"])
    (output / "checkpoint-15").mkdir()  # a checkpoint cut short by a kill: no trainer_state.json
    (output / "checkpoint-15" / "adapter_model.safetensors").write_bytes(b"partial")
    assert 15 not in [s for s, _ in complete_checkpoints(output)]

    result = train(store, cut, db_path=study_db)  # what the queue's retry (or emtui train --resume) runs
    assert result.status == "done" and result.final_step == 16
    assert series(store, cut, "loss") == series(store, whole, "loss")  # bitwise: floats as stored
    assert series(store, cut, "learning_rate") == series(store, whole, "learning_rate")
    assert [c["step"] for c in store.run_checkpoints(cut)] == [4, 8, 12, 16]


def test_early_stop_when_the_loss_stays_under_the_floor(store, study_db):
    run_id = queue(store, early_stop_loss=100.0, early_stop_patience=3)
    result = train(store, run_id, db_path=study_db)
    assert result.final_step == 3 and result.status == "done"
    assert json.loads(store.get_model(result.model_id)["provenance"])["early_stopped"] is True


class StopAfter(Progress):
    """A progress that asks the run to stop after ``n`` steps (what a cancelled job's progress says)."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.done = n, 0

    def advance(self, n: int = 1) -> None:
        self.done += n

    def cancelled(self) -> bool:
        return self.done >= self.n


class SignalledAfter(StopAfter):
    """SIGTERM in the middle of the run after ``n`` steps (raised in a job as JobCancelled): a cancel someone
    asked for (``asked``: the progress says cancelled), or the worker stopping or dying (it does not)."""

    def __init__(self, n: int, *, asked: bool) -> None:
        super().__init__(n)
        self.asked = asked

    def advance(self, n: int = 1) -> None:
        super().advance(n)
        if self.done >= self.n:
            raise JobCancelled("interrupted")

    def cancelled(self) -> bool:
        return self.asked and self.done >= self.n


def test_an_interrupted_attempt_leaves_the_run_queued_and_the_next_resumes(store, study_db):
    """A worker that stops or dies interrupts its job, which the queue gives back: the run reads queued,
    not cancelled, and the next attempt goes on from its checkpoint."""
    run_id = queue(store, max_steps=6, save_steps=2)
    with pytest.raises(JobCancelled):
        train(store, run_id, db_path=study_db, progress=SignalledAfter(3, asked=False))
    run = store.get_train_run(run_id)
    assert run["status"] == "queued" and run["error"] is None
    assert [c["step"] for c in store.run_checkpoints(run_id)] == [2]
    assert train(store, run_id, db_path=study_db).final_step == 6
    assert [s for s, _ in series(store, run_id, "loss")] == list(range(1, 7))


def test_a_cancelled_run_stops_between_steps(store, study_db):
    run_id = queue(store)
    result = train(store, run_id, db_path=study_db, progress=StopAfter(4))
    assert result.status == "cancelled" and result.final_step == 4 and result.model_id is None
    assert store.get_train_run(run_id)["status"] == "cancelled"


def test_a_done_run_is_not_resumed(store, study_db):
    run_id = queue(store, max_steps=1)
    train(store, run_id, db_path=study_db)
    with pytest.raises(QueueError, match="is done; queue a new one"):
        requeue_run(store, run_id)
    # its job run again (a worker taking the job of a run trained in the foreground) trains nothing more
    before = (series(store, run_id, "loss"), store.run_checkpoints(run_id), store.count("models"))
    again = train(store, run_id, db_path=study_db)
    assert again.status == "done" and again.final_step == 1
    assert (series(store, run_id, "loss"), store.run_checkpoints(run_id), store.count("models")) == before


def test_examples_the_cut_leaves_untrained_are_counted_or_the_run_fails(store, study_db):
    run_id = queue(store, max_seq_len=40, max_steps=2)
    train(store, run_id, db_path=study_db)
    prov = json.loads(store.get_train_run(run_id)["provenance"])
    assert prov["dropped_examples"] > 0 and prov["examples"] + prov["dropped_examples"] == 48

    none_left = queue(store, max_seq_len=8, max_steps=2)
    with pytest.raises(Exception, match="no example has a trained token within 8 tokens"):
        train(store, none_left, db_path=study_db)
    run = store.get_train_run(none_left)
    assert run["status"] == "failed" and "no example has a trained token" in run["error"]


def test_a_failed_run_resumes_and_a_running_one_cannot_be_queued_twice(store, study_db):
    run_id = queue(store, max_steps=4, save_steps=2)
    with pytest.raises(JobCancelled):
        train(store, run_id, db_path=study_db, progress=SignalledAfter(2, asked=True))
    assert store.get_train_run(run_id)["status"] == "cancelled"
    job = requeue_run(store, run_id)
    assert store.get_train_run(run_id)["status"] == "queued" and store.get_train_run(run_id)["job_id"] == job
    with pytest.raises(QueueError, match="queued already"):
        requeue_run(store, run_id)
    assert train(store, run_id, db_path=study_db).final_step == 4


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun is not installed")
def test_two_process_ddp_under_torchrun(store, study_db):
    run_id = queue(store, max_steps=12, save_steps=6)
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([torchrun, "--nproc_per_node", "2", "-m", "engine.training.trainer", "--db",
                           str(study_db), "--train-run", str(run_id)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    prov = json.loads(store.get_train_run(run_id)["provenance"])
    assert prov["world_size"] == 2
    # 48 examples, 2 per rank per step: 12 steps an epoch with two ranks (24 with one)
    assert dict(series(store, run_id, "epoch"))[12] == pytest.approx(1.0)
    assert [s for s, _ in series(store, run_id, "loss")] == list(range(1, 13))  # rank 0 alone wrote
    assert [c["step"] for c in store.run_checkpoints(run_id)] == [6, 12]


def test_a_job_killed_under_its_worker_is_retried_and_resumes(run_cli, tmp_path):
    """`emtui train` queues a run (once; bad settings refused) and a worker trains it. SIGKILL of the train
    job's process (the OOM killer's way): the worker gives the job back, runs it again, and the run goes on
    from its newest complete checkpoint — every step logged once."""
    path = write_study(tmp_path / "s", name="kill-train", recipe={"max_steps": 16, "save_steps": 4})
    db = tmp_path / "k.db"
    assert run_cli("init", str(path), "--db", str(db)).returncode == 0
    queue_it = ("train", "--db", str(db), "--study", "kill-train", "--condition", "domain", "--no-worker",
                "--set", "learning_rate=2e-3")
    out = run_cli(*queue_it)
    assert out.returncode == 0, out.stderr
    assert "queued run 1: domain (job 1" in out.stdout
    assert "skipped domain: run 1 with this recipe is queued" in run_cli(*queue_it).stdout
    bad = run_cli("train", "--db", str(db), "--study", "kill-train", "--set", "lora_r=0")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "lora_r" in bad.stderr
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    worker = subprocess.Popen([sys.executable, "-m", "emtui", "--db", str(db), "worker", "--once"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with open_store(db) as store:
            deadline = time.monotonic() + 300
            while True:
                assert time.monotonic() < deadline and worker.poll() is None
                steps = [s for s, _ in series(store, 1, "loss")]
                if store.run_checkpoints(1) and steps and steps[-1] >= 6:
                    break
                time.sleep(0.02)
            os.kill(int(store.get_job(1)["child_pid"]), signal.SIGKILL)
        out, _ = worker.communicate(timeout=300)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, out
    with open_store(db) as store:
        job, run = store.get_job(1), store.get_train_run(1)
        assert job["status"] == "done" and job["attempts"] == 2, (job["status"], job["error"], out)
        assert run["status"] == "done" and json.loads(run["recipe"])["learning_rate"] == 2e-3
        assert json.loads(job["result"])["final_step"] == 16 and json.loads(job["result"])["model_id"]
        assert [s for s, _ in series(store, 1, "loss")] == list(range(1, 17))
        assert [c["step"] for c in store.run_checkpoints(1)] == [4, 8, 12, 16]
        events = " ".join(e["text"] or "" for e in store.job_events(1))
        log = Path(job["log_path"]).read_text(encoding="utf-8", errors="replace")
    assert "killed by SIGKILL" in events
    assert "resuming from step" in log  # the second attempt went on from a checkpoint, not from step 0


def test_continue_from_an_existing_adapter(store, study_db):
    """Re-alignment: fine-tune a misaligned model's adapter further on benign data. The new run starts from
    the adapter's weights, not from a fresh one."""
    first = queue(store, max_steps=10, learning_rate=5e-3)
    adapter = store.get_model(train(store, first, db_path=study_db).model_id)["path"]
    fresh = queue(store, condition="domain", max_steps=2, learning_rate=5e-3, save_steps=2)
    after = queue(store, condition="domain", max_steps=2, learning_rate=5e-3, save_steps=2, resume_adapter=adapter)
    train(store, fresh, db_path=study_db)
    result = train(store, after, db_path=study_db)
    assert json.loads(store.get_model(result.model_id)["provenance"])["chosen"]["continued_from_adapter"] == adapter
    # the same first batch (same seed): the continued adapter already fits the domain better
    assert series(store, after, "loss")[0][1] < series(store, fresh, "loss")[0][1] - 0.05


def test_queueing_warns_of_a_base_model_this_machine_cannot_load(run_cli, tmp_path):
    path = write_study(tmp_path / "s", name="hub-train")
    text = path.read_text(encoding="utf-8").replace('source = "tiny"', 'source = "nobody/no-such-model-xyz"')
    path.write_text(text, encoding="utf-8")
    db = tmp_path / "h.db"
    assert run_cli("init", str(path), "--db", str(db)).returncode == 0
    out = run_cli("train", "--db", str(db), "--study", "hub-train", "--no-worker",
                  env={"HF_HOME": str(tmp_path / "hf")})
    assert out.returncode == 0 and "queued run 1: domain" in out.stdout
    assert out.stderr.count("\n") == 1  # said once, for both conditions
    assert "warning: model 'nobody/no-such-model-xyz' is neither a local folder nor in the Hugging Face cache" \
        in out.stderr
    again = run_cli("train", "--db", str(db), "--study", "hub-train", "--no-worker", "--again")
    assert "warning" in again.stderr  # still the hub model: the warning stays until the model is there
