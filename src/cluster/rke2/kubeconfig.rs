//! Turning the first server's `/etc/rancher/rke2/rke2.yaml` into kgf-up's kubeconfig.
//!
//! The file is parsed and rewritten structurally: only the current context's cluster, user and
//! context are kept, renamed to the profile's cluster name, and only the host of the cluster's
//! `server` URL changes (to the first server's address). Everything else, `tls-server-name`
//! and certificate data included, stays as rke2 wrote it. [`merge`] puts the result into a user's
//! kubeconfig without touching their other entries. Pure; fetching and writing are the kubeconfig
//! step's.

use serde_json::{Map, Value, json};

use super::config::url_host;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("the server's kubeconfig is not valid YAML: {0}")]
    Yaml(String),
    #[error("the server's kubeconfig has no {0}")]
    Missing(String),
    #[error("the server's kubeconfig has a server URL kgf-up does not understand: {0}")]
    Url(String),
}

/// Rewrites `rke2_yaml` for use from this machine: server host `address`, names `name`.
pub fn rewrite(rke2_yaml: &str, address: &str, name: &str) -> Result<String, KubeconfigError> {
    let doc: Value =
        serde_saphyr::from_str(rke2_yaml).map_err(|e| KubeconfigError::Yaml(e.to_string()))?;
    let current = doc
        .get("current-context")
        .and_then(Value::as_str)
        .ok_or_else(|| KubeconfigError::Missing("current-context".into()))?;
    let context = named(&doc, "contexts", current, "context")?;
    let cluster_name = context
        .get("cluster")
        .and_then(Value::as_str)
        .ok_or_else(|| KubeconfigError::Missing(format!("cluster in context {current}")))?;
    let user_name = context
        .get("user")
        .and_then(Value::as_str)
        .ok_or_else(|| KubeconfigError::Missing(format!("user in context {current}")))?;
    let mut cluster = named(&doc, "clusters", cluster_name, "cluster")?.clone();
    let user = named(&doc, "users", user_name, "user")?.clone();

    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .ok_or_else(|| KubeconfigError::Missing(format!("server in cluster {cluster_name}")))?;
    let server = replace_host(server, address)?;
    cluster["server"] = Value::String(server);

    let mut context = context.clone();
    context["cluster"] = json!(name);
    context["user"] = json!(name);
    let out = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": context}],
        "current-context": name,
        "preferences": doc.get("preferences").cloned().unwrap_or_else(|| Value::Object(Map::new())),
    });
    serde_saphyr::to_string(&out).map_err(|e| KubeconfigError::Yaml(e.to_string()))
}

/// Merges `ours` (a kubeconfig made by [`rewrite`]) into `theirs` (a user's kubeconfig, empty
/// when it does not exist yet): entries named like ours are replaced, every other entry is kept,
/// and the current context becomes ours.
pub fn merge(theirs: &str, ours: &str) -> Result<String, KubeconfigError> {
    let ours: Value =
        serde_saphyr::from_str(ours).map_err(|e| KubeconfigError::Yaml(e.to_string()))?;
    let mut doc: Value = if theirs.trim().is_empty() {
        json!({"apiVersion": "v1", "kind": "Config", "preferences": {}})
    } else {
        serde_saphyr::from_str(theirs).map_err(|e| KubeconfigError::Yaml(e.to_string()))?
    };
    for list in ["clusters", "users", "contexts"] {
        let mine = ours[list].as_array().cloned().unwrap_or_default();
        let entries = doc
            .as_object_mut()
            .ok_or_else(|| KubeconfigError::Missing("a mapping at the top".into()))?
            .entry(list)
            .or_insert_with(|| Value::Array(Vec::new()));
        if entries.is_null() {
            *entries = Value::Array(Vec::new());
        }
        let entries = entries
            .as_array_mut()
            .ok_or_else(|| KubeconfigError::Missing(format!("a list of {list}")))?;
        for entry in mine {
            match entries
                .iter_mut()
                .find(|e| e.get("name") == entry.get("name"))
            {
                Some(existing) => *existing = entry,
                None => entries.push(entry),
            }
        }
    }
    doc["current-context"] = ours["current-context"].clone();
    serde_saphyr::to_string(&doc).map_err(|e| KubeconfigError::Yaml(e.to_string()))
}

/// Whether `theirs` already holds `ours` as [`merge`] would leave it.
pub fn is_merged(theirs: &str, ours: &str) -> bool {
    let parse = |s: &str| serde_saphyr::from_str::<Value>(s).ok();
    match (
        parse(theirs),
        merge(theirs, ours).ok().as_deref().and_then(parse),
    ) {
        (Some(now), Some(merged)) => now == merged,
        _ => false,
    }
}

