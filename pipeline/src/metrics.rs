//! Classification metrics of the test steps: accuracy, balanced accuracy, weighted and macro
//! precision/recall/F1, confusion matrix, ROC-AUC (binary, or macro one-vs-rest) and the binary
//! ROC curve, each scalar with a 95 % interval. Pure functions over labels, scores and sample
//! groups; writing them out is `report`'s job.
//!
//! Intervals: test samples are not independent (the 126 sentences of a GC fragment, the
//! fragments of one block, the reads of one fusion), so the interval resamples whole groups
//! (a cluster bootstrap, percentile method, a fixed seed so that a run's report is
//! reproducible). Where every sample is its own group, accuracy — a plain proportion — gets the
//! Wilson score interval instead, which needs no resampling.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Confidence level of every interval.
pub const CONFIDENCE: f64 = 0.95;
/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 1000;

/// A two-sided interval at `CONFIDENCE` and how it was computed.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
    /// `wilson` or `bootstrap`.
    pub method: String,
}

/// The intervals of a [`Metrics`], by scalar name (`accuracy`, `f1_macro`, …).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Intervals {
    pub confidence: f64,
    pub resamples: usize,
    /// Independent units resampled (fragment blocks, fusions, or samples).
    pub groups: u64,
    pub values: BTreeMap<String, Interval>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ClassStats {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RocPoint {
    pub threshold: f64,
    pub fpr: f64,
    pub tpr: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub samples: u64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub precision_macro: f64,
    pub recall_macro: f64,
    pub f1_macro: f64,
    pub precision_weighted: f64,
    pub recall_weighted: f64,
    pub f1_weighted: f64,
    /// Binary: AUC of the score of class 1. Multi-class: macro average of one-vs-rest AUCs over
    /// the classes that have both positives and negatives. `None` when undefined.
    pub roc_auc: Option<f64>,
    pub classes: Vec<String>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<ClassStats>,
    /// Binary only: the ROC curve of the score of class 1 (at most ~200 points).
    pub roc_curve: Vec<RocPoint>,
    pub intervals: Intervals,
}

impl Metrics {
    /// The scalar metrics by name (those that have an interval).
    pub fn scalars(&self) -> BTreeMap<String, f64> {
        let mut s = BTreeMap::from([
            ("accuracy".to_string(), self.accuracy),
            ("balanced_accuracy".to_string(), self.balanced_accuracy),
            ("precision_macro".to_string(), self.precision_macro),
            ("recall_macro".to_string(), self.recall_macro),
            ("f1_macro".to_string(), self.f1_macro),
            ("precision_weighted".to_string(), self.precision_weighted),
            ("recall_weighted".to_string(), self.recall_weighted),
            ("f1_weighted".to_string(), self.f1_weighted),
        ]);
        if let Some(auc) = self.roc_auc {
            s.insert("roc_auc".into(), auc);
        }
        s
    }

    /// `name value [low, high]` for printing, or just the value when it has no interval.
    pub fn show(&self, name: &str) -> String {
        let Some(v) = self.scalars().get(name).copied() else {
            return format!("{name} n/a");
        };
        match self.intervals.values.get(name) {
            Some(i) => format!("{name} {v:.4} [{:.4}, {:.4}]", i.low, i.high),
            None => format!("{name} {v:.4}"),
        }
    }
}

fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Metrics for `truth[i]`, `pred[i]` and `scores[i]` (per-class probabilities, row-major,
/// `classes.len()` per sample), with intervals that resample the samples by `groups[i]`.
pub fn compute(
    truth: &[u32],
    pred: &[u32],
    scores: &[f32],
    classes: &[String],
    groups: &[u64],
) -> Metrics {
    assert_eq!(truth.len(), groups.len(), "one group per sample");
    let c = classes.len();
    let mut confusion = vec![vec![0u64; c]; c];
    for (&t, &p) in truth.iter().zip(pred) {
        confusion[t as usize][p as usize] += 1;
    }
    let n = truth.len() as f64;
    let correct: u64 = (0..c).map(|i| confusion[i][i]).sum();
    let mut per_class = Vec::with_capacity(c);
    for i in 0..c {
        let tp = confusion[i][i] as f64;
        let support: u64 = confusion[i].iter().sum();
        let predicted: u64 = (0..c).map(|r| confusion[r][i]).sum();
        let precision = div(tp, predicted as f64);
        let recall = div(tp, support as f64);
        per_class.push(ClassStats {
            class: classes[i].clone(),
            precision,
            recall,
            f1: div(2.0 * precision * recall, precision + recall),
            support,
        });
    }
    let present: Vec<&ClassStats> = per_class.iter().filter(|s| s.support > 0).collect();
    let macro_of =
        |f: fn(&ClassStats) -> f64| div(present.iter().map(|s| f(s)).sum(), present.len() as f64);
    let weighted_of =
        |f: fn(&ClassStats) -> f64| div(per_class.iter().map(|s| f(s) * s.support as f64).sum(), n);
    let auc_of = |class: usize| {
        let pos: Vec<f32> = (0..truth.len())
            .filter(|&i| truth[i] as usize == class)
            .map(|i| scores[i * c + class])
            .collect();
        let neg: Vec<f32> = (0..truth.len())
            .filter(|&i| truth[i] as usize != class)
            .map(|i| scores[i * c + class])
            .collect();
        auc(&pos, &neg)
    };
    let (roc_auc, roc_curve) = if c == 2 {
        (auc_of(1), roc_curve(truth, scores))
    } else {
        let aucs: Vec<f64> = (0..c).filter_map(auc_of).collect();
        (
            (!aucs.is_empty()).then(|| aucs.iter().sum::<f64>() / aucs.len() as f64),
            Vec::new(),
        )
    };
    Metrics {
        samples: truth.len() as u64,
        accuracy: div(correct as f64, n),
        // Balanced accuracy is the macro recall over the classes present (scikit-learn's rule).
        balanced_accuracy: macro_of(|s| s.recall),
        precision_macro: macro_of(|s| s.precision),
        recall_macro: macro_of(|s| s.recall),
        f1_macro: macro_of(|s| s.f1),
        precision_weighted: weighted_of(|s| s.precision),
        recall_weighted: weighted_of(|s| s.recall),
        f1_weighted: weighted_of(|s| s.f1),
        roc_auc,
        classes: classes.to_vec(),
        confusion,
        per_class,
        roc_curve,
        intervals: intervals(truth, pred, scores, c, groups),
    }
}

/// The scalars of a weighted confusion matrix, in `SCALARS` order (macro averages over the
/// classes with weight, as the point estimates do).
fn confusion_scalars(conf: &[Vec<f64>]) -> [f64; 8] {
    let n: f64 = conf.iter().flatten().sum();
    let (mut correct, mut present) = (0.0, 0.0);
    let (mut p_mac, mut r_mac, mut f_mac, mut p_w, mut r_w, mut f_w) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (i, row) in conf.iter().enumerate() {
        let tp = row[i];
        let support: f64 = row.iter().sum();
        let predicted: f64 = conf.iter().map(|r| r[i]).sum();
        let p = div(tp, predicted);
        let r = div(tp, support);
        let f = div(2.0 * p * r, p + r);
        correct += tp;
        if support > 0.0 {
            present += 1.0;
            p_mac += p;
            r_mac += r;
            f_mac += f;
        }
        p_w += p * support;
        r_w += r * support;
        f_w += f * support;
    }
    [
        div(correct, n),
        div(r_mac, present),
        div(p_mac, present),
        div(r_mac, present),
        div(f_mac, present),
        div(p_w, n),
        div(r_w, n),
        div(f_w, n),
    ]
}

const SCALARS: [&str; 8] = [
    "accuracy",
    "balanced_accuracy",
    "precision_macro",
    "recall_macro",
    "f1_macro",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
];

/// Weighted one-vs-rest AUC of one class over samples pre-sorted by that class's score.
fn weighted_auc(
    order: &[usize],
    score: impl Fn(usize) -> f32,
    pos: impl Fn(usize) -> bool,
    w: impl Fn(usize) -> f64,
) -> Option<f64> {
    let (mut neg_below, mut sum, mut wp, mut wn) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        let (mut tie_p, mut tie_n) = (0.0, 0.0);
        while j < order.len() && score(order[j]) == score(order[i]) {
            let s = order[j];
            if pos(s) {
                tie_p += w(s)
            } else {
                tie_n += w(s)
            }
            j += 1;
        }
        sum += tie_p * (neg_below + 0.5 * tie_n);
        neg_below += tie_n;
        wp += tie_p;
        wn += tie_n;
        i = j;
    }
    (wp > 0.0 && wn > 0.0).then(|| sum / (wp * wn))
}

/// The 2.5 % and 97.5 % quantiles (linear interpolation) of the finite values.
fn percentile_interval(mut v: Vec<f64>) -> Option<(f64, f64)> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let x = p * (v.len() - 1) as f64;
        let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
        v[lo] + (v[hi] - v[lo]) * (x - lo as f64)
    };
    let a = (1.0 - CONFIDENCE) / 2.0;
    Some((q(a), q(1.0 - a)))
}

