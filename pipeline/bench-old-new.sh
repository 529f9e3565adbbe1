#!/usr/bin/env bash
# Benchmark (not a test): one step of this tree against the same step of an earlier revision,
# same machine, alternating runs.
# Usage: pipeline/bench-old-new.sh STEP [OLD_REV] [RUNS]   (5 runs each by default)
#   dataset   `dataset --preset default --seed 1` (OLD_REV default bc05d0c, the last commit before
#             the leak-free splits); figures: wall time and FC reads.
#   features  the frozen GC over every sentence of the default dataset's GC test split
#             (`test-gc`, 2,144 fragments × 126 sentences), with a default-architecture GC that
#             took one step (its weights do not change the work); OLD_REV default a87a36d, the
#             last commit that ran the GC over every sentence; figures: wall time and the
#             sentences the GC was asked for. A subset (`--limit`) would not do: the repeats
#             come from coverage, which a subset of reads or fragments loses.
# Needs /usr/bin/time (Debian package `time`).
# Build: `dataset` spends its time in kgf-step's own code, so kgf-step alone is optimised
#   (opt-level 3, no debug assertions) over the dev profile's dependencies (opt-level 1), for
#   both trees: this reuses what the tests built instead of a release build of candle, which a
#   2-core machine can ill afford. `features` spends it in candle's and gemm's code: it always
#   builds --release. BENCH_RELEASE=1 builds --release for `dataset` too.
# Environment: CARGO_TARGET_DIR (default target; the old tree builds into the same one, so the
#   dependencies are compiled once).
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:?usage: pipeline/bench-old-new.sh dataset|features [OLD_REV] [RUNS]}
case $step in
  dataset) old_rev=${2:-bc05d0c} ;;
  features) old_rev=${2:-a87a36d} BENCH_RELEASE=1 ;;
  *) echo "bench-old-new: unknown step '$step'; use dataset or features" >&2; exit 2 ;;
esac
runs=${3:-5}
target=$(realpath -m "${CARGO_TARGET_DIR:-target}")
if [ "${BENCH_RELEASE:-0}" = 1 ]; then
  build=(cargo build --release -p kgf-step); bin=release/kgf-step
else
  build=(cargo build -p kgf-step
    --config 'profile.dev.package.kgf-step.opt-level=3'
    --config 'profile.dev.package.kgf-step.debug-assertions=false'
    --config 'profile.dev.package.kgf-step.overflow-checks=false')
  bin=debug/kgf-step
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/old"
git archive "$old_rev" | tar -x -C "$work/old"
# The two trees share kgf-step's package id, so cargo would take the one built last as fresh
# for the other (its freshness check reads the mtimes of the files the last build listed):
# each build first removes kgf-step's own artifacts (not its dependencies').
clean=(cargo clean -p kgf-step); [ "${BENCH_RELEASE:-0}" = 1 ] && clean+=(--release)
"${clean[@]}" >&2 && "${build[@]}" >&2
cp "$target/$bin" "$work/new-bin"
(cd "$work/old" && CARGO_TARGET_DIR="$target" "${clean[@]}" >&2 && CARGO_TARGET_DIR="$target" "${build[@]}" >&2)
cp "$target/$bin" "$work/old-bin"
"${clean[@]}" >&2
cmp -s "$work/new-bin" "$work/old-bin" && { echo "bench-old-new: the two builds are the same binary" >&2; exit 1; }

if [ "$step" = features ]; then
  "$work/new-bin" dataset --preset default --seed 1 --out "$work/data" 2>/dev/null
  "$work/new-bin" train-gc --max-steps 1 --limit 20 --train "$work/data/train" \
    --val "$work/data/val" --labels "$work/data/labels" --model-out "$work/gc" 2>/dev/null
  # GC test fragments × sentences per fragment (k-mers − words + 1).
  sentences=$(python3 -c 'import json,sys; l=json.load(open(sys.argv[1])); t=[c for c in l["counts"] if c["split"]=="test"][0]; print(t["gc_fragments"]*(l["kmers"]-l["words"]+1))' "$work/data/labels/labels.json")
fi
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
one() { # NAME: one run; prints "wall_seconds count"
  rm -rf "$work/out"
  if [ "$step" = dataset ]; then
    /usr/bin/time -f '%e' -o "$work/time" "$work/$1-bin" dataset --preset default --seed 1 \
      --out "$work/out" 2> "$work/log"
    echo "$(cat "$work/time") $(grep -o '[0-9]* FC reads' "$work/log" | head -1 | cut -d' ' -f1)"
  else
    /usr/bin/time -f '%e' -o "$work/time" "$work/$1-bin" test-gc --test "$work/data/test" \
      --labels "$work/data/labels" --model "$work/gc" --metrics-out "$work/out" \
      > /dev/null 2> "$work/log"
    echo "$(cat "$work/time") $sentences"
  fi
}
unit=$([ "$step" = dataset ] && echo reads || echo sentences)
old=() new=()
for i in $(seq "$runs"); do
  old+=("$(one old)")
  new+=("$(one new)")
  echo "run $i: old ${old[-1]}  new ${new[-1]}  (seconds, $unit)"
done
[ "$step" = dataset ] || grep 'of them distinct' "$work/log" || true
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
o=$(printf '%s\n' "${old[@]}" | cut -d' ' -f1 | median)
n=$(printf '%s\n' "${new[@]}" | cut -d' ' -f1 | median)
oc=$(echo "${old[0]}" | cut -d' ' -f2)
nc=$(echo "${new[0]}" | cut -d' ' -f2)
awk -v o="$o" -v n="$n" -v oc="$oc" -v nc="$nc" -v u="$unit" 'BEGIN {
  printf "median wall: old %.2f s (%d %s), new %.2f s (%d %s); new/old time %.2f\n", o, oc, u, n, nc, u, n / o
  printf "%s/s: old %.0f, new %.0f\n", u, oc / o, nc / n }'
