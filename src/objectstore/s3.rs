//! A small S3 client: requests signed with SigV4 by `rusty-s3` (presigned URLs, so the keys never
//! travel in a header or a log line), sent over hyper directly to the endpoint, or through the
//! Kubernetes API server's service proxy to a store inside the cluster.
//!
//! Only what kgf-up needs: bucket existence and creation, and writing, reading, listing and
//! deleting objects for `verify`. It must not decide which store or credentials to use.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

use crate::objectstore::spec::Endpoint;
use crate::secret::Secret;

/// How long a signature stays valid: long enough for one request on a slow link.
const SIGNED_FOR: Duration = Duration::from_secs(300);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("cannot reach the object store at {endpoint}: {message}")]
    Unreachable { endpoint: String, message: String },
    #[error("{action} answered HTTP {status}{}", code_text(.code, .message))]
    Status {
        action: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("the object store client: {0}")]
    Config(String),
}

fn code_text(code: &str, message: &str) -> String {
    match (code.is_empty(), message.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(" {code}"),
        (false, false) => format!(" {code}: {message}"),
    }
}

impl S3Error {
    /// The S3 error code (`NoSuchBucket`, `AccessDenied`, `SignatureDoesNotMatch`, ...).
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Status { code, .. } if !code.is_empty() => Some(code),
            _ => None,
        }
    }
}

/// Where requests go.
enum Transport {
    /// Straight to the endpoint (an S3 store this machine can reach).
    Direct(HttpClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>),
    /// Through `/api/v1/namespaces/NS/services/NAME:PORT/proxy`: the API server forwards the path
    /// after the prefix and keeps the request's Host header, so requests are signed for the API
    /// server's host and the bare S3 path.
    Proxy {
        client: kube::Client,
        prefix: String,
    },
}

pub struct S3 {
    transport: Transport,
    /// What signatures are made for: the endpoint, or the API server for the proxy.
    signed_base: url::Url,
    style: UrlStyle,
    region: String,
    credentials: Credentials,
    /// For messages: the endpoint, or the Service.
    shown: String,
}

/// One answer: status and body.
struct Answer {
    status: u16,
    body: Bytes,
}

impl S3 {
    /// A client for an endpoint this machine reaches; `ca_file` adds a CA to the system roots.
    /// A direct client of a profile's `object_store.s3` with its keys.
    pub fn for_store(
        store: &crate::objectstore::S3Store,
        keys: &crate::objectstore::Keys,
    ) -> Result<S3, S3Error> {
        S3::direct(
            &store.endpoint,
            &store.region,
            store.path_style,
            &keys.access,
            &keys.secret,
            store.tls.ca_file.as_deref(),
        )
    }

    pub fn direct(
        endpoint: &Endpoint,
        region: &str,
        path_style: bool,
        access_key: &Secret,
        secret_key: &Secret,
        ca_file: Option<&Path>,
    ) -> Result<S3, S3Error> {
        let tls = tls_config(ca_file)?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let client = HttpClient::builder(TokioExecutor::new()).build(connector);
        Ok(S3 {
            transport: Transport::Direct(client),
            signed_base: parse_url(&endpoint.url())?,
            style: if path_style {
                UrlStyle::Path
            } else {
                UrlStyle::VirtualHost
            },
            region: region.to_string(),
            credentials: Credentials::new(access_key.expose(), secret_key.expose()),
            shown: endpoint.url(),
        })
    }

