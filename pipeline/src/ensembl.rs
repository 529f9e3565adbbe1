//! The `transcripts` step: fetches the panel genes' transcripts (cDNA) from Ensembl's REST API,
//! as the original pipeline did, and writes them as the FASTA that `dataset --transcripts` reads.
//!
//! Two endpoints (rest.ensembl.org/documentation): `GET lookup/symbol/:species/:symbol?expand=1`
//! (JSON: the gene, with its `Transcript` array of `id`, `display_name`, `biotype`,
//! `is_canonical`) and `GET sequence/id/:id?type=cdna` (FASTA when asked for `text/x-fasta`).
//! Requests are sequential (Ensembl allows 15 a second); a 429 is retried after its
//! `Retry-After`, a few times. Owns only the HTTP exchange and the FASTA it writes; it does not
//! interpret sequences (that is `transcripts`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

/// Ensembl's public REST server (GRCh38). The original work used hg19: pass
/// `https://grch37.rest.ensembl.org` for GRCh37.
pub const DEFAULT_URL: &str = "https://rest.ensembl.org";

/// What to fetch and from where.
#[derive(Clone, Debug)]
pub struct FetchConfig {
    pub base_url: String,
    pub species: String,
    pub genes: Vec<String>,
    /// Keep only transcripts of this biotype (`None`: every transcript).
    pub biotype: Option<String>,
    /// Per-request deadline.
    pub timeout: Duration,
    /// Attempts of a request answered 429 (rate limited) or 503.
    pub attempts: usize,
}

/// One fetched transcript.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    pub gene: String,
    pub id: String,
    pub name: String,
    pub biotype: String,
    pub seq: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum EnsemblError {
    #[error("{url} is not an http(s) URL: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot set up TLS for {url}: {source}")]
    Tls { url: String, source: std::io::Error },
    #[error(
        "GET {url}: {reason}; check the address (--ensembl-url) and that this machine reaches it"
    )]
    Request { url: String, reason: String },
    #[error("GET {url}: no answer within {secs} s; Ensembl may be busy, retry later")]
    Timeout { url: String, secs: u64 },
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "Ensembl knows no gene '{gene}' in {species} ({body}); check the symbol (--genes) and species (--species)"
    )]
    UnknownGene {
        gene: String,
        species: String,
        body: String,
    },
    #[error("GET {url}: not the JSON of a gene lookup: {source}")]
    Json {
        url: String,
        source: serde_json::Error,
    },
    #[error("GET {url}: the answer holds no FASTA sequence")]
    NoSequence { url: String },
    #[error(
        "gene {gene} has no transcript of biotype {biotype} in Ensembl; pass --biotype any to keep every transcript"
    )]
    NoTranscripts { gene: String, biotype: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Deserialize)]
struct Gene {
    #[serde(rename = "Transcript", default)]
    transcripts: Vec<TranscriptInfo>,
}

#[derive(Deserialize)]
struct TranscriptInfo {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    biotype: Option<String>,
    #[serde(default)]
    is_canonical: Option<u8>,
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// A blocking client for one fetch: a current-thread runtime around hyper.
struct Rest {
    rt: tokio::runtime::Runtime,
    client: Client<Https, Empty<Bytes>>,
    cfg: FetchConfig,
}

impl Rest {
    fn new(cfg: &FetchConfig) -> Result<Self, EnsemblError> {
        let base = cfg.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(EnsemblError::Url {
                url: cfg.base_url.clone(),
                reason: "it must start with http:// or https://".into(),
            });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| EnsemblError::Io {
                path: PathBuf::from("<tokio runtime>"),
                source,
            })?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(rustls::crypto::ring::default_provider())
            .map_err(|source| EnsemblError::Tls {
                url: cfg.base_url.clone(),
                source,
            })?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let mut cfg = cfg.clone();
        cfg.base_url = base.to_string();
        Ok(Self { rt, client, cfg })
    }

    /// GETs `path` (after the base URL) asking for `content_type`; returns status and body.
    fn get(&self, path: &str, content_type: &str) -> Result<(u16, String), EnsemblError> {
        let url = format!("{}/{path}", self.cfg.base_url);
        let uri: hyper::Uri =
            url.parse()
                .map_err(|e: http::uri::InvalidUri| EnsemblError::Url {
                    url: url.clone(),
                    reason: e.to_string(),
                })?;
        for attempt in 1..=self.cfg.attempts.max(1) {
            // Ensembl's REST server chooses the answer's format by the Content-Type header.
            let req = hyper::Request::get(uri.clone())
                .header("content-type", content_type)
                .header("accept", content_type)
                .header(
                    "user-agent",
                    concat!("kgf-step/", env!("CARGO_PKG_VERSION")),
                )
                .body(Empty::<Bytes>::new())
                .expect("request parts are valid");
            let exchange = async {
                let resp = self.client.request(req).await.map_err(|e| {
                    let mut reason = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        reason = format!("{reason}: {s}");
                        src = s.source();
                    }
                    EnsemblError::Request {
                        url: url.clone(),
                        reason,
                    }
                })?;
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse::<f64>().ok());
                let body = resp
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| EnsemblError::Request {
                        url: url.clone(),
                        reason: e.to_string(),
                    })?;
                Ok::<_, EnsemblError>((status, retry_after, body.to_bytes()))
            };
            let (status, retry_after, body) = self
                .rt
                .block_on(async { tokio::time::timeout(self.cfg.timeout, exchange).await })
                .map_err(|_| EnsemblError::Timeout {
                    url: url.clone(),
                    secs: self.cfg.timeout.as_secs(),
                })??;
            if (status == 429 || status == 503) && attempt < self.cfg.attempts {
                let wait = retry_after.unwrap_or(1.0).clamp(0.0, 60.0);
                eprintln!("transcripts: {url} answered {status}; retrying in {wait:.1}s");
                std::thread::sleep(Duration::from_secs_f64(wait));
                continue;
            }
            return Ok((status, String::from_utf8_lossy(&body).into_owned()));
        }
        unreachable!("the last attempt returns")
    }

    fn ok(&self, path: &str, content_type: &str) -> Result<String, EnsemblError> {
        let (status, body) = self.get(path, content_type)?;
        if status != 200 {
            return Err(EnsemblError::Status {
                url: format!("{}/{path}", self.cfg.base_url),
                status,
                body: body.chars().take(300).collect(),
            });
        }
        Ok(body)
    }
}

