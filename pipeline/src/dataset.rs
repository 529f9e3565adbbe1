//! The `dataset` step: reference → GC fragments and FC reads → k-mer tokens → seeded splits that
//! cannot leak → three split artifacts (`gc.npy`, `fc.npy`, optional CSV) and the label-map
//! artifact (`labels.json`, `vocab.txt`).
//!
//! The splits (design §4): the GC is a panel classifier, so its training split is the whole
//! panel (every transcript cut into error-free fragments that hold every sentence-length
//! window, each on both strands, exact duplicates across isoforms written once), and its
//! validation and test splits are reads drawn independently from the panel (their own seed
//! streams, sequencer errors as the FC's reads), none equal to a training fragment; FC reads
//! are split by fusion event (or gene pair), so that a test junction is never seen in training
//! and both mates of a pair stay together, stratified per 5' gene. Reads crossing a junction
//! with fewer than `min_anchor` bases on one side are dropped, not mislabelled. The panel
//! itself goes into the label artifact as `panel.fa` (what an aligner is given as its
//! reference when it is compared with the model on the same reads).
//!
//! Streams the FC: one fusion's reads are in memory at a time and every record goes straight to
//! its split's file, so memory does not grow with the number of reads (the GC plan holds one
//! entry per window of the reference, which the panel bounds). Also loads the split files back
//! for the model steps.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::format::{Column, Fields, FormatError, Reader, Writer};
use crate::rng::{self, Rng};
use crate::simulate::{self, CHIMERIC, ReadConfig};
use crate::store;
use crate::transcripts::{self, FastaError, Reference, SynthConfig, Transcript};
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

/// How the GC's data is made.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GcData {
    /// Offset between consecutive training fragments of a transcript (at most
    /// `read_length - (k + words - 1) + 1`, so that every sentence-length window of the panel is
    /// in a training fragment).
    pub stride: usize,
    /// Validation reads per gene (early stopping).
    pub val_reads: usize,
    /// Test reads per gene.
    pub test_reads: usize,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DataConfig {
    pub synth: SynthConfig,
    /// A FASTA of transcripts used instead of the synthetic reference: a path, or an
    /// `s3://BUCKET/KEY` object read through the store client (`crate::store`).
    pub transcripts: Option<String>,
    pub fusions_per_gene: usize,
    /// Split FC fusions by partner pair (no gene pair in two splits) rather than by event.
    pub hold_out_pairs: bool,
    pub reads: ReadConfig,
    pub gc: GcData,
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
    /// GC training fragments not written because the same sequence (either strand) was
    /// already written.
    pub gc_duplicates: u64,
    /// GC validation and test reads drawn again because they equalled a training fragment.
    #[serde(default)]
    pub gc_reads_redrawn: u64,
    /// FC reads not written because they cross a junction with fewer than `min_anchor` bases
    /// on one partner.
    pub fc_ambiguous: u64,
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
    /// GC records (train: each fragment once per strand; val, test: reads).
    pub gc_fragments: u64,
    pub fc_reads: u64,
    pub fc_chimeric: u64,
    pub fc_fusions: u64,
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
    /// The object store did not hand over the `--transcripts` object; `reason` holds the
    /// store's answer and the fix.
    #[error("cannot read transcripts from {uri}: {reason}")]
    Store { uri: String, reason: String },
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
        Column::scalar("strand", 1),
        Column::scalar("span", 2),
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
        Column::scalar("pair", 4),
        Column::scalar("start", 4),
        Column::scalar("span", 2),
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
    let rl = cfg.reads.read_length;
    if rl < cfg.k + cfg.words - 1 {
        return bad(format!(
            "read length {} is shorter than one sentence of {} {}-mers ({} bases)",
            rl,
            cfg.words,
            cfg.k,
            cfg.k + cfg.words - 1
        ));
    }
    if cfg.words == 0 || cfg.transcripts.is_none() && !(2..=17).contains(&cfg.synth.genes) {
        return bad("words must be positive and genes between 2 and 17".into());
    }
    if 2 * cfg.reads.min_anchor > rl || cfg.reads.min_anchor == 0 {
        return bad(format!(
            "--min-anchor {} with reads of {rl}: a chimeric read needs min_anchor bases on each partner (use 1..={})",
            cfg.reads.min_anchor,
            rl / 2
        ));
    }
    let most = rl + 1 - (cfg.k + cfg.words - 1);
    if cfg.gc.stride == 0 || cfg.gc.stride > most {
        return bad(format!(
            "--gc-stride {} with reads of {rl} and sentences of {} bases leaves windows of the panel out of training (use 1..={most})",
            cfg.gc.stride,
            cfg.k + cfg.words - 1
        ));
    }
    Ok(())
}

