//! `cluster.kind.networking`: the pod and service subnets and where the API server listens (kind's
//! `networking.podSubnet`, `serviceSubnet`, `apiServerAddress`, `apiServerPort`).
//!
//! Checked here against what kind, kubeadm and the controller manager would refuse later, mid-way
//! through `kind create cluster`: a CIDR that does not parse, a subnet too small for the nodes or
//! for the cluster DNS address, subnets that overlap. Pure: it must not look at the host.

use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};

use super::KeyError;

/// kube-controller-manager gives each node a /24 of the pod subnet (its IPv4 default, which
/// kind keeps), and kubeadm refuses a pod subnet more than 16 bits wider than that.
const NODE_MASK: u8 = 24;
const MAX_POD_PREFIX_GAP: u8 = 16;
/// kubeadm refuses a service subnet wider than 2^20 addresses, and puts the cluster DNS Service
/// at the subnet's 10th address, so a subnet needs at least 16 (a /28).
const WIDEST_SERVICE_PREFIX: u8 = 12;
const NARROWEST_SERVICE_PREFIX: u8 = 28;

/// `cluster.kind.networking`. Every field is optional: unset, kind picks (10.244.0.0/16 for
/// pods, 10.96.0.0/16 for services, 127.0.0.1 and a free port for the API server).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkingSpec {
    /// Pods' addresses (IPv4 CIDR); each node gets a /24 of it.
    pub pod_subnet: Option<String>,
    /// Services' cluster IPs (IPv4 CIDR, /12 to /28).
    pub service_subnet: Option<String>,
    /// The host address the API server is published on; kind's kubeconfig points at it. Anything
    /// but a loopback address exposes the API server to that network.
    pub api_server_address: Option<String>,
    /// The host port the API server is published on; unset, Docker picks a free one.
    pub api_server_port: Option<u16>,
}

/// An IPv4 network: its address and prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub prefix: u8,
}

impl Cidr {
    fn first(self) -> u32 {
        u32::from(self.addr)
    }

    fn last(self) -> u32 {
        self.first() | (u32::MAX.checked_shr(u32::from(self.prefix)).unwrap_or(0))
    }

    fn overlaps(self, other: Cidr) -> bool {
        self.first() <= other.last() && other.first() <= self.last()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses an IPv4 CIDR whose host bits are zero; the error says why in a sentence.
pub fn parse_cidr(text: &str) -> Result<Cidr, String> {
    let shape = || format!("`{text}` is not an IPv4 CIDR like 10.244.0.0/16");
    let (addr, prefix) = text.split_once('/').ok_or_else(shape)?;
    let ip: IpAddr = addr.parse().map_err(|_| shape())?;
    let IpAddr::V4(addr) = ip else {
        return Err(format!(
            "`{text}` is an IPv6 network: kgf-up's kind clusters are IPv4 only"
        ));
    };
    if prefix.is_empty() || prefix.len() > 2 || !prefix.chars().all(|c| c.is_ascii_digit()) {
        return Err(shape());
    }
    let prefix: u8 = prefix.parse().map_err(|_| shape())?;
    if prefix > 32 {
        return Err(format!("`{text}`: an IPv4 prefix is at most /32"));
    }
    let cidr = Cidr { addr, prefix };
    let network =
        Ipv4Addr::from(cidr.first() & !(u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0)));
    if network != addr {
        return Err(format!(
            "`{text}` has host bits set: the network is {network}/{prefix}"
        ));
    }
    Ok(cidr)
}

impl NetworkingSpec {
    /// Checks every key for a cluster of `nodes` nodes. Keys in errors are relative to
    /// `cluster.kind.networking`.
    pub fn check(&self, nodes: usize) -> Result<(), KeyError> {
        let pods = match &self.pod_subnet {
            Some(text) => Some(pod_subnet(text, nodes)?),
            None => None,
        };
        let services = match &self.service_subnet {
            Some(text) => Some(service_subnet(text)?),
            None => None,
        };
        if let (Some(p), Some(s)) = (pods, services)
            && p.overlaps(s)
        {
            return Err(KeyError::new(
                "service_subnet",
                format!("service_subnet {s} overlaps pod_subnet {p}"),
                "give pods and services separate ranges, e.g. 198.18.0.0/16 and 198.19.0.0/16",
            ));
        }
        if let Some(address) = &self.api_server_address
            && address.parse::<IpAddr>().is_err()
        {
            return Err(KeyError::new(
                "api_server_address",
                format!("api_server_address `{address}` is not an IP address"),
                "use an address of this host, such as 127.0.0.1 (kind publishes the API server there)",
            ));
        }
        if self.api_server_port == Some(0) {
            return Err(KeyError::new(
                "api_server_port",
                "api_server_port is 0".into(),
                "remove it and Docker picks a free port, or set one from 1 to 65535",
            ));
        }
        Ok(())
    }

