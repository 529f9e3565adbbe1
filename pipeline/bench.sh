#!/usr/bin/env bash
# Benchmarks of the gene-fusion steps (not tests): release build, this machine.
#   1. the dataset step at the default configuration (17 genes, 30 fusions per gene, reads of
#      150, 6-mers, 20 words): wall time, reads/s, peak RSS (GNU time -v);
#   2. one GC training epoch on the tiny preset and on a medium configuration (the default
#      dataset, a 2-layer GC of width 64);
# GC training against PyTorch on the same data: pipeline/bench/gc-vs-pytorch.sh.
# Usage: pipeline/bench.sh [OUT_DIR]   (needs /usr/bin/time, Debian package `time`)
# Environment: CARGO_TARGET_DIR (default target), BENCH_SEED (default 1).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d)}
seed=${BENCH_SEED:-1}
target=${CARGO_TARGET_DIR:-target}
cargo build --release -p kgf-step >&2
bin=$target/release/kgf-step
mkdir -p "$out"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/{print $2}') GiB"

measure() { # NAME CMD... : runs CMD under GNU time, prints wall seconds and peak RSS
  local name=$1; shift
  /usr/bin/time -v "$@" 2> "$out/$name.log" >/dev/null
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/{print $2}' "$out/$name.log")
  rss=$(awk -F': ' '/Maximum resident set size/{print $2}' "$out/$name.log")
  echo "$name: wall $wall, peak RSS $((rss / 1024)) MiB"
  grep -E '^(dataset|train-gc):' "$out/$name.log" | sed "s/^/  /"
}

measure dataset-default "$bin" dataset --preset default --seed "$seed" --out "$out/default"
"$bin" dataset --preset tiny --seed "$seed" --out "$out/tiny" 2>/dev/null
d=$out/tiny
measure gc-epoch-tiny "$bin" train-gc --preset tiny --seed "$seed" --device cpu --epochs 1 \
  --train "$d/train" --val "$d/val" --labels "$d/labels" --model-out "$out/gc-tiny"
d=$out/default
measure gc-epoch-medium "$bin" train-gc --preset default --seed "$seed" --device cpu --epochs 1 \
  --gc-hidden 64 --gc-layers 2 --gc-heads 4 --gc-intermediate 256 \
  --train "$d/train" --val "$d/val" --labels "$d/labels" --model-out "$out/gc-medium"
