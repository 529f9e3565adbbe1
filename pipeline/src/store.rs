//! The S3 client of kgf-step: `s3://bucket/prefix` URIs, and get, put, list, and whole-prefix
//! download/upload (a model directory) against any S3 endpoint — the MinIO kgf-up installs,
//! KFP's bundled store, or a cloud one. Requests are presigned with SigV4 by rusty-s3 and sent
//! by [`crate::http`]; the signature lives in the query, which errors never print.
//!
//! Configuration is the environment the AWS tools read, so that a pod gets it from the
//! Secret the pipeline's steps already mount: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`
//! (`AWS_SESSION_TOKEN`), `AWS_ENDPOINT_URL` (default `https://s3.<region>.amazonaws.com`),
//! `AWS_REGION` (default `us-east-1`), `AWS_CA_BUNDLE`, and `AWS_S3_ADDRESSING_STYLE`
//! (`path`, the default, which MinIO needs; or `virtual`).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use hyper::body::Bytes;
use rusty_s3::actions::ListObjectsV2;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::http::{Http, HttpError};

/// How long a presigned request stays valid; each is sent at once.
const SIGN_FOR: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0:?} is not an s3:// URI; write s3://BUCKET/PREFIX")]
    Uri(String),
    #[error(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in a pod, from the object store's Secret)"
    )]
    NoCredentials,
    #[error("AWS_ENDPOINT_URL={0:?} is not an http(s) URL: {1}")]
    Endpoint(String, String),
    #[error("AWS_S3_ADDRESSING_STYLE={0:?}: use `path` or `virtual`")]
    Style(String),
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{op} s3://{bucket}/{key}: the store answered {status}: {body}")]
    Status {
        op: &'static str,
        bucket: String,
        key: String,
        status: u16,
        body: String,
    },
    #[error("listing s3://{bucket}/{prefix}: the answer is not S3's ListObjectsV2 XML: {reason}")]
    List {
        bucket: String,
        prefix: String,
        reason: String,
    },
    #[error("s3://{bucket}/{prefix}: no objects under it")]
    Empty { bucket: String, prefix: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("object key {0:?} would leave the download directory")]
    UnsafeKey(String),
}

impl StoreError {
    /// The HTTP status and S3 error code (`NoSuchKey`, `NoSuchBucket`, `AccessDenied`, …) of a
    /// request the store answered with an error, so that callers can name the fix.
    pub fn refusal(&self) -> Option<(u16, Option<&str>)> {
        let StoreError::Status { status, body, .. } = self else {
            return None;
        };
        let code = body
            .split_once("<Code>")
            .and_then(|(_, rest)| rest.split_once("</Code>"))
            .map(|(code, _)| code.trim())
            .filter(|c| !c.is_empty());
        Some((*status, code))
    }
}

/// `s3://bucket/prefix` (the prefix without leading or trailing slashes; may be empty).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub prefix: String,
}

