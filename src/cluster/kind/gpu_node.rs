//! Steps `kind/gpu/<node>/<task>`: the NVIDIA container runtime inside one GPU node, each part
//! observed and re-applied on its own (what nvkind does in one pass, and cannot repair later).
//!
//! Parts, in order: the toolkit installed in the node; `/sbin/ldconfig.real` where the toolkit's
//! config asks for it (Ubuntu-built packages on the Debian-based node image); containerd's
//! `nvidia` runtime with CDI on and runc kept as the default (the CDI path, docs/gpu.md);
//! `/proc/driver/nvidia/params` with `ModifyDeviceFiles: 0`, so the driver does
//! not re-create device nodes (toolkit ≥ 1.19 mounts this itself when it injects the GPU; older
//! ones need the copy-and-bind-mount done here); and removing `/dev/nvidia<i>` of GPUs not given
//! to the node. The mount and the removals do not survive a restart of the node container, which
//! is why each is observed every run.

use std::sync::{Arc, Mutex};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::cmds::{self, INSTALL_TIMEOUT, node_exec, node_script};
use super::spec::{NodeGpus, NodePlan, ToolkitSource};
use super::{KindError, KindPlan, ids};
use crate::exec::{Cmd, ExecError};
use crate::preflight::parse;
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId};
use crate::wait::{self, Stop};

/// One part of the in-node GPU setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeTask {
    Toolkit,
    Ldconfig,
    ContainerdRuntime,
    ParamsMask,
    DeviceNodes,
}

impl NodeTask {
    pub fn slug(self) -> &'static str {
        match self {
            NodeTask::Toolkit => "toolkit",
            NodeTask::Ldconfig => "ldconfig",
            NodeTask::ContainerdRuntime => "containerd",
            NodeTask::ParamsMask => "params",
            NodeTask::DeviceNodes => "devices",
        }
    }

    /// The tasks a node needs, in order: device nodes only where the node sees some GPUs.
    pub fn for_node(node: &NodePlan) -> Vec<NodeTask> {
        let mut tasks = vec![
            NodeTask::Toolkit,
            NodeTask::Ldconfig,
            NodeTask::ContainerdRuntime,
            NodeTask::ParamsMask,
        ];
        if matches!(node.gpus, NodeGpus::Indices(_)) {
            tasks.push(NodeTask::DeviceNodes);
        }
        tasks
    }
}

const TOOLKIT_CONFIG: &str = "/etc/nvidia-container-runtime/config.toml";
const PARAMS: &str = "/proc/driver/nvidia/params";
const DEBS_DIR: &str = "/tmp/kgf-up-nvidia-debs";

/// NVIDIA's documented apt install, run inside the node (needs internet there).
fn apt_script(version: Option<&str>) -> String {
    let packages = match version {
        None => "nvidia-container-toolkit".to_string(),
        Some(v) => format!(
            "nvidia-container-toolkit={v} nvidia-container-toolkit-base={v} libnvidia-container-tools={v} libnvidia-container1={v}"
        ),
    };
    format!(
        "set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends ca-certificates curl gpg
curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey | gpg --dearmor --yes -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' > /etc/apt/sources.list.d/nvidia-container-toolkit.list
apt-get update
apt-get install -y {packages}
"
    )
}

const DPKG_SCRIPT: &str =
    "set -eu\ndpkg -i /tmp/kgf-up-nvidia-debs/*.deb\nrm -rf /tmp/kgf-up-nvidia-debs\n";

/// Copies the driver's params, sets `ModifyDeviceFiles: 0` and bind-mounts the copy; unmounts a
/// tmpfs an older toolkit left over the directory first (the step nvkind #61 saw fail on 1.18
/// when nothing was mounted there).
const MASK_SCRIPT: &str = "set -eu
if mountpoint -q /proc/driver/nvidia; then umount -R /proc/driver/nvidia; fi
cp /proc/driver/nvidia/params /root/gpu-params
sed -i 's/^ModifyDeviceFiles: 1$/ModifyDeviceFiles: 0/' /root/gpu-params
mount --bind /root/gpu-params /proc/driver/nvidia/params
";