/// A cluster bootstrap: `RESAMPLES` times, draws `groups` groups with replacement (as weights:
/// how often each was drawn) and evaluates `f` on the weights; returns the percentile interval
/// of each statistic `f` returns (`None` where no resample gave a finite value). Seeded by `key`,
/// so that a report is reproducible.
pub fn bootstrap(
    groups: usize,
    key: u64,
    mut f: impl FnMut(&[f64]) -> Vec<f64>,
) -> Vec<Option<(f64, f64)>> {
    let mut rng = Rng::derive(0x6b67_6600, "bootstrap", key);
    let mut weight = vec![0f64; groups];
    let mut samples: Vec<Vec<f64>> = Vec::new();
    for _ in 0..RESAMPLES {
        weight.fill(0.0);
        for _ in 0..groups {
            weight[rng.below(groups)] += 1.0;
        }
        let v = f(&weight);
        samples.resize_with(v.len(), || Vec::with_capacity(RESAMPLES));
        for (s, x) in samples.iter_mut().zip(v) {
            s.push(x);
        }
    }
    samples.into_iter().map(percentile_interval).collect()
}

/// The Wilson score interval of `k` successes in `n` trials at `CONFIDENCE`.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054; // the normal quantile of 0.975
    let (k, n) = (k as f64, n as f64);
    let p = k / n;
    let centre = (p + z * z / (2.0 * n)) / (1.0 + z * z / n);
    let half = z / (1.0 + z * z / n) * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

