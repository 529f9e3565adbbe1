//! The dataset file format: NumPy `.npy` (format 1.0) files holding one packed structured record
//! per read, written as a stream.
//!
//! Why `.npy`: it is a published, versioned format (a short text header naming the dtype and
//! shape, then raw little-endian records) that Python reads with no code of ours
//! (`numpy.load(path, mmap_mode="r")`, memory-mapped, columns by name), fixed-width records make
//! every read addressable by index, and it can be written in one pass: the header is reserved at
//! a fixed size and the record count is filled in when the stream is finished. This module only
//! writes and reads records; what the columns mean is `dataset`'s business.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// One column of a record: a name and a little-endian unsigned integer of `width` bytes,
/// repeated `count` times (count 1 is a scalar column).
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: &'static str,
    pub width: usize,
    pub count: usize,
}

impl Column {
    pub const fn scalar(name: &'static str, width: usize) -> Self {
        Self {
            name,
            width,
            count: 1,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is not a dataset file of this version (expected dtype {expected}); regenerate it with `kgf-step dataset`"
    )]
    Schema { path: PathBuf, expected: String },
}

const MAGIC: &[u8] = b"\x93NUMPY\x01\x00";
/// Header bytes reserved in front of the records, a multiple of 64 as the format recommends.
const HEADER_LEN: usize = 512;

fn descr(columns: &[Column]) -> String {
    let cols: Vec<String> = columns
        .iter()
        .map(|c| {
            let t = if c.width == 1 {
                "|u1".to_string()
            } else {
                format!("<u{}", c.width)
            };
            if c.count == 1 {
                format!("('{}', '{t}')", c.name)
            } else {
                format!("('{}', '{t}', ({},))", c.name, c.count)
            }
        })
        .collect();
    format!("[{}]", cols.join(", "))
}

