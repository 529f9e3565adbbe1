//! The profile's `object_store:` section: which S3 store Kubeflow Pipelines and the pipeline use.
//! Types only, checked while parsing (so a bad endpoint or bucket name is reported at its file,
//! line and column); no I/O here.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::rke2::SecretRef;

/// `object_store:`. Exactly one of `minio`, `bundled`, `s3`; without the section, kgf-up's own
/// MinIO when `components.minio` is enabled, otherwise Kubeflow Pipelines' bundled store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawObjectStore", into = "RawObjectStore")]
pub struct ObjectStoreSpec {
    pub store: Store,
    /// Namespaces that run pipelines, besides Kubeflow Pipelines' own: each gets the credentials
    /// Secret and the `kfp-launcher` ConfigMap.
    pub namespaces: Vec<String>,
}

/// Which store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// The MinIO kgf-up installs (`components.minio`), reached in the cluster.
    Minio(Buckets),
    /// Kubeflow Pipelines' bundled SeaweedFS, as upstream ships it (bucket `mlpipeline`).
    Bundled,
    /// Any S3 endpoint.
    S3(S3Store),
}

impl Store {
    pub fn name(&self) -> &'static str {
        match self {
            Store::Minio(_) => "minio",
            Store::Bundled => "bundled",
            Store::S3(_) => "s3",
        }
    }
}

/// The buckets the platform uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buckets {
    /// Kubeflow Pipelines' artifacts (the pipeline root `s3://<pipelines>/v2/artifacts`).
    #[serde(default = "Buckets::pipelines")]
    pub pipelines: BucketName,
    /// Transcripts and other inputs of the dataset step.
    #[serde(default = "Buckets::datasets")]
    pub datasets: BucketName,
    /// Models the deploy step serves (`s3://<models>/gene-fusion/<run>`).
    #[serde(default = "Buckets::models")]
    pub models: BucketName,
}

impl Buckets {
    fn pipelines() -> BucketName {
        BucketName("pipelines".into())
    }
    fn datasets() -> BucketName {
        BucketName("datasets".into())
    }
    fn models() -> BucketName {
        BucketName("models".into())
    }
    pub fn all(&self) -> [&BucketName; 3] {
        [&self.pipelines, &self.datasets, &self.models]
    }
}

impl Default for Buckets {
    fn default() -> Self {
        Buckets {
            pipelines: Buckets::pipelines(),
            datasets: Buckets::datasets(),
            models: Buckets::models(),
        }
    }
}

/// `object_store.s3`: an S3 endpoint kgf-up does not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Store {
    /// `https://host[:port]` or `http://host[:port]`; the scheme decides TLS.
    pub endpoint: Endpoint,
    #[serde(default = "S3Store::region")]
    pub region: String,
    #[serde(default)]
    pub buckets: Buckets,
    /// Path-style URLs (`endpoint/bucket/key`, MinIO and most non-AWS stores) rather than
    /// virtual-host ones (`bucket.endpoint/key`). Kubeflow's launcher needs this to match the
    /// store (pipelines#11280).
    #[serde(default = "yes")]
    pub path_style: bool,
    #[serde(default, skip_serializing_if = "Tls::is_default")]
    pub tls: Tls,
    pub credentials: Credentials,
}

impl S3Store {
    fn region() -> String {
        "us-east-1".into()
    }
}

fn yes() -> bool {
    true
}

/// TLS to an `https://` endpoint, for kgf-up's own requests (the bucket creation and `verify`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// PEM bundle of the CA that signed the endpoint's certificate, added to the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Tls {
    fn is_default(&self) -> bool {
        self == &Tls::default()
    }
}

/// The key pair, by reference, never inline: `{secret: {namespace, name, access_key, secret_key}}`
/// (a Secret in the cluster), or `{access_key: REF, secret_key: REF}` with each REF `{env: VAR}` or
/// `{file: PATH}` on this machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawCredentials", into = "RawCredentials")]
pub enum Credentials {
    /// A Secret already in the cluster; kgf-up copies its two keys into the namespaces that run
    /// pipelines.
    Secret(SecretKeys),
    /// Each key from this machine (an environment variable of kgf-up, or a file).
    Keys {
        access_key: SecretRef,
        secret_key: SecretRef,
    },
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<SecretKeys>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_key: Option<SecretRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret_key: Option<SecretRef>,
}

impl TryFrom<RawCredentials> for Credentials {
    type Error = String;
    fn try_from(raw: RawCredentials) -> Result<Self, String> {
        match raw {
            RawCredentials {
                secret: Some(s),
                access_key: None,
                secret_key: None,
            } => Ok(Credentials::Secret(s)),
            RawCredentials {
                secret: None,
                access_key: Some(access_key),
                secret_key: Some(secret_key),
            } => Ok(Credentials::Keys {
                access_key,
                secret_key,
            }),
            _ => Err("credentials: give either `secret: {namespace, name}` or both `access_key` and `secret_key` (each {env: VAR} or {file: PATH})".into()),
        }
    }
}

