//! A small Kubernetes REST client for the deploy step: the in-cluster API server with the
//! pod's ServiceAccount token (or a server, token file and CA given by flags), GET and
//! server-side apply (`application/apply-patch+yaml`, field manager `kgf-step`, strict field
//! validation so a field the CRD's schema lacks is an error, not a silent drop).
//!
//! kgf-step needs only these two verbs on four kinds, so it carries this instead of kube-rs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Method;
use hyper::body::Bytes;
use serde_json::Value;

use crate::http::{Http, HttpError};

/// Where a pod finds its ServiceAccount (mounted by the kubelet).
pub const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
pub const FIELD_MANAGER: &str = "kgf-step";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error(
        "no API server: KUBERNETES_SERVICE_HOST is not set (not in a pod); pass --api-server, --token-file and --ca-file"
    )]
    NotInCluster,
    #[error("{path}: {source} (the pod's ServiceAccount token; pass --token-file outside a pod)")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{verb} {path}: {status} {reason}: {message}{fix}")]
    Api {
        verb: &'static str,
        path: String,
        status: u16,
        reason: String,
        message: String,
        fix: &'static str,
    },
    #[error("{verb} {path}: the answer is not JSON: {reason}")]
    Decode {
        verb: &'static str,
        path: String,
        reason: String,
    },
}

impl KubeError {
    pub fn status(&self) -> Option<u16> {
        match self {
            KubeError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub struct Kube {
    http: Http,
    base: String,
    token: String,
}

/// How to reach the API server; every field defaults to the pod's own.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub server: Option<String>,
    pub token_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
}

impl Kube {
    pub fn new(a: &Access) -> Result<Self, KubeError> {
        let server = match &a.server {
            Some(s) => s.trim_end_matches('/').to_string(),
            None => {
                let host = std::env::var("KUBERNETES_SERVICE_HOST")
                    .map_err(|_| KubeError::NotInCluster)?;
                let port =
                    std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host
                };
                format!("https://{host}:{port}")
            }
        };
        let token_file = a
            .token_file
            .clone()
            .unwrap_or_else(|| Path::new(SA_DIR).join("token"));
        let token = std::fs::read_to_string(&token_file)
            .map_err(|source| KubeError::Token {
                path: token_file.clone(),
                source,
            })?
            .trim()
            .to_string();
        let ca = a
            .ca_file
            .clone()
            .unwrap_or_else(|| Path::new(SA_DIR).join("ca.crt"));
        Ok(Self {
            http: Http::new(Some(&ca), Duration::from_secs(60))?,
            base: server,
            token,
        })
    }

    /// The namespace of the pod's ServiceAccount, when in a pod.
    pub fn own_namespace() -> Option<String> {
        std::fs::read_to_string(Path::new(SA_DIR).join("namespace"))
            .ok()
            .map(|s| s.trim().to_string())
    }

    async fn call(
        &self,
        verb: &'static str,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Value, KubeError> {
        let mut headers = vec![
            ("authorization", format!("Bearer {}", self.token)),
            ("accept", "application/json".to_string()),
        ];
        if let Some(ct) = content_type {
            headers.push(("content-type", ct.to_string()));
        }
        let url = format!("{}{path}", self.base);
        let r = self.http.send(method, &url, &headers, body).await?;
        let v: Value = serde_json::from_slice(&r.body).map_err(|e| KubeError::Decode {
            verb,
            path: path.into(),
            reason: format!("{e} ({} {})", r.status, r.text()),
        })?;
        if r.status.is_success() {
            return Ok(v);
        }
        let status = r.status.as_u16();
        Err(KubeError::Api {
            verb,
            path: path.split('?').next().unwrap_or(path).into(),
            status,
            reason: v["reason"].as_str().unwrap_or_default().into(),
            message: v["message"].as_str().unwrap_or_default().into(),
            fix: match status {
                401 => " (the token is not valid: is the pod's ServiceAccount token mounted?)",
                403 => {
                    " (the ServiceAccount lacks the right: kgf-up's RBAC for the deploy step, manifests/pipeline/deployer-rbac.yaml, grants it; run `kgf-up up`)"
                }
                404 => " (is the component that provides this kind installed?)",
                _ => "",
            },
        })
    }

    /// GETs an object; `None` when it does not exist.
    pub async fn get(&self, path: &str) -> Result<Option<Value>, KubeError> {
        match self
            .call("GET", Method::GET, path, None, Bytes::new())
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Server-side applies `obj` at `path` (the object's own URL), taking ownership of its
    /// fields from other managers (the deploy step is the one writer of these objects).
    pub async fn apply(&self, path: &str, obj: &Value) -> Result<Value, KubeError> {
        let q = format!("{path}?fieldManager={FIELD_MANAGER}&force=true&fieldValidation=Strict");
        self.call(
            "APPLY",
            Method::PATCH,
            &q,
            Some("application/apply-patch+yaml"),
            Bytes::from(obj.to_string()),
        )
        .await
    }
}