fn remove_device_script(index: u32) -> String {
    format!("while umount /dev/nvidia{index} 2>/dev/null; do :; done; rm -f /dev/nvidia{index}")
}

/// What the CDI runtime path needs from containerd in a GPU node, as `containerd config dump`
/// shows it (version 2 `[plugins."io.containerd.grpc.v1.cri"...]` or version 3
/// `[plugins.'io.containerd.cri.v1.runtime'...]` tables).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerdGpu {
    /// A runtime named `nvidia`: the GPU operator's operands (device plugin, validator, DCGM
    /// exporter) run with `runtimeClassName: nvidia` to reach the driver.
    pub nvidia_runtime: bool,
    /// `enable_cdi` of the CRI plugin: containerd injects the devices the device plugin names in
    /// CDI form. Absent in a dump of containerd 1.7, whose default is off.
    pub cdi: Option<bool>,
    /// `default_runtime_name`; absent means runc.
    pub default_runtime: Option<String>,
}

impl ContainerdGpu {
    pub fn parse(dump: &str) -> ContainerdGpu {
        let mut out = ContainerdGpu::default();
        let mut table = String::new();
        for line in dump.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                // One spelling for both config versions: quotes dropped.
                table = name.replace(['"', '\''], "");
                if table.ends_with(".runtimes.nvidia") && cri_plugin(&table).is_some() {
                    out.nvidia_runtime = true;
                }
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value
                .split(" #")
                .next()
                .unwrap_or("")
                .trim()
                .trim_matches(['"', '\'']);
            match (cri_plugin(&table), key.trim()) {
                (Some(""), "enable_cdi") => out.cdi = Some(value == "true"),
                (Some(".containerd"), "default_runtime_name") => {
                    out.default_runtime = Some(value.to_string()).filter(|v| !v.is_empty())
                }
                _ => {}
            }
        }
        out
    }

    /// What is not as the CDI path needs it, one phrase each (empty: converged).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.nvidia_runtime {
            out.push("no nvidia runtime (the GPU operator's operands need it)".to_string());
        }
        if self.cdi != Some(true) {
            out.push("CDI is off (enable_cdi is not true)".to_string());
        }
        if self.default_runtime.as_deref() == Some("nvidia") {
            // CUDA images set NVIDIA_VISIBLE_DEVICES=all, which the nvidia runtime honours for
            // any pod, GPU request or not: the device plugin's accounting would mean nothing.
            out.push(
                "the default runtime is nvidia (every CUDA pod would see every GPU of the node)"
                    .to_string(),
            );
        }
        out
    }
}

/// The version `containerd --version` prints, when it is older than 1.7 (the first with CDI);
/// `None` for 1.7 and later, or a line not understood (the config's own check still applies).
fn containerd_without_cdi(version_line: &str) -> Option<String> {
    let version = version_line.split_whitespace().nth(2)?;
    let mut parts = version.trim_start_matches('v').split(['.', '~', '-', '+']);
    let major: u32 = parts.next()?.parse().ok()?;
    let minor: u32 = parts.next()?.parse().ok()?;
    ((major, minor) < (1, 7)).then(|| version.to_string())
}

/// The rest of a table name after the CRI plugin's (`""` for the plugin itself), or `None` for a
/// table of another plugin.
fn cri_plugin(table: &str) -> Option<&str> {
    [
        "plugins.io.containerd.grpc.v1.cri",
        "plugins.io.containerd.cri.v1.runtime",
    ]
    .iter()
    .find_map(|p| table.strip_prefix(p))
}

/// What observe found that apply acts on.
#[derive(Clone, Debug, Default)]
struct Seen {
    /// Device indices present in the node but not given to it.
    extra_devices: Vec<u32>,
}

pub struct GpuNodeStep {
    pub(super) plan: Arc<KindPlan>,
    pub(super) node: NodePlan,
    pub(super) task: NodeTask,
    seen: Mutex<Seen>,
}

impl GpuNodeStep {
    pub(super) fn new(plan: Arc<KindPlan>, node: NodePlan, task: NodeTask) -> Self {
        GpuNodeStep {
            plan,
            node,
            task,
            seen: Mutex::new(Seen::default()),
        }
    }

    fn name(&self) -> &str {
        &self.node.name
    }

