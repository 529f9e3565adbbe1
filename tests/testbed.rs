//! The test bed itself: a real control plane whose kwok nodes behave enough like real ones for
//! kgf-up's tests (workloads become ready, the scheduler counts GPUs, CRDs and helm work), in a
//! network namespace with no route off the machine, and a `scripts/testbed` that explains its
//! failures.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Bed, bed, fixture, repo};

/// A namespace of this test run (the bed outlives runs, so names carry the process id), deleted
/// when dropped so that nothing a test made (a GPU pod above all) holds the bed's resources.
struct Ns<'a> {
    bed: &'a Bed,
    name: String,
}

impl Drop for Ns<'_> {
    fn drop(&mut self) {
        self.bed.tool(
            "kubectl",
            &[
                "delete",
                "namespace",
                &self.name,
                "--wait=true",
                "--timeout=60s",
            ],
        );
    }
}

fn namespace<'a>(bed: &'a Bed, base: &str) -> Ns<'a> {
    let name = format!("{base}-{}", std::process::id());
    bed.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"
    ));
    Ns { bed, name }
}

fn wait(bed: &Bed, args: &[&str]) {
    let mut all = vec!["wait", "--timeout=60s"];
    all.extend_from_slice(args);
    bed.kubectl(&all);
}

/// Polls `kubectl get -o jsonpath` until it prints `want`, for up to 30 s.
fn eventually(bed: &Bed, args: &[&str], want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    while Instant::now() < deadline {
        seen = bed.kubectl(args);
        if seen.trim() == want {
            return;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("kubectl {} printed {seen:?}, want {want:?}", args.join(" "));
}

#[test]
fn a_deployment_becomes_available() {
    let bed = bed();
    let ns = namespace(&bed, "bed-deploy");
    bed.kubectl(&[
        "-n",
        &ns.name,
        "create",
        "deployment",
        "web",
        "--image=registry.invalid/web:1",
        "--replicas=2",
    ]);
    wait(
        &bed,
        &[
            "-n",
            &ns.name,
            "--for=condition=Available",
            "deployment/web",
        ],
    );
    eventually(
        &bed,
        &[
            "-n",
            &ns.name,
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ],
        "2",
    );
}

#[test]
fn a_daemonset_is_scheduled_on_every_node() {
    let bed = bed();
    let ns = namespace(&bed, "bed-ds");
    bed.apply_in(
        &ns.name,
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: registry.invalid/agent:1}]}
"#,
    );
    let nodes = bed.kubectl(&["get", "nodes", "-o", "name"]).lines().count();
    assert!(nodes >= 2, "the bed has a GPU and a CPU node");
    eventually(
        &bed,
        &[
            "-n",
            &ns.name,
            "get",
            "daemonset",
            "agent",
            "-o",
            "jsonpath={.status.numberReady}",
        ],
        &nodes.to_string(),
    );
    let placed = bed.kubectl(&[
        "-n",
        &ns.name,
        "get",
        "pods",
        "-o",
        "jsonpath={.items[*].spec.nodeName}",
    ]);
    let mut placed: Vec<&str> = placed.split_whitespace().collect();
    placed.sort();
    assert_eq!(placed, ["kgf-cpu-0", "kgf-gpu-0"]);
}

#[test]
fn a_job_completes() {
    let bed = bed();
    let ns = namespace(&bed, "bed-job");
    bed.kubectl(&[
        "-n",
        &ns.name,
        "create",
        "job",
        "once",
        "--image=registry.invalid/once:1",
    ]);
    wait(
        &bed,
        &["-n", &ns.name, "--for=condition=Complete", "job/once"],
    );
}

fn gpu_pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  containers:
    - name: cuda
      image: registry.invalid/cuda-sample:vectoradd
      resources: {{limits: {{nvidia.com/gpu: 1}}}}
"#
    )
}

