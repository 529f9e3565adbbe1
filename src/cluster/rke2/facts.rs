//! What is on a host before kgf-up changes it (k0sctl's "gather facts" phase): OS, architecture,
//! hostname, sudo, an existing rke2 (version, role, running), hashes of the files kgf-up owns,
//! the NVIDIA driver, rke2's containerd, the clock, and whether another run holds the host's lock.
//!
//! One read-only shell script per host, answering `key=value` lines; parsing is pure.

use std::collections::BTreeMap;

use super::config::{CONFIG_PATH, REGISTRIES_PATH, TOKEN_PATH};
use super::spec::Role;

/// The directory that marks a host as being changed by a kgf-up run; `/run` is emptied on boot,
/// so a crashed run's lock does not outlive the machine's uptime.
pub const LOCK_DIR: &str = "/run/lock/kgf-up-rke2";

/// The read-only script. `sudo -n` never prompts: a user without password-less sudo shows up as
/// `sudo=no`, and the root-only files then read as absent. The root-only part runs under one
/// `sudo` (each costs a PAM round on the host).
pub fn script(role: Role) -> String {
    let unit = role.unit();
    format!(
        r#"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin
echo "os=$(. /etc/os-release 2>/dev/null; echo "${{ID:-unknown}} ${{VERSION_ID:-}}")"
echo "arch=$(uname -m)"
echo "hostname=$(hostname)"
echo "machine_id=$(cat /etc/machine-id 2>/dev/null)"
if sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi
echo "rke2_version=$(rke2 --version 2>/dev/null | sed -n '1s/^rke2 version \([^ ]*\).*/\1/p')"
for u in rke2-server rke2-agent; do
  echo "$u=$(systemctl is-enabled $u 2>/dev/null)/$(systemctl is-active $u 2>/dev/null)"
done
echo "nvidia_driver=$(cat /sys/module/nvidia/version 2>/dev/null || nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -n1)"
echo "containerd=$(/var/lib/rancher/rke2/bin/containerd --version 2>/dev/null | sed -n 's/.* v\{{0,1\}}\([0-9][0-9.]*\).*/\1/p')"
sudo -n sh 2>/dev/null <<'ROOT'
sum() {{ sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }}
echo "config_sha256=$(sum {CONFIG_PATH})"
echo "registries_sha256=$(sum {REGISTRIES_PATH})"
echo "proxy_sha256=$(sum /etc/default/{unit})"
echo "config_mode=$(stat -c %a {CONFIG_PATH} 2>/dev/null)"
if test -s {TOKEN_PATH}; then echo token=yes; else echo token=no; fi
echo "lock=$(cat {LOCK_DIR}/owner 2>/dev/null)"
ROOT
echo "time=$(date +%s)"
"#
    )
}

/// What a service looks like: `systemctl is-enabled`/`is-active`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Service {
    pub enabled: bool,
    pub active: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    pub os: String,
    pub arch: String,
    pub hostname: String,
    pub machine_id: String,
    pub sudo: bool,
    /// `rke2 --version`, e.g. `v1.36.3+rke2r1`; `None` when rke2 is not installed.
    pub rke2_version: Option<String>,
    pub server: Service,
    pub agent: Service,
    pub config_sha256: Option<String>,
    pub registries_sha256: Option<String>,
    pub proxy_sha256: Option<String>,
    pub config_mode: Option<String>,
    pub token: bool,
    pub nvidia_driver: Option<String>,
    /// rke2's containerd version, once rke2 is installed.
    pub containerd: Option<String>,
    /// The lock's owner line, when some run holds the host.
    pub lock: Option<String>,
    /// The host's clock minus this machine's, in seconds (network delay removed as far as it can).
    pub clock_skew_s: i64,
}