/// The `inner` object of the entry named `name` in the list `list` (`clusters`, `users`, ...).
fn named<'a>(
    doc: &'a Value,
    list: &str,
    name: &str,
    inner: &str,
) -> Result<&'a Value, KubeconfigError> {
    doc.get(list)
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .find(|i| i.get("name").and_then(Value::as_str) == Some(name))
        })
        .and_then(|i| i.get(inner))
        .ok_or_else(|| KubeconfigError::Missing(format!("{list} entry named {name:?}")))
}

/// `scheme://host[:port][/path]` with `host` replaced; port and path are kept.
fn replace_host(url: &str, address: &str) -> Result<String, KubeconfigError> {
    let bad = || KubeconfigError::Url(url.to_string());
    let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let port = if let Some(v6) = authority.strip_prefix('[') {
        let (_, after) = v6.split_once(']').ok_or_else(bad)?;
        after
    } else {
        authority.rfind(':').map_or("", |i| &authority[i..])
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(bad());
    }
    Ok(format!("{scheme}://{}{port}{path}", url_host(address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rke2.yaml's shape, with "default" also in places that are not names.
    const RKE2_YAML: &str = r#"
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: ZGVmYXVsdC1jYS1kYXRh
    server: https://127.0.0.1:6443
    tls-server-name: default.kubernetes.svc
  name: default
- cluster:
    server: https://other:6443
  name: default-other
contexts:
- context:
    cluster: default
    user: default
    namespace: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: ZGVmYXVsdC1jZXJ0
    client-key-data: ZGVmYXVsdC1rZXk=
- name: default-other
  user:
    token: not-ours
"#;

    #[test]
    fn only_names_and_the_server_host_change() {
        let out = rewrite(RKE2_YAML, "198.18.0.2", "gpu-lab").unwrap();
        let v: Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gpu-lab", "cluster": {
                    "certificate-authority-data": "ZGVmYXVsdC1jYS1kYXRh",
                    "server": "https://198.18.0.2:6443",
                    "tls-server-name": "default.kubernetes.svc",
                }}],
                "users": [{"name": "gpu-lab", "user": {
                    "client-certificate-data": "ZGVmYXVsdC1jZXJ0",
                    "client-key-data": "ZGVmYXVsdC1rZXk=",
                }}],
                "contexts": [{"name": "gpu-lab", "context": {
                    "cluster": "gpu-lab", "user": "gpu-lab", "namespace": "default",
                }}],
                "current-context": "gpu-lab",
                "preferences": {},
            })
        );
        assert!(
            !out.contains("not-ours"),
            "other users are not carried over"
        );
    }

    #[test]
    fn merging_replaces_only_our_entries_and_selects_our_context() {
        let ours = rewrite(RKE2_YAML, "198.18.0.2", "gpu-lab").unwrap();
        let theirs = r#"
apiVersion: v1
kind: Config
clusters:
- {name: gpu-lab, cluster: {server: "https://old:6443"}}
- {name: work, cluster: {server: "https://work:6443"}}
users:
- {name: work, user: {token: work-token}}
contexts:
- {name: work, context: {cluster: work, user: work}}
current-context: work
"#;
        let merged = merge(theirs, &ours).unwrap();
        let v: Value = serde_saphyr::from_str(&merged).unwrap();
        let names = |list: &str| -> Vec<&str> {
            v[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["name"].as_str().unwrap())
                .collect()
        };
        assert_eq!(names("clusters"), ["gpu-lab", "work"]);
        assert_eq!(names("users"), ["work", "gpu-lab"]);
        assert_eq!(names("contexts"), ["work", "gpu-lab"]);
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://198.18.0.2:6443"
        );
        assert_eq!(v["users"][0]["user"]["token"], "work-token");
        assert_eq!(v["current-context"], "gpu-lab");
        assert!(is_merged(&merged, &ours));
        assert!(!is_merged(theirs, &ours));
        let fresh = merge("", &ours).unwrap();
        assert!(is_merged(&fresh, &ours));
    }

    #[test]
    fn server_urls_keep_port_and_path_and_bracket_ipv6() {
        assert_eq!(
            replace_host("https://127.0.0.1:6443", "h.example").unwrap(),
            "https://h.example:6443"
        );
        assert_eq!(
            replace_host("https://[::1]:6443/k8s", "fd00::2").unwrap(),
            "https://[fd00::2]:6443/k8s"
        );
        assert_eq!(
            replace_host("https://localhost", "10.1.1.1").unwrap(),
            "https://10.1.1.1"
        );
        assert!(replace_host("127.0.0.1:6443", "x").is_err());
    }

    #[test]
    fn a_kubeconfig_without_its_current_context_is_an_error() {
        let broken = RKE2_YAML.replace("current-context: default", "current-context: gone");
        let err = rewrite(&broken, "x", "kgf").unwrap_err();
        assert!(
            err.to_string().contains("contexts entry named \"gone\""),
            "{err}"
        );
    }
}
