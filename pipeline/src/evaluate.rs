//! Scores a fusion caller's per-read calls as fusion callers are judged (design §4): at the read
//! level (chimeric-class precision, recall, F1, PR-AUC and balanced accuracy) and at the level
//! of fusion events (an event is found when at least N of its reads are called chimeric with its
//! partner pair; precision, recall and F1 per N, average precision over N, and the partner-pair
//! accuracy on events whose reads are called chimeric at all), every figure with a 95 % cluster
//! bootstrap interval over the fusion events. The same code scores kgf-step's calls (`test-fc`)
//! and an aligner's (`kgf-step score`, pipeline/bench/baselines.sh), so the figures compare.
//!
//! Pairs are compared unordered: a single read does not say which strand it came from, so which
//! partner is 5' is not a read-level call (an aligner's orientation is dropped for the same
//! scoring). Pure functions; reading calls from a file is `score`'s job.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::metrics::{CONFIDENCE, Interval, Intervals, RESAMPLES, bootstrap};

/// The support (reads) at which an event counts as called in the headline figures.
pub const MIN_SUPPORT: usize = 2;
/// The per-N table runs from 1 to this.
pub const TABLE_SUPPORT: usize = 10;

/// What is true of one test read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truth {
    pub chimeric: bool,
    /// The fusion event the read was simulated from (chimeric or not): the unit the intervals
    /// resample.
    pub event: u64,
    /// The event's partner genes.
    pub pair: [u16; 2],
}

/// What a caller says of one read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Call {
    pub chimeric: bool,
    /// Higher = more likely chimeric (a probability, or 0/1 for a caller without scores).
    pub score: f32,
    /// The two partner genes, when the caller names them.
    pub pair: Option<[u16; 2]>,
}

