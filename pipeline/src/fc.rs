//! The `train-fc` and `test-fc` steps: the frozen GC turns each read into its sentences' gene
//! probabilities (computed once per distinct sentence, then cached in memory as
//! `sentences × genes` f32 per read), and the fusion classifier (MLP) is trained on them with
//! BCE-with-logits, pos_weight = n0/n1.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Examples, Labels};
use crate::error::{StepError, model};
use crate::evaluate::{self, Call, FusionScores, Truth};
use crate::gc::{self, CONFIG, HISTORY, Sentences, WEIGHTS};
use crate::metrics::{self, Metrics};
use crate::model::{FcConfig, FusionClassifier};
use crate::report;
use crate::rng::{self, Rng};
use crate::train::{self, Caps, History, Task, TrainParams};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FcArch {
    pub hidden: Vec<usize>,
    pub dropout: f64,
}

/// GC features of a split: `width` floats per read.
struct Features {
    values: Vec<f32>,
    labels: Vec<u32>,
    width: usize,
}

impl Features {
    fn batch(&self, idx: &[usize], dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let mut x = Vec::with_capacity(idx.len() * self.width);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.values[i * self.width..(i + 1) * self.width]);
            y.push(self.labels[i] as f32);
        }
        Ok((
            Tensor::from_vec(x, (idx.len(), self.width), dev)?,
            Tensor::from_vec(y, idx.len(), dev)?,
        ))
    }
}

/// `step` names the split in the progress lines.
fn features(
    step: &str,
    gc_dir: &Path,
    ex: &Examples,
    labels: &Labels,
    batch: usize,
    dev: &Device,
) -> Result<Features, StepError> {
    let (gcm, _vm) = gc::load(gc_dir, dev)?;
    gc::check_compatible(&gcm.cfg, labels, gc_dir)?;
    let s = Sentences {
        examples: ex,
        per_read: labels.sentences(),
        words: labels.words,
    };
    let values = gc::probabilities(&gcm, &s, batch, dev, Some(step))
        .map_err(model("running the frozen gene classifier over the reads"))?;
    Ok(Features {
        values,
        labels: ex.labels.clone(),
        width: labels.sentences() * labels.genes.len(),
    })
}

struct FcTask<'a> {
    model: &'a FusionClassifier,
    train: Features,
    val: Features,
    pos_weight: f64,
    batch_size: usize,
    dev: Device,
}

impl Task for FcTask<'_> {
    fn train_len(&self) -> usize {
        self.train.labels.len()
    }

    fn batch_loss(&self, batch: &[usize], rng: &mut Rng) -> candle_core::Result<Tensor> {
        let (x, y) = self.train.batch(batch, &self.dev)?;
        train::bce_with_logits(&self.model.forward(&x, Some(rng))?, &y, self.pos_weight)
    }

    fn val_loss(&self) -> candle_core::Result<f64> {
        let (mut total, mut n) = (0.0, 0usize);
        let all: Vec<usize> = (0..self.val.labels.len()).collect();
        for chunk in all.chunks(self.batch_size.max(1)) {
            let (x, y) = self.val.batch(chunk, &self.dev)?;
            let l = train::bce_with_logits(&self.model.forward(&x, None)?, &y, self.pos_weight)?;
            total += f64::from(l.to_scalar::<f32>()?) * chunk.len() as f64;
            n += chunk.len();
        }
        Ok(if n > 0 { total / n as f64 } else { f64::NAN })
    }
}

pub struct TrainFc<'a> {
    pub train: &'a Path,
    pub val: &'a Path,
    pub labels: &'a Path,
    pub gc_model: &'a Path,
    pub model_out: &'a Path,
    pub arch: &'a FcArch,
    pub params: &'a TrainParams,
    pub caps: Caps,
    pub seed: u64,
    pub dev: &'a Device,
}

/// Runs `train-fc`; writes the model directory and returns the loss history.
pub fn train(a: &TrainFc) -> Result<History, StepError> {
    let labels = dataset::read_labels(a.labels)?;
    let batch = a.params.batch_size;
    let train_f = features(
        "train-fc (train split)",
        a.gc_model,
        &gc::first(dataset::load_fc(a.train, &labels)?, a.caps.limit),
        &labels,
        batch,
        a.dev,
    )?;
    let val_f = features(
        "train-fc (val split)",
        a.gc_model,
        &gc::first(dataset::load_fc(a.val, &labels)?, a.caps.limit),
        &labels,
        batch,
        a.dev,
    )?;
    let n1 = train_f.labels.iter().filter(|&&l| l == 1).count();
    let n0 = train_f.labels.len() - n1;
    if n0 == 0 || n1 == 0 {
        return Err(StepError::Mismatch(format!(
            "the FC training split has {n0} chimeric and {n1} non-chimeric reads; both are needed (raise --fusions-per-gene or --coverage)"
        )));
    }
    let cfg = FcConfig {
        input: train_f.width,
        hidden: a.arch.hidden.clone(),
        dropout: a.arch.dropout,
    };
    let stage = "training the fusion classifier";
    let (fc, mut varmap) = FusionClassifier::init(&cfg, a.dev, rng::key(a.seed, "fc-init", 0))
        .map_err(model(stage))?;
    let task = FcTask {
        model: &fc,
        train: train_f,
        val: val_f,
        pos_weight: n0 as f64 / n1 as f64,
        batch_size: batch,
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
        rng::key(a.seed, "fc-train", 0),
        a.caps.max_steps,
        &a.model_out.join(WEIGHTS),
        |e| {
            eprintln!(
                "train-fc: epoch {:>3} train loss {:.4} val loss {:.4} ({:.1}s, {} steps in {:.2}s, {:.0} reads/s without validation)",
                e.epoch, e.train_loss, e.val_loss, e.seconds, e.steps, e.train_seconds, e.throughput
            )
        },
    )
    .map_err(model(stage))?;
    report::write_json(a.model_out, CONFIG, &cfg)?;
    report::write_json(a.model_out, HISTORY, &history)?;
    report::write_json(
        a.model_out,
        "train.json",
        &serde_json::json!({"params": a.params, "pos_weight": n0 as f64 / n1 as f64}),
    )?;
    Ok(history)
}

