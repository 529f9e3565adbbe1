//! The `train-gc` and `test-gc` steps: the read-level gene classifier, trained on the whole
//! panel (every position of every training fragment labelled with its gene, class-weighted
//! cross-entropy, the fragments given sequencer substitutions afresh every epoch), tested on
//! reads drawn independently from the panel: per read, and per position beside it.

use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{D, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Examples, Labels};
use crate::error::{StepError, model};
use crate::metrics::{self, Metrics};
use crate::model::{GcConfig, GeneClassifier};
use crate::report;
use crate::rng::{self, Rng};
use crate::train::{self, Caps, History, Task, TrainParams};
use crate::vocab;

pub const WEIGHTS: &str = "model.safetensors";
pub const CONFIG: &str = "config.json";
pub const HISTORY: &str = "history.json";

/// The GC's architecture flags.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GcArch {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    /// Positions on each side a position attends to, per layer.
    pub window: usize,
    pub dropout: f64,
}

/// Token ids `(reads, positions)` of the reads `idx` of `ex`, as the model takes them.
pub fn batch_ids(ex: &Examples, idx: &[usize], dev: &Device) -> candle_core::Result<Tensor> {
    let mut ids = Vec::with_capacity(idx.len() * ex.kmers);
    for &i in idx {
        ids.extend(ex.read(i).iter().map(|&t| u32::from(t)));
    }
    Tensor::from_vec(ids, (idx.len(), ex.kmers), dev)
}

/// A read's k-mer ids with sequencer substitutions: each base replaced by another with
/// probability `rate` (the read's bases from its k-mers, then tokenized again).
fn with_substitutions(read: &[u16], k: usize, rate: f64, rng: &mut Rng) -> Vec<u16> {
    let mut bases = vocab::bases(read, k);
    for b in bases.iter_mut() {
        if rng.uniform() < rate {
            let others: Vec<u8> = b"ACGT".iter().copied().filter(|c| c != b).collect();
            *b = others[rng.below(others.len())];
        }
    }
    let mut out = Vec::with_capacity(read.len());
    vocab::tokenize(&bases, k, &mut out);
    out
}

struct GcTask<'a> {
    model: &'a GeneClassifier,
    train: &'a Examples,
    val: &'a Examples,
    weights: Tensor,
    batch_size: usize,
    k: usize,
    error_rate: f64,
    dev: Device,
}

impl GcTask<'_> {
    /// Weighted cross-entropy over every position of the reads `idx` of `ex`: (loss, Σ w·nll,
    /// Σ w).
    fn loss(
        &self,
        ids: &Tensor,
        labels: &[u32],
        rng: Option<&mut Rng>,
    ) -> candle_core::Result<Tensor> {
        let logits = self.model.forward(ids, rng)?;
        let (b, n, c) = logits.dims3()?;
        let y: Vec<u32> = labels
            .iter()
            .flat_map(|&l| std::iter::repeat_n(l, n))
            .collect();
        let y = Tensor::from_vec(y, b * n, &self.dev)?;
        train::weighted_cross_entropy(&logits.reshape((b * n, c))?, &y, &self.weights)
    }
}

impl Task for GcTask<'_> {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn batch_loss(&self, batch: &[usize], rng: &mut Rng) -> candle_core::Result<Tensor> {
        let mut ids = Vec::with_capacity(batch.len() * self.train.kmers);
        for &i in batch {
            let read = with_substitutions(self.train.read(i), self.k, self.error_rate, rng);
            ids.extend(read.iter().map(|&t| u32::from(t)));
        }
        let ids = Tensor::from_vec(ids, (batch.len(), self.train.kmers), &self.dev)?;
        let labels: Vec<u32> = batch.iter().map(|&i| self.train.labels[i]).collect();
        self.loss(&ids, &labels, Some(rng))
    }

    fn val_loss(&self) -> candle_core::Result<f64> {
        let (mut num, mut den) = (0.0, 0.0);
        let all: Vec<usize> = (0..self.val.len()).collect();
        for chunk in all.chunks(self.batch_size.max(1)) {
            let ids = batch_ids(self.val, chunk, &self.dev)?;
            let logits = self.model.forward(&ids, None)?;
            let (b, n, c) = logits.dims3()?;
            let y: Vec<u32> = chunk
                .iter()
                .flat_map(|&i| std::iter::repeat_n(self.val.labels[i], n))
                .collect();
            let (a, d) = train::weighted_cross_entropy_parts(
                &logits.reshape((b * n, c))?,
                &Tensor::from_vec(y, b * n, &self.dev)?,
                &self.weights,
            )?;
            num += a;
            den += d;
        }
        Ok(if den > 0.0 { num / den } else { f64::NAN })
    }
}

pub struct TrainGc<'a> {
    pub train: &'a Path,
    pub val: &'a Path,
    pub labels: &'a Path,
    pub model_out: &'a Path,
    pub arch: &'a GcArch,
    pub params: &'a TrainParams,
    pub caps: Caps,
    pub seed: u64,
    pub dev: &'a Device,
}

