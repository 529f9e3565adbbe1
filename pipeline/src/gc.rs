//! The `train-gc` and `test-gc` steps: the gene classifier over every sentence of the GC
//! fragments, trained with class-weighted cross-entropy, tested per sentence.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use candle_core::{D, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Examples, Labels};
use crate::error::{StepError, model};
use crate::metrics::{self, Metrics};
use crate::model::{GcConfig, GeneClassifier, push_sentence};
use crate::report;
use crate::rng::{self, Rng};
use crate::train::{self, Caps, History, Task, TrainParams};

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
    pub dropout: f64,
}

/// Sentences of a split as (read, offset) pairs flattened: example `i` is sentence `i % n` of
/// read `i / n`.
pub struct Sentences<'a> {
    pub examples: &'a Examples,
    pub per_read: usize,
    pub words: usize,
}

impl Sentences<'_> {
    pub fn len(&self) -> usize {
        self.examples.len() * self.per_read
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The words of sentence `i`, without `[CLS]` and `[SEP]`.
    fn words_of(&self, i: usize) -> &[u16] {
        let (r, j) = (i / self.per_read, i % self.per_read);
        &self.examples.read(r)[j..j + self.words]
    }

    /// Token ids `(batch, words + 2)` and gene labels `(batch,)`.
    pub fn batch(&self, idx: &[usize], dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let mut ids = Vec::with_capacity(idx.len() * (self.words + 2));
        let mut targets = Vec::with_capacity(idx.len());
        for &i in idx {
            let (r, j) = (i / self.per_read, i % self.per_read);
            push_sentence(self.examples.read(r), j, self.words, &mut ids);
            targets.push(self.examples.labels[r]);
        }
        Ok((
            Tensor::from_vec(ids, (idx.len(), self.words + 2), dev)?,
            Tensor::from_vec(targets, idx.len(), dev)?,
        ))
    }
}

struct GcTask<'a> {
    model: &'a GeneClassifier,
    train: Sentences<'a>,
    val: Sentences<'a>,
    weights: Tensor,
    batch_size: usize,
    dev: Device,
}

impl Task for GcTask<'_> {
    fn train_len(&self) -> usize {
        self.train.len()
    }

    fn batch_loss(&self, batch: &[usize], rng: &mut Rng) -> candle_core::Result<Tensor> {
        let (ids, y) = self.train.batch(batch, &self.dev)?;
        let logits = self.model.forward(&ids, Some(rng))?;
        train::weighted_cross_entropy(&logits, &y, &self.weights)
    }

    fn val_loss(&self) -> candle_core::Result<f64> {
        let (mut num, mut den) = (0.0, 0.0);
        let all: Vec<usize> = (0..self.val.len()).collect();
        for chunk in all.chunks(self.batch_size.max(1)) {
            let (ids, y) = self.val.batch(chunk, &self.dev)?;
            let (n, d) = train::weighted_cross_entropy_parts(
                &self.model.forward(&ids, None)?,
                &y,
                &self.weights,
            )?;
            num += n;
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

fn sentences<'a>(ex: &'a Examples, labels: &Labels) -> Sentences<'a> {
    Sentences {
        examples: ex,
        per_read: labels.sentences(),
        words: labels.words,
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
        seq_len: labels.words + 2,
        classes: labels.genes.len(),
        dropout: a.arch.dropout,
    };
    let stage = "training the gene classifier";
    let (gc, mut varmap) =
        GeneClassifier::init(&cfg, a.dev, rng::key(a.seed, "gc-init", 0)).map_err(model(stage))?;
    let weights = train::class_weights(&train_ex.labels, cfg.classes);
    let task = GcTask {
        model: &gc,
        train: sentences(&train_ex, &labels),
        val: sentences(&val_ex, &labels),
        weights: Tensor::new(weights.as_slice(), a.dev).map_err(model(stage))?,
        batch_size: a.params.batch_size,
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
                "train-gc: epoch {:>3} train loss {:.4} val loss {:.4} ({:.1}s, {} steps in {:.2}s, {:.1} sentences/s without validation)",
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
        || cfg.seq_len != labels.words + 2
        || cfg.vocab_size != labels.vocab_size
    {
        return Err(StepError::Mismatch(format!(
            "the gene classifier in {} was trained for {} genes, {} words and vocabulary {}, but the dataset has {}, {} and {}; train it on this dataset first",
            model_dir.display(),
            cfg.classes,
            cfg.seq_len - 2,
            cfg.vocab_size,
            labels.genes.len(),
            labels.words,
            labels.vocab_size
        )));
    }
    Ok(())
}

/// Per-sentence class probabilities `(n, classes)` row-major, in example order.
///
/// Overlapping reads share most of their sentences (at the default preset 87 % of the FC
/// training split's 16.5 M sentences repeat one seen before), and without dropout the GC is a
/// function of the tokens alone, so each distinct sentence runs once and its row is copied to
/// every place it occurs. `progress` names the step in the progress lines on stderr (about one
/// every 30 s); `None` keeps it quiet (serving).
pub fn probabilities(
    gc: &GeneClassifier,
    s: &Sentences,
    batch: usize,
    dev: &Device,
    progress: Option<&str>,
) -> candle_core::Result<Vec<f32>> {
    let mut first: HashMap<&[u16], u32> = HashMap::new();
    let mut distinct: Vec<usize> = Vec::new();
    let slot: Vec<u32> = (0..s.len())
        .map(|i| {
            *first.entry(s.words_of(i)).or_insert_with(|| {
                distinct.push(i);
                (distinct.len() - 1) as u32
            })
        })
        .collect();
    drop(first);
    if let Some(step) = progress {
        eprintln!(
            "{step}: the gene classifier over {} sentences, {} of them distinct ({:.1} %)",
            s.len(),
            distinct.len(),
            percent(distinct.len(), s.len())
        );
    }
    let c = gc.cfg.classes;
    let mut rows = Vec::with_capacity(distinct.len() * c);
    let (start, mut shown) = (Instant::now(), Instant::now());
    for chunk in distinct.chunks(batch.max(1)) {
        let (ids, _) = s.batch(chunk, dev)?;
        let p = candle_nn::ops::softmax(&gc.forward(&ids, None)?, D::Minus1)?;
        rows.extend(p.flatten_all()?.to_vec1::<f32>()?);
        if let Some(step) = progress
            && shown.elapsed() >= PROGRESS_EVERY
        {
            shown = Instant::now();
            let done = rows.len() / c;
            let rate = done as f64 / start.elapsed().as_secs_f64();
            eprintln!(
                "{step}: {done} of {} distinct sentences ({:.0} %), {rate:.0} sentences/s, about {:.0} min left",
                distinct.len(),
                percent(done, distinct.len()),
                (distinct.len() - done) as f64 / rate / 60.0
            );
        }
    }
    let mut out = Vec::with_capacity(s.len() * c);
    for &k in &slot {
        let k = k as usize;
        out.extend_from_slice(&rows[k * c..(k + 1) * c]);
    }
    Ok(out)
}

const PROGRESS_EVERY: Duration = Duration::from_secs(30);

fn percent(part: usize, whole: usize) -> f64 {
    100.0 * part as f64 / whole.max(1) as f64
}

/// The test figures of the GC: per read (the gene of its highest mean probability over its
/// sentences, what `serve` and the FC's partner call use) and per sentence beside it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GcReport {
    pub reads: Metrics,
    pub sentences: Metrics,
}

