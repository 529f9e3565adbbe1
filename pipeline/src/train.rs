//! The training loop shared by both models: AdamW, global gradient-norm clipping, per-epoch
//! train/validation losses, early stopping on validation loss with the best weights kept; and
//! the two losses of design §4 (class-weighted cross-entropy, BCE-with-logits with pos_weight).

use candle_core::{D, DType, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarMap};
use serde::{Deserialize, Serialize};

use crate::model::Result;
use crate::rng::Rng;

/// Optimiser and schedule settings (flags of the model steps).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct TrainParams {
    pub lr: f64,
    pub weight_decay: f64,
    /// Maximum global L2 norm of the gradients.
    pub clip: f64,
    pub batch_size: usize,
    pub max_epochs: usize,
    /// Epochs without a better validation loss before stopping.
    pub patience: usize,
}

/// Caps on a training run (`--max-steps`, `--limit`), so that a benchmark or a smoke run needs
/// no edited data files.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Caps {
    /// Stop after this many optimiser steps in all (the epoch in progress is validated first).
    pub max_steps: Option<usize>,
    /// Use only the first N examples of the train and of the validation split.
    pub limit: Option<usize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Epoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub val_loss: f64,
    /// Wall time of the epoch, validation included.
    pub seconds: f64,
    /// Wall time of the optimiser steps alone (batches, forward, backward, update).
    #[serde(default)]
    pub train_seconds: f64,
    #[serde(default)]
    pub steps: usize,
    /// Training examples per second of `train_seconds` (validation excluded).
    pub throughput: f64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct History {
    pub epochs: Vec<Epoch>,
    pub best_epoch: usize,
    pub best_val_loss: f64,
    pub stopped_early: bool,
    /// Training ended at `--max-steps`.
    #[serde(default)]
    pub reached_max_steps: bool,
}

/// Class-weighted cross-entropy with PyTorch's reduction: Σ wᵧ·nllᵢ / Σ wᵧ.
pub fn weighted_cross_entropy(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let w = weights.index_select(targets, 0)?;
    (picked * &w)?.sum_all()?.neg()? / w.sum_all()?.to_scalar::<f32>()? as f64
}

/// The (numerator, denominator) of the weighted cross-entropy, to average over many batches.
pub fn weighted_cross_entropy_parts(
    logits: &Tensor,
    targets: &Tensor,
    weights: &Tensor,
) -> Result<(f64, f64)> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?;
    let w = weights.index_select(targets, 0)?;
    let num = (picked * &w)?.sum_all()?.neg()?.to_scalar::<f32>()?;
    Ok((f64::from(num), f64::from(w.sum_all()?.to_scalar::<f32>()?)))
}

/// Balanced class weights n / (classes · countᶜ); 0 for a class with no examples.
pub fn class_weights(labels: &[u32], classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                labels.len() as f32 / (classes * c) as f32
            }
        })
        .collect()
}

fn softplus(x: &Tensor) -> Result<Tensor> {
    // max(x, 0) + log(1 + exp(-|x|)), stable for large |x|.
    x.relu()? + ((x.abs()?.neg()?.exp()? + 1.0)?.log()?)
}

/// BCE-with-logits with `pos_weight` on the positive class (label 1), mean over the batch:
/// pos_weight·y·softplus(−x) + (1−y)·softplus(x).
pub fn bce_with_logits(logits: &Tensor, targets: &Tensor, pos_weight: f64) -> Result<Tensor> {
    let pos = (targets * softplus(&logits.neg()?)?)? * pos_weight;
    let neg = ((targets.neg()? + 1.0)? * softplus(logits)?)?;
    (pos? + neg)?.mean_all()
}

/// The global L2 norm of the gradients of `vars`.
fn global_norm(grads: &candle_core::backprop::GradStore, vars: &[Var]) -> Result<f64> {
    let mut sq: Option<Tensor> = None;
    for v in vars {
        if let Some(g) = grads.get(v) {
            let s = g.sqr()?.sum_all()?;
            sq = Some(match sq {
                Some(acc) => (acc + s)?,
                None => s,
            });
        }
    }
    let Some(sq) = sq else { return Ok(0.0) };
    Ok(f64::from(sq.to_dtype(DType::F32)?.to_scalar::<f32>()?).sqrt())
}

/// The factor that brings a global norm down to `max_norm` (1 when it is below).
fn clip_factor(norm: f64, max_norm: f64) -> f64 {
    if norm > max_norm {
        max_norm / (norm + 1e-6)
    } else {
        1.0
    }
}

