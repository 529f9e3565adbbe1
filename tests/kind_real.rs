//! The kind provider against the real thing: the kgf-up binary, kind v0.33.0, Debian's dockerd and
//! kind clusters with real kubelets and pods, on the real-node bed (scripts/nodebed). Nothing here
//! needs a GPU; what does (the NVIDIA toolkit in a node) stays on stand-ins in tests/kind_gpu.rs.
//!
//! Run inside the bed: `scripts/testbed run -- cargo test --test kind_real`. The tests share one
//! cluster name, the `kind` network and the registry on 127.0.0.1:5001, so they take turns; each
//! starts from the state it needs (a converged cluster, or none) and leaves the cluster up for the
//! next, except where it proves `down`.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{NodeBed, node_bed, text};

/// kind's cluster name here (node containers `kgf-bed-control-plane`, `kgf-bed-worker`).
const CLUSTER: &str = "kgf-bed";
const REGISTRY: &str = "kind-registry";

static SERIAL: Mutex<()> = Mutex::new(());

/// One test's world: its own profile, kgf-up state directory and user kubeconfig; the bed's dockerd.
struct World {
    _serial: MutexGuard<'static, ()>,
    node: NodeBed,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        World {
            _serial: serial,
            node: node_bed(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// The profile of the bed's cluster: `workers` CPU workers, no GPUs, the bed's node image and
    /// subnets (inside 198.18.0.0/15), the local registry, no components; `extra` is appended.
    fn profile(&self, workers: u32, extra: &str) -> PathBuf {
        let path = self.dir.path().join(format!("profile-{workers}.yaml"));
        let yaml = format!(
            "name: {CLUSTER}\n\
             cluster:\n  provider: kind\n  kind:\n    name: {CLUSTER}\n    node_image: {image}\n    \
             workers: {workers}\n    gpus: {{count: 0}}\n    \
             networking: {{pod_subnet: {pods}, service_subnet: {services}}}\n    \
             # kubelet 1.36 refuses a cgroup v1 host (such as the project's VM) without this.\n    \
             kubeadm_config_patches:\n      - |\n        kind: KubeletConfiguration\n        failCgroupV1: false\n\
             settings: {{timeout: 300s}}\n\
             validation: {{min_gpu_nodes: 0, cuda_smoke: false}}\n\
             {extra}",
            image = self.node.node_image,
            pods = self.node.pod_subnet,
            services = self.node.service_subnet,
        );
        std::fs::write(&path, yaml).unwrap();
        path
    }

    /// The user's kubeconfig, which `kind/context` and `kind delete` write.
    fn user_kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// kgf-up as CI runs it, with this world's state directory and user kubeconfig.
    fn kgf_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = support::kgf_up_cmd(args);
        cmd.env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("KUBECONFIG", self.user_kubeconfig());
        cmd
    }

    fn kgf(&self, args: &[&str]) -> Output {
        self.kgf_cmd(args).output().unwrap()
    }

    fn kgf_ok(&self, args: &[&str]) -> String {
        let out = self.kgf(args);
        assert!(
            out.status.success(),
            "kgf-up {} failed:\n{}",
            args.join(" "),
            text(&out)
        );
        text(&out)
    }

    /// `up --output json`, which must succeed: its events.
    fn up_events(&self, profile: &Path) -> Vec<Value> {
        let out = self.kgf(&[
            "up",
            "--profile",
            profile.to_str().unwrap(),
            "--output",
            "json",
        ]);
        assert!(out.status.success(), "{}", text(&out));
        json_lines(&String::from_utf8_lossy(&out.stdout))
    }

    fn up(&self, profile: &Path) -> String {
        self.kgf_ok(&["up", "--profile", profile.to_str().unwrap()])
    }

    fn down(&self, profile: &Path, all: bool) -> String {
        let mut args = vec![
            "down",
            "--profile",
            profile.to_str().unwrap(),
            "--non-interactive",
            "--yes",
        ];
        if all {
            args.push("--all");
        }
        self.kgf_ok(&args)
    }

    /// No cluster and no registry: where the tests that create start.
    fn fresh(&self) -> PathBuf {
        let profile = self.profile(1, "");
        self.down(&profile, true);
        assert!(self.containers().is_empty(), "{:?}", self.containers());
        profile
    }

    /// A converged cluster of the default profile (made by an earlier test, or now).
    fn converged(&self) -> PathBuf {
        let profile = self.profile(1, "");
        self.up(&profile);
        profile
    }

    /// kubectl on the cluster, with a kubeconfig of its own that kind writes.
    fn kubectl(&self, args: &[&str]) -> Output {
        let kubeconfig = self.dir.path().join("cluster.kubeconfig");
        if !kubeconfig.exists() {
            let out = Command::new("kind")
                .args(["export", "kubeconfig", "--name", CLUSTER])
                .arg(format!("--kubeconfig={}", kubeconfig.display()))
                .output()
                .unwrap();
            assert!(out.status.success(), "kind export: {}", text(&out));
        }
        Command::new("kubectl")
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(args)
            .output()
            .unwrap()
    }

    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn kubectl_json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["-o", "json"]);
        serde_json::from_str(&self.kubectl_ok(&args)).unwrap()
    }

    fn kubectl_apply(&self, yaml: &str) {
        let kubeconfig = self.dir.path().join("cluster.kubeconfig");
        let mut child = Command::new("kubectl")
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "kubectl apply: {}", text(&out));
    }

    /// Every container of the bed's dockerd as `name image`, sorted.
    fn containers(&self) -> Vec<String> {
        let out = self
            .node
            .docker_ok(&["ps", "-a", "--format", "{{.Names}} {{.ID}}"]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    fn in_node(&self, node: &str, args: &[&str]) -> Output {
        let mut all = vec!["exec", node];
        all.extend(args);
        self.node.docker(&all)
    }

    /// Runs a pod to completion on `node` and returns its log; panics with its events if it fails.
    fn run_pod(&self, name: &str, node: &str, image: &str, script: &str) -> String {
        let pod = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "nodeName": node,
                "restartPolicy": "Never",
                "containers": [{
                    "name": "main",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sh", "-c", script],
                }],
            },
        });
        let _ = self.kubectl(&["delete", "pod", name, "--ignore-not-found", "--wait"]);
        self.kubectl_apply(&pod.to_string());
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let phase = self.kubectl_ok(&["get", "pod", name, "-o", "jsonpath={.status.phase}"]);
            match phase.as_str() {
                "Succeeded" => break,
                "Failed" => panic!(
                    "pod {name} failed: {}\n{}",
                    text(&self.kubectl(&["logs", name])),
                    self.kubectl_ok(&["describe", "pod", name])
                ),
                _ if Instant::now() > deadline => panic!(
                    "pod {name} is still {phase} after 300s:\n{}",
                    self.kubectl_ok(&["describe", "pod", name])
                ),
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
        let log = self.kubectl_ok(&["logs", name]);
        self.kubectl_ok(&["delete", "pod", name, "--wait=false"]);
        log
    }
}

