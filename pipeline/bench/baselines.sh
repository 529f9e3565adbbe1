#!/usr/bin/env bash
# Benchmark (not a test): kgf-step beside the field's standard tools on the same test reads,
# scored by the same code. STAR's chimeric detection (Debian `rna-star`; the panel's transcripts
# as its genome, no splicing) and minimap2 (`minimap2 -x sr`, a chimera = a supplementary
# alignment on another gene) classify the FC test reads (held-out fusion events) and assign the
# GC test reads (drawn independently from the panel, with sequencer errors) to genes; each
# tool's calls go through `kgf-step score`, the scoring test-fc and test-gc use, and kgf-step's
# own calls (test-fc's calls.tsv) through the same command. Reads/s: each tool's wall time on
# the reads (STAR's and minimap2's index builds apart), kgf-step's the test step's.
#
# Usage: pipeline/bench/baselines.sh RUN_DIR [OUT_DIR]
#   RUN_DIR: what `kgf-step all --out RUN_DIR` wrote (data/, gc-model/, fc-model/, ...); with
#   data/ alone (`kgf-step dataset --out RUN_DIR/data`), the aligners alone.
# Environment:
#   KGF_STEP   a kgf-step binary (default: cargo build --release -p kgf-step)
#   THREADS    threads for every tool (default: nproc)
#   PYTHON     python 3 (default: python3)
# Needs: STAR, minimap2 (apt-get install rna-star minimap2 samtools).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
run=$(cd "${1:?usage: baselines.sh RUN_DIR [OUT_DIR]}" && pwd)
cd "$here/../.."
out=${2:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
threads=${THREADS:-$(nproc)}
python=${PYTHON:-python3}
for tool in STAR minimap2; do
  command -v $tool > /dev/null || { echo "baselines.sh: $tool is not installed; apt-get install rna-star minimap2 samtools" >&2; exit 1; }
done
if [[ -z ${KGF_STEP:-} ]]; then
  cargo build --release -p kgf-step >&2
  KGF_STEP=${CARGO_TARGET_DIR:-target}/release/kgf-step
fi
data=$run/data
panel=$data/labels/panel.fa
results=$out/results.jsonl
: > "$results"
now() { date +%s.%N; }

# One result line: task, caller, seconds, reads, and `kgf-step score`'s figures of its calls.
score() { # task caller seconds calls
  local task=$1 caller=$2 secs=$3 calls=$4 m
  m=$("$KGF_STEP" score --task "$task" --test "$data/test" --labels "$data/labels" \
    --calls "$calls" --metrics-out "$out/score-$task-$caller" 2> /dev/null | sed -n 's/^KGF_METRICS //p')
  "$python" -c 'import json,sys; t,c,s,n,m=sys.argv[1:]; print(json.dumps({"task":t,"caller":c,"seconds":float(s),"reads":int(n),"metrics":json.loads(m)}))' \
    "$task" "$caller" "$secs" "$(grep -c '^@' "$out/$task.fq")" "$m" >> "$results"
}

echo "machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), load $(cut -d' ' -f1-3 /proc/loadavg), $threads threads"
echo "STAR $(STAR --version), minimap2 $(minimap2 --version), kgf-step $("$KGF_STEP" --version | cut -d' ' -f2) ($KGF_STEP)"
for task in fc gc; do
  "$python" "$here/baselines.py" fastq "$data" $task "$out/$task.fq"
done

# STAR: the transcripts as the genome (a few hundred kb: a small suffix-array index), no
# introns (a read across two exons of one transcript is contiguous there), chimeric segments of
# at least 12 bases, multimapping chimeras allowed (isoforms share exons).
mkdir -p "$out/star-index"
t0=$(now)
STAR --runMode genomeGenerate --runThreadN "$threads" --genomeDir "$out/star-index" \
  --genomeFastaFiles "$panel" --genomeSAindexNbases 7 --outFileNamePrefix "$out/star-index/" > /dev/null
echo "STAR index: $(echo "$(now) - $t0" | bc) s"
star() { # task
  mkdir -p "$out/star-$1"
  STAR --runThreadN "$threads" --genomeDir "$out/star-index" --readFilesIn "$out/$1.fq" \
    --outFileNamePrefix "$out/star-$1/" --outSAMtype SAM --outSAMunmapped None \
    --alignIntronMax 1 --chimSegmentMin 12 --chimJunctionOverhangMin 12 \
    --chimMultimapNmax 10 --chimOutType Junctions > /dev/null
}
t0=$(now); star fc; secs=$(echo "$(now) - $t0" | bc)
"$python" "$here/baselines.py" star-fc "$data" "$out/star-fc/Chimeric.out.junction" "$out/star-fc.tsv"
score fc STAR "$secs" "$out/star-fc.tsv"
t0=$(now); star gc; secs=$(echo "$(now) - $t0" | bc)
"$python" "$here/baselines.py" sam-gc "$data" "$out/star-gc/Aligned.out.sam" "$out/star-gc.tsv"
score gc STAR "$secs" "$out/star-gc.tsv"

# minimap2, short-read preset; the index is built in the same run (a few hundred kb).
for task in fc gc; do
  t0=$(now)
  minimap2 -t "$threads" -ax sr "$panel" "$out/$task.fq" > "$out/minimap2-$task.sam" 2> /dev/null
  secs=$(echo "$(now) - $t0" | bc)
  "$python" "$here/baselines.py" sam-$task "$data" "$out/minimap2-$task.sam" "$out/minimap2-$task.tsv"
  score $task minimap2 "$secs" "$out/minimap2-$task.tsv"
done

# kgf-step: the test steps on the same reads (model loading and the bootstrap included), when
# RUN_DIR holds the models.
if [[ -d $run/fc-model ]]; then
t0=$(now)
"$KGF_STEP" test-fc --device cpu --test "$data/test" --labels "$data/labels" \
  --gc-model "$run/gc-model" --model "$run/fc-model" --metrics-out "$out/kgf-step-fc" 2> "$out/kgf-step-fc.log" > /dev/null
secs=$(echo "$(now) - $t0" | bc)
score fc kgf-step "$secs" "$out/kgf-step-fc/calls.tsv"
t0=$(now)
"$KGF_STEP" test-gc --device cpu --test "$data/test" --labels "$data/labels" \
  --model "$run/gc-model" --metrics-out "$out/kgf-step-gc" 2> "$out/kgf-step-gc.log" > /dev/null
secs=$(echo "$(now) - $t0" | bc)
"$python" -c 'import json,sys; m=json.load(open(sys.argv[1]))["reads"]; s={k:m[k] for k in ("accuracy","balanced_accuracy")}; [s.update({k+"_ci_low":m["intervals"]["values"][k]["low"], k+"_ci_high":m["intervals"]["values"][k]["high"]}) for k in ("accuracy","balanced_accuracy")]; print(json.dumps({"task":"gc","caller":"kgf-step","seconds":float(sys.argv[2]),"reads":m["samples"],"metrics":s}))' \
  "$out/kgf-step-gc/metrics.json" "$secs" >> "$results"
fi

"$python" "$here/baselines.py" table "$results"
echo "results: $results"