/// Scales the gradients so that their global L2 norm is at most `max_norm`; returns the norm
/// before clipping.
fn clip_gradients(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[Var],
    max_norm: f64,
) -> Result<f64> {
    let norm = global_norm(grads, vars)?;
    let scale = clip_factor(norm, max_norm);
    if scale < 1.0 {
        for v in vars {
            if let Some(g) = grads.get(v) {
                let scaled = (g * scale)?;
                grads.insert(v, scaled);
            }
        }
    }
    Ok(norm)
}

/// AdamW after clipping: fused in place on the CPU, candle-nn's elsewhere.
enum Optimiser {
    Fused(crate::fused::AdamW),
    Candle(AdamW),
}

impl Optimiser {
    fn new(vars: &[Var], params: ParamsAdamW) -> Result<Self> {
        Ok(match crate::fused::AdamW::new(vars, params.clone())? {
            Some(fused) => Self::Fused(fused),
            None => Self::Candle(AdamW::new(vars.to_vec(), params)?),
        })
    }

    fn step(
        &mut self,
        grads: &mut candle_core::backprop::GradStore,
        vars: &[Var],
        clip: f64,
    ) -> Result<()> {
        match self {
            Self::Fused(opt) => opt.step(grads, clip_factor(global_norm(grads, vars)?, clip)),
            Self::Candle(opt) => {
                clip_gradients(grads, vars, clip)?;
                opt.step(grads)
            }
        }
    }
}

/// What the loop needs from a model.
pub trait Task {
    /// Number of training examples.
    fn train_len(&self) -> usize;
    /// The loss of a training batch (example indices), with dropout from `rng`.
    fn batch_loss(&self, batch: &[usize], rng: &mut Rng) -> Result<Tensor>;
    /// The mean loss over the validation split, without dropout.
    fn val_loss(&self) -> Result<f64>;
}

