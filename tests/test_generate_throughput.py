"""The generation throughput benchmark (bench/generate_throughput.py, issue 13) and its GPU check
(bench/gpu_generate_check.sh): the plumbing, on a CPU. Structure and sanity only, never timings: every side
generated the same tokens, every ratio came out finite, every part printed its comparison."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "bench" / "gpu_generate_check.sh"
QUICK_NEW_TOKENS = 8   # bench/generate_throughput.py --quick
PROMPTS = 24           # every wording of core-em


def run_check(out: Path, **env: str) -> subprocess.CompletedProcess:
    full = {**os.environ, "OUT": str(out), "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", str(SCRIPT)], env=full, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=240)


def finite(x: float) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_the_gpu_check_quick_on_a_cpu_measures_every_part_with_equal_tokens_and_finite_ratios(tmp_path):
    proc = run_check(tmp_path, QUICK="1")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log = (tmp_path / "generate_throughput.log").read_text(encoding="utf-8")
    for line in ("engine / naive:", "row sampler / plain:", "roofline", "set_adapter:", "after a switch / no switch:",
                 "continuous / padded:"):
        assert line in log, line
    first = json.loads((tmp_path / "generate_throughput.json").read_text(encoding="utf-8"))
    second = json.loads((tmp_path / "generate_continuous.json").read_text(encoding="utf-8"))
    assert list(first["parts"]) == ["naive", "sampler", "sweep", "adapters"]
    assert list(second["parts"]) == ["continuous"]
    n = QUICK_NEW_TOKENS

    naive = first["parts"]["naive"]
    assert naive["tokens_per_answer"] == {"engine": n, "naive": n}
    assert naive["runs"]["engine"]["tokens"] == naive["answers"] * n == PROMPTS * n
    assert naive["runs"]["naive"]["tokens"] == naive["naive_answers"] * n
    assert finite(naive["ratio"]) and all(finite(r) for run in naive["runs"].values() for r in run["rates"])

    sampler = first["parts"]["sampler"]
    assert sampler["runs"]["plain"]["tokens"] == sampler["runs"]["row sampler"]["tokens"] == sampler["batch"] * n
    assert finite(sampler["ratio"])

    sweep = first["parts"]["sweep"]
    assert [row["batch"] for row in sweep["rows"]] == [1, 8]
    assert sweep["bandwidth_tb_s"] == 4.8 and "bandwidth" in sweep["formula"]
    assert sweep["weight_bytes"] > 0 and sweep["kv_bytes_per_token"] > 0
    for row in sweep["rows"]:
        assert row["runs"]["full"]["tokens"] == row["batch"] * n and row["runs"]["prefill"]["tokens"] == row["batch"]
        assert finite(row["tokens_per_s"]) and finite(row["roofline_tokens_per_s"])
        # decode = full - prefill: NaN where timing noise made a 1-token run no faster (1 repeat, 8 tokens)
        assert isinstance(row["roofline_fraction"], float)
    assert sweep["engine_batch_size"] is None  # from free GPU memory: none on a CPU

    adapters = first["parts"]["adapters"]
    assert adapters["adapters_change_logits"] is True
    assert finite(adapters["switch_ms"]["median"]) and finite(adapters["switch_share_of_batch"])
    tokens = {side: run["tokens"] for side, run in adapters["runs"].items()}
    assert tokens == dict.fromkeys(("no switch", "after a switch", "base (disabled)"), adapters["rows"] * n)

    continuous = second["parts"]["continuous"]
    assert continuous["runs"]["continuous"]["tokens"] == continuous["runs"]["padded"]["tokens"] == PROMPTS * n
    assert finite(continuous["ratio"])


def test_the_bench_counts_an_answer_that_ended_at_eos_short_and_a_fixed_length_leaves_none():
    """What makes tokens/s comparable: every answer generates --new-tokens tokens, and the count would see one
    that did not (a row's tokens up to its first EOS, not the padding after it)."""
    import torch

    sys.path.insert(0, str(REPO_ROOT / "bench"))
    try:
        import _gen_common as common
        import generate_throughput as bench
    finally:
        sys.path.remove(str(REPO_ROOT / "bench"))

    torch.manual_seed(0)
    model, tok = common.load(common.tiny_model_folder())
    prompts, seeds = bench.answers(common.chat_prompts(tok), 1)
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    counter = common.GeneratedTokens()
    with torch.inference_mode(), counter.counting(model):  # the tiny model's own config: EOS ends a row
        out = model.generate(**enc, do_sample=True, top_k=0, max_new_tokens=64)
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    lengths = [min([row.index(eos) + 1 for eos in (0, 2) if eos in row] or [64]) for row in new]
    assert min(lengths) < 64, "no answer ended early: pick another seed"
    assert counter.tokens == sum(lengths) < len(prompts) * 64

    assert bench.counted_engine(model, tok, prompts, seeds, batch=8, new_tokens=64) == len(prompts) * 64


def test_the_gpu_check_refuses_without_a_config_or_a_gpu(tmp_path, shared_fixtures):
    proc = run_check(tmp_path, CONFIG=str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "no qwen2.5-7b-instruct.json" in proc.stderr

    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the check would run")
    config = shared_fixtures / "model_configs" / "qwen2.5-7b-instruct.json"
    proc = run_check(tmp_path, CONFIG=str(config))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"gpu_generate_check.sh: no CUDA GPU visible to {sys.executable} (QUICK=1 runs the plumbing on a CPU)"]
    assert not (tmp_path / "generate_throughput.json").exists()