impl Facts {
    /// Parses the script's output; `local_mid` is this machine's clock (Unix seconds) halfway
    /// through the call.
    pub fn parse(out: &str, local_mid: i64) -> Facts {
        let kv: BTreeMap<&str, &str> = out
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim(), v.trim()))
            .collect();
        let get = |k: &str| {
            kv.get(k)
                .copied()
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        let service = |k: &str| {
            let (enabled, active) = kv
                .get(k)
                .and_then(|v| v.split_once('/'))
                .unwrap_or(("", ""));
            Service {
                enabled: enabled == "enabled",
                active: active == "active",
            }
        };
        Facts {
            os: get("os").unwrap_or_default(),
            arch: get("arch").unwrap_or_default(),
            hostname: get("hostname").unwrap_or_default(),
            machine_id: get("machine_id").unwrap_or_default(),
            sudo: kv.get("sudo") == Some(&"yes"),
            rke2_version: get("rke2_version"),
            server: service("rke2-server"),
            agent: service("rke2-agent"),
            config_sha256: get("config_sha256"),
            registries_sha256: get("registries_sha256"),
            proxy_sha256: get("proxy_sha256"),
            config_mode: get("config_mode"),
            token: kv.get("token") == Some(&"yes"),
            nvidia_driver: get("nvidia_driver"),
            containerd: get("containerd"),
            lock: get("lock"),
            clock_skew_s: get("time")
                .and_then(|t| t.parse::<i64>().ok())
                .map_or(0, |t| t - local_mid),
        }
    }

    /// The role rke2 is installed for on this host, if any.
    pub fn installed_role(&self) -> Option<Role> {
        if self.server.enabled || self.server.active {
            Some(Role::Server)
        } else if self.agent.enabled || self.agent.active {
            Some(Role::Agent)
        } else {
            None
        }
    }

    pub fn service(&self, role: Role) -> &Service {
        match role {
            Role::Server => &self.server,
            Role::Agent => &self.agent,
        }
    }

    /// containerd's major version (`2` for `2.1.5-k3s1`).
    pub fn containerd_major(&self) -> Option<u32> {
        self.containerd.as_deref()?.split('.').next()?.parse().ok()
    }

    /// Why this host cannot be installed on, if it cannot.
    pub fn problems(&self, max_skew_s: u64) -> Vec<String> {
        let mut p = Vec::new();
        if !self.sudo {
            p.push(
                "the SSH user cannot run sudo without a password (rke2 installs as root)".into(),
            );
        }
        if !matches!(self.arch.as_str(), "x86_64" | "aarch64" | "s390x") {
            p.push(format!("architecture {:?} has no rke2 release", self.arch));
        }
        if self.clock_skew_s.unsigned_abs() > max_skew_s {
            p.push(format!(
                "its clock is {}s off from this machine's (certificates and etcd need synchronised clocks; enable NTP)",
                self.clock_skew_s
            ));
        }
        p
    }
}

/// Hostnames become node names: two hosts with the same one would fight over one Node.
pub fn duplicate_hostnames<'a>(
    facts: impl IntoIterator<Item = (&'a str, &'a Facts)>,
) -> Vec<String> {
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (addr, f) in facts {
        by_name.entry(f.hostname.as_str()).or_default().push(addr);
    }
    by_name
        .into_iter()
        .filter(|(_, addrs)| addrs.len() > 1)
        .map(|(name, addrs)| format!("hostname {name:?} is shared by {}", addrs.join(", ")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUT: &str = "os=debian 12
arch=x86_64
hostname=kgf-host-1
machine_id=abc
sudo=yes
rke2_version=v1.36.3+rke2r1
rke2-server=enabled/active
rke2-agent=/inactive
config_sha256=00ff
registries_sha256=
proxy_sha256=
config_mode=600
token=yes
nvidia_driver=580.95.05
containerd=2.1.5
lock=
time=1000
";

    #[test]
    fn facts_parse_from_the_scripts_answer() {
        let f = Facts::parse(OUT, 990);
        assert_eq!(f.rke2_version.as_deref(), Some("v1.36.3+rke2r1"));
        assert_eq!(f.installed_role(), Some(Role::Server));
        assert!(f.server.active && !f.agent.active);
        assert_eq!(f.registries_sha256, None);
        assert_eq!(f.containerd_major(), Some(2));
        assert_eq!(f.clock_skew_s, 10);
        assert!(f.token && f.sudo && f.lock.is_none());
        assert!(f.problems(30).is_empty());
        assert_eq!(f.problems(5).len(), 1, "10s skew over a 5s limit");
    }

    #[test]
    fn a_bare_host_has_no_rke2_and_no_sudo_is_a_problem() {
        let f = Facts::parse("arch=x86_64\nsudo=no\nrke2-server=/inactive\ntime=5\n", 5);
        assert_eq!(f.installed_role(), None);
        assert_eq!(f.rke2_version, None);
        assert!(f.problems(30)[0].contains("sudo"));
    }

    #[test]
    fn duplicate_hostnames_are_named_with_their_addresses() {
        let a = Facts {
            hostname: "node".into(),
            ..Facts::default()
        };
        let b = Facts {
            hostname: "node".into(),
            ..Facts::default()
        };
        let c = Facts {
            hostname: "other".into(),
            ..Facts::default()
        };
        let d = duplicate_hostnames([("h1", &a), ("h2", &b), ("h3", &c)]);
        assert_eq!(d, vec!["hostname \"node\" is shared by h1, h2".to_string()]);
    }
}
