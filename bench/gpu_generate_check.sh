#!/usr/bin/env bash
# One prepared GPU check (installs nothing): bench/generate_throughput.py at Qwen2.5-7B-Instruct's shape
# (random bf16 weights built in memory on the GPU from its config.json, driven by the tiny tokenizer;
# nothing downloaded), every answer 128 tokens with EOS ignored, in two processes, each under its own
# timeout so that the whole check stays under 10 minutes (about 6-8 on an H200):
#   1. (<= 330 s) engine vs the naive loop, row sampler vs plain sampling, the batch sweep
#      1, 8, 32, 64, 128 and the batch the engine would choose from free memory (capped at 512):
#      tokens/s end to end and in decode, and the fraction of the memory-bandwidth roofline,
#      decode tokens/s <= batch x bandwidth / (weight bytes + KV bytes per step), at 4.8 TB/s
#      (H200 HBM3e; BANDWIDTH_TB_S to change); then the LoRA adapter switch;
#   2. (<= 170 s) transformers' continuous batching (generate_batch) vs padded generate.
# Results under $OUT: generate_throughput.json and generate_continuous.json (every figure, rewritten after
# each part, so a part cut off by its timeout leaves the ones before it), generate_throughput.log (what
# it printed), env.txt.
#
#   OUT=/tmp/out bash bench/gpu_generate_check.sh             # from the repository root, on a GPU machine
#   CONFIG=path/to/config.json bash bench/gpu_generate_check.sh
#   QUICK=1 OUT=/tmp/out bash bench/gpu_generate_check.sh     # the plumbing on a CPU: the tiny model, --quick
#
# On the device machine ../shared does not travel with the checkout: copy the config into an ignored
# folder of the checkout (named in carry) and set CONFIG, or EMTUI_FIXTURES to a folder holding
# model_configs/.
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_config.sh
OUT=${OUT:?set OUT to a folder for the results}
PYTHON=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/.shim HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
COMMON=(--samples 8 --batch 64 --new-tokens 128 --naive-n 4 --repeats 2 --switches 20
        --bandwidth-tb-s "${BANDWIDTH_TB_S:-4.8}")
if [ "${QUICK:-0}" = 1 ]; then
    MODEL=(--quick --device cpu)
else
    CONFIG=$(model_config qwen2.5-7b-instruct.json gpu_generate_check.sh) || exit 2
    need_cuda gpu_generate_check.sh "QUICK=1 runs the plumbing on a CPU"
    MODEL=(--config "$CONFIG" --device cuda)
fi
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv || true
    "$PYTHON" -c "import torch, importlib.util as u, importlib.metadata as m; print('torch', torch.__version__, 'cuda', torch.version.cuda, *(f'{p} {m.version(p)}' for p in ('transformers', 'peft', 'tokenizers')), 'flash_attn', bool(u.find_spec('flash_attn')))"
} > "$OUT/env.txt" 2>&1
status=0
timeout 330 "$PYTHON" bench/generate_throughput.py "${MODEL[@]}" "${COMMON[@]}" \
    --parts naive,sampler,sweep,adapters --sweep 1,8,32,64,128,auto --auto-cap 512 \
    --json "$OUT/generate_throughput.json" 2>&1 | tee "$OUT/generate_throughput.log" || status=$?
timeout 170 "$PYTHON" bench/generate_throughput.py "${MODEL[@]}" "${COMMON[@]}" --parts continuous \
    --json "$OUT/generate_continuous.json" 2>&1 | tee -a "$OUT/generate_throughput.log" || status=$?
exit $status
