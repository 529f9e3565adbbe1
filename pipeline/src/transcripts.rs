//! Reference transcripts: the synthetic generator (exons and isoforms per panel gene) and the
//! FASTA reader for user transcripts. Holds the reference in memory (it is small and bounded by
//! the panel); it never holds reads.

use std::io::{BufRead, Read};
use std::path::Path;

use crate::rng::Rng;

/// The 17-gene panel of design §4, in label order.
pub const PANEL: [&str; 17] = [
    "RUNX1", "ETV6", "RIPOR1", "CTCF", "KMT2A", "EZR", "PAX5", "PTEN", "PMEL", "TAL1", "DUX4",
    "CRLF2", "MEF2D", "BCL9", "TCF3", "ZNF384", "PBX1",
];

/// One transcript (isoform) of a gene.
#[derive(Clone, Debug, PartialEq)]
pub struct Transcript {
    pub gene: usize,
    pub name: String,
    pub seq: Vec<u8>,
    /// Offsets in `seq` where an exon starts (always begins with 0). A FASTA transcript has no
    /// exon structure, so it holds only 0 and fusions cut it anywhere.
    pub exon_starts: Vec<usize>,
}

/// The reference: gene names (label order) and their transcripts.
#[derive(Clone, Debug)]
pub struct Reference {
    pub genes: Vec<String>,
    pub transcripts: Vec<Transcript>,
}

impl Reference {
    /// Transcripts of gene `g`.
    pub fn of_gene(&self, g: usize) -> impl Iterator<Item = (usize, &Transcript)> {
        self.transcripts
            .iter()
            .enumerate()
            .filter(move |(_, t)| t.gene == g)
    }
}

/// Shape of the synthetic reference.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SynthConfig {
    /// The first `genes` genes of the panel.
    pub genes: usize,
    /// Each gene's length relative to its real transcript's (1.0: real size; `tiny` shrinks).
    pub length_scale: f64,
    pub isoforms_max: usize,
    /// How far each gene's k-mer composition departs from what its GC content alone gives
    /// (0 = none): a stand-in for the codon usage and sequence motifs that differ between real
    /// genes.
    pub skew: f64,
    /// Fraction of bases that differ between two copies of a shared domain or repeat.
    pub divergence: f64,
}

/// What the simulator knows of a panel gene: approximate length, exon count, GC content and
/// coding length of its canonical human transcript (rounded; for shape, not for biology — use
/// `kgf-step transcripts` for the real sequences), and the domain families it shares with other
/// panel genes.
pub struct GeneProfile {
    pub name: &'static str,
    pub length: usize,
    pub exons: usize,
    pub gc: f64,
    pub cds: usize,
    /// (family, copies): homologous domains in the coding sequence.
    pub domains: &'static [(Domain, usize)],
    /// Whether the 3' UTR carries a copy of the shared interspersed repeat (an Alu-like
    /// element, as many long human 3' UTRs do).
    pub utr_repeat: bool,
}

/// Domain families shared between panel genes (or repeated inside one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Domain {
    /// basic helix-loop-helix: TAL1, TCF3.
    Bhlh,
    /// homeodomain: DUX4 (two), PBX1.
    Homeobox,
    /// C2H2 zinc finger, in tandem arrays: CTCF, ZNF384.
    ZincFinger,
}

impl Domain {
    fn length(self) -> usize {
        match self {
            Domain::Bhlh => 180,
            Domain::Homeobox => 180,
            Domain::ZincFinger => 84,
        }
    }
}

const fn gene(
    name: &'static str,
    length: usize,
    exons: usize,
    gc: f64,
    cds: usize,
    domains: &'static [(Domain, usize)],
    utr_repeat: bool,
) -> GeneProfile {
    GeneProfile {
        name,
        length,
        exons,
        gc,
        cds,
        domains,
        utr_repeat,
    }
}

