//! Fusion and read simulation (in-process stand-in for the original's fusim + ART): fusion
//! transcripts from two panel genes with a recorded breakpoint, paired-end reads as a sequencer
//! gives them (mate 1 on the transcript strand, mate 2 reverse-complemented from the far end of
//! the fragment, substitutions and small indels), and the label of each read.
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

impl Fusion {
    /// The bases within `flank` of the junction: two fusions with the same junction sequence are
    /// the same fusion event for the purpose of splitting, whatever their ids.
    pub fn junction(&self, flank: usize) -> &[u8] {
        let lo = self.breakpoint.saturating_sub(flank);
        let hi = (self.breakpoint + flank).min(self.seq.len());
        &self.seq[lo..hi]
    }
}

/// What a read is, by how many bases it has on each partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadClass {
    /// At least `min_anchor` bases on each partner.
    Chimeric,
    /// Entirely within one partner.
    NotChimeric,
    /// Crosses the junction with fewer than `min_anchor` bases on one side: neither label is
    /// true of what a classifier can see, so the dataset drops it.
    Ambiguous,
}

impl ReadClass {
    /// The FC label, `None` for an ambiguous read.
    pub fn label(self) -> Option<u8> {
        match self {
            ReadClass::Chimeric => Some(CHIMERIC),
            ReadClass::NotChimeric => Some(NOT_CHIMERIC),
            ReadClass::Ambiguous => None,
        }
    }
}

/// One simulated read (one mate of a pair) as the sequencer reports it: mate 2 is the reverse
/// complement of the template it covers.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    /// Index of the read pair (fragment) within its fusion: both mates share it.
    pub pair: u32,
    pub mate: u8,
    /// Leftmost position of the fusion transcript that the read covers.
    pub start: usize,
    /// Transcript bases covered (the read length, give or take indels).
    pub span: usize,
    pub seq: Vec<u8>,
    pub class: ReadClass,
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ReadConfig {
    pub read_length: usize,
    pub coverage: f64,
    pub fragment_mean: f64,
    pub fragment_sd: f64,
    /// Per-base substitution probability.
    pub error_rate: f64,
    /// Per-base probability of a small insertion or deletion (1–3 bases, half each).
    pub indel_rate: f64,
    /// Bases a read needs on each partner to count as chimeric.
    pub min_anchor: usize,
}

/// Classifies a read covering transcript bases `[start, start + span)` of a fusion whose 3'
/// partner begins at `breakpoint`.
pub fn classify(start: usize, span: usize, breakpoint: usize, min_anchor: usize) -> ReadClass {
    let end = start + span;
    if end <= breakpoint || start >= breakpoint {
        ReadClass::NotChimeric
    } else if breakpoint - start >= min_anchor && end - breakpoint >= min_anchor {
        ReadClass::Chimeric
    } else {
        ReadClass::Ambiguous
    }
}

