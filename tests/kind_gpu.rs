//! kind-gpu: rendered kind configs (golden files, checked by kind v0.33.0's own loader),
//! preflight on real-format tool outputs, and the command sequences of the kind steps that need a
//! GPU.
//!
//! Everything of the kind provider that needs no GPU runs against the real docker, kind and
//! kubelets of the real-node bed (tests/kind_real.rs). What is here needs a GPU, which CI does not
//! have: an NVIDIA driver, the container toolkit on the host and inside GPU nodes, GPUs handed to
//! workers. So `docker`, `kind`, `kubectl` (whose cluster would be a GPU kind cluster),
//! `nvidia-smi`, `nvidia-ctk`, `systemctl` and `sysctl` are the STAND-INS in
//! tests/support/standins/: they record every call and keep a small model of the world, so the
//! steps run through the real `Exec` layer and a second run sees what the first did. (The real
//! `nvidia-ctk`, built from its module, edits a kind-shaped containerd config in one test.) On a
//! GPU host, `kgf-up up --profile kind-gpu` and `kgf-up verify` check the same for real.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kgf_up::cluster::kind::{self, GpuLayout, KindPlan, KindSpec, ToolkitSource};
use kgf_up::exec::Exec;
use kgf_up::kube::Kubeconfig;
use kgf_up::preflight::{self, Options, Status};
use kgf_up::step::{Ctx, DynStep, State, Step};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn fixtures() -> PathBuf {
    Path::new(ROOT).join("tests/fixtures/kind")
}

// ---------------------------------------------------------------------------------------------
// Golden kind configs

/// Every layout for 0, 1, 2 and 4 GPUs: (file name, spec, host GPUs).
fn golden_cases() -> Vec<(String, KindSpec, u32)> {
    let mut cases = Vec::new();
    for gpus in [0u32, 1, 2, 4] {
        let explicit: Vec<Vec<u32>> = match gpus {
            0 => vec![],
            1 => vec![vec![0]],
            2 => vec![vec![0, 1]],
            _ => vec![vec![0, 1], vec![2, 3]],
        };
        for (name, layout, workers) in [
            ("one-worker", GpuLayout::OneWorker, 0),
            ("worker-per-gpu", GpuLayout::WorkerPerGpu, 0),
            ("explicit", GpuLayout::Explicit(explicit), 1),
        ] {
            let mut spec = KindSpec {
                workers,
                ..KindSpec::default()
            };
            spec.gpus.layout = layout;
            cases.push((format!("{name}-{gpus}gpu.yaml"), spec, gpus));
        }
    }
    // CPU-only workers beside a GPU worker: the real GPU operator would put operands on them.
    let spec = KindSpec {
        workers: 2,
        ..KindSpec::default()
    };
    cases.push(("one-worker-2gpu-2cpu.yaml".into(), spec, 2));
    cases.push(("networking-and-patches.yaml".into(), networking_spec(), 1));
    cases
}

/// Every `networking` key, the cgroup v1 kubeadm patch (two documents, one indented so it
/// renders quoted) and a containerd patch: the shape the real-node bed uses.
fn networking_spec() -> KindSpec {
    let mut spec = KindSpec {
        workers: 1,
        ..KindSpec::default()
    };
    spec.networking.pod_subnet = Some("198.18.0.0/16".into());
    spec.networking.service_subnet = Some("198.19.0.0/16".into());
    spec.networking.api_server_address = Some("127.0.0.1".into());
    spec.networking.api_server_port = Some(36443);
    spec.kubeadm_config_patches = vec![
        "kind: KubeletConfiguration\nfailCgroupV1: false\n".into(),
        "  kind: ClusterConfiguration\n  apiServer:\n    certSANs: [\"kgf.test\"]\n".into(),
    ];
    spec.containerd_config_patches = vec![
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  snapshotter = \"native\"\n".into(),
    ];
    spec
}

/// The GPU operator marks every kind node a GPU node (they share the host's PCI view), so each
/// node without GPU mounts must carry `nvidia.com/gpu.deploy.operands=false` or the operator's
/// device plugin and validator land where containerd has no nvidia runtime and never start.
#[test]
fn every_node_without_gpus_carries_the_no_operands_label() {
    for (file, spec, gpus) in golden_cases() {
        let rendered = kind::config::render(&spec, gpus).unwrap();
        let config: serde_json::Value = serde_saphyr::from_str(&rendered).unwrap();
        let nodes = config["nodes"].as_array().unwrap();
        let mut cpu_nodes = 0;
        for node in nodes {
            let labels = &node["labels"];
            let has_gpus = node.get("extraMounts").is_some();
            assert_eq!(
                labels["nvidia.com/gpu.present"] == "true",
                has_gpus,
                "{file}: only GPU nodes are labelled gpu.present"
            );
            if !has_gpus {
                cpu_nodes += 1;
                assert_eq!(
                    labels["nvidia.com/gpu.deploy.operands"], "false",
                    "{file}: a node without GPUs lacks the no-operands label: {node}"
                );
            } else {
                assert!(
                    labels.get("nvidia.com/gpu.deploy.operands").is_none(),
                    "{file}"
                );
            }
        }
        assert_eq!(
            cpu_nodes,
            1 + spec.workers as usize,
            "{file}: the control plane and every CPU worker"
        );
    }
}

/// Set KGF_UPDATE_GOLDEN=1 to rewrite the files, then review the diff against kind's v1alpha4
/// types (sigs.k8s.io/kind/pkg/apis/config/v1alpha4) before committing it.
#[test]
fn rendered_kind_configs_match_the_golden_files() {
    let update = std::env::var_os("KGF_UPDATE_GOLDEN").is_some();
    for (file, spec, gpus) in golden_cases() {
        let rendered = kind::config::render(&spec, gpus).unwrap();
        let path = fixtures().join(&file);
        if update {
            std::fs::write(&path, &rendered).unwrap();
        }
        let golden = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (KGF_UPDATE_GOLDEN=1 writes it)", path.display()));
        assert_eq!(rendered, golden, "{file} differs from the golden file");
    }
}

/// Runs scripts/kind-config-check (kind v0.33.0's own loader and validation, built by
/// `scripts/testbed build` outside the bed's namespace, where the Go proxy is reachable) over every
/// golden file and a deliberately broken config.
#[test]
fn kind_v0_33_config_loader_accepts_every_rendered_config() {
    let _env = lock();
    let bin =
        PathBuf::from(std::env::var_os("KGF_TESTBED_BIN").expect(
            "run inside the test bed (scripts/testbed test), which builds kind-config-check",
        ))
        .join("kind-config-check");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/testbed build",
        bin.display()
    );
    let out_dir = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = golden_cases()
        .into_iter()
        .map(|(f, _, _)| fixtures().join(f))
        .collect();
    let run = std::process::Command::new(&bin)
        .args(&files)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "kind rejected a config:\n{stdout}");
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        files.len()
    );
    assert!(
        stdout.contains("one-worker-4gpu.yaml: cluster \"kgf\", 2 nodes (1 workers)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("worker-per-gpu-4gpu.yaml: cluster \"kgf\", 5 nodes (4 workers)"),
        "{stdout}"
    );

    // The patches reach kind's kubeadm and containerd configs as kind merges them.
    let patched = fixtures().join("networking-and-patches.yaml");
    let run = std::process::Command::new(&bin)
        .arg("-kubeadm")
        .arg(&patched)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    for want in [
        "pods 198.18.0.0/16, services 198.19.0.0/16, 2 kubeadm and 2 containerd patches",
        "\nfailCgroupV1: false\n",
        "  podSubnet: 198.18.0.0/16\n",
        "  serviceSubnet: 198.19.0.0/16\n",
        "- kgf.test\n",
        "snapshotter = \"native\"",
        "config_path = \"/etc/containerd/certs.d\"",
    ] {
        assert!(stdout.contains(want), "no {want:?} in:\n{stdout}");
    }

    // The checker itself must be able to say no.
    let broken = out_dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(&files[4])
        .unwrap()
        .replace("extraMounts:", "extraMount:");
    std::fs::write(&broken, text).unwrap();
    let run = std::process::Command::new(&bin)
        .arg(&broken)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(!run.status.success());
    assert!(
        stdout.contains("field extraMount not found in type v1alpha4.Node"),
        "{stdout}"
    );
}