/// The panel's profiles, in label order (`PANEL`).
pub const PROFILES: [GeneProfile; 17] = [
    gene("RUNX1", 6000, 9, 0.47, 1443, &[], true),
    gene("ETV6", 5900, 8, 0.45, 1359, &[], true),
    gene("RIPOR1", 4000, 20, 0.60, 3036, &[], false),
    gene(
        "CTCF",
        3700,
        12,
        0.47,
        2184,
        &[(Domain::ZincFinger, 11)],
        false,
    ),
    gene("KMT2A", 16000, 36, 0.45, 11919, &[], true),
    gene("EZR", 3100, 14, 0.45, 1761, &[], false),
    gene("PAX5", 3600, 10, 0.52, 1176, &[], false),
    gene("PTEN", 8500, 9, 0.37, 1212, &[], true),
    gene("PMEL", 2300, 11, 0.55, 1986, &[], false),
    gene("TAL1", 4600, 6, 0.58, 996, &[(Domain::Bhlh, 1)], true),
    gene("DUX4", 1700, 3, 0.70, 1275, &[(Domain::Homeobox, 2)], false),
    gene("CRLF2", 1600, 8, 0.60, 1116, &[], false),
    gene("MEF2D", 5800, 11, 0.55, 1566, &[], true),
    gene("BCL9", 6400, 10, 0.52, 4281, &[], true),
    gene("TCF3", 4200, 19, 0.63, 1965, &[(Domain::Bhlh, 1)], false),
    gene(
        "ZNF384",
        2600,
        10,
        0.55,
        1734,
        &[(Domain::ZincFinger, 8)],
        false,
    ),
    gene("PBX1", 7000, 9, 0.45, 1293, &[(Domain::Homeobox, 1)], true),
];

/// Length of the shared interspersed repeat.
const REPEAT_LEN: usize = 300;

/// A base drawn with probability `gc` of being G or C.
fn gc_base(rng: &mut Rng, gc: f64) -> u8 {
    let strong = rng.uniform() < gc;
    match (strong, rng.uniform() < 0.5) {
        (true, true) => b'G',
        (true, false) => b'C',
        (false, true) => b'A',
        (false, false) => b'T',
    }
}

/// `consensus` with a fraction `divergence` of its bases substituted.
fn diverged(consensus: &[u8], divergence: f64, rng: &mut Rng) -> Vec<u8> {
    consensus
        .iter()
        .map(|&b| {
            if rng.uniform() < divergence {
                let others: Vec<u8> = b"ACGT".iter().copied().filter(|&c| c != b).collect();
                others[rng.below(3)]
            } else {
                b
            }
        })
        .collect()
}

/// A gene's own composition: an order-2 Markov chain whose stationary GC content is near the
/// gene's, with a per-gene random tilt of strength `skew`.
struct Composition {
    /// Cumulative probabilities of A, C, G, T after each of the 16 two-base contexts.
    chain: [[f64; 4]; 16],
}

impl Composition {
    fn new(gc: f64, skew: f64, rng: &mut Rng) -> Self {
        let base = [(1.0 - gc) / 2.0, gc / 2.0, gc / 2.0, (1.0 - gc) / 2.0];
        let mut chain = [[0f64; 4]; 16];
        for row in chain.iter_mut() {
            let w: Vec<f64> = (0..4)
                .map(|b| base[b] * (skew * rng.normal()).exp())
                .collect();
            let total: f64 = w.iter().sum();
            let mut acc = 0.0;
            for (c, wi) in row.iter_mut().zip(&w) {
                acc += wi / total;
                *c = acc;
            }
        }
        Self { chain }
    }

    /// Appends `len` bases, continuing from the last two bases of `out`.
    fn extend(&self, out: &mut Vec<u8>, len: usize, coding: bool, gc: f64, rng: &mut Rng) {
        let code = |b: u8| match b {
            b'A' => 0,
            b'C' => 1,
            b'G' => 2,
            _ => 3,
        };
        for i in 0..len {
            let n = out.len();
            let (p2, p1) = match n {
                0 => (0, 0),
                1 => (0, code(out[0])),
                _ => (code(out[n - 2]), code(out[n - 1])),
            };
            // Third codon positions carry most of a gene's GC bias (GC3): draw them from the GC
            // content pushed further from one half, the rest from the gene's chain.
            let b = if coding && i % 3 == 2 {
                gc_base(rng, (0.5 + 1.6 * (gc - 0.5)).clamp(0.05, 0.95))
            } else {
                let u = rng.uniform();
                let row = &self.chain[p2 * 4 + p1];
                b"ACGT"[row.iter().position(|&c| u < c).unwrap_or(3)]
            };
            out.push(b);
        }
    }
}