#[test]
fn the_scheduler_counts_the_gpu() {
    let bed = bed();
    let ns = namespace(&bed, "bed-gpu");
    bed.apply_in(&ns.name, &gpu_pod("first"));
    wait(
        &bed,
        &["-n", &ns.name, "--for=condition=PodScheduled", "pod/first"],
    );
    let node = bed.kubectl(&[
        "-n",
        &ns.name,
        "get",
        "pod",
        "first",
        "-o",
        "jsonpath={.spec.nodeName}",
    ]);
    assert_eq!(node, "kgf-gpu-0");

    bed.apply_in(&ns.name, &gpu_pod("second"));
    eventually(
        &bed,
        &[
            "-n",
            &ns.name,
            "get",
            "pod",
            "second",
            "-o",
            "jsonpath={.status.conditions[?(@.type=='PodScheduled')].reason}",
        ],
        "Unschedulable",
    );
    let message = bed.kubectl(&[
        "-n",
        &ns.name,
        "get",
        "pod",
        "second",
        "-o",
        "jsonpath={.status.conditions[?(@.type=='PodScheduled')].message}",
    ]);
    assert!(message.contains("Insufficient nvidia.com/gpu"), "{message}");

    // Freeing the GPU lets the second pod in: the scheduler really counts it.
    bed.kubectl(&["-n", &ns.name, "delete", "pod", "first", "--wait=true"]);
    wait(
        &bed,
        &["-n", &ns.name, "--for=condition=PodScheduled", "pod/second"],
    );
}

#[test]
fn a_crd_becomes_established_and_serves_its_resources() {
    let bed = bed();
    bed.apply(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.bed.kgf-up.test}
spec:
  group: bed.kgf-up.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec: {type: object, properties: {size: {type: integer}}}
"#,
    );
    wait(
        &bed,
        &["--for=condition=Established", "crd/widgets.bed.kgf-up.test"],
    );
    let ns = namespace(&bed, "bed-crd");
    bed.apply_in(
        &ns.name,
        "apiVersion: bed.kgf-up.test/v1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3}\n",
    );
    let size = bed.kubectl(&[
        "-n",
        &ns.name,
        "get",
        "widget",
        "w",
        "-o",
        "jsonpath={.spec.size}",
    ]);
    assert_eq!(size, "3");
}

#[test]
fn helm_3_and_4_install_a_chart_and_wait_for_it() {
    let bed = bed();
    let chart = fixture("testbed/chart");
    for helm in ["helm3", "helm4"] {
        let ns = namespace(&bed, &format!("bed-{helm}"));
        let ns = ns.name.as_str();
        let out = bed.tool(
            helm,
            &[
                "upgrade",
                "--install",
                "hello",
                chart.to_str().unwrap(),
                "--namespace",
                ns,
                "--create-namespace",
                "--wait",
                "--timeout",
                "60s",
            ],
        );
        assert!(
            out.status.success(),
            "{helm} install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let ready = bed.kubectl(&[
            "-n",
            ns,
            "get",
            "deployment",
            "hello",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        assert_eq!(
            ready, "1",
            "{helm} --wait returned before the Deployment was ready"
        );
        // The API server reports the pinned version (stamped at build), which charts see.
        let seen = bed.kubectl(&[
            "-n",
            ns,
            "get",
            "deployment",
            "hello",
            "-o",
            "jsonpath={.metadata.annotations.kgf-up\\.test/kube-version}",
        ]);
        assert_eq!(seen, pinned("K8S_VERSION"));
    }
}

#[test]
fn kustomize_renders_a_kustomization() {
    let bed = bed();
    let out = bed.tool(
        "kustomize",
        &["build", fixture("testbed/kustomization").to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8_lossy(&out.stdout);
    assert!(yaml.contains("name: bed-settings"), "{yaml}");
    assert!(
        yaml.contains("app.kubernetes.io/part-of: kgf-testbed"),
        "{yaml}"
    );
}

/// The bed's namespace holds loopback, the real-node bed's docker bridges and their containers'
/// links (and scripts/testhosts' links when its hosts are up), every route leads into
/// 198.18.0.0/15, and there is no default route: nothing started here can reach a 10/8, 172.16/12,
/// 192.168/16 or public address, so no packet leaves the machine.
#[test]
fn the_bed_namespace_has_no_route_off_the_machine() {
    let name = std::env::var("KGF_TESTBED_NETNS").unwrap_or_else(|_| "kgf-testbed".into());
    let bed_ns = Path::new("/run/netns").join(name);
    let ours =
        std::fs::metadata("/proc/self/ns/net").map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    let bed = std::fs::metadata(&bed_ns).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    assert_eq!(
        ours.ok(),
        bed.ok(),
        "the tests run inside the bed's network namespace"
    );

    let interfaces: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for i in &interfaces {
        assert!(
            i == "lo"
                || i == "docker0"
                || i.starts_with("br-")
                || i.starts_with("veth")
                || i.starts_with("kgfb"),
            "an interface the beds did not make: {i} (all: {interfaces:?})"
        );
    }
    // /proc/net/route: destination and mask are network-order words printed as host (x86:
    // little-endian) integers.
    let routes = std::fs::read_to_string("/proc/net/route").unwrap();
    let bed_range = u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0));
    for line in routes.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = |hex: &str| u32::from_str_radix(hex, 16).unwrap().swap_bytes();
        let (dest, mask) = (addr(f[1]), addr(f[7]));
        assert!(
            mask >= 0xfffe_0000 && dest & 0xfffe_0000 == bed_range,
            "a route outside 198.18.0.0/15: {line}"
        );
    }
    for outside in [
        "10.0.0.1:443",
        "172.16.0.1:443",
        "192.168.0.1:443",
        "1.1.1.1:443",
    ] {
        let err =
            std::net::TcpStream::connect_timeout(&outside.parse().unwrap(), Duration::from_secs(2))
                .unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::NetworkUnreachable,
            "{outside}: {err}"
        );
    }
}

