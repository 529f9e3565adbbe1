//! The one outbound HTTP client of kgf-step (the S3 store and the Kubernetes API): hyper over
//! rustls, HTTP/1.1, the system's roots plus an optional CA bundle (a cluster's `ca.crt`, a
//! private S3 endpoint's CA). Whole bodies in, whole bodies out: every call here is small or
//! a model file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{HeaderMap, Method, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{path}: not a PEM CA bundle: {reason}")]
    Ca { path: String, reason: String },
    #[error("setting up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{method} {url}: {reason}")]
    Send {
        method: Method,
        url: String,
        reason: String,
    },
    #[error("{method} {url}: no answer within {secs}s")]
    Timeout {
        method: Method,
        url: String,
        secs: u64,
    },
}

pub struct Response {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// The body as text, for error messages (cut to a readable length).
    pub fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        s.chars().take(600).collect()
    }
}

#[derive(Clone)]
pub struct Http {
    client: HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    timeout: Duration,
}

impl Http {
    /// A client trusting the system's roots and, when given, the certificates of `ca`.
    pub fn new(ca: Option<&Path>, timeout: Duration) -> Result<Self, HttpError> {
        let mut roots = rustls::RootCertStore::empty();
        // Missing or unreadable system roots only matter for endpoints signed by them.
        for cert in rustls_native_certs_or_empty() {
            let _ = roots.add(cert);
        }
        if let Some(ca) = ca {
            let path = ca.display().to_string();
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| HttpError::Ca {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(HttpError::Ca {
                    path,
                    reason: "no certificate in it".into(),
                });
            }
            for c in certs {
                roots.add(c)?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: HyperClient::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// Sends one request. `url` is logged in errors: never put a secret in it unredacted
    /// (see [`redact`]).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
    ) -> Result<Response, HttpError> {
        let shown = redact(url);
        let err = |reason: String| HttpError::Send {
            method: method.clone(),
            url: shown.clone(),
            reason,
        };
        let mut req = hyper::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let req = req.body(Full::new(body)).map_err(|e| err(e.to_string()))?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| err(error_chain(&e)))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| err(e.to_string()))?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| HttpError::Timeout {
                method,
                url: shown.clone(),
                secs: self.timeout.as_secs(),
            })?
    }
}

fn rustls_native_certs_or_empty() -> Vec<CertificateDer<'static>> {
    rustls_native_certs::load_native_certs().certs
}

/// The message of an error and its sources, joined (hyper's own message is only "client error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// A URL with its query removed: presigned S3 URLs carry credentials and signatures there.
pub fn redact(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?…"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redact_drops_the_query_that_holds_the_signature() {
        assert_eq!(
            super::redact("http://h:9000/b/k?X-Amz-Credential=AK&X-Amz-Signature=s"),
            "http://h:9000/b/k?…"
        );
        assert_eq!(super::redact("https://h/x"), "https://h/x");
    }
}
