//! The `dataset` step: reference → GC fragments and FC reads → k-mer tokens → seeded
//! 80/10/10 split made once at read level → three split artifacts (`gc.npy`, `fc.npy`, optional
//! CSV) and the label-map artifact (`labels.json`, `vocab.txt`).
//!
//! Streams: one fusion's reads are in memory at a time and every record goes straight to its
//! split's file, so memory does not grow with the number of reads. Also loads the split files
//! back for the model steps.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::{Column, Fields, FormatError, Reader, Writer};
use crate::rng;
use crate::simulate::{self, CHIMERIC, ReadConfig};
use crate::transcripts::{self, FastaError, Reference, SynthConfig};
use crate::vocab;

/// The three splits, in file order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

pub const SPLITS: [Split; 3] = [Split::Train, Split::Val, Split::Test];

impl Split {
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// The split of record `index` of `kind` ("gc" or "fc"): a pure function of the seed and the
/// record's identity, so it is made once and identical on every run with the same seed.
pub fn split_of(seed: u64, kind: &str, index: u64) -> Split {
    let u = (rng::key(seed, kind, index) >> 11) as f64 / (1u64 << 53) as f64;
    if u < 0.8 {
        Split::Train
    } else if u < 0.9 {
        Split::Val
    } else {
        Split::Test
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataConfig {
    pub synth: SynthConfig,
    /// A FASTA of transcripts used instead of the synthetic reference.
    pub transcripts: Option<PathBuf>,
    pub fusions_per_gene: usize,
    pub reads: ReadConfig,
    pub k: usize,
    pub words: usize,
    pub csv: bool,
}

/// Where the dataset step writes its four artifacts.
#[derive(Clone, Debug)]
pub struct DataOut {
    pub train: PathBuf,
    pub val: PathBuf,
    pub test: PathBuf,
    pub labels: PathBuf,
}

impl DataOut {
    pub fn under(dir: &Path) -> Self {
        Self {
            train: dir.join("train"),
            val: dir.join("val"),
            test: dir.join("test"),
            labels: dir.join("labels"),
        }
    }

    fn split(&self, s: Split) -> &Path {
        match s {
            Split::Train => &self.train,
            Split::Val => &self.val,
            Split::Test => &self.test,
        }
    }
}

/// The label-map artifact: what the ids in the split files mean.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Labels {
    pub genes: Vec<String>,
    /// FC label → name (0 chimeric, 1 not chimeric).
    pub fc_labels: Vec<String>,
    pub k: usize,
    pub words: usize,
    pub read_length: usize,
    /// k-mers per read (read_length - k + 1).
    pub kmers: usize,
    pub vocab_size: usize,
    pub seed: u64,
    pub counts: Vec<SplitCounts>,
    pub config: DataConfig,
}

impl Labels {
    /// Sentences (windows of `words` k-mers, stride 1) per read.
    pub fn sentences(&self) -> usize {
        self.kmers - self.words + 1
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SplitCounts {
    pub split: String,
    pub gc_fragments: u64,
    pub fc_reads: u64,
    pub fc_chimeric: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error(transparent)]
    Fasta(#[from] FastaError),
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a label map written by `kgf-step dataset`: {source}")]
    Labels {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("invalid dataset configuration: {0}")]
    Config(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DatasetError + '_ {
    move |source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn gc_columns(kmers: usize) -> Vec<Column> {
    vec![
        Column::scalar("transcript", 4),
        Column::scalar("offset", 4),
        Column::scalar("label", 2),
        Column {
            name: "tokens",
            width: 2,
            count: kmers,
        },
    ]
}

pub fn fc_columns(kmers: usize) -> Vec<Column> {
    vec![
        Column::scalar("fusion", 4),
        Column::scalar("start", 4),
        Column::scalar("breakpoint", 4),
        Column::scalar("mate", 1),
        Column::scalar("label", 1),
        Column::scalar("five_gene", 2),
        Column::scalar("three_gene", 2),
        Column {
            name: "tokens",
            width: 2,
            count: kmers,
        },
    ]
}

/// One split's open files.
struct SplitFiles {
    dir: PathBuf,
    gc: Writer,
    fc: Writer,
    gc_csv: Option<std::io::BufWriter<std::fs::File>>,
    fc_csv: Option<std::io::BufWriter<std::fs::File>>,
    counts: SplitCounts,
}

fn validate(cfg: &DataConfig) -> Result<(), DatasetError> {
    let bad = |m: String| Err(DatasetError::Config(m));
    if cfg.k == 0 || cfg.k > vocab::MAX_K {
        return bad(format!(
            "k = {} (use 1..={}: ids must fit 16 bits)",
            cfg.k,
            vocab::MAX_K
        ));
    }
    if cfg.reads.read_length < cfg.k + cfg.words - 1 {
        return bad(format!(
            "read length {} is shorter than one sentence of {} {}-mers ({} bases)",
            cfg.reads.read_length,
            cfg.words,
            cfg.k,
            cfg.k + cfg.words - 1
        ));
    }
    if cfg.words == 0 || cfg.transcripts.is_none() && !(2..=17).contains(&cfg.synth.genes) {
        return bad("words must be positive and genes between 2 and 17".into());
    }
    Ok(())
}

/// Runs the dataset step. Returns the label map it wrote.
pub fn run(cfg: &DataConfig, seed: u64, out: &DataOut) -> Result<Labels, DatasetError> {
    validate(cfg)?;
    let reference: Reference = match &cfg.transcripts {
        Some(p) => transcripts::read_fasta(p)?,
        None => transcripts::synthesize(&cfg.synth, seed),
    };
    let rl = cfg.reads.read_length;
    let kmers = rl - cfg.k + 1;
    let mut files = Vec::new();
    for s in SPLITS {
        let dir = out.split(s);
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let csv = |name: &str, head: &str| -> Result<_, DatasetError> {
            if !cfg.csv {
                return Ok(None);
            }
            let p = dir.join(name);
            let mut w = std::io::BufWriter::new(std::fs::File::create(&p).map_err(io_err(&p))?);
            writeln!(w, "{head}").map_err(io_err(&p))?;
            Ok(Some(w))
        };
        files.push(SplitFiles {
            dir: dir.to_path_buf(),
            gc: Writer::create(&dir.join("gc.npy"), &gc_columns(kmers))?,
            fc: Writer::create(&dir.join("fc.npy"), &fc_columns(kmers))?,
            gc_csv: csv("gc.csv", "transcript,offset,label,gene,sequence,tokens")?,
            fc_csv: csv(
                "fc.csv",
                "fusion,start,breakpoint,mate,label,five_gene,three_gene,sequence,tokens",
            )?,
            counts: SplitCounts {
                split: s.name().into(),
                ..Default::default()
            },
        });
    }
    let mut tokens = Vec::with_capacity(kmers);
    let as_u64 = |t: &[u16]| t.iter().map(|&x| u64::from(x)).collect::<Vec<u64>>();
    let joined = |t: &[u16]| {
        t.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };

    // GC: non-overlapping, error-free fragments of the read length of every transcript.
    let mut fragment = 0u64;
    for (ti, t) in reference.transcripts.iter().enumerate() {
        for off in (0..t.seq.len().saturating_sub(rl - 1)).step_by(rl) {
            let seq = &t.seq[off..off + rl];
            tokens.clear();
            vocab::tokenize(seq, cfg.k, &mut tokens);
            let f = &mut files[split_of(seed, "gc-split", fragment) as usize];
            let t64 = as_u64(&tokens);
            f.gc.write(&[&[ti as u64], &[off as u64], &[t.gene as u64], &t64])?;
            if let Some(w) = &mut f.gc_csv {
                writeln!(
                    w,
                    "{ti},{off},{},{},{},{}",
                    t.gene,
                    reference.genes[t.gene],
                    String::from_utf8_lossy(seq),
                    joined(&tokens)
                )
                .map_err(io_err(&f.dir.join("gc.csv")))?;
            }
            f.counts.gc_fragments += 1;
            fragment += 1;
        }
    }

    // FC: fusions_per_gene fusions with each gene as the 5' partner, reads at ~coverage.
    let mut id = 0u32;
    for g in 0..reference.genes.len() {
        for _ in 0..cfg.fusions_per_gene {
            let fusion = simulate::make_fusion(&reference, g, id, seed);
            id += 1;
            let Some(fusion) = fusion else { continue };
            for (i, read) in simulate::reads(&fusion, &cfg.reads, seed)
                .iter()
                .enumerate()
            {
                tokens.clear();
                vocab::tokenize(&read.seq, cfg.k, &mut tokens);
                let index = (u64::from(fusion.id) << 32) | i as u64;
                let f = &mut files[split_of(seed, "fc-split", index) as usize];
                f.fc.write(&[
                    &[u64::from(fusion.id)],
                    &[read.start as u64],
                    &[fusion.breakpoint as u64],
                    &[u64::from(read.mate)],
                    &[u64::from(read.label)],
                    &[fusion.five_gene as u64],
                    &[fusion.three_gene as u64],
                    &as_u64(&tokens),
                ])?;
                if let Some(w) = &mut f.fc_csv {
                    writeln!(
                        w,
                        "{},{},{},{},{},{},{},{},{}",
                        fusion.id,
                        read.start,
                        fusion.breakpoint,
                        read.mate,
                        read.label,
                        fusion.five_gene,
                        fusion.three_gene,
                        String::from_utf8_lossy(&read.seq),
                        joined(&tokens)
                    )
                    .map_err(io_err(&f.dir.join("fc.csv")))?;
                }
                f.counts.fc_reads += 1;
                f.counts.fc_chimeric += u64::from(read.label == CHIMERIC);
            }
        }
    }

    let mut counts = Vec::new();
    for f in files {
        f.gc.finish()?;
        f.fc.finish()?;
        for w in [f.gc_csv, f.fc_csv].into_iter().flatten() {
            w.into_inner()
                .map_err(|e| e.into_error())
                .map_err(io_err(&f.dir))?;
        }
        counts.push(f.counts);
    }
    let labels = Labels {
        genes: reference.genes.clone(),
        fc_labels: vec!["chimeric".into(), "not_chimeric".into()],
        k: cfg.k,
        words: cfg.words,
        read_length: rl,
        kmers,
        vocab_size: vocab::vocab_size(cfg.k),
        seed,
        counts,
        config: cfg.clone(),
    };
    write_labels(&labels, &out.labels)?;
    Ok(labels)
}

fn write_labels(labels: &Labels, dir: &Path) -> Result<(), DatasetError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let p = dir.join("labels.json");
    let json = serde_json::to_vec_pretty(labels).expect("labels serialise");
    std::fs::write(&p, json).map_err(io_err(&p))?;
    let p = dir.join("vocab.txt");
    let mut w = std::io::BufWriter::new(std::fs::File::create(&p).map_err(io_err(&p))?);
    for id in 0..labels.vocab_size {
        writeln!(w, "{}", vocab::token(id as u16, labels.k)).map_err(io_err(&p))?;
    }
    w.flush().map_err(io_err(&p))
}

pub fn read_labels(dir: &Path) -> Result<Labels, DatasetError> {
    let p = dir.join("labels.json");
    let bytes = std::fs::read(&p).map_err(io_err(&p))?;
    serde_json::from_slice(&bytes).map_err(|source| DatasetError::Labels { path: p, source })
}

/// A split loaded for a model step: k-mer ids (row-major, `kmers` per read) and labels.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    pub kmers: usize,
    pub tokens: Vec<u16>,
    pub labels: Vec<u32>,
}

impl Examples {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn read(&self, i: usize) -> &[u16] {
        &self.tokens[i * self.kmers..(i + 1) * self.kmers]
    }
}

/// Loads `gc.npy` of a split directory.
pub fn load_gc(dir: &Path, labels: &Labels) -> Result<Examples, DatasetError> {
    load(
        &dir.join("gc.npy"),
        &gc_columns(labels.kmers),
        labels.kmers,
        |f| {
            f.uint(4);
            f.uint(4);
            f.uint(2) as u32
        },
    )
}

/// Loads `fc.npy` of a split directory.
pub fn load_fc(dir: &Path, labels: &Labels) -> Result<Examples, DatasetError> {
    load(
        &dir.join("fc.npy"),
        &fc_columns(labels.kmers),
        labels.kmers,
        |f| {
            f.uint(4);
            f.uint(4);
            f.uint(4);
            f.uint(1);
            let label = f.uint(1) as u32;
            f.uint(2);
            f.uint(2);
            label
        },
    )
}

fn load(
    path: &Path,
    columns: &[Column],
    kmers: usize,
    label: impl Fn(&mut Fields) -> u32,
) -> Result<Examples, DatasetError> {
    let mut r = Reader::open(path, columns)?;
    let mut ex = Examples {
        kmers,
        tokens: Vec::with_capacity(r.rows() as usize * kmers),
        labels: Vec::with_capacity(r.rows() as usize),
    };
    while let Some(rec) = r.next_record()? {
        let mut f = Fields::new(rec);
        ex.labels.push(label(&mut f));
        f.u16s(kmers, &mut ex.tokens);
    }
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_are_disjoint_stable_and_near_80_10_10() {
        let a: Vec<Split> = (0..20_000).map(|i| split_of(42, "fc-split", i)).collect();
        let b: Vec<Split> = (0..20_000).map(|i| split_of(42, "fc-split", i)).collect();
        assert_eq!(a, b, "same seed, same split");
        let c: Vec<Split> = (0..20_000).map(|i| split_of(43, "fc-split", i)).collect();
        assert_ne!(a, c, "another seed, another split");
        let frac = |s| a.iter().filter(|&&x| x == s).count() as f64 / a.len() as f64;
        assert!((frac(Split::Train) - 0.8).abs() < 0.02);
        assert!((frac(Split::Val) - 0.1).abs() < 0.02);
        assert!((frac(Split::Test) - 0.1).abs() < 0.02);
    }

    fn tiny_cfg() -> DataConfig {
        DataConfig {
            synth: SynthConfig {
                genes: 3,
                exons_min: 3,
                exons_max: 4,
                exon_len_min: 40,
                exon_len_max: 60,
                isoforms_max: 2,
                skew: 2.0,
            },
            transcripts: None,
            fusions_per_gene: 2,
            reads: ReadConfig {
                read_length: 20,
                coverage: 10.0,
                fragment_mean: 40.0,
                fragment_sd: 5.0,
                error_rate: 0.01,
            },
            k: 3,
            words: 5,
            csv: true,
        }
    }

    fn fc_identities(dir: &Path) -> Vec<(u64, u64, u64)> {
        let labels = read_labels(&dir.join("labels")).unwrap();
        let mut ids = Vec::new();
        for s in SPLITS {
            let path = dir.join(s.name()).join("fc.npy");
            let mut r = Reader::open(&path, &fc_columns(labels.kmers)).unwrap();
            while let Some(rec) = r.next_record().unwrap() {
                let mut f = Fields::new(rec);
                let (fusion, start, _bp, mate) = (f.uint(4), f.uint(4), f.uint(4), f.uint(1));
                ids.push((s as u64, fusion, start * 4 + mate));
            }
        }
        ids
    }

    #[test]
    fn dataset_step_writes_disjoint_stable_splits_and_label_map() {
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let l1 = run(&tiny_cfg(), 9, &DataOut::under(d1.path())).unwrap();
        run(&tiny_cfg(), 9, &DataOut::under(d2.path())).unwrap();
        for name in [
            "train/fc.npy",
            "test/gc.npy",
            "labels/labels.json",
            "labels/vocab.txt",
        ] {
            assert_eq!(
                std::fs::read(d1.path().join(name)).unwrap(),
                std::fs::read(d2.path().join(name)).unwrap(),
                "{name} differs between two runs with the same seed"
            );
        }
        assert_eq!(l1.genes, ["RUNX1", "ETV6", "RIPOR1"]);
        assert_eq!(l1.kmers, 18);
        assert_eq!(l1.sentences(), 14);
        // Every simulated read is in exactly one split, the one `split_of` names for it.
        let mut from_files = fc_identities(d1.path());
        let reference = transcripts::synthesize(&tiny_cfg().synth, 9);
        let mut expected = Vec::new();
        for id in 0..6u32 {
            let f = simulate::make_fusion(&reference, id as usize / 2, id, 9).unwrap();
            for (i, r) in simulate::reads(&f, &tiny_cfg().reads, 9).iter().enumerate() {
                let s = split_of(9, "fc-split", (u64::from(id) << 32) | i as u64);
                expected.push((
                    s as u64,
                    u64::from(id),
                    r.start as u64 * 4 + u64::from(r.mate),
                ));
            }
        }
        from_files.sort();
        expected.sort();
        assert_eq!(from_files, expected);
        let n = expected.len();
        assert!(n > 100);
        assert!(
            (0..3u64).all(|s| expected.iter().any(|x| x.0 == s)),
            "all splits used"
        );
        let total: u64 = l1.counts.iter().map(|c| c.fc_reads).sum();
        assert_eq!(total as usize, n);
        let vocab = std::fs::read_to_string(d1.path().join("labels/vocab.txt")).unwrap();
        assert_eq!(vocab.lines().count(), 130);
        assert_eq!(vocab.lines().nth(5), Some("AAA"));
        let csv = std::fs::read_to_string(d1.path().join("train/fc.csv")).unwrap();
        assert_eq!(csv.lines().count() as u64, l1.counts[0].fc_reads + 1);
        let train = load_fc(&d1.path().join("train"), &l1).unwrap();
        assert_eq!(train.len() as u64, l1.counts[0].fc_reads);
        assert!(train.tokens.iter().all(|&t| (5..130).contains(&t)));
    }
}
