//! The splits of `kgf-step dataset` cannot leak, and the GC is trained on what it is for: each
//! test is named after what it pins and reads the split files as a user auditing them would
//! (`.npy` columns, `labels/panel.fa`), on the default preset with seed 1 (the configuration
//! the figures in docs/benchmarks.md come from).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kgf_step::config::{PresetName, preset};
use kgf_step::dataset::{self, DataOut, Labels, SPLITS, fc_columns, gc_columns};
use kgf_step::format::{Fields, Reader};

/// The default dataset with seed 1, written once per test run.
fn default_dataset() -> &'static (PathBuf, Labels) {
    static DATA: OnceLock<(PathBuf, Labels)> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("splits-default-seed1");
        let labels = dataset::run(&preset(PresetName::Default).data, 1, &DataOut::under(&dir))
            .expect("dataset step");
        (dir, labels)
    })
}

struct GcRow {
    strand: u64,
    label: u64,
    tokens: Vec<u16>,
}

fn gc_rows(dir: &Path, labels: &Labels, split: &str) -> Vec<GcRow> {
    let mut r = Reader::open(&dir.join(split).join("gc.npy"), &gc_columns(labels.kmers)).unwrap();
    let mut rows = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let mut f = Fields::new(rec);
        let (_transcript, _offset, strand, _span, label) =
            (f.uint(4), f.uint(4), f.uint(1), f.uint(2), f.uint(2));
        let mut tokens = Vec::new();
        f.u16s(labels.kmers, &mut tokens);
        rows.push(GcRow {
            strand,
            label,
            tokens,
        });
    }
    rows
}

#[derive(Debug)]
struct FcRow {
    fusion: u64,
    pair: u64,
    start: u64,
    span: u64,
    breakpoint: u64,
    mate: u64,
    label: u64,
    genes: (u64, u64),
}

fn fc_rows(dir: &Path, labels: &Labels, split: &str) -> Vec<FcRow> {
    let mut r = Reader::open(&dir.join(split).join("fc.npy"), &fc_columns(labels.kmers)).unwrap();
    let mut rows = Vec::new();
    while let Some(rec) = r.next_record().unwrap() {
        let mut f = Fields::new(rec);
        rows.push(FcRow {
            fusion: f.uint(4),
            pair: f.uint(4),
            start: f.uint(4),
            span: f.uint(2),
            breakpoint: f.uint(4),
            mate: f.uint(1),
            label: f.uint(1),
            genes: (f.uint(2), f.uint(2)),
        });
    }
    rows
}

#[test]
fn no_fc_test_read_has_a_fusion_id_or_junction_seen_in_train() {
    let (dir, labels) = default_dataset();
    let train = fc_rows(dir, labels, "train");
    let train_ids: HashSet<u64> = train.iter().map(|r| r.fusion).collect();
    // A fusion event is its partners and breakpoint; none of a test fusion's is in train either.
    let train_events: HashSet<(u64, u64, u64)> = train
        .iter()
        .map(|r| (r.genes.0, r.genes.1, r.breakpoint))
        .collect();
    for split in ["val", "test"] {
        let rows = fc_rows(dir, labels, split);
        let ids: HashSet<u64> = rows.iter().map(|r| r.fusion).collect();
        assert!(
            ids.is_disjoint(&train_ids),
            "{split} shares fusion ids with train"
        );
        let leaked = rows
            .iter()
            .filter(|r| train_events.contains(&(r.genes.0, r.genes.1, r.breakpoint)))
            .count();
        assert_eq!(
            leaked, 0,
            "{leaked} {split} reads share a train junction's 5' side"
        );
    }
    // Big enough for an interval: ≥ 40 test fusions, ≥ 300 chimeric test reads.
    let test = fc_rows(dir, labels, "test");
    let fusions: HashSet<u64> = test.iter().map(|r| r.fusion).collect();
    let chimeric = test.iter().filter(|r| r.label == 0).count();
    assert!(fusions.len() >= 40, "{} test fusions", fusions.len());
    assert!(chimeric >= 300, "{chimeric} chimeric test reads");
}

#[test]
fn both_mates_of_a_pair_are_in_the_same_split() {
    let (dir, labels) = default_dataset();
    let mut split_of: HashMap<(u64, u64), &str> = HashMap::new();
    let mut mates: HashMap<(u64, u64), u32> = HashMap::new();
    for split in ["train", "val", "test"] {
        for r in fc_rows(dir, labels, split) {
            let prev = split_of.insert((r.fusion, r.pair), split);
            assert!(
                prev.is_none() || prev == Some(split),
                "pair {:?} in two splits",
                (r.fusion, r.pair)
            );
            *mates.entry((r.fusion, r.pair)).or_default() += 1;
            assert!(r.mate == 1 || r.mate == 2);
        }
    }
    // Only dropped ambiguous mates break a pair.
    let whole = mates.values().filter(|&&n| n == 2).count();
    assert!(
        whole as f64 > 0.9 * mates.len() as f64,
        "{whole} of {} pairs whole",
        mates.len()
    );
}