/// A stable 64-bit hash of a byte string (FNV-1a then a SplitMix64 finalisation).
fn hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01B3);
    }
    rng::key(h, "hash", 0)
}

/// The same value for a sequence and its reverse complement.
fn canonical(seq: &[u8]) -> u64 {
    hash(seq).min(hash(&simulate::reverse_complement(seq)))
}

/// One GC training fragment: `read_length` error-free bases of `transcript` from `offset`.
#[derive(Clone, Debug, PartialEq)]
pub struct GcFragment {
    pub transcript: usize,
    pub offset: usize,
    pub gene: usize,
}

/// The GC's training fragments: the whole panel.
#[derive(Clone, Debug)]
pub struct GcPlan {
    pub fragments: Vec<GcFragment>,
    /// Fragments not written because the same sequence (either strand) already was: the
    /// exons isoforms share.
    pub duplicates: u64,
}

/// The offsets of the training fragments of a transcript of `len` bases: every `stride` bases,
/// and one more that ends at the transcript's end, so that with `stride` at most
/// `read_length - window + 1` every window of `window` bases lies inside a fragment.
fn fragment_offsets(len: usize, read_length: usize, stride: usize) -> Vec<usize> {
    if len < read_length {
        return Vec::new();
    }
    let last = len - read_length;
    let mut out: Vec<usize> = (0..=last).step_by(stride.max(1)).collect();
    if out.last() != Some(&last) {
        out.push(last);
    }
    out
}

/// Plans the GC training fragments: every transcript of the panel, cut every `gc.stride`
/// bases (and at its end), so that every sentence-length window of the panel is in training;
/// a fragment whose sequence (either strand) was planned already is written once.
pub fn plan_gc(reference: &Reference, cfg: &DataConfig) -> GcPlan {
    let rl = cfg.reads.read_length;
    let mut seen: HashSet<u64> = HashSet::new();
    let mut plan = GcPlan {
        fragments: Vec::new(),
        duplicates: 0,
    };
    for (ti, t) in reference.transcripts.iter().enumerate() {
        for o in fragment_offsets(t.seq.len(), rl, cfg.gc.stride) {
            if seen.insert(canonical(&t.seq[o..o + rl])) {
                plan.fragments.push(GcFragment {
                    transcript: ti,
                    offset: o,
                    gene: t.gene,
                });
            } else {
                plan.duplicates += 1;
            }
        }
    }
    plan
}

/// A GC validation or test read: drawn from the panel with sequencer errors.
#[derive(Clone, Debug, PartialEq)]
pub struct GcRead {
    pub transcript: usize,
    /// Leftmost transcript base the read covers.
    pub offset: usize,
    /// 0: the transcript's strand; 1: the reverse complement.
    pub strand: u8,
    pub span: usize,
    pub gene: usize,
    pub seq: Vec<u8>,
}

