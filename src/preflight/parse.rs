//! Parsers for what host tools print: `nvidia-smi` CSV, `nvidia-ctk --version`, `docker info`,
//! `docker ps`, the toolkit's `config.toml`, tool versions, `df`, `/proc/driver/nvidia/params`,
//! `/dev`, the kernel's release.
//!
//! Pure functions over text; samples in the upstream formats are in `tests/fixtures/kind/preflight/`.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// A `major.minor.patch` version; pre-release and build suffixes are ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Version {
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `1.2.3`, `v1.2.3`, `v3.22.0+gabc`, `1.18.0-rc.1`, `1.2` (patch 0).
    pub fn parse(text: &str) -> Option<Version> {
        let core = text.trim().trim_start_matches('v');
        let core = core.split(['-', '+', ' ']).next()?;
        let mut parts = core.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.parse().ok()?,
            None => 0,
        };
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// `NVIDIA Container Toolkit CLI version 1.17.8` (first line of `nvidia-ctk --version`).
pub fn nvidia_ctk_version(text: &str) -> Option<Version> {
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("NVIDIA Container Toolkit CLI version ")
        })
        .and_then(Version::parse)
}

/// `kind v0.33.0 go1.26.8 linux/amd64` (`kind version`).
pub fn kind_version(text: &str) -> Option<Version> {
    text.split_whitespace()
        .nth(1)
        .filter(|_| text.trim_start().starts_with("kind "))
        .and_then(Version::parse)
}

/// `v3.22.0+g1a2b3c4` (`helm version --short`, helm 3 and 4).
pub fn helm_version(text: &str) -> Option<Version> {
    Version::parse(text.lines().next()?)
}

/// `kubectl version --client -o json`: `clientVersion.gitVersion`.
pub fn kubectl_version(json: &str) -> Option<Version> {
    let v: Value = serde_json::from_str(json).ok()?;
    Version::parse(v["clientVersion"]["gitVersion"].as_str()?)
}

/// One GPU as `nvidia-smi --query-gpu=index,name,uuid,driver_version,memory.total
/// --format=csv,noheader` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub driver_version: String,
    /// As printed, e.g. `81559 MiB`.
    pub memory: String,
}

/// The query kgf-up asks `nvidia-smi` for; [`nvidia_smi_gpus`] parses its output.
pub const NVIDIA_SMI_QUERY: &str = "--query-gpu=index,name,uuid,driver_version,memory.total";

/// Parses the CSV rows of [`NVIDIA_SMI_QUERY`]; a row that does not fit is an error naming it.
pub fn nvidia_smi_gpus(csv: &str) -> Result<Vec<Gpu>, String> {
    csv.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            // GPU names do not contain ", " (nvidia-smi's CSV separator); fields are trimmed.
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            match fields.as_slice() {
                [index, name, uuid, driver, memory] => Ok(Gpu {
                    index: index
                        .parse()
                        .map_err(|_| format!("bad GPU index in {line:?}"))?,
                    name: name.to_string(),
                    uuid: uuid.to_string(),
                    driver_version: driver.to_string(),
                    memory: memory.to_string(),
                }),
                _ => Err(format!("unexpected nvidia-smi line {line:?}")),
            }
        })
        .collect()
}

/// What `docker info --format '{{json .}}'` says that preflight uses.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DockerInfo {
    pub server_version: Option<String>,
    pub default_runtime: Option<String>,
    pub runtimes: Vec<String>,
    pub root_dir: Option<String>,
    /// `1` or `2`: the cgroup version the daemon runs containers (and so kind nodes) on.
    pub cgroup_version: Option<String>,
    /// CPUs and memory (bytes) the daemon's containers can use: the host's, or Docker Desktop's
    /// VM's.
    pub cpus: Option<u64>,
    pub memory: Option<u64>,
    /// The client's errors talking to the daemon (unreachable, permission denied).
    pub server_errors: Vec<String>,
}

impl DockerInfo {
    pub fn reachable(&self) -> bool {
        self.server_errors.is_empty() && self.server_version.is_some()
    }
}