#[test]
fn a_chimeric_read_has_min_anchor_bases_on_each_partner_and_no_read_is_mislabelled() {
    let (dir, labels) = default_dataset();
    let a = labels.config.reads.min_anchor as u64;
    assert_eq!(a, 20);
    let mut chimeric = 0;
    for split in ["train", "val", "test"] {
        for r in fc_rows(dir, labels, split) {
            let (s, e, bp) = (r.start, r.start + r.span, r.breakpoint);
            if r.label == 0 {
                chimeric += 1;
                assert!(
                    bp - s >= a && e - bp >= a,
                    "chimeric read with anchors {} / {}",
                    bp.saturating_sub(s),
                    e.saturating_sub(bp)
                );
            } else {
                assert!(
                    e <= bp || s >= bp,
                    "a read across the junction labelled not chimeric: {r:?}"
                );
            }
        }
    }
    assert!(chimeric > 0 && labels.fc_ambiguous > 0);
}

#[test]
fn the_gc_training_split_holds_every_window_of_every_panel_transcript_on_both_strands() {
    let (dir, labels) = default_dataset();
    let panel = kgf_step::transcripts::read_fasta(&dir.join("labels/panel.fa")).unwrap();
    assert_eq!(
        panel.genes, labels.genes,
        "panel.fa names the genes in label order"
    );
    let words = labels.words;
    let train = gc_rows(dir, labels, "train");
    let windows: HashSet<&[u16]> = train.iter().flat_map(|r| r.tokens.windows(words)).collect();
    let (mut checked, mut bases) = (0usize, 0usize);
    for t in &panel.transcripts {
        bases += t.seq.len();
        for seq in [
            t.seq.clone(),
            kgf_step::simulate::reverse_complement(&t.seq),
        ] {
            let mut tokens = Vec::new();
            kgf_step::vocab::tokenize(&seq, labels.k, &mut tokens);
            for (p, w) in tokens.windows(words).enumerate() {
                assert!(
                    windows.contains(w),
                    "{}: the window at {p} (either strand) is in no training fragment",
                    t.name
                );
                checked += 1;
            }
        }
    }
    // Every window covers every base: the whole panel, both strands.
    assert!(
        checked > 2 * bases * 9 / 10,
        "{checked} windows of {bases} bases"
    );
}

#[test]
fn no_gc_test_or_validation_read_equals_a_training_fragment() {
    let (dir, labels) = default_dataset();
    let train = gc_rows(dir, labels, "train");
    let fragments: HashSet<&[u16]> = train.iter().map(|r| r.tokens.as_slice()).collect();
    for split in ["val", "test"] {
        let rows = gc_rows(dir, labels, split);
        assert!(!rows.is_empty());
        let same = rows
            .iter()
            .filter(|r| fragments.contains(r.tokens.as_slice()))
            .count();
        assert_eq!(same, 0, "{same} {split} reads equal a training fragment");
    }
    // The redraws that keep it so are few: only an error-free read at a fragment's offset.
    assert!(labels.gc_reads_redrawn < 100, "{}", labels.gc_reads_redrawn);
}

#[test]
fn gc_test_reads_are_drawn_apart_from_validation_ones_on_both_strands_for_every_gene() {
    let (dir, labels) = default_dataset();
    let test = gc_rows(dir, labels, "test");
    let val = gc_rows(dir, labels, "val");
    let per_gene = labels.config.gc.test_reads;
    for g in 0..labels.genes.len() as u64 {
        let of_gene: Vec<&GcRow> = test.iter().filter(|r| r.label == g).collect();
        assert_eq!(of_gene.len(), per_gene, "{}", labels.genes[g as usize]);
        let minus = of_gene.iter().filter(|r| r.strand == 1).count();
        assert!(
            minus > per_gene / 4 && minus < 3 * per_gene / 4,
            "{}: {minus} of {per_gene} on the minus strand",
            labels.genes[g as usize]
        );
    }
    let val_reads: HashSet<&[u16]> = val.iter().map(|r| r.tokens.as_slice()).collect();
    let shared = test
        .iter()
        .filter(|r| val_reads.contains(r.tokens.as_slice()))
        .count();
    // Independent draws can meet by chance (an error-free read at the same start of the same
    // strand of a short transcript), rarely: a shared stream would share every read.
    assert!(
        shared * 100 < test.len(),
        "{shared} of {} test reads are validation reads",
        test.len()
    );
}

#[test]
fn hold_out_pairs_keeps_every_gene_pair_in_one_split() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = preset(PresetName::Tiny).data;
    cfg.hold_out_pairs = true;
    cfg.fusions_per_gene = 20;
    let labels = dataset::run(&cfg, 3, &DataOut::under(dir.path())).unwrap();
    let mut split_of: HashMap<(u64, u64), &str> = HashMap::new();
    for s in SPLITS {
        for r in fc_rows(dir.path(), &labels, s.name()) {
            let pair = (r.genes.0.min(r.genes.1), r.genes.0.max(r.genes.1));
            let prev = split_of.insert(pair, s.name());
            assert!(
                prev.is_none() || prev == Some(s.name()),
                "gene pair {pair:?} in two splits"
            );
        }
    }
    assert!(
        split_of.values().any(|&s| s == "test"),
        "some pair is held out"
    );
}