    /// Whether any key is set (an empty section renders nothing, as before it existed).
    pub fn is_empty(&self) -> bool {
        self == &NetworkingSpec::default()
    }
}

fn pod_subnet(text: &str, nodes: usize) -> Result<Cidr, KeyError> {
    let at = "pod_subnet";
    let cidr = parse_cidr(text)
        .map_err(|e| KeyError::new(at, format!("pod_subnet {e}"), "for example 10.244.0.0/16"))?;
    if cidr.prefix > NODE_MASK {
        return Err(KeyError::new(
            at,
            format!("pod_subnet {cidr} is smaller than the /{NODE_MASK} each node gets from it"),
            "use a /16 (or at least a /24 per node)",
        ));
    }
    if NODE_MASK - cidr.prefix > MAX_POD_PREFIX_GAP {
        return Err(KeyError::new(
            at,
            format!(
                "pod_subnet {cidr} is wider than kubeadm accepts (at most /{} for /{NODE_MASK} per node)",
                NODE_MASK - MAX_POD_PREFIX_GAP
            ),
            "use a /16",
        ));
    }
    let room = 1usize << (NODE_MASK - cidr.prefix);
    if room < nodes {
        return Err(KeyError::new(
            at,
            format!(
                "pod_subnet {cidr} holds {room} node range(s) of /{NODE_MASK}, but the cluster has {nodes} nodes"
            ),
            "use a wider subnet, e.g. a /16",
        ));
    }
    Ok(cidr)
}

fn service_subnet(text: &str) -> Result<Cidr, KeyError> {
    let at = "service_subnet";
    let cidr = parse_cidr(text).map_err(|e| {
        KeyError::new(
            at,
            format!("service_subnet {e}"),
            "for example 10.96.0.0/16",
        )
    })?;
    if cidr.prefix < WIDEST_SERVICE_PREFIX {
        return Err(KeyError::new(
            at,
            format!(
                "service_subnet {cidr} is wider than kubeadm accepts (at most /{WIDEST_SERVICE_PREFIX})"
            ),
            "use a /16",
        ));
    }
    if cidr.prefix > NARROWEST_SERVICE_PREFIX {
        return Err(KeyError::new(
            at,
            format!(
                "service_subnet {cidr} is too small: kubeadm puts the cluster DNS at its 10th address, so it needs at least a /{NARROWEST_SERVICE_PREFIX}"
            ),
            "use a /16 (or at least a /24)",
        ));
    }
    Ok(cidr)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pods: Option<&str>, services: Option<&str>) -> NetworkingSpec {
        NetworkingSpec {
            pod_subnet: pods.map(str::to_string),
            service_subnet: services.map(str::to_string),
            ..NetworkingSpec::default()
        }
    }

    fn err(spec: &NetworkingSpec, nodes: usize) -> (String, String) {
        let e = spec.check(nodes).unwrap_err();
        (e.key, e.message)
    }

    #[test]
    fn the_bed_s_subnets_and_kind_s_defaults_pass() {
        spec(Some("198.18.0.0/16"), Some("198.19.0.0/16"))
            .check(3)
            .unwrap();
        spec(Some("10.244.0.0/16"), Some("10.96.0.0/16"))
            .check(33)
            .unwrap();
        NetworkingSpec::default().check(100).unwrap();
        assert!(NetworkingSpec::default().is_empty());
    }

    #[test]
    fn cidrs_are_parsed_strictly() {
        assert_eq!(
            parse_cidr("198.18.0.0/15").unwrap(),
            Cidr {
                addr: Ipv4Addr::new(198, 18, 0, 0),
                prefix: 15
            }
        );
        assert!(
            parse_cidr("10.244.1.0/16")
                .unwrap_err()
                .contains("host bits set: the network is 10.244.0.0/16")
        );
        assert!(parse_cidr("fd00::/56").unwrap_err().contains("IPv4 only"));
        assert!(
            parse_cidr("10.0.0.0/33")
                .unwrap_err()
                .contains("at most /32")
        );
        for bad in [
            "10.0.0.0",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/008",
            "x/8",
            "10.0.0.0/8/8",
        ] {
            assert!(parse_cidr(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_cidr("0.0.0.0/0").unwrap().last(), u32::MAX);
    }

    #[test]
    fn subnet_sizes_follow_kubeadm_and_the_node_count() {
        assert!(
            err(&spec(Some("10.0.0.0/25"), None), 1)
                .1
                .contains("smaller than the /24")
        );
        assert!(
            err(&spec(Some("10.0.0.0/7"), None), 1)
                .1
                .contains("wider than kubeadm accepts")
        );
        let (key, message) = err(&spec(Some("10.0.0.0/23"), None), 3);
        assert_eq!(key, "pod_subnet");
        assert!(
            message.contains("holds 2 node range(s) of /24, but the cluster has 3 nodes"),
            "{message}"
        );
        spec(Some("10.0.0.0/24"), None).check(1).unwrap();
        assert!(
            err(&spec(None, Some("10.96.0.0/11")), 1)
                .1
                .contains("at most /12")
        );
        assert!(
            err(&spec(None, Some("10.96.0.0/29")), 1)
                .1
                .contains("10th address")
        );
        spec(None, Some("10.96.0.0/28")).check(1).unwrap();
    }

    #[test]
    fn overlapping_subnets_and_bad_addresses_are_refused() {
        let (key, message) = err(&spec(Some("10.0.0.0/8"), Some("10.96.0.0/16")), 1);
        assert_eq!(key, "service_subnet");
        assert!(
            message.contains("overlaps pod_subnet 10.0.0.0/8"),
            "{message}"
        );
        let bad_address = NetworkingSpec {
            api_server_address: Some("localhost".into()),
            ..NetworkingSpec::default()
        };
        assert_eq!(err(&bad_address, 1).0, "api_server_address");
        let zero_port = NetworkingSpec {
            api_server_port: Some(0),
            ..NetworkingSpec::default()
        };
        assert_eq!(err(&zero_port, 1).0, "api_server_port");
    }
}