pub fn docker_info(json: &str) -> Result<DockerInfo, String> {
    let v: Value = serde_json::from_str(json.trim()).map_err(|e| format!("docker info: {e}"))?;
    let s = |key: &str| {
        v[key]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let mut runtimes: Vec<String> = v["Runtimes"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    runtimes.sort();
    let server_errors = v["ServerErrors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Ok(DockerInfo {
        server_version: s("ServerVersion"),
        default_runtime: s("DefaultRuntime"),
        runtimes,
        root_dir: s("DockerRootDir"),
        cgroup_version: s("CgroupVersion"),
        cpus: v["NCPU"].as_u64().filter(|n| *n > 0),
        memory: v["MemTotal"].as_u64().filter(|n| *n > 0),
        server_errors,
    })
}

/// The containers publishing host port `port`, from `docker ps --format '{{.Names}}\t{{.Ports}}'`
/// (ports as `127.0.0.1:5001->5000/tcp, [::]:5001->5000/tcp`).
pub fn containers_publishing(ps: &str, port: u16) -> Vec<String> {
    let wanted = format!(":{port}->");
    ps.lines()
        .filter_map(|l| l.split_once('\t'))
        .filter(|(_, ports)| ports.split(", ").any(|p| p.contains(&wanted)))
        .map(|(name, _)| name.trim().to_string())
        .collect()
}

/// Whether the kernel is WSL2's (`/proc/sys/kernel/osrelease` like
/// `5.15.153.1-microsoft-standard-WSL2`).
pub fn is_wsl_kernel(osrelease: &str) -> bool {
    osrelease.to_lowercase().contains("microsoft")
}

/// `accept-nvidia-visible-devices-envvar-when-unprivileged` in the toolkit's config (top level;
/// absent means the default, true: unprivileged containers get GPUs from the environment).
pub fn toolkit_accepts_envvar_unprivileged(config: &str) -> bool {
    toml_value(
        config,
        None,
        "accept-nvidia-visible-devices-envvar-when-unprivileged",
    )
    .as_deref()
        != Some("false")
}

/// `podman info --format json`: `version.Version`.
pub fn podman_version(json: &str) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    v["version"]["Version"].as_str().map(str::to_string)
}

