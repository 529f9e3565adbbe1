//! The `train-fc` and `test-fc` steps: the frozen GC names a gene at every position of a read;
//! the read's breakpoint features (how much better it is explained by one gene up to a
//! breakpoint and another after it than by one gene throughout, where, and how well each part
//! fits) are gene-agnostic, so that what the fusion classifier (an MLP, BCE-with-logits with
//! pos_weight = n0/n1) learns on the training fusions carries over to partner pairs it never
//! saw; the partner pair of a call is the breakpoint's two genes.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use crate::dataset::{self, Examples, Labels};
use crate::error::{StepError, model};
use crate::evaluate::{self, Call, FusionScores, Truth};
use crate::gc::{self, CONFIG, HISTORY, WEIGHTS};
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

/// The summary features of a read's breakpoint (see [`Breakpoint::features`]).
pub const SUMMARY: usize = 6;

/// Features per read of `positions` k-mers: the breakpoint's summary, then two profiles along
/// the read: the split's left gene's log-probability less its right gene's (a step from high to
/// low where the genes change), and the single best gene's (a dip where another gene is).
pub fn features_len(positions: usize) -> usize {
    SUMMARY + 2 * positions
}

/// Log-probabilities below this are taken as this: the profiles stay in a range an MLP takes.
const FLOOR: f32 = -20.0;

/// A read's features (`lp`: its `positions` rows of `genes` log-probabilities).
pub fn read_features(lp: &[f32], genes: usize, bp: &Breakpoint) -> Vec<f32> {
    let at = |row: &[f32], g: u16| row[g as usize].max(FLOOR);
    let mut f = bp.features().to_vec();
    f.extend(
        lp.chunks(genes)
            .map(|row| at(row, bp.left) - at(row, bp.right)),
    );
    f.extend(lp.chunks(genes).map(|row| at(row, bp.single)));
    f
}

/// The best explanation of a read by two genes split at one position, against one gene.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Breakpoint {
    /// Log-likelihood gain of the best split over the best single gene (summed over positions).
    pub gain: f32,
    /// The first position of the second part.
    pub at: usize,
    pub left: u16,
    pub right: u16,
    /// The best single gene and the runner-up.
    pub single: u16,
    pub second: u16,
    /// Mean log-probability of the left part's gene over the left part, and of the right's.
    pub left_fit: f32,
    pub right_fit: f32,
    /// Mean log-probability of the single gene over the read.
    pub single_fit: f32,
    positions: usize,
}

impl Breakpoint {
    /// Gene-agnostic features: the gain per position, where the split is (as a share of the
    /// read, and the shorter part's share), how well each part and the single gene fit.
    pub fn features(&self) -> [f32; SUMMARY] {
        let n = self.positions as f32;
        [
            self.gain / n,
            self.at as f32 / n,
            self.at.min(self.positions - self.at) as f32 / n,
            self.left_fit,
            self.right_fit,
            self.single_fit,
        ]
    }
}

/// The two largest of `v`, by index (the first is the largest).
fn top2(v: &[f64]) -> (usize, usize) {
    let (mut a, mut b) = (0, usize::MAX);
    for i in 1..v.len() {
        if v[i] > v[a] {
            (a, b) = (i, a);
        } else if b == usize::MAX || v[i] > v[b] {
            b = i;
        }
    }
    (a, if b == usize::MAX { a } else { b })
}

/// The read's best split (`lp`: `positions` rows of `genes` log-probabilities), over every
/// breakpoint with at least one position on each side and two different genes.
pub fn breakpoint(lp: &[f32], genes: usize) -> Breakpoint {
    let n = lp.len() / genes;
    let mut prefix = vec![0f64; (n + 1) * genes];
    for i in 0..n {
        for g in 0..genes {
            prefix[(i + 1) * genes + g] = prefix[i * genes + g] + f64::from(lp[i * genes + g]);
        }
    }
    let total = &prefix[n * genes..];
    let (single, second) = top2(total);
    let mut best = (f64::NEG_INFINITY, 1, single, second);
    let mut right = vec![0f64; genes];
    for t in 1..n {
        let left = &prefix[t * genes..(t + 1) * genes];
        for g in 0..genes {
            right[g] = total[g] - left[g];
        }
        let (a1, a2) = top2(left);
        let (b1, b2) = top2(&right);
        let (a, b) = if a1 != b1 {
            (a1, b1)
        } else if left[a1] + right[b2] >= left[a2] + right[b1] {
            (a1, b2)
        } else {
            (a2, b1)
        };
        let v = left[a] + right[b];
        if v > best.0 {
            best = (v, t, a, b);
        }
    }
    let (v, at, l, r) = best;
    let at = at.min(n.saturating_sub(1)).max(1.min(n));
    let part = |g: usize, lo: usize, hi: usize| {
        ((prefix[hi * genes + g] - prefix[lo * genes + g]) / (hi - lo).max(1) as f64) as f32
    };
    Breakpoint {
        gain: (v - total[single]) as f32,
        at,
        left: l as u16,
        right: r as u16,
        single: single as u16,
        second: second as u16,
        left_fit: part(l, 0, at),
        right_fit: part(r, at, n),
        single_fit: (total[single] / n.max(1) as f64) as f32,
        positions: n,
    }
}