/// One JSON value per line, as `--output json` writes its events; other lines are skipped.
fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn node_names() -> Vec<String> {
    vec![
        format!("{CLUSTER}-control-plane"),
        format!("{CLUSTER}-worker"),
    ]
}

/// Whether `ip` is inside the IPv4 network `cidr`.
fn within(ip: &str, cidr: &str) -> bool {
    let parse = |s: &str| s.parse::<std::net::Ipv4Addr>().map(u32::from);
    let (net, prefix) = cidr.split_once('/').unwrap();
    let (ip, net, prefix) = (
        parse(ip).unwrap(),
        parse(net).unwrap(),
        prefix.parse::<u32>().unwrap(),
    );
    let mask = if prefix == 0 {
        0
    } else {
        !0u32 << (32 - prefix)
    };
    ip & mask == net & mask
}

#[test]
fn up_creates_a_kind_cluster_whose_pods_pull_from_the_local_registry() {
    let w = World::new();
    let profile = w.fresh();
    w.up(&profile);

    // The nodes: Ready, kind's names, addresses in the bed's ranges, no GPU operands.
    let nodes = w.kubectl_json(&["get", "nodes"]);
    let items = nodes["items"].as_array().unwrap();
    let mut names: Vec<&str> = items
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, node_names());
    for n in items {
        let name = n["metadata"]["name"].as_str().unwrap();
        let ready = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        assert!(ready, "{name} is not Ready: {}", n["status"]["conditions"]);
        assert_eq!(
            n["metadata"]["labels"]["nvidia.com/gpu.deploy.operands"], "false",
            "{name}: a node without GPUs keeps the GPU operator's operands off"
        );
        let pod_cidr = n["spec"]["podCIDR"].as_str().unwrap();
        assert!(
            within(pod_cidr.split('/').next().unwrap(), &w.node.pod_subnet),
            "{name}: {pod_cidr}"
        );
        let address = n["status"]["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["type"] == "InternalIP")
            .unwrap()["address"]
            .as_str()
            .unwrap();
        assert!(within(address, "198.18.0.0/15"), "{name}: {address}");
    }

    // The registry container: running, on 127.0.0.1:5001, on the kind network.
    let inspect: Value = serde_json::from_str(&w.node.docker_ok(&["inspect", REGISTRY])).unwrap();
    let c = &inspect[0];
    assert_eq!(c["State"]["Running"], true);
    assert_eq!(
        c["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostIp"],
        "127.0.0.1"
    );
    assert_eq!(
        c["HostConfig"]["PortBindings"]["5000/tcp"][0]["HostPort"],
        "5001"
    );
    assert!(c["NetworkSettings"]["Networks"]["kind"].is_object());

    // containerd's mirror in each node, and the ConfigMaps kgf-up keeps in the cluster.
    for node in node_names() {
        let out = w.in_node(
            &node,
            &["cat", "/etc/containerd/certs.d/localhost:5001/hosts.toml"],
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "[host.\"http://kind-registry:5000\"]\n",
            "{node}: {}",
            text(&out)
        );
    }
    let hosting = w.kubectl_json(&[
        "get",
        "configmap",
        "-n",
        "kube-public",
        "local-registry-hosting",
    ]);
    assert!(
        hosting["data"]["localRegistryHosting.v1"]
            .as_str()
            .unwrap()
            .contains("host: \"localhost:5001\""),
        "{hosting}"
    );
    let record = w.kubectl_json(&[
        "get",
        "configmap",
        "-n",
        "kube-public",
        "kgf-up-kind-config",
    ]);
    assert!(
        record["data"]["config.yaml"]
            .as_str()
            .unwrap()
            .contains(&w.node.node_image),
        "{record}"
    );

    // An image pushed to localhost:5001 runs on every node, pulled through the mirror; and the
    // pods reach the API server and CoreDNS across nodes (service routing and the pod network).
    w.kubectl_ok(&[
        "-n",
        "kube-system",
        "rollout",
        "status",
        "deployment/coredns",
        "--timeout=180s",
    ]);
    let probe = format!("localhost:5001/kgf-bed/probe:{}", std::process::id());
    w.node
        .docker_ok(&["tag", "debian:trixie-slim", probe.as_str()]);
    w.node.docker_ok(&["push", probe.as_str()]);
    for node in node_names() {
        let log = w.run_pod(
            "probe",
            &node,
            &probe,
            "grep VERSION_CODENAME /etc/os-release && getent ahostsv4 kubernetes.default.svc.cluster.local",
        );
        assert!(log.contains("VERSION_CODENAME=trixie"), "{node}: {log}");
        let api = log.lines().nth(1).unwrap_or_default();
        assert!(
            within(
                api.split_whitespace().next().unwrap_or("0.0.0.0"),
                &w.node.service_subnet
            ),
            "{node}: kubernetes.default resolved to {api:?}"
        );
        let images = w.in_node(
            &node,
            &["ctr", "--namespace=k8s.io", "images", "list", "-q"],
        );
        assert!(
            String::from_utf8_lossy(&images.stdout).contains(&probe),
            "{node} did not pull {probe}: {}",
            text(&images)
        );
    }
    w.node.docker_ok(&["rmi", probe.as_str()]);
}

