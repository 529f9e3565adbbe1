//! The kind config kgf-up records in the cluster, and the comparison with the profile's.
//!
//! kind cannot change an existing cluster, so (like nvkind's `default/nvkind-cluster-config` and
//! ctlptl's `kube-public/ctlptl-cluster-spec`) the rendered config is kept in a ConfigMap of the
//! cluster itself and compared on every run. Pure: reading and writing it is the cluster step's.

use serde_json::{Value, json};

use super::KindError;

pub const NAMESPACE: &str = "kube-public";
pub const NAME: &str = "kgf-up-kind-config";
pub const KEY: &str = "config.yaml";

/// The ConfigMap that records `config` (a rendered kind config).
pub fn manifest(config: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/managed-by": "kgf-up"},
        },
        "data": {KEY: config},
    })
}

/// The recorded config in a ConfigMap as `kubectl get -o json` prints it.
pub fn recorded(configmap: &Value) -> Option<&str> {
    configmap["data"][KEY].as_str()
}

/// What differs between the recorded and the wanted config, one line per difference, as
/// `path: recorded → wanted`. Empty when they mean the same (comments and layout do not count).
pub fn diff(recorded: &str, wanted: &str) -> Result<Vec<String>, KindError> {
    let parse = |what: &str, text: &str| {
        serde_saphyr::from_str::<Value>(text).map_err(|e| KindError::Parse {
            what: what.to_string(),
            detail: e.to_string(),
        })
    };
    let old = parse("the kind config recorded in the cluster", recorded)?;
    let new = parse("the rendered kind config", wanted)?;
    let mut out = Vec::new();
    walk("", &old, &new, &mut out);
    Ok(out)
}

fn walk(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let sub = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(
                    &sub,
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            if a.len() != b.len() {
                out.push(format!(
                    "{path}: {} entries recorded, {} wanted",
                    a.len(),
                    b.len()
                ));
            }
            for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
                walk(&format!("{path}[{i}]"), x, y, out);
            }
            let longer = if a.len() > b.len() { a } else { b };
            for (i, extra) in longer.iter().enumerate().skip(a.len().min(b.len())) {
                let (was, now) = if a.len() > b.len() {
                    (extra, &Value::Null)
                } else {
                    (&Value::Null, extra)
                };
                out.push(format!("{path}[{i}]: {} → {}", show(was), show(now)));
            }
        }
        _ if old != new => out.push(format!("{path}: {} → {}", show(old), show(new))),
        _ => {}
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "(absent)".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::kind::config::render;
    use crate::cluster::kind::spec::{GpuLayout, KindSpec};

    #[test]
    fn the_same_config_has_no_differences_even_reformatted() {
        let text = render(&KindSpec::default(), 2).unwrap();
        assert!(diff(&text, &text).unwrap().is_empty());
        let without_comment: String = text.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert!(diff(&without_comment, &text).unwrap().is_empty());
    }

    #[test]
    fn a_changed_layout_is_named_field_by_field() {
        let old = render(&KindSpec::default(), 2).unwrap();
        let mut spec = KindSpec::default();
        spec.gpus.layout = GpuLayout::WorkerPerGpu;
        let new = render(&spec, 2).unwrap();
        let lines = diff(&old, &new).unwrap();
        assert_eq!(
            lines,
            vec![
                "nodes: 2 entries recorded, 3 wanted".to_string(),
                "nodes[1].extraMounts[0].containerPath: \"/var/run/nvidia-container-devices/all\" → \"/var/run/nvidia-container-devices/0\"".to_string(),
                format!(
                    "nodes[2]: (absent) → {}",
                    serde_json::json!({
                        "role": "worker",
                        "image": crate::cluster::kind::spec::DEFAULT_NODE_IMAGE,
                        "labels": {"nvidia.com/gpu.present": "true"},
                        "extraMounts": [{"hostPath": "/dev/null", "containerPath": "/var/run/nvidia-container-devices/1"}],
                    })
                ),
            ]
        );
    }

    #[test]
    fn changed_subnets_and_patches_are_drift() {
        let old = render(&KindSpec::default(), 0).unwrap();
        let mut spec = KindSpec::default();
        spec.networking.pod_subnet = Some("198.18.0.0/16".into());
        spec.kubeadm_config_patches =
            vec!["kind: KubeletConfiguration\nfailCgroupV1: false".into()];
        let new = render(&spec, 0).unwrap();
        assert_eq!(
            diff(&old, &new).unwrap(),
            [
                "kubeadmConfigPatches: (absent) → [\"kind: KubeletConfiguration\\nfailCgroupV1: false\"]",
                "networking: (absent) → {\"podSubnet\":\"198.18.0.0/16\"}",
            ]
        );
        let mut other = spec.clone();
        other.networking.pod_subnet = Some("198.20.0.0/16".into());
        assert_eq!(
            diff(&new, &render(&other, 0).unwrap()).unwrap(),
            ["networking.podSubnet: \"198.18.0.0/16\" → \"198.20.0.0/16\""]
        );
    }

    #[test]
    fn the_manifest_round_trips_through_recorded() {
        let m = manifest("kind: Cluster\n");
        assert_eq!(recorded(&m), Some("kind: Cluster\n"));
        assert_eq!(m["metadata"]["namespace"], "kube-public");
        assert_eq!(recorded(&json!({"data": {}})), None);
    }
}