/// The real nvidia-ctk (v1.20.2, built from the Go module proxy by `scripts/testbed build`) runs the
/// exact `runtime configure` of step `kind/gpu/<node>/containerd` on a containerd config shaped
/// like a kind node's: what it writes (the top-level file importing its drop-in, as containerd
/// merges them) is what the step's observe wants, and a default of nvidia left by an earlier
/// `--set-as-default` is gone after the step's configure. The same step in a real kind node's
/// containerd: tests/kind_real.rs; a GPU is not needed for either.
#[test]
fn the_real_nvidia_ctk_writes_what_the_containerd_step_checks() {
    let bin = PathBuf::from(
        std::env::var_os("KGF_TESTBED_BIN")
            .expect("run inside the test bed (scripts/testbed test), which builds nvidia-ctk"),
    )
    .join("nvidia-ctk");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/testbed build",
        bin.display()
    );
    // The step's own command, as `plan` shows it: `docker exec NODE nvidia-ctk ARGS...`.
    let plan = KindPlan::new(KindSpec::default(), 1).unwrap();
    let step = plan
        .steps(&[])
        .into_iter()
        .find(|s| {
            s.id() == kind::ids::gpu_node("kgf-worker", kind::NodeTask::ContainerdRuntime.slug())
        })
        .unwrap();
    let shown = step.describe().commands[0].clone();
    let args: Vec<String> = shown
        .strip_prefix("docker exec kgf-worker nvidia-ctk ")
        .unwrap_or_else(|| panic!("{shown}"))
        .split(' ')
        .map(str::to_string)
        .collect();
    assert!(!args.iter().any(|a| a == "--set-as-default"), "{shown}");
    // The version line the toolkit step observes, as the real binary prints it.
    let version = std::process::Command::new(&bin)
        .arg("--version")
        .output()
        .unwrap();
    assert_eq!(
        preflight::parse::nvidia_ctk_version(&String::from_utf8_lossy(&version.stdout)),
        Some(preflight::parse::Version::new(1, 20, 2))
    );

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let drop_in = dir.path().join("conf.d/99-nvidia.toml");
    std::fs::copy(fixtures().join("containerd/config.toml"), &config).unwrap();
    let configure = |extra: &[&str]| {
        let out = std::process::Command::new(&bin)
            .args(&args)
            .args(extra)
            .arg(format!("--config={}", config.display()))
            .arg(format!("--drop-in-config={}", drop_in.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "nvidia-ctk failed: {out:?}");
        // containerd reads the top-level file, then its imports over it.
        let top = std::fs::read_to_string(&config).unwrap();
        let imports = format!(
            "imports = [\"{}/*.toml\"]",
            dir.path().join("conf.d").display()
        );
        assert!(top.contains(&imports), "no import of the drop-in:\n{top}");
        kind::ContainerdGpu::parse(&format!(
            "{top}\n{}",
            std::fs::read_to_string(&drop_in).unwrap()
        ))
    };

    let seen = configure(&[]);
    assert!(
        seen.problems().is_empty(),
        "{seen:?}: {:?}",
        seen.problems()
    );
    assert_eq!(seen.default_runtime.as_deref(), Some("runc"));

    // Someone ran it with --set-as-default: drifted, and the step's configure puts runc back.
    let seen = configure(&["--set-as-default"]);
    assert_eq!(
        seen.problems(),
        ["the default runtime is nvidia (every CUDA pod would see every GPU of the node)"]
    );
    let seen = configure(&[]);
    assert!(
        seen.problems().is_empty(),
        "{seen:?}: {:?}",
        seen.problems()
    );
}

// ---------------------------------------------------------------------------------------------
// Stand-in harness

static ENV: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    ENV.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stand-in world: its state directory, PATH with the stand-ins first, and the call log.
struct World {
    _guard: MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    old_path: String,
}