/// The breakpoint and the features of every read, from the GC's log-probabilities of all of
/// them.
pub fn breakpoints(lp: &[f32], positions: usize, genes: usize) -> (Vec<Breakpoint>, Vec<f32>) {
    let mut values = Vec::with_capacity(lp.len() / genes * 2 + lp.len() / positions.max(1));
    let bps = lp
        .chunks(positions * genes)
        .map(|read| {
            let bp = breakpoint(read, genes);
            values.extend(read_features(read, genes, &bp));
            bp
        })
        .collect();
    (bps, values)
}

/// A read's call from its breakpoint and P(chimeric): the split's genes when it is called
/// chimeric, else the two best single genes.
pub fn call(bp: &Breakpoint, p_chimeric: f32, threshold: f64) -> Call {
    let chimeric = f64::from(p_chimeric) > threshold;
    Call {
        chimeric,
        score: p_chimeric,
        pair: Some(if chimeric {
            [bp.left, bp.right]
        } else {
            [bp.single, bp.second]
        }),
    }
}

/// The FC's inputs of a split: `width` floats per read.
struct Features {
    values: Vec<f32>,
    labels: Vec<u32>,
    width: usize,
}

impl Features {
    fn batch(&self, idx: &[usize], dev: &Device) -> candle_core::Result<(Tensor, Tensor)> {
        let w = self.width;
        let mut x = Vec::with_capacity(idx.len() * w);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend_from_slice(&self.values[i * w..(i + 1) * w]);
            y.push(self.labels[i] as f32);
        }
        Ok((
            Tensor::from_vec(x, (idx.len(), w), dev)?,
            Tensor::from_vec(y, idx.len(), dev)?,
        ))
    }
}

