//! What the real GPU operator, cert-manager and an air gap do to a cluster, reproduced on the test
//! bed: nodes labelled `nvidia.com/gpu.present=true` by the operator without GPUs, operand pods on
//! a node that must run none, a webhook whose CA cert-manager injects only after a while, and
//! `kgf-up vendor` followed by an `up` from the copy with no remote reachable.
//!
//! The tests change shared node labels, so they take [`NODES`] and run one at a time.

#![allow(
    clippy::await_holding_lock,
    reason = "NODES serialises whole tests, each on its own runtime; nothing on that runtime waits for it"
)]

mod support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kgf_up::components::{self, Component};
use kgf_up::profile::Source;
use support::{Bed, bed, fixture, kgf_up, text};

static NODES: Mutex<()> = Mutex::new(());

fn lock() -> std::sync::MutexGuard<'static, ()> {
    NODES.lock().unwrap_or_else(|e| e.into_inner())
}

fn path(rel: &str) -> String {
    fixture(rel).display().to_string()
}

/// Labels a node for the test's lifetime; the label goes again on drop, even when the test fails.
struct Label<'a> {
    bed: &'a Bed,
    node: &'static str,
    key: &'static str,
}

impl<'a> Label<'a> {
    fn set(bed: &'a Bed, node: &'static str, key: &'static str, value: &str) -> Self {
        bed.kubectl(&[
            "label",
            "node",
            node,
            &format!("{key}={value}"),
            "--overwrite",
        ]);
        Label { bed, node, key }
    }
}

impl Drop for Label<'_> {
    fn drop(&mut self) {
        let _ = self.bed.tool(
            "kubectl",
            &["label", "node", self.node, &format!("{}-", self.key)],
        );
    }
}