/// `per_gene` reads of every gene from the stream `purpose` (a transcript of the gene, a strand
/// and a start drawn uniformly, then sequenced with the FC reads' error rates). A read whose
/// sequence equals a training fragment's (`train`: hashes of both strands of every fragment)
/// is not a test of anything the model did not see, so it is replaced by another draw;
/// returns the reads and how many were replaced.
pub fn gc_reads(
    reference: &Reference,
    cfg: &DataConfig,
    seed: u64,
    purpose: &str,
    per_gene: usize,
    train: &HashSet<u64>,
) -> (Vec<GcRead>, u64) {
    let rl = cfg.reads.read_length;
    let (mut out, mut replaced) = (Vec::new(), 0u64);
    for g in 0..reference.genes.len() {
        let txs: Vec<(usize, &Transcript)> = reference
            .of_gene(g)
            .filter(|(_, t)| t.seq.len() >= rl)
            .collect();
        if txs.is_empty() {
            continue;
        }
        let mut rng = Rng::derive(seed, purpose, g as u64);
        let mut made = 0;
        // Bounded, so that a degenerate panel (every read a training fragment) still ends.
        for _ in 0..per_gene * 20 {
            if made == per_gene {
                break;
            }
            let (ti, t) = txs[rng.below(txs.len())];
            let strand = rng.below(2) as u8;
            let len = t.seq.len();
            let template = if strand == 0 {
                t.seq.clone()
            } else {
                simulate::reverse_complement(&t.seq)
            };
            let start = rng.below(len - rl + 1);
            let Some((seq, span)) =
                simulate::sequence(&template[start..], rl, &cfg.reads, &mut rng)
            else {
                continue;
            };
            if train.contains(&hash(&seq)) {
                replaced += 1;
                continue;
            }
            let offset = if strand == 0 {
                start
            } else {
                len - start - span
            };
            out.push(GcRead {
                transcript: ti,
                offset,
                strand,
                span,
                gene: g,
                seq,
            });
            made += 1;
        }
    }
    (out, replaced)
}

/// The splits of `n` units (a gene's fusions, or the gene pairs), stratified: at least one test
/// unit once there are two, one val unit once there are three, else 80/10/10 rounded.
fn stratified(n: usize, rng: &mut Rng) -> Vec<Split> {
    let (test, val) = match n {
        0 | 1 => (0, 0),
        2 => (1, 0),
        _ => (
            ((n as f64 * 0.1).round() as usize).max(1),
            ((n as f64 * 0.1).round() as usize).max(1),
        ),
    };
    let mut out: Vec<Split> = (0..n)
        .map(|i| match i {
            i if i < test => Split::Test,
            i if i < test + val => Split::Val,
            _ => Split::Train,
        })
        .collect();
    rng.shuffle(&mut out);
    out
}

/// The split of each fusion. By event (default): a fusion event, identified by its gene pair
/// and the sequence on either side of its junction (`read_length` bases), keeps the split it
/// first got, and new events take the next of their 5' gene's shuffled split slots (10 % test
/// and val, at least one each). With `hold_out_pairs`: every unordered gene pair gets a split up front (the pairs
/// stratified 80/10/10 as fusions are), so no pair is in two splits.
struct FusionSplitter {
    flank: usize,
    slots: Vec<Vec<Split>>,
    events: HashMap<u64, Split>,
    pairs: Option<HashMap<(usize, usize), Split>>,
}

impl FusionSplitter {
    fn new(cfg: &DataConfig, genes: usize, seed: u64) -> Self {
        let n = cfg.fusions_per_gene;
        let slots = (0..genes)
            .map(|g| {
                let mut rng = Rng::derive(seed, "fc-split", g as u64);
                let mut s = stratified(n, &mut rng);
                s.reverse();
                s
            })
            .collect();
        let pairs = cfg.hold_out_pairs.then(|| {
            let all: Vec<(usize, usize)> = (0..genes)
                .flat_map(|a| (a + 1..genes).map(move |b| (a, b)))
                .collect();
            let splits = stratified(all.len(), &mut Rng::derive(seed, "fc-pair-split", 0));
            all.into_iter().zip(splits).collect()
        });
        Self {
            flank: cfg.reads.read_length,
            slots,
            events: HashMap::new(),
            pairs,
        }
    }