impl S3Uri {
    pub fn parse(s: &str) -> Result<Self, StoreError> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| StoreError::Uri(s.into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(StoreError::Uri(s.into()));
        }
        Ok(Self {
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
        })
    }

    /// This URI with `rel` appended to its prefix.
    pub fn join(&self, rel: &str) -> Self {
        let rel = rel.trim_matches('/');
        Self {
            bucket: self.bucket.clone(),
            prefix: if self.prefix.is_empty() {
                rel.into()
            } else {
                format!("{}/{rel}", self.prefix)
            },
        }
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// Where the store is and who we are to it.
#[derive(Clone)]
pub struct Config {
    pub endpoint: url::Url,
    pub region: String,
    pub style: UrlStyle,
    pub credentials: Credentials,
    pub ca: Option<PathBuf>,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The credentials stay out of every log line.
        f.debug_struct("Config")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Reads the AWS environment variables of the module docs.
    pub fn from_env() -> Result<Self, StoreError> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let credentials = Credentials::from_env().ok_or(StoreError::NoCredentials)?;
        let region = var("AWS_REGION")
            .or_else(|| var("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint =
            var("AWS_ENDPOINT_URL").unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let endpoint = url::Url::parse(&endpoint)
            .map_err(|e| StoreError::Endpoint(endpoint.clone(), e.to_string()))?;
        let style = match var("AWS_S3_ADDRESSING_STYLE").as_deref() {
            None | Some("path") => UrlStyle::Path,
            Some("virtual") => UrlStyle::VirtualHost,
            Some(other) => return Err(StoreError::Style(other.into())),
        };
        Ok(Self {
            endpoint,
            region,
            style,
            credentials,
            ca: var("AWS_CA_BUNDLE").map(PathBuf::from),
        })
    }
}

pub struct Client {
    cfg: Config,
    http: Http,
}

impl Client {
    pub fn new(cfg: Config) -> Result<Self, StoreError> {
        let http = Http::new(cfg.ca.as_deref(), Duration::from_secs(300))?;
        Ok(Self { cfg, http })
    }

    pub fn from_env() -> Result<Self, StoreError> {
        Self::new(Config::from_env()?)
    }

    fn bucket(&self, name: &str) -> Result<Bucket, StoreError> {
        Bucket::new(
            self.cfg.endpoint.clone(),
            self.cfg.style,
            name.to_string(),
            self.cfg.region.clone(),
        )
        .map_err(|e| StoreError::Endpoint(self.cfg.endpoint.to_string(), e.to_string()))
    }

    fn check(
        op: &'static str,
        bucket: &str,
        key: &str,
        r: &crate::http::Response,
    ) -> Result<(), StoreError> {
        if r.status.is_success() {
            return Ok(());
        }
        Err(StoreError::Status {
            op,
            bucket: bucket.into(),
            key: key.into(),
            status: r.status.as_u16(),
            body: r.text(),
        })
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, StoreError> {
        let b = self.bucket(bucket)?;
        let url = b
            .get_object(Some(&self.cfg.credentials), key)
            .sign(SIGN_FOR);
        let r = self
            .http
            .send(Method::GET, url.as_str(), &[], Bytes::new())
            .await?;
        Self::check("GET", bucket, key, &r)?;
        Ok(r.body)
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Bytes) -> Result<(), StoreError> {
        let b = self.bucket(bucket)?;
        let url = b
            .put_object(Some(&self.cfg.credentials), key)
            .sign(SIGN_FOR);
        let r = self.http.send(Method::PUT, url.as_str(), &[], body).await?;
        Self::check("PUT", bucket, key, &r)
    }

    /// Every key under `prefix/` (all pages).
    pub async fn list(&self, uri: &S3Uri) -> Result<Vec<String>, StoreError> {
        let b = self.bucket(&uri.bucket)?;
        let prefix = if uri.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", uri.prefix)
        };
        let (mut keys, mut token) = (Vec::new(), None::<String>);
        loop {
            let mut action = ListObjectsV2::new(&b, Some(&self.cfg.credentials));
            action.with_prefix(prefix.as_str());
            if let Some(t) = &token {
                action.with_continuation_token(t.clone());
            }
            let url = action.sign(SIGN_FOR);
            let r = self
                .http
                .send(Method::GET, url.as_str(), &[], Bytes::new())
                .await?;
            Self::check("LIST", &uri.bucket, &prefix, &r)?;
            let text = String::from_utf8_lossy(&r.body);
            let page = ListObjectsV2::parse_response(&text).map_err(|e| StoreError::List {
                bucket: uri.bucket.clone(),
                prefix: prefix.clone(),
                reason: e.to_string(),
            })?;
            keys.extend(page.contents.into_iter().map(|c| c.key));
            match page.next_continuation_token {
                Some(t) => token = Some(t),
                None => return Ok(keys),
            }
        }
    }

    /// Downloads every object under `uri` into `dir`, keeping the paths below the prefix;
    /// returns how many.
    pub async fn download_prefix(&self, uri: &S3Uri, dir: &Path) -> Result<usize, StoreError> {
        let keys = self.list(uri).await?;
        if keys.is_empty() {
            return Err(StoreError::Empty {
                bucket: uri.bucket.clone(),
                prefix: uri.prefix.clone(),
            });
        }
        let strip = if uri.prefix.is_empty() {
            0
        } else {
            uri.prefix.len() + 1
        };
        for key in &keys {
            let rel = &key[strip..];
            if rel.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(StoreError::UnsafeKey(key.clone()));
            }
            let path = dir.join(rel);
            let bytes = self.get(&uri.bucket, key).await?;
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| StoreError::Io { path, source }
            };
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(io(parent))?;
            }
            tokio::fs::write(&path, &bytes).await.map_err(io(&path))?;
        }
        Ok(keys.len())
    }

    /// Uploads every file under `dir` to `uri`, keeping relative paths; returns how many.
    pub async fn upload_dir(&self, dir: &Path, uri: &S3Uri) -> Result<usize, StoreError> {
        let mut files = Vec::new();
        walk(dir, dir, &mut files)?;
        for (rel, path) in &files {
            let body = tokio::fs::read(path)
                .await
                .map_err(|source| StoreError::Io {
                    path: path.clone(),
                    source,
                })?;
            self.put(&uri.bucket, &uri.join(rel).prefix, Bytes::from(body))
                .await?;
        }
        Ok(files.len())
    }
}

/// Files under `dir` as (path relative to `root` with `/`, full path), sorted.
fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) -> Result<(), StoreError> {
    let io = |source| StoreError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .collect::<Result<_, _>>()
        .map_err(io)?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else {
            let rel = path
                .strip_prefix(root)
                .expect("walked under root")
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/");
            out.push((rel, path));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_parse_and_join() {
        let u = S3Uri::parse("s3://models/gene-fusion/run-1/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("models", "gene-fusion/run-1")
        );
        assert_eq!(
            u.join("fc-model/config.json").prefix,
            "gene-fusion/run-1/fc-model/config.json"
        );
        assert_eq!(S3Uri::parse("s3://b").unwrap().join("k").prefix, "k");
        assert!(S3Uri::parse("http://b/k").is_err());
        assert!(S3Uri::parse("s3:///k").is_err());
        assert_eq!(u.to_string(), "s3://models/gene-fusion/run-1");
    }

    #[test]
    fn a_refusal_carries_the_status_and_the_s3_error_code() {
        let refused = |status: u16, body: &str| StoreError::Status {
            op: "GET",
            bucket: "b".into(),
            key: "k".into(),
            status,
            body: body.into(),
        };
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>";
        assert_eq!(refused(404, xml).refusal(), Some((404, Some("NoSuchKey"))));
        assert_eq!(refused(502, "bad gateway").refusal(), Some((502, None)));
        assert_eq!(StoreError::NoCredentials.refusal(), None);
    }
}
