//! The `cluster.rke2` section of a profile: the hosts and how rke2 should be installed on them.
//!
//! Pure data with defaults and validation; it must not connect to a host. Registry passwords are
//! references (an environment variable or a file), resolved by [`SecretRef::resolve`], never inline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::SpecError;

use crate::secret::Secret;

/// The rke2 release kgf-up pins when neither `version` nor `channel` is given.
pub const DEFAULT_VERSION: &str = "v1.36.3+rke2r1";
/// Where the real install script comes from.
pub const DEFAULT_INSTALL_SCRIPT: &str = "https://get.rke2.io";

/// `cluster.rke2` in a profile.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Rke2Spec {
    /// The cluster's name: the kubeconfig's cluster, user and context are renamed to it.
    pub name: String,
    /// The machines, in order; the first `server` installs first and the others join it.
    pub hosts: Vec<HostSpec>,
    /// rke2 release (`INSTALL_RKE2_VERSION`). Unset and no `channel`: [`DEFAULT_VERSION`].
    pub version: Option<String>,
    /// Release channel (`INSTALL_RKE2_CHANNEL`, e.g. `stable`) instead of a pinned version.
    pub channel: Option<String>,
    /// Extra names and addresses for the API server certificate; the first server's address is
    /// always included.
    pub tls_san: Vec<String>,
    /// Registry mirrors, written to `/etc/rancher/rke2/registries.yaml` on every host.
    pub registries: Vec<MirrorSpec>,
    /// HTTP proxy for rke2 and its containerd, written to `/etc/default/rke2-<role>`.
    pub proxy: Option<ProxySpec>,
    /// A directory *on every host* holding the air-gap artifacts (`rke2.linux-<arch>.tar.gz`,
    /// `rke2-images.linux-<arch>.tar.zst`, `sha256sum-<arch>.txt`, `install.sh`); the install
    /// script then comes from there and nothing is downloaded.
    pub artifact_dir: Option<PathBuf>,
    /// The install script: an `https://` URL fetched on this machine, or a local file.
    pub install_script: String,
    pub ssh: SshSpec,
    /// Hosts changed at the same time (agents join in parallel up to this bound).
    pub parallelism: usize,
    /// Allow re-running the installer on hosts that run another rke2 version. Off: a mismatch
    /// stops the run and is reported.
    pub upgrade: bool,
    /// Where the cluster's kubeconfig is written (mode 0600). Unset: `rke2-<name>.kubeconfig` in
    /// kgf-up's work directory.
    pub kubeconfig: Option<PathBuf>,
    /// Also merge the cluster into this kubeconfig (e.g. `~/.kube/config`): entries named `name`
    /// are replaced, all others kept, and its current context becomes `name`. Unset: not touched.
    pub merge_into: Option<PathBuf>,
    /// Largest clock difference accepted between this machine and a host, in seconds.
    pub max_clock_skew_s: u64,
}

impl Default for Rke2Spec {
    fn default() -> Self {
        Rke2Spec {
            name: "kgf".to_string(),
            hosts: Vec::new(),
            version: None,
            channel: None,
            tls_san: Vec::new(),
            registries: Vec::new(),
            proxy: None,
            artifact_dir: None,
            install_script: DEFAULT_INSTALL_SCRIPT.to_string(),
            ssh: SshSpec::default(),
            parallelism: 4,
            upgrade: false,
            kubeconfig: None,
            merge_into: None,
            max_clock_skew_s: 30,
        }
    }
}

/// One machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// Address or `~/.ssh/config` alias; also what agents use to reach a server.
    pub address: String,
    /// SSH user; unset: `~/.ssh/config` or the local user. Not root: needs password-less sudo.
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// Private key file; unset: the SSH agent and `~/.ssh/config`.
    #[serde(default)]
    pub key: Option<PathBuf>,
    pub role: Role,
    /// Node labels (`node-label`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Node taints, `key=value:Effect` (`node-taint`).
    #[serde(default)]
    pub taints: Vec<String>,
    /// Whether the host has NVIDIA GPUs: `true`, `false` or `auto` (the default: detected by
    /// looking for the NVIDIA driver over SSH).
    #[serde(default)]
    pub gpu: Gpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Agent,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Agent => "agent",
        }
    }
    /// The systemd unit the installer creates for this role.
    pub fn unit(self) -> &'static str {
        match self {
            Role::Server => "rke2-server",
            Role::Agent => "rke2-agent",
        }
    }
}