fn intervals(truth: &[u32], pred: &[u32], scores: &[f32], c: usize, groups: &[u64]) -> Intervals {
    let n = truth.len();
    // Dense group ids in order of first appearance.
    let mut ids: BTreeMap<u64, usize> = BTreeMap::new();
    let dense: Vec<usize> = groups
        .iter()
        .map(|g| {
            let next = ids.len();
            *ids.entry(*g).or_insert(next)
        })
        .collect();
    let g = ids.len();
    // Classes whose one-vs-rest AUC is defined, each with the samples sorted by its score.
    let auc_classes: Vec<usize> = if c == 2 { vec![1] } else { (0..c).collect() };
    let orders: Vec<(usize, Vec<usize>)> = auc_classes
        .iter()
        .map(|&k| {
            let mut o: Vec<usize> = (0..n).collect();
            o.sort_by(|&a, &b| scores[a * c + k].total_cmp(&scores[b * c + k]));
            (k, o)
        })
        .collect();
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(RESAMPLES); SCALARS.len() + 1];
    let mut rng = Rng::derive(0x6b67_6600, "bootstrap", n as u64);
    let mut weight = vec![0f64; g];
    for _ in 0..RESAMPLES {
        weight.fill(0.0);
        for _ in 0..g {
            weight[rng.below(g)] += 1.0;
        }
        let mut conf = vec![vec![0f64; c]; c];
        for i in 0..n {
            conf[truth[i] as usize][pred[i] as usize] += weight[dense[i]];
        }
        for (k, v) in confusion_scalars(&conf).into_iter().enumerate() {
            samples[k].push(v);
        }
        let aucs: Vec<f64> = orders
            .iter()
            .filter_map(|(k, o)| {
                weighted_auc(
                    o,
                    |s| scores[s * c + k],
                    |s| truth[s] as usize == *k,
                    |s| weight[dense[s]],
                )
            })
            .collect();
        samples[SCALARS.len()].push(if aucs.is_empty() {
            f64::NAN
        } else {
            aucs.iter().sum::<f64>() / aucs.len() as f64
        });
    }
    let mut values = BTreeMap::new();
    let names = SCALARS.iter().copied().chain(["roc_auc"]);
    for (name, v) in names.zip(samples) {
        if let Some((low, high)) = percentile_interval(v) {
            values.insert(
                name.to_string(),
                Interval {
                    low,
                    high,
                    method: "bootstrap".into(),
                },
            );
        }
    }
    if g == n {
        let correct = truth.iter().zip(pred).filter(|(t, p)| t == p).count() as u64;
        let (low, high) = wilson(correct, n as u64);
        values.insert(
            "accuracy".into(),
            Interval {
                low,
                high,
                method: "wilson".into(),
            },
        );
    }
    Intervals {
        confidence: CONFIDENCE,
        resamples: RESAMPLES,
        groups: g as u64,
        values,
    }
}

