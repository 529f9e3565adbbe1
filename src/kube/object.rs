//! One object's identity: the reference kgf-up records in its inventory, as written in a manifest.

use std::fmt;

use kube::ResourceExt;
use kube::api::DynamicObject;
use kube::core::GroupVersionKind;
use serde::{Deserialize, Serialize};

/// A reference to one object, as kgf-up records it in the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl ObjectRef {
    /// A namespace, a CRD: kinds that live outside namespaces.
    fn cluster_scoped(api_version: &str, kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    pub fn namespace(name: &str) -> ObjectRef {
        ObjectRef::cluster_scoped("v1", "Namespace", name)
    }

    pub fn crd(name: &str) -> ObjectRef {
        ObjectRef::cluster_scoped("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    }

    pub(super) fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), self.api_version.clone()),
        };
        GroupVersionKind::gvk(&group, &version, &self.kind)
    }
}

pub(super) fn as_value<T: Serialize>(obj: &T) -> serde_json::Value {
    serde_json::to_value(obj).unwrap_or_default()
}

/// An object's reference as written, the namespace defaulted even for a cluster-scoped kind
/// (known before its kind is resolved; [`Kube::reference`] drops it where the kind has none).
pub fn written_ref(obj: &DynamicObject, default_namespace: &str) -> ObjectRef {
    let t = obj.types.as_ref().expect("parse_manifests checked types");
    ObjectRef {
        api_version: t.api_version.clone(),
        kind: t.kind.clone(),
        namespace: obj
            .metadata
            .namespace
            .clone()
            .or_else(|| Some(default_namespace.to_string())),
        name: obj.name_any(),
    }
}