/// Finds `key = value` in a TOML file at top level (`section == None`) or in `[section]`,
/// without a TOML library: the toolkit's config is flat key/value tables.
fn toml_value(text: &str, section: Option<&str>, key: &str) -> Option<String> {
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = Some(name.trim().trim_matches('"').to_string());
            continue;
        }
        if current.as_deref() != section {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            let v = v.split(" #").next().unwrap_or("").trim();
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

/// `accept-nvidia-visible-devices-as-volume-mounts` in `/etc/nvidia-container-runtime/config.toml`
/// (a top-level key; absent means the default, false).
pub fn toolkit_accepts_volume_mounts(config: &str) -> bool {
    toml_value(
        config,
        None,
        "accept-nvidia-visible-devices-as-volume-mounts",
    )
    .as_deref()
        == Some("true")
}

/// The `ldconfig` the toolkit runs (`[nvidia-container-cli] ldconfig = "@/sbin/ldconfig.real"`),
/// without the leading `@` (which means "on the host/node", not in the container).
pub fn toolkit_ldconfig(config: &str) -> Option<String> {
    toml_value(config, Some("nvidia-container-cli"), "ldconfig")
        .map(|v| v.trim_start_matches('@').to_string())
}

/// `ModifyDeviceFiles` in `/proc/driver/nvidia/params`: `Some(true)` for 1.
pub fn modify_device_files(params: &str) -> Option<bool> {
    params.lines().find_map(
        |l| match l.trim().strip_prefix("ModifyDeviceFiles:")?.trim() {
            "0" => Some(false),
            "1" => Some(true),
            _ => None,
        },
    )
}

/// GPU indices of `/dev/nvidia<i>` in an `ls -1 /dev` listing (not nvidiactl, nvidia-uvm, ...).
pub fn gpu_device_nodes(listing: &str) -> Vec<u32> {
    let mut out: Vec<u32> = listing
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nvidia")?.parse().ok())
        .collect();
    out.sort_unstable();
    out
}

/// Available KiB from `df -Pk PATH` (POSIX format: a header line, then one data line).
pub fn df_available_kib(text: &str) -> Option<u64> {
    text.lines().nth(1)?.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! sample {
        ($name:literal) => {
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/kind/preflight/",
                $name
            ))
        };
    }

    #[test]
    fn versions_parse_in_every_spelling() {
        assert_eq!(Version::parse("v1.36.3"), Some(Version::new(1, 36, 3)));
        assert_eq!(Version::parse("1.18.0-rc.1"), Some(Version::new(1, 18, 0)));
        assert_eq!(
            Version::parse("v3.22.0+g1a2b3c4"),
            Some(Version::new(3, 22, 0))
        );
        assert_eq!(Version::parse("1.2"), Some(Version::new(1, 2, 0)));
        assert_eq!(Version::parse("latest"), None);
        assert!(Version::new(1, 19, 0) > Version::new(1, 18, 9));
    }

    #[test]
    fn tool_versions_from_their_outputs() {
        assert_eq!(
            kind_version(sample!("kind-version.txt")),
            Some(Version::new(0, 33, 0))
        );
        assert_eq!(
            helm_version(sample!("helm-version.txt")),
            Some(Version::new(3, 22, 0))
        );
        assert_eq!(
            kubectl_version(sample!("kubectl-version.json")),
            Some(Version::new(1, 36, 3))
        );
        assert_eq!(
            nvidia_ctk_version(sample!("nvidia-ctk-version.txt")),
            Some(Version::new(1, 18, 1))
        );
        assert_eq!(
            nvidia_ctk_version("bash: nvidia-ctk: command not found"),
            None
        );
        assert_eq!(kind_version("Client Version: v1.36.3"), None);
    }

    #[test]
    fn nvidia_smi_csv_gives_names_uuids_and_driver() {
        let gpus = nvidia_smi_gpus(sample!("nvidia-smi-2gpu.csv")).unwrap();
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[0].name, "NVIDIA RTX A6000");
        assert_eq!(gpus[1].index, 1);
        assert_eq!(gpus[1].uuid, "GPU-5f3b1c2e-8d4a-4e7b-9c1d-2a6f8e0b7c93");
        assert_eq!(gpus[0].driver_version, "570.172.08");
        assert_eq!(gpus[0].memory, "49140 MiB");
        assert!(nvidia_smi_gpus("").unwrap().is_empty());
        let err = nvidia_smi_gpus(
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
        )
        .unwrap_err();
        assert!(err.contains("unexpected nvidia-smi line"), "{err}");
    }

    #[test]
    fn docker_info_with_nvidia_as_default_runtime() {
        let info = docker_info(sample!("docker-info-nvidia.json")).unwrap();
        assert!(info.reachable());
        assert_eq!(info.server_version.as_deref(), Some("28.3.3"));
        assert_eq!(info.default_runtime.as_deref(), Some("nvidia"));
        assert_eq!(info.runtimes, ["io.containerd.runc.v2", "nvidia", "runc"]);
        assert_eq!(info.root_dir.as_deref(), Some("/var/lib/docker"));
        assert_eq!(info.cgroup_version.as_deref(), Some("2"));
        assert_eq!(info.cpus, Some(32));
        assert_eq!(info.memory, Some(134_850_437_120));
    }

    #[test]
    fn published_ports_wsl_kernels_and_the_envvar_setting() {
        let ps = "kind-registry\t127.0.0.1:5001->5000/tcp\nkgf-control-plane\t127.0.0.1:41235->6443/tcp\nweb\t0.0.0.0:15001->80/tcp, [::]:5001->80/tcp\nidle\t\n";
        assert_eq!(containers_publishing(ps, 5001), ["kind-registry", "web"]);
        assert!(containers_publishing(ps, 500).is_empty());
        assert!(is_wsl_kernel("5.15.153.1-microsoft-standard-WSL2\n"));
        assert!(is_wsl_kernel("4.4.0-19041-Microsoft"));
        assert!(!is_wsl_kernel("6.8.0-87-generic"));
        let stock = sample!("nvidia-container-runtime-config.toml");
        assert!(
            toolkit_accepts_envvar_unprivileged(stock),
            "the default is true"
        );
        let fixed = stock.replace(
            "#accept-nvidia-visible-devices-envvar-when-unprivileged = true",
            "accept-nvidia-visible-devices-envvar-when-unprivileged = false",
        );
        assert!(!toolkit_accepts_envvar_unprivileged(&fixed));
    }

    #[test]
    fn docker_info_of_an_unreachable_daemon() {
        // docker 28 with the daemon down: the client half of the JSON on stdout (the error goes
        // to stderr, see docker-info-unreachable.stderr).
        let info = docker_info(sample!("docker-info-unreachable.json")).unwrap();
        assert!(!info.reachable());
        assert_eq!(info.server_version, None);
        assert_eq!(info.default_runtime, None);
        assert!(info.runtimes.is_empty());
        // Older clients list the error in ServerErrors instead.
        let info = docker_info(
            r#"{"ServerVersion":"","ServerErrors":["permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock"]}"#,
        )
        .unwrap();
        assert!(!info.reachable());
        assert!(info.server_errors[0].starts_with("permission denied"));
    }

    #[test]
    fn toolkit_config_keys() {
        let stock = sample!("nvidia-container-runtime-config.toml");
        assert!(!toolkit_accepts_volume_mounts(stock));
        assert_eq!(
            toolkit_ldconfig(stock).as_deref(),
            Some("/sbin/ldconfig.real")
        );
        let fixed = stock.replace(
            "#accept-nvidia-visible-devices-as-volume-mounts = false",
            "accept-nvidia-visible-devices-as-volume-mounts = true",
        );
        assert!(toolkit_accepts_volume_mounts(&fixed));
        // The same key inside a section is not the top-level setting.
        assert!(!toolkit_accepts_volume_mounts(
            "[nvidia-container-runtime]\naccept-nvidia-visible-devices-as-volume-mounts = true\n"
        ));
    }

    #[test]
    fn driver_params_device_nodes_and_df() {
        assert_eq!(
            modify_device_files(sample!("nvidia-params.txt")),
            Some(true)
        );
        assert_eq!(
            modify_device_files("ResmanDebugLevel: 4294967295\nModifyDeviceFiles: 0\n"),
            Some(false)
        );
        assert_eq!(modify_device_files("EnableMSI: 1\n"), None);
        assert_eq!(
            gpu_device_nodes(
                "core\nnvidia-modeset\nnvidia-uvm\nnvidia0\nnvidia3\nnvidia1\nnvidiactl\nnull\n"
            ),
            [0, 1, 3]
        );
        assert_eq!(df_available_kib(sample!("df.txt")), Some(161_216_464));
    }
}
