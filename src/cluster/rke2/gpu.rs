//! GPU operator values for rke2 nodes, chosen from what the hosts' facts showed: rke2's containerd
//! major version and whether the NVIDIA driver is already installed on every GPU host.
//!
//! The gpu-operator component gets [`operator_values`] through [`super::Rke2Plan::gpu_operator_values`];
//! this module does not install anything.

use serde_json::{Value, json};

/// rke2's containerd socket (the operator's default points at a stock containerd's).
pub const CONTAINERD_SOCKET: &str = "/run/k3s/containerd/containerd.sock";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GpuError {
    #[error(
        "rke2's containerd is {0}.x; kgf-up configures the GPU operator only for containerd 2 \
         (rke2 releases of 2025 and later): upgrade rke2 (cluster.rke2.version)"
    )]
    OldContainerd(u32),
    #[error("no GPU host reported rke2's containerd version; is rke2 installed and running there?")]
    Unknown,
}

/// What the GPU hosts look like, from their facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpuHosts {
    /// containerd major version on the GPU hosts (they run the same rke2).
    pub containerd_major: Option<u32>,
    /// Every GPU host has the NVIDIA kernel driver loaded.
    pub driver_on_all: bool,
}

/// The operator's values for rke2 with containerd 2: only the toolkit's socket is set. Pointing
/// `CONTAINERD_CONFIG` at rke2's `config.toml.tmpl` or rendered `config.toml` breaks rke2 after a
/// reboot, so it is never set. The driver container is used only where hosts lack a driver; where
/// they all have one, the NVIDIADriver CRD path is turned off too (it ignores `driver.enabled`).
pub fn operator_values(hosts: &GpuHosts) -> Result<Value, GpuError> {
    let driver = if hosts.driver_on_all {
        json!({"enabled": false, "nvidiaDriverCRD": {"enabled": false}})
    } else {
        json!({"enabled": true})
    };
    match hosts.containerd_major {
        None => Err(GpuError::Unknown),
        Some(major) if major < 2 => Err(GpuError::OldContainerd(major)),
        Some(_) => Ok(json!({
            "driver": driver,
            "toolkit": {
                "enabled": true,
                "env": [{"name": "CONTAINERD_SOCKET", "value": CONTAINERD_SOCKET}],
            },
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_2_gets_only_the_socket() {
        let v = operator_values(&GpuHosts {
            containerd_major: Some(2),
            driver_on_all: true,
        })
        .unwrap();
        assert_eq!(v["driver"]["enabled"], false);
        assert_eq!(v["driver"]["nvidiaDriverCRD"]["enabled"], false);
        assert_eq!(
            v["toolkit"]["env"],
            json!([{"name": "CONTAINERD_SOCKET", "value": "/run/k3s/containerd/containerd.sock"}])
        );
        assert!(!v.to_string().contains("CONTAINERD_CONFIG"));
    }

    #[test]
    fn hosts_without_a_driver_get_the_driver_container_and_old_containerd_is_refused() {
        let v = operator_values(&GpuHosts {
            containerd_major: Some(2),
            driver_on_all: false,
        })
        .unwrap();
        assert_eq!(v["driver"]["enabled"], true);
        assert!(v["driver"].get("nvidiaDriverCRD").is_none());
        let old = GpuHosts {
            containerd_major: Some(1),
            driver_on_all: true,
        };
        assert_eq!(operator_values(&old), Err(GpuError::OldContainerd(1)));
        let unknown = GpuHosts {
            containerd_major: None,
            driver_on_all: true,
        };
        assert_eq!(operator_values(&unknown), Err(GpuError::Unknown));
    }
}