fn load(dir: &Path, dev: &Device) -> Result<FusionClassifier, StepError> {
    let p = dir.join(CONFIG);
    let bytes = std::fs::read(&p).map_err(|source| StepError::Io {
        path: p.clone(),
        source,
    })?;
    let cfg: FcConfig = serde_json::from_slice(&bytes)
        .map_err(|source| StepError::ModelConfig { path: p, source })?;
    let stage = "loading the fusion classifier";
    let mut varmap = VarMap::new();
    let fc = FusionClassifier::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))
        .map_err(model(stage))?;
    varmap.load(dir.join(WEIGHTS)).map_err(model(stage))?;
    Ok(fc)
}

/// The test figures of the FC: the binary read metrics (confusion matrix and ROC curve for the
/// KFP UI), the fusion caller's figures at the read and the event level, and every read's call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FcReport {
    pub reads: Metrics,
    pub fusion: FusionScores,
    #[serde(skip)]
    pub calls: Vec<Call>,
    #[serde(skip)]
    pub truth: Vec<Truth>,
}

/// What is true of each read of an FC split.
pub fn truth(ex: &Examples) -> Vec<Truth> {
    (0..ex.len())
        .map(|i| Truth {
            chimeric: ex.labels[i] == 0,
            event: ex.groups[i],
            pair: ex.partners[i],
        })
        .collect()
}

/// The two genes with the highest mean probability of a read (`mean`: one per gene).
pub fn top_two(mean: &[f32]) -> [u16; 2] {
    let mut order: Vec<usize> = (0..mean.len()).collect();
    order.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
    [
        order[0] as u16,
        order.get(1).copied().unwrap_or(order[0]) as u16,
    ]
}

/// Runs `test-fc`: the FC over the test split's reads (held-out fusion events), scored per read
/// and per event.
pub fn test(
    test_dir: &Path,
    labels_dir: &Path,
    gc_model: &Path,
    fc_model: &Path,
    batch: usize,
    dev: &Device,
) -> Result<FcReport, StepError> {
    let labels = dataset::read_labels(labels_dir)?;
    let ex = dataset::load_fc(test_dir, &labels)?;
    let f = features("test-fc", gc_model, &ex, &labels, batch, dev)?;
    let fc = load(fc_model, dev)?;
    if fc.cfg.input != f.width {
        return Err(StepError::Mismatch(format!(
            "the fusion classifier in {} takes {} features per read but this dataset gives {}; train it on this dataset",
            fc_model.display(),
            fc.cfg.input,
            f.width
        )));
    }
    let stage = "testing the fusion classifier";
    let mut scores = Vec::with_capacity(2 * f.labels.len());
    let all: Vec<usize> = (0..f.labels.len()).collect();
    for chunk in all.chunks(batch.max(1)) {
        let (x, _) = f.batch(chunk, dev).map_err(model(stage))?;
        let p = candle_nn::ops::sigmoid(&fc.forward(&x, None).map_err(model(stage))?)
            .and_then(|p| p.to_vec1::<f32>())
            .map_err(model(stage))?;
        for v in p {
            scores.extend([1.0 - v, v]);
        }
    }
    let pred: Vec<u32> = scores.chunks(2).map(|s| u32::from(s[1] >= 0.5)).collect();
    let genes = labels.genes.len();
    let means = gc::read_means(&f.values, labels.sentences(), genes);
    let calls: Vec<Call> = pred
        .iter()
        .zip(scores.chunks(2))
        .zip(means.chunks(genes))
        .map(|((&p, s), mean)| Call {
            chimeric: p == 0,
            score: s[0],
            pair: Some(top_two(mean)),
        })
        .collect();
    let truth = truth(&ex);
    Ok(FcReport {
        reads: metrics::compute(&f.labels, &pred, &scores, &labels.fc_labels, &ex.groups),
        fusion: evaluate::score(&truth, &calls),
        calls,
        truth,
    })
}
