//! Reference transcripts: the synthetic generator (exons and isoforms per panel gene) and the
//! FASTA reader for user transcripts. Holds the reference in memory (it is small and bounded by
//! the panel); it never holds reads.

use std::io::BufRead;
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
    pub genes: usize,
    pub exons_min: usize,
    pub exons_max: usize,
    pub exon_len_min: usize,
    pub exon_len_max: usize,
    pub isoforms_max: usize,
    /// How far each gene's base composition is from uniform (0 = uniform). Real genes differ in
    /// composition (GC content, codon usage); without that a classifier could not name the gene
    /// of a fragment it never saw.
    pub skew: f64,
}

/// Generates the synthetic reference for the first `cfg.genes` panel genes. Each gene has an
/// order-2 Markov composition of its own, a random exon chain, and isoforms that skip internal
/// exons (isoform 1 keeps every exon).
pub fn synthesize(cfg: &SynthConfig, seed: u64) -> Reference {
    let genes: Vec<String> = PANEL[..cfg.genes].iter().map(|s| s.to_string()).collect();
    let mut transcripts = Vec::new();
    for (g, gene) in genes.iter().enumerate() {
        let mut rng = Rng::derive(seed, "gene", g as u64);
        let mut chain = [[0f64; 4]; 16];
        for row in chain.iter_mut() {
            let w: Vec<f64> = (0..4).map(|_| (rng.uniform() * cfg.skew).exp()).collect();
            let total: f64 = w.iter().sum();
            let mut acc = 0.0;
            for (c, wi) in row.iter_mut().zip(&w) {
                acc += wi / total;
                *c = acc;
            }
        }
        let n_exons = rng.range(cfg.exons_min, cfg.exons_max);
        let mut exons: Vec<Vec<u8>> = Vec::with_capacity(n_exons);
        let (mut p1, mut p2) = (rng.below(4), rng.below(4));
        for _ in 0..n_exons {
            let len = rng.range(cfg.exon_len_min, cfg.exon_len_max);
            let exon = (0..len)
                .map(|_| {
                    let u = rng.uniform();
                    let row = &chain[p2 * 4 + p1];
                    let b = row.iter().position(|&c| u < c).unwrap_or(3);
                    p2 = p1;
                    p1 = b;
                    b"ACGT"[b]
                })
                .collect();
            exons.push(exon);
        }
        let n_iso = rng.range(1, cfg.isoforms_max.max(1));
        for iso in 0..n_iso {
            let keep: Vec<bool> = (0..n_exons)
                .map(|e| iso == 0 || e == 0 || e + 1 == n_exons || rng.uniform() > 0.25)
                .collect();
            let mut seq = Vec::new();
            let mut exon_starts = Vec::new();
            for (e, exon) in exons.iter().enumerate() {
                if keep[e] {
                    exon_starts.push(seq.len());
                    seq.extend_from_slice(exon);
                }
            }
            transcripts.push(Transcript {
                gene: g,
                name: format!("{gene}-{:03}", 201 + iso),
                seq,
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

/// Reads transcripts from FASTA. The gene is the header's first word up to the first '|'
/// (`>ETV6|ETV6-201` or `>ETV6`); genes are labelled in order of first appearance. Bases are
/// upper-cased; anything but A, C, G, T becomes N (IUPAC ambiguity codes included).
pub fn read_fasta(path: &Path) -> Result<Reference, FastaError> {
    let io = |source| FastaError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut genes: Vec<String> = Vec::new();
    let mut transcripts: Vec<Transcript> = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
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
                path: path.display().to_string(),
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
            path: path.display().to_string(),
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
            exons_min: 3,
            exons_max: 6,
            exon_len_min: 40,
            exon_len_max: 90,
            isoforms_max: 3,
            skew: 2.0,
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
