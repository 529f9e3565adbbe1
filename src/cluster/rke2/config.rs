//! The files kgf-up writes on each host: `/etc/rancher/rke2/config.yaml`, `registries.yaml` and
//! the proxy environment `/etc/default/rke2-<role>`. Pure rendering; writing is the host step's.
//!
//! config.yaml keys are rke2's CLI flags. The join token is part of a joining host's config, so
//! every rendered config is a [`Secret`].

use std::collections::BTreeMap;

use serde::Serialize;

use super::spec::{HostSpec, MirrorSpec, ProxySpec, Rke2Spec, Role};
use crate::secret::Secret;

pub const CONFIG_PATH: &str = "/etc/rancher/rke2/config.yaml";
pub const REGISTRIES_PATH: &str = "/etc/rancher/rke2/registries.yaml";
pub const TOKEN_PATH: &str = "/var/lib/rancher/rke2/server/node-token";
pub const KUBECONFIG_PATH: &str = "/etc/rancher/rke2/rke2.yaml";
/// The port servers accept joining nodes on (rke2's supervisor).
pub const SUPERVISOR_PORT: u16 = 9345;
pub const API_PORT: u16 = 6443;
/// The label GPU hosts get, as kind's GPU workers do; the GPU operator's operands select on it.
pub const GPU_LABEL: (&str, &str) = ("nvidia.com/gpu.present", "true");

/// rke2's default pod and service networks: never sent through a proxy.
const CLUSTER_CIDRS: [&str; 2] = ["10.42.0.0/16", "10.43.0.0/16"];

#[derive(Serialize)]
struct ConfigYaml<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    server: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(
        rename = "write-kubeconfig-mode",
        skip_serializing_if = "Option::is_none"
    )]
    write_kubeconfig_mode: Option<&'a str>,
    #[serde(rename = "tls-san", skip_serializing_if = "Vec::is_empty")]
    tls_san: Vec<String>,
    #[serde(rename = "node-label", skip_serializing_if = "Vec::is_empty")]
    node_label: Vec<String>,
    #[serde(rename = "node-taint", skip_serializing_if = "Vec::is_empty")]
    node_taint: Vec<String>,
}

/// Where a joining host finds the cluster.
pub struct Join<'a> {
    pub server: &'a str,
    pub token: &'a Secret,
}

/// `config.yaml` for `host`. `join` is `None` only for the first server; `gpu` is whether the host
/// has GPUs (configured, or detected for `gpu: auto`).
pub fn render_config(
    spec: &Rke2Spec,
    host: &HostSpec,
    gpu: bool,
    join: Option<Join<'_>>,
) -> Secret {
    let server = join.as_ref().map(|j| j.server);
    Secret::new(config_text(
        spec,
        host,
        gpu,
        server.zip(join.as_ref().map(|j| j.token.expose())),
    ))
}

/// `config.yaml` as a plan shows it: the join token named, not given.
pub fn shown_config(spec: &Rke2Spec, host: &HostSpec, gpu: bool) -> String {
    let first = spec.first_server().map(|f| f.address.as_str());
    let join = first.filter(|f| *f != host.address);
    let token = join.map(|f| format!("<redacted: node-token of {f}>"));
    config_text(spec, host, gpu, join.zip(token.as_deref()))
}

fn config_text(spec: &Rke2Spec, host: &HostSpec, gpu: bool, join: Option<(&str, &str)>) -> String {
    let mut labels: Vec<String> = host
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if gpu && !host.labels.contains_key(GPU_LABEL.0) {
        labels.push(format!("{}={}", GPU_LABEL.0, GPU_LABEL.1));
    }
    let server_only = host.role == Role::Server;
    let mut tls_san = Vec::new();
    if server_only {
        // Every server answers at its own address and at the first server's (the kubeconfig's).
        for san in [
            Some(host.address.as_str()),
            spec.first_server().map(|f| f.address.as_str()),
        ]
        .into_iter()
        .flatten()
        .chain(spec.tls_san.iter().map(String::as_str))
        {
            if !tls_san.iter().any(|s: &String| s == san) {
                tls_san.push(san.to_string());
            }
        }
    }
    let doc = ConfigYaml {
        server: join.map(|(server, _)| format!("https://{}:{SUPERVISOR_PORT}", url_host(server))),
        token: join.map(|(_, token)| token),
        write_kubeconfig_mode: server_only.then_some("0600"),
        tls_san,
        node_label: labels,
        node_taint: host.taints.clone(),
    };
    let body = serde_saphyr::to_string(&doc).expect("config.yaml is plain data");
    format!("# Written by kgf-up; changes here are reverted on its next run.\n{body}")
}