/// `gpu: true | false | auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GpuRepr", into = "GpuRepr")]
pub enum Gpu {
    Yes,
    No,
    #[default]
    Auto,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
enum GpuRepr {
    Bool(bool),
    Word(String),
}

impl TryFrom<GpuRepr> for Gpu {
    type Error = String;
    fn try_from(r: GpuRepr) -> Result<Self, String> {
        match r {
            GpuRepr::Bool(true) => Ok(Gpu::Yes),
            GpuRepr::Bool(false) => Ok(Gpu::No),
            GpuRepr::Word(w) if w == "auto" => Ok(Gpu::Auto),
            GpuRepr::Word(w) => Err(format!("gpu must be true, false or auto, not {w:?}")),
        }
    }
}

impl From<Gpu> for GpuRepr {
    fn from(g: Gpu) -> Self {
        match g {
            Gpu::Yes => GpuRepr::Bool(true),
            Gpu::No => GpuRepr::Bool(false),
            Gpu::Auto => GpuRepr::Word("auto".into()),
        }
    }
}

/// `cluster.rke2.ssh`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SshSpec {
    /// Refuse hosts whose key is unknown or changed (on by default). Turning it off is logged as a
    /// warning: whoever answers at a host's address then gets its join token.
    pub strict_host_keys: bool,
    /// known_hosts file to check host keys against, instead of `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
}

impl Default for SshSpec {
    fn default() -> Self {
        SshSpec {
            strict_host_keys: true,
            known_hosts: None,
        }
    }
}

/// One registry mirror: pulls of `registry` go to `endpoints` first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MirrorSpec {
    /// The registry being mirrored, e.g. `docker.io`, or `*` for all.
    pub registry: String,
    /// Mirror URLs, e.g. `https://mirror.example.com:5000`.
    pub endpoints: Vec<String>,
    /// Credentials for the endpoints.
    #[serde(default)]
    pub auth: Option<AuthSpec>,
    /// CA bundle (a path on the hosts) for the endpoints' certificates.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSpec {
    pub username: String,
    pub password: SecretRef,
}

/// Where a secret comes from; the profile never holds the value itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum SecretRef {
    /// An environment variable of the kgf-up process.
    Env(String),
    /// A file on this machine (trailing newline removed).
    File(PathBuf),
}

impl SecretRef {
    pub fn resolve(&self) -> Result<Secret, SpecError> {
        match self {
            SecretRef::Env(name) => std::env::var(name).map(Secret::new).map_err(|_| {
                SpecError(format!(
                    "the registry password variable {name} is not set; export it before running kgf-up"
                ))
            }),
            SecretRef::File(path) => std::fs::read_to_string(path)
                .map(|s| Secret::new(s.trim_end_matches(['\n', '\r'])))
                .map_err(|e| {
                    SpecError(format!(
                        "cannot read the registry password file {}: {e}",
                        path.display()
                    ))
                }),
        }
    }
}

/// `cluster.rke2.proxy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    #[serde(default)]
    pub http: Option<String>,
    #[serde(default)]
    pub https: Option<String>,
    /// Added to rke2's own must-haves (cluster and service CIDRs, `.svc`, `.cluster.local`,
    /// localhost and every host's address).
    #[serde(default)]
    pub no_proxy: Vec<String>,
}

