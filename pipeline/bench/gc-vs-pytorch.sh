#!/usr/bin/env bash
# Benchmark (not a test): GC training throughput of kgf-step (candle) against the same model in
# PyTorch (pipeline/bench/gc_torch.py), on the same data, the same thread count and the same
# device, runs alternating (candle, PyTorch, candle, ...) so that both see the same machine load.
# Counts the optimiser steps alone (batch building with the substitutions, forward, backward,
# clipping, AdamW); candle's figure is train-gc's own "reads/s without validation". The model is
# the default read-level GC (every position of a 150-base read in one pass, local attention).
# Beside it, each whole process's CPU time (user + sys, /usr/bin/time): on a machine shared with
# other work the wall-clock pace of two runs in a row differs with the load, their CPU seconds
# much less. The whole process includes PyTorch's import and candle's validation pass, cut to 64
# reads for this.
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
# Just enough fragments for STEPS batches of 64, so that no read repeats within a run.
limit=$(( steps * 64 ))
# candle's validation split cut to its first 64 reads (the .npy header's shape rewritten in place,
# padded to its length), so that its whole-process CPU time is the training's.
if [[ ! -f $out/val64/gc.npy ]]; then
  mkdir -p "$out/val64"
  "$python" - "$data/val/gc.npy" "$out/val64/gc.npy" <<'EOF'
import ast, sys
import numpy as np
raw = open(sys.argv[1], "rb").read()
size, start = (2, 10) if raw[6] == 1 else (4, 12)
length = int.from_bytes(raw[8:8 + size], "little")
header = raw[start:start + length].decode("latin1")
meta = ast.literal_eval(header)
n = min(64, meta["shape"][0])
cut = header.replace(f"'shape': ({meta['shape'][0]},)", f"'shape': ({n},)")
cut += " " * (len(header) - len(cut))
body = raw[start + length:][: n * np.dtype(meta["descr"]).itemsize]
open(sys.argv[2], "wb").write(raw[:start] + cut.encode("latin1") + body)
EOF
fi

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: default GC (128 wide, 2 layers, 4 heads, 512 intermediate, window 10, 145 positions), batch 64 reads, $steps steps per run, $threads threads, device $device, bf16 $bf16"
torch_flags=()
[[ $bf16 == 1 ]] && torch_flags+=(--bf16)

results=$out/results.jsonl
: > "$results"
for ((r = 1; r <= rounds; r++)); do
  rm -rf "$out/gc"
  RAYON_NUM_THREADS=$threads /usr/bin/time -f '%U %S' -o "$out/candle-$r.cpu" \
    "$KGF_STEP" train-gc --preset default --seed 1 --device "$device" \
    --train "$data/train" --val "$out/val64" --labels "$data/labels" --model-out "$out/gc" \
    --max-steps "$steps" --limit "$limit" 2> "$out/candle-$r.log"
  "$python" - "$out/gc/history.json" "$threads" "$device" "$out/candle-$r.cpu" >> "$results" <<'EOF'
import json, sys
h = json.load(open(sys.argv[1]))
e = h["epochs"][0]
print(json.dumps({"framework": "candle", "threads": int(sys.argv[2]), "device": sys.argv[3],
                  "steps": e["steps"], "seconds": e["train_seconds"],
                  "reads_per_s": e["throughput"],
                  "process_cpu_s": sum(map(float, open(sys.argv[4]).read().split()[-2:]))}))
EOF
  /usr/bin/time -f '%U %S' -o "$out/torch-$r.cpu" \
    "$python" "$here/gc_torch.py" --data "$data" --steps "$steps" --limit "$limit" \
    --threads "$threads" --device "$device" "${torch_flags[@]}" > "$out/torch-$r.log"
  grep '^RESULT ' "$out/torch-$r.log" | cut -d' ' -f2- | "$python" -c '
import json, sys
r = json.loads(sys.stdin.read())
r["process_cpu_s"] = sum(map(float, open(sys.argv[1]).read().split()[-2:]))
print(json.dumps(r))
' "$out/torch-$r.cpu" >> "$results"
  tail -n 2 "$results" | "$python" -c '
import json, sys
c, t = (json.loads(l) for l in sys.stdin)
cr, tr, cs, ts = c["reads_per_s"], t["reads_per_s"], c["process_cpu_s"], t["process_cpu_s"]
print(f"round {sys.argv[1]}: candle {cr:.1f} reads/s, PyTorch {tr:.1f} reads/s, ratio {cr / tr:.2f}; "
      f"process CPU candle {cs:.1f} s, PyTorch {ts:.1f} s")
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
cc = [r["process_cpu_s"] for r in rows if r["framework"] == "candle"]
tc = [r["process_cpu_s"] for r in rows if r["framework"] == "pytorch"]
speed = [b / a for a, b in zip(cc, tc)]
print(f"whole-process CPU s: candle median {statistics.median(cc):.1f}, PyTorch median {statistics.median(tc):.1f}; "
      f"candle/PyTorch speed by CPU (PyTorch's s / candle's, per round): median {statistics.median(speed):.2f} "
      f"(min {min(speed):.2f}, max {max(speed):.2f})")
EOF