/// An address as the host part of a URL (IPv6 in brackets).
pub fn url_host(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_string()
    }
}

#[derive(Serialize)]
struct RegistriesYaml<'a> {
    mirrors: BTreeMap<&'a str, Mirror<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    configs: BTreeMap<String, RegistryConfig<'a>>,
}

#[derive(Serialize)]
struct Mirror<'a> {
    endpoint: &'a [String],
}

#[derive(Serialize)]
struct RegistryConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<Auth<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tls: Option<Tls>,
}

#[derive(Clone, Serialize)]
struct Auth<'a> {
    username: &'a str,
    password: &'a str,
}

#[derive(Clone, Serialize)]
struct Tls {
    #[serde(skip_serializing_if = "Option::is_none")]
    ca_file: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_skip_verify: bool,
}

/// `registries.yaml` for the mirrors, with each mirror's password (resolved from its reference,
/// in the same order as `mirrors`). `None` when there are no mirrors.
pub fn render_registries(mirrors: &[MirrorSpec], passwords: &[Option<Secret>]) -> Option<Secret> {
    if mirrors.is_empty() {
        return None;
    }
    let mut doc = RegistriesYaml {
        mirrors: BTreeMap::new(),
        configs: BTreeMap::new(),
    };
    for (m, password) in mirrors.iter().zip(passwords) {
        doc.mirrors.insert(
            &m.registry,
            Mirror {
                endpoint: &m.endpoints,
            },
        );
        let tls = (m.ca_file.is_some() || m.insecure_skip_verify).then(|| Tls {
            ca_file: m.ca_file.as_ref().map(|p| p.display().to_string()),
            insecure_skip_verify: m.insecure_skip_verify,
        });
        let auth = m.auth.as_ref().zip(password.as_ref()).map(|(a, p)| Auth {
            username: &a.username,
            password: p.expose(),
        });
        if auth.is_none() && tls.is_none() {
            continue;
        }
        // containerd looks credentials up by the endpoint's host[:port].
        for endpoint in &m.endpoints {
            doc.configs.insert(
                endpoint_host(endpoint),
                RegistryConfig {
                    auth: auth.clone(),
                    tls: tls.clone(),
                },
            );
        }
    }
    let body = serde_saphyr::to_string(&doc).expect("registries.yaml is plain data");
    Some(Secret::new(format!("# Written by kgf-up.\n{body}")))
}