/// A pair in canonical (unordered) form.
fn unordered(p: [u16; 2]) -> [u16; 2] {
    [p[0].min(p[1]), p[0].max(p[1])]
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ReadLevel {
    pub reads: u64,
    pub chimeric: u64,
    pub called_chimeric: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Average precision of the chimeric class over the caller's score.
    pub pr_auc: f64,
    pub balanced_accuracy: f64,
    pub intervals: Intervals,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventsAt {
    pub min_support: usize,
    /// Partner pairs called (at least `min_support` reads called chimeric with the pair).
    pub calls: u64,
    /// Calls whose pair is the pair of a test event.
    pub true_calls: u64,
    /// Events with at least `min_support` of their chimeric reads called chimeric with their
    /// pair.
    pub found: u64,
    /// Events with at least `min_support` of their chimeric reads called chimeric (any pair).
    pub detected: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Of the detected events, the share whose reads' commonest called pair is theirs.
    pub partner_accuracy: f64,
    pub intervals: BTreeMap<String, Interval>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EventLevel {
    /// Test events with at least one chimeric read (what a caller can find).
    pub events: u64,
    /// The headline support N.
    pub min_support: usize,
    pub per_support: Vec<EventsAt>,
    /// Average precision over N: Σ (recall(N) − recall(N + 1)) · precision(N).
    pub pr_auc: f64,
    pub pr_auc_interval: Option<Interval>,
    /// Events resampled by the intervals (every event of the split).
    pub groups: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FusionScores {
    pub reads: ReadLevel,
    pub events: EventLevel,
}

impl FusionScores {
    /// The headline figures by name, each with `_ci_low` / `_ci_high`: what the KFP UI shows,
    /// the `KGF_METRICS` line carries and the deploy gate reads (`event_f1`).
    pub fn scalars(&self) -> BTreeMap<String, f64> {
        let mut s = BTreeMap::new();
        let r = &self.reads;
        for (name, v) in [
            ("precision", r.precision),
            ("recall", r.recall),
            ("f1", r.f1),
            ("pr_auc", r.pr_auc),
            ("balanced_accuracy", r.balanced_accuracy),
        ] {
            put(
                &mut s,
                &format!("read_{name}"),
                v,
                r.intervals.values.get(name),
            );
        }
        if let Some(e) = self.headline() {
            for (name, v) in [
                ("precision", e.precision),
                ("recall", e.recall),
                ("f1", e.f1),
                ("partner_accuracy", e.partner_accuracy),
            ] {
                put(&mut s, &format!("event_{name}"), v, e.intervals.get(name));
            }
        }
        let ev = &self.events;
        put(
            &mut s,
            "event_pr_auc",
            ev.pr_auc,
            ev.pr_auc_interval.as_ref(),
        );
        s.insert("events".into(), ev.events as f64);
        s.insert("event_min_support".into(), ev.min_support as f64);
        s
    }

    /// The event figures at the headline support.
    pub fn headline(&self) -> Option<&EventsAt> {
        self.events
            .per_support
            .iter()
            .find(|e| e.min_support == self.events.min_support)
    }

    /// One line: the read and event figures with their intervals.
    pub fn summary(&self) -> String {
        let s = self.scalars();
        let show = |n: &str| match (s.get(n), s.get(&format!("{n}_ci_low"))) {
            (Some(v), Some(lo)) => {
                format!("{n} {v:.4} [{lo:.4}, {:.4}]", s[&format!("{n}_ci_high")])
            }
            (Some(v), None) => format!("{n} {v:.4}"),
            _ => format!("{n} n/a"),
        };
        format!(
            "{}; at >= {} reads: {} ({} events; 95% intervals over {} fusion events)",
            [
                "read_precision",
                "read_recall",
                "read_f1",
                "read_pr_auc",
                "read_balanced_accuracy"
            ]
            .map(show)
            .join(", "),
            self.events.min_support,
            [
                "event_precision",
                "event_recall",
                "event_f1",
                "event_partner_accuracy",
                "event_pr_auc"
            ]
            .map(show)
            .join(", "),
            self.events.events,
            self.events.groups
        )
    }
}

fn put(s: &mut BTreeMap<String, f64>, name: &str, v: f64, i: Option<&Interval>) {
    s.insert(name.to_string(), v);
    if let Some(i) = i {
        s.insert(format!("{name}_ci_low"), i.low);
        s.insert(format!("{name}_ci_high"), i.high);
    }
}

fn div(a: f64, b: f64) -> f64 {
    if b == 0.0 { 0.0 } else { a / b }
}

fn f1(p: f64, r: f64) -> f64 {
    div(2.0 * p * r, p + r)
}

/// Read-level figures of reads weighted by `w` (1 each, or a bootstrap's weights), `order` the
/// reads by descending score: [precision, recall, f1, pr_auc, balanced_accuracy].
fn read_figures(
    truth: &[Truth],
    calls: &[Call],
    order: &[usize],
    w: impl Fn(usize) -> f64,
) -> [f64; 5] {
    let (mut tp, mut fp, mut pos, mut neg) = (0.0, 0.0, 0.0, 0.0);
    for (i, (t, c)) in truth.iter().zip(calls).enumerate() {
        let wi = w(i);
        if t.chimeric {
            pos += wi;
            if c.chimeric {
                tp += wi;
            }
        } else {
            neg += wi;
            if c.chimeric {
                fp += wi;
            }
        }
    }
    let precision = div(tp, tp + fp);
    let recall = div(tp, pos);
    let specificity = div(neg - fp, neg);
    // Average precision: Σ over score thresholds of Δrecall · precision (no interpolation).
    let (mut ap, mut stp, mut sfp, mut last_recall) = (0.0, 0.0, 0.0, 0.0);
    let mut i = 0;
    while i < order.len() {
        let s = calls[order[i]].score;
        while i < order.len() && calls[order[i]].score == s {
            let k = order[i];
            if truth[k].chimeric {
                stp += w(k);
            } else {
                sfp += w(k);
            }
            i += 1;
        }
        let r = div(stp, pos);
        ap += (r - last_recall) * div(stp, stp + sfp);
        last_recall = r;
    }
    [
        precision,
        recall,
        f1(precision, recall),
        ap,
        (recall + specificity) / 2.0,
    ]
}

/// Per event, what the event-level figures are made of.
#[derive(Clone, Debug, Default)]
struct EventFacts {
    /// Has at least one chimeric read (a caller can find it).
    real: bool,
    /// Its chimeric reads called chimeric, and of those the ones called with its pair.
    called: usize,
    right: usize,
    /// The commonest pair among its reads called chimeric is its own.
    majority_right: bool,
    /// Supports of the calls attributed to it (the event giving a call most of its reads),
    /// each with whether the call's pair is a test event's.
    calls: Vec<(usize, bool)>,
}

/// [precision, recall, f1, partner_accuracy] at support `n` over events weighted by `w`.
fn event_figures(facts: &[EventFacts], n: usize, w: impl Fn(usize) -> f64) -> [f64; 4] {
    let (mut calls, mut true_calls, mut real, mut found, mut detected, mut partner) =
        (0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (e, f) in facts.iter().enumerate() {
        let we = w(e);
        for &(support, right) in &f.calls {
            if support >= n {
                calls += we;
                if right {
                    true_calls += we;
                }
            }
        }
        if f.real {
            real += we;
            if f.right >= n {
                found += we;
            }
            if f.called >= n {
                detected += we;
                if f.majority_right {
                    partner += we;
                }
            }
        }
    }
    // No calls, no false ones: precision 1 then, so that a silent caller's F1 is 0 by recall.
    let precision = if calls == 0.0 {
        1.0
    } else {
        true_calls / calls
    };
    let recall = div(found, real);
    [
        precision,
        recall,
        f1(precision, recall),
        div(partner, detected),
    ]
}

/// Average precision over supports 1..=`max` (recall falls to 0 past the largest support).
fn event_pr_auc(facts: &[EventFacts], max: usize, w: impl Fn(usize) -> f64 + Copy) -> f64 {
    let mut ap = 0.0;
    let mut next_recall = 0.0;
    for n in (1..=max).rev() {
        let [p, r, _, _] = event_figures(facts, n, w);
        ap += (r - next_recall) * p;
        next_recall = r;
    }
    ap
}

/// Scores `calls` against `truth` (one per test read, in the same order).
pub fn score(truth: &[Truth], calls: &[Call]) -> FusionScores {
    assert_eq!(truth.len(), calls.len(), "one call per read");
    // Events in order of first appearance, dense.
    let mut index: HashMap<u64, usize> = HashMap::new();
    let event_of: Vec<usize> = truth
        .iter()
        .map(|t| {
            let next = index.len();
            *index.entry(t.event).or_insert(next)
        })
        .collect();
    let mut facts = vec![EventFacts::default(); index.len()];
    let mut pair_of = vec![[0u16; 2]; index.len()];
    let mut called_pairs: Vec<HashMap<[u16; 2], usize>> = vec![HashMap::new(); index.len()];
    // Support of each called pair, per event it comes from.
    let mut support: HashMap<[u16; 2], HashMap<usize, usize>> = HashMap::new();
    for (i, (t, c)) in truth.iter().zip(calls).enumerate() {
        let e = event_of[i];
        let f = &mut facts[e];
        pair_of[e] = unordered(t.pair);
        f.real |= t.chimeric;
        if !c.chimeric {
            continue;
        }
        let pair = c.pair.map(unordered).filter(|p| p[0] != p[1]);
        // An event is found by its junction's reads: a normal read called chimeric supports a
        // call (and counts against precision if the pair is wrong), not the event's recall.
        if t.chimeric {
            f.called += 1;
            if let Some(p) = pair {
                f.right += usize::from(p == unordered(t.pair));
                *called_pairs[e].entry(p).or_default() += 1;
            }
        }
        if let Some(p) = pair {
            *support.entry(p).or_default().entry(e).or_default() += 1;
        }
    }
    let true_pairs: HashSet<[u16; 2]> = facts
        .iter()
        .zip(&pair_of)
        .filter(|(f, _)| f.real)
        .map(|(_, p)| *p)
        .collect();
    for (e, f) in facts.iter_mut().enumerate() {
        // Ties go to the smaller pair, so that the result does not depend on hash order.
        f.majority_right = called_pairs[e]
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .is_some_and(|(p, _)| *p == pair_of[e]);
    }
    let mut max_support = 1;
    for (pair, from) in &support {
        let total: usize = from.values().sum();
        max_support = max_support.max(total);
        let owner = from
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(e, _)| *e)
            .expect("a called pair has support");
        facts[owner].calls.push((total, true_pairs.contains(pair)));
    }
    for f in &facts {
        max_support = max_support.max(f.right).max(f.called);
    }

    // Read level, with intervals over events.
    let mut order: Vec<usize> = (0..calls.len()).collect();
    order.sort_by(|&a, &b| calls[b].score.total_cmp(&calls[a].score));
    let point = read_figures(truth, calls, &order, |_| 1.0);
    let names = ["precision", "recall", "f1", "pr_auc", "balanced_accuracy"];
    let read_iv = bootstrap(facts.len(), truth.len() as u64, |wt| {
        read_figures(truth, calls, &order, |i| wt[event_of[i]]).to_vec()
    });
    let read_intervals = Intervals {
        confidence: CONFIDENCE,
        resamples: RESAMPLES,
        groups: facts.len() as u64,
        values: names
            .iter()
            .zip(read_iv)
            .filter_map(|(n, iv)| iv.map(|(low, high)| (n.to_string(), boot(low, high))))
            .collect(),
    };
    let chimeric = truth.iter().filter(|t| t.chimeric).count() as u64;
    let reads = ReadLevel {
        reads: truth.len() as u64,
        chimeric,
        called_chimeric: calls.iter().filter(|c| c.chimeric).count() as u64,
        precision: point[0],
        recall: point[1],
        f1: point[2],
        pr_auc: point[3],
        balanced_accuracy: point[4],
        intervals: read_intervals,
    };

    // Event level: every support of the table, and the PR-AUC, in one bootstrap.
    let max = max_support + 1;
    let iv = bootstrap(facts.len(), 0x6576_656e_7473 ^ truth.len() as u64, |wt| {
        let mut out = Vec::with_capacity(4 * TABLE_SUPPORT + 1);
        for n in 1..=TABLE_SUPPORT {
            out.extend(event_figures(&facts, n, |e| wt[e]));
        }
        out.push(event_pr_auc(&facts, max, |e| wt[e]));
        out
    });
    let per_support = (1..=TABLE_SUPPORT)
        .map(|n| {
            let [precision, recall, f1, partner_accuracy] = event_figures(&facts, n, |_| 1.0);
            let count =
                |pick: &dyn Fn(&EventFacts) -> usize| facts.iter().map(pick).sum::<usize>() as u64;
            let intervals = ["precision", "recall", "f1", "partner_accuracy"]
                .iter()
                .enumerate()
                .filter_map(|(k, name)| {
                    iv[4 * (n - 1) + k].map(|(low, high)| (name.to_string(), boot(low, high)))
                })
                .collect();
            EventsAt {
                min_support: n,
                calls: count(&|f| f.calls.iter().filter(|c| c.0 >= n).count()),
                true_calls: count(&|f| f.calls.iter().filter(|c| c.0 >= n && c.1).count()),
                found: count(&|f| usize::from(f.real && f.right >= n)),
                detected: count(&|f| usize::from(f.real && f.called >= n)),
                precision,
                recall,
                f1,
                partner_accuracy,
                intervals,
            }
        })
        .collect();
    let events = EventLevel {
        events: facts.iter().filter(|f| f.real).count() as u64,
        min_support: MIN_SUPPORT,
        per_support,
        pr_auc: event_pr_auc(&facts, max, |_| 1.0),
        pr_auc_interval: iv[4 * TABLE_SUPPORT].map(|(low, high)| boot(low, high)),
        groups: facts.len() as u64,
    };
    FusionScores { reads, events }
}

fn boot(low: f64, high: f64) -> Interval {
    Interval {
        low,
        high,
        method: "bootstrap".into(),
    }
}

/// The header of a calls file (`test-fc` writes one; `kgf-step score` reads one): one line per
/// test read, in the split's order; `chimeric` 0 or 1; `score` higher for more likely chimeric;
/// the partner genes by name, empty when the caller names none.
pub const CALLS_HEADER: &str = "read\tchimeric\tscore\tgene_a\tgene_b";

/// Writes calls in the calls-file format.
pub fn format_calls(calls: &[Call], genes: &[String]) -> String {
    let mut out = String::from(CALLS_HEADER);
    out.push('\n');
    for (i, c) in calls.iter().enumerate() {
        let (a, b) = match c.pair {
            Some([a, b]) => (genes[a as usize].as_str(), genes[b as usize].as_str()),
            None => ("", ""),
        };
        out.push_str(&format!(
            "{i}\t{}\t{}\t{a}\t{b}\n",
            u8::from(c.chimeric),
            c.score
        ));
    }
    out
}

/// Reads a calls file for a split of `reads` reads; a read the file does not name is not
/// called (an aligner leaves out what it could not map). Errors name the line and the fix.
pub fn parse_calls(text: &str, genes: &[String], reads: usize) -> Result<Vec<Call>, String> {
    let mut calls = vec![
        Call {
            chimeric: false,
            score: 0.0,
            pair: None,
        };
        reads
    ];
    let gene = |name: &str, line: usize| -> Result<Option<u16>, String> {
        if name.is_empty() {
            return Ok(None);
        }
        genes
            .iter()
            .position(|g| g == name)
            .map(|g| Some(g as u16))
            .ok_or_else(|| {
                format!(
                    "line {line}: gene {name:?} is not in the panel ({})",
                    genes.join(", ")
                )
            })
    };
    for (n, line) in text.lines().enumerate().skip(1) {
        let line_no = n + 1;
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            return Err(format!(
                "line {line_no}: {} fields; a calls file has 5 ({CALLS_HEADER})",
                f.len()
            ));
        }
        let read: usize = f[0].parse().ok().filter(|&r| r < reads).ok_or_else(|| {
            format!(
                "line {line_no}: read {:?} is not an index of the {reads} test reads",
                f[0]
            )
        })?;
        let chimeric = match f[1] {
            "0" => false,
            "1" => true,
            other => return Err(format!("line {line_no}: chimeric {other:?} is not 0 or 1")),
        };
        let score: f32 = f[2]
            .parse()
            .map_err(|_| format!("line {line_no}: score {:?} is not a number", f[2]))?;
        let pair = match (gene(f[3], line_no)?, gene(f[4], line_no)?) {
            (Some(a), Some(b)) => Some([a, b]),
            _ => None,
        };
        calls[read] = Call {
            chimeric,
            score,
            pair,
        };
    }
    if text.lines().next() != Some(CALLS_HEADER) {
        return Err(format!(
            "line 1: not the calls header; the first line is {CALLS_HEADER:?} with tabs"
        ));
    }
    Ok(calls)
}

/// The header of a GC calls file: one line per test read, the gene it is assigned to (empty:
/// none).
pub const GENE_CALLS_HEADER: &str = "read\tgene";

/// Reads a GC calls file for a split of `reads` reads; a read the file does not name gets no
/// gene (counted wrong).
pub fn parse_genes(text: &str, genes: &[String], reads: usize) -> Result<Vec<Option<u16>>, String> {
    if text.lines().next() != Some(GENE_CALLS_HEADER) {
        return Err(format!(
            "line 1: not the header; the first line is {GENE_CALLS_HEADER:?} with a tab"
        ));
    }
    let mut out = vec![None; reads];
    for (n, line) in text.lines().enumerate().skip(1) {
        let (read, gene) = line
            .split_once('\t')
            .ok_or_else(|| format!("line {}: no tab; write `read<TAB>gene`", n + 1))?;
        let read: usize = read.parse().ok().filter(|&r| r < reads).ok_or_else(|| {
            format!(
                "line {}: read {read:?} is not an index of the {reads} test reads",
                n + 1
            )
        })?;
        if gene.is_empty() {
            continue;
        }
        out[read] = Some(
            genes
                .iter()
                .position(|g| g == gene)
                .ok_or_else(|| format!("line {}: gene {gene:?} is not in the panel", n + 1))?
                as u16,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth(chimeric: bool, event: u64, pair: [u16; 2]) -> Truth {
        Truth {
            chimeric,
            event,
            pair,
        }
    }

    fn call(chimeric: bool, score: f32, pair: Option<[u16; 2]>) -> Call {
        Call {
            chimeric,
            score,
            pair,
        }
    }

    /// Four events, worked out by hand:
    /// - event 1 (genes 0-1): 3 chimeric reads, all called with (1, 0): found up to N = 3;
    /// - event 2 (2-3): 2 chimeric reads, called with (2, 4) and (2, 3): detected at N = 2, but
    ///   found only at N = 1, and its commonest called pair is a tie that (2, 3) wins;
    /// - event 3 (0-4): 1 chimeric read, missed; 1 normal read called with (0, 4): a true call
    ///   of support 1, but not the event found (its junction's read was missed);
    /// - event 4 (5-6): no chimeric read (not findable); 2 normal reads called with (5, 6), a
    ///   false call of support 2.
    #[test]
    fn event_level_scoring_of_a_hand_made_case() {
        let t = vec![
            truth(true, 1, [0, 1]),
            truth(true, 1, [0, 1]),
            truth(true, 1, [0, 1]),
            truth(false, 1, [0, 1]),
            truth(true, 2, [2, 3]),
            truth(true, 2, [2, 3]),
            truth(true, 3, [0, 4]),
            truth(false, 3, [0, 4]),
            truth(false, 4, [5, 6]),
            truth(false, 4, [5, 6]),
        ];
        let c = vec![
            call(true, 0.9, Some([1, 0])),
            call(true, 0.8, Some([1, 0])),
            call(true, 0.95, Some([0, 1])),
            call(false, 0.1, Some([0, 0])),
            call(true, 0.7, Some([2, 4])),
            call(true, 0.6, Some([3, 2])),
            call(false, 0.4, None),
            call(true, 0.65, Some([4, 0])),
            call(true, 0.75, Some([5, 6])),
            call(true, 0.85, Some([6, 5])),
        ];
        let s = score(&t, &c);
        // Reads: 6 chimeric, 8 called, 5 right.
        let r = &s.reads;
        assert_eq!((r.reads, r.chimeric, r.called_chimeric), (10, 6, 8));
        assert!((r.precision - 5.0 / 8.0).abs() < 1e-12);
        assert!((r.recall - 5.0 / 6.0).abs() < 1e-12);
        assert!((r.balanced_accuracy - (5.0 / 6.0 + 1.0 / 4.0) / 2.0).abs() < 1e-12);
        // By score: .95 T, .9 T, .85 F, .8 T, .75 F, .7 T, .65 F, .6 T, .4 T, .1 F.
        let ap = (1.0 + 1.0 + 3.0 / 4.0 + 4.0 / 6.0 + 5.0 / 8.0 + 6.0 / 9.0) / 6.0;
        assert!((r.pr_auc - ap).abs() < 1e-9, "{} vs {ap}", r.pr_auc);

        let e = &s.events;
        assert_eq!(e.events, 3, "event 4 has no chimeric read");
        let at = |n: usize| &e.per_support[n - 1];
        // N = 1: calls (0,1) x3, (2,4), (2,3), (0,4), (5,6) x2; true: (0,1), (2,3), (0,4).
        let n1 = at(1);
        assert_eq!(
            (n1.calls, n1.true_calls, n1.found, n1.detected),
            (5, 3, 2, 2)
        );
        assert!((n1.precision - 0.6).abs() < 1e-12 && (n1.recall - 2.0 / 3.0).abs() < 1e-12);
        // Event 1's pairs are right; event 2's tie goes to (2, 3); event 3 has none called.
        assert!((n1.partner_accuracy - 1.0).abs() < 1e-12);
        // N = 2: calls (0,1) [3] and (5,6) [2]; found: event 1; detected: events 1 and 2.
        let n2 = at(2);
        assert_eq!(
            (n2.calls, n2.true_calls, n2.found, n2.detected),
            (2, 1, 1, 2)
        );
        assert!((n2.precision - 0.5).abs() < 1e-12 && (n2.recall - 1.0 / 3.0).abs() < 1e-12);
        assert!((n2.f1 - 0.4).abs() < 1e-12);
        // N = 3: (0,1) alone.
        let n3 = at(3);
        assert_eq!((n3.calls, n3.true_calls, n3.found), (1, 1, 1));
        assert!((n3.precision - 1.0).abs() < 1e-12);
        // N = 4: nothing called: precision 1 by convention, recall 0.
        assert_eq!((at(4).calls, at(4).found), (0, 0));
        // AP over N: (2/3 − 1/3)·0.6 + (1/3 − 1/3)·0.5 + (1/3 − 0)·1.
        assert!((e.pr_auc - (0.2 + 1.0 / 3.0)).abs() < 1e-12, "{}", e.pr_auc);
        let headline = s.headline().unwrap();
        assert_eq!(headline.min_support, 2);
        assert_eq!(s.scalars()["event_f1"], headline.f1);
        for (name, v) in [("precision", n2.precision), ("recall", n2.recall)] {
            let i = &n2.intervals[name];
            assert!(i.low <= v && v <= i.high, "{name} {v} outside {i:?}");
        }
    }

    #[test]
    fn calls_files_round_trip_and_bad_lines_name_their_fault() {
        let genes: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
        let calls = vec![
            call(true, 0.9, Some([0, 2])),
            call(false, 0.25, None),
            call(false, 0.0, Some([1, 1])),
        ];
        let text = format_calls(&calls, &genes);
        assert_eq!(parse_calls(&text, &genes, 3).unwrap(), calls);
        // A read left out is not called.
        let short = format!("{CALLS_HEADER}\n2\t1\t1\tA\tB\n");
        let parsed = parse_calls(&short, &genes, 3).unwrap();
        assert_eq!(parsed[0], call(false, 0.0, None));
        assert_eq!(parsed[2], call(true, 1.0, Some([0, 1])));
        for (bad, why) in [
            (
                format!("{CALLS_HEADER}\n3\t1\t1\tA\tB\n"),
                "line 2: read \"3\"",
            ),
            (format!("{CALLS_HEADER}\n0\t2\t1\tA\tB\n"), "chimeric \"2\""),
            (format!("{CALLS_HEADER}\n0\t1\tx\tA\tB\n"), "score \"x\""),
            (format!("{CALLS_HEADER}\n0\t1\t1\tA\tZ\n"), "gene \"Z\""),
            (format!("{CALLS_HEADER}\n0\t1\t1\tA\n"), "4 fields"),
            ("read,chimeric\n".to_string(), "line 1"),
        ] {
            let err = parse_calls(&bad, &genes, 3).unwrap_err();
            assert!(err.contains(why), "{err} lacks {why}");
        }
    }

    #[test]
    fn a_perfect_caller_scores_one_and_a_silent_one_zero() {
        let t: Vec<Truth> = (0..40)
            .map(|i| truth(i % 4 == 0, i / 8, [(i / 8) as u16, 9]))
            .collect();
        let perfect: Vec<Call> = t
            .iter()
            .map(|t| call(t.chimeric, f32::from(u8::from(t.chimeric)), Some(t.pair)))
            .collect();
        let s = score(&t, &perfect);
        assert_eq!(
            (s.reads.precision, s.reads.recall, s.reads.pr_auc),
            (1.0, 1.0, 1.0)
        );
        let e2 = s.headline().unwrap();
        assert_eq!(
            (e2.precision, e2.recall, e2.partner_accuracy),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(s.events.pr_auc, 1.0);
        let silent: Vec<Call> = t.iter().map(|_| call(false, 0.0, None)).collect();
        let s = score(&t, &silent);
        assert_eq!((s.reads.recall, s.reads.f1), (0.0, 0.0));
        assert_eq!(
            (s.headline().unwrap().recall, s.headline().unwrap().f1),
            (0.0, 0.0)
        );
        assert_eq!(s.events.pr_auc, 0.0);
    }
}
