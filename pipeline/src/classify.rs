//! The served model: a model directory (what `kgf-step all --out DIR` writes, or the deploy
//! step's copy of it) loaded once, and reads classified in batches — the chimeric probability,
//! the call at the model's threshold, and the partner genes (the two sides of the read's
//! breakpoint for a chimeric call, else its two most likely genes), as test-fc calls them.
//!
//! Owns read validation and the forward pass of a batch; knows nothing about HTTP (see `serve`).
//!
//! The directory layout is `all`'s: `gc-model/`, `fc-model/`, `data/labels/labels.json`, and
//! `serving.json` (the threshold and version that travel with the model). A directory without
//! `serving.json` is served at threshold 0.5, the one `test-fc` scores at.

use std::path::Path;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Examples, Labels};
use crate::error::StepError;
use crate::fc;
use crate::gc;
use crate::model::{FusionClassifier, GeneClassifier};
use crate::vocab;

/// Model directory entries, relative to its root.
pub const GC_DIR: &str = "gc-model";
pub const FC_DIR: &str = "fc-model";
pub const LABELS_DIR: &str = "data/labels";
pub const MANIFEST: &str = "serving.json";
/// Two reads of the test split, one chimeric and one normal, that the model calls right: what
/// `kgf-up verify` sends through the served endpoint.
pub const PROBE_READS: &str = "probe-reads.json";
/// The threshold `test-fc` decides at (label 1 when P(not chimeric) ≥ 0.5).
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// What travels with a model besides its weights: the call threshold on P(chimeric) and a
/// version (the pipeline run that made it).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    /// A read is called chimeric when P(chimeric) > threshold.
    pub threshold: f64,
    pub version: String,
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            threshold: DEFAULT_THRESHOLD,
            version: "1".into(),
        }
    }
}

/// The answer for one read.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub chimeric_probability: f32,
    pub chimeric: bool,
    /// The partner genes with their mean probability over the part of the read each explains
    /// (a chimeric call: the two sides of the breakpoint, 5' side of the read first; else the
    /// two most likely genes of the whole read).
    pub partners: [(String, f32); 2],
}

/// Why a read is refused; `index` is its position in the request.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error("read {index} is empty")]
    Empty { index: usize },
    #[error("read {index} has {len} bases; the model takes reads of {want} bases")]
    TooShort {
        index: usize,
        len: usize,
        want: usize,
    },
    #[error("read {index} has {len} bases; the model takes reads of {want} bases")]
    TooLong {
        index: usize,
        len: usize,
        want: usize,
    },
    #[error("read {index} has {found:?} at position {position}; only A, C, G, T and N are bases")]
    NotAcgtn {
        index: usize,
        position: usize,
        found: char,
    },
}

/// Checks one read (case-insensitive A, C, G, T, N, exactly `read_length` bases) and turns it
/// into its k-mer ids.
pub fn check_read(
    index: usize,
    read: &str,
    read_length: usize,
    k: usize,
) -> Result<Vec<u16>, ReadError> {
    if let Some((position, found)) = read
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || vocab::base_code(c as u8).is_none())
    {
        return Err(ReadError::NotAcgtn {
            index,
            position,
            found,
        });
    }
    let (len, want) = (read.len(), read_length);
    match len {
        0 => Err(ReadError::Empty { index }),
        l if l < want => Err(ReadError::TooShort { index, len, want }),
        l if l > want => Err(ReadError::TooLong { index, len, want }),
        _ => {
            let mut ids = Vec::with_capacity(len + 1 - k.min(len));
            vocab::tokenize(read.as_bytes(), k, &mut ids);
            Ok(ids)
        }
    }
}

/// The bases of a read from its k-mer ids (stride 1): the first k-mer, then the last base of
/// each following one. The inverse of tokenizing a read of A, C, G, T, N.
pub fn read_bases(ids: &[u16], k: usize) -> String {
    String::from_utf8(vocab::bases(ids, k)).expect("bases are ASCII")
}

