#!/usr/bin/env bash
# Load benchmark of `kgf-step serve` (not a test): N concurrent clients on loopback
# (pipeline/examples/serve_load.rs) against the server with its request batching on
# (--max-batch 256 --max-wait-ms 2) and off (--max-batch 1 --max-wait-ms 0, one forward pass per
# request, what a server without a batcher does), alternating, ROUNDS rounds each; every run is
# bounded by a request count and a time limit. Prints one JSON line per run and the medians.
# The model is `kgf-step all --preset tiny` (the preset the tests use); the reads are random
# bases of the model's read length (the cost of a forward pass does not depend on the bases).
# Usage: pipeline/serve-bench.sh [CLIENTS] [READS_PER_REQUEST] [REQUESTS] [ROUNDS]
# Environment: CARGO_PROFILE (default release), CARGO_TARGET_DIR (default target), BENCH_NO_BUILD
# (set: use the binaries already built).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-16} per=${2:-1} requests=${3:-2000} rounds=${4:-3}
profile=${CARGO_PROFILE:-release}
target=${CARGO_TARGET_DIR:-target}
dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
[ -n "${BENCH_NO_BUILD:-}" ] || cargo build --profile "$profile" -p kgf-step --bin kgf-step --example serve_load >&2
bin=$target/$dir/kgf-step load=$target/$dir/examples/serve_load
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); profile $profile" >&2
"$bin" all --preset tiny --seed 1 --device cpu --out "$work/model" 2>/dev/null
len=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["read_length"])' "$work/model/data/labels/labels.json")
python3 -c 'import random,sys; random.seed(1); n=int(sys.argv[1]); print("\n".join("".join(random.choice("ACGT") for _ in range(n)) for _ in range(1000)))' "$len" > "$work/reads.txt"

run() { # NAME SERVE-FLAGS...
  local name=$1; shift
  "$bin" serve --model "$work/model" --bind 127.0.0.1 --port 0 --device cpu "$@" 2> "$work/serve.log" &
  local pid=$!
  local addr=""
  for _ in $(seq 200); do
    addr=$(sed -n 's/^kgf-step: serving on //p' "$work/serve.log")
    [ -n "$addr" ] && curl -sf "http://$addr/v2/health/ready" >/dev/null && break
    sleep 0.1
  done
  "$load" "http://$addr/v2/models/gene-fusion/infer" "$work/reads.txt" \
    --clients "$clients" --reads "$per" --requests "$requests" --seconds 120 |
    sed "s/^{/{\"server\":\"$name\",/" | tee -a "$work/results.jsonl"
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

for _ in $(seq "$rounds"); do
  run batched --max-batch 256 --max-wait-ms 2
  run unbatched --max-batch 1 --max-wait-ms 0
done
python3 - "$work/results.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
med = {}
for s in ("batched", "unbatched"):
    r = [x for x in rows if x["server"] == s]
    med[s] = {k: statistics.median(x[k] for x in r) for k in ("p50_ms", "p99_ms", "reads_per_s")}
    print(f"{s}: median p50 {med[s]['p50_ms']:.2f} ms, p99 {med[s]['p99_ms']:.2f} ms, {med[s]['reads_per_s']:.0f} reads/s "
          f"({len(r)} runs, errors {sum(x['errors'] for x in r)})")
print(f"batched / unbatched reads/s: {med['batched']['reads_per_s'] / med['unbatched']['reads_per_s']:.2f}x")
PY