/// The breakpoints and features of a split's reads under the frozen GC of `gc_dir`; `step`
/// names the split in the progress lines.
fn split_breakpoints(
    step: &str,
    gc_dir: &Path,
    ex: &Examples,
    labels: &Labels,
    batch: usize,
    dev: &Device,
) -> Result<(Vec<Breakpoint>, Vec<f32>), StepError> {
    let (gcm, _vm) = gc::load(gc_dir, dev)?;
    gc::check_compatible(&gcm.cfg, labels, gc_dir)?;
    let lp = gc::log_probabilities(&gcm, ex, batch, dev, Some(step))
        .map_err(model("running the frozen gene classifier over the reads"))?;
    Ok(breakpoints(&lp, labels.kmers, labels.genes.len()))
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

/// Reads per GC forward pass when computing the FC's inputs.
pub const GC_BATCH: usize = 256;

/// Runs `train-fc`; writes the model directory and returns the loss history.
pub fn train(a: &TrainFc) -> Result<History, StepError> {
    let labels = dataset::read_labels(a.labels)?;
    let train_ex = gc::first(dataset::load_fc(a.train, &labels)?, a.caps.limit);
    let val_ex = gc::first(dataset::load_fc(a.val, &labels)?, a.caps.limit);
    let width = features_len(labels.kmers);
    let features = |step, ex: &Examples| -> Result<Features, StepError> {
        let (_, values) = split_breakpoints(step, a.gc_model, ex, &labels, GC_BATCH, a.dev)?;
        Ok(Features {
            values,
            labels: ex.labels.clone(),
            width,
        })
    };
    let train_f = features("train-fc (train split)", &train_ex)?;
    let val_f = features("train-fc (val split)", &val_ex)?;
    let n1 = train_f.labels.iter().filter(|&&l| l == 1).count();
    let n0 = train_f.labels.len() - n1;
    if n0 == 0 || n1 == 0 {
        return Err(StepError::Mismatch(format!(
            "the FC training split has {n0} chimeric and {n1} non-chimeric reads; both are needed (raise --fusions-per-gene or --coverage)"
        )));
    }
    let cfg = FcConfig {
        input: width,
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

/// Loads an FC model directory made for reads of `positions` k-mers.
pub fn load(dir: &Path, positions: usize, dev: &Device) -> Result<FusionClassifier, StepError> {
    let p = dir.join(CONFIG);
    let bytes = std::fs::read(&p).map_err(|source| StepError::Io {
        path: p.clone(),
        source,
    })?;
    let cfg: FcConfig = serde_json::from_slice(&bytes)
        .map_err(|source| StepError::ModelConfig { path: p, source })?;
    if cfg.input != features_len(positions) {
        return Err(StepError::Mismatch(format!(
            "the fusion classifier in {} takes {} inputs per read, not the {} of reads of {positions} k-mers; use the models and labels of one run (or train it again with this kgf-step)",
            dir.display(),
            cfg.input,
            features_len(positions)
        )));
    }
    let stage = "loading the fusion classifier";
    let mut varmap = VarMap::new();
    let fc = FusionClassifier::new(&cfg, VarBuilder::from_varmap(&varmap, DType::F32, dev))
        .map_err(model(stage))?;
    varmap.load(dir.join(WEIGHTS)).map_err(model(stage))?;
    Ok(fc)
}

/// P(chimeric) of each read from its features (`features`: `fc.cfg.input` per read).
pub fn chimeric_probabilities(
    fc: &FusionClassifier,
    features: &[f32],
    dev: &Device,
) -> candle_core::Result<Vec<f32>> {
    let w = fc.cfg.input;
    let mut out = Vec::with_capacity(features.len() / w);
    for chunk in features.chunks(4096 * w) {
        let x = Tensor::from_vec(chunk.to_vec(), (chunk.len() / w, w), dev)?;
        // The FC's logit scores label 1, "not chimeric".
        let p = candle_nn::ops::sigmoid(&fc.forward(&x, None)?)?.to_vec1::<f32>()?;
        out.extend(p.into_iter().map(|v| 1.0 - v));
    }
    Ok(out)
}

/// The test figures of the FC: the binary read metrics (confusion matrix and ROC curve for the
/// KFP UI), the fusion caller's figures at the read and the event level, and every read's call.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FcReport {
    pub reads: Metrics,
    pub fusion: FusionScores,
    #[serde(skip)]
    pub calls: Vec<Call>,
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

/// Runs `test-fc`: the FC over the test split's reads (held-out fusion events), called at
/// P(chimeric) > `threshold` and scored per read and per event.
pub fn test(
    test_dir: &Path,
    labels_dir: &Path,
    gc_model: &Path,
    fc_model: &Path,
    batch: usize,
    threshold: f64,
    dev: &Device,
) -> Result<FcReport, StepError> {
    let labels = dataset::read_labels(labels_dir)?;
    let ex = dataset::load_fc(test_dir, &labels)?;
    let (bps, features) = split_breakpoints("test-fc", gc_model, &ex, &labels, batch, dev)?;
    let fc = load(fc_model, labels.kmers, dev)?;
    let p = chimeric_probabilities(&fc, &features, dev)
        .map_err(model("testing the fusion classifier"))?;
    let calls: Vec<Call> = bps
        .iter()
        .zip(&p)
        .map(|(b, &p)| call(b, p, threshold))
        .collect();
    let pred: Vec<u32> = calls.iter().map(|c| u32::from(!c.chimeric)).collect();
    let scores: Vec<f32> = p.iter().flat_map(|&p| [p, 1.0 - p]).collect();
    Ok(FcReport {
        reads: metrics::compute(&ex.labels, &pred, &scores, &labels.fc_labels, &ex.groups),
        fusion: evaluate::score(&truth(&ex), &calls),
        calls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Log-probabilities of `n` positions, gene `g` at -0.1 where `pick(i)` names it, -5 else.
    fn lp(n: usize, genes: usize, pick: impl Fn(usize) -> usize) -> Vec<f32> {
        (0..n)
            .flat_map(|i| (0..genes).map(move |g| (i, g)))
            .map(|(i, g)| if g == pick(i) { -0.1 } else { -5.0 })
            .collect()
    }

    #[test]
    fn the_breakpoint_of_a_chimeric_read_is_where_the_gene_changes() {
        let x = lp(30, 4, |i| if i < 12 { 2 } else { 0 });
        let b = breakpoint(&x, 4);
        assert_eq!((b.at, b.left, b.right), (12, 2, 0));
        // 30 positions at -0.1 against 12 at -5 for the best single gene (0).
        assert!((b.gain - 12.0 * 4.9).abs() < 1e-3, "{}", b.gain);
        assert_eq!(b.single, 0);
        assert!((b.left_fit + 0.1).abs() < 1e-6 && (b.right_fit + 0.1).abs() < 1e-6);
        let f = b.features();
        assert!((f[1] - 0.4).abs() < 1e-6 && (f[2] - 0.4).abs() < 1e-6);
        let c = call(&b, 0.9, 0.5);
        assert_eq!((c.chimeric, c.pair), (true, Some([2, 0])));
    }

    #[test]
    fn a_read_of_one_gene_gains_nothing_by_splitting_and_names_its_gene() {
        let x = lp(30, 4, |_| 3);
        let b = breakpoint(&x, 4);
        assert!(b.gain <= 0.0, "{}", b.gain);
        assert_eq!(b.single, 3);
        let c = call(&b, 0.1, 0.5);
        assert_eq!((c.chimeric, c.pair.unwrap()[0]), (false, 3));
    }
}