    /// A client for a store behind a Service, through the API server's service proxy (path
    /// style: a proxied request has one host).
    pub fn proxied(
        kube: &crate::kube::Kube,
        namespace: &str,
        service: &str,
        port: u16,
        region: &str,
        access_key: &Secret,
        secret_key: &Secret,
    ) -> Result<S3, S3Error> {
        let api = parse_url(kube.url())?;
        let host = api
            .host_str()
            .ok_or_else(|| S3Error::Config(format!("the API server URL {api} has no host")))?;
        let signed_base = parse_url(&match api.port() {
            Some(p) => format!("{}://{host}:{p}", api.scheme()),
            None => format!("{}://{host}", api.scheme()),
        })?;
        Ok(S3 {
            transport: Transport::Proxy {
                client: kube.proxy_client(),
                prefix: format!("/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"),
            },
            signed_base,
            style: UrlStyle::Path,
            region: region.to_string(),
            credentials: Credentials::new(access_key.expose(), secret_key.expose()),
            shown: format!("Service {namespace}/{service}:{port} (through the API server)"),
        })
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    fn bucket(&self, name: &str) -> Result<Bucket, S3Error> {
        Bucket::new(
            self.signed_base.clone(),
            self.style,
            name.to_string(),
            self.region.clone(),
        )
        .map_err(|e| S3Error::Config(format!("bucket {name}: {e}")))
    }

    /// Whether the bucket exists (and these credentials may see it).
    pub async fn bucket_exists(&self, name: &str) -> Result<bool, S3Error> {
        let bucket = self.bucket(name)?;
        let url = bucket.head_bucket(Some(&self.credentials)).sign(SIGNED_FOR);
        let answer = self.send(http::Method::HEAD, url, Bytes::new()).await?;
        match answer.status {
            200 => Ok(true),
            404 => Ok(false),
            status => Err(status_error(
                format!("HEAD bucket {name}"),
                status,
                &answer.body,
            )),
        }
    }

    /// Creates the bucket; one that exists and is ours already is fine.
    pub async fn create_bucket(&self, name: &str) -> Result<(), S3Error> {
        let bucket = self.bucket(name)?;
        let action = bucket.create_bucket(&self.credentials);
        let body = action.body();
        let url = action.sign(SIGNED_FOR);
        let answer = self.send(http::Method::PUT, url, Bytes::from(body)).await?;
        match answer.status {
            200 => Ok(()),
            status => {
                let e = status_error(format!("CreateBucket {name}"), status, &answer.body);
                if e.code() == Some("BucketAlreadyOwnedByYou") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    pub async fn put(&self, bucket: &str, key: &str, body: Vec<u8>) -> Result<(), S3Error> {
        let b = self.bucket(bucket)?;
        let url = b.put_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let answer = self.send(http::Method::PUT, url, Bytes::from(body)).await?;
        match answer.status {
            200 => Ok(()),
            status => Err(status_error(
                format!("PUT s3://{bucket}/{key}"),
                status,
                &answer.body,
            )),
        }
    }

    pub async fn get(&self, bucket: &str, key: &str) -> Result<Vec<u8>, S3Error> {
        let b = self.bucket(bucket)?;
        let url = b.get_object(Some(&self.credentials), key).sign(SIGNED_FOR);
        let answer = self.send(http::Method::GET, url, Bytes::new()).await?;
        match answer.status {
            200 => Ok(answer.body.to_vec()),
            status => Err(status_error(
                format!("GET s3://{bucket}/{key}"),
                status,
                &answer.body,
            )),
        }
    }

    pub async fn delete(&self, bucket: &str, key: &str) -> Result<(), S3Error> {
        let b = self.bucket(bucket)?;
        let url = b
            .delete_object(Some(&self.credentials), key)
            .sign(SIGNED_FOR);
        let answer = self.send(http::Method::DELETE, url, Bytes::new()).await?;
        match answer.status {
            200 | 204 => Ok(()),
            status => Err(status_error(
                format!("DELETE s3://{bucket}/{key}"),
                status,
                &answer.body,
            )),
        }
    }

    /// Up to 1000 keys under `prefix` (one page: enough to show that artifacts are there).
    pub async fn list(&self, bucket: &str, prefix: &str) -> Result<Vec<String>, S3Error> {
        let b = self.bucket(bucket)?;
        let mut action = b.list_objects_v2(Some(&self.credentials));
        action.with_prefix(prefix);
        let url = action.sign(SIGNED_FOR);
        let answer = self.send(http::Method::GET, url, Bytes::new()).await?;
        if answer.status != 200 {
            return Err(status_error(
                format!("ListObjectsV2 s3://{bucket}/{prefix}"),
                answer.status,
                &answer.body,
            ));
        }
        let text = String::from_utf8_lossy(&answer.body);
        let parsed = rusty_s3::actions::ListObjectsV2::parse_response(&text)
            .map_err(|e| S3Error::Config(format!("reading the ListObjectsV2 answer: {e}")))?;
        Ok(parsed.contents.into_iter().map(|c| c.key).collect())
    }

    async fn send(
        &self,
        method: http::Method,
        url: url::Url,
        body: Bytes,
    ) -> Result<Answer, S3Error> {
        let unreachable = |message: String| S3Error::Unreachable {
            endpoint: self.shown.clone(),
            message,
        };
        let fut = async {
            match &self.transport {
                Transport::Direct(client) => {
                    let request = http::Request::builder()
                        .method(method)
                        .uri(url.as_str())
                        .body(Full::new(body))
                        .map_err(|e| S3Error::Config(e.to_string()))?;
                    let response = client
                        .request(request)
                        .await
                        .map_err(|e| unreachable(crate::fix::chain(&e)))?;
                    let status = response.status().as_u16();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| unreachable(e.to_string()))?
                        .to_bytes();
                    Ok(Answer { status, body })
                }
                Transport::Proxy { client, prefix } => {
                    let path = match url.query() {
                        Some(q) => format!("{prefix}{}?{q}", url.path()),
                        None => format!("{prefix}{}", url.path()),
                    };
                    let request = http::Request::builder()
                        .method(method)
                        .uri(path)
                        .body(body.to_vec())
                        .map_err(|e| S3Error::Config(e.to_string()))?;
                    let response = client
                        .send(request.map(kube::client::Body::from))
                        .await
                        .map_err(|e| unreachable(e.to_string()))?;
                    let status = response.status().as_u16();
                    let body = response
                        .into_body()
                        .collect()
                        .await
                        .map_err(|e| unreachable(e.to_string()))?
                        .to_bytes();
                    Ok(Answer { status, body })
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, fut)
            .await
            .map_err(|_| unreachable(format!("no answer in {}s", REQUEST_TIMEOUT.as_secs())))?
    }
}

fn parse_url(text: &str) -> Result<url::Url, S3Error> {
    url::Url::parse(text).map_err(|e| S3Error::Config(format!("`{text}` is not a URL: {e}")))
}

/// The system's roots, plus `ca_file`'s certificates.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, S3Error> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        // A system certificate rustls cannot use is skipped, as every TLS client does.
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| S3Error::Config(format!("reading the CA file {}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| {
                S3Error::Config(format!("reading the CA file {}: {e}", path.display()))
            })?;
            roots.add(cert).map_err(|e| {
                S3Error::Config(format!(
                    "a certificate in {} is not usable: {e}",
                    path.display()
                ))
            })?;
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| S3Error::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// An S3 error answer (`<Error><Code>…</Code><Message>…</Message></Error>`) as an [`S3Error`].
fn status_error(action: String, status: u16, body: &[u8]) -> S3Error {
    let text = String::from_utf8_lossy(body);
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        text.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&close))
            .map(|(v, _)| v.to_string())
            .unwrap_or_default()
    };
    S3Error::Status {
        action,
        status,
        code: tag("Code"),
        message: tag("Message"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_s3_error_answer_gives_its_code_and_message() {
        let e = status_error(
            "PUT s3://b/k".into(),
            403,
            b"<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied.</Message></Error>",
        );
        assert_eq!(e.code(), Some("AccessDenied"));
        assert_eq!(
            e.to_string(),
            "PUT s3://b/k answered HTTP 403 AccessDenied: Access Denied."
        );
        let bare = status_error("HEAD bucket b".into(), 403, b"");
        assert_eq!(bare.code(), None);
        assert_eq!(bare.to_string(), "HEAD bucket b answered HTTP 403");
    }
}