    fn apply_cmds(&self, extra_devices: &[u32]) -> Vec<Cmd> {
        let node = self.name();
        match self.task {
            NodeTask::Toolkit => match &self.plan.spec.toolkit {
                ToolkitSource::Apt { version } => {
                    vec![
                        node_script(node, &apt_script(version.as_deref()))
                            .timeout(INSTALL_TIMEOUT)
                            .changes(),
                    ]
                }
                ToolkitSource::Debs { path } => vec![
                    Cmd::new("docker")
                        .arg("cp")
                        .arg(format!("{}/.", path.display()))
                        .arg(format!("{node}:{DEBS_DIR}"))
                        .changes(),
                    node_script(node, DPKG_SCRIPT)
                        .timeout(INSTALL_TIMEOUT)
                        .changes(),
                ],
            },
            NodeTask::Ldconfig => vec![
                node_exec(node)
                    .args(["ln", "-sf", "/sbin/ldconfig", "/sbin/ldconfig.real"])
                    .changes(),
            ],
            // Without --set-as-default: runc stays containerd's default, and GPUs reach pods
            // only through the CDI devices of their device plugin allocation (docs/gpu.md).
            // A default of nvidia left by an earlier configure is removed by this one.
            NodeTask::ContainerdRuntime => vec![
                node_exec(node)
                    .args([
                        "nvidia-ctk",
                        "runtime",
                        "configure",
                        "--runtime=containerd",
                        "--config-source=file",
                        "--cdi.enabled",
                    ])
                    .changes(),
                node_exec(node)
                    .args(["systemctl", "restart", "containerd"])
                    .changes(),
            ],
            NodeTask::ParamsMask => vec![node_script(node, MASK_SCRIPT).changes()],
            NodeTask::DeviceNodes => extra_devices
                .iter()
                .map(|i| node_script(node, &remove_device_script(*i)).changes())
                .collect(),
        }
    }

