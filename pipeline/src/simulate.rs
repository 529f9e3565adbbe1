//! Fusion and read simulation (in-process stand-in for the original's fusim + ART): fusion
//! transcripts from two panel genes with a recorded breakpoint, paired-end reads with
//! substitution errors, and the chimeric label of each read.
//!
//! Pure functions of (reference, config, seed); one fusion's reads at a time, so memory does not
//! grow with the number of reads. Writing them out is `dataset`'s job.

use crate::rng::Rng;
use crate::transcripts::Reference;

/// FC label of a read that crosses a fusion junction.
pub const CHIMERIC: u8 = 0;
/// FC label of a read that lies within one partner.
pub const NOT_CHIMERIC: u8 = 1;

/// A fusion transcript: `seq[..breakpoint]` comes from the 5' partner, the rest from the 3'.
#[derive(Clone, Debug)]
pub struct Fusion {
    pub id: u32,
    pub five_gene: usize,
    pub three_gene: usize,
    pub breakpoint: usize,
    pub seq: Vec<u8>,
}

/// One simulated read (one mate of a pair), on the transcript's strand.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    pub start: usize,
    pub mate: u8,
    pub seq: Vec<u8>,
    pub label: u8,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReadConfig {
    pub read_length: usize,
    pub coverage: f64,
    pub fragment_mean: f64,
    pub fragment_sd: f64,
    pub error_rate: f64,
}

/// A read of `len` bases starting at `start` is chimeric iff it holds at least one base of each
/// partner: it starts before the breakpoint and ends after it. A read that ends exactly at the
/// breakpoint (or starts on it) lies in one partner only.
pub fn is_chimeric(start: usize, len: usize, breakpoint: usize) -> bool {
    start < breakpoint && start + len > breakpoint
}

/// Builds fusion `id`: 5' partner `five_gene`, 3' partner a different gene drawn from the
/// stream, both isoforms drawn, cuts at exon boundaries (anywhere within the middle 80% for
/// transcripts without exon structure). Returns `None` when a partner has no transcript long
/// enough to cut.
pub fn make_fusion(reference: &Reference, five_gene: usize, id: u32, seed: u64) -> Option<Fusion> {
    let n_genes = reference.genes.len();
    let mut rng = Rng::derive(seed, "fusion", u64::from(id));
    let three_gene = (five_gene + 1 + rng.below(n_genes - 1)) % n_genes;
    let pick = |g: usize, rng: &mut Rng| {
        let txs: Vec<_> = reference.of_gene(g).map(|(_, t)| t).collect();
        (!txs.is_empty()).then(|| txs[rng.below(txs.len())])
    };
    let five = pick(five_gene, &mut rng)?;
    let three = pick(three_gene, &mut rng)?;
    let five_cut = cut_point(&five.exon_starts, five.seq.len(), &mut rng)?;
    let three_cut = cut_point(&three.exon_starts, three.seq.len(), &mut rng)?;
    let mut seq = Vec::with_capacity(five_cut + three.seq.len() - three_cut);
    seq.extend_from_slice(&five.seq[..five_cut]);
    seq.extend_from_slice(&three.seq[three_cut..]);
    Some(Fusion {
        id,
        five_gene,
        three_gene,
        breakpoint: five_cut,
        seq,
    })
}

/// An internal exon boundary, or a point in the middle 80% when there are none.
fn cut_point(exon_starts: &[usize], len: usize, rng: &mut Rng) -> Option<usize> {
    if exon_starts.len() > 1 {
        return Some(exon_starts[1 + rng.below(exon_starts.len() - 1)]);
    }
    let (lo, hi) = (len / 10, len - len / 10);
    (hi > lo + 1).then(|| rng.range(lo + 1, hi - 1))
}