    fn split(&mut self, f: &simulate::Fusion) -> Split {
        if let Some(pairs) = &self.pairs {
            let key = (f.five_gene.min(f.three_gene), f.five_gene.max(f.three_gene));
            return pairs[&key];
        }
        // Two fusions of the same gene pair that share either side of the junction (the same
        // 5' cut, or the same 3' cut) are one event: a read across either would be seen twice.
        let pair = ((f.five_gene as u64) << 32) | f.three_gene as u64;
        let (five, three) = f
            .junction(self.flank)
            .split_at(f.breakpoint.min(self.flank));
        let keys = [
            rng::key(hash(five), "5'", pair),
            rng::key(hash(three), "3'", pair),
        ];
        let split = match keys.iter().find_map(|k| self.events.get(k)) {
            Some(&s) => s,
            None => self.slots[f.five_gene].pop().unwrap_or(Split::Train),
        };
        for k in keys {
            self.events.entry(k).or_insert(split);
        }
        split
    }
}

/// Runs the dataset step. Returns the label map it wrote.
pub fn run(cfg: &DataConfig, seed: u64, out: &DataOut) -> Result<Labels, DatasetError> {
    validate(cfg)?;
    let reference: Reference = match cfg.transcripts.as_deref() {
        Some(uri) if uri.starts_with("s3://") => fetch_fasta(uri)?,
        Some(p) => transcripts::read_fasta(Path::new(p))?,
        None => transcripts::synthesize(&cfg.synth, seed),
    };
    write(&reference, cfg, seed, out)
}

/// Reads the transcripts FASTA at `s3://BUCKET/KEY` with the store client (credentials and
/// endpoint from the `AWS_*` environment, as every `s3://` of kgf-step); a refusal becomes an
/// error that names the URI and what to fix.
fn fetch_fasta(uri: &str) -> Result<Reference, DatasetError> {
    let fail = |reason: String| DatasetError::Store {
        uri: uri.to_string(),
        reason,
    };
    let s3 = store::S3Uri::parse(uri).map_err(|e| fail(e.to_string()))?;
    if s3.prefix.is_empty() {
        return Err(fail(
            "the URI names a bucket but no object; write s3://BUCKET/KEY".into(),
        ));
    }
    let cfg = store::Config::from_env().map_err(|e| fail(e.to_string()))?;
    let endpoint = cfg.endpoint.to_string();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(io_err(Path::new("<tokio runtime>")))?;
    let body = rt
        .block_on(async { store::Client::new(cfg)?.get(&s3.bucket, &s3.prefix).await })
        .map_err(|e| fail(store_reason(&e, &s3, &endpoint)))?;
    Ok(transcripts::parse_fasta(&body[..], uri)?)
}

/// What the store at `endpoint` said, and the fix, for a failed `--transcripts` download.
fn store_reason(e: &store::StoreError, uri: &store::S3Uri, endpoint: &str) -> String {
    match e.refusal() {
        Some((_, Some("NoSuchBucket"))) => format!(
            "the store at {endpoint} has no bucket {:?}; correct the bucket in --transcripts (or AWS_ENDPOINT_URL), or create it and upload the FASTA",
            uri.bucket
        ),
        Some((404, _)) => format!(
            "the store at {endpoint} has no object {:?} in bucket {:?}; upload the FASTA there (e.g. `aws s3 cp panel.fa s3://{}/{}`; `kgf-step transcripts --out panel.fa` writes one) or correct --transcripts",
            uri.prefix, uri.bucket, uri.bucket, uri.prefix
        ),
        Some((status, code)) if status == 401 || status == 403 => format!(
            "the store at {endpoint} refused the request ({status} {}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION), and that they may read the object",
            code.unwrap_or("Forbidden")
        ),
        Some(_) => format!("{e}; check the store at {endpoint} (AWS_ENDPOINT_URL)"),
        None if matches!(e, store::StoreError::Http(_)) => {
            format!(
                "{e}; check AWS_ENDPOINT_URL ({endpoint}) and that the store is reachable from here"
            )
        }
        None => e.to_string(),
    }
}