/// The reverse complement of a DNA sequence (N and anything unknown stay N).
pub fn reverse_complement(seq: &[u8]) -> Vec<u8> {
    seq.iter()
        .rev()
        .map(|b| match b {
            b'A' => b'T',
            b'T' => b'A',
            b'C' => b'G',
            b'G' => b'C',
            _ => b'N',
        })
        .collect()
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

/// Sequences one read off `template` (read 5'→3'): every emitted base is the template's, or a
/// substitution with probability `error_rate`; with probability `indel_rate` a 1–3 base
/// insertion or deletion happens first. Returns the read and the template bases it consumed, or
/// `None` when the template runs out before `len` bases.
pub fn sequence(
    template: &[u8],
    len: usize,
    cfg: &ReadConfig,
    rng: &mut Rng,
) -> Option<(Vec<u8>, usize)> {
    let mut seq = Vec::with_capacity(len);
    let mut t = 0;
    while seq.len() < len {
        let u = rng.uniform();
        if u < cfg.indel_rate {
            let n = 1 + rng.below(3);
            if u < cfg.indel_rate / 2.0 {
                for _ in 0..n.min(len - seq.len()) {
                    seq.push(b"ACGT"[rng.below(4)]);
                }
                continue;
            }
            t += n;
        }
        let &b = template.get(t)?;
        t += 1;
        seq.push(if rng.uniform() < cfg.error_rate {
            let others: Vec<u8> = b"ACGT".iter().copied().filter(|&c| c != b).collect();
            others[rng.below(others.len())]
        } else {
            b
        });
    }
    Some((seq, t))
}

/// Paired-end reads of a fusion at the configured coverage: `ceil(coverage * len / (2 *
/// read_length))` pairs; fragment length ~ N(mean, sd) clamped to [read_length, len]; mate 1
/// reads the transcript strand from the fragment's start, mate 2 the opposite strand from its
/// end (so its sequence is reverse-complemented, as a sequencer reports it). A mate whose
/// template runs out (deletions at the transcript's end) is not reported. No reads if the
/// fusion is shorter than a read.
pub fn reads(fusion: &Fusion, cfg: &ReadConfig, seed: u64) -> Vec<Read> {
    let len = fusion.seq.len();
    let rl = cfg.read_length;
    if len < rl {
        return Vec::new();
    }
    let rc = reverse_complement(&fusion.seq);
    let mut rng = Rng::derive(seed, "reads", u64::from(fusion.id));
    let pairs = (cfg.coverage * len as f64 / (2 * rl) as f64).ceil() as usize;
    let mut out = Vec::with_capacity(2 * pairs);
    for pair in 0..pairs {
        let frag = (cfg.fragment_mean + cfg.fragment_sd * rng.normal()).round();
        let frag = (frag.max(rl as f64) as usize).min(len);
        let s = rng.below(len - frag + 1);
        let end = s + frag;
        if let Some((seq, span)) = sequence(&fusion.seq[s..], rl, cfg, &mut rng) {
            out.push(Read {
                pair: pair as u32,
                mate: 1,
                start: s,
                span,
                seq,
                class: classify(s, span, fusion.breakpoint, cfg.min_anchor),
            });
        }
        if let Some((seq, span)) = sequence(&rc[len - end..], rl, cfg, &mut rng) {
            out.push(Read {
                pair: pair as u32,
                mate: 2,
                start: end - span,
                span,
                seq,
                class: classify(end - span, span, fusion.breakpoint, cfg.min_anchor),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PresetName, preset};
    use crate::transcripts::{SynthConfig, Transcript, synthesize};

    fn tiny_synth(genes: usize) -> SynthConfig {
        SynthConfig {
            genes,
            ..preset(PresetName::Tiny).data.synth
        }
    }

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

    fn cfg(read_length: usize, coverage: f64, error_rate: f64, indel_rate: f64) -> ReadConfig {
        ReadConfig {
            read_length,
            coverage,
            fragment_mean: 25.0,
            fragment_sd: 5.0,
            error_rate,
            indel_rate,
            min_anchor: 3,
        }
    }

    #[test]
    fn min_anchor_labels_a_read_chimeric_only_with_enough_bases_on_each_partner() {
        // Breakpoint 40, reads of 10, min_anchor 3: (start, class, bases on the 5' / 3' side).
        use ReadClass::*;
        for (start, class, why) in [
            (30, NotChimeric, "ends on it"),
            (40, NotChimeric, "starts on it"),
            (70, NotChimeric, "past it"),
            (31, Ambiguous, "9 / 1"),
            (32, Ambiguous, "8 / 2"),
            (33, Chimeric, "7 / 3"),
            (34, Chimeric, "6 / 4"),
            (37, Chimeric, "3 / 7"),
            (38, Ambiguous, "2 / 8"),
        ] {
            assert_eq!(classify(start, 10, 40, 3), class, "{why}");
        }
        assert_eq!(ReadClass::Ambiguous.label(), None);
    }

    #[test]
    fn hand_built_fusion_has_known_breakpoint_and_read_labels() {
        let r = hand_built();
        let f = make_fusion(&r, 0, 0, 1).unwrap();
        // The only internal exon boundary is 40 in both partners: 40 A's then 60 C's.
        assert_eq!((f.five_gene, f.three_gene, f.breakpoint), (0, 1, 40));
        assert_eq!(&f.seq[..40], &[b'A'; 40][..]);
        assert_eq!(&f.seq[40..], &[b'C'; 60][..]);
        let reads = reads(&f, &cfg(10, 50.0, 0.0, 0.0), 3);
        assert_eq!(reads.len(), 2 * 250);
        for rd in &reads {
            // Mate 2 is reverse-complemented: its A's are T's and its C's G's.
            let five = if rd.mate == 1 { b'A' } else { b'T' };
            let a = rd.seq.iter().filter(|&&b| b == five).count();
            let expected = match a {
                0 | 10 => ReadClass::NotChimeric,
                3..=7 => ReadClass::Chimeric,
                _ => ReadClass::Ambiguous,
            };
            assert_eq!(rd.class, expected, "read at {} ({a} 5' bases)", rd.start);
            assert_eq!(rd.span, 10);
        }
        for class in [
            ReadClass::Chimeric,
            ReadClass::NotChimeric,
            ReadClass::Ambiguous,
        ] {
            assert!(reads.iter().any(|r| r.class == class), "{class:?}");
        }
    }

    #[test]
    fn mate_2_is_the_reverse_complement_of_the_fragment_end() {
        let reference = synthesize(&tiny_synth(4), 4);
        let f = make_fusion(&reference, 0, 0, 4).unwrap();
        let c = ReadConfig {
            fragment_mean: 60.0,
            ..cfg(20, 5.0, 0.0, 0.0)
        };
        let reads = reads(&f, &c, 4);
        assert!(reads.len() > 20);
        for pair in reads.chunks(2) {
            let (m1, m2) = (&pair[0], &pair[1]);
            assert_eq!(
                (m1.mate, m2.mate, m1.pair),
                (1, 2, m2.pair),
                "mates adjacent"
            );
            assert_eq!(m1.seq, f.seq[m1.start..m1.start + 20]);
            assert_eq!(m2.seq, reverse_complement(&f.seq[m2.start..m2.start + 20]));
            assert!(
                m2.start >= m1.start,
                "mate 2 reads back from the fragment's far end"
            );
        }
        assert_eq!(reverse_complement(b"AACGTN"), b"NACGTT");
    }

    #[test]
    fn substitution_and_indel_errors_match_their_rates() {
        let r = hand_built();
        let f = make_fusion(&r, 0, 0, 1).unwrap();
        let (mut wrong, mut total) = (0, 0);
        for rd in reads(&f, &cfg(10, 2000.0, 0.05, 0.0), 9) {
            let truth = &f.seq[rd.start..rd.start + 10];
            let truth = if rd.mate == 1 {
                truth.to_vec()
            } else {
                reverse_complement(truth)
            };
            wrong += rd.seq.iter().zip(&truth).filter(|(a, b)| a != b).count();
            total += 10;
        }
        let rate = wrong as f64 / total as f64;
        assert!((rate - 0.05).abs() < 0.005, "observed error rate {rate}");
        // Deletions lengthen the span, insertions shorten it; both happen at about the rate.
        let rs = reads(&f, &cfg(10, 2000.0, 0.0, 0.02), 9);
        let longer = rs.iter().filter(|r| r.span > 10).count() as f64 / rs.len() as f64;
        let shorter = rs.iter().filter(|r| r.span < 10).count() as f64 / rs.len() as f64;
        // P(at least one deletion in ~10 draws at 1 %) ≈ 0.095.
        assert!((0.06..0.13).contains(&longer), "{longer}");
        assert!((0.06..0.13).contains(&shorter), "{shorter}");
        assert!(rs.iter().all(|r| r.seq.len() == 10));
    }

    #[test]
    fn chimeric_fraction_is_near_the_anchored_share_of_the_transcript() {
        let reference = synthesize(&tiny_synth(17), 11);
        let c = ReadConfig {
            read_length: 20,
            coverage: 10.0,
            fragment_mean: 40.0,
            fragment_sd: 5.0,
            error_rate: 0.0,
            indel_rate: 0.0,
            min_anchor: 5,
        };
        let (mut chimeric, mut total, mut expected) = (0usize, 0usize, 0f64);
        for id in 0..200u32 {
            let f = make_fusion(&reference, id as usize % 17, id, 11).unwrap();
            let rs = reads(&f, &c, 11);
            // Chimeric starts: breakpoint - (20 - 5) ..= breakpoint - 5, i.e. 11 of them.
            expected += rs.len() as f64 * 11.0 / (f.seq.len() - 19) as f64;
            chimeric += rs.iter().filter(|r| r.class == ReadClass::Chimeric).count();
            total += rs.len();
        }
        let (observed, expected) = (chimeric as f64 / total as f64, expected / total as f64);
        assert!(
            (observed / expected - 1.0).abs() < 0.2,
            "chimeric fraction {observed:.4} vs anchored share {expected:.4}"
        );
    }
}
