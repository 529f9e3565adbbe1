//! The inventory: a ConfigMap in kgf-up's namespace recording, per step, what kgf-up applied
//! (source, version, content hash, objects, time). `up` reads it to skip converged steps, `status`
//! shows it, and `down` removes exactly what it lists and nothing else.
//!
//! A record is written *before* a step changes the cluster (state `applying`, with the objects it
//! is about to create) and again when the step is ready (`done`), so an `up` killed half way leaves
//! a record that the next `up` finishes and `down` can clean up. This module only reads and writes
//! that ConfigMap.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use crate::gate::Change;
use crate::kube::{FIELD_MANAGER, Kube, KubeError, ObjectRef};

pub const CONFIGMAP: &str = "kgf-up-inventory";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordState {
    Applying,
    Done,
}

/// What one step applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub state: RecordState,
    pub source: String,
    pub version: String,
    /// sha256 of the rendered manifests or values.
    pub hash: String,
    /// Objects applied directly by kgf-up (server-side apply), in apply order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<ObjectRef>,
    /// The helm release, for steps that install one: `namespace/name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// Namespaces this step created (removed by `down` once empty of what kgf-up made).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_namespaces: Vec<String>,
    /// RFC 3339 time of the last change.
    pub time: String,
}

/// The inventory of one cluster, as read at the start of a run.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub records: BTreeMap<String, Record>,
}

/// ConfigMap keys allow `[-._a-zA-Z0-9]`; step ids use `/`.
fn key(id: &impl fmt::Display) -> String {
    id.to_string().replace('/', ".")
}

impl Inventory {
    /// Reads the inventory; an absent namespace or ConfigMap is an empty inventory.
    pub async fn read(kube: &Kube, namespace: &str) -> Result<Inventory, KubeError> {
        let api: Api<ConfigMap> = Api::namespaced(kube.client(), namespace);
        let cm = api
            .get_opt(CONFIGMAP)
            .await
            .map_err(|source| KubeError::Api {
                action: "reading",
                object: format!("ConfigMap {namespace}/{CONFIGMAP}"),
                source,
            })?;
        let mut records = BTreeMap::new();
        for (k, v) in cm.and_then(|c| c.data).unwrap_or_default() {
            // A record this version cannot read is treated as absent: the step is re-applied.
            if let Ok(record) = serde_json::from_str::<Record>(&v) {
                records.insert(k, record);
            }
        }
        Ok(Inventory { records })
    }

    pub fn get(&self, id: &impl fmt::Display) -> Option<&Record> {
        self.records.get(&key(id))
    }
}

/// Writes one step's record (server-side apply of just that key, so concurrent steps never
/// overwrite each other). Creates kgf-up's namespace on first use.
pub async fn write(
    kube: &Kube,
    namespace: &str,
    id: &impl fmt::Display,
    record: &Record,
) -> Result<(), KubeError> {
    ensure_namespace(kube, namespace).await?;
    let api: Api<ConfigMap> = Api::namespaced(kube.client(), namespace);
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": CONFIGMAP,
            "labels": {"app.kubernetes.io/managed-by": "kgf-up"}
        },
        "data": { key(id): serde_json::to_string(record).expect("a record serializes") }
    });
    // Each step is its own field manager for its key, so removing one key never touches others.
    let manager = format!("{FIELD_MANAGER}.{}", key(id));
    let params = PatchParams::apply(&manager).force();
    kube.gate()
        .change(
            Change::bookkeeping(format!(
                "record {id} ({:?}) in kgf-up's inventory",
                record.state
            )),
            api.patch(CONFIGMAP, &params, &Patch::Apply(&body)),
        )
        .await
        .map_err(|source| KubeError::Api {
            action: "recording",
            object: format!("inventory entry {id}"),
            source,
        })?;
    Ok(())
}

/// Removes one step's record (after `down` removed what it lists).
pub async fn remove(kube: &Kube, namespace: &str, id: &impl fmt::Display) -> Result<(), KubeError> {
    let api: Api<ConfigMap> = Api::namespaced(kube.client(), namespace);
    let patch = serde_json::json!({"data": {key(id): null}});
    let change = Change::bookkeeping(format!("remove {id} from kgf-up's inventory"));
    match kube
        .gate()
        .change(
            change,
            api.patch(CONFIGMAP, &PatchParams::default(), &Patch::Merge(&patch)),
        )
        .await
    {
        Ok(_) => Ok(()),
        // Absent ConfigMap: nothing to remove.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => Err(KubeError::Api {
            action: "removing",
            object: format!("inventory entry {id}"),
            source,
        }),
    }
}

pub(crate) async fn ensure_namespace(kube: &Kube, namespace: &str) -> Result<(), KubeError> {
    let api: Api<Namespace> = Api::all(kube.client());
    let present = api
        .get_opt(namespace)
        .await
        .map_err(|source| KubeError::Api {
            action: "reading",
            object: format!("Namespace {namespace}"),
            source,
        })?;
    if present.is_some() {
        return Ok(());
    }
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": namespace, "labels": {"app.kubernetes.io/managed-by": "kgf-up"}}
    });
    let params = PatchParams::apply(FIELD_MANAGER);
    kube.gate()
        .change(
            Change::bookkeeping(format!("create kgf-up's namespace {namespace}")),
            api.patch(namespace, &params, &Patch::Apply(&body)),
        )
        .await
        .map_err(|source| KubeError::Api {
            action: "creating",
            object: format!("Namespace {namespace}"),
            source,
        })?;
    Ok(())
}

/// Now, as RFC 3339 (UTC, seconds).
pub fn now() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