/// Writes the dataset of `reference` (synthetic or read by the caller from any source).
pub fn write(
    reference: &Reference,
    cfg: &DataConfig,
    seed: u64,
    out: &DataOut,
) -> Result<Labels, DatasetError> {
    validate(cfg)?;
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
            gc_csv: csv(
                "gc.csv",
                "transcript,offset,strand,span,label,gene,sequence,tokens",
            )?,
            fc_csv: csv(
                "fc.csv",
                "fusion,pair,start,span,breakpoint,mate,label,five_gene,three_gene,sequence,tokens",
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

    // GC training: the whole panel, error-free, on both strands (mate 2 of every read is
    // reverse-complemented, so the GC must know both).
    let plan = plan_gc(reference, cfg);
    let mut train_hashes: HashSet<u64> = HashSet::new();
    let mut gc_rows: Vec<(Split, GcRead)> = Vec::new();
    for fr in &plan.fragments {
        let t = &reference.transcripts[fr.transcript];
        let fwd = &t.seq[fr.offset..fr.offset + rl];
        for (strand, seq) in [(0u8, fwd.to_vec()), (1, simulate::reverse_complement(fwd))] {
            train_hashes.insert(hash(&seq));
            gc_rows.push((
                Split::Train,
                GcRead {
                    transcript: fr.transcript,
                    offset: fr.offset,
                    strand,
                    span: rl,
                    gene: fr.gene,
                    seq,
                },
            ));
        }
    }
    // GC validation and test: reads drawn independently, each split from its own stream.
    let mut redrawn = 0;
    for (split, purpose, per_gene) in [
        (Split::Val, "gc-val-reads", cfg.gc.val_reads),
        (Split::Test, "gc-test-reads", cfg.gc.test_reads),
    ] {
        let (reads, r) = gc_reads(reference, cfg, seed, purpose, per_gene, &train_hashes);
        redrawn += r;
        gc_rows.extend(reads.into_iter().map(|read| (split, read)));
    }
    for (split, read) in &gc_rows {
        tokens.clear();
        vocab::tokenize(&read.seq, cfg.k, &mut tokens);
        let f = &mut files[*split as usize];
        f.gc.write(&[
            &[read.transcript as u64],
            &[read.offset as u64],
            &[u64::from(read.strand)],
            &[read.span as u64],
            &[read.gene as u64],
            &as_u64(&tokens),
        ])?;
        if let Some(w) = &mut f.gc_csv {
            writeln!(
                w,
                "{},{},{},{},{},{},{},{}",
                read.transcript,
                read.offset,
                read.strand,
                read.span,
                read.gene,
                reference.genes[read.gene],
                String::from_utf8_lossy(&read.seq),
                joined(&tokens)
            )
            .map_err(io_err(&f.dir.join("gc.csv")))?;
        }
        f.counts.gc_fragments += 1;
    }
    drop(gc_rows);

    // FC: fusions_per_gene fusions with each gene as the 5' partner, reads at ~coverage; every
    // read of a fusion event (both mates of every pair) goes to the event's split.
    let mut splitter = FusionSplitter::new(cfg, reference.genes.len(), seed);
    let mut ambiguous = 0u64;
    let mut id = 0u32;
    for g in 0..reference.genes.len() {
        for _ in 0..cfg.fusions_per_gene {
            let fusion = simulate::make_fusion(reference, g, id, seed);
            id += 1;
            let Some(fusion) = fusion else { continue };
            let f = &mut files[splitter.split(&fusion) as usize];
            f.counts.fc_fusions += 1;
            for read in simulate::reads(&fusion, &cfg.reads, seed) {
                let Some(label) = read.class.label() else {
                    ambiguous += 1;
                    continue;
                };
                tokens.clear();
                vocab::tokenize(&read.seq, cfg.k, &mut tokens);
                f.fc.write(&[
                    &[u64::from(fusion.id)],
                    &[u64::from(read.pair)],
                    &[read.start as u64],
                    &[read.span as u64],
                    &[fusion.breakpoint as u64],
                    &[u64::from(read.mate)],
                    &[u64::from(label)],
                    &[fusion.five_gene as u64],
                    &[fusion.three_gene as u64],
                    &as_u64(&tokens),
                ])?;
                if let Some(w) = &mut f.fc_csv {
                    writeln!(
                        w,
                        "{},{},{},{},{},{},{label},{},{},{},{}",
                        fusion.id,
                        read.pair,
                        read.start,
                        read.span,
                        fusion.breakpoint,
                        read.mate,
                        fusion.five_gene,
                        fusion.three_gene,
                        String::from_utf8_lossy(&read.seq),
                        joined(&tokens)
                    )
                    .map_err(io_err(&f.dir.join("fc.csv")))?;
                }
                f.counts.fc_reads += 1;
                f.counts.fc_chimeric += u64::from(label == CHIMERIC);
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
        gc_duplicates: plan.duplicates,
        gc_reads_redrawn: redrawn,
        fc_ambiguous: ambiguous,
        config: cfg.clone(),
    };
    write_labels(&labels, &out.labels)?;
    write_panel(reference, &out.labels)?;
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

/// The panel's transcripts as FASTA (`>GENE|TRANSCRIPT`), the reference an aligner is given.
pub const PANEL_FASTA: &str = "panel.fa";

fn write_panel(reference: &Reference, dir: &Path) -> Result<(), DatasetError> {
    let p = dir.join(PANEL_FASTA);
    let mut w = std::io::BufWriter::new(std::fs::File::create(&p).map_err(io_err(&p))?);
    for t in &reference.transcripts {
        writeln!(w, ">{}|{}", reference.genes[t.gene], t.name).map_err(io_err(&p))?;
        for line in t.seq.chunks(80) {
            w.write_all(line).map_err(io_err(&p))?;
            w.write_all(b"\n").map_err(io_err(&p))?;
        }
    }
    w.flush().map_err(io_err(&p))
}

pub fn read_labels(dir: &Path) -> Result<Labels, DatasetError> {
    let p = dir.join("labels.json");
    let bytes = std::fs::read(&p).map_err(io_err(&p))?;
    serde_json::from_slice(&bytes).map_err(|source| DatasetError::Labels { path: p, source })
}

/// A split loaded for a model step: k-mer ids (row-major, `kmers` per read), labels, and the
/// group of each read (GC: the read itself, each drawn independently; FC: its fusion event),
/// the unit that intervals resample.
#[derive(Clone, Debug, Default)]
pub struct Examples {
    pub kmers: usize,
    pub tokens: Vec<u16>,
    pub labels: Vec<u32>,
    pub groups: Vec<u64>,
    /// FC only: each read's fusion partners (5' gene, 3' gene).
    pub partners: Vec<[u16; 2]>,
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
        |row, f| {
            f.uint(4);
            f.uint(4);
            f.uint(1);
            f.uint(2);
            (f.uint(2) as u32, row as u64, None)
        },
    )
}

/// Loads `fc.npy` of a split directory.
pub fn load_fc(dir: &Path, labels: &Labels) -> Result<Examples, DatasetError> {
    load(
        &dir.join("fc.npy"),
        &fc_columns(labels.kmers),
        labels.kmers,
        |_, f| {
            let fusion = f.uint(4);
            f.uint(4);
            f.uint(4);
            f.uint(2);
            f.uint(4);
            f.uint(1);
            let label = f.uint(1) as u32;
            let five = f.uint(2) as u16;
            let three = f.uint(2) as u16;
            (label, fusion, Some([five, three]))
        },
    )
}

fn load(
    path: &Path,
    columns: &[Column],
    kmers: usize,
    label_and_group: impl Fn(usize, &mut Fields) -> (u32, u64, Option<[u16; 2]>),
) -> Result<Examples, DatasetError> {
    let mut r = Reader::open(path, columns)?;
    let rows = r.rows() as usize;
    let mut ex = Examples {
        kmers,
        tokens: Vec::with_capacity(rows * kmers),
        labels: Vec::with_capacity(rows),
        groups: Vec::with_capacity(rows),
        partners: Vec::new(),
    };
    while let Some(rec) = r.next_record()? {
        let mut f = Fields::new(rec);
        let (label, group, partners) = label_and_group(ex.labels.len(), &mut f);
        ex.labels.push(label);
        ex.groups.push(group);
        ex.partners.extend(partners);
        f.u16s(kmers, &mut ex.tokens);
    }
    Ok(ex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PresetName, preset};

    fn tiny_cfg() -> DataConfig {
        DataConfig {
            csv: true,
            ..preset(PresetName::Tiny).data
        }
    }

    #[test]
    fn fragment_offsets_step_by_the_stride_and_end_at_the_transcripts_end() {
        assert_eq!(fragment_offsets(10, 4, 3), vec![0, 3, 6]);
        assert_eq!(fragment_offsets(11, 4, 3), vec![0, 3, 6, 7]);
        assert_eq!(fragment_offsets(4, 4, 3), vec![0]);
        assert!(fragment_offsets(3, 4, 3).is_empty());
    }

    #[test]
    fn stratified_splits_give_every_gene_a_test_slot_once_it_has_two() {
        let mut rng = Rng::new(1);
        assert_eq!(stratified(1, &mut rng), vec![Split::Train]);
        let two = stratified(2, &mut rng);
        assert_eq!(two.iter().filter(|&&s| s == Split::Test).count(), 1);
        let ten = stratified(10, &mut rng);
        let count = |s| ten.iter().filter(|&&x| x == s).count();
        assert_eq!(
            (count(Split::Train), count(Split::Val), count(Split::Test)),
            (8, 1, 1)
        );
    }

    #[test]
    fn dataset_step_writes_stable_splits_and_label_map() {
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
        assert_eq!(l1.genes, ["RUNX1", "ETV6", "RIPOR1", "CTCF"]);
        assert_eq!(l1.kmers, 18);
        assert_eq!(l1.sentences(), 11);
        assert!(l1.fc_ambiguous > 0, "reads with short anchors are dropped");
        for c in &l1.counts {
            assert!(c.fc_reads > 0 && c.gc_fragments > 0, "{} is empty", c.split);
            assert_eq!(c.gc_fragments % 2, 0, "both strands of every fragment");
        }
        let vocab = std::fs::read_to_string(d1.path().join("labels/vocab.txt")).unwrap();
        assert_eq!(vocab.lines().count(), 130);
        assert_eq!(vocab.lines().nth(5), Some("AAA"));
        let csv = std::fs::read_to_string(d1.path().join("train/fc.csv")).unwrap();
        assert_eq!(csv.lines().count() as u64, l1.counts[0].fc_reads + 1);
        let train = load_fc(&d1.path().join("train"), &l1).unwrap();
        assert_eq!(train.len() as u64, l1.counts[0].fc_reads);
        assert_eq!(train.groups.len(), train.len());
        assert!(train.tokens.iter().all(|&t| (5..130).contains(&t)));
    }

    #[test]
    fn a_min_anchor_longer_than_half_a_read_is_refused() {
        let mut cfg = tiny_cfg();
        cfg.reads.min_anchor = 11;
        let d = tempfile::tempdir().unwrap();
        let err = run(&cfg, 1, &DataOut::under(d.path()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--min-anchor 11") && err.contains("1..=10"),
            "{err}"
        );
    }
}