#[test]
fn a_second_up_changes_nothing_and_says_so() {
    let w = World::new();
    let profile = w.converged();
    let before = w.containers();
    let out = w.kgf(&["up", "--profile", profile.to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("no changes"), "{said}");
    assert_eq!(w.containers(), before, "the second up touched a container");
}

#[test]
fn plan_on_the_live_cluster_finds_every_step_converged() {
    let w = World::new();
    let profile = w.converged();
    let before = w.containers();
    let out = w.kgf(&[
        "plan",
        "--profile",
        profile.to_str().unwrap(),
        "--exit-code",
    ]);
    let said = text(&out);
    assert!(
        out.status.success(),
        "plan says something would change:\n{said}"
    );
    for step in [
        "kind/cluster",
        "kind/context",
        "kind/registry",
        "kind/registry-hosting",
    ] {
        assert!(said.contains(step), "{step} missing from the plan:\n{said}");
    }
    assert_eq!(w.containers(), before);
}

#[test]
fn a_drifted_worker_count_is_named_and_the_cluster_kept() {
    let w = World::new();
    w.converged();
    let before = w.containers();
    let two = w.profile(2, "");
    let out = w.kgf(&["up", "--profile", two.to_str().unwrap()]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("nodes: 2 entries recorded, 3 wanted"),
        "{said}"
    );
    assert!(said.contains("cluster.kind.recreate=true"), "{said}");
    assert_eq!(w.containers(), before, "nothing was created or removed");

    // plan on the same drift names the step that would fail, and every node's wiring.
    let out = w.kgf(&["plan", "--profile", two.to_str().unwrap()]);
    let said = text(&out);
    assert!(said.contains("kind/cluster"), "{said}");
    assert!(
        !said.contains("No such container"),
        "a worker that does not exist yet is not an error: {said}"
    );
}

#[test]
fn recreate_replaces_a_drifted_cluster_and_the_run_goes_on() {
    let w = World::new();
    w.converged();
    let two = w.profile(2, "");
    let out = w.kgf(&[
        "up",
        "--profile",
        two.to_str().unwrap(),
        "--set",
        "cluster.kind.recreate=true",
        "--yes",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    // The steps after the cluster talk to the new one: its registry wiring is on every node,
    // the new worker included, and the record names two workers.
    for node in [
        format!("{CLUSTER}-control-plane"),
        format!("{CLUSTER}-worker"),
        format!("{CLUSTER}-worker2"),
    ] {
        let hosts = w.in_node(
            &node,
            &["cat", "/etc/containerd/certs.d/localhost:5001/hosts.toml"],
        );
        assert!(hosts.status.success(), "{node}: {}", text(&hosts));
    }
    let again = w.kgf_ok(&["up", "--profile", two.to_str().unwrap()]);
    assert!(again.contains("no changes"), "{again}");
    // The next test finds no cluster of another shape.
    w.down(&two, false);
}

#[test]
fn a_cluster_without_kgf_ups_record_is_not_adopted() {
    let w = World::new();
    let profile = w.converged();
    let record = w.kubectl_ok(&[
        "get",
        "configmap",
        "-n",
        "kube-public",
        "kgf-up-kind-config",
        "-o",
        "json",
    ]);
    w.kubectl_ok(&[
        "delete",
        "configmap",
        "-n",
        "kube-public",
        "kgf-up-kind-config",
    ]);
    let out = w.kgf(&["up", "--profile", profile.to_str().unwrap()]);
    let said = text(&out);
    // Put the record back before asserting, so the next test finds the cluster as it was.
    let mut restored: Value = serde_json::from_str(&record).unwrap();
    for key in [
        "resourceVersion",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        restored["metadata"].as_object_mut().unwrap().remove(key);
    }
    w.kubectl_apply(&restored.to_string());
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("has no config recorded by kgf-up"), "{said}");
}

#[test]
fn a_removed_registry_is_all_the_next_up_puts_back() {
    let w = World::new();
    let profile = w.converged();
    w.node.docker_ok(&["rm", "-f", "-v", REGISTRY]);
    let events = w.up_events(&profile);
    let applied: Vec<&str> = events
        .iter()
        .filter(|e| e["phase"] == "done" && e["status"] == "applied")
        .map(|e| e["step"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(applied, ["kind/registry"], "{events:?}");
    let running = w
        .node
        .docker_ok(&["inspect", "-f", "{{.State.Running}}", REGISTRY]);
    assert_eq!(running.trim(), "true");
}

#[test]
fn stopped_nodes_get_the_start_command_and_converge_once_started() {
    let w = World::new();
    let profile = w.converged();
    let nodes = node_names();
    let mut stop = vec!["stop"];
    stop.extend(nodes.iter().map(String::as_str));
    w.node.docker_ok(&stop);
    let out = w.kgf(&["up", "--profile", profile.to_str().unwrap()]);
    let said = text(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("docker start $(kind get nodes --name {CLUSTER})")),
        "{said}"
    );
    // What the fix says, then `up`.
    let mut start = vec!["start"];
    start.extend(nodes.iter().map(String::as_str));
    w.node.docker_ok(&start);
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let out = w.kgf(&["up", "--profile", profile.to_str().unwrap()]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the restarted cluster did not converge: {}",
            text(&out)
        );
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Starts `up` with JSON events in its own process group and SIGKILLs the group (kgf-up and the
/// kind or docker it runs) once `ready` says so, given the events so far, as `kill -9` or a power
/// cut would. False when `up` ended (or 600 s passed) before that.
fn kill_up_when(w: &World, profile: &Path, ready: impl Fn(&[Value]) -> bool) -> bool {
    use std::os::unix::process::CommandExt;
    let events_file = w.dir.path().join("killed-up.jsonl");
    let mut child = w
        .kgf_cmd(&[
            "up",
            "--profile",
            profile.to_str().unwrap(),
            "--output",
            "json",
        ])
        .stdout(std::fs::File::create(&events_file).unwrap())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut came = false;
    while !came && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
        let events = json_lines(&std::fs::read_to_string(&events_file).unwrap_or_default());
        came = ready(&events);
    }
    let running = came && child.try_wait().unwrap().is_none();
    // `-s KILL --` and the group as one argument: see tests/engine.rs.
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    running
}

#[test]
fn an_up_killed_while_kind_creates_the_cluster_is_finished_by_the_next() {
    let w = World::new();
    let profile = w.fresh();
    // The control plane's container runs, kind has not finished: kubeadm is still at work.
    let control_plane = format!("{CLUSTER}-control-plane");
    assert!(
        kill_up_when(&w, &profile, |_| {
            w.node
                .docker(&["inspect", "-f", "{{.State.Running}}", &control_plane])
                .stdout
                .starts_with(b"true")
        }),
        "up ended before kind started the control plane"
    );
    let said = w.kgf_ok(&["up", "--profile", profile.to_str().unwrap()]);
    let nodes = w.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert_eq!(
        nodes.lines().count(),
        2,
        "a whole cluster after the second up: {nodes}\n{said}"
    );
    let again = w.kgf_ok(&["up", "--profile", profile.to_str().unwrap()]);
    assert!(again.contains("no changes"), "{again}");
}

#[test]
fn an_up_killed_after_the_cluster_is_made_is_finished_by_the_next() {
    let w = World::new();
    let profile = w.fresh();
    assert!(
        kill_up_when(&w, &profile, |events| events
            .iter()
            .any(|e| e["step"] == "kind/cluster" && e["phase"] == "done")),
        "up ended before the kind cluster was made"
    );
    let events = w.up_events(&profile);
    let status_of = |step: &str| {
        events
            .iter()
            .find(|e| e["step"] == step && e["phase"] == "done")
            .map(|e| e["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(
        status_of("kind/cluster").as_deref(),
        Some("converged"),
        "the cluster made before the kill is kept"
    );
    // Whatever the killed run had not finished, this one did: a third run changes nothing.
    let again = w.kgf_ok(&["up", "--profile", profile.to_str().unwrap()]);
    assert!(again.contains("no changes"), "{again}");
}

#[test]
fn down_keeps_the_registry_and_down_all_leaves_nothing_behind() {
    let w = World::new();
    let profile = w.converged();
    let context = format!("kind-{CLUSTER}");
    let kubeconfig = std::fs::read_to_string(w.user_kubeconfig()).unwrap_or_default();
    assert!(
        kubeconfig.contains(&context),
        "up selected {context} in the user's kubeconfig"
    );

    // The volumes of kgf-up's containers (the nodes' /var, the registry's storage); other
    // volumes of the bed's dockerd are not kgf-up's to remove.
    let mut ours = Vec::new();
    for c in w.containers() {
        let id = c.split(' ').nth(1).unwrap();
        let mounts = w.node.docker_ok(&[
            "inspect",
            "-f",
            "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{end}}{{end}}",
            id,
        ]);
        ours.extend(mounts.split_whitespace().map(str::to_string));
    }
    assert!(!ours.is_empty(), "the nodes and the registry have volumes");

    w.down(&profile, false);
    assert_eq!(
        w.containers()
            .iter()
            .map(|c| c.split(' ').next().unwrap())
            .collect::<Vec<_>>(),
        [REGISTRY],
        "down keeps only the registry (its images)"
    );

    w.down(&profile, true);
    assert!(w.containers().is_empty(), "{:?}", w.containers());
    let volumes = w.node.docker_ok(&["volume", "ls", "-q"]);
    let left: Vec<&String> = ours
        .iter()
        .filter(|v| volumes.lines().any(|l| l == v.as_str()))
        .collect();
    assert!(
        left.is_empty(),
        "volumes of kgf-up's containers left: {left:?}"
    );
    let networks = w
        .node
        .docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        !networks.lines().any(|n| n == "kind"),
        "the kind network is left: {networks}"
    );
    let kubeconfig = std::fs::read_to_string(w.user_kubeconfig()).unwrap_or_default();
    assert!(
        !kubeconfig.contains(&context),
        "{context} is left in the user's kubeconfig:\n{kubeconfig}"
    );
}

#[test]
fn pipeline_build_and_push_make_an_image_a_pod_runs() {
    let w = World::new();
    let pipeline = "pipeline: {registry: localhost:5001, cpu: true}\n";
    let profile = w.profile(1, pipeline);
    w.up(&profile);
    let p = profile.to_str().unwrap();
    let built = w.kgf_ok(&["pipeline", "build", "--profile", p]);
    let pushed = w.kgf_ok(&["pipeline", "push", "--profile", p]);
    let image = pushed
        .lines()
        .find_map(|l| l.trim().strip_prefix("pushed "))
        .unwrap_or_else(|| panic!("no image named in: {pushed}"))
        .to_string();
    assert!(image.starts_with("localhost:5001/kgf-step:"), "{image}");
    assert!(image.ends_with("-cpu"), "{image}");
    assert!(built.contains(&image), "{built}");

    // The pushed image on the cluster: the dataset step of the tiny preset, its labels printed.
    let log = w.run_pod(
        "kgf-step-dataset",
        &format!("{CLUSTER}-worker"),
        &image,
        "kgf-step dataset --preset tiny --seed 3 --out /tmp/data >/tmp/log 2>&1 || { cat /tmp/log; exit 1; }; \
         cat /tmp/data/labels/labels.json",
    );
    let labels: Value = serde_json::from_str(&log)
        .unwrap_or_else(|e| panic!("the step printed no labels.json ({e}):\n{log}"));
    assert_eq!(labels["seed"], 3, "{labels}");
    assert_eq!(
        labels["fc_labels"],
        serde_json::json!(["chimeric", "not_chimeric"]),
        "{labels}"
    );
    let genes = labels["genes"].as_array().unwrap();
    assert!(
        !genes.is_empty() && genes.iter().all(|g| g.is_string()),
        "{labels}"
    );
    let splits: Vec<&str> = labels["counts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["gc_fragments"].as_u64() > Some(0) && c["fc_reads"].as_u64() > Some(0))
        .map(|c| c["split"].as_str().unwrap())
        .collect();
    assert_eq!(splits, ["train", "val", "test"], "{labels}");
}

/// The real nvidia-ctk (v1.20.2, built by `scripts/testbed build`) in a real kind node, through
/// step `kind/gpu/<node>/containerd`'s own code. The bed's node runs Debian bookworm's containerd
/// 1.6, which has no CDI (kindest/node images ship containerd 2): observe refuses it by name with
/// the fix instead of re-configuring every run. The step's configure then adds the nvidia runtime
/// the GPU operator's operands use, runc stays the default, containerd restarts with it, and the
/// node keeps running pods. With containerd 1.7 or later the step observes it converged. What
/// needs a GPU (the runtime's hooks finding a driver, the device plugin's CDI devices) is what
/// `kgf-up verify` checks on a GPU host.
#[tokio::test(flavor = "multi_thread")]
async fn the_real_nvidia_ctk_configures_a_real_nodes_containerd() {
    use kgf_up::cluster::kind::{self, ContainerdGpu, KindPlan, KindSpec};
    use kgf_up::exec::Exec;
    use kgf_up::step::{Ctx, Observation, State};

    let w = World::new();
    w.converged();
    let worker = format!("{CLUSTER}-worker");
    // The bed's bin dir links into its store: `docker cp` would copy the link, not the binary.
    let bin = PathBuf::from(std::env::var_os("KGF_TESTBED_BIN").expect("run inside the test bed"))
        .join("nvidia-ctk")
        .canonicalize()
        .unwrap();
    let original = w
        .node
        .docker_ok(&["exec", &worker, "cat", "/etc/containerd/config.toml"]);
    // What a failed run of this test may have left.
    w.node
        .docker_ok(&["exec", &worker, "rm", "-f", "/usr/local/bin/nvidia-ctk"]);
    w.node.docker_ok(&[
        "cp",
        bin.to_str().unwrap(),
        &format!("{worker}:/usr/local/bin/nvidia-ctk"),
    ]);
    let version = w
        .node
        .docker_ok(&["exec", &worker, "containerd", "--version"]);
    let cdi_capable = !version.contains(" 1.6.");

    let spec = KindSpec {
        name: CLUSTER.to_string(),
        ..KindSpec::default()
    };
    let steps = KindPlan::new(spec, 1).unwrap().steps(&[]);
    let step = steps
        .iter()
        .find(|s| s.id() == kind::ids::gpu_node(&worker, kind::NodeTask::ContainerdRuntime.slug()))
        .expect("a GPU worker gets the containerd step");
    let work = w.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let ctx = Ctx::new(
        Exec::new(),
        work,
        Duration::from_secs(120),
        "kgf-system".into(),
    );
    let seen = step.observe(&ctx).await;
    if cdi_capable {
        assert_eq!(seen.unwrap().state, State::Missing);
    } else {
        let err = seen.unwrap_err();
        assert!(
            err.message
                .contains("has no CDI support (it came in containerd 1.7)")
                && err
                    .message
                    .contains(version.split_whitespace().nth(2).unwrap()),
            "{}",
            err.message
        );
        assert!(
            err.fix
                .as_deref()
                .unwrap_or_default()
                .contains("cluster.kind.node_image"),
            "{:?}",
            err.fix
        );
    }
    step.apply(&ctx, &Observation::missing("no nvidia runtime"))
        .await
        .unwrap();

    // containerd restarted with nvidia-ctk's drop-in: what it now runs, from its own dump.
    let deadline = Instant::now() + Duration::from_secs(60);
    let dump = loop {
        let out = w.in_node(&worker, &["containerd", "config", "dump"]);
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        assert!(Instant::now() < deadline, "containerd: {}", text(&out));
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let running = ContainerdGpu::parse(&dump);
    assert!(running.nvidia_runtime, "{dump}");
    assert_eq!(running.default_runtime.as_deref(), Some("runc"), "{dump}");
    if cdi_capable {
        let seen = step.observe(&ctx).await.unwrap();
        assert_eq!(seen.state, State::Converged, "{}", seen.reason);
    }

    // The restarted containerd still runs the node's pods.
    let image = format!(
        "localhost:5001/kgf-bed/after-nvidia-ctk:{}",
        std::process::id()
    );
    w.node
        .docker_ok(&["tag", "debian:trixie-slim", image.as_str()]);
    w.node.docker_ok(&["push", image.as_str()]);
    let log = w.run_pod("after-nvidia-ctk", &worker, &image, "echo ran");
    assert_eq!(log.trim(), "ran");
    w.node.docker_ok(&["rmi", image.as_str()]);

    // The node as it was, for the tests after this one.
    let restore = "cat > /etc/containerd/config.toml && rm -f /etc/containerd/conf.d/99-nvidia.toml /usr/local/bin/nvidia-ctk && systemctl restart containerd";
    let mut child = Command::new("docker")
        .args(["exec", "-i", &worker, "sh", "-c", restore])
        .env("DOCKER_HOST", &w.node.docker_host)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(original.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
}