fn header(columns: &[Column], rows: u64) -> Vec<u8> {
    let dict = format!(
        "{{'descr': {}, 'fortran_order': False, 'shape': ({rows},), }}",
        descr(columns)
    );
    let mut h = MAGIC.to_vec();
    let body_len = HEADER_LEN - MAGIC.len() - 2;
    h.extend_from_slice(&(body_len as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h.resize(HEADER_LEN - 1, b' ');
    h.push(b'\n');
    h
}

/// Bytes per record.
pub fn record_len(columns: &[Column]) -> usize {
    columns.iter().map(|c| c.width * c.count).sum()
}

/// Streams records into an `.npy` file.
pub struct Writer {
    path: PathBuf,
    columns: Vec<Column>,
    out: BufWriter<File>,
    rows: u64,
    record: Vec<u8>,
}

impl Writer {
    pub fn create(path: &Path, columns: &[Column]) -> Result<Self, FormatError> {
        assert!(
            header(columns, u64::MAX).len() == HEADER_LEN && descr(columns).len() < 400,
            "dtype too long for the reserved header"
        );
        let io = |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut out = BufWriter::new(File::create(path).map_err(io)?);
        out.write_all(&header(columns, 0)).map_err(io)?;
        Ok(Self {
            path: path.to_path_buf(),
            columns: columns.to_vec(),
            out,
            rows: 0,
            record: Vec::with_capacity(record_len(columns)),
        })
    }

    /// Writes one record; `values[i]` holds column i's values (`count` of them).
    pub fn write(&mut self, values: &[&[u64]]) -> Result<(), FormatError> {
        self.record.clear();
        for (c, v) in self.columns.iter().zip(values) {
            debug_assert_eq!(v.len(), c.count, "column {}", c.name);
            for x in *v {
                self.record.extend_from_slice(&x.to_le_bytes()[..c.width]);
            }
        }
        self.out
            .write_all(&self.record)
            .map_err(|source| FormatError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.rows += 1;
        Ok(())
    }

    /// Fills in the record count and flushes; returns the number of records.
    pub fn finish(mut self) -> Result<u64, FormatError> {
        let io = |source| FormatError::Io {
            path: self.path.clone(),
            source,
        };
        self.out.flush().map_err(io)?;
        let mut f = self.out.into_inner().map_err(|e| io(e.into_error()))?;
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        f.write_all(&header(&self.columns, self.rows)).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(self.rows)
    }
}

/// Streams records out of an `.npy` file written by [`Writer`] with the same columns.
pub struct Reader {
    path: PathBuf,
    input: BufReader<File>,
    rows: u64,
    next: u64,
    record: Vec<u8>,
}

impl Reader {
    pub fn open(path: &Path, columns: &[Column]) -> Result<Self, FormatError> {
        let io = |source| FormatError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut input = BufReader::new(File::open(path).map_err(io)?);
        let mut h = vec![0u8; HEADER_LEN];
        input.read_exact(&mut h).map_err(io)?;
        let text = String::from_utf8_lossy(&h);
        let schema = || FormatError::Schema {
            path: path.to_path_buf(),
            expected: descr(columns),
        };
        if !h.starts_with(MAGIC) || !text.contains(&format!("'descr': {}", descr(columns))) {
            return Err(schema());
        }
        let rows = text
            .split("'shape': (")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(schema)?;
        Ok(Self {
            path: path.to_path_buf(),
            input,
            rows,
            next: 0,
            record: vec![0; record_len(columns)],
        })
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The next raw record, or `None` after the last.
    pub fn next_record(&mut self) -> Result<Option<&[u8]>, FormatError> {
        if self.next == self.rows {
            return Ok(None);
        }
        self.input
            .read_exact(&mut self.record)
            .map_err(|source| FormatError::Io {
                path: self.path.clone(),
                source,
            })?;
        self.next += 1;
        Ok(Some(&self.record))
    }
}

/// Reads little-endian unsigned integers out of a raw record, column by column.
pub struct Fields<'a> {
    bytes: &'a [u8],
}

impl<'a> Fields<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    pub fn uint(&mut self, width: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(&self.bytes[..width]);
        self.bytes = &self.bytes[width..];
        u64::from_le_bytes(b)
    }

    /// `count` 16-bit values appended to `out`.
    pub fn u16s(&mut self, count: usize, out: &mut Vec<u16>) {
        out.extend(
            self.bytes[..2 * count]
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        );
        self.bytes = &self.bytes[2 * count..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_header_is_npy() {
        let cols = [
            Column::scalar("id", 4),
            Column::scalar("label", 1),
            Column {
                name: "tokens",
                width: 2,
                count: 3,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        let mut w = Writer::create(&p, &cols).unwrap();
        for i in 0..5u64 {
            w.write(&[&[70_000 + i], &[i % 2], &[i, 65_535, 7]])
                .unwrap();
        }
        assert_eq!(w.finish().unwrap(), 5);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), HEADER_LEN + 5 * 11);
        assert_eq!(&bytes[..8], MAGIC);
        let text = String::from_utf8_lossy(&bytes[10..HEADER_LEN]);
        assert!(text.contains("'shape': (5,)"), "{text}");
        assert!(text.contains("('tokens', '<u2', (3,))"));
        assert_eq!(bytes[HEADER_LEN - 1], b'\n');

        let mut r = Reader::open(&p, &cols).unwrap();
        assert_eq!(r.rows(), 5);
        let mut n = 0;
        while let Some(rec) = r.next_record().unwrap() {
            let mut f = Fields::new(rec);
            assert_eq!(f.uint(4), 70_000 + n);
            assert_eq!(f.uint(1), n % 2);
            let mut t = Vec::new();
            f.u16s(3, &mut t);
            assert_eq!(t, [n as u16, 65_535, 7]);
            n += 1;
        }
        assert_eq!(n, 5);
        assert!(matches!(
            Reader::open(&p, &cols[..2]),
            Err(FormatError::Schema { .. })
        ));
    }
}
