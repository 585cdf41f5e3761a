#!/usr/bin/env bash
# The GPU check, runnable the day a GPU is lent (one H100/H200-class GPU, within 10 minutes):
#   1. the CUDA build of PyTorch and the gpu extras (bitsandbytes, liger-kernel);
#   2. bench/gpu_train.py on the Qwen2.5-7B architecture with random weights (nothing to download but
#      wheels): LoRA and QLoRA at 2048 tokens;
#   3. the training tests on CUDA: the gpu-marked tests, then tests/train.
#
#   bash bench/gpu_check.sh             # run it
#   bash bench/gpu_check.sh --dry-run   # print every command, run none
#
# PY (default .venv/bin/python), TORCH_INDEX (the CUDA wheel index) and OUT (results folder) may be set.
# Each step has its own time limit so the whole check ends within 10 minutes; results go to $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
TORCH_INDEX=${TORCH_INDEX:-https://download.pytorch.org/whl/cu128}
OUT=${OUT:-runs/gpu_check}
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; fi

run() {
    echo "+ $*"
    if [[ $DRY == 0 ]]; then "$@"; fi
}
# Seconds left of the 10 minutes, less a margin: the last step gets what the others left.
left() { echo $((590 - SECONDS)); }

# The same torch release as the CPU environment, as a CUDA wheel: the patches' verified ranges still hold.
TORCH_VERSION=$(if [[ $DRY == 0 ]]; then "$PY" -c 'import torch; print(torch.__version__.split("+")[0])'; else echo '<installed>'; fi)
run mkdir -p "$OUT"
run "$PY" -m pip uninstall --quiet --yes torch
run timeout 100 "$PY" -m pip install --quiet --index-url "$TORCH_INDEX" "torch==$TORCH_VERSION"
run timeout 45 "$PY" -m pip install --quiet -e ".[gpu]"
run timeout 15 "$PY" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"; print(torch.cuda.get_device_name(0))'
run timeout 15 "$PY" -m medtune.cli doctor configs/qwen2.5-7b/lora_sft.yaml
run timeout 200 "$PY" bench/gpu_train.py --model qwen2.5-7b-random --method lora qlora --seq 2048 \
    --warmup 2 --steps 5 --json "$OUT/gpu_train.json"
run timeout 30 "$PY" -m pytest -q -m gpu tests
run timeout "$(left)" "$PY" -m pytest -q -x tests/train
