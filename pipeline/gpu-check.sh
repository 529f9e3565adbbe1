#!/usr/bin/env bash
# The GPU check of issue 10, for a machine with one NVIDIA GPU: one run, under 8 minutes.
#   1. the CUDA build of kgf-step (pipeline/check-cuda-build, for this GPU's compute capability),
#      or KGF_STEP: a binary check-cuda-build made elsewhere (machines without registry access
#      cannot fetch the crates; build with CUDA_COMPUTE_CAP set to this GPU's and carry it);
#   2. `--device auto` must pick the GPU;
#   3. STEPS steps of the default GC (read-level, 128 wide, 2 layers, batch 64 reads) in candle against
#      pipeline/bench/gc_torch.py on the same GPU, alternating, f32 both; then PyTorch with bf16
#      autocast against the same candle f32 run (candle has no mixed precision: the figure says
#      what bf16 would bring).
# Usage: pipeline/gpu-check.sh [OUT_DIR]     (default target/gpu-check)
# Environment: STEPS (30), ROUNDS (2), KGF_STEP, PYTHON (default python3 when it imports torch,
#   else the venv of pipeline/bench/gc-vs-pytorch.sh), CUDA_LIBS (a directory with libcublas,
#   libcurand, libnvrtc, libcudart of CUDA 13; default: the check-cuda-build wheels, else those
#   next to torch, else the system's).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$PWD/target/gpu-check}
mkdir -p "$out"
started=$(date +%s)
nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | tee "$out/gpu.txt"
cap=$(head -n 1 "$out/gpu.txt" | awk -F', ' '{print $4}' | tr -d .)

if [[ -z ${KGF_STEP:-} ]]; then
  KGF_STEP=$(CUDA_COMPUTE_CAP=$cap pipeline/check-cuda-build | tail -n 1)
fi
if [[ -z ${PYTHON:-} ]] && python3 -c 'import torch' 2>/dev/null; then
  PYTHON=python3
fi
if [[ -z ${CUDA_LIBS:-} ]]; then
  if [[ -f target/cuda/cudart-dir && -d $(cat target/cuda/cudart-dir) ]]; then
    CUDA_LIBS=$(cat target/cuda/cudart-dir)
  elif [[ -n ${PYTHON:-} ]]; then
    CUDA_LIBS=$("$PYTHON" -c 'import os, nvidia; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null || true)
  fi
fi
export LD_LIBRARY_PATH=${CUDA_LIBS:+$CUDA_LIBS:}${LD_LIBRARY_PATH:-}
export KGF_STEP PYTHON

"$KGF_STEP" dataset --preset tiny --seed 1 --out "$out/tiny" 2> "$out/tiny.log"
"$KGF_STEP" train-gc --preset tiny --device auto --max-steps 2 --train "$out/tiny/train" \
  --val "$out/tiny/val" --labels "$out/tiny/labels" --model-out "$out/tiny-gc" 2> "$out/auto.log"
grep -m1 'computing on' "$out/auto.log"
grep -q 'computing on CUDA' "$out/auto.log" || { echo "gpu-check: --device auto did not pick the GPU" >&2; exit 1; }

export STEPS=${STEPS:-30} ROUNDS=${ROUNDS:-2} DEVICE=cuda THREADS=${THREADS:-$(nproc)}
echo "== f32: candle vs PyTorch"
BF16=0 pipeline/bench/gc-vs-pytorch.sh "$out/f32"
echo "== candle f32 vs PyTorch bf16 autocast"
mkdir -p "$out/bf16" && ln -sfn "$out/f32/data" "$out/bf16/data"
BF16=1 pipeline/bench/gc-vs-pytorch.sh "$out/bf16"
echo "gpu-check: done in $(( $(date +%s) - started )) s on $(head -n 1 "$out/gpu.txt"), $(date -u +%F)"