impl Rke2Spec {
    /// The pinned version, if the profile pins one (a channel pins nothing).
    pub fn wanted_version(&self) -> Option<&str> {
        match (&self.version, &self.channel) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_VERSION),
        }
    }

    /// The first server: it installs first, and its address is the cluster's.
    pub fn first_server(&self) -> Option<&HostSpec> {
        self.hosts.iter().find(|h| h.role == Role::Server)
    }

    pub fn validate(&self) -> Result<(), SpecError> {
        let bad = |m: String| Err(SpecError(m));
        if self.hosts.is_empty() {
            return bad("no hosts: list at least one host with role: server".into());
        }
        if self.first_server().is_none() {
            return bad("no host has role: server; the first server is where rke2 starts".into());
        }
        if self.version.is_some() && self.channel.is_some() {
            return bad("set either version or channel, not both".into());
        }
        if let Some(v) = &self.version
            && !(v.starts_with('v') && v.contains("+rke2r"))
        {
            return bad(format!(
                "version {v:?} is not an rke2 release like {DEFAULT_VERSION}"
            ));
        }
        if self.parallelism == 0 {
            return bad("parallelism must be at least 1".into());
        }
        if !is_name(&self.name) {
            return bad(format!(
                "name {:?} must be lowercase letters, digits, '-' and '.'",
                self.name
            ));
        }
        let mut seen = BTreeSet::new();
        for h in &self.hosts {
            if h.address.is_empty()
                || h.address.starts_with('-')
                || h.address.contains(char::is_whitespace)
            {
                return bad(format!(
                    "host address {:?} is not a host name or address",
                    h.address
                ));
            }
            if !seen.insert(h.address.as_str()) {
                return bad(format!("host {} is listed twice", h.address));
            }
            for t in &h.taints {
                let effect = t.rsplit_once(':').map(|(_, e)| e);
                if !matches!(
                    effect,
                    Some("NoSchedule" | "PreferNoSchedule" | "NoExecute")
                ) {
                    return bad(format!(
                        "host {}: taint {t:?} must be key=value:Effect (NoSchedule, PreferNoSchedule or NoExecute)",
                        h.address
                    ));
                }
            }
            for k in h.labels.keys() {
                if k.is_empty() || k.contains(['=', ' ']) {
                    return bad(format!("host {}: label key {k:?} is not valid", h.address));
                }
            }
        }
        if self.install_script.starts_with("http://") {
            return bad(format!(
                "install_script {:?}: a script run as root must come over https:// (or from a local file)",
                self.install_script
            ));
        }
        Ok(())
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<Rke2Spec, String> {
        serde_saphyr::from_str::<Rke2Spec>(yaml).map_err(|e| e.to_string())
    }

    const THREE: &str = "
hosts:
  - {address: 10.0.0.1, user: ubuntu, key: ~/.ssh/id_ed25519, role: server}
  - {address: gpu1, role: agent, gpu: true, labels: {pool: gpu}, taints: ['nvidia.com/gpu=true:NoSchedule']}
  - {address: cpu1, role: agent, gpu: false}
";

    #[test]
    fn an_inventory_parses_with_documented_defaults() {
        let spec = parse(THREE).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.wanted_version(), Some(DEFAULT_VERSION));
        assert!(spec.ssh.strict_host_keys);
        assert_eq!(spec.parallelism, 4);
        assert_eq!(spec.first_server().unwrap().address, "10.0.0.1");
        assert_eq!(spec.hosts[1].gpu, Gpu::Yes);
        assert_eq!(spec.hosts[2].gpu, Gpu::No);
        assert_eq!(spec.hosts[0].gpu, Gpu::Auto);
        assert_eq!(spec.install_script, DEFAULT_INSTALL_SCRIPT);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(
            parse("hosts: []\nsurprise: 1")
                .unwrap_err()
                .contains("surprise")
        );
        assert!(
            parse("hosts: [{address: a, role: server, gpu: maybe}]")
                .unwrap_err()
                .contains("true, false or auto")
        );
        let no_server = parse("hosts: [{address: a, role: agent}]").unwrap();
        assert!(
            no_server
                .validate()
                .unwrap_err()
                .to_string()
                .contains("role: server")
        );
        let both =
            parse("version: v1.36.3+rke2r1\nchannel: stable\nhosts: [{address: a, role: server}]")
                .unwrap();
        assert!(
            both.validate()
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let taint = parse("hosts: [{address: a, role: server, taints: [gpu]}]").unwrap();
        assert!(
            taint
                .validate()
                .unwrap_err()
                .to_string()
                .contains("key=value:Effect")
        );
        let twice =
            parse("hosts: [{address: a, role: server}, {address: a, role: agent}]").unwrap();
        assert!(
            twice
                .validate()
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
    }

    #[test]
    fn the_readme_inventory_is_valid() {
        let spec = parse(include_str!("../../tests/fixtures/rke2/inventory.yaml")).unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.hosts.len(), 3);
        assert_eq!(spec.hosts[2].port, Some(2222));
        assert_eq!(
            spec.registries[0].auth.as_ref().unwrap().password,
            SecretRef::Env("KGF_REGISTRY_PASSWORD".into())
        );
    }

    #[test]
    fn a_channel_pins_no_version() {
        let spec = parse("channel: stable\nhosts: [{address: a, role: server}]").unwrap();
        spec.validate().unwrap();
        assert_eq!(spec.wanted_version(), None);
    }

    #[test]
    fn secret_refs_resolve_from_env_and_file_without_showing_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "file-secret-pw\n").unwrap();
        let s = SecretRef::File(file).resolve().unwrap();
        assert_eq!(s.expose(), "file-secret-pw");
        assert_eq!(format!("{s:?}"), "***");
        let missing = SecretRef::Env("KGF_RKE2_TEST_UNSET_VARIABLE".into()).resolve();
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("KGF_RKE2_TEST_UNSET_VARIABLE")
        );
    }
}