/// The first `limit` examples of a split (all of them without a limit).
pub fn first(ex: Examples, limit: Option<usize>) -> Examples {
    match limit {
        Some(n) if n < ex.len() => Examples {
            kmers: ex.kmers,
            tokens: ex.tokens[..n * ex.kmers].to_vec(),
            labels: ex.labels[..n].to_vec(),
            groups: ex.groups[..n.min(ex.groups.len())].to_vec(),
            partners: ex.partners[..n.min(ex.partners.len())].to_vec(),
        },
        _ => ex,
    }
}

/// Runs `train-gc`; writes the model directory and returns the loss history.
pub fn train(a: &TrainGc) -> Result<History, StepError> {
    let labels = dataset::read_labels(a.labels)?;
    let train_ex = first(dataset::load_gc(a.train, &labels)?, a.caps.limit);
    let val_ex = first(dataset::load_gc(a.val, &labels)?, a.caps.limit);
    if a.arch.heads == 0 || !a.arch.hidden.is_multiple_of(a.arch.heads) {
        return Err(StepError::Mismatch(format!(
            "--gc-hidden {} is not a multiple of --gc-heads {}",
            a.arch.hidden, a.arch.heads
        )));
    }
    let cfg = GcConfig {
        vocab_size: labels.vocab_size,
        hidden: a.arch.hidden,
        layers: a.arch.layers,
        heads: a.arch.heads,
        intermediate: a.arch.intermediate,
        positions: labels.kmers,
        window: a.arch.window,
        classes: labels.genes.len(),
        dropout: a.arch.dropout,
    };
    let stage = "training the gene classifier";
    let (gc, mut varmap) =
        GeneClassifier::init(&cfg, a.dev, rng::key(a.seed, "gc-init", 0)).map_err(model(stage))?;
    let weights = train::class_weights(&train_ex.labels, cfg.classes);
    let task = GcTask {
        model: &gc,
        train: &train_ex,
        val: &val_ex,
        weights: Tensor::new(weights.as_slice(), a.dev).map_err(model(stage))?,
        batch_size: a.params.batch_size,
        k: labels.k,
        error_rate: labels.config.reads.error_rate,
        dev: a.dev.clone(),
    };
    std::fs::create_dir_all(a.model_out).map_err(|source| StepError::Io {
        path: a.model_out.to_path_buf(),
        source,
    })?;
    let history = train::fit(
        &task,
        &mut varmap,
        a.params,
        rng::key(a.seed, "gc-train", 0),
        a.caps.max_steps,
        &a.model_out.join(WEIGHTS),
        |e| {
            eprintln!(
                "train-gc: epoch {:>3} train loss {:.4} val loss {:.4} ({:.1}s, {} steps in {:.2}s, {:.1} reads/s without validation)",
                e.epoch, e.train_loss, e.val_loss, e.seconds, e.steps, e.train_seconds, e.throughput
            )
        },
    )
    .map_err(model(stage))?;
    report::write_json(a.model_out, CONFIG, &cfg)?;
    report::write_json(a.model_out, HISTORY, &history)?;
    report::write_json(a.model_out, "train.json", a.params)?;
    Ok(history)
}

/// Loads a GC model directory.
pub fn load(dir: &Path, dev: &Device) -> Result<(GeneClassifier, VarMap), StepError> {
    let p = dir.join(CONFIG);
    let bytes = std::fs::read(&p).map_err(|source| StepError::Io {
        path: p.clone(),
        source,
    })?;
    let cfg: GcConfig = serde_json::from_slice(&bytes)
        .map_err(|source| StepError::ModelConfig { path: p, source })?;
    let stage = "loading the gene classifier";
    let mut varmap = VarMap::new();
    let gc = GeneClassifier::new(
        &cfg,
        VarBuilder::from_varmap(&varmap, candle_core::DType::F32, dev),
    )
    .map_err(model(stage))?;
    varmap.load(dir.join(WEIGHTS)).map_err(model(stage))?;
    Ok((gc, varmap))
}

/// Checks that a model was trained on data with this label map's shape.
pub fn check_compatible(
    cfg: &GcConfig,
    labels: &Labels,
    model_dir: &Path,
) -> Result<(), StepError> {
    if cfg.classes != labels.genes.len()
        || cfg.positions != labels.kmers
        || cfg.vocab_size != labels.vocab_size
    {
        return Err(StepError::Mismatch(format!(
            "the gene classifier in {} was trained for {} genes, reads of {} k-mers and vocabulary {}, but the dataset has {}, {} and {}; train it on this dataset first",
            model_dir.display(),
            cfg.classes,
            cfg.positions,
            cfg.vocab_size,
            labels.genes.len(),
            labels.kmers,
            labels.vocab_size
        )));
    }
    Ok(())
}