    async fn observe_inner(&self, ctx: &Ctx) -> Result<Observation, KindError> {
        let node = self.name();
        let exec = &ctx.exec;
        match self.task {
            NodeTask::Toolkit => {
                let out = exec
                    .run_async(node_exec(node).args(["nvidia-ctk", "--version"]))
                    .await;
                let text = match out {
                    Ok(o) => o.stdout,
                    Err(ExecError::Failed { stderr, .. })
                        if stderr.contains("executable file not found") =>
                    {
                        return Ok(Observation::missing(format!(
                            "the NVIDIA container toolkit is not installed in {node}"
                        )));
                    }
                    Err(source) => {
                        return Err(KindError::Exec {
                            what: format!("reading the toolkit version in {node}"),
                            source: Box::new(source),
                        });
                    }
                };
                let found = parse::nvidia_ctk_version(&text).ok_or_else(|| KindError::Parse {
                    what: format!("nvidia-ctk --version in {node}"),
                    detail: text.clone(),
                })?;
                if let ToolkitSource::Apt {
                    version: Some(wanted),
                } = &self.plan.spec.toolkit
                    && !wanted.starts_with(&found.to_string())
                {
                    return Ok(Observation::drifted(format!(
                        "toolkit {found} is installed in {node}, {wanted} is wanted"
                    )));
                }
                Ok(Observation::converged(format!(
                    "toolkit {found} is installed in {node}"
                )))
            }
            NodeTask::Ldconfig => {
                let config = cmds::read_node_file(exec, node, TOOLKIT_CONFIG).await?;
                let wanted = config.as_deref().and_then(parse::toolkit_ldconfig);
                match wanted {
                    Some(path) if path.ends_with("ldconfig.real") => {
                        let present = cmds::node_path_exists(exec, node, &path).await?;
                        Ok(if present {
                            Observation::converged(format!("{path} exists in {node}"))
                        } else {
                            Observation::missing(format!(
                                "the toolkit in {node} runs {path}, which the Debian-based node image lacks"
                            ))
                        })
                    }
                    Some(path) => Ok(Observation::converged(format!(
                        "the toolkit in {node} runs {path}"
                    ))),
                    None => Ok(Observation::converged(format!(
                        "the toolkit config in {node} names no ldconfig.real"
                    ))),
                }
            }
            NodeTask::ContainerdRuntime => {
                let dump = cmds::run(
                    exec,
                    node_exec(node).args(["containerd", "config", "dump"]),
                    &format!("reading containerd's config in {node}"),
                )
                .await?;
                let seen = ContainerdGpu::parse(&dump);
                if seen.cdi != Some(true) {
                    // containerd before 1.7 drops `enable_cdi` from its config: configuring
                    // cannot turn CDI on there, so say why instead of re-applying every run.
                    let out = cmds::run(
                        exec,
                        node_exec(node).args(["containerd", "--version"]),
                        &format!("reading containerd's version in {node}"),
                    )
                    .await?;
                    if let Some(version) = containerd_without_cdi(&out) {
                        return Err(KindError::ContainerdWithoutCdi {
                            node: node.to_string(),
                            version,
                        });
                    }
                }
                let problems = seen.problems();
                Ok(if problems.is_empty() {
                    Observation::converged(format!(
                        "containerd in {node}: CDI on, runtime nvidia for the GPU operator, default runtime {}",
                        seen.default_runtime.as_deref().unwrap_or("runc")
                    ))
                } else if seen.nvidia_runtime {
                    Observation::drifted(format!("containerd in {node}: {}", problems.join("; ")))
                } else {
                    Observation::missing(format!("containerd in {node}: {}", problems.join("; ")))
                })
            }
            NodeTask::ParamsMask => {
                let params = cmds::read_node_file(exec, node, PARAMS).await?.ok_or_else(|| {
                    KindError::Parse {
                        what: format!("{PARAMS} in {node}"),
                        detail: "missing: the node does not see the NVIDIA driver; check the host's `accept-nvidia-visible-devices-as-volume-mounts` and docker's default runtime (kgf-up doctor)".into(),
                    }
                })?;
                Ok(match parse::modify_device_files(&params) {
                    Some(false) => {
                        Observation::converged(format!("ModifyDeviceFiles is 0 in {node}"))
                    }
                    _ => Observation::missing(format!(
                        "the driver in {node} may re-create device nodes of other GPUs (ModifyDeviceFiles is not 0; toolkit < 1.19 does not mask it)"
                    )),
                })
            }
            NodeTask::DeviceNodes => {
                let NodeGpus::Indices(given) = &self.node.gpus else {
                    return Ok(Observation::converged(format!("{node} sees every GPU")));
                };
                let listing = cmds::run(
                    exec,
                    node_exec(node).args(["ls", "-1", "/dev"]),
                    &format!("listing /dev in {node}"),
                )
                .await?;
                let extra: Vec<u32> = parse::gpu_device_nodes(&listing)
                    .into_iter()
                    .filter(|i| !given.contains(i))
                    .collect();
                let reason = if extra.is_empty() {
                    Observation::converged(format!("{node} has device nodes of its GPUs only"))
                } else {
                    Observation::drifted(format!(
                        "{node} has device nodes of GPUs it was not given: {}",
                        extra
                            .iter()
                            .map(|i| format!("/dev/nvidia{i}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                };
                self.seen
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extra_devices = extra;
                Ok(reason)
            }
        }
    }
}

impl Step for GpuNodeStep {
    fn id(&self) -> StepId {
        ids::gpu_node(self.name(), self.task.slug())
    }

    fn needs(&self) -> Vec<StepId> {
        let tasks = NodeTask::for_node(&self.node);
        let pos = tasks.iter().position(|t| *t == self.task).unwrap_or(0);
        match pos {
            0 => vec![ids::cluster()],
            _ => vec![ids::gpu_node(self.name(), tasks[pos - 1].slug())],
        }
    }

    fn describe(&self) -> Description {
        let extra: Vec<u32> = match &self.node.gpus {
            NodeGpus::Indices(given) => (0..self.plan.gpu_count)
                .filter(|i| !given.contains(i))
                .collect(),
            _ => Vec::new(),
        };
        Description {
            source: format!("node {}", self.name()),
            commands: self.apply_cmds(&extra).iter().map(Cmd::display).collect(),
            objects: vec![],
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Observation, StepError>> {
        async move {
            self.observe_inner(ctx).await.map_err(|e| {
                let old_containerd = matches!(e, KindError::ContainerdWithoutCdi { .. });
                let err = StepError::context(
                    format!("observing {} in {}", self.task.slug(), self.name()),
                    e,
                );
                if old_containerd {
                    err.with_fix(
                        "use a node image whose containerd is 1.7 or later (kind's own kindest/node images are): cluster.kind.node_image names it",
                    )
                } else {
                    err
                }
            })
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Ctx,
        _seen: &'a Observation,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            let extra = self
                .seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extra_devices
                .clone();
            for cmd in self.apply_cmds(&extra) {
                ctx.exec.run_async(cmd).await.map_err(|e| {
                    let err = StepError::context(
                        format!("setting up {} in {}", self.task.slug(), self.name()),
                        e,
                    );
                    match (self.task, &self.plan.spec.toolkit) {
                        (NodeTask::Toolkit, ToolkitSource::Apt { .. }) => err.with_fix(
                            "apt inside the node needs internet access to nvidia.github.io and the Debian mirrors; without it, download the toolkit .deb files and set cluster.kind.toolkit: {debs: {path: DIR}}",
                        ),
                        _ => err,
                    }
                })?;
            }
            Ok(())
        }
        .boxed()
    }

    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            if self.task != NodeTask::ContainerdRuntime {
                return Ok(());
            }
            // containerd was restarted: the node is usable again once it is active.
            let active = wait::until(ctx.timeout, std::time::Duration::from_secs(1), || async {
                let state = ctx
                    .exec
                    .run_async(node_exec(self.name()).args([
                        "systemctl",
                        "is-active",
                        "containerd",
                    ]))
                    .await;
                Ok::<_, StepError>(match state {
                    Ok(out) if out.stdout.trim() == "active" => wait::Seen::Ready(()),
                    Ok(out) => wait::Seen::Not(out.stdout.trim().to_string()),
                    Err(e) => wait::Seen::Not(e.to_string()),
                })
            });
            match active.await {
                Ok(()) => Ok(()),
                Err(Stop::Failed(e)) => Err(e),
                Err(Stop::TimedOut { waited, last }) => Err(StepError::new(format!(
                    "containerd in {} is not active {}s after its restart (last seen: {last})",
                    self.name(),
                    waited.as_secs(),
                ))
                .with_fix(format!(
                    "docker exec {} journalctl -u containerd --no-pager | tail -50",
                    self.name()
                ))),
            }
        }
        .boxed()
    }
}

/// Step `kind/runtime-class`: `RuntimeClass nvidia` (handler `nvidia`), which the GPU operator's
/// operands use to get the nvidia runtime configured above. It exists before the operator (which
/// would create the same object) so that its operands never wait for it. Workload pods need no
/// runtime class: their GPUs come as CDI devices (docs/gpu.md).
pub struct RuntimeClassStep {
    pub(super) needs: Vec<StepId>,
}

pub fn runtime_class_manifest() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"},
        "handler": "nvidia",
    })
}

impl Step for RuntimeClassStep {
    fn id(&self) -> StepId {
        ids::runtime_class()
    }

    fn needs(&self) -> Vec<StepId> {
        self.needs.clone()
    }

    fn describe(&self) -> Description {
        Description {
            source: "node.k8s.io/v1".to_string(),
            commands: vec![],
            objects: vec!["RuntimeClass nvidia".to_string()],
            component: None,
            files: Vec::new(),
        }
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, Result<Observation, StepError>> {
        async move {
            let kc = ctx.kubeconfig()?;
            let found = cmds::get_object(&ctx.exec, kc, "runtimeclass", None, "nvidia")
                .await
                .map_err(|e| StepError::context("observing RuntimeClass nvidia", e))?;
            Ok(match found {
                None => Observation::missing("RuntimeClass nvidia is missing"),
                Some(rc) if rc["handler"] == "nvidia" => {
                    Observation::converged("RuntimeClass nvidia uses handler nvidia")
                }
                Some(rc) => Observation::drifted(format!(
                    "RuntimeClass nvidia uses handler {}",
                    rc["handler"]
                )),
            })
        }
        .boxed()
    }

    fn apply<'a>(
        &'a self,
        ctx: &'a Ctx,
        _seen: &'a Observation,
    ) -> BoxFuture<'a, Result<(), StepError>> {
        async move {
            let kc = ctx.kubeconfig()?;
            ctx.exec
                .run_async(cmds::apply_object(kc, &runtime_class_manifest()))
                .await
                .map(|_| ())
                .map_err(|e| StepError::context("applying RuntimeClass nvidia", e))
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn containerd_before_1_7_is_named_as_having_no_cdi() {
        let cases = [
            (
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3",
                Some("1.6.20~ds1"),
            ),
            (
                "containerd containerd.io 1.6.33 d2d58213f83a",
                Some("1.6.33"),
            ),
            ("containerd containerd.io 1.7.27 05044ec0a9a7", None),
            (
                "containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7193e4",
                None,
            ),
            ("something else", None),
        ];
        for (line, want) in cases {
            assert_eq!(containerd_without_cdi(line).as_deref(), want, "{line}");
        }
    }

    use super::*;

    #[test]
    fn containerd_dump_of_version_2_before_and_after_configure() {
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"runc\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        let stock = ContainerdGpu::parse(v2);
        assert_eq!(
            stock,
            ContainerdGpu {
                nvidia_runtime: false,
                cdi: None,
                default_runtime: Some("runc".into()),
            }
        );
        assert_eq!(stock.problems().len(), 2, "{:?}", stock.problems());
        let configured = format!(
            "{v2}[plugins.\"io.containerd.grpc.v1.cri\"]\n  enable_cdi = true\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia.options]\n    BinaryName = \"/usr/bin/nvidia-container-runtime\"\n"
        );
        let seen = ContainerdGpu::parse(&configured);
        assert!(seen.nvidia_runtime && seen.cdi == Some(true));
        assert!(seen.problems().is_empty(), "{:?}", seen.problems());
    }

    #[test]
    fn containerd_dump_of_version_3_and_a_default_nvidia_runtime() {
        let v3 = "version = 3\n[plugins]\n  [plugins.'io.containerd.cri.v1.runtime']\n    enable_cdi = true\n    cdi_spec_dirs = ['/etc/cdi', '/var/run/cdi']\n    [plugins.'io.containerd.cri.v1.runtime'.containerd]\n      default_runtime_name = 'nvidia'\n      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.nvidia]\n        runtime_type = 'io.containerd.runc.v2'\n";
        let seen = ContainerdGpu::parse(v3);
        assert!(seen.nvidia_runtime && seen.cdi == Some(true));
        assert_eq!(
            seen.problems(),
            ["the default runtime is nvidia (every CUDA pod would see every GPU of the node)"]
        );
        // Another plugin's `enable_cdi` or runtime table is not the CRI plugin's.
        let other = "[plugins.'io.containerd.other'.containerd.runtimes.nvidia]\n[plugins.'io.containerd.other']\n  enable_cdi = true\n";
        assert_eq!(ContainerdGpu::parse(other), ContainerdGpu::default());
        let off = v3.replace("enable_cdi = true", "enable_cdi = false");
        assert_eq!(ContainerdGpu::parse(&off).cdi, Some(false));
    }

    #[test]
    fn tasks_per_node_follow_its_gpus() {
        let node = |gpus| NodePlan {
            name: "kgf-worker".into(),
            role: super::super::spec::Role::Worker,
            gpus,
        };
        assert_eq!(NodeTask::for_node(&node(NodeGpus::All)).len(), 4);
        assert_eq!(
            NodeTask::for_node(&node(NodeGpus::Indices(vec![1]))).last(),
            Some(&NodeTask::DeviceNodes)
        );
    }

    #[test]
    fn apt_script_pins_every_package_when_a_version_is_given() {
        let s = apt_script(Some("1.18.1-1"));
        assert!(s.contains("apt-get install -y nvidia-container-toolkit=1.18.1-1 nvidia-container-toolkit-base=1.18.1-1 libnvidia-container-tools=1.18.1-1 libnvidia-container1=1.18.1-1\n"));
        assert!(apt_script(None).ends_with("apt-get install -y nvidia-container-toolkit\n"));
    }
}