impl From<Credentials> for RawCredentials {
    fn from(c: Credentials) -> RawCredentials {
        match c {
            Credentials::Secret(s) => RawCredentials {
                secret: Some(s),
                ..Default::default()
            },
            Credentials::Keys {
                access_key,
                secret_key,
            } => RawCredentials {
                access_key: Some(access_key),
                secret_key: Some(secret_key),
                ..Default::default()
            },
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretKeys {
    pub namespace: String,
    pub name: String,
    #[serde(default = "SecretKeys::access_key")]
    pub access_key: String,
    #[serde(default = "SecretKeys::secret_key")]
    pub secret_key: String,
}

impl SecretKeys {
    fn access_key() -> String {
        "accesskey".into()
    }
    fn secret_key() -> String {
        "secretkey".into()
    }
}

/// An S3 endpoint URL: scheme, host and port, nothing else.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint {
    pub secure: bool,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, as Kubeflow Pipelines' launcher and Argo take it.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
    pub fn url(&self) -> String {
        let scheme = if self.secure { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }
}

impl TryFrom<String> for Endpoint {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "`{text}` is not an S3 endpoint ({why}); write it like https://s3.example.com or http://10.0.0.5:9000"
            )
        };
        let (secure, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("it needs http:// or https://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(bad("only a host and a port, no path, query or user"));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || rest.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| bad("the port is not a number"))?;
                (h.to_string(), port)
            }
            _ => (rest.to_string(), if secure { 443 } else { 80 }),
        };
        if host.is_empty()
            || !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
        {
            return Err(bad("the host has characters a host name cannot have"));
        }
        Ok(Endpoint { secure, host, port })
    }
}

impl From<Endpoint> for String {
    fn from(e: Endpoint) -> String {
        e.url()
    }
}

/// An S3 bucket name (3–63 lowercase letters, digits, `-` and `.`, starting and ending with a
/// letter or digit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BucketName(String);

impl BucketName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BucketName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for BucketName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
        let edge =
            |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        if (3..=63).contains(&name.len())
            && name.chars().all(ok_char)
            && edge(name.chars().next())
            && edge(name.chars().last())
            && !name.contains("..")
        {
            Ok(BucketName(name))
        } else {
            Err(format!(
                "`{name}` is not a valid bucket name: use 3 to 63 lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
            ))
        }
    }
}

impl From<BucketName> for String {
    fn from(b: BucketName) -> String {
        b.0
    }
}

/// The section as written: one key per store, checked into [`ObjectStoreSpec`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjectStore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    minio: Option<MinioStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bundled: Option<BundledStore>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    s3: Option<S3Store>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    namespaces: Vec<String>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MinioStore {
    #[serde(default)]
    buckets: Buckets,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BundledStore {}

impl TryFrom<RawObjectStore> for ObjectStoreSpec {
    type Error = String;
    fn try_from(raw: RawObjectStore) -> Result<Self, String> {
        let store = match (raw.minio, raw.bundled, raw.s3) {
            (Some(m), None, None) => Store::Minio(m.buckets),
            (None, Some(_), None) => Store::Bundled,
            (None, None, Some(s3)) => Store::S3(s3),
            (None, None, None) => {
                return Err(
                    "object_store names no store: give one of `minio: {}`, `bundled: {}` or `s3: {endpoint, credentials, ...}`".into(),
                );
            }
            _ => {
                return Err(
                    "object_store names more than one store: keep one of `minio`, `bundled`, `s3` (with --set, replace the section: --set 'object_store={bundled: {}}')".into(),
                );
            }
        };
        for ns in &raw.namespaces {
            if !is_namespace_name(ns) {
                return Err(format!(
                    "object_store.namespaces: `{ns}` is not a namespace name (lowercase letters, digits and '-')"
                ));
            }
        }
        Ok(ObjectStoreSpec {
            store,
            namespaces: raw.namespaces,
        })
    }
}

impl From<ObjectStoreSpec> for RawObjectStore {
    fn from(spec: ObjectStoreSpec) -> RawObjectStore {
        let mut raw = RawObjectStore {
            namespaces: spec.namespaces,
            ..Default::default()
        };
        match spec.store {
            Store::Minio(buckets) => raw.minio = Some(MinioStore { buckets }),
            Store::Bundled => raw.bundled = Some(BundledStore {}),
            Store::S3(s3) => raw.s3 = Some(s3),
        }
        raw
    }
}

/// A Kubernetes namespace name: an RFC 1123 label.
fn is_namespace_name(ns: &str) -> bool {
    let label = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    ns.len() <= 63
        && ns.chars().next().is_some_and(label)
        && ns.chars().last().is_some_and(label)
        && ns.chars().all(|c| label(c) || c == '-')
}