/// Per-position log-probabilities of the genes, `(reads, positions, classes)` row-major, in
/// read order. `progress` names the step in the progress lines on stderr (about one every
/// 30 s); `None` keeps it quiet (serving).
pub fn log_probabilities(
    gc: &GeneClassifier,
    ex: &Examples,
    batch: usize,
    dev: &Device,
    progress: Option<&str>,
) -> candle_core::Result<Vec<f32>> {
    let per_read = gc.cfg.positions * gc.cfg.classes;
    let mut out = Vec::with_capacity(ex.len() * per_read);
    let (start, mut shown) = (Instant::now(), Instant::now());
    let all: Vec<usize> = (0..ex.len()).collect();
    for chunk in all.chunks(batch.max(1)) {
        let ids = batch_ids(ex, chunk, dev)?;
        let lp = candle_nn::ops::log_softmax(&gc.forward(&ids, None)?, D::Minus1)?;
        out.extend(lp.flatten_all()?.to_vec1::<f32>()?);
        if let Some(step) = progress
            && shown.elapsed() >= PROGRESS_EVERY
        {
            shown = Instant::now();
            let done = out.len() / per_read;
            let rate = done as f64 / start.elapsed().as_secs_f64();
            eprintln!(
                "{step}: the gene classifier over {done} of {} reads, {rate:.0} reads/s, about {:.1} min left",
                ex.len(),
                (ex.len() - done) as f64 / rate / 60.0
            );
        }
    }
    Ok(out)
}

const PROGRESS_EVERY: Duration = Duration::from_secs(30);

/// The test figures of the GC: per read (the gene of its highest mean log-probability over its
/// positions, the read's call) and per position beside it (each k-mer of a read named from the
/// window of k-mers around it, the sentence-sized view).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GcReport {
    pub reads: Metrics,
    pub positions: Metrics,
}

/// Each read's mean over its positions of `values` (`positions` rows of `genes` per read).
pub fn read_means(values: &[f32], positions: usize, genes: usize) -> Vec<f32> {
    values
        .chunks(positions * genes)
        .flat_map(|read| {
            let mut mean = vec![0f32; genes];
            for row in read.chunks(genes) {
                for (m, v) in mean.iter_mut().zip(row) {
                    *m += v / positions as f32;
                }
            }
            mean
        })
        .collect()
}

/// The index of the largest value of each row of `width`.
pub fn argmax_rows(values: &[f32], width: usize) -> Vec<u32> {
    values
        .chunks(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i as u32)
        })
        .collect()
}

/// Softmax of each row of `width` (probabilities for the metrics' ROC-AUC).
fn softmax_rows(values: &[f32], width: usize) -> Vec<f32> {
    values
        .chunks(width)
        .flat_map(|row| {
            let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let e: Vec<f32> = row.iter().map(|v| (v - max).exp()).collect();
            let sum: f32 = e.iter().sum();
            e.into_iter().map(move |v| v / sum)
        })
        .collect()
}

/// Runs `test-gc` on the test split's reads (drawn independently from the panel, with
/// sequencer errors; each read its own group in the intervals).
pub fn test(
    test_dir: &Path,
    labels_dir: &Path,
    model_dir: &Path,
    batch: usize,
    dev: &Device,
) -> Result<GcReport, StepError> {
    let labels = dataset::read_labels(labels_dir)?;
    let ex = dataset::load_gc(test_dir, &labels)?;
    let (gc, _vm) = load(model_dir, dev)?;
    check_compatible(&gc.cfg, &labels, model_dir)?;
    let lp = log_probabilities(&gc, &ex, batch, dev, Some("test-gc"))
        .map_err(model("testing the gene classifier"))?;
    let (c, n) = (gc.cfg.classes, gc.cfg.positions);
    let each =
        |v: &[u32]| -> Vec<u32> { v.iter().flat_map(|&x| std::iter::repeat_n(x, n)).collect() };
    let ids: Vec<u32> = (0..ex.len() as u32).collect();
    let position_groups: Vec<u64> = each(&ids).into_iter().map(u64::from).collect();
    let positions = metrics::compute(
        &each(&ex.labels),
        &argmax_rows(&lp, c),
        &softmax_rows(&lp, c),
        &labels.genes,
        &position_groups,
    );
    let means = read_means(&lp, n, c);
    let reads = metrics::compute(
        &ex.labels,
        &argmax_rows(&means, c),
        &softmax_rows(&means, c),
        &labels.genes,
        &ex.groups,
    );
    Ok(GcReport { reads, positions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitutions_change_bases_at_the_rate_and_keep_the_tokens_consistent() {
        let mut rng = Rng::new(3);
        let bases = b"ACGTTGCAACGTACGTTTGACCAGTACGATCGATCGGATC".repeat(5);
        let mut read = Vec::new();
        vocab::tokenize(&bases, 4, &mut read);
        let (mut changed, mut total) = (0, 0);
        for _ in 0..200 {
            let noisy = with_substitutions(&read, 4, 0.05, &mut rng);
            assert_eq!(noisy.len(), read.len());
            let b = vocab::bases(&noisy, 4);
            let mut again = Vec::new();
            vocab::tokenize(&b, 4, &mut again);
            assert_eq!(again, noisy, "the k-mers of the new bases");
            changed += b.iter().zip(&bases).filter(|(x, y)| x != y).count();
            total += bases.len();
        }
        let rate = changed as f64 / total as f64;
        assert!((rate - 0.05).abs() < 0.01, "{rate}");
        assert_eq!(with_substitutions(&read, 4, 0.0, &mut rng), read);
    }
}