/// A pinned version from scripts/versions.env.
fn pinned(key: &str) -> String {
    let text = std::fs::read_to_string(repo().join("scripts/versions.env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("{key} is not in scripts/versions.env"))
        .to_string()
}

fn testbed(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(repo().join("scripts/testbed"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("scripts/testbed runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn up_on_a_running_bed_is_a_no_op() {
    let started = Instant::now();
    let (ok, text) = testbed(&["up"], &[]);
    assert!(ok, "{text}");
    assert!(text.contains("already running"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a running bed is only probed"
    );
}

/// A private cache whose bin/ links to the real binaries, so a second bed can start.
fn private_cache(dir: &Path) -> String {
    let cache = dir.to_str().unwrap().to_string();
    let (_, env) = testbed(&["env"], &[("KGF_TESTBED_CACHE", &cache)]);
    let bin = env
        .lines()
        .find_map(|l| l.strip_prefix("export KGF_TESTBED_BIN="))
        .expect("env prints the bin directory");
    std::fs::create_dir_all(Path::new(bin).parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(bed().bin, bin).unwrap();
    cache
}

#[test]
fn up_names_a_missing_binary_and_the_fix() {
    let empty = tempfile::tempdir().unwrap();
    let (ok, text) = testbed(
        &["up"],
        &[("KGF_TESTBED_CACHE", empty.path().to_str().unwrap())],
    );
    assert!(!ok);
    assert!(text.contains("binary 'etcd' is missing"), "{text}");
    assert!(text.contains("fix: run scripts/testbed build"), "{text}");
}

#[test]
fn up_names_a_taken_port_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let cache = private_cache(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let (ok, text) = testbed(
        &["up"],
        &[("KGF_TESTBED_CACHE", &cache), ("KGF_TESTBED_PORT", &port)],
    );
    assert!(!ok);
    assert!(
        text.contains(&format!("port {port} on 127.0.0.1")),
        "{text}"
    );
    assert!(text.contains("KGF_TESTBED_PORT=<port>"), "{text}");
}

/// The numeric settings reach bash arithmetic, where `a[$(cmd)]` runs `cmd`: `up` must refuse
/// them, naming the setting and the fix, before it runs or makes anything.
#[test]
fn up_refuses_a_setting_that_is_not_a_whole_number_before_it_starts_anything() {
    let dir = tempfile::tempdir().unwrap();
    let cache = private_cache(dir.path());
    let ran = dir.path().join("ran");
    let injected = format!("a[$(touch {})]", ran.display());
    for (name, value) in [
        ("KGF_TESTBED_S3_WAIT", injected.as_str()),
        ("KGF_TESTBED_S3_WAIT", "0"),
        ("KGF_TESTBED_PORT", "65536"),
        ("KGF_TESTBED_S3_PORT", "9000x"),
    ] {
        let (ok, text) = testbed(
            &["up"],
            &[
                ("KGF_TESTBED_CACHE", &cache),
                ("KGF_TESTBED_NETNS", "kgf-testbed-bad"),
                (name, value),
            ],
        );
        assert!(!ok, "{name}={value}: {text}");
        assert!(
            text.contains(&format!("{name} must be a whole number")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "fix: unset it for the default, or set e.g. {name}="
            )),
            "{text}"
        );
        assert!(!ran.exists(), "{name}={value} ran as a command");
        assert!(
            !Path::new("/run/netns/kgf-testbed-bad").exists(),
            "{name}={value}: a namespace was made"
        );
        assert!(
            !Path::new(&cache).join("state").exists(),
            "{name}={value}: state was written"
        );
    }
}

/// A second bed's `down`, run when dropped too, so that a failed assertion leaves no namespace
/// or process behind for the next run to trip over.
struct SecondBed<'a> {
    env: &'a [(&'a str, &'a str)],
}

impl Drop for SecondBed<'_> {
    fn drop(&mut self) {
        testbed(&["down"], self.env);
    }
}

/// The bed's MinIO refuses root credentials under 8 characters and exits: `up` must show why
/// (the end of MinIO's log, not only its path, which a test's tempdir takes with it), and the
/// next `up` must finish the bed whose control plane the failed one left running.
#[test]
fn up_shows_why_minio_exited_the_next_up_finishes_and_down_stops_everything_idempotently() {
    let dir = tempfile::tempdir().unwrap();
    let cache = private_cache(dir.path());
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port().to_string()
    };
    let env = [
        ("KGF_TESTBED_CACHE", cache.as_str()),
        ("KGF_TESTBED_PORT", port.as_str()),
        ("KGF_TESTBED_NETNS", "kgf-testbed-down"),
        // The private cache holds the kwok bed's binaries only: no real-node bed.
        ("KGF_TESTBED_REAL_NODES", "0"),
    ];
    let _down = SecondBed { env: &env };
    let state = format!("{cache}/state");
    let s3 = Path::new(&state).join("s3");
    std::fs::create_dir_all(&s3).unwrap();
    std::fs::write(s3.join("access-key"), "kgf").unwrap();
    std::fs::write(s3.join("secret-key"), "short").unwrap();
    let (ok, text) = testbed(&["up"], &env);
    assert!(!ok, "{text}");
    assert!(text.contains("MinIO exited before it got ready"), "{text}");
    assert!(
        text.contains("MINIO_ROOT_PASSWORD length at least 8"),
        "MinIO's own reason is shown: {text}"
    );
    assert!(text.contains("fix: "), "{text}");

    std::fs::remove_file(s3.join("secret-key")).unwrap();
    let (ok, text) = testbed(&["up"], &env);
    assert!(ok, "{text}");
    assert!(text.contains("already running"), "{text}");
    let running = || {
        Command::new("pgrep")
            .args(["-f", &state])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap()
    };
    assert!(running(), "the second bed's processes run");
    for _ in 0..2 {
        let (ok, text) = testbed(&["down"], &env);
        assert!(ok, "{text}");
        assert!(!running(), "no process of the bed survives down");
        assert!(!Path::new(&state).exists(), "its state is removed");
        assert!(
            !Path::new("/run/netns/kgf-testbed-down").exists(),
            "its namespace is removed"
        );
    }
}