/// Generates the synthetic reference for the first `cfg.genes` panel genes: per gene, a
/// transcript of its profile's (scaled) length — 5' UTR, coding sequence with the gene's codon
/// GC bias and its shared domains (copies of one family consensus, diverged), 3' UTR with a
/// microsatellite and, for long UTRs, a copy of one shared interspersed repeat — cut into its
/// profile's exon count; then isoforms that skip internal exons (isoform 1 keeps every exon).
pub fn synthesize(cfg: &SynthConfig, seed: u64) -> Reference {
    let genes: Vec<String> = PANEL[..cfg.genes].iter().map(|s| s.to_string()).collect();
    let mut family_rng = Rng::derive(seed, "families", 0);
    let consensus =
        |len: usize, rng: &mut Rng| -> Vec<u8> { (0..len).map(|_| gc_base(rng, 0.55)).collect() };
    let families: Vec<(Domain, Vec<u8>)> = [Domain::Bhlh, Domain::Homeobox, Domain::ZincFinger]
        .into_iter()
        .map(|d| (d, consensus(d.length(), &mut family_rng)))
        .collect();
    let repeat: Vec<u8> = consensus(REPEAT_LEN, &mut family_rng);
    let mut transcripts = Vec::new();
    for (g, gene) in genes.iter().enumerate() {
        let p = &PROFILES[g];
        let mut rng = Rng::derive(seed, "gene", g as u64);
        let comp = Composition::new(p.gc, cfg.skew, &mut rng);
        let len = ((p.length as f64 * cfg.length_scale).round() as usize).max(60);
        let cds = ((p.cds as f64 * cfg.length_scale).round() as usize).clamp(30, len * 3 / 4);
        let utr5 = ((len - cds) / 8).max(10).min(len - cds);
        let utr3 = len - cds - utr5;
        let mut seq = Vec::with_capacity(len + REPEAT_LEN);
        comp.extend(&mut seq, utr5, false, p.gc, &mut rng);
        // Domains go in the coding sequence, evenly spaced, as many copies as fit in half of it.
        let mut copies: Vec<Vec<u8>> = Vec::new();
        for &(d, n) in p.domains {
            let c = &families.iter().find(|f| f.0 == d).expect("family").1;
            for _ in 0..n {
                if (copies.iter().map(Vec::len).sum::<usize>() + c.len()) * 2 <= cds {
                    copies.push(diverged(c, cfg.divergence, &mut rng));
                }
            }
        }
        let filler = cds - copies.iter().map(Vec::len).sum::<usize>();
        let gap = filler / (copies.len() + 1);
        for copy in &copies {
            comp.extend(&mut seq, gap, true, p.gc, &mut rng);
            seq.extend_from_slice(copy);
        }
        let rest = utr5 + cds - seq.len();
        comp.extend(&mut seq, rest, true, p.gc, &mut rng);
        // 3' UTR: the gene's composition, a microsatellite of a gene-specific unit, and the
        // shared repeat where the UTR is long enough to hold it.
        let unit: Vec<u8> = (0..2 + rng.below(3))
            .map(|_| gc_base(&mut rng, 0.3))
            .collect();
        let micro = unit.len() * (8 + rng.below(8));
        let with_repeat = p.utr_repeat && utr3 >= 2 * REPEAT_LEN;
        let body = utr3.saturating_sub(micro + if with_repeat { REPEAT_LEN } else { 0 });
        comp.extend(&mut seq, body / 2, false, p.gc - 0.05, &mut rng);
        if with_repeat {
            seq.extend(diverged(&repeat, cfg.divergence, &mut rng));
        }
        if micro < utr3 {
            seq.extend(unit.iter().cycle().take(micro));
        }
        let rest = len - seq.len().min(len);
        comp.extend(&mut seq, rest, false, p.gc - 0.05, &mut rng);
        // Exons: the coding part and the 5' UTR cut into `exons - 1` of similar length (±50 %),
        // the last one holding the rest (real last exons hold the 3' UTR and are the longest).
        let n_exons = p.exons.max(1);
        let mean = (utr5 + cds) as f64 / n_exons as f64;
        let mut starts = vec![0usize];
        for _ in 1..n_exons {
            let step = (mean * (0.5 + rng.uniform())).round().max(1.0) as usize;
            let next = starts.last().unwrap() + step;
            if next + step >= seq.len() {
                break;
            }
            starts.push(next);
        }
        let exons: Vec<&[u8]> = starts
            .iter()
            .enumerate()
            .map(|(i, &s)| &seq[s..starts.get(i + 1).copied().unwrap_or(seq.len())])
            .collect();
        let n_iso = rng.range(1, cfg.isoforms_max.max(1));
        for iso in 0..n_iso {
            let keep: Vec<bool> = (0..exons.len())
                .map(|e| iso == 0 || e == 0 || e + 1 == exons.len() || rng.uniform() > 0.25)
                .collect();
            let mut tx = Vec::new();
            let mut exon_starts = Vec::new();
            for (e, exon) in exons.iter().enumerate() {
                if keep[e] {
                    exon_starts.push(tx.len());
                    tx.extend_from_slice(exon);
                }
            }
            transcripts.push(Transcript {
                gene: g,
                name: format!("{gene}-{:03}", 201 + iso),
                seq: tx,
                exon_starts,
            });
        }
    }
    Reference { genes, transcripts }
}