/// The bed's CPU node labelled as the real operator labels every kind node (PCI view shared with
/// the host): `gpu.present=true` with 0 GPUs. The profile's GPU node counts, the CPU node is named
/// as not counted; naming the CPU node as a GPU node fails with its name; on an existing cluster
/// whose GPU nodes kgf-up did not choose, the CPU node is a warning, not a failure.
#[test]
fn gpu_validation_holds_the_profiles_gpu_nodes_to_their_gpus_and_only_notes_operator_labels() {
    let _nodes = lock();
    let bed = bed();
    let _label = Label::set(&bed, "kgf-cpu-0", "nvidia.com/gpu.present", "true");
    let profile = path("real-host/gpu-nodes.yaml");

    let out = kgf_up(&[
        "verify",
        "--profile",
        &profile,
        "--set",
        "validation.gpu_nodes=[kgf-gpu-0]",
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("allocatable nvidia.com/gpu: kgf-gpu-0=1"),
        "{all}"
    );
    assert!(all.contains("GPU nodes of the profile: kgf-gpu-0"), "{all}");
    assert!(
        all.contains("without allocatable nvidia.com/gpu: kgf-cpu-0 (not GPU nodes of the profile, not counted)"),
        "{all}"
    );

    let out = kgf_up(&[
        "verify",
        "--profile",
        &profile,
        "--set",
        "validation.gpu_nodes=[kgf-gpu-0, kgf-cpu-0]",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("kgf-cpu-0 is a GPU node of the profile without allocatable nvidia.com/gpu"),
        "{all}"
    );

    let out = kgf_up(&["verify", "--profile", &profile]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("kgf-cpu-0 (warning: kgf-up did not choose"),
        "{all}"
    );
}

/// A device-plugin pod bound to a node labelled to run no operand (where kind's containerd has
/// no nvidia runtime) is named by the GPU operator's health check; once it is gone, the check passes.
#[tokio::test(flavor = "multi_thread")]
async fn verify_names_an_operand_pod_on_a_node_that_must_run_none() {
    let _nodes = lock();
    let bed = bed();
    let ns = "kgf-rh-gpu-operator";
    let _ = bed.tool("kubectl", &["create", "namespace", ns]);
    bed.apply_in(
        ns,
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: gpu-operator}
spec:
  replicas: 1
  selector: {matchLabels: {app: gpu-operator}}
  template:
    metadata: {labels: {app: gpu-operator}}
    spec:
      nodeName: kgf-gpu-0
      containers: [{name: operator, image: nvcr.io/nvidia/gpu-operator:v26.7.0}]
"#,
    );
    bed.kubectl(&[
        "-n",
        ns,
        "wait",
        "--for=condition=Available",
        "deployment/gpu-operator",
        "--timeout=60s",
    ]);
    let _label = Label::set(&bed, "kgf-cpu-0", "nvidia.com/gpu.deploy.operands", "false");
    let plugin = r#"
apiVersion: v1
kind: Pod
metadata: {name: nvidia-device-plugin-daemonset-x1}
spec:
  nodeName: kgf-cpu-0
  nodeSelector: {nvidia.com/gpu.deploy.device-plugin: "true"}
  containers: [{name: plugin, image: nvcr.io/nvidia/k8s-device-plugin:v0.20.0}]
"#;
    bed.apply_in(ns, plugin);
    let component = Component {
        name: "gpu-operator".into(),
        source: Source::Chart { path: "x".into() },
        namespace: ns.into(),
        release: "gpu-operator".into(),
        needs: Vec::new(),
        values: serde_json::Value::Null,
        timeout: Duration::from_secs(5),
        manifests: Vec::new(),
    };
    let kube = bed.kube().await;
    let err = components::verify(&kube, &component, false)
        .await
        .unwrap_err();
    assert!(
        err.message.contains(
            "operand pods on nodes labelled nvidia.com/gpu.deploy.operands=false: \
             nvidia-device-plugin-daemonset-x1 on kgf-cpu-0"
        ),
        "{}",
        err.message
    );
    bed.kubectl(&[
        "-n",
        ns,
        "delete",
        "pod",
        "nvidia-device-plugin-daemonset-x1",
        "--wait=false",
        "--grace-period=0",
        "--force",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match components::verify(&kube, &component, false).await {
            Ok(why) => {
                assert!(why.contains("no operand on a node without GPUs"), "{why}");
                break;
            }
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => panic!("still failing after the pod went: {}", e.message),
        }
    }
    bed.kubectl(&["delete", "namespace", ns, "--wait=false"]);
}

/// The webhook asks cert-manager for its CA; the CA injector (here: this test, after 4 s) fills
/// the caBundle. Without it kgf-up times out naming the webhook; with it, the component that
/// needs the webhook is installed only after the caBundle was filled.
#[test]
fn a_webhook_is_ready_only_once_its_ca_is_injected_and_what_needs_it_waits() {
    let _nodes = lock();
    let bed = bed();
    let profile = path("real-host/webhook.yaml");
    let down = || {
        let out = kgf_up(&["down", "--profile", &profile, "--non-interactive", "--yes"]);
        assert!(out.status.success(), "down: {}", text(&out));
    };

    // Nobody injects: the wait names the webhook and what it waited for.
    let out = kgf_up(&[
        "up",
        "--profile",
        &profile,
        "--set",
        "components.ca-webhook.timeout=4s",
    ]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("kgf-rh-webhook"), "{all}");
    assert!(
        all.contains("caBundle injected into every webhook"),
        "{all}"
    );
    assert!(
        all.contains("caBundle empty on validate.gadgets.kgf-test.example.com"),
        "{all}"
    );
    assert!(
        bed.tool(
            "kubectl",
            &["-n", "kgf-rh-after", "get", "configmap", "after-webhook"]
        )
        .status
        .code()
            != Some(0),
        "after-webhook was installed though the webhook had no CA"
    );
    down();

    let mark = bed.audit_mark();
    let injector = std::thread::spawn({
        let bed = support::bed();
        move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while bed
                .tool(
                    "kubectl",
                    &["get", "validatingwebhookconfiguration", "kgf-rh-webhook"],
                )
                .status
                .code()
                != Some(0)
            {
                assert!(Instant::now() < deadline, "the webhook never appeared");
                std::thread::sleep(Duration::from_millis(200));
            }
            std::thread::sleep(Duration::from_secs(4));
            bed.kubectl(&[
                "patch",
                "validatingwebhookconfiguration",
                "kgf-rh-webhook",
                "--type=json",
                "-p",
                r#"[{"op":"add","path":"/webhooks/0/clientConfig/caBundle","value":"LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="}]"#,
            ]);
        }
    });
    let out = kgf_up(&["up", "--profile", &profile]);
    injector.join().unwrap();
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    let events = bed.mutations_since(&mark, &["kubectl", "Helm", "helm"]);
    let injected = events
        .iter()
        .position(|e| {
            e.resource == "validatingwebhookconfigurations"
                && e.verb == "patch"
                && e.user_agent.starts_with("kubectl")
        })
        .expect("the injection is in the audit log");
    let installed = events
        .iter()
        .position(|e| {
            e.resource == "configmaps"
                && e.verb == "create"
                && e.uri.contains("/namespaces/kgf-rh-after/")
        })
        .unwrap_or_else(|| panic!("after-webhook's ConfigMap was created: {events:#?}"));
    assert!(
        injected < installed,
        "after-webhook was installed before the webhook's CA was injected"
    );
    down();
}

fn git(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "kgf-up test")
        .env("GIT_AUTHOR_EMAIL", "test@kgf-up.invalid")
        .env("GIT_COMMITTER_NAME", "kgf-up test")
        .env("GIT_COMMITTER_EMAIL", "test@kgf-up.invalid")
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", text(&out));
}

