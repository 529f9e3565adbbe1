//! `cluster.kind.kubeadm_config_patches` and `containerd_config_patches`: text kind merges into
//! the kubeadm config of every node and into each node's containerd config.
//!
//! kind reads them only while it creates the cluster, and ignores a kubeadm patch whose `kind`
//! matches none of its kubeadm documents without a word, so they are checked here: each must
//! parse (YAML, TOML), a kubeadm patch must name a kind (and apiVersion) kind's kubeadm config
//! has, and text and count are bounded. Pure: nothing here runs kind.

use std::collections::BTreeMap;

use super::KeyError;

/// The most patches of each sort, and the longest a patch may be: generous for a hand-written
/// patch, far below anything that would slow a run down.
pub const MAX_PATCHES: usize = 16;
pub const MAX_PATCH_BYTES: usize = 16 * 1024;

/// The documents of kind's kubeadm config (`pkg/cluster/internal/kubeadm/config.go` in kind
/// v0.33.0: one template per kubeadm API version) and the apiVersions each comes in. kind matches
/// a patch to a document by `kind`, and by `apiVersion` when the patch gives one.
const KUBEADM_KINDS: &[(&str, &[&str])] = &[
    ("ClusterConfiguration", KUBEADM_VERSIONS),
    ("InitConfiguration", KUBEADM_VERSIONS),
    ("JoinConfiguration", KUBEADM_VERSIONS),
    ("KubeletConfiguration", &["kubelet.config.k8s.io/v1beta1"]),
    (
        "KubeProxyConfiguration",
        &["kubeproxy.config.k8s.io/v1alpha1"],
    ),
];
const KUBEADM_VERSIONS: &[&str] = &[
    "kubeadm.k8s.io/v1beta2",
    "kubeadm.k8s.io/v1beta3",
    "kubeadm.k8s.io/v1beta4",
];

/// Checks `kubeadm_config_patches`; keys in errors are relative to `cluster.kind`.
pub fn check_kubeadm(patches: &[String]) -> Result<(), KeyError> {
    let what = "kubeadm_config_patches";
    count(what, patches)?;
    for (i, patch) in patches.iter().enumerate() {
        let at = format!("{what}.{i}");
        text(&at, patch)?;
        let documents = split_documents(patch);
        for (d, doc) in documents.iter().enumerate() {
            let name = if documents.len() > 1 {
                format!("{what}[{i}] document {}", d + 1)
            } else {
                format!("{what}[{i}]")
            };
            kubeadm_document(&at, &name, doc)?;
        }
    }
    Ok(())
}