pub struct Classifier {
    gc: GeneClassifier,
    fc: FusionClassifier,
    pub labels: Labels,
    pub manifest: Manifest,
    /// Reads per GC forward pass.
    batch: usize,
    dev: Device,
}

fn read_json<T: serde::de::DeserializeOwned>(p: &Path) -> Result<T, StepError> {
    let bytes = std::fs::read(p).map_err(|source| StepError::Io {
        path: p.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| StepError::ModelConfig {
        path: p.to_path_buf(),
        source,
    })
}

/// Writes `serving.json` into a model directory.
pub fn write_manifest(dir: &Path, m: &Manifest) -> Result<(), StepError> {
    Ok(crate::report::write_json(dir, MANIFEST, m)?)
}

impl Classifier {
    /// Loads and cross-checks the two models and the label map of `dir`.
    pub fn load(dir: &Path, batch: usize, dev: &Device) -> Result<Self, StepError> {
        let m = dir.join(MANIFEST);
        let manifest = if m.is_file() {
            read_json(&m)?
        } else {
            Manifest::default()
        };
        Self::load_parts(
            &dir.join(GC_DIR),
            &dir.join(FC_DIR),
            &dir.join(LABELS_DIR),
            manifest,
            batch,
            dev,
        )
    }

    /// Loads the models and label map from their own directories (the pipeline's artifacts).
    pub fn load_parts(
        gc_dir: &Path,
        fc_dir: &Path,
        labels_dir: &Path,
        manifest: Manifest,
        batch: usize,
        dev: &Device,
    ) -> Result<Self, StepError> {
        let labels = dataset::read_labels(labels_dir)?;
        let (gc, _vm) = gc::load(gc_dir, dev)?;
        gc::check_compatible(&gc.cfg, &labels, gc_dir)?;
        let fc = fc::load(fc_dir, labels.kmers, dev)?;
        Ok(Self {
            gc,
            fc,
            labels,
            manifest,
            batch: batch.max(1),
            dev: dev.clone(),
        })
    }

    /// Bases per read the model takes.
    pub fn read_length(&self) -> usize {
        self.labels.read_length
    }

    /// Bases per k-mer.
    pub fn k(&self) -> usize {
        self.labels.k
    }

    /// Classifies reads already checked by [`check_read`].
    pub fn classify(&self, reads: &[Vec<u16>]) -> candle_core::Result<Vec<Call>> {
        if reads.is_empty() {
            return Ok(Vec::new());
        }
        let ex = Examples {
            kmers: self.labels.kmers,
            tokens: reads.concat(),
            labels: vec![0; reads.len()],
            // Other columns (audit fields of the split files) mean nothing for served reads.
            ..Default::default()
        };
        let genes = self.labels.genes.len();
        let lp = gc::log_probabilities(&self.gc, &ex, self.batch, &self.dev, None)?;
        let (bps, features) = fc::breakpoints(&lp, self.labels.kmers, genes);
        let p = fc::chimeric_probabilities(&self.fc, &features, &self.dev)?;
        Ok(bps
            .iter()
            .zip(&p)
            .zip(lp.chunks(self.labels.kmers * genes))
            .map(|((bp, &p), read)| {
                let c = fc::call(bp, p, self.manifest.threshold);
                let [a, b] = c.pair.expect("every call names two genes");
                let (fa, fb) = if c.chimeric {
                    (bp.left_fit, bp.right_fit)
                } else {
                    let mean = |g: u16| mean_of(read, genes, g);
                    (mean(a), mean(b))
                };
                let name = |g: u16| self.labels.genes[g as usize].clone();
                Call {
                    chimeric_probability: p,
                    chimeric: c.chimeric,
                    partners: [(name(a), fa.exp()), (name(b), fb.exp())],
                }
            })
            .collect())
    }
}

/// The mean log-probability of gene `g` over a read's positions.
fn mean_of(read: &[f32], genes: usize, g: u16) -> f32 {
    let n = read.len() / genes;
    read.chunks(genes).map(|row| row[g as usize]).sum::<f32>() / n.max(1) as f32
}