/// Area under the ROC curve as the Mann–Whitney statistic (ties count one half); `None` when
/// either side is empty.
pub fn auc(pos: &[f32], neg: &[f32]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut all: Vec<(f32, bool)> = pos
        .iter()
        .map(|&s| (s, true))
        .chain(neg.iter().map(|&s| (s, false)))
        .collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut rank_sum = 0f64;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let mid_rank = (i + j + 1) as f64 / 2.0;
        rank_sum += mid_rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        i = j;
    }
    let (p, q) = (pos.len() as f64, neg.len() as f64);
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

/// ROC curve of the score of class 1 over thresholds at score quantiles.
fn roc_curve(truth: &[u32], scores: &[f32]) -> Vec<RocPoint> {
    let s1: Vec<f32> = (0..truth.len()).map(|i| scores[i * 2 + 1]).collect();
    let p = truth.iter().filter(|&&t| t == 1).count() as f64;
    let q = truth.len() as f64 - p;
    let mut sorted = s1.clone();
    sorted.sort_by(f32::total_cmp);
    sorted.dedup();
    let step = (sorted.len() / 200).max(1);
    let mut thresholds: Vec<f32> = sorted.iter().copied().step_by(step).collect();
    thresholds.push(f32::INFINITY);
    thresholds
        .into_iter()
        .map(|th| {
            let (mut tp, mut fp) = (0f64, 0f64);
            for (&t, &s) in truth.iter().zip(&s1) {
                if s >= th {
                    if t == 1 { tp += 1.0 } else { fp += 1.0 }
                }
            }
            RocPoint {
                threshold: if th.is_finite() { f64::from(th) } else { 1.0 },
                fpr: div(fp, q),
                tpr: div(tp, p),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn multiclass_metrics_match_hand_computation() {
        // truth 0,0,0,1,1,2 ; pred 0,0,1,1,2,2
        let truth = [0, 0, 0, 1, 1, 2];
        let pred = [0, 0, 1, 1, 2, 2];
        let mut scores = vec![0f32; 18];
        for (i, &p) in pred.iter().enumerate() {
            scores[i * 3 + p as usize] = 1.0;
        }
        let m = compute(&truth, &pred, &scores, &names(3), &[0, 1, 2, 3, 4, 5]);
        assert_eq!(
            m.confusion,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
        );
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // recalls 2/3, 1/2, 1 ; precisions 1, 1/2, 1/2
        assert!((m.balanced_accuracy - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert!((m.precision_macro - (1.0 + 0.5 + 0.5) / 3.0).abs() < 1e-12);
        let f1 = [0.8, 0.5, 2.0 / 3.0];
        assert!((m.f1_macro - f1.iter().sum::<f64>() / 3.0).abs() < 1e-12);
        assert!((m.f1_weighted - (0.8 * 3.0 + 0.5 * 2.0 + 2.0 / 3.0) / 6.0).abs() < 1e-12);
        assert!(m.roc_auc.is_some());
    }

    #[test]
    fn auc_handles_ties_and_degenerate_cases() {
        assert_eq!(auc(&[0.9, 0.8], &[0.1, 0.2]), Some(1.0));
        assert_eq!(auc(&[0.1], &[0.9]), Some(0.0));
        assert_eq!(auc(&[0.5], &[0.5]), Some(0.5));
        assert_eq!(auc(&[0.8, 0.4], &[0.6, 0.2]), Some(0.75));
        assert_eq!(auc(&[], &[0.5]), None);
    }

    #[test]
    fn binary_roc_curve_runs_from_corner_to_corner() {
        let truth = [0, 0, 1, 1];
        // Class-1 scores: positives 0.8, 0.3; negatives 0.5, 0.1 → 3 of 4 pairs ordered.
        let scores = [0.5, 0.5, 0.9, 0.1, 0.2, 0.8, 0.7, 0.3];
        let m = compute(&truth, &[0, 0, 1, 1], &scores, &names(2), &[0, 1, 2, 3]);
        assert_eq!(m.roc_auc, Some(0.75));
        let first = &m.roc_curve[0];
        let last = m.roc_curve.last().unwrap();
        assert_eq!((first.fpr, first.tpr), (1.0, 1.0));
        assert_eq!((last.fpr, last.tpr), (0.0, 0.0));
    }

    #[test]
    fn wilson_interval_matches_published_values() {
        // 81 of 263 (Wilson 1927 / Newcombe 1998 example 1): 0.2553 to 0.3662.
        let (lo, hi) = wilson(81, 263);
        assert!(
            (lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4,
            "{lo} {hi}"
        );
        assert_eq!(wilson(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson(10, 10);
        assert!(
            (hi - 1.0).abs() < 1e-9 && (lo - 0.7225).abs() < 5e-4,
            "{lo} {hi}"
        );
    }

    #[test]
    fn every_scalar_has_an_interval_around_it_that_is_seeded_and_widens_with_clustering() {
        // 200 samples in 10 blocks of 20; the first 7 blocks right, the last 3 wrong: 70 %.
        let truth: Vec<u32> = (0..200).map(|i| (i % 2) as u32).collect();
        let pred: Vec<u32> = (0..200)
            .map(|i| if i / 20 < 7 { truth[i] } else { 1 - truth[i] })
            .collect();
        let scores: Vec<f32> = (0..200)
            .flat_map(|i| {
                let p1 = if pred[i] == 1 {
                    0.6 + (i % 7) as f32 / 20.0
                } else {
                    0.4 - (i % 5) as f32 / 20.0
                };
                [1.0 - p1, p1]
            })
            .collect();
        let independent: Vec<u64> = (0..200).collect();
        let m = compute(&truth, &pred, &scores, &names(2), &independent);
        assert_eq!(m.intervals.values["accuracy"].method, "wilson");
        for (name, v) in m.scalars() {
            let i = &m.intervals.values[&name];
            assert!(
                i.low <= v && v <= i.high,
                "{name}: {v} outside [{}, {}]",
                i.low,
                i.high
            );
            assert!(i.high - i.low > 0.01, "{name}: degenerate interval");
        }
        assert_eq!(
            m,
            compute(&truth, &pred, &scores, &names(2), &independent),
            "seeded"
        );
        // Told that the blocks are the independent units, the interval is far wider.
        let clustered: Vec<u64> = (0..200).map(|i| (i / 20) as u64).collect();
        let mc = compute(&truth, &pred, &scores, &names(2), &clustered);
        assert_eq!(mc.intervals.groups, 10);
        assert_eq!(mc.intervals.values["accuracy"].method, "bootstrap");
        let width = |m: &Metrics, k: &str| m.intervals.values[k].high - m.intervals.values[k].low;
        assert!(width(&mc, "accuracy") > 2.0 * width(&m, "accuracy"));
        assert!(width(&mc, "f1_macro") > 2.0 * width(&m, "f1_macro"));
        assert!(
            m.show("accuracy").starts_with("accuracy 0.7000 ["),
            "{}",
            m.show("accuracy")
        );
    }
}
