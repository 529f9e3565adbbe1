//! The host's cgroup version against the kubelet of the node image: kubelet 1.35 and later
//! refuse cgroup v1 unless their config says `failCgroupV1: false`, and kind's kubeadm template
//! does not say it, so a cgroup v1 host needs the profile's kubeadm patch. Reads only what
//! `docker info` and the profile already hold.

use super::parse::DockerInfo;
use super::{Check, Fix, Status, check as line};
use crate::profile::kind::KindSpec;

const NAME: &str = "cgroup version";

/// The kubeadm patch that lets kubelet run on cgroup v1, as a `--set` a user can paste.
pub const CGROUP_V1_SET: &str = r#"--set 'cluster.kind.kubeadm_config_patches=["kind: KubeletConfiguration\nfailCgroupV1: false"]'"#;

/// The first kubelet minor that refuses cgroup v1 by default.
const REFUSING_MINOR: u32 = 35;

pub fn check(kind: &KindSpec, docker: &DockerInfo) -> Check {
    let needed = "cgroup v2, or on cgroup v1 a kubelet told to accept it (failCgroupV1: false)";
    match docker.cgroup_version.as_deref() {
        Some("2") => line(NAME, Status::Ok, "cgroup v2", needed, None),
        Some("1") => v1(kind, needed),
        other => line(
            NAME,
            Status::Warn,
            format!(
                "docker info does not say (CgroupVersion {})",
                other.unwrap_or("absent")
            ),
            needed,
            None,
        ),
    }
}

fn v1(kind: &KindSpec, needed: &str) -> Check {
    if kind.kubelet_accepts_cgroup_v1() {
        return line(
            NAME,
            Status::Warn,
            "cgroup v1; the profile's kubeadm patch sets failCgroupV1: false",
            needed,
            Some(Fix::manual(
                "cgroup v1 is in maintenance in Kubernetes: boot the host with cgroup v2 (systemd.unified_cgroup_hierarchy=1) when you can",
            )),
        );
    }
    match node_minor(&kind.node_image) {
        Some(minor) if minor < REFUSING_MINOR => line(
            NAME,
            Status::Ok,
            format!("cgroup v1 (node image Kubernetes 1.{minor} accepts it)"),
            needed,
            None,
        ),
        minor => line(
            NAME,
            // An image whose tag does not say its version may or may not refuse it.
            if minor.is_some() {
                Status::Fail
            } else {
                Status::Warn
            },
            format!(
                "cgroup v1: kubelet {} refuses to start on it, and kind's kubeadm config does not allow it",
                minor.map_or(
                    "of the node image (version unknown) may".to_string(),
                    |m| format!("1.{m}")
                )
            ),
            needed,
            Some(Fix::manual(format!(
                "add the kubeadm patch: {CGROUP_V1_SET} (or in the profile, cluster.kind.kubeadm_config_patches: a KubeletConfiguration with failCgroupV1: false); better, boot the host with cgroup v2"
            ))),
        ),
    }
}

/// The Kubernetes minor of a node image tagged `...:v1.MINOR.PATCH[@digest]`.
fn node_minor(image: &str) -> Option<u32> {
    let image = image.split('@').next()?;
    let (_, tag) = image.rsplit_once(':')?;
    let mut parts = tag.strip_prefix("v1.")?.split('.');
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{apply_sets, parse};

    fn docker(version: &str) -> DockerInfo {
        DockerInfo {
            cgroup_version: Some(version.into()),
            server_version: Some("20.10.24".into()),
            ..DockerInfo::default()
        }
    }

    #[test]
    fn cgroup_v2_is_fine() {
        assert_eq!(check(&KindSpec::default(), &docker("2")).status, Status::Ok);
    }

    #[test]
    fn cgroup_v1_with_kubelet_1_36_fails_and_names_the_patch() {
        let c = check(&KindSpec::default(), &docker("1"));
        assert_eq!(c.status, Status::Fail);
        assert!(c.found.contains("kubelet 1.36 refuses"), "{}", c.found);
        assert!(c.fix.unwrap().shown.contains(CGROUP_V1_SET));
    }

    #[test]
    fn the_fix_s_set_loads_and_then_the_check_passes() {
        let base = parse("name: t\ncluster:\n  provider: kind\n", "p.yaml").unwrap();
        let set = CGROUP_V1_SET
            .strip_prefix("--set '")
            .and_then(|s| s.strip_suffix('\''))
            .unwrap();
        let profile = apply_sets(base, &[set.to_string()]).unwrap();
        let kind = &profile.cluster.kind;
        kind.validate().unwrap();
        assert_eq!(
            kind.kubeadm_config_patches,
            ["kind: KubeletConfiguration\nfailCgroupV1: false"]
        );
        let c = check(kind, &docker("1"));
        assert_eq!(c.status, Status::Warn, "{}", c.found);
    }

    #[test]
    fn older_node_images_accept_cgroup_v1_and_unknown_ones_are_a_warning() {
        let old = KindSpec {
            node_image: "kindest/node:v1.34.2@sha256:abc".into(),
            ..KindSpec::default()
        };
        assert_eq!(check(&old, &docker("1")).status, Status::Ok);
        let local = KindSpec {
            node_image: "kgf-bed/node:latest".into(),
            ..KindSpec::default()
        };
        assert_eq!(check(&local, &docker("1")).status, Status::Warn);
        assert_eq!(node_minor("kindest/node:v1.36.4"), Some(36));
        assert_eq!(node_minor("localhost:5001/node:v1.35.0@sha256:x"), Some(35));
        assert_eq!(node_minor("node"), None);
    }
}
