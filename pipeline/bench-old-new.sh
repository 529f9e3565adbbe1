#!/usr/bin/env bash
# Benchmark (not a test): the dataset step of this tree against the one of an earlier revision,
# same machine, alternating runs. Both run `dataset --preset default --seed 1`.
# Usage: pipeline/bench-dataset.sh [OLD_REV] [RUNS]   (default: bc05d0c, the last commit before
#   the leak-free splits; 5 runs each). Needs /usr/bin/time (Debian package `time`).
# Build: kgf-step itself optimised (opt-level 3, no debug assertions) over the dev profile's
#   dependencies (opt-level 1), for both trees: the dataset step spends its time in kgf-step's
#   own code, and this reuses the dependencies the tests already built instead of a release
#   build of candle (which a 2-core machine cannot afford). BENCH_RELEASE=1 builds --release.
# Environment: CARGO_TARGET_DIR (default target; the old tree builds into the same one, so the
#   dependencies are compiled once).
set -euo pipefail
cd "$(dirname "$0")/.."
old_rev=${1:-bc05d0c}
runs=${2:-5}
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
"${build[@]}" >&2
cp "$target/$bin" "$work/new-bin"
(cd "$work/old" && CARGO_TARGET_DIR="$target" "${build[@]}" >&2)
cp "$target/$bin" "$work/old-bin"
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
one() { # NAME: one run; prints "wall_seconds reads"
  rm -rf "$work/out"
  /usr/bin/time -f '%e' -o "$work/time" "$work/$1-bin" dataset --preset default --seed 1 \
    --out "$work/out" 2> "$work/log"
  echo "$(cat "$work/time") $(grep -o '[0-9]* FC reads' "$work/log" | head -1 | cut -d' ' -f1)"
}
old=() new=()
for i in $(seq "$runs"); do
  old+=("$(one old)")
  new+=("$(one new)")
  echo "run $i: old ${old[-1]}  new ${new[-1]}  (seconds, reads)"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
o=$(printf '%s\n' "${old[@]}" | cut -d' ' -f1 | median)
n=$(printf '%s\n' "${new[@]}" | cut -d' ' -f1 | median)
or=$(echo "${old[0]}" | cut -d' ' -f2)
nr=$(echo "${new[0]}" | cut -d' ' -f2)
awk -v o="$o" -v n="$n" -v or="$or" -v nr="$nr" 'BEGIN {
  printf "median wall: old %.2f s (%d reads), new %.2f s (%d reads); new/old time %.2f\n", o, or, n, nr, n / o
  printf "reads/s: old %.0f, new %.0f\n", or / o, nr / n }'