/// Errors reading a user FASTA.
#[derive(Debug, thiserror::Error)]
pub enum FastaError {
    #[error("cannot read transcripts from {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{path}:{line}: sequence before any '>' header; a FASTA record starts with '>GENE|TRANSCRIPT'"
    )]
    NoHeader { path: String, line: usize },
    #[error(
        "{path} holds {found} gene(s); at least 2 are needed to make fusions (name the gene before '|' in each header, e.g. '>ETV6|ETV6-201')"
    )]
    TooFewGenes { path: String, found: usize },
}

/// Reads transcripts from a FASTA file; see [`parse_fasta`].
pub fn read_fasta(path: &Path) -> Result<Reference, FastaError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| FastaError::Io {
        path: name.clone(),
        source,
    })?;
    parse_fasta(file, &name)
}

/// Reads transcripts from FASTA in any reader (a file, an object-store body); `source` names it
/// in errors. The gene is the header's first word up to the first '|' (`>ETV6|ETV6-201` or
/// `>ETV6`); genes are labelled in order of first appearance. Bases are upper-cased; anything
/// but A, C, G, T becomes N (IUPAC ambiguity codes included).
pub fn parse_fasta(reader: impl Read, source: &str) -> Result<Reference, FastaError> {
    let path = source;
    let io = |source| FastaError::Io {
        path: path.to_string(),
        source,
    };
    let mut genes: Vec<String> = Vec::new();
    let mut transcripts: Vec<Transcript> = Vec::new();
    for (n, line) in std::io::BufReader::new(reader).lines().enumerate() {
        let line = line.map_err(io)?;
        let line = line.trim_end();
        if let Some(header) = line.strip_prefix('>') {
            let word = header.split_whitespace().next().unwrap_or("");
            let gene = word.split('|').next().unwrap_or(word).to_string();
            let g = match genes.iter().position(|x| *x == gene) {
                Some(g) => g,
                None => {
                    genes.push(gene);
                    genes.len() - 1
                }
            };
            transcripts.push(Transcript {
                gene: g,
                name: word.to_string(),
                seq: Vec::new(),
                exon_starts: vec![0],
            });
        } else if !line.is_empty() {
            let t = transcripts.last_mut().ok_or(FastaError::NoHeader {
                path: path.to_string(),
                line: n + 1,
            })?;
            t.seq
                .extend(line.bytes().map(|b| match b.to_ascii_uppercase() {
                    c @ (b'A' | b'C' | b'G' | b'T') => c,
                    _ => b'N',
                }));
        }
    }
    if genes.len() < 2 {
        return Err(FastaError::TooFewGenes {
            path: path.to_string(),
            found: genes.len(),
        });
    }
    Ok(Reference { genes, transcripts })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SynthConfig {
        SynthConfig {
            genes: 4,
            length_scale: 0.2,
            isoforms_max: 3,
            skew: 0.5,
            divergence: 0.1,
        }
    }

    #[test]
    fn synthetic_reference_is_seeded_and_has_exons_and_isoforms() {
        let a = synthesize(&cfg(), 5);
        let b = synthesize(&cfg(), 5);
        assert_eq!(a.transcripts, b.transcripts);
        assert_ne!(a.transcripts, synthesize(&cfg(), 6).transcripts);
        assert_eq!(a.genes, ["RUNX1", "ETV6", "RIPOR1", "CTCF"]);
        for g in 0..4 {
            let isoforms: Vec<_> = a.of_gene(g).collect();
            assert!(!isoforms.is_empty());
            let full = &isoforms[0].1;
            assert!(full.exon_starts.len() >= 3);
            assert_eq!(full.exon_starts[0], 0);
            for (_, t) in &isoforms[1..] {
                assert!(t.seq.len() <= full.seq.len(), "isoforms only skip exons");
            }
        }
    }

    #[test]
    fn synthetic_genes_follow_their_profiles_and_paralogs_share_domains() {
        let full = SynthConfig {
            genes: 17,
            length_scale: 1.0,
            divergence: 0.05,
            ..cfg()
        };
        let r = synthesize(&full, 3);
        let gc = |s: &[u8]| {
            s.iter().filter(|&&b| b == b'G' || b == b'C').count() as f64 / s.len() as f64
        };
        for (g, p) in PROFILES.iter().enumerate() {
            let t = &r.of_gene(g).next().unwrap().1;
            let len = t.seq.len() as f64;
            assert!(
                (len / p.length as f64 - 1.0).abs() < 0.1,
                "{}: {len}",
                p.name
            );
            assert!(
                (gc(&t.seq) - p.gc).abs() < 0.08,
                "{}: GC {:.2} vs {}",
                p.name,
                gc(&t.seq),
                p.gc
            );
            assert!(t.exon_starts.len() + 1 >= p.exons.min(3), "{}", p.name);
        }
        // TAL1 and TCF3 (both bHLH) share far more 12-mers than TAL1 and a gene without it.
        let kmers = |g: usize| -> std::collections::HashSet<Vec<u8>> {
            r.of_gene(g)
                .flat_map(|(_, t)| t.seq.windows(12).map(<[u8]>::to_vec).collect::<Vec<_>>())
                .collect()
        };
        let (tal1, tcf3, ezr) = (kmers(9), kmers(14), kmers(5));
        let shared = |a: &std::collections::HashSet<Vec<u8>>,
                      b: &std::collections::HashSet<Vec<u8>>| {
            a.intersection(b).count()
        };
        assert!(
            shared(&tal1, &tcf3) > 10 * shared(&tal1, &ezr).max(1),
            "{} vs {}",
            shared(&tal1, &tcf3),
            shared(&tal1, &ezr)
        );
    }

    #[test]
    fn fasta_genes_come_from_headers_and_odd_bases_become_n() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.fa");
        std::fs::write(
            &p,
            ">ETV6|ETV6-201 x\nacgtRY\nAC\n>RUNX1\nGGG\n>ETV6|ETV6-202\nTT\n",
        )
        .unwrap();
        let r = read_fasta(&p).unwrap();
        assert_eq!(r.genes, ["ETV6", "RUNX1"]);
        assert_eq!(r.transcripts[0].seq, b"ACGTNNAC");
        assert_eq!(r.transcripts[2].gene, 0);
        std::fs::write(&p, "ACGT\n").unwrap();
        assert!(matches!(
            read_fasta(&p),
            Err(FastaError::NoHeader { line: 1, .. })
        ));
        std::fs::write(&p, ">A\nACGT\n").unwrap();
        assert!(matches!(
            read_fasta(&p),
            Err(FastaError::TooFewGenes { found: 1, .. })
        ));
    }
}
