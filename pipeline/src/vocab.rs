//! The k-mer vocabulary and tokenizer of design §4: `[PAD] [UNK] [CLS] [SEP] [MASK]`, then every
//! k-mer over A,T,C,G,N in product order (A=0, T=1, C=2, G=3, N=4), id = 5 + base-5 value.
//!
//! Owns only the mapping from bases to ids; it does not decide sentence layout (see `dataset`).

pub const PAD: u16 = 0;
pub const UNK: u16 = 1;
pub const CLS: u16 = 2;
pub const SEP: u16 = 3;
pub const MASK: u16 = 4;
pub const SPECIAL: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
/// The alphabet in product order.
pub const ALPHABET: [u8; 5] = *b"ATCGN";
/// Largest k whose ids fit the 16-bit token columns of the dataset files (5 + 5^6 = 15 630).
pub const MAX_K: usize = 6;

/// A base's digit in product order; `None` for anything that is not A, T, C, G or N.
pub fn base_code(b: u8) -> Option<u16> {
    match b.to_ascii_uppercase() {
        b'A' => Some(0),
        b'T' => Some(1),
        b'C' => Some(2),
        b'G' => Some(3),
        b'N' => Some(4),
        _ => None,
    }
}

/// Number of ids for k-mers of length `k`, specials included.
pub fn vocab_size(k: usize) -> usize {
    5 + 5usize.pow(k as u32)
}

/// The id of one k-mer; `[UNK]` if it holds a character outside A, T, C, G, N.
pub fn kmer_id(kmer: &[u8]) -> u16 {
    let mut v: u16 = 0;
    for &b in kmer {
        match base_code(b) {
            Some(d) => v = v * 5 + d,
            None => return UNK,
        }
    }
    5 + v
}

/// Appends the ids of every k-mer of `seq` (stride 1) to `out`.
pub fn tokenize(seq: &[u8], k: usize, out: &mut Vec<u16>) {
    if seq.len() >= k {
        out.extend(seq.windows(k).map(kmer_id));
    }
}

/// The bases of a read from its k-mer ids (stride 1): the first k-mer, then the last base of
/// each following one; the inverse of [`tokenize`] for a read of A, T, C, G, N (a special id
/// gives N).
pub fn bases(ids: &[u16], k: usize) -> Vec<u8> {
    let base = |id: u16, i: usize| -> u8 {
        if (id as usize) < SPECIAL.len() {
            return b'N';
        }
        let v = (id - 5) as usize / 5usize.pow((k - 1 - i) as u32);
        ALPHABET[v % 5]
    };
    let Some((&first, rest)) = ids.split_first() else {
        return Vec::new();
    };
    let mut out: Vec<u8> = (0..k).map(|i| base(first, i)).collect();
    out.extend(rest.iter().map(|&id| base(id, k - 1)));
    out
}

/// The token string of an id (inverse of `kmer_id` for a valid id).
pub fn token(id: u16, k: usize) -> String {
    if (id as usize) < SPECIAL.len() {
        return SPECIAL[id as usize].to_string();
    }
    let mut v = (id - 5) as usize;
    let mut s = vec![b'A'; k];
    for i in (0..k).rev() {
        s[i] = ALPHABET[v % 5];
        v /= 5;
    }
    String::from_utf8(s).expect("alphabet is ASCII")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_kmer_ids_follow_product_order() {
        assert_eq!(kmer_id(b"AAAAAA"), 5);
        assert_eq!(kmer_id(b"AAAAAT"), 6);
        assert_eq!(kmer_id(b"AAAAAN"), 9);
        assert_eq!(kmer_id(b"AAAATA"), 10);
        assert_eq!(kmer_id(b"NNNNNN"), 5 + 15_624);
        // G A T T A C = 3 0 1 1 0 2 in base 5.
        assert_eq!(kmer_id(b"GATTAC"), 5 + 3 * 3125 + 125 + 25 + 2);
        assert_eq!(kmer_id(b"ACN"), 5 + 2 * 5 + 4);
        assert_eq!(kmer_id(b"acg"), kmer_id(b"ACG"));
        assert_eq!(kmer_id(b"AXA"), UNK);
        assert_eq!(vocab_size(6), 15_630);
        assert_eq!(vocab_size(3), 130);
    }

    #[test]
    fn tokenize_is_stride_one_and_token_inverts_ids() {
        let mut ids = Vec::new();
        tokenize(b"ATCGN", 3, &mut ids);
        assert_eq!(ids, vec![kmer_id(b"ATC"), kmer_id(b"TCG"), kmer_id(b"CGN")]);
        assert_eq!(token(kmer_id(b"CGN"), 3), "CGN");
        assert_eq!(token(CLS, 3), "[CLS]");
        let mut none = Vec::new();
        tokenize(b"AT", 3, &mut none);
        assert!(none.is_empty());
        let read = b"GATTACANCAT";
        let mut ids = Vec::new();
        tokenize(read, 4, &mut ids);
        assert_eq!(bases(&ids, 4), read);
        assert!(bases(&[], 4).is_empty());
    }
}
