//! The served model: a model directory (what `kgf-step all --out DIR` writes, or the deploy
//! step's copy of it) loaded once, and reads classified in batches — the chimeric probability,
//! the call at the model's threshold, and the two most likely partner genes.
//!
//! Owns read validation and the forward pass of a batch; knows nothing about HTTP (see `serve`).
//!
//! The directory layout is `all`'s: `gc-model/`, `fc-model/`, `data/labels/labels.json`, and
//! `serving.json` (the threshold and version that travel with the model). A directory without
//! `serving.json` is served at threshold 0.5, the one `test-fc` scores at.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Examples, Labels};
use crate::error::{StepError, model};
use crate::gc::{self, CONFIG, Sentences, WEIGHTS};
use crate::model::{FcConfig, FusionClassifier, GeneClassifier};
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
    /// The two genes with the highest mean sentence probability, most likely first.
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
    let Some((first, rest)) = ids.split_first() else {
        return String::new();
    };
    let mut read = vocab::token(*first, k);
    for &id in rest {
        read.push(vocab::token(id, k).chars().last().unwrap_or('N'));
    }
    read
}

pub struct Classifier {
    gc: GeneClassifier,
    fc: FusionClassifier,
    pub labels: Labels,
    pub manifest: Manifest,
    /// Sentences per GC forward pass.
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

/// The FC of a model directory (the same files `train-fc` writes and `test-fc` reads).
fn load_fc(dir: &Path, dev: &Device) -> Result<FusionClassifier, StepError> {
    let cfg: FcConfig = read_json(&dir.join(CONFIG))?;
    let stage = "loading the fusion classifier";
    let mut varmap = VarMap::new();
    let fc = FusionClassifier::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))
        .map_err(model(stage))?;
    varmap.load(dir.join(WEIGHTS)).map_err(model(stage))?;
    Ok(fc)
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
        let fc = load_fc(fc_dir, dev)?;
        let width = labels.sentences() * labels.genes.len();
        if fc.cfg.input != width {
            return Err(StepError::Mismatch(format!(
                "the fusion classifier in {} takes {} features per read but the label map in {} gives {width}; use the models and labels of one run",
                fc_dir.display(),
                fc.cfg.input,
                labels_dir.display(),
            )));
        }
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
        let (per_read, genes) = (self.labels.sentences(), self.labels.genes.len());
        let s = Sentences {
            examples: &ex,
            per_read,
            words: self.labels.words,
        };
        let probs = gc::probabilities(&self.gc, &s, self.batch, &self.dev, None)?;
        let width = per_read * genes;
        let x = Tensor::from_slice(&probs, (reads.len(), width), &self.dev)?;
        // The FC's logit scores label 1, "not chimeric".
        let not_chimeric =
            candle_nn::ops::sigmoid(&self.fc.forward(&x, None)?)?.to_vec1::<f32>()?;
        Ok(not_chimeric
            .iter()
            .zip(probs.chunks(width))
            .map(|(&p_not, read)| {
                let p = 1.0 - p_not;
                Call {
                    chimeric_probability: p,
                    chimeric: f64::from(p) > self.manifest.threshold,
                    partners: self.partners(read, per_read, genes),
                }
            })
            .collect())
    }

    /// The two genes with the highest mean probability over a read's sentences.
    fn partners(&self, read: &[f32], per_read: usize, genes: usize) -> [(String, f32); 2] {
        let mut mean = vec![0f32; genes];
        for sentence in read.chunks(genes) {
            for (m, p) in mean.iter_mut().zip(sentence) {
                *m += p / per_read as f32;
            }
        }
        let mut order: Vec<usize> = (0..genes).collect();
        order.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
        let pick = |rank: usize| {
            order.get(rank).map_or((String::new(), 0.0), |&g| {
                (self.labels.genes[g].clone(), mean[g])
            })
        };
        [pick(0), pick(1)]
    }
}