/// Paired-end reads of a fusion at the configured coverage: `ceil(coverage * len / (2 *
/// read_length))` pairs; fragment length ~ N(mean, sd) clamped to [read_length, len]; mate 1 at
/// the fragment's start, mate 2 at its end, both reported on the transcript strand (the GC is
/// trained on transcript-strand fragments); each base substituted with probability
/// `error_rate` by one of the three other bases. No reads if the fusion is shorter than a read.
pub fn reads(fusion: &Fusion, cfg: &ReadConfig, seed: u64) -> Vec<Read> {
    let len = fusion.seq.len();
    let rl = cfg.read_length;
    if len < rl {
        return Vec::new();
    }
    let mut rng = Rng::derive(seed, "reads", u64::from(fusion.id));
    let pairs = (cfg.coverage * len as f64 / (2 * rl) as f64).ceil() as usize;
    let mut out = Vec::with_capacity(2 * pairs);
    for _ in 0..pairs {
        let frag = (cfg.fragment_mean + cfg.fragment_sd * rng.normal()).round();
        let frag = (frag.max(rl as f64) as usize).min(len);
        let s = rng.below(len - frag + 1);
        for (mate, start) in [(1u8, s), (2u8, s + frag - rl)] {
            let mut seq = fusion.seq[start..start + rl].to_vec();
            for b in seq.iter_mut() {
                if rng.uniform() < cfg.error_rate {
                    let others: Vec<u8> = b"ACGT".iter().copied().filter(|c| c != b).collect();
                    *b = others[rng.below(others.len())];
                }
            }
            let label = if is_chimeric(start, rl, fusion.breakpoint) {
                CHIMERIC
            } else {
                NOT_CHIMERIC
            };
            out.push(Read {
                start,
                mate,
                seq,
                label,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transcripts::{SynthConfig, Transcript, synthesize};

    fn hand_built() -> Reference {
        let tx = |gene, base: u8, len| Transcript {
            gene,
            name: format!("g{gene}"),
            seq: vec![base; len],
            exon_starts: vec![0, 40],
        };
        Reference {
            genes: vec!["A".into(), "C".into()],
            transcripts: vec![tx(0, b'A', 100), tx(1, b'C', 100)],
        }
    }

    #[test]
    fn hand_built_fusion_has_known_breakpoint_and_read_labels() {
        let r = hand_built();
        let f = make_fusion(&r, 0, 0, 1).unwrap();
        // The only internal exon boundary is 40 in both partners: 40 A's then 60 C's.
        assert_eq!((f.five_gene, f.three_gene, f.breakpoint), (0, 1, 40));
        assert_eq!(&f.seq[..40], &[b'A'; 40][..]);
        assert_eq!(&f.seq[40..], &[b'C'; 60][..]);
        // Reads of 10 bases: ending on the breakpoint, across it, starting on it, past it.
        assert!(!is_chimeric(30, 10, 40));
        assert!(is_chimeric(31, 10, 40));
        assert!(is_chimeric(39, 10, 40));
        assert!(!is_chimeric(40, 10, 40));
        assert!(!is_chimeric(70, 10, 40));
        let cfg = ReadConfig {
            read_length: 10,
            coverage: 50.0,
            fragment_mean: 25.0,
            fragment_sd: 5.0,
            error_rate: 0.0,
        };
        let reads = reads(&f, &cfg, 3);
        assert_eq!(reads.len(), 2 * 250);
        for rd in &reads {
            let a = rd.seq.iter().filter(|&&b| b == b'A').count();
            let crosses = a > 0 && a < 10;
            assert_eq!(
                rd.label == CHIMERIC,
                crosses,
                "read at {} labelled {}",
                rd.start,
                rd.label
            );
            assert_eq!(rd.seq, f.seq[rd.start..rd.start + 10]);
        }
        assert!(reads.iter().any(|r| r.label == CHIMERIC));
        assert!(reads.iter().any(|r| r.label == NOT_CHIMERIC));
    }

    #[test]
    fn substitution_errors_match_the_rate() {
        let r = hand_built();
        let f = make_fusion(&r, 0, 0, 1).unwrap();
        let cfg = ReadConfig {
            read_length: 10,
            coverage: 2000.0,
            fragment_mean: 25.0,
            fragment_sd: 5.0,
            error_rate: 0.05,
        };
        let (mut wrong, mut total) = (0, 0);
        for rd in reads(&f, &cfg, 9) {
            let truth = &f.seq[rd.start..rd.start + 10];
            wrong += rd.seq.iter().zip(truth).filter(|(a, b)| a != b).count();
            total += 10;
        }
        let rate = wrong as f64 / total as f64;
        assert!((rate - 0.05).abs() < 0.005, "observed error rate {rate}");
    }

    #[test]
    fn chimeric_fraction_is_near_read_length_over_transcript_length() {
        let reference = synthesize(
            &SynthConfig {
                genes: 17,
                exons_min: 8,
                exons_max: 14,
                exon_len_min: 100,
                exon_len_max: 300,
                isoforms_max: 3,
                skew: 1.0,
            },
            11,
        );
        let cfg = ReadConfig {
            read_length: 150,
            coverage: 10.0,
            fragment_mean: 300.0,
            fragment_sd: 30.0,
            error_rate: 0.0,
        };
        let (mut chimeric, mut total, mut expected) = (0usize, 0usize, 0f64);
        for id in 0..200u32 {
            let f = make_fusion(&reference, id as usize % 17, id, 11).unwrap();
            let rs = reads(&f, &cfg, 11);
            expected += rs.len() as f64 * 150.0 / f.seq.len() as f64;
            chimeric += rs.iter().filter(|r| r.label == CHIMERIC).count();
            total += rs.len();
        }
        let (observed, expected) = (chimeric as f64 / total as f64, expected / total as f64);
        assert!(
            (observed / expected - 1.0).abs() < 0.2,
            "chimeric fraction {observed:.4} vs read length / transcript length {expected:.4}"
        );
        assert!(
            (0.03..0.12).contains(&observed),
            "≈7% as in the original: {observed}"
        );
    }
}
