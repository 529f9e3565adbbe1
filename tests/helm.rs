//! The helm and kustomize adapters against the test bed's real API server, with real helm 3 and
//! helm 4 (`helm3`, `helm4` in the bed's bin directory) and real kustomize, on the fixture charts in
//! `tests/fixtures/charts/` and the kustomization in `tests/fixtures/kustomize/`.
//!
//! Run inside the bed: `scripts/testbed run -- cargo test --offline --test helm`. Each test works in
//! its own namespace, so they run in parallel; the fixtures' CRDs stay behind, as helm leaves a
//! chart's `crds/` on uninstall.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kgf_up::exec::Exec;
use kgf_up::fix::Fix;
use kgf_up::helm::{
    ChartSource, Helm, HelmError, InstallFailure, Recovery, Release, ReleaseStatus,
};
use kgf_up::kube::Kubeconfig;
use kgf_up::kustomize::{Kustomize, KustomizeError, Target};
use kgf_up::step::{State, StepError};
use serde_json::{Value, json};
use support::{Bed, bed, fixture};

/// A helm of the given major version, bound to the bed, and the namespace prefix of its tests.
async fn helm(bed: &Bed, major: u32) -> Helm {
    let kubeconfig = Kubeconfig {
        path: bed.kubeconfig.clone(),
        context: None,
    };
    let helm = Helm::detect(Exec::new(), program(bed, major), &kubeconfig)
        .await
        .unwrap_or_else(|e| panic!("helm{major} is usable: {e}"));
    assert_eq!(
        helm.version().major,
        major,
        "helm{major} reports its own major version"
    );
    helm
}

fn program(bed: &Bed, major: u32) -> String {
    bed.bin.join(format!("helm{major}")).display().to_string()
}

fn operator_chart() -> ChartSource {
    ChartSource::Local {
        path: fixture("charts/operator"),
    }
}

fn never_ready_chart() -> ChartSource {
    ChartSource::Local {
        path: fixture("charts/never-ready"),
    }
}

fn release(name: &str, namespace: &str, chart: ChartSource, values: Value, dir: &Path) -> Release {
    Release::new(
        name,
        namespace,
        chart,
        values,
        dir.join(format!("{name}.values.json")),
        Duration::from_secs(60),
    )
}

/// Starts from an empty namespace and, when the test ends whatever its outcome, uninstalls the
/// releases in it (their cluster-scoped objects would outlive the namespace) and removes it.
struct Namespace<'a> {
    bed: &'a Bed,
    name: String,
    helm: String,
}

impl<'a> Namespace<'a> {
    fn fresh(bed: &'a Bed, major: u32, name: &str) -> Self {
        let ns = Namespace {
            bed,
            name: name.to_string(),
            helm: format!("helm{major}"),
        };
        ns.clean(true);
        ns
    }

    fn clean(&self, wait: bool) {
        let names = self.bed.tool(
            "kubectl",
            &[
                "get",
                "secrets",
                "-n",
                &self.name,
                "-l",
                "owner=helm",
                "-o",
                "jsonpath={.items[*].metadata.labels.name}",
            ],
        );
        let mut releases: Vec<String> = String::from_utf8_lossy(&names.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        releases.dedup();
        for release in releases {
            self.bed.tool(
                &self.helm,
                &[
                    "uninstall",
                    &release,
                    "-n",
                    &self.name,
                    "--wait",
                    "--timeout",
                    "60s",
                ],
            );
        }
        self.bed.tool(
            "kubectl",
            &[
                "delete",
                "namespace",
                &self.name,
                "--ignore-not-found",
                &format!("--wait={wait}"),
                "--timeout=60s",
            ],
        );
    }
}

impl Drop for Namespace<'_> {
    fn drop(&mut self) {
        self.clean(false);
    }
}

fn deployment_replicas(bed: &Bed, namespace: &str, name: &str) -> String {
    // helm 3 returns once the ReplicaSet is ready; the Deployment's status follows a moment later.
    let deployment = format!("deployment/{name}");
    bed.kubectl(&[
        "rollout",
        "status",
        &deployment,
        "-n",
        namespace,
        "--timeout=60s",
    ]);
    bed.kubectl(&[
        "get",
        &deployment,
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.availableReplicas}",
    ])
}