fn endpoint_host(endpoint: &str) -> String {
    let rest = endpoint.split_once("://").map_or(endpoint, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// `/etc/default/rke2-<role>`: the proxy for rke2 and its containerd. Proxy URLs may carry
/// credentials, hence a [`Secret`].
pub fn render_proxy(spec: &Rke2Spec, proxy: &ProxySpec) -> Secret {
    let mut no_proxy: Vec<String> = ["127.0.0.1", "localhost", ".svc", ".cluster.local"]
        .into_iter()
        .chain(CLUSTER_CIDRS)
        .map(String::from)
        .collect();
    no_proxy.extend(spec.hosts.iter().map(|h| h.address.clone()));
    no_proxy.extend(proxy.no_proxy.iter().cloned());
    no_proxy.dedup();
    let mut out = String::from("# Written by kgf-up.\n");
    if let Some(p) = &proxy.http {
        out.push_str(&format!("HTTP_PROXY={p}\n"));
    }
    if let Some(p) = &proxy.https {
        out.push_str(&format!("HTTPS_PROXY={p}\n"));
    }
    out.push_str(&format!("NO_PROXY={}\n", no_proxy.join(",")));
    Secret::new(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::rke2::spec::{AuthSpec, SecretRef};

    fn spec() -> Rke2Spec {
        serde_saphyr::from_str(
            "
tls_san: [api.example.com]
hosts:
  - {address: 198.18.0.2, role: server}
  - {address: 198.18.0.6, role: agent, labels: {pool: gpu}, taints: ['nvidia.com/gpu=true:NoSchedule']}
",
        )
        .unwrap()
    }

    fn yaml(s: &Secret) -> serde_json::Value {
        serde_saphyr::from_str(s.expose()).unwrap()
    }

    #[test]
    fn the_first_server_has_no_server_or_token_and_owns_its_sans() {
        let spec = spec();
        let c = yaml(&render_config(&spec, &spec.hosts[0], false, None));
        assert_eq!(
            c,
            serde_json::json!({
                "write-kubeconfig-mode": "0600",
                "tls-san": ["198.18.0.2", "api.example.com"],
            })
        );
    }

    #[test]
    fn a_joining_agent_gets_server_token_labels_and_taints() {
        let spec = spec();
        let token = Secret::new("K10feedbeef::server:0123456789abcdef");
        let join = Join {
            server: "198.18.0.2",
            token: &token,
        };
        let rendered = render_config(&spec, &spec.hosts[1], true, Some(join));
        let c = yaml(&rendered);
        assert_eq!(c["server"], "https://198.18.0.2:9345");
        assert_eq!(c["token"], "K10feedbeef::server:0123456789abcdef");
        assert_eq!(
            c["node-label"],
            serde_json::json!(["pool=gpu", "nvidia.com/gpu.present=true"])
        );
        assert_eq!(
            c["node-taint"],
            serde_json::json!(["nvidia.com/gpu=true:NoSchedule"])
        );
        assert!(c.get("tls-san").is_none() && c.get("write-kubeconfig-mode").is_none());
        assert_eq!(format!("{rendered}"), "***");
    }

    #[test]
    fn ipv6_servers_are_bracketed() {
        assert_eq!(url_host("fd00::1"), "[fd00::1]");
        assert_eq!(url_host("host.example"), "host.example");
    }

    #[test]
    fn registries_have_mirrors_and_credentials_by_endpoint_host() {
        let mirrors = vec![
            MirrorSpec {
                registry: "docker.io".into(),
                endpoints: vec!["https://mirror.example:5000/v2".into()],
                auth: Some(AuthSpec {
                    username: "puller".into(),
                    password: SecretRef::Env("UNUSED".into()),
                }),
                ca_file: None,
                insecure_skip_verify: false,
            },
            MirrorSpec {
                registry: "registry.internal".into(),
                endpoints: vec!["http://registry.internal:5000".into()],
                auth: None,
                ca_file: None,
                insecure_skip_verify: false,
            },
        ];
        let pw = Secret::new("registry-pw-xyz");
        let r = render_registries(&mirrors, &[Some(pw), None]).unwrap();
        assert_eq!(
            yaml(&r),
            serde_json::json!({
                "mirrors": {
                    "docker.io": {"endpoint": ["https://mirror.example:5000/v2"]},
                    "registry.internal": {"endpoint": ["http://registry.internal:5000"]},
                },
                "configs": {
                    "mirror.example:5000": {"auth": {"username": "puller", "password": "registry-pw-xyz"}},
                },
            })
        );
        assert!(render_registries(&[], &[]).is_none());
    }

    #[test]
    fn proxy_file_keeps_cluster_traffic_direct() {
        let spec = spec();
        let p = ProxySpec {
            http: Some("http://proxy:3128".into()),
            https: None,
            no_proxy: vec!["corp.example".into()],
        };
        let out = render_proxy(&spec, &p);
        let text = out.expose();
        assert!(text.contains("HTTP_PROXY=http://proxy:3128\n"));
        assert!(!text.contains("HTTPS_PROXY"));
        let no_proxy = text.lines().find(|l| l.starts_with("NO_PROXY=")).unwrap();
        for want in [
            "10.42.0.0/16",
            "10.43.0.0/16",
            ".svc",
            "198.18.0.6",
            "corp.example",
        ] {
            assert!(no_proxy.contains(want), "{want} missing from {no_proxy}");
        }
    }
}
