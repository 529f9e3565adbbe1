//! Classification metrics of the test steps: accuracy, balanced accuracy, weighted and macro
//! precision/recall/F1, confusion matrix, ROC-AUC (binary, or macro one-vs-rest) and the binary
//! ROC curve. Pure functions over labels and scores; writing them out is `report`'s job.

use serde::{Deserialize, Serialize};

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
}

fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

/// Metrics for `truth[i]`, `pred[i]` and `scores[i]` (per-class probabilities, row-major,
/// `classes.len()` per sample).
pub fn compute(truth: &[u32], pred: &[u32], scores: &[f32], classes: &[String]) -> Metrics {
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
        let m = compute(&truth, &pred, &scores, &names(3));
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
        let m = compute(&truth, &[0, 0, 1, 1], &scores, &names(2));
        assert_eq!(m.roc_auc, Some(0.75));
        let first = &m.roc_curve[0];
        let last = m.roc_curve.last().unwrap();
        assert_eq!((first.fpr, first.tpr), (1.0, 1.0));
        assert_eq!((last.fpr, last.tpr), (0.0, 0.0));
    }
}