/// The sequence of a single-record FASTA answer.
fn fasta_sequence(body: &str) -> Vec<u8> {
    body.lines()
        .filter(|l| !l.starts_with('>'))
        .flat_map(|l| l.trim().bytes())
        .map(|b| b.to_ascii_uppercase())
        .collect()
}

/// Fetches every transcript of every gene of `cfg.genes` (canonical first, then by id).
pub fn fetch(cfg: &FetchConfig) -> Result<Vec<Fetched>, EnsemblError> {
    let rest = Rest::new(cfg)?;
    let mut out = Vec::new();
    for gene in &cfg.genes {
        let path = format!("lookup/symbol/{}/{gene}?expand=1", cfg.species);
        let (status, body) = rest.get(&path, "application/json")?;
        // Ensembl answers an unknown symbol with 400 and {"error": "No valid lookup found ..."}.
        if status == 400 || status == 404 {
            return Err(EnsemblError::UnknownGene {
                gene: gene.clone(),
                species: cfg.species.clone(),
                body: body.chars().take(200).collect(),
            });
        }
        let url = format!("{}/{path}", rest.cfg.base_url);
        if status != 200 {
            return Err(EnsemblError::Status {
                url,
                status,
                body: body.chars().take(300).collect(),
            });
        }
        let g: Gene =
            serde_json::from_str(&body).map_err(|source| EnsemblError::Json { url, source })?;
        let mut txs: Vec<TranscriptInfo> = g
            .transcripts
            .into_iter()
            .filter(|t| match &cfg.biotype {
                Some(b) => t.biotype.as_deref() == Some(b.as_str()),
                None => true,
            })
            .collect();
        if txs.is_empty() {
            return Err(EnsemblError::NoTranscripts {
                gene: gene.clone(),
                biotype: cfg.biotype.clone().unwrap_or_else(|| "any".into()),
            });
        }
        txs.sort_by(|a, b| {
            (b.is_canonical.unwrap_or(0), &a.id).cmp(&(a.is_canonical.unwrap_or(0), &b.id))
        });
        for t in txs {
            let path = format!("sequence/id/{}?type=cdna", t.id);
            let body = rest.ok(&path, "text/x-fasta")?;
            let seq = fasta_sequence(&body);
            if seq.is_empty() {
                return Err(EnsemblError::NoSequence {
                    url: format!("{}/{path}", rest.cfg.base_url),
                });
            }
            eprintln!("transcripts: {gene} {} ({} bases)", t.id, seq.len());
            out.push(Fetched {
                gene: gene.clone(),
                name: t.display_name.unwrap_or_else(|| t.id.clone()),
                biotype: t.biotype.unwrap_or_default(),
                id: t.id,
                seq,
            });
        }
    }
    Ok(out)
}

/// Writes `>GENE|ID NAME BIOTYPE` records, 60 bases a line: the header shape
/// `transcripts::parse_fasta` reads the gene from.
pub fn write_fasta(transcripts: &[Fetched], mut w: impl Write) -> std::io::Result<()> {
    for t in transcripts {
        writeln!(w, ">{}|{} {} {}", t.gene, t.id, t.name, t.biotype)?;
        for line in t.seq.chunks(60) {
            w.write_all(line)?;
            w.write_all(b"\n")?;
        }
    }
    w.flush()
}

/// Fetches and writes the FASTA to `out` (through a temporary file beside it, so that an
/// interrupted fetch never leaves a truncated FASTA behind).
pub fn fetch_to(cfg: &FetchConfig, out: &Path) -> Result<Vec<Fetched>, EnsemblError> {
    let fetched = fetch(cfg)?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| EnsemblError::Io { path, source }
    };
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = out.with_extension("fa.partial");
    let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    write_fasta(&fetched, std::io::BufWriter::new(file)).map_err(io(&tmp))?;
    std::fs::rename(&tmp, out).map_err(io(out))?;
    Ok(fetched)
}