/// `vendor` copies a chart directory (packaged) and a kustomization whose base is a remote git
/// repository (as Kubeflow Pipelines' Argo bases are); with the repository gone, `up` from the
/// copy converges, and the rendered base is on the cluster.
#[test]
fn vendor_makes_a_copy_that_installs_with_no_remote_reachable() {
    let _nodes = lock();
    let bed = bed();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("upstream");
    std::fs::create_dir_all(repo.join("base")).unwrap();
    std::fs::write(
        repo.join("base/kustomization.yaml"),
        "resources: [configmap.yaml]\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("base/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kgf-rh-remote-base}\ndata: {from: upstream}\n",
    )
    .unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    git(&repo, &["tag", "v1"]);
    let overlay = work.path().join("overlay");
    std::fs::create_dir_all(&overlay).unwrap();
    std::fs::write(
        overlay.join("kustomization.yaml"),
        format!(
            "namespace: kgf-rh-vendor\nresources:\n- namespace.yaml\n- file://{}//base?ref=v1\n",
            repo.display()
        ),
    )
    .unwrap();
    std::fs::write(
        overlay.join("namespace.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kgf-rh-vendor}\n",
    )
    .unwrap();
    let profile = work.path().join("profile.yaml");
    std::fs::write(
        &profile,
        format!(
            "name: kgf-rh-vendor\ncluster: {{provider: existing}}\n\
             settings: {{timeout: 30s, namespace: kgf-rh-system}}\n\
             components:\n  \
               vendored-chart:\n    source: {{chart: {{path: {chart}}}}}\n    namespace: kgf-rh-vendor-chart\n  \
               vendored-kustomize:\n    source: {{kustomize: {{paths: [{overlay}]}}}}\n    namespace: kgf-rh-vendor\n\
             validation: {{min_gpu_nodes: 0}}\n",
            chart = path("charts/configmap"),
            overlay = overlay.display(),
        ),
    )
    .unwrap();
    let copy = work.path().join("vendor");
    let out = kgf_up(&[
        "vendor",
        "--profile",
        profile.to_str().unwrap(),
        "--out",
        copy.to_str().unwrap(),
    ]);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(copy.join("charts/configmap-0.1.0.tgz").is_file(), "{all}");
    let rendered =
        std::fs::read_to_string(copy.join("kustomize/vendored-kustomize/0-overlay/resources.yaml"))
            .unwrap();
    assert!(rendered.contains("kgf-rh-remote-base"), "{rendered}");

    // The upstream repository goes: nothing may need it any more.
    std::fs::remove_dir_all(&repo).unwrap();
    #[derive(serde::Deserialize)]
    struct Sources {
        components: std::collections::BTreeMap<String, kgf_up::profile::ComponentSpec>,
    }
    let sources: Sources =
        serde_saphyr::from_str(&std::fs::read_to_string(copy.join("sources.yaml")).unwrap())
            .unwrap();
    assert!(
        all.contains("components:\n  vendored-chart:"),
        "the lines are printed: {all}"
    );
    let sets: Vec<String> = sources
        .components
        .iter()
        .map(|(name, spec)| {
            format!(
                "components.{name}.source={}",
                serde_json::to_string(spec.source.as_ref().unwrap()).unwrap()
            )
        })
        .collect();
    let mut args = vec!["up", "--profile", profile.to_str().unwrap()];
    for s in &sets {
        args.extend(["--set", s.as_str()]);
    }
    let out = kgf_up(&args);
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    bed.kubectl(&[
        "-n",
        "kgf-rh-vendor",
        "get",
        "configmap",
        "kgf-rh-remote-base",
    ]);
    bed.kubectl(&[
        "-n",
        "kgf-rh-vendor-chart",
        "get",
        "configmap",
        "vendored-chart",
    ]);

    args[0] = "down";
    args.extend(["--non-interactive", "--yes"]);
    let out = kgf_up(&args);
    assert!(out.status.success(), "down: {}", text(&out));
}
