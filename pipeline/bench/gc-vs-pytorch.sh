#!/usr/bin/env bash
# Benchmark (not a test): GC training throughput of kgf-step (candle) against the same model in
# PyTorch (pipeline/bench/gc_torch.py), on the same data, the same thread count and the same
# device, runs alternating (candle, PyTorch, candle, ...) so that both see the same machine load.
# Counts the optimiser steps alone (batch building with the substitutions, forward, backward,
# clipping, AdamW); candle's figure is train-gc's own "reads/s without validation". The model is
# the default read-level GC (every position of a 150-base read in one pass, local attention).
#
# Usage: pipeline/bench/gc-vs-pytorch.sh [OUT_DIR]
# Environment:
#   ROUNDS (3)       pairs of runs
#   STEPS (3)        optimiser steps per run, batch 64 reads (the default preset's)
#   THREADS (nproc)  threads of both frameworks (RAYON_NUM_THREADS / torch.set_num_threads)
#   DEVICE (cpu)     cpu or cuda (both frameworks)
#   KGF_STEP         a kgf-step binary (default: cargo build --release -p kgf-step)
#   PYTHON           a python with torch (default: TORCH_VENV's, created from
#                    pipeline/bench/requirements.txt when missing; TORCH_VENV defaults to
#                    ~/.cache/kgf-step/torch-venv)
#   BF16 (0)         1: PyTorch autocasts its forward pass to bfloat16 (kgf-step stays f32: it has
#                    no mixed precision)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
out=${1:-$(mktemp -d)}
rounds=${ROUNDS:-3}
steps=${STEPS:-3}
threads=${THREADS:-$(nproc)}
device=${DEVICE:-cpu}
bf16=${BF16:-0}
venv=${TORCH_VENV:-$HOME/.cache/kgf-step/torch-venv}
python=${PYTHON:-$venv/bin/python}
mkdir -p "$out"

if [[ -z ${KGF_STEP:-} ]]; then
  cargo build --release -p kgf-step >&2
  KGF_STEP=${CARGO_TARGET_DIR:-target}/release/kgf-step
fi
if [[ -z ${PYTHON:-} && ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi

data=$out/data
if [[ ! -f $data/labels/labels.json ]]; then
  "$KGF_STEP" dataset --preset default --seed 1 --out "$data" 2> "$out/dataset.log"
fi
# Just enough fragments for STEPS batches of 64, so that no read repeats within a run and candle's
# validation pass (on as many reads, not timed) stays short.
limit=$(( steps * 64 ))

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: default GC (128 wide, 2 layers, 4 heads, 512 intermediate, window 10, 145 positions), batch 64 reads, $steps steps per run, $threads threads, device $device, bf16 $bf16"
torch_flags=()
[[ $bf16 == 1 ]] && torch_flags+=(--bf16)

results=$out/results.jsonl
: > "$results"
for ((r = 1; r <= rounds; r++)); do
  rm -rf "$out/gc"
  RAYON_NUM_THREADS=$threads "$KGF_STEP" train-gc --preset default --seed 1 --device "$device" \
    --train "$data/train" --val "$data/val" --labels "$data/labels" --model-out "$out/gc" \
    --max-steps "$steps" --limit "$limit" 2> "$out/candle-$r.log"
  "$python" - "$out/gc/history.json" "$threads" "$device" >> "$results" <<'EOF'
import json, sys
h = json.load(open(sys.argv[1]))
e = h["epochs"][0]
print(json.dumps({"framework": "candle", "threads": int(sys.argv[2]), "device": sys.argv[3],
                  "steps": e["steps"], "seconds": e["train_seconds"],
                  "reads_per_s": e["throughput"]}))
EOF
  "$python" "$here/gc_torch.py" --data "$data" --steps "$steps" --limit "$limit" \
    --threads "$threads" --device "$device" "${torch_flags[@]}" > "$out/torch-$r.log"
  grep '^RESULT ' "$out/torch-$r.log" | cut -d' ' -f2- >> "$results"
  tail -n 2 "$results" | "$python" -c '
import json, sys
c, t = (json.loads(l)["reads_per_s"] for l in sys.stdin)
print(f"round {sys.argv[1]}: candle {c:.1f} reads/s, PyTorch {t:.1f} reads/s, ratio {c / t:.2f}")
' "$r"
done
"$python" - "$results" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
c = [r["reads_per_s"] for r in rows if r["framework"] == "candle"]
t = [r["reads_per_s"] for r in rows if r["framework"] == "pytorch"]
ratios = [a / b for a, b in zip(c, t)]
torch_version = next(r["torch"] for r in rows if r["framework"] == "pytorch")
print(f"candle  median {statistics.median(c):.1f} reads/s (runs: {', '.join(f'{x:.1f}' for x in c)})")
print(f"PyTorch {torch_version} median {statistics.median(t):.1f} reads/s (runs: {', '.join(f'{x:.1f}' for x in t)})")
print(f"ratio candle/PyTorch: median {statistics.median(ratios):.2f} (min {min(ratios):.2f}, max {max(ratios):.2f}, per round)")
EOF
