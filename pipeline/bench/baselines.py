"""The aligners' side of pipeline/bench/baselines.sh: the test reads of a `kgf-step dataset` as
FASTQ, the aligners' output (STAR's Chimeric.out.junction and SAM, minimap2's SAM) as calls files
that `kgf-step score` reads (the same scoring as test-fc's and test-gc's), and the final table.

    python baselines.py fastq DATA gc|fc OUT.fq
    python baselines.py star-fc DATA Chimeric.out.junction OUT.tsv
    python baselines.py sam-fc DATA ALIGNED.sam OUT.tsv
    python baselines.py sam-gc DATA ALIGNED.sam OUT.tsv
    python baselines.py table RESULTS.jsonl

A reference name is `GENE|TRANSCRIPT` (the dataset's labels/panel.fa), so the gene of an
alignment is the part before `|`. A read is named by its index in the split.
"""

import ast
import collections
import json
import os
import struct
import sys

ALPHABET = "ATCGN"
CALLS_HEADER = "read\tchimeric\tscore\tgene_a\tgene_b"


def load_npy(path):
    """The records of a `kgf-step dataset` .npy file (a structured array of little-endian
    unsigned fields and one token column), as dicts; pure Python, so no numpy is needed."""
    with open(path, "rb") as f:
        magic = f.read(8)
        assert magic[:6] == b"\x93NUMPY", f"{path}: not a .npy file"
        size = struct.unpack("<H" if magic[6] == 1 else "<I", f.read(2 if magic[6] == 1 else 4))[0]
        header = ast.literal_eval(f.read(size).decode("latin1"))
        fields = []
        for name, typ, *shape in header["descr"]:
            width, count = int(typ[2:]), (shape[0][0] if shape else 1)
            fields.append((name, width, count))
        record = sum(w * c for _, w, c in fields)
        rows = []
        while chunk := f.read(record):
            row, at = {}, 0
            for name, width, count in fields:
                vals = [int.from_bytes(chunk[at + i * width:at + (i + 1) * width], "little") for i in range(count)]
                row[name] = vals if name == "tokens" else vals[0]
                at += width * count
            rows.append(row)
        return rows


def kmer(token, k):
    v, s = token - 5, []
    for _ in range(k):
        s.append(ALPHABET[v % 5])
        v //= 5
    return "".join(reversed(s))


def read_bases(tokens, k):
    """A read's bases from its k-mer ids (stride 1), as kgf-step's classify::read_bases."""
    return kmer(tokens[0], k) + "".join(kmer(t, k)[-1] for t in tokens[1:])


def labels(data):
    return json.load(open(os.path.join(data, "labels", "labels.json")))


def fastq(data, task, out):
    k = labels(data)["k"]
    rows = load_npy(os.path.join(data, "test", f"{task}.npy"))
    with open(out, "w") as f:
        for i, r in enumerate(rows):
            seq = read_bases(r["tokens"], k)
            f.write(f"@{i}\n{seq}\n+\n{'I' * len(seq)}\n")


def gene(ref):
    return ref.split("|", 1)[0]


def write_calls(out, reads, calls):
    with open(out, "w") as f:
        f.write(CALLS_HEADER + "\n")
        for i in range(reads):
            if i in calls:
                a, b = calls[i]
                f.write(f"{i}\t1\t1\t{a}\t{b}\n")
            else:
                f.write(f"{i}\t0\t0\t\t\n")


def test_reads(data, task):
    return len(load_npy(os.path.join(data, "test", f"{task}.npy")))


def star_fc(data, junctions, out):
    """Chimeric.out.junction: one line per chimeric alignment (several for a read whose
    segments map to several isoforms); a read is chimeric when its segments lie on two genes,
    with the pair most of its lines name."""
    pairs = collections.defaultdict(collections.Counter)
    for line in open(junctions):
        f = line.rstrip("\n").split("\t")
        if len(f) < 10 or f[0].startswith("#") or f[0] == "chr_donorA":
            continue
        a, b = gene(f[0]), gene(f[3])
        if a != b:
            pairs[int(f[9])][tuple(sorted((a, b)))] += 1
    calls = {r: c.most_common(1)[0][0] for r, c in pairs.items()}
    write_calls(out, test_reads(data, "fc"), calls)


def sam_records(sam):
    for line in open(sam):
        if line.startswith("@"):
            continue
        f = line.split("\t")
        yield int(f[0]), int(f[1]), f[2]


def sam_fc(data, sam, out):
    """A read is chimeric when a supplementary alignment (flag 0x800) lies on another gene than
    its primary one (neither secondary 0x100 nor unmapped 0x4)."""
    primary, supplementary = {}, collections.defaultdict(list)
    for read, flag, ref in sam_records(sam):
        if flag & 0x4 or flag & 0x100:
            continue
        if flag & 0x800:
            supplementary[read].append(gene(ref))
        else:
            primary[read] = gene(ref)
    calls = {}
    for read, others in supplementary.items():
        a = primary.get(read)
        other = [g for g in others if g != a]
        if a is not None and other:
            calls[read] = tuple(sorted((a, collections.Counter(other).most_common(1)[0][0])))
    write_calls(out, test_reads(data, "fc"), calls)


def sam_gc(data, sam, out):
    """The gene of each read's primary alignment; unmapped reads get none."""
    primary = {}
    for read, flag, ref in sam_records(sam):
        if not (flag & 0x4 or flag & 0x100 or flag & 0x800):
            primary[read] = gene(ref)
    n = test_reads(data, "gc")
    with open(out, "w") as f:
        f.write("read\tgene\n")
        for i in range(n):
            f.write(f"{i}\t{primary.get(i, '')}\n")


def interval(m, name):
    v = m.get(name)
    lo, hi = m.get(f"{name}_ci_low"), m.get(f"{name}_ci_high")
    if v is None:
        return "n/a"
    return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{v:.3f}"


def table(results):
    rows = [json.loads(l) for l in open(results)]
    fc = [r for r in rows if r["task"] == "fc"]
    gc = [r for r in rows if r["task"] == "gc"]
    if fc:
        reads = fc[0]["reads"]
        print(f"\nFC test reads ({reads} reads, held-out fusion events); events at >= {int(fc[0]['metrics']['event_min_support'])} supporting reads; 95% cluster-bootstrap intervals over events")
        names = ["read_precision", "read_recall", "read_f1", "read_pr_auc", "read_balanced_accuracy",
                 "event_precision", "event_recall", "event_f1", "event_partner_accuracy", "event_pr_auc"]
        print("| caller | " + " | ".join(names) + " | wall s | reads/s |")
        print("|---" * (len(names) + 3) + "|")
        for r in fc:
            m = r["metrics"]
            print(f"| {r['caller']} | " + " | ".join(interval(m, n) for n in names)
                  + f" | {r['seconds']:.2f} | {reads / r['seconds']:,.0f} |")
    if gc:
        reads = gc[0]["reads"]
        print(f"\nGC test reads ({reads} reads drawn independently from the panel, with sequencer errors); 95% intervals")
        print("| caller | accuracy per read | balanced accuracy | wall s | reads/s |")
        print("|---|---|---|---|---|")
        for r in gc:
            m = r["metrics"]
            print(f"| {r['caller']} | {interval(m, 'accuracy')} | {interval(m, 'balanced_accuracy')}"
                  f" | {r['seconds']:.2f} | {reads / r['seconds']:,.0f} |")


def main():
    cmd, *args = sys.argv[1:]
    {"fastq": fastq, "star-fc": star_fc, "sam-fc": sam_fc, "sam-gc": sam_gc, "table": table}[cmd](*args)


if __name__ == "__main__":
    main()