impl World {
    fn new(host_gpus: u32) -> World {
        let guard = lock();
        let dir = tempfile::tempdir().unwrap();
        let old_path = std::env::var("PATH").unwrap_or_default();
        let standins = Path::new(ROOT).join("tests/support/standins");
        // SAFETY: every test that reads or writes the environment holds ENV.
        unsafe {
            std::env::set_var("PATH", format!("{}:/usr/bin:/bin", standins.display()));
            std::env::set_var("KGF_STANDIN_STATE", dir.path());
        }
        let world = World {
            _guard: guard,
            dir,
            old_path,
        };
        world.write("host/gpus", &host_gpus.to_string());
        world.write("calls.log", "");
        world
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    /// Every call since the last `take_calls`, as argv vectors.
    fn take_calls(&self) -> Vec<Vec<String>> {
        let text = self.read("calls.log");
        self.write("calls.log", "");
        text.split('\x1e')
            .filter(|r| !r.is_empty())
            .map(|r| {
                r.split('\x1f')
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .collect()
    }

    fn ctx(&self) -> Ctx {
        Ctx::new(
            Exec::new(),
            self.path("work"),
            Duration::from_secs(5),
            "kgf-system".into(),
        )
    }
}

impl Drop for World {
    fn drop(&mut self) {
        // SAFETY: ENV is still held (the guard drops after this).
        unsafe {
            std::env::set_var("PATH", &self.old_path);
            std::env::remove_var("KGF_STANDIN_STATE");
        }
    }
}

/// A call as one line; multi-line scripts show as `<script: LAST LINE>`, the work dir as `<W>`.
fn show(call: &[String], work: &Path) -> String {
    call.iter()
        .map(|a| {
            let a = a.replace(&work.display().to_string(), "<W>");
            match a.trim_end().rsplit_once('\n') {
                Some((_, last)) => format!("<script: {last}>"),
                None => a,
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether a call only reads (the vocabulary of observe); everything else changes something.
fn is_read(call: &[String]) -> bool {
    // Writes kgf-up's own kubeconfig file in the work dir, nothing of the user's.
    if call.starts_with(&["kind".into(), "export".into(), "kubeconfig".into()])
        && call.iter().any(|a| a.starts_with("--kubeconfig="))
    {
        return true;
    }
    let args: Vec<&str> = call
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--kubeconfig=") && !a.starts_with("--context="))
        .collect();
    match args.as_slice() {
        ["kind", "get", ..] | ["kind", "version"] => true,
        ["kubectl", "get", ..] | ["kubectl", "wait", ..] | ["kubectl", "version", ..] => true,
        ["kubectl", "config", "current-context"] => true,
        ["docker", "info", ..] | ["docker", "inspect", ..] | ["docker", "ps", ..] => true,
        ["docker", "exec", _, rest @ ..] => matches!(
            rest,
            ["cat", _]
                | ["ls", ..]
                | ["nvidia-ctk", "--version"]
                | ["containerd", "config", "dump"]
                | ["containerd", "--version"]
                | ["systemctl", "is-active", "containerd"]
        ),
        ["nvidia-smi", ..] | ["nvidia-ctk", "--version"] => true,
        _ => false,
    }
}

/// What the runner does with each step: observe; apply and wait unless converged; observe again
/// (which must then be converged). Returns each step's first observation.
async fn converge(steps: &[DynStep], ctx: &Ctx) -> Vec<(String, State, String)> {
    let mut seen = Vec::new();
    for step in steps {
        let obs = step
            .observe(ctx)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", step.id()));
        if !obs.is_converged() {
            step.apply(ctx, &obs)
                .await
                .unwrap_or_else(|e| panic!("{} apply: {e} (fix: {:?})", step.id(), e.fix));
            step.wait(ctx)
                .await
                .unwrap_or_else(|e| panic!("{} wait: {e}", step.id()));
            let again = step.observe(ctx).await.unwrap();
            assert!(
                again.is_converged(),
                "{} after apply: {}",
                step.id(),
                again.reason
            );
        }
        seen.push((step.id().to_string(), obs.state, obs.reason));
    }
    seen
}

fn changes(world: &World, calls: &[Vec<String>]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| !is_read(c))
        .map(|c| show(c, &world.path("work")))
        .collect()
}

fn per_gpu_spec() -> KindSpec {
    let mut spec = KindSpec::default();
    spec.gpus.layout = GpuLayout::WorkerPerGpu;
    spec
}

const KUBECTL_APPLY: &str = "kubectl --kubeconfig=<W>/kind-kgf.kubeconfig --context=kind-kgf apply --server-side --field-manager=kgf-up --force-conflicts -f -";

fn hosts_write(node: &str) -> String {
    format!(
        "docker exec -i {node} sh -c mkdir -p \"$1\" && cat > \"$1/hosts.toml\" sh /etc/containerd/certs.d/localhost:5001"
    )
}

fn runtime_setup(node: &str) -> Vec<String> {
    vec![
        format!(
            "docker exec {node} nvidia-ctk runtime configure --runtime=containerd --config-source=file --cdi.enabled"
        ),
        format!("docker exec {node} systemctl restart containerd"),
    ]
}

fn gpu_node_setup(node: &str, remove: u32) -> Vec<String> {
    let mut v = vec![
        format!("docker exec {node} bash -c <script: apt-get install -y nvidia-container-toolkit>"),
        format!("docker exec {node} ln -sf /sbin/ldconfig /sbin/ldconfig.real"),
    ];
    v.extend(runtime_setup(node));
    v.push(format!(
        "docker exec {node} bash -c <script: mount --bind /root/gpu-params /proc/driver/nvidia/params>"
    ));
    v.push(format!(
        "docker exec {node} bash -c while umount /dev/nvidia{remove} 2>/dev/null; do :; done; rm -f /dev/nvidia{remove}"
    ));
    v
}

// ---------------------------------------------------------------------------------------------
// Command sequences

#[tokio::test(flavor = "multi_thread")]
async fn fresh_workstation_runs_every_step_once_then_nothing() {
    let world = World::new(2);
    let ctx = world.ctx();
    let plan = KindPlan::new(per_gpu_spec(), 2).unwrap();
    let steps = plan.steps(&[]);

    let seen = converge(&steps, &ctx).await;
    assert!(
        seen.iter().all(|(_, s, _)| *s != State::Converged),
        "{seen:#?}"
    );
    let mut expected = vec![
        "kind create cluster --name kgf --config=<W>/kind-kgf.yaml --kubeconfig=<W>/kind-kgf.kubeconfig".to_string(),
        KUBECTL_APPLY.to_string(),
        "kind export kubeconfig --name kgf".to_string(),
        "docker run -d --restart=always -p 127.0.0.1:5001:5000 --network bridge --name kind-registry registry:3".to_string(),
        "docker network connect kind kind-registry".to_string(),
        hosts_write("kgf-control-plane"),
        hosts_write("kgf-worker"),
        hosts_write("kgf-worker2"),
        KUBECTL_APPLY.to_string(),
    ];
    expected.extend(gpu_node_setup("kgf-worker", 1));
    expected.extend(gpu_node_setup("kgf-worker2", 0));
    expected.push(KUBECTL_APPLY.to_string());
    assert_eq!(changes(&world, &world.take_calls()), expected);

    // What the applies left behind.
    assert_eq!(
        std::fs::read_to_string(world.path("work/kind-kgf.yaml")).unwrap(),
        plan.config
    );
    assert!(
        world
            .read("kube/configmap/kube-public/kgf-up-kind-config.json")
            .contains("nvidia-container-devices/1")
    );
    assert!(
        world
            .read("kube/configmap/kube-public/local-registry-hosting.json")
            .contains("localhost:5001")
    );
    assert!(
        world
            .read("kube/runtimeclass/_/nvidia.json")
            .contains("\"handler\":\"nvidia\"")
    );
    assert_eq!(
        world.read("nodes/kgf-worker/fs/etc/containerd/certs.d/localhost:5001/hosts.toml"),
        "[host.\"http://kind-registry:5000\"]\n"
    );
    assert!(world.path("nodes/kgf-worker2/fs/dev/nvidia1").exists());
    assert!(!world.path("nodes/kgf-worker2/fs/dev/nvidia0").exists());
    assert!(ctx.kubeconfig.get().is_some());

    // Converged: a second run observes only.
    let ctx = world.ctx();
    let seen = converge(&steps, &ctx).await;
    for (id, state, reason) in &seen {
        assert_eq!(*state, State::Converged, "{id}: {reason}");
    }
    let calls = world.take_calls();
    assert!(!calls.is_empty());
    assert_eq!(changes(&world, &calls), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_containerd_lost_the_nvidia_runtime_gets_only_that_back() {
    let world = World::new(2);
    let plan = KindPlan::new(per_gpu_spec(), 2).unwrap();
    let steps = plan.steps(&[]);
    converge(&steps, &world.ctx()).await;
    world.take_calls();

    // The cluster exists and one node's containerd lost the nvidia runtime. (A missing registry
    // container, with the real docker: tests/kind_real.rs.)
    let config = world.read("nodes/kgf-worker2/fs/etc/containerd/config.toml");
    let stock = config
        .split("\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.nvidia]")
        .next()
        .unwrap();
    world.write("nodes/kgf-worker2/fs/etc/containerd/config.toml", stock);

    let seen = converge(&steps, &world.ctx()).await;
    let not_converged: Vec<&str> = seen
        .iter()
        .filter(|(_, s, _)| *s != State::Converged)
        .map(|(id, _, _)| id.as_str())
        .collect();
    assert_eq!(not_converged, ["kind/gpu/kgf-worker2/containerd"]);
    assert_eq!(
        changes(&world, &world.take_calls()),
        runtime_setup("kgf-worker2")
    );
}

/// The CDI path keeps runc containerd's default: a node someone set to default to nvidia (every
/// CUDA image's `NVIDIA_VISIBLE_DEVICES=all` would then reach every GPU of the node) is drifted,
/// and configuring again without `--set-as-default` puts runc back.
#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_containerd_defaults_to_nvidia_is_put_back_on_runc() {
    let world = World::new(1);
    let plan = KindPlan::new(KindSpec::default(), 1).unwrap();
    let steps = plan.steps(&[]);
    converge(&steps, &world.ctx()).await;
    world.take_calls();

    let config = "nodes/kgf-worker/fs/etc/containerd/config.toml";
    world.write(
        config,
        &world.read(config).replace(
            "default_runtime_name = \"runc\"",
            "default_runtime_name = \"nvidia\"",
        ),
    );
    let seen = converge(&steps, &world.ctx()).await;
    let drifted: Vec<(&str, State, &str)> = seen
        .iter()
        .filter(|(_, s, _)| *s != State::Converged)
        .map(|(id, s, r)| (id.as_str(), *s, r.as_str()))
        .collect();
    assert_eq!(
        drifted,
        [(
            "kind/gpu/kgf-worker/containerd",
            State::Drifted,
            "containerd in kgf-worker: the default runtime is nvidia (every CUDA pod would see every GPU of the node)"
        )]
    );
    assert_eq!(
        changes(&world, &world.take_calls()),
        runtime_setup("kgf-worker")
    );
    assert!(
        !world
            .read(config)
            .contains("default_runtime_name = \"nvidia\"")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restarted_node_gets_its_mask_and_device_removal_back() {
    let world = World::new(2);
    let plan = KindPlan::new(per_gpu_spec(), 2).unwrap();
    let steps = plan.steps(&[]);
    converge(&steps, &world.ctx()).await;
    world.take_calls();

    // A restart of the node container undoes the bind mount and brings /dev/nvidia1 back.
    world.write(
        "nodes/kgf-worker/fs/proc/driver/nvidia/params",
        "ModifyDeviceFiles: 1\n",
    );
    world.write("nodes/kgf-worker/fs/dev/nvidia1", "");
    let seen = converge(&steps, &world.ctx()).await;
    let drifted: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(_, s, _)| *s != State::Converged)
        .map(|(id, _, r)| (id.as_str(), r.as_str()))
        .collect();
    assert_eq!(drifted.len(), 2, "{drifted:?}");
    assert_eq!(
        drifted[1].1,
        "kgf-worker has device nodes of GPUs it was not given: /dev/nvidia1"
    );
    assert_eq!(
        changes(&world, &world.take_calls()),
        gpu_node_setup("kgf-worker", 1)[4..].to_vec()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_toolkit_comes_from_local_debs() {
    let world = World::new(1);
    let debs = world.path("debs");
    for f in [
        "nvidia-container-toolkit_1.18.1-1_amd64.deb",
        "nvidia-container-toolkit-base_1.18.1-1_amd64.deb",
        "libnvidia-container-tools_1.18.1-1_amd64.deb",
        "libnvidia-container1_1.18.1-1_amd64.deb",
    ] {
        world.write(&format!("debs/{f}"), "!<arch>\n");
    }
    let mut spec = KindSpec {
        toolkit: ToolkitSource::Debs { path: debs.clone() },
        select_context: false,
        ..KindSpec::default()
    };
    spec.registry.enabled = false;
    let steps = KindPlan::new(spec, 1).unwrap().steps(&[]);
    converge(&steps, &world.ctx()).await;
    let changed = changes(&world, &world.take_calls());
    let toolkit: Vec<&String> = changed.iter().filter(|c| c.contains("debs")).collect();
    assert_eq!(
        toolkit,
        [
            &format!(
                "docker cp {}/. kgf-worker:/tmp/kgf-up-nvidia-debs",
                debs.display()
            ),
            &"docker exec kgf-worker bash -c <script: rm -rf /tmp/kgf-up-nvidia-debs>".to_string(),
        ]
    );
    assert!(
        world
            .path(
                "nodes/kgf-worker/fs/tmp/kgf-up-nvidia-debs/libnvidia-container1_1.18.1-1_amd64.deb"
            )
            .exists()
    );
    assert!(
        !changed
            .iter()
            .any(|c| c.contains("apt-get") || c.contains("kind-registry") || c.contains("export"))
    );
}

/// Regression (issue 24): a failed `kind create cluster` showed the last 20 lines of stderr (a
/// kubeadm stack trace) without kind's `ERROR:` line, said "creating the kind cluster" twice, and
/// pointed at `kind delete` for nodes kind had already removed.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_create_hid_kind_s_error_line() {
    let world = World::new(0);
    let mut stderr = String::from(
        " ✓ Ensuring node image (kindest/node:v1.36.4) 🖼\n ✗ Starting control-plane 🕹️\nDeleted nodes: [\"kgf-control-plane\"]\nERROR: failed to create cluster: failed to init node with kubeadm: command \"docker exec --privileged kgf-control-plane kubeadm init --config=/kind/kubeadm.conf --skip-token-print --v=6\" failed with error: exit status 1\nCommand Output: I1207 21:40:01.000000     211 initconfiguration.go:261] loading configuration from \"/kind/kubeadm.conf\"\n[wait-control-plane] Waiting for the kubelet to boot up the control plane\nerror execution phase wait-control-plane: could not initialize a Kubernetes cluster\n",
    );
    for i in 0..40 {
        stderr.push_str(&format!(
            "k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow.(*Runner).Run.func1\n\t/go/src/k8s.io/kubernetes/cmd/kubeadm/app/cmd/phases/workflow/runner.go:{}\n",
            200 + i
        ));
    }
    world.write("host/kind-create-fails", &stderr);
    let plan = KindPlan::new(KindSpec::default(), 0).unwrap();
    let steps = plan.steps(&[]);
    let ctx = world.ctx();
    let seen = steps[0].observe(&ctx).await.unwrap();
    let err = steps[0].apply(&ctx, &seen).await.unwrap_err();
    assert!(
        err.message
            .contains("ERROR: failed to create cluster: failed to init node with kubeadm"),
        "{}",
        err.message
    );
    assert_eq!(
        err.message.matches("creating the kind cluster").count(),
        1,
        "{}",
        err.message
    );
    let fix = err.fix.unwrap();
    assert!(
        fix.starts_with("kind has already removed the nodes it made"),
        "{fix}"
    );
    assert!(
        fix.contains("kind create cluster --retain --name kgf --config="),
        "{fix}"
    );
}

// ---------------------------------------------------------------------------------------------
// Preflight

/// A fresh GPU workstation: driver and toolkit installed, docker not yet using the toolkit.
fn workstation(world: &World) -> Options {
    let info = std::fs::read_to_string(fixtures().join("preflight/docker-info-nvidia.json"))
        .unwrap()
        .replace(
            "\"DefaultRuntime\":\"nvidia\"",
            "\"DefaultRuntime\":\"runc\"",
        )
        .replace("\"nvidia\":{\"path\":\"nvidia-container-runtime\"},", "");
    world.write("host/docker-info.json", &info);
    world.write(
        "host/nvidia-smi.csv",
        &std::fs::read_to_string(fixtures().join("preflight/nvidia-smi-2gpu.csv")).unwrap(),
    );
    world.write("host/nvidia-ctk-version", "1.18.1");
    world.write(
        "host/config.toml",
        &std::fs::read_to_string(fixtures().join("preflight/nvidia-container-runtime-config.toml"))
            .unwrap(),
    );
    world.write("host/sys/fs/inotify/max_user_watches", "65536\n");
    world.write("host/sys/fs/inotify/max_user_instances", "128\n");
    world.write("host/sys/kernel/osrelease", "6.8.0-87-generic\n");
    world.write("host/dev/null", "");
    // The registry check binds the port for real: one that is free now.
    let mut kind = KindSpec::default();
    kind.registry.host_port = free_port();
    Options {
        needs_gpu: true,
        kind: Some(kind),
        proc_sys: world.path("host/sys"),
        toolkit_config: world.path("host/config.toml"),
        sysctl_conf: world.path("host/99-kgf-up-inotify.conf"),
        gpu_container_probe: false,
        dev: world.path("host/dev"),
        smoke_image: Some(kgf_up::profile::Validation::default().cuda_image),
        pipeline_gpu: true,
        min_free_gib: 1,
        root: true,
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (the kernel's pick).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn by_name<'a>(report: &'a preflight::Report, name: &str) -> &'a preflight::Check {
    report
        .checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_on_a_fresh_gpu_workstation_names_each_problem_and_its_fix() {
    let world = World::new(2);
    let opts = workstation(&world);
    let report = preflight::run(&Exec::new(), &opts).await;

    let engine = by_name(&report, "container engine");
    assert_eq!(
        (engine.status, engine.found.as_str()),
        (Status::Ok, "docker 28.3.3")
    );
    assert_eq!(by_name(&report, "kind").found, "0.33.0");
    assert_eq!(by_name(&report, "kubectl").status, Status::Ok);
    let helm = by_name(&report, "helm");
    assert_eq!(
        (helm.status, helm.found.as_str()),
        (Status::Fail, "not found on PATH")
    );
    let gpus = by_name(&report, "NVIDIA GPUs");
    assert_eq!(gpus.status, Status::Ok);
    assert!(
        gpus.found
            .starts_with("2 GPU(s), driver 570.172.08: 0: NVIDIA RTX A6000 (GPU-9a1c4f0e"),
        "{}",
        gpus.found
    );
    assert_eq!(report.facts.gpus.len(), 2);
    assert_eq!(
        by_name(&report, "NVIDIA container toolkit").found,
        "1.18.1 (kgf-up masks /proc/driver/nvidia/params in GPU nodes)"
    );
    let runtime = by_name(&report, "docker default runtime");
    assert_eq!(runtime.status, Status::Fail);
    assert_eq!(runtime.found, "runc (no nvidia runtime registered)");
    assert_eq!(
        runtime.fix.as_ref().unwrap().shown,
        "nvidia-ctk runtime configure --runtime=docker --set-as-default && systemctl restart docker"
    );
    let mounts = by_name(&report, "GPU requests as volume mounts");
    assert_eq!(mounts.status, Status::Fail);
    assert_eq!(
        mounts.fix.as_ref().unwrap().shown,
        "nvidia-ctk config --set accept-nvidia-visible-devices-as-volume-mounts=true --in-place && systemctl restart docker"
    );
    let envvar = by_name(&report, "GPUs only by request");
    assert_eq!(
        (envvar.status, envvar.found.as_str()),
        (Status::Warn, "true (the default)")
    );
    assert_eq!(
        envvar.fix.as_ref().unwrap().shown,
        "nvidia-ctk config --set accept-nvidia-visible-devices-envvar-when-unprivileged=false --in-place"
    );
    // Driver 570 runs the CUDA 12.5 sample, not the pipeline's CUDA 13 image.
    let driver = by_name(&report, "driver for the CUDA images");
    assert_eq!(driver.status, Status::Warn);
    assert_eq!(
        driver.found,
        "driver 570.172.08: runs the CUDA sample verify runs (nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04); too old for the pipeline's model steps on the GPU"
    );
    assert!(
        driver
            .needed
            .contains("580.65.6 or later for the pipeline's model steps on the GPU (CUDA 13)"),
        "{}",
        driver.needed
    );
    assert!(driver.fix.as_ref().unwrap().shown.contains("nvidia:580"));
    let host = by_name(&report, "not WSL2");
    assert_eq!(
        (host.status, host.found.as_str()),
        (Status::Ok, "kernel 6.8.0-87-generic")
    );
    let resources = by_name(&report, "docker CPUs and memory");
    assert_eq!(
        (resources.status, resources.found.as_str()),
        (Status::Ok, "32 CPUs, 125 GiB")
    );
    let port = opts.kind.as_ref().unwrap().registry.host_port;
    assert_eq!(
        by_name(&report, "registry host port").found,
        format!("{port} free")
    );
    assert_eq!(by_name(&report, "inotify watches").status, Status::Warn);
    assert_eq!(
        by_name(&report, "toolkit for kind GPU nodes").status,
        Status::Warn
    );
    assert!(by_name(&report, "free disk").found.contains("GiB free on"));
    assert_eq!(report.status(), Status::Fail);
    let text = report.render();
    assert!(text.contains("FAIL docker default runtime"), "{text}");
    assert!(
        text.contains("fix (--fix runs it): nvidia-ctk runtime configure"),
        "{text}"
    );

    // Doctor without --fix reads only.
    let calls = world.take_calls();
    assert!(calls.iter().all(|c| is_read(c)), "{calls:?}");

    // The container probe waits for the checks it depends on.
    let probe = Options {
        gpu_container_probe: true,
        ..opts.clone()
    };
    let report = preflight::run(&Exec::new(), &probe).await;
    assert_eq!(
        by_name(&report, "GPU inside a container").found,
        "not tried: fix the checks above first"
    );
    assert!(
        !world
            .take_calls()
            .iter()
            .any(|c| c[..2] == ["docker", "run"])
    );

    // As the first step of `up`: failed, and apply stops the run with the fixes (exit code 3).
    let step = preflight::PreflightStep {
        options: opts.clone(),
    };
    let ctx = world.ctx();
    let obs = step.observe(&ctx).await.unwrap();
    assert_eq!(obs.state, State::Failed);
    assert!(
        obs.reason.contains("FAIL docker default runtime"),
        "{}",
        obs.reason
    );
    let err = step.apply(&ctx, &obs).await.unwrap_err();
    assert_eq!(err.kind, kgf_up::step::ErrorKind::Preflight);
    assert!(err.fix.unwrap().contains("kgf-up doctor --fix"));

    // Not root: the shown fixes carry sudo, and a paste-able pipe for tee's input.
    let conf = opts.sysctl_conf.display().to_string();
    let report = preflight::run(
        &Exec::new(),
        &Options {
            root: false,
            ..opts
        },
    )
    .await;
    let shown = |name| by_name(&report, name).fix.as_ref().unwrap().shown.clone();
    assert_eq!(
        shown("inotify watches"),
        format!(
            "printf 'fs.inotify.max_user_watches = 524288\\nfs.inotify.max_user_instances = 8192\\n' | sudo tee {conf} && sudo sysctl --load {conf}"
        )
    );
    assert_eq!(
        shown("docker default runtime"),
        "sudo nvidia-ctk runtime configure --runtime=docker --set-as-default && sudo systemctl restart docker"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_fix_applies_each_host_fix_once_and_restarts_docker_once() {
    let world = World::new(2);
    let opts = workstation(&world);
    let exec = Exec::new();
    let report = preflight::run(&exec, &opts).await;
    world.take_calls();

    // Refused consent changes nothing.
    let fixed = preflight::apply_fixes(&exec, &report, true, &mut |_| false)
        .await
        .unwrap();
    assert!(fixed.is_empty());
    assert!(world.take_calls().is_empty());

    let mut asked = Vec::new();
    let fixed = preflight::apply_fixes(&exec, &report, true, &mut |c| {
        asked.push(c.name);
        true
    })
    .await
    .unwrap();
    assert_eq!(
        fixed,
        [
            "docker default runtime",
            "GPU requests as volume mounts",
            "GPUs only by request",
            "inotify watches"
        ]
    );
    assert_eq!(asked, fixed, "the shared inotify fix is offered once");
    let calls: Vec<String> = world.take_calls().iter().map(|c| c.join(" ")).collect();
    let conf = opts.sysctl_conf.display().to_string();
    assert_eq!(
        calls,
        [
            "nvidia-ctk runtime configure --runtime=docker --set-as-default".to_string(),
            "nvidia-ctk config --set accept-nvidia-visible-devices-as-volume-mounts=true --in-place".to_string(),
            "nvidia-ctk config --set accept-nvidia-visible-devices-envvar-when-unprivileged=false --in-place".to_string(),
            format!("sysctl --load {conf}"),
            "systemctl restart docker".to_string(),
        ]
    );
    assert_eq!(
        std::fs::read_to_string(&opts.sysctl_conf).unwrap(),
        "fs.inotify.max_user_watches = 524288\nfs.inotify.max_user_instances = 8192\n"
    );

    let probe = Options {
        gpu_container_probe: true,
        ..opts.clone()
    };
    let after = preflight::run(&exec, &probe).await;
    let listed = by_name(&after, "GPU inside a container");
    assert_eq!(
        (listed.status, listed.found.as_str()),
        (Status::Ok, "2 GPU(s) listed")
    );
    assert!(world.take_calls().iter().any(|c| c.join(" ")
        == format!("docker run --rm -v /dev/null:/var/run/nvidia-container-devices/all --entrypoint nvidia-smi {} -L", kind::DEFAULT_NODE_IMAGE)));
    for name in [
        "docker default runtime",
        "GPU requests as volume mounts",
        "GPUs only by request",
        "inotify watches",
        "inotify instances",
    ] {
        assert_eq!(
            by_name(&after, name).status,
            Status::Ok,
            "{name}: {}",
            by_name(&after, name).found
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_without_docker_daemon_or_driver_says_what_to_do() {
    let world = World::new(0);
    let opts = workstation(&world);
    std::fs::remove_file(world.path("host/docker-info.json")).unwrap();
    std::fs::remove_file(world.path("host/nvidia-smi.csv")).unwrap();
    let report = preflight::run(&Exec::new(), &opts).await;
    let engine = by_name(&report, "container engine");
    assert_eq!(engine.status, Status::Fail);
    assert!(
        engine.found.contains("Cannot connect to the Docker daemon"),
        "{}",
        engine.found
    );
    assert_eq!(
        engine.fix.as_ref().unwrap().shown,
        "sudo systemctl enable --now docker"
    );
    let gpus = by_name(&report, "NVIDIA GPUs");
    assert_eq!(gpus.status, Status::Fail);
    assert!(
        gpus.found.contains("NVIDIA-SMI has failed"),
        "{}",
        gpus.found
    );
    assert_eq!(
        by_name(&report, "docker default runtime").found,
        "unknown (docker not reachable)"
    );
    assert!(report.facts.gpus.is_empty());
}

/// Regression (issue 24): on a cgroup v1 host kubelet 1.36 refuses to start unless told
/// `failCgroupV1: false`, and doctor did not look: it reads `docker info`'s CgroupVersion and
/// names the kubeadm patch, which the profile can now carry.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_did_not_see_a_cgroup_v1_host() {
    let world = World::new(0);
    let mut opts = workstation(&world);
    opts.needs_gpu = false;
    let report = preflight::run(&Exec::new(), &opts).await;
    assert_eq!(by_name(&report, "cgroup version").status, Status::Ok);

    let v1 = world
        .read("host/docker-info.json")
        .replace("\"CgroupVersion\":\"2\"", "\"CgroupVersion\":\"1\"");
    world.write("host/docker-info.json", &v1);
    let report = preflight::run(&Exec::new(), &opts).await;
    let cgroup = by_name(&report, "cgroup version");
    assert_eq!(cgroup.status, Status::Fail, "{}", cgroup.found);
    assert!(
        cgroup.found.contains("kubelet 1.36 refuses"),
        "{}",
        cgroup.found
    );
    let fix = &cgroup.fix.as_ref().unwrap().shown;
    assert!(
        fix.contains("cluster.kind.kubeadm_config_patches=[\"kind: KubeletConfiguration\\nfailCgroupV1: false\"]"),
        "{fix}"
    );

    let mut patched = opts.clone();
    patched.kind.as_mut().unwrap().kubeadm_config_patches =
        vec!["kind: KubeletConfiguration\nfailCgroupV1: false\n".into()];
    let report = preflight::run(&Exec::new(), &patched).await;
    assert_eq!(by_name(&report, "cgroup version").status, Status::Warn);
}

/// Regression (issue 24): doctor warned that the toolkit inside GPU nodes needs internet on a
/// host without GPUs, where the cluster has no GPU node and nothing is installed in one.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_warned_about_the_node_toolkit_with_0_gpus() {
    let world = World::new(0);
    let mut opts = workstation(&world);
    opts.needs_gpu = false;
    std::fs::remove_file(world.path("host/nvidia-smi.csv")).unwrap();
    let report = preflight::run(&Exec::new(), &opts).await;
    assert!(report.facts.gpus.is_empty());
    assert!(
        !report
            .checks
            .iter()
            .any(|c| c.name == "toolkit for kind GPU nodes"),
        "{}",
        report.render()
    );
    // With GPUs the check is there.
    let report = preflight::run(&Exec::new(), &workstation(&world)).await;
    assert_eq!(
        by_name(&report, "toolkit for kind GPU nodes").status,
        Status::Warn
    );
}

/// The built-in `kind` profile plans no GPU: doctor checks Docker, the tools and the host's
/// limits, and nothing of the NVIDIA setup (here absent altogether), and passes.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_for_the_kind_profile_checks_no_nvidia_setup() {
    let world = World::new(0);
    let mut opts = workstation(&world);
    std::fs::remove_file(world.path("host/nvidia-smi.csv")).unwrap();
    std::fs::remove_file(world.path("host/config.toml")).unwrap();
    let profile = kgf_up::load::load("kind", &[]).unwrap().profile;
    let from_profile = kgf_up::cluster::preflight_options(&profile);
    opts.needs_gpu = from_profile.needs_gpu;
    opts.kind = from_profile.kind;
    let report = preflight::run(&Exec::new(), &opts).await;
    let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
    assert!(
        names
            .iter()
            .all(|n| !n.contains("NVIDIA") && !n.contains("GPU") && *n != "docker default runtime"),
        "{names:?}"
    );
    for wanted in [
        "container engine",
        "kind",
        "helm",
        "kubectl",
        "cgroup version",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
    }
    // The stand-in world has no helm; nothing else fails (inotify is only a warning).
    assert!(
        report.failed().all(|c| c.name == "helm"),
        "{}",
        report.render()
    );
}

/// A host whose only problem is a warning (inotify limits, the toolkit handing GPUs to any
/// container that names them) is fixed by `--fix` too.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_fix_fixes_a_host_whose_only_problems_are_warnings() {
    let world = World::new(2);
    let opts = workstation(&world);
    let exec = Exec::new();
    // docker already on the nvidia runtime, volume mounts accepted.
    for args in [
        &[
            "runtime",
            "configure",
            "--runtime=docker",
            "--set-as-default",
        ][..],
        &[
            "config",
            "--set",
            "accept-nvidia-visible-devices-as-volume-mounts=true",
            "--in-place",
        ],
    ] {
        let out = std::process::Command::new("nvidia-ctk")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    // helm installed (the only tool the stand-ins lack).
    world.write("bin/helm", "#!/bin/sh\necho v3.22.0+g1a2b3c4\n");
    std::fs::set_permissions(
        world.path("bin/helm"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        world.path("bin").display(),
        std::env::var("PATH").unwrap()
    );
    // SAFETY: the world holds ENV; its drop restores PATH.
    unsafe { std::env::set_var("PATH", path) };
    let report = preflight::run(&exec, &opts).await;
    let not_ok: Vec<(&str, Status)> = report
        .checks
        .iter()
        .filter(|c| c.status != Status::Ok)
        .map(|c| (c.name, c.status))
        .collect();
    assert_eq!(
        not_ok,
        [
            ("driver for the CUDA images", Status::Warn),
            ("GPUs only by request", Status::Warn),
            ("toolkit for kind GPU nodes", Status::Warn),
            ("inotify watches", Status::Warn),
            ("inotify instances", Status::Warn),
        ]
    );
    assert_eq!(report.status(), Status::Warn);
    assert!(report.auto_fixable());
    world.take_calls();
    let fixed = preflight::apply_fixes(&exec, &report, true, &mut |_| true)
        .await
        .unwrap();
    assert_eq!(fixed, ["GPUs only by request", "inotify watches"]);
    let calls: Vec<String> = world.take_calls().iter().map(|c| c.join(" ")).collect();
    assert!(
        !calls.iter().any(|c| c.contains("restart docker")),
        "neither fix needs docker restarted: {calls:?}"
    );
    let after = preflight::run(&exec, &opts).await;
    assert!(!after.auto_fixable(), "{}", after.render());
}

/// WSL2 (a `microsoft` kernel, `/dev/dxg`) cannot hand GPUs to kind nodes: refused with a
/// sentence saying so when the profile needs GPUs, a warning when it does not.
#[tokio::test(flavor = "multi_thread")]
async fn doctor_refuses_wsl2_with_a_clear_sentence() {
    let world = World::new(1);
    let opts = workstation(&world);
    world.write(
        "host/sys/kernel/osrelease",
        "5.15.153.1-microsoft-standard-WSL2\n",
    );
    world.write("host/dev/dxg", "");
    let report = preflight::run(&Exec::new(), &opts).await;
    let wsl = by_name(&report, "not WSL2");
    assert_eq!(wsl.status, Status::Fail);
    assert_eq!(
        wsl.found,
        format!(
            "WSL2 (kernel 5.15.153.1-microsoft-standard-WSL2, {} present)",
            world.path("host/dev/dxg").display()
        )
    );
    assert!(
        wsl.fix
            .as_ref()
            .unwrap()
            .shown
            .starts_with("kgf-up does not support GPUs on WSL2: run it on a native Linux machine"),
        "{:?}",
        wsl.fix
    );
    assert_eq!(report.status(), Status::Fail);
    // /dev/dxg alone is enough; a profile without GPUs is only warned.
    world.write("host/sys/kernel/osrelease", "6.6.87.2\n");
    let report = preflight::run(
        &Exec::new(),
        &Options {
            needs_gpu: false,
            ..opts
        },
    )
    .await;
    assert_eq!(by_name(&report, "not WSL2").status, Status::Warn);
}

/// The registry's port is read before the cluster exists: free, kgf-up's own registry (reused),
/// another container, or another process (a real listener here).
#[tokio::test(flavor = "multi_thread")]
async fn doctor_checks_the_registry_port_before_the_cluster_exists() {
    let world = World::new(1);
    let mut opts = workstation(&world);
    let port = opts.kind.as_ref().unwrap().registry.host_port;
    let check = |report: &preflight::Report| {
        let c = by_name(report, "registry host port");
        (
            c.status,
            c.found.clone(),
            c.fix.as_ref().map(|f| f.shown.clone()),
        )
    };

    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let (status, found, fix) = check(&preflight::run(&Exec::new(), &opts).await);
    assert_eq!(status, Status::Fail);
    assert_eq!(
        found,
        format!("another process listens on 127.0.0.1:{port}")
    );
    assert!(
        fix.unwrap()
            .starts_with("set cluster.kind.registry.host_port to a free port"),
    );
    drop(listener);

    // kgf-up's registry container publishes it (from an earlier `up`): reused.
    let binding = format!("127.0.0.1:{port}");
    world.write("containers/kind-registry/image", "registry:3");
    world.write("containers/kind-registry/binding", &binding);
    world.write("containers/kind-registry/running", "true");
    world.write("containers/kind-registry/networks", "bridge");
    let (status, found, _) = check(&preflight::run(&Exec::new(), &opts).await);
    assert_eq!(
        (status, found),
        (
            Status::Ok,
            format!("{port} published by kind-registry (kgf-up reuses it)")
        )
    );

    // Another container holds it.
    opts.kind.as_mut().unwrap().registry.name = "kgf-registry".into();
    let (status, found, fix) = check(&preflight::run(&Exec::new(), &opts).await);
    assert_eq!(
        (status, found),
        (
            Status::Fail,
            format!("{port} published by container kind-registry")
        )
    );
    assert!(
        fix.unwrap()
            .starts_with("docker rm -f kind-registry, or set")
    );

    // No registry in the profile: nothing to check.
    opts.kind.as_mut().unwrap().registry.enabled = false;
    let report = preflight::run(&Exec::new(), &opts).await;
    assert!(!report.checks.iter().any(|c| c.name == "registry host port"));
}

// ---------------------------------------------------------------------------------------------
// The objects kgf-up keeps in the kind cluster, against a real API server (the test bed)

/// Runs the steps that only talk to the API server (`kind/registry-hosting`, `kind/runtime-class`)
/// with the real kubectl against the test bed, and round-trips the recorded kind config through a
/// real ConfigMap. Needs the bed: `scripts/testbed run -- cargo test --test kind_gpu`.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_objects_apply_and_observe_on_a_real_api_server() {
    let bed = support::bed();
    let _path = BedPath::new(&bed);
    let work = tempfile::tempdir().unwrap();
    let ctx = Ctx::new(
        Exec::new(),
        work.path().to_path_buf(),
        Duration::from_secs(30),
        "kgf-system".into(),
    );
    ctx.kubeconfig
        .set(Kubeconfig {
            path: bed.kubeconfig.clone(),
            context: None,
        })
        .unwrap();
    for (kind, ns, name) in [
        ("configmap", Some("kube-public"), "local-registry-hosting"),
        ("configmap", Some("kube-public"), "kgf-up-kind-config"),
        ("runtimeclass", None, "nvidia"),
    ] {
        let mut args = vec!["delete", kind, name, "--ignore-not-found"];
        if let Some(ns) = ns {
            args.extend(["-n", ns]);
        }
        bed.kubectl(&args);
    }

    let plan = KindPlan::new(KindSpec::default(), 1).unwrap();
    let steps: Vec<DynStep> = plan
        .steps(&[])
        .into_iter()
        .filter(|s| s.id() == kind::ids::registry_hosting() || s.id() == kind::ids::runtime_class())
        .collect();
    assert_eq!(steps.len(), 2);
    let seen = converge(&steps, &ctx).await;
    assert!(
        seen.iter().all(|(_, s, _)| *s == State::Missing),
        "{seen:?}"
    );
    let rc = bed.kubectl(&["get", "runtimeclass", "nvidia", "-o", "jsonpath={.handler}"]);
    assert_eq!(rc, "nvidia");
    let hosting = bed.kubectl(&[
        "get",
        "configmap",
        "local-registry-hosting",
        "-n",
        "kube-public",
        "-o",
        "jsonpath={.data.localRegistryHosting\\.v1}",
    ]);
    assert!(hosting.starts_with("host: \"localhost:5001\""), "{hosting}");

    // Converged: observed, and nothing written.
    let mark = bed.audit_mark();
    let seen = converge(&steps, &ctx).await;
    assert!(
        seen.iter().all(|(_, s, _)| *s == State::Converged),
        "{seen:?}"
    );
    assert!(bed.mutations_since(&mark, &["kubectl"]).is_empty());

    // The recorded config survives the API server byte for byte and compares equal.
    bed.apply(&kind::record::manifest(&plan.config).to_string());
    let stored: serde_json::Value = serde_json::from_str(&bed.kubectl(&[
        "get",
        "configmap",
        "kgf-up-kind-config",
        "-n",
        "kube-public",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(kind::record::recorded(&stored), Some(plan.config.as_str()));
    assert!(
        kind::record::diff(kind::record::recorded(&stored).unwrap(), &plan.config)
            .unwrap()
            .is_empty()
    );
    bed.kubectl(&[
        "delete",
        "configmap",
        "kgf-up-kind-config",
        "-n",
        "kube-public",
    ]);
}

/// The bed's binaries (the real kubectl) first on PATH while held; restored on drop.
struct BedPath {
    _guard: MutexGuard<'static, ()>,
    old_path: String,
}

impl BedPath {
    fn new(bed: &support::Bed) -> BedPath {
        let guard = lock();
        let old_path = std::env::var("PATH").unwrap_or_default();
        // SAFETY: every test that reads or writes the environment holds ENV.
        unsafe { std::env::set_var("PATH", format!("{}:/usr/bin:/bin", bed.bin.display())) };
        BedPath {
            _guard: guard,
            old_path,
        }
    }
}

impl Drop for BedPath {
    fn drop(&mut self) {
        // SAFETY: ENV is still held (the guard drops after this).
        unsafe { std::env::set_var("PATH", &self.old_path) };
    }
}

/// A TCP forwarder to the bed's API server: a stand-in for the address of a kind cluster that
/// `recreate` is about to delete. Deleting it closes the listener and every open connection.
struct OldCluster {
    port: u16,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    gone: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl OldCluster {
    fn start(to: String) -> OldCluster {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tracked, stop) = (open.clone(), gone.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let (Ok(client), Ok(server)) = (client, std::net::TcpStream::connect(&to)) else {
                    continue;
                };
                let mut list = tracked.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut into) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut into);
                        let _ = into.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        OldCluster { port, open, gone }
    }

    fn delete(&self) {
        self.gone.store(true, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // Wakes the accept loop so that it sees `gone` and drops the listener.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Regression (issue 24): `recreate` deleted and re-created the kind cluster, but the run's API
/// client, inventory and lock (taken before the cluster step's apply) kept pointing at the old
/// cluster's address and CA: the next step failed with `ServiceError: client error (Connect)` and
/// the lock's renewal failed every 15 s. Here the old cluster is a forwarder that goes away and
/// the new one the bed's API server, behind the same kubeconfig path, as kind rewrites it.
/// (The real-node bed runs the same through `kgf-up up` on real kind clusters.)
#[tokio::test(flavor = "multi_thread")]
async fn recreate_left_the_runs_client_lock_and_inventory_on_the_old_cluster() {
    let bed = support::bed();
    let namespace = "kgf-recreate-system";
    let kubeconfig = std::fs::read_to_string(&bed.kubeconfig).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .expect("the bed's kubeconfig names its server")
        .trim()
        .to_string();
    let address = server.trim_start_matches("https://").to_string();
    let old = OldCluster::start(address.clone());
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join("kind-kgf.kubeconfig");
    std::fs::write(
        &path,
        kubeconfig.replace(&server, &format!("https://127.0.0.1:{}", old.port)),
    )
    .unwrap();
    let ctx = Ctx::new(
        Exec::new(),
        work.path().to_path_buf(),
        Duration::from_secs(30),
        namespace.into(),
    );
    ctx.kubeconfig
        .set(Kubeconfig {
            path: path.clone(),
            context: None,
        })
        .unwrap();
    let holder = || {
        bed.kubectl(&[
            "get",
            "lease",
            "kgf-up-lock",
            "-n",
            namespace,
            "--ignore-not-found",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };

    // Before the cluster step's apply: the lock is taken and the inventory read, on the old one.
    ctx.lock_for_change().await.unwrap();
    assert!(ctx.inventory().await.unwrap().records.is_empty());
    let mine = format!("pid {}", std::process::id());
    assert!(holder().ends_with(&mine), "{}", holder());

    // recreate: the old cluster goes (its lease with it); the new one answers elsewhere, and
    // already holds a record (what the inventory read now must show).
    old.delete();
    bed.kubectl(&["delete", "lease", "kgf-up-lock", "-n", namespace]);
    std::fs::write(&path, &kubeconfig).unwrap();
    let record = kgf_up::inventory::Record {
        state: kgf_up::inventory::RecordState::Done,
        source: "test".into(),
        version: "1".into(),
        hash: "0".into(),
        objects: Vec::new(),
        release: None,
        created_namespaces: Vec::new(),
        time: kgf_up::inventory::now(),
    };
    kgf_up::inventory::write(&bed.kube().await, namespace, &"component/x", &record)
        .await
        .unwrap();

    ctx.cluster_replaced().await.unwrap();
    assert!(
        holder().ends_with(&mine),
        "the lock is taken again in the new cluster: {:?}",
        holder()
    );
    let client = ctx.kube().await.unwrap().client();
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    namespaces
        .get(namespace)
        .await
        .expect("the run's client talks to the new cluster");
    assert!(
        ctx.inventory().await.unwrap().get(&"component/x").is_some(),
        "the inventory is the new cluster's"
    );
    assert!(
        ctx.cluster_replaced().await.is_err(),
        "a run replaces its cluster once"
    );
    ctx.release_lock().await;
    assert_eq!(holder(), "", "released in the new cluster");
    bed.kubectl(&["delete", "namespace", namespace, "--wait=false"]);
}
