//! helm's release records, read through the Kubernetes API instead of one `helm get` process per
//! release: helm 3 and 4 store each revision in a Secret `sh.helm.release.v1.NAME.vREVISION` of
//! the release's namespace (labels `owner=helm`, `name=NAME`, `version=REVISION`) whose
//! `release` key is base64 of the gzip of the release as JSON. Only what observe compares is
//! read: status, chart name and version, and the user-supplied values (`config`).
//!
//! Assumes helm's default storage driver (`HELM_DRIVER` unset or `secret`); kgf-up never sets
//! another.

use std::io::Read;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use serde::Deserialize;
use serde_json::Value;

use super::{HelmError, LatestRevision, ReleaseStatus};

/// The latest revision of a release as its record stores it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub latest: LatestRevision,
    /// The user-supplied values (`{}` when none).
    pub values: Value,
}

#[derive(Deserialize)]
struct Record {
    version: u32,
    info: Info,
    chart: Chart,
    #[serde(default)]
    config: Value,
}

#[derive(Deserialize)]
struct Info {
    status: String,
}

#[derive(Deserialize)]
struct Chart {
    metadata: ChartMetadata,
}

#[derive(Deserialize)]
struct ChartMetadata {
    name: String,
    version: String,
}

/// The latest revision of release `name` in `namespace`, or `None` when it has none.
pub async fn latest(
    client: kube::Client,
    name: &str,
    namespace: &str,
) -> Result<Option<Stored>, HelmError> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let failed = |message: String| HelmError::Record {
        release: format!("{namespace}/{name}"),
        message,
    };
    let list = api
        .list(&ListParams::default().labels(&format!("owner=helm,name={name}")))
        .await
        .map_err(|e| failed(format!("listing its records: {e}")))?;
    let newest = list
        .items
        .into_iter()
        .filter_map(|s| {
            let revision: u32 = s.metadata.labels.as_ref()?.get("version")?.parse().ok()?;
            Some((revision, s))
        })
        .max_by_key(|(revision, _)| *revision);
    let Some((_, secret)) = newest else {
        return Ok(None);
    };
    let data = secret
        .data
        .as_ref()
        .and_then(|d| d.get("release"))
        .ok_or_else(|| failed("its record has no `release` key".into()))?;
    decode(&data.0).map(Some).map_err(failed)
}

/// A record's `release` value (already un-base64'd once by the API) to what observe compares.
pub fn decode(stored: &[u8]) -> Result<Stored, String> {
    let compressed = base64::engine::general_purpose::STANDARD
        .decode(stored)
        .map_err(|e| format!("its record is not base64: {e}"))?;
    let mut json = Vec::new();
    // helm compresses every record it writes; older ones may be plain JSON.
    if compressed.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut json)
            .map_err(|e| format!("its record does not decompress: {e}"))?;
    } else {
        json = compressed;
    }
    let record: Record =
        serde_json::from_slice(&json).map_err(|e| format!("its record is not helm's JSON: {e}"))?;
    Ok(Stored {
        latest: LatestRevision {
            revision: record.version,
            status: ReleaseStatus::parse(&record.info.status),
            chart: record.chart.metadata.name,
            version: record.chart.metadata.version,
        },
        values: match record.config {
            Value::Null => Value::Object(Default::default()),
            v => v,
        },
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn encode(json: &str) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(json.as_bytes()).unwrap();
        base64::engine::general_purpose::STANDARD
            .encode(gz.finish().unwrap())
            .into_bytes()
    }

    #[test]
    fn a_record_gives_status_chart_and_values() {
        let json = r#"{"name":"m","version":3,"namespace":"ns","info":{"status":"deployed"},
            "chart":{"metadata":{"name":"minio","version":"5.4.0"}},"config":{"mode":"standalone"},
            "manifest":"---"}"#;
        let stored = decode(&encode(json)).unwrap();
        assert_eq!(stored.latest.revision, 3);
        assert_eq!(stored.latest.status, ReleaseStatus::Deployed);
        assert_eq!(
            (stored.latest.chart.as_str(), stored.latest.version.as_str()),
            ("minio", "5.4.0")
        );
        assert_eq!(stored.values, serde_json::json!({"mode": "standalone"}));
    }

    #[test]
    fn a_release_without_values_has_empty_ones_and_garbage_is_named() {
        let json = r#"{"version":1,"info":{"status":"pending-install"},"chart":{"metadata":{"name":"c","version":"1"}}}"#;
        let stored = decode(&encode(json)).unwrap();
        assert!(stored.latest.status.is_pending());
        assert_eq!(stored.values, serde_json::json!({}));
        assert!(decode(b"%%%").unwrap_err().contains("not base64"));
    }
}