/// Trains every variable of `varmap` (in name order) with early stopping, and for at most
/// `max_steps` optimiser steps; on return `varmap` holds the weights of the best epoch (they are
/// also at `best_path`). Deterministic given `seed` on the CPU.
pub fn fit(
    task: &impl Task,
    varmap: &mut VarMap,
    params: &TrainParams,
    seed: u64,
    max_steps: Option<usize>,
    best_path: &std::path::Path,
    mut on_epoch: impl FnMut(&Epoch),
) -> Result<History> {
    let vars = crate::model::sorted_vars(varmap);
    let mut opt = Optimiser::new(
        &vars,
        ParamsAdamW {
            lr: params.lr,
            weight_decay: params.weight_decay,
            ..Default::default()
        },
    )?;
    let mut history = History {
        best_val_loss: f64::INFINITY,
        ..Default::default()
    };
    let mut since_best = 0;
    let mut drop_rng = Rng::derive(seed, "dropout", 0);
    let mut steps_left = max_steps.unwrap_or(usize::MAX);
    for epoch in 1..=params.max_epochs {
        if steps_left == 0 {
            break;
        }
        let started = std::time::Instant::now();
        let mut order: Vec<usize> = (0..task.train_len()).collect();
        Rng::derive(seed, "shuffle", epoch as u64).shuffle(&mut order);
        let (mut total, mut seen, mut steps) = (0f64, 0usize, 0usize);
        for batch in order.chunks(params.batch_size.max(1)).take(steps_left) {
            let loss = task.batch_loss(batch, &mut drop_rng)?;
            let mut grads = loss.backward()?;
            opt.step(&mut grads, &vars, params.clip)?;
            total += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
            seen += batch.len();
            steps += 1;
        }
        steps_left -= steps;
        let train_seconds = started.elapsed().as_secs_f64();
        let val_loss = task.val_loss()?;
        let e = Epoch {
            epoch,
            train_loss: total / seen.max(1) as f64,
            val_loss,
            seconds: started.elapsed().as_secs_f64(),
            train_seconds,
            steps,
            throughput: seen as f64 / train_seconds.max(1e-9),
        };
        on_epoch(&e);
        history.epochs.push(e);
        if val_loss < history.best_val_loss {
            history.best_val_loss = val_loss;
            history.best_epoch = epoch;
            since_best = 0;
            varmap.save(best_path)?;
        } else {
            since_best += 1;
            if since_best >= params.patience {
                history.stopped_early = true;
                break;
            }
        }
        if steps_left == 0 {
            history.reached_max_steps = true;
        }
    }
    if history.best_epoch > 0 {
        varmap.load(best_path)?;
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn t(v: &[f32]) -> Tensor {
        Tensor::new(v, &Device::Cpu).unwrap()
    }

    #[test]
    fn weighted_cross_entropy_matches_hand_computation() {
        let logits = Tensor::new(&[[2.0f32, 0.0], [0.0, 1.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[0u32, 0], &Device::Cpu).unwrap();
        let w = t(&[3.0, 1.0]);
        let nll0 = -(2f64.exp() / (2f64.exp() + 1.0)).ln();
        let nll1 = -(1.0 / (1.0 + 1f64.exp())).ln();
        let got = weighted_cross_entropy(&logits, &targets, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((f64::from(got) - (nll0 + nll1) / 2.0).abs() < 1e-5);
        let targets = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        let nll1b = -(1f64.exp() / (1.0 + 1f64.exp())).ln();
        let got = weighted_cross_entropy(&logits, &targets, &w)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((f64::from(got) - (3.0 * nll0 + nll1b) / 4.0).abs() < 1e-5);
        assert_eq!(
            class_weights(&[0, 0, 0, 1], 3),
            vec![4.0 / 9.0, 4.0 / 3.0, 0.0]
        );
    }

    #[test]
    fn bce_with_pos_weight_matches_hand_computation_and_is_stable() {
        let x = t(&[0.5, -1.0, 80.0]);
        let y = t(&[1.0, 0.0, 0.0]);
        let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
        let expected = (2.0 * -sig(0.5).ln() + -(1.0 - sig(-1.0)).ln() + 80.0) / 3.0;
        let got = bce_with_logits(&x, &y, 2.0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            (f64::from(got) - expected).abs() < 1e-4,
            "{got} vs {expected}"
        );
    }

    /// Fits one scalar to 0 with loss w²; validation sleeps so that its time shows.
    struct Quadratic {
        w: Var,
        val_sleep: std::time::Duration,
    }

    impl Task for Quadratic {
        fn train_len(&self) -> usize {
            10
        }
        fn batch_loss(&self, _batch: &[usize], _rng: &mut Rng) -> Result<Tensor> {
            self.w.as_tensor().sqr()?.sum_all()
        }
        fn val_loss(&self) -> Result<f64> {
            std::thread::sleep(self.val_sleep);
            Ok(f64::from(
                self.w.as_tensor().sqr()?.sum_all()?.to_scalar::<f32>()?,
            ))
        }
    }

    #[test]
    fn max_steps_stops_mid_epoch_and_throughput_excludes_validation() {
        let dir = tempfile::tempdir().unwrap();
        let mut varmap = VarMap::new();
        varmap
            .get(
                1,
                "w",
                candle_nn::Init::Const(1.0),
                DType::F32,
                &Device::Cpu,
            )
            .unwrap();
        let vars = crate::model::sorted_vars(&varmap);
        let task = Quadratic {
            w: vars[0].clone(),
            val_sleep: std::time::Duration::from_millis(300),
        };
        let params = TrainParams {
            lr: 0.1,
            weight_decay: 0.0,
            clip: 10.0,
            batch_size: 4,
            max_epochs: 5,
            patience: 5,
        };
        let h = fit(
            &task,
            &mut varmap,
            &params,
            1,
            Some(4),
            &dir.path().join("best.safetensors"),
            |_| {},
        )
        .unwrap();
        // 10 examples in batches of 4 = 3 steps per epoch: 3 in epoch 1, 1 in epoch 2.
        let steps: Vec<usize> = h.epochs.iter().map(|e| e.steps).collect();
        assert_eq!(steps, [3, 1]);
        assert!(h.reached_max_steps && !h.stopped_early);
        let e = &h.epochs[1];
        assert!(e.seconds - e.train_seconds >= 0.29, "{e:?}");
        assert!((e.throughput - 4.0 / e.train_seconds).abs() < 1e-6 * e.throughput);
    }

    #[test]
    fn clipping_bounds_the_global_norm() {
        let a = Var::new(&[1.0f32, 1.0], &Device::Cpu).unwrap();
        let loss = (a.as_tensor() * 10.0).unwrap().sum_all().unwrap();
        let mut grads = loss.backward().unwrap();
        let before = clip_gradients(&mut grads, std::slice::from_ref(&a), 0.5).unwrap();
        assert!((before - 200f64.sqrt()).abs() < 1e-4);
        let g = grads
            .get(&a)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((f64::from(g).sqrt() - 0.5).abs() < 1e-4);
    }
}