/// Each read's mean gene probabilities over its sentences (`probs`: `per_read` rows of
/// `genes` per read), `genes` per read.
pub fn read_means(probs: &[f32], per_read: usize, genes: usize) -> Vec<f32> {
    probs
        .chunks(per_read * genes)
        .flat_map(|read| {
            let mut mean = vec![0f32; genes];
            for sentence in read.chunks(genes) {
                for (m, p) in mean.iter_mut().zip(sentence) {
                    *m += p / per_read as f32;
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
    let s = sentences(&ex, &labels);
    let probs = probabilities(&gc, &s, batch, dev, Some("test-gc"))
        .map_err(model("testing the gene classifier"))?;
    let c = gc.cfg.classes;
    let per_sentence =
        |v: &[u32]| -> Vec<u32> { (0..s.len()).map(|i| v[i / s.per_read]).collect() };
    let u64s: Vec<u32> = (0..ex.len() as u32).collect();
    let sentence_groups: Vec<u64> = per_sentence(&u64s).into_iter().map(u64::from).collect();
    let sentences = metrics::compute(
        &per_sentence(&ex.labels),
        &argmax_rows(&probs, c),
        &probs,
        &labels.genes,
        &sentence_groups,
    );
    let means = read_means(&probs, s.per_read, c);
    let reads = metrics::compute(
        &ex.labels,
        &argmax_rows(&means, c),
        &means,
        &labels.genes,
        &ex.groups,
    );
    Ok(GcReport { reads, sentences })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::GcConfig;

    /// Each distinct sentence runs once, yet every sentence gets the row the GC gives it alone.
    #[test]
    fn probabilities_of_repeated_sentences_equal_those_run_one_by_one() {
        let dev = Device::Cpu;
        let cfg = GcConfig {
            vocab_size: 40,
            hidden: 8,
            layers: 1,
            heads: 2,
            intermediate: 16,
            seq_len: 5,
            classes: 3,
            dropout: 0.1,
        };
        let (gc, _vm) = GeneClassifier::init(&cfg, &dev, 5).unwrap();
        // Reads 0 and 2 are equal, read 1 is read 0 shifted by one: 9 sentences, 4 distinct.
        let ex = Examples {
            kmers: 5,
            tokens: vec![10, 11, 12, 13, 14, 11, 12, 13, 14, 15, 10, 11, 12, 13, 14],
            labels: vec![0, 1, 0],
            ..Default::default()
        };
        let s = Sentences {
            examples: &ex,
            per_read: 3,
            words: 3,
        };
        let batched = probabilities(&gc, &s, 2, &dev, None).unwrap();
        assert_eq!(batched.len(), 9 * 3);
        for i in 0..s.len() {
            let (ids, _) = s.batch(&[i], &dev).unwrap();
            let alone = candle_nn::ops::softmax(&gc.forward(&ids, None).unwrap(), D::Minus1)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            for (a, b) in alone.iter().zip(&batched[i * 3..(i + 1) * 3]) {
                assert!(
                    (a - b).abs() < 1e-6,
                    "sentence {i}: {alone:?} vs {batched:?}"
                );
            }
        }
        assert_eq!(batched[..9], batched[18..], "equal reads, equal rows");
        assert_eq!(
            batched[3..9],
            batched[9..15],
            "the shared sentences of the shifted read"
        );
    }
}