/// Checks `containerd_config_patches`; keys in errors are relative to `cluster.kind`.
pub fn check_containerd(patches: &[String]) -> Result<(), KeyError> {
    let what = "containerd_config_patches";
    count(what, patches)?;
    for (i, patch) in patches.iter().enumerate() {
        let at = format!("{what}.{i}");
        text(&at, patch)?;
        let doc: toml_edit::DocumentMut = patch.parse().map_err(|e: toml_edit::TomlError| {
            let line = e
                .span()
                .map(|s| format!(" (line {})", patch[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            KeyError::new(
                &at,
                format!(
                    "{what}[{i}] is not valid TOML{line}: {}",
                    e.message().trim_end()
                ),
                "write TOML as in containerd's config.toml: a table such as [plugins.\"io.containerd.grpc.v1.cri\".containerd] and its keys on the lines below it",
            )
        })?;
        if doc.is_empty() {
            return Err(KeyError::new(
                &at,
                format!("{what}[{i}] sets nothing"),
                "remove it, or write the containerd settings it should merge",
            ));
        }
    }
    Ok(())
}

fn count(what: &str, patches: &[String]) -> Result<(), KeyError> {
    if patches.len() > MAX_PATCHES {
        return Err(KeyError::new(
            what,
            format!(
                "{what} lists {} patches; the limit is {MAX_PATCHES}",
                patches.len()
            ),
            "merge them: one patch may set many keys",
        ));
    }
    Ok(())
}

/// Bounded, non-empty, and only characters that every YAML and TOML reader takes as text (kind's
/// config carries the patch as a YAML string).
fn text(at: &str, patch: &str) -> Result<(), KeyError> {
    let name = at.replacen('.', "[", 1) + "]";
    if patch.trim().is_empty() {
        return Err(KeyError::new(
            at,
            format!("{name} is empty"),
            "remove it, or write the patch",
        ));
    }
    if patch.len() > MAX_PATCH_BYTES {
        return Err(KeyError::new(
            at,
            format!(
                "{name} is {} bytes; the limit is {} KiB",
                patch.len(),
                MAX_PATCH_BYTES / 1024
            ),
            "a patch sets a few keys: split out what is not kind's business",
        ));
    }
    if let Some(c) = patch.chars().find(|c| !is_text(*c)) {
        return Err(KeyError::new(
            at,
            format!("{name} contains the control character {c:?}"),
            "write the patch as plain text (a YAML block scalar `|` keeps its lines)",
        ));
    }
    Ok(())
}

/// Printable text, tabs and line feeds: what YAML allows in a document, less the carriage
/// return (a patch's lines end in \n), the byte-order mark, and the separators YAML 1.1 readers
/// (kind's) take for line breaks.
pub fn is_text(c: char) -> bool {
    c == '\n'
        || c == '\t'
        || !(c.is_control()
            || matches!(
                c,
                '\u{feff}' | '\u{fffe}' | '\u{ffff}' | '\u{2028}' | '\u{2029}'
            ))
}

/// Splits a YAML stream as kind does (`pkg/internal/patch/resource.go`): at every line that
/// starts with `---`, the rest of that line dropped. Empty documents are left out (kind matches
/// them to nothing).
pub fn split_documents(text: &str) -> Vec<&str> {
    let mut docs = Vec::new();
    let mut rest = text;
    loop {
        match rest.find("\n---") {
            Some(i) => {
                docs.push(&rest[..i]);
                let after = &rest[i + 4..];
                rest = after.find('\n').map(|j| &after[j + 1..]).unwrap_or("");
            }
            None => {
                docs.push(rest);
                break;
            }
        }
    }
    docs.retain(|d| {
        d.lines()
            .any(|l| !(l.trim().is_empty() || l.trim_start().starts_with('#') || l.trim() == "---"))
    });
    docs
}

/// Whether a patch sets `failCgroupV1: false` in the kubelet's config: what kubelet 1.35 and
/// later need to start on a cgroup v1 host.
pub fn kubelet_accepts_cgroup_v1(patches: &[String]) -> bool {
    patches.iter().flat_map(|p| split_documents(p)).any(|doc| {
        serde_saphyr::from_str::<serde_json::Value>(doc)
            .is_ok_and(|v| v["kind"] == "KubeletConfiguration" && v["failCgroupV1"] == false)
    })
}

fn kubeadm_document(at: &str, name: &str, doc: &str) -> Result<(), KeyError> {
    let value: serde_json::Value = serde_saphyr::from_str(doc).map_err(|e| {
        let (why, _) = crate::profile::errors::sentence(&e);
        let why = why.strip_prefix("not valid YAML: ").unwrap_or(&why);
        let line = match e.location() {
            Some(l) if !why.contains("line ") => format!(" (line {})", l.line()),
            _ => String::new(),
        };
        KeyError::new(
            at,
            format!("{name} is not valid YAML{line}: {why}"),
            "write a YAML mapping such as `kind: KubeletConfiguration` plus the keys to set",
        )
    })?;
    let serde_json::Value::Object(map) = &value else {
        return Err(KeyError::new(
            at,
            format!(
                "{name} is a {}, not a mapping",
                crate::profile::kind_of(&value)
            ),
            "write a YAML mapping such as `kind: KubeletConfiguration` plus the keys to set",
        ));
    };
    let kinds: BTreeMap<&str, &[&str]> = KUBEADM_KINDS.iter().copied().collect();
    let names = || {
        KUBEADM_KINDS
            .iter()
            .map(|(k, _)| *k)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let kind = match map.get("kind") {
        Some(serde_json::Value::String(kind)) => kind.as_str(),
        _ => {
            return Err(KeyError::new(
                at,
                format!(
                    "{name} has no `kind`: kind applies a kubeadm patch only to the documents of the kind it names, so this one would change nothing"
                ),
                format!("add `kind:` with one of {}", names()),
            ));
        }
    };
    let Some(versions) = kinds.get(kind) else {
        return Err(KeyError::new(
            at,
            format!(
                "{name} patches kind `{kind}`, which kind's kubeadm config does not have, so it would change nothing"
            ),
            format!("use one of {}", names()),
        ));
    };
    match map.get("apiVersion") {
        None => Ok(()),
        Some(serde_json::Value::String(v)) if versions.contains(&v.as_str()) => Ok(()),
        Some(other) => Err(KeyError::new(
            at,
            format!(
                "{name}: apiVersion {other} is not one kind's kubeadm config uses for {kind}, so the patch would change nothing"
            ),
            format!(
                "remove apiVersion (the patch then matches any version) or use {}",
                versions.join(" or ")
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeadm(patches: &[&str]) -> Result<(), KeyError> {
        check_kubeadm(&patches.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    fn containerd(patches: &[&str]) -> Result<(), KeyError> {
        check_containerd(&patches.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    const CGROUP_V1: &str = "kind: KubeletConfiguration\nfailCgroupV1: false\n";

    #[test]
    fn the_cgroup_v1_patch_and_kind_s_documented_patches_pass() {
        kubeadm(&[CGROUP_V1]).unwrap();
        kubeadm(&[
            "kind: ClusterConfiguration\napiVersion: kubeadm.k8s.io/v1beta4\napiServer:\n  extraArgs:\n  - name: enable-admission-plugins\n    value: NodeRestriction\n",
            "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: \"ingress-ready=true\"\n---\nkind: JoinConfiguration\n---\n",
        ])
        .unwrap();
        containerd(&[
            "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"localhost:5000\"]\n  endpoint = [\"http://kind-registry:5000\"]\n",
        ])
        .unwrap();
    }

    #[test]
    fn a_kubeadm_patch_kind_would_silently_ignore_is_refused() {
        let e = kubeadm(&["failCgroupV1: false"]).unwrap_err();
        assert_eq!(e.key, "kubeadm_config_patches.0");
        assert!(e.message.contains("has no `kind`"), "{}", e.message);
        let e = kubeadm(&[CGROUP_V1, "kind: KubeletConfig\nfoo: 1"]).unwrap_err();
        assert_eq!(e.key, "kubeadm_config_patches.1");
        assert!(
            e.message.contains("patches kind `KubeletConfig`"),
            "{}",
            e.message
        );
        assert!(e.fix.contains("KubeletConfiguration"), "{}", e.fix);
        let e = kubeadm(&["kind: ClusterConfiguration\napiVersion: kubeadm.k8s.io/v1beta5\n"])
            .unwrap_err();
        assert!(
            e.message.contains("apiVersion \"kubeadm.k8s.io/v1beta5\""),
            "{}",
            e.message
        );
        let e = kubeadm(&["kind: InitConfiguration\n---\nfoo: bar\n"]).unwrap_err();
        assert!(
            e.message
                .starts_with("kubeadm_config_patches[0] document 2 has no `kind`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn broken_text_is_refused_with_the_line() {
        let e = kubeadm(&["kind: KubeletConfiguration\nfoo: [1,\n"]).unwrap_err();
        assert!(
            e.message
                .starts_with("kubeadm_config_patches[0] is not valid YAML"),
            "{}",
            e.message
        );
        let e = kubeadm(&["- a\n- b\n"]).unwrap_err();
        assert!(
            e.message.contains("is a list, not a mapping"),
            "{}",
            e.message
        );
        let e = containerd(&["[plugins\nx = 1\n"]).unwrap_err();
        assert_eq!(e.key, "containerd_config_patches.0");
        assert!(
            e.message.contains("is not valid TOML (line 1)"),
            "{}",
            e.message
        );
        let e = containerd(&["# only a comment\n"]).unwrap_err();
        assert!(e.message.contains("sets nothing"), "{}", e.message);
        let e = containerd(&["  \n"]).unwrap_err();
        assert!(e.message.contains("[0] is empty"), "{}", e.message);
        let e = kubeadm(&["kind: KubeletConfiguration\r\nx: 1"]).unwrap_err();
        assert!(
            e.message.contains("control character '\\r'"),
            "{}",
            e.message
        );
    }

    #[test]
    fn counts_and_sizes_are_bounded() {
        let many = vec![CGROUP_V1; MAX_PATCHES + 1];
        let e = kubeadm(&many).unwrap_err();
        assert!(
            e.message.contains("lists 17 patches; the limit is 16"),
            "{}",
            e.message
        );
        kubeadm(&many[..MAX_PATCHES]).unwrap();
        let big = format!("{CGROUP_V1}# {}\n", "x".repeat(MAX_PATCH_BYTES));
        let e = kubeadm(&[&big]).unwrap_err();
        assert!(e.message.contains("the limit is 16 KiB"), "{}", e.message);
    }

    #[test]
    fn the_cgroup_v1_setting_is_found_in_any_document() {
        let p = |t: &str| vec![t.to_string()];
        assert!(kubelet_accepts_cgroup_v1(&p(CGROUP_V1)));
        assert!(kubelet_accepts_cgroup_v1(&p(&format!(
            "kind: InitConfiguration\n---\n{CGROUP_V1}"
        ))));
        assert!(!kubelet_accepts_cgroup_v1(&p(
            "kind: KubeletConfiguration\nfailCgroupV1: true"
        )));
        assert!(!kubelet_accepts_cgroup_v1(&p(
            "kind: ClusterConfiguration\nfailCgroupV1: false"
        )));
        assert!(!kubelet_accepts_cgroup_v1(&[]));
    }

    #[test]
    fn documents_split_as_kind_splits_them() {
        assert_eq!(split_documents("a: 1\n---\nb: 2"), ["a: 1", "b: 2"]);
        assert_eq!(
            split_documents("a: 1\n--- # x\nb: 2\n---\n"),
            ["a: 1", "b: 2"]
        );
        assert_eq!(split_documents("---\na: 1"), ["---\na: 1"]);
        assert_eq!(split_documents("a: '---'"), ["a: '---'"]);
    }
}
