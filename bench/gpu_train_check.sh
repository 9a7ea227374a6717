#!/usr/bin/env bash
# One prepared GPU check (installs nothing): bench/train_throughput.py at Qwen2.5-7B-Instruct's shape
# (random weights from its config.json), the seed recipe against the project's, alternating, 2 runs each.
# About 6-8 minutes on an H200 (the 7B checkpoint is written once, ~15 GB; each run loads it in 4 bits).
# Results under $OUT: train_throughput.json (every figure), train_throughput.log (what it printed), env.txt.
#
#   OUT=/tmp/out bash bench/gpu_train_check.sh            # from the repository root
#   CONFIG=path/to/config.json REPEATS=3 bash bench/gpu_train_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_config.sh
OUT=${OUT:?set OUT to a folder for the results}
PYTHON=${PYTHON:-python}
CONFIG=$(model_config qwen2.5-7b-instruct.json gpu_train_check.sh) || exit 2
mkdir -p "$OUT"
export PYTHONPATH=$PWD:$PWD/.shim HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    "$PYTHON" -c "import torch, transformers, trl, peft, bitsandbytes as b, importlib.util as u; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bitsandbytes', b.__version__, 'flash_attn', bool(u.find_spec('flash_attn')), 'liger', bool(u.find_spec('liger_kernel')))"
} > "$OUT/env.txt" 2>&1
timeout 560 "$PYTHON" bench/train_throughput.py --config "$CONFIG" --repeats "${REPEATS:-2}" \
    --warmup 2 --steps "${STEPS:-8}" --out "$OUT/train_throughput.json" 2>&1 | tee "$OUT/train_throughput.log"
