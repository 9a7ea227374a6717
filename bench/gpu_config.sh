# Sourced by the prepared GPU checks (bench/gpu_*.sh): where a real model's config.json is, and whether a GPU is.
# On the device machine ../shared does not travel with the checkout: CONFIG names a copy of the config in an
# ignored folder of the checkout (named in carry), or EMTUI_FIXTURES a folder holding model_configs/.

# model_config FILE SCRIPT: the path of model_configs/FILE ($CONFIG when set), or exit 2 saying so
model_config() {
    local file=$1 script=$2 fixtures=${EMTUI_FIXTURES:-} d
    for d in "$fixtures" shared/fixtures ../shared/fixtures; do
        if [ -n "$d" ] && [ -f "$d/model_configs/$file" ]; then fixtures=$d; break; fi
    done
    local config=${CONFIG:-$fixtures/model_configs/$file}
    if [ ! -f "$config" ]; then
        echo "$script: no $file (set CONFIG to it, or EMTUI_FIXTURES to a folder holding model_configs/)" >&2
        exit 2
    fi
    echo "$config"
}

# need_cuda SCRIPT HINT: exit 2 unless $PYTHON's torch sees a CUDA GPU (HINT: how to run the plumbing without)
need_cuda() {
    if ! "$PYTHON" -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
        echo "$1: no CUDA GPU visible to $PYTHON ($2)" >&2
        exit 2
    fi
}
