#!/usr/bin/env bash
# One prepared GPU check (installs nothing; issue 15): the whole chain once on a small real-shaped model —
# random bf16 weights of Qwen2.5-0.5B-Instruct's shape (its config.json; the tiny tokenizer; nothing downloaded),
# `emtui run` on a short study (a LoRA fine-tune of 300 steps, both models answering core-em, a local judge, the
# summary) through a real detached worker — with wall time and peak GPU memory per stage (bench/gpu_study_chain.py
# says how each is measured). Under 10 minutes: the driver gives up waiting 480 s after `emtui run`, and the whole
# script is cut at 570 s (what was measured so far is still written).
# Results under $OUT: study_chain.json (every figure), study_chain.txt (the table), study_chain.log (what it
# printed), logs/ (the worker's and each job's log), env.txt.
#
#   OUT=/tmp/out bash bench/gpu_study_chain.sh                   # from the repository root, on a GPU machine
#   CONFIG=path/to/config.json STEPS=300 SAMPLES=20 OUT=/tmp/out bash bench/gpu_study_chain.sh
#   SMOKE=1 OUT=/tmp/out bash bench/gpu_study_chain.sh           # the plumbing on a CPU: tiny model, tiny sizes
#
# On the device machine ../shared does not travel with the checkout: copy the config into an ignored folder of
# the checkout (named in carry) and set CONFIG, or EMTUI_FIXTURES to a folder holding model_configs/.
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_config.sh
OUT=${OUT:?set OUT to a folder for the results}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/.shim HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
SIZES=()
[ -n "${STEPS:-}" ] && SIZES+=(--steps "$STEPS")
[ -n "${SAMPLES:-}" ] && SIZES+=(--samples "$SAMPLES")
[ -n "${NEW_TOKENS:-}" ] && SIZES+=(--new-tokens "$NEW_TOKENS")
if [ "${SMOKE:-0}" = 1 ]; then
    MODEL=(--cpu-smoke)
else
    CONFIG=$(model_config qwen2.5-0.5b-instruct.json gpu_study_chain.sh) || exit 2
    need_cuda gpu_study_chain.sh "SMOKE=1 runs the plumbing on a CPU"
    MODEL=(--config "$CONFIG")
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv || true
    "$PYTHON" -c "import torch, importlib.util as u, importlib.metadata as m; print('torch', torch.__version__, 'cuda', torch.version.cuda, *(f'{p} {m.version(p)}' for p in ('transformers', 'peft', 'trl', 'nvidia-ml-py')), 'flash_attn', bool(u.find_spec('flash_attn')))"
} > "$OUT/env.txt" 2>&1
timeout 570 "$PYTHON" bench/gpu_study_chain.py "${MODEL[@]}" "${SIZES[@]}" --out "$OUT" 2>&1 \
    | tee "$OUT/study_chain.log"
exit "${PIPESTATUS[0]}"