/// What the helm step makes of the release's record.
async fn observe(helm: &Helm, r: &Release) -> kgf_up::step::Observation {
    helm.observe(r, bed().kube().await.client())
        .await
        .map(kgf_up::step::Observation::from)
        .unwrap_or_else(|e| panic!("observe {}/{}: {e}", r.namespace, r.name))
}

async fn install_observe_drift_reinstall(major: u32) {
    let bed = bed();
    let helm = helm(&bed, major).await;
    let ns = Namespace::fresh(&bed, major, &format!("kgf-helm{major}-lifecycle"));
    let dir = tempfile::tempdir().unwrap();
    // The chart's ClusterRole is named after the release: one name per test, as helm requires.
    let op = format!("op{major}");
    let operator = format!("{op}-operator");
    let mut r = release(
        &op,
        &ns.name,
        operator_chart(),
        // Values whose types YAML 1.1 would change ("on", "yes") or helm stores as floats.
        json!({
            "operator": {"replicas": 2},
            "extra": {"ratio": 0.5, "count": 1000000, "flag": true, "words": ["on", "yes", "1.0"]}
        }),
        dir.path(),
    );

    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Missing, "{seen:?}");

    let done = helm.install(&r).await.expect("first install");
    assert_eq!(done.recovery, None);
    assert_eq!(deployment_replicas(&bed, &ns.name, &operator), "2");
    // helm 3's --wait accepts a DaemonSet with maxUnavailable pods unready: wait for it here.
    let agent = format!("daemonset/{op}-agent");
    bed.kubectl(&["rollout", "status", &agent, "-n", &ns.name, "--timeout=60s"]);
    let ready = bed.kubectl(&[
        "get",
        &agent,
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.status.numberReady}",
    ]);
    assert_eq!(ready, "1", "the agent runs on the one GPU node only");
    bed.kubectl(&["get", "crd", "gadgets.fixture.kgf-up.dev"]);

    // Observe is read-only: no helm request that changes anything in this namespace.
    let mark = bed.audit_mark();
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Converged, "{seen:?}");
    assert!(
        seen.reason.contains("fixture-operator 0.3.0"),
        "{}",
        seen.reason
    );
    let mutations: Vec<_> = bed
        .mutations_since(&mark, &["Helm"])
        .into_iter()
        .filter(|e| e.uri.contains(&ns.name))
        .collect();
    assert!(mutations.is_empty(), "observe mutated: {mutations:?}");

    r.values["operator"]["replicas"] = json!(3);
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Drifted, "{seen:?}");
    assert!(
        seen.reason
            .contains("`operator.replicas` is 2 on the cluster, kgf-up wants 3"),
        "{}",
        seen.reason
    );
    helm.install(&r).await.expect("upgrade with new values");
    assert_eq!(observe(&helm, &r).await.state, State::Converged);
    assert_eq!(deployment_replicas(&bed, &ns.name, &operator), "3");

    // A value set by hand outside kgf-up is drift, and the next install removes it.
    let hand = bed.tool(
        &format!("helm{major}"),
        &[
            "upgrade",
            &op,
            fixture("charts/operator").to_str().unwrap(),
            "-n",
            &ns.name,
            "--reuse-values",
            "--set",
            "operator.logLevel=debug",
        ],
    );
    assert!(
        hand.status.success(),
        "{}",
        String::from_utf8_lossy(&hand.stderr)
    );
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Drifted, "{seen:?}");
    assert!(
        seen.reason
            .contains("`operator.logLevel` is \"debug\" on the cluster but not set by kgf-up"),
        "{}",
        seen.reason
    );
    helm.install(&r).await.expect("reset to kgf-up's values");
    assert_eq!(observe(&helm, &r).await.state, State::Converged);

    // A new chart version (packaged with `helm package --version`) is drift too.
    let package = bed.tool(
        &format!("helm{major}"),
        &[
            "package",
            fixture("charts/operator").to_str().unwrap(),
            "--version",
            "0.4.0",
            "-d",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(
        package.status.success(),
        "{}",
        String::from_utf8_lossy(&package.stderr)
    );
    r.chart = ChartSource::Local {
        path: dir.path().join("fixture-operator-0.4.0.tgz"),
    };
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Drifted, "{seen:?}");
    assert!(
        seen.reason.contains(
            "runs chart fixture-operator 0.3.0, the profile wants fixture-operator 0.4.0"
        ),
        "{}",
        seen.reason
    );
    helm.install(&r)
        .await
        .expect("upgrade to the packaged 0.4.0");
    assert_eq!(observe(&helm, &r).await.state, State::Converged);

    assert!(
        helm.uninstall(&op, &ns.name, Duration::from_secs(60))
            .await
            .unwrap()
    );
    assert!(
        !helm
            .uninstall(&op, &ns.name, Duration::from_secs(60))
            .await
            .unwrap(),
        "a second uninstall finds nothing"
    );
    assert_eq!(observe(&helm, &r).await.state, State::Missing);
    let left = bed.kubectl(&[
        "get",
        "deployment,daemonset,configmap",
        "-n",
        &ns.name,
        "-l",
        &format!("app.kubernetes.io/instance={op}"),
        "-o",
        "name",
    ]);
    assert_eq!(left.trim(), "", "uninstall removes the release's objects");
    bed.kubectl(&["get", "crd", "gadgets.fixture.kgf-up.dev"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn helm3_install_observe_drift_reinstall() {
    install_observe_drift_reinstall(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helm4_install_observe_drift_reinstall() {
    install_observe_drift_reinstall(4).await;
}

/// Starts `helm upgrade --install` of the never-ready chart in the background, waits until the
/// release records `status`, and kills helm with SIGKILL: what a killed `kgf-up` leaves behind.
fn kill_helm_midway(bed: &Bed, major: u32, name: &str, namespace: &str, status: &str) {
    let wait = if major == 4 {
        "--wait=watcher"
    } else {
        "--wait"
    };
    let chart = fixture("charts/never-ready");
    let mut child = Command::new(program(bed, major))
        .args([
            "upgrade",
            "--install",
            name,
            chart.to_str().unwrap(),
            "-n",
            namespace,
        ])
        .args([
            "--create-namespace",
            "--reset-values",
            "--set",
            "gpus=8",
            wait,
            "--timeout",
            "300s",
        ])
        .env("KUBECONFIG", &bed.kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("helm starts");
    let started = Instant::now();
    loop {
        let out = bed.tool(
            &format!("helm{major}"),
            &["get", "metadata", name, "-n", namespace, "-o", "json"],
        );
        let seen: Option<Value> = serde_json::from_slice(&out.stdout).ok();
        if seen.as_ref().and_then(|v| v["status"].as_str()) == Some(status) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "helm never reached {status}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    child.kill().expect("SIGKILL helm");
    child.wait().unwrap();
}

async fn interrupted_operations_are_recovered(major: u32) {
    let bed = bed();
    let helm = helm(&bed, major).await;
    let ns = Namespace::fresh(&bed, major, &format!("kgf-helm{major}-recover"));
    let dir = tempfile::tempdir().unwrap();
    let r = release(
        "stuck",
        &ns.name,
        never_ready_chart(),
        json!({"gpus": 0}),
        dir.path(),
    );

    // Killed during the first install: pending-install, never deployed.
    kill_helm_midway(&bed, major, "stuck", &ns.name, "pending-install");
    let plain = bed.tool(
        &format!("helm{major}"),
        &[
            "upgrade",
            "--install",
            "stuck",
            fixture("charts/never-ready").to_str().unwrap(),
            "-n",
            &ns.name,
        ],
    );
    assert!(
        String::from_utf8_lossy(&plain.stderr)
            .contains("another operation (install/upgrade/rollback) is in progress"),
        "a plain helm upgrade is blocked by the stuck release"
    );
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Failed, "{seen:?}");
    assert!(
        seen.reason.contains("stuck in pending-install"),
        "{}",
        seen.reason
    );
    let done = helm.install(&r).await.expect("recover and install");
    assert_eq!(
        done.recovery,
        Some(Recovery::Uninstall {
            stuck: 1,
            status: "pending-install".into()
        })
    );
    assert_eq!(observe(&helm, &r).await.state, State::Converged);
    assert_eq!(deployment_replicas(&bed, &ns.name, "stuck"), "1");

    // Killed during an upgrade: pending-upgrade over deployed revision 1.
    kill_helm_midway(&bed, major, "stuck", &ns.name, "pending-upgrade");
    let meta = kgf_up::helm::records::latest(bed.kube().await.client(), "stuck", &ns.name)
        .await
        .unwrap()
        .unwrap()
        .latest;
    assert_eq!(
        (meta.revision, meta.status),
        (2, ReleaseStatus::PendingUpgrade)
    );
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Failed, "{seen:?}");
    let done = helm.install(&r).await.expect("recover and upgrade");
    assert_eq!(
        done.recovery,
        Some(Recovery::Rollback {
            stuck: 2,
            status: "pending-upgrade".into(),
            to: 1
        })
    );
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Converged, "{seen:?}");
    let history = helm.history("stuck", &ns.name).await.unwrap();
    let last = history.iter().max_by_key(|h| h.revision).unwrap();
    assert_eq!(
        (last.revision, last.status.as_str()),
        (4, "deployed"),
        "{history:?}"
    );
    assert_eq!(deployment_replicas(&bed, &ns.name, "stuck"), "1");
}

#[tokio::test(flavor = "multi_thread")]
async fn helm3_interrupted_operations_are_recovered() {
    interrupted_operations_are_recovered(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helm4_interrupted_operations_are_recovered() {
    interrupted_operations_are_recovered(4).await;
}

async fn a_pod_that_never_gets_ready_fails_within_the_timeout(major: u32) {
    let bed = bed();
    let helm = helm(&bed, major).await;
    let ns = Namespace::fresh(&bed, major, &format!("kgf-helm{major}-never-ready"));
    let dir = tempfile::tempdir().unwrap();
    let mut r = release(
        "gpu-hog",
        &ns.name,
        never_ready_chart(),
        json!({}),
        dir.path(),
    );
    r.timeout = Duration::from_secs(10);

    let started = Instant::now();
    let err = helm
        .install(&r)
        .await
        .expect_err("8 GPUs are never available");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(40),
        "took {took:?}"
    );
    assert!(
        matches!(
            &err,
            HelmError::Install {
                failure: InstallFailure::NotReady,
                ..
            }
        ),
        "{err:?}"
    );
    let step = StepError::from(err);
    assert!(
        step.message
            .starts_with(&format!("installing release {}/gpu-hog", ns.name)),
        "{}",
        step.message
    );
    assert!(
        step.message
            .contains("did not become ready in time (helm --timeout 10s)"),
        "{}",
        step.message
    );
    assert!(
        step.fix
            .as_deref()
            .unwrap()
            .contains("raise the step's timeout")
    );

    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Failed, "{seen:?}");
    assert!(seen.reason.contains("failed"), "{}", seen.reason);
    // The pod is still there for the diagnosis: Pending, unschedulable.
    let reason = bed.kubectl(&[
        "get",
        "pods",
        "-n",
        &ns.name,
        "-l",
        "app.kubernetes.io/instance=gpu-hog",
        "-o",
        "jsonpath={.items[0].status.conditions[?(@.type==\"PodScheduled\")].reason}",
    ]);
    assert_eq!(reason, "Unschedulable");

    // A failed release needs no recovery: the next install upgrades it in place.
    r.values = json!({"gpus": 0});
    let done = helm.install(&r).await.expect("fixed values install");
    assert_eq!(done.recovery, None);
    assert_eq!(observe(&helm, &r).await.state, State::Converged);
}

#[tokio::test(flavor = "multi_thread")]
async fn helm3_a_pod_that_never_gets_ready_fails_within_the_timeout() {
    a_pod_that_never_gets_ready_fails_within_the_timeout(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helm4_a_pod_that_never_gets_ready_fails_within_the_timeout() {
    a_pod_that_never_gets_ready_fails_within_the_timeout(4).await;
}

/// A helm chart repository on loopback: `index.yaml` and the packaged chart, served over HTTP by
/// a thread of the test.
fn serve_chart_repo(bed: &Bed, dir: &Path) -> String {
    let chart = fixture("charts/operator");
    for args in [
        vec![
            "package",
            chart.to_str().unwrap(),
            "-d",
            dir.to_str().unwrap(),
        ],
        vec!["repo", "index", dir.to_str().unwrap()],
    ] {
        let out = bed.tool("helm3", &args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let root = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(&stream);
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // Read the headers to the blank line: closing with unread input would reset the
            // connection under the client.
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/");
            let file: PathBuf = root.join(path.trim_start_matches('/'));
            let mut stream = &stream;
            let _ = match std::fs::read(&file).ok().filter(|_| !path.contains("..")) {
                Some(body) => stream
                    .write_all(
                        format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .as_bytes(),
                    )
                    .and_then(|_| stream.write_all(&body)),
                None => stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            };
        }
    });
    url
}

async fn installs_from_a_repository_url(major: u32) {
    let bed = bed();
    let helm = helm(&bed, major).await;
    let ns = Namespace::fresh(&bed, major, &format!("kgf-helm{major}-repo"));
    let dir = tempfile::tempdir().unwrap();
    let url = serve_chart_repo(&bed, &dir.path().join("repo"));
    let repo = |version: &str| ChartSource::Repo {
        url: url.clone(),
        chart: "fixture-operator".into(),
        version: version.into(),
    };
    let name = format!("repo{major}");
    let values = json!({"agent": {"enabled": false}});

    let missing = release(&name, &ns.name, repo("9.9.9"), values.clone(), dir.path());
    let err = helm.install(&missing).await.expect_err("no such version");
    assert!(
        matches!(
            &err,
            HelmError::Install {
                failure: InstallFailure::Chart,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.fix().unwrap_or_default().contains("pinned version"),
        "{}",
        err.fix().unwrap_or_default()
    );

    let r = release(&name, &ns.name, repo("0.3.0"), values, dir.path());
    helm.install(&r)
        .await
        .expect("install from the repository URL");
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Converged, "{seen:?}");
    let ds = bed.kubectl(&["get", "daemonset", "-n", &ns.name, "-o", "name"]);
    assert_eq!(ds.trim(), "", "agent.enabled=false reached the chart");
}

#[tokio::test(flavor = "multi_thread")]
async fn helm3_installs_from_a_repository_url() {
    installs_from_a_repository_url(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helm4_installs_from_a_repository_url() {
    installs_from_a_repository_url(4).await;
}

/// Kinds of the documents of a multi-document YAML stream, in order.
fn kinds(yaml: &str) -> Vec<String> {
    yaml.split("\n---\n")
        .filter_map(|doc| {
            doc.lines()
                .find_map(|l| l.strip_prefix("kind: "))
                .map(str::to_string)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kustomize_renders_the_crd_and_its_custom_resource() {
    let bed = bed();
    let target = Target::parse(fixture("kustomize").to_str().unwrap());
    let kustomize = bed.bin.join("kustomize").display().to_string();
    let kubectl = bed.bin.join("kubectl").display().to_string();

    let yaml = Kustomize::with_programs(Exec::new(), &kustomize, &kubectl)
        .build(&target)
        .await
        .expect("kustomize build");
    assert_eq!(
        kinds(&yaml),
        [
            "Namespace",
            "CustomResourceDefinition",
            "ConfigMap",
            "Deployment",
            "Widget"
        ]
    );
    assert!(yaml.contains("name: widgets.fixture.kgf-up.dev"));
    assert!(yaml.contains("namespace: kgf-fixture-kustomize"));

    // Without kustomize, kubectl's built-in kustomize renders the same objects.
    let fallback = Kustomize::with_programs(Exec::new(), "kgf-no-such-kustomize", &kubectl)
        .build(&target)
        .await
        .expect("kubectl kustomize");
    assert_eq!(kinds(&fallback), kinds(&yaml));

    // A broken kustomization is an error naming it, with kustomize's reason.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources:\n  - missing.yaml\n",
    )
    .unwrap();
    let broken = Target::Local(dir.path().into());
    let err = Kustomize::with_programs(Exec::new(), &kustomize, &kubectl)
        .build(&broken)
        .await
        .unwrap_err();
    assert!(matches!(err, KustomizeError::Build { .. }), "{err:?}");
    let step = StepError::from(err);
    assert!(
        step.message.starts_with(&format!(
            "rendering kustomization {}: ",
            dir.path().display()
        )),
        "{}",
        step.message
    );
    assert!(step.message.contains("missing.yaml"), "{}", step.message);
    assert!(
        step.fix
            .unwrap()
            .contains(&format!("kustomize build {}", dir.path().display()))
    );
}

/// A real OCI registry (distribution's `registry`, from the bed's bin directory) on a free
/// loopback port, storing into `dir`; killed when the guard drops.
struct Registry {
    child: std::process::Child,
    host: String,
}

impl Registry {
    fn start(bed: &Bed, dir: &Path) -> Registry {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let host = format!("127.0.0.1:{port}");
        let config = dir.join("registry.yaml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: error}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {host}}}\n",
                dir.join("storage").display()
            ),
        )
        .unwrap();
        let child = Command::new(bed.bin.join("registry"))
            .args(["serve", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the bed's `registry` runs (scripts/testbed build builds it)");
        let started = Instant::now();
        while std::net::TcpStream::connect(&host).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "registry never listened on {host}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Registry { child, host }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn installs_from_an_oci_registry(major: u32) {
    let bed = bed();
    let helm = helm(&bed, major).await;
    let ns = Namespace::fresh(&bed, major, &format!("kgf-helm{major}-oci"));
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(&bed, dir.path());
    let tool = format!("helm{major}");
    let package = bed.tool(
        &tool,
        &[
            "package",
            fixture("charts/operator").to_str().unwrap(),
            "-d",
            dir.path().to_str().unwrap(),
        ],
    );
    assert!(
        package.status.success(),
        "{}",
        String::from_utf8_lossy(&package.stderr)
    );
    let push = bed.tool(
        &tool,
        &[
            "push",
            dir.path()
                .join("fixture-operator-0.3.0.tgz")
                .to_str()
                .unwrap(),
            &format!("oci://{}/charts", registry.host),
            "--plain-http",
        ],
    );
    assert!(
        push.status.success(),
        "{}",
        String::from_utf8_lossy(&push.stderr)
    );

    let name = format!("oci{major}");
    let oci = |version: &str| ChartSource::Oci {
        reference: format!("oci://{}/charts/fixture-operator", registry.host),
        version: version.into(),
        plain_http: true,
    };
    let values = json!({"agent": {"enabled": false}});
    let r = release(&name, &ns.name, oci("0.3.0"), values.clone(), dir.path());
    assert_eq!(observe(&helm, &r).await.state, State::Missing);
    helm.install(&r)
        .await
        .expect("install from the OCI registry");
    let seen = observe(&helm, &r).await;
    assert_eq!(seen.state, State::Converged, "{seen:?}");
    assert_eq!(
        deployment_replicas(&bed, &ns.name, &format!("{name}-operator")),
        "1"
    );

    let missing = release(&name, &ns.name, oci("9.9.9"), values, dir.path());
    let seen = observe(&helm, &missing).await;
    assert_eq!(seen.state, State::Drifted, "{seen:?}");
    let err = helm.install(&missing).await.expect_err("no such tag");
    assert!(
        matches!(
            &err,
            HelmError::Install {
                failure: InstallFailure::Chart,
                ..
            }
        ),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn helm3_installs_from_an_oci_registry() {
    installs_from_an_oci_registry(3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn helm4_installs_from_an_oci_registry() {
    installs_from_an_oci_registry(4).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recording_gate_records_the_upgrade_and_changes_nothing() {
    let bed = bed();
    let exec = Exec::with_gate(kgf_up::gate::Gate::record());
    let kubeconfig = Kubeconfig {
        path: bed.kubeconfig.clone(),
        context: None,
    };
    let helm = Helm::detect(exec.clone(), program(&bed, 4), &kubeconfig)
        .await
        .expect("helm4 is usable");
    let ns = Namespace::fresh(&bed, 4, "kgf-helm4-dry-run");
    let dir = tempfile::tempdir().unwrap();
    let r = release("dry", &ns.name, operator_chart(), json!({}), dir.path());
    helm.install(&r).await.expect("a dry run succeeds");
    let planned: Vec<String> = exec.gate().take().into_iter().map(|c| c.summary).collect();
    assert_eq!(planned.len(), 1, "{planned:?}");
    assert!(planned[0].contains("upgrade --install dry "), "{planned:?}");
    assert_eq!(observe(&helm, &r).await.state, State::Missing);
}
