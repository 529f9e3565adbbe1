//! Every built-in component on the test bed, each from a fixture shaped like its real chart or
//! kustomization (tests/fixtures/components), installed by the real `kgf-up` binary with real helm
//! and kustomize: DAG order and bounded concurrency read from the JSON events, `status` converged, a
//! second `up` without a mutating request, a component that never gets ready diagnosed while the
//! others converge and then retried alone, a chart upgrade that upgrades its CRDs, and `down`
//! removing all of it (CRDs included) and nothing else. Also the health checks of `kgf-up verify` and MinIO's root Secret, against the
//! bed's API server.
//!
//! The tests that install share cluster-scoped CRDs, so they take [`INSTALLS`] and run one at a time.

mod support;

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kgf_up::components::builtin::minio;
use kgf_up::components::{self, Component};
use support::{Bed, bed, fixture, kgf_up, text};

static INSTALLS: Mutex<()> = Mutex::new(());

const AGENTS: &[&str] = &["kgf-up", "Helm", "helm", "kubectl"];

/// API groups of the fixtures' CRDs.
const GROUPS: &[&str] = &[
    "cert-manager.io",
    "nvidia.com",
    "ray.io",
    "serving.kserve.io",
    "monitoring.coreos.com",
    "app.k8s.io",
    "argoproj.io",
    "kubeflow.org",
];

/// Mutations of this test's objects since `mark`: other tests share the bed and change their own.
fn my_mutations(bed: &Bed, mark: &support::AuditMark) -> Vec<support::AuditEvent> {
    bed.mutations_since(mark, AGENTS)
        .into_iter()
        .filter(|m| {
            m.uri.contains("kgf-c-")
                || m.name.starts_with("kgf-c-")
                || GROUPS
                    .iter()
                    .any(|g| m.name.ends_with(g) || m.uri.contains(&format!("/apis/{g}/")))
        })
        .collect()
}

fn profile() -> String {
    fixture("profiles/testbed-all.yaml")
        .to_str()
        .unwrap()
        .to_string()
}

fn events(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON event ({e}): {l}")))
        .collect()
}

fn down() {
    let out = kgf_up(&[
        "down",
        "--profile",
        &profile(),
        "--non-interactive",
        "--yes",
    ]);
    assert!(out.status.success(), "down: {}", text(&out));
}

/// Namespaces that hold a helm release.
fn release_namespaces(bed: &Bed) -> Vec<String> {
    let out = bed.tool("helm", &["list", "--all-namespaces", "--all", "-o", "json"]);
    let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    list.iter()
        .map(|r| r["namespace"].as_str().unwrap().to_string())
        .collect()
}

/// The component steps of the profile and the components each needs (the built-in `needs`).
const COMPONENTS: &[(&str, &[&str])] = &[
    ("cert-manager", &[]),
    ("gpu-operator", &[]),
    // kgf-up's MinIO is the pipelines' object store: its keys go into Kubeflow's Secret.
    ("kubeflow-pipelines", &["minio"]),
    ("kuberay", &[]),
    ("kserve-crd", &[]),
    ("kserve", &["cert-manager", "kserve-crd"]),
    ("kserve-runtimes", &["kserve"]),
    ("minio", &[]),
    ("prometheus", &[]),
];

/// Each step's running interval as positions in the event stream: its first event to its `done`.
fn intervals(events: &[serde_json::Value]) -> BTreeMap<String, (usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        let step = e["step"].as_str().unwrap();
        if step.is_empty() {
            continue;
        }
        let entry = out.entry(step.to_string()).or_insert((i, usize::MAX));
        if e["phase"] == "done" {
            entry.1 = i;
        }
    }
    out
}

fn done_status(events: &[serde_json::Value], step: &str) -> Option<String> {
    events
        .iter()
        .filter(|e| e["step"] == step && e["phase"] == "done")
        .map(|e| e["status"].as_str().unwrap().to_string())
        .next_back()
}

/// The kinds and names the fixtures create cluster-wide, and every namespace they use.
fn leftovers(bed: &Bed) -> Vec<String> {
    let mut out: Vec<String> = bed
        .kubectl(&["get", "crd", "-o", "name"])
        .lines()
        .filter(|l| GROUPS.iter().any(|g| l.ends_with(g)))
        .map(String::from)
        .collect();
    out.extend(
        bed.kubectl(&["get", "ns,clusterrole,clusterrolebinding", "-o", "name"])
            .lines()
            .filter(|l| l.contains("kgf-c-"))
            .map(String::from),
    );
    out
}

fn resolved(sets: &[String]) -> Vec<Component> {
    let loaded = kgf_up::load::load(&profile(), sets).unwrap();
    components::resolve(&loaded.profile).unwrap()
}

fn component(all: &[Component], name: &str) -> Component {
    all.iter().find(|c| c.name == name).unwrap().clone()
}

#[test]
fn all_components_install_in_dag_order_concurrently_then_change_nothing_and_down_removes_them() {
    let _one = INSTALLS.lock().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    down();
    // Things kgf-up did not create and must leave: a namespace it installs into (with the user's
    // ConfigMap in it) and a CRD that the KubeRay chart also carries in crds/ (helm skips it).
    bed.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kgf-c-minio}\n---\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata: {name: users-own, namespace: kgf-c-minio}\ndata: {a: b}\n",
    );
    bed.apply(
        &std::fs::read_to_string(fixture(
            "components/kuberay-operator/crds/ray.io_raycronjobs.yaml",
        ))
        .unwrap(),
    );
    let before = leftovers(&bed);

    let started = Instant::now();
    let out = kgf_up(&["up", "--profile", &profile(), "-o", "json"]);
    let first_install = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    let ev = events(&out);
    for (name, _) in COMPONENTS {
        assert_eq!(
            done_status(&ev, &format!("component/{name}")).as_deref(),
            Some("applied"),
            "{}",
            text(&out)
        );
    }

    // DAG order: a component starts only after everything it needs is done; validation last.
    let iv = intervals(&ev);
    for (name, needs) in COMPONENTS {
        let (start, _) = iv[&format!("component/{name}")];
        for need in *needs {
            let (_, need_done) = iv[&format!("component/{need}")];
            assert!(
                need_done < start,
                "{name} started before {need} was done: {ev:#?}"
            );
        }
        assert!(iv[&format!("component/{name}")].1 < iv["validate/gpu-allocatable"].0);
    }
    // Concurrency: independent components ran at the same time, never more than the limit (4).
    let running_at = |i: usize| {
        COMPONENTS
            .iter()
            .filter(|(n, _)| {
                let (s, d) = iv[&format!("component/{n}")];
                s <= i && i < d
            })
            .count()
    };
    let peak = (0..ev.len()).map(running_at).max().unwrap();
    assert!(peak >= 2, "no two components overlapped: {ev:#?}");
    assert!(
        peak <= 4,
        "more than settings.concurrency ran at once: {peak}"
    );

    // What the fixtures bring is there: CRDs before their objects, DaemonSets on their nodes.
    assert_eq!(
        bed.kubectl(&[
            "-n",
            "kgf-c-gpu-operator",
            "get",
            "ds",
            "nvidia-device-plugin-daemonset",
            "-o",
            "jsonpath={.status.numberReady}/{.status.desiredNumberScheduled}"
        ]),
        "1/1",
        "the device plugin runs on the one GPU node"
    );
    assert_eq!(
        bed.kubectl(&[
            "-n",
            "kgf-c-monitoring",
            "get",
            "ds",
            "kube-prometheus-stack-prometheus-node-exporter",
            "-o",
            "jsonpath={.status.desiredNumberScheduled}"
        ]),
        "2"
    );
    assert_eq!(
        bed.kubectl(&[
            "-n",
            "kgf-c-monitoring",
            "get",
            "prometheus",
            "kube-prometheus-stack-prometheus",
            "-o",
            "jsonpath={.spec.serviceMonitorSelector}"
        ]),
        "{}",
        "serviceMonitorSelectorNilUsesHelmValues=false reached the chart"
    );
    // The real runtime-configs chart installs nothing unless kserve.servingruntime.enabled.
    assert!(
        bed.kubectl(&["get", "clusterservingruntimes", "-o", "name"])
            .contains("kserve-sklearnserver"),
        "the built-in values enable KServe's serving runtimes"
    );
    assert!(
        bed.kubectl(&[
            "-n",
            "kgf-c-kserve",
            "get",
            "configmap",
            "inferenceservice-config",
            "-o",
            "jsonpath={.data.deploy}"
        ])
        .contains("\"Standard\""),
        "KServe runs in Standard (raw deployment) mode"
    );
    assert_eq!(
        bed.kubectl(&[
            "-n",
            "kgf-c-kubeflow",
            "get",
            "deployment",
            "ml-pipeline",
            "-o",
            "jsonpath={.status.availableReplicas}"
        ]),
        "1"
    );

    // kgf-up's own GPU dashboard, for Grafana's sidecar, beside the monitoring stack.
    let dashboard = bed.kubectl(&[
        "-n",
        "kgf-c-monitoring",
        "get",
        "configmap",
        "-l",
        "grafana_dashboard=1",
        "-o",
        "jsonpath={.items[*].data.kgf-up-gpu\\.json}",
    ]);
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert!(
        dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.to_string().contains("DCGM_FI_DEV_GPU_UTIL")),
        "{dashboard:#}"
    );
    // The served model's dashboard beside it, and the deploy step's rights beside Kubeflow
    // Pipelines: KFP's pipeline-runner may create the InferenceService and its PodMonitor.
    let model = bed.kubectl(&[
        "-n",
        "kgf-c-monitoring",
        "get",
        "configmap",
        "kgf-up-model-dashboard",
        "-o",
        "jsonpath={.data.kgf-up-model\\.json}",
    ]);
    let model: serde_json::Value = serde_json::from_str(&model).unwrap();
    assert!(
        model
            .to_string()
            .contains("kgf_serve_request_duration_seconds_bucket"),
        "{model:#}"
    );
    bed.kubectl(&[
        "-n",
        "kgf-c-kubeflow",
        "get",
        "serviceaccount/gene-fusion",
        "role/gene-fusion-deployer",
        "rolebinding/gene-fusion-deployer",
    ]);
    for resource in [
        "inferenceservices.serving.kserve.io",
        "podmonitors.monitoring.coreos.com",
    ] {
        let can = bed.tool(
            "kubectl",
            &[
                "auth",
                "can-i",
                "patch",
                resource,
                "-n",
                "kgf-c-kubeflow",
                "--as",
                "system:serviceaccount:kgf-c-kubeflow:pipeline-runner",
            ],
        );
        assert_eq!(
            String::from_utf8_lossy(&can.stdout).trim(),
            "yes",
            "pipeline-runner may patch {resource}"
        );
    }

    let out = kgf_up(&["status", "--profile", &profile()]);
    assert!(out.status.success(), "{}", text(&out));
    for (name, _) in COMPONENTS {
        assert!(
            text(&out)
                .lines()
                .any(|l| l.contains(&format!("component/{name} ")) && l.contains("converged")),
            "{name} not converged: {}",
            text(&out)
        );
    }

    let mark = bed.audit_mark();
    let started = Instant::now();
    let out = kgf_up(&["up", "--profile", &profile()]);
    let no_change = started.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no changes"), "{}", text(&out));
    let mutations = my_mutations(&bed, &mark);
    assert!(
        mutations.is_empty(),
        "the second up mutated: {mutations:#?}"
    );
    eprintln!(
        "timing: first install {:.1}s, no-change up {:.1}s",
        first_install.as_secs_f64(),
        no_change.as_secs_f64()
    );

    // A deleted dashboard is drift: the next up puts it back, and touches nothing else.
    bed.kubectl(&[
        "-n",
        "kgf-c-monitoring",
        "delete",
        "configmap",
        "kgf-up-gpu-dashboard",
    ]);
    let out = kgf_up(&["up", "--profile", &profile(), "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let ev = events(&out);
    for (name, _) in COMPONENTS {
        let expected = if *name == "prometheus" {
            "applied"
        } else {
            "converged"
        };
        assert_eq!(
            done_status(&ev, &format!("component/{name}")).as_deref(),
            Some(expected),
            "{name}: {ev:#?}"
        );
    }
    bed.kubectl(&[
        "-n",
        "kgf-c-monitoring",
        "get",
        "configmap",
        "kgf-up-gpu-dashboard",
    ]);

    down();
    assert_eq!(
        leftovers(&bed),
        before,
        "down removed what it installed and only that"
    );
    assert_eq!(
        bed.kubectl(&[
            "-n",
            "kgf-c-minio",
            "get",
            "cm",
            "users-own",
            "-o",
            "jsonpath={.data.a}"
        ]),
        "b",
        "the namespace kgf-up found (and the user's object in it) stays"
    );
    let releases = release_namespaces(&bed);
    assert!(
        !releases.iter().any(|n| n.starts_with("kgf-c-")),
        "releases left: {releases:?}"
    );
    bed.kubectl(&["delete", "ns", "kgf-c-minio", "--wait=false"]);
    bed.kubectl(&["delete", "crd", "raycronjobs.ray.io"]);
}

#[test]
fn a_component_that_never_gets_ready_is_diagnosed_the_rest_converge_and_only_it_is_retried() {
    let _one = INSTALLS.lock().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    down();
    let before = leftovers(&bed);
    // No node has this label, so KServe's controller can never be scheduled.
    let stuck = [
        "components.kserve.values.kserve.controller.nodeSelector.kgf-no-such-node=absent",
        "components.kserve.timeout=8s",
    ];
    let with = |verb: &'static str, json: bool| {
        let profile = profile();
        let mut args = vec![verb, "--profile", profile.as_str()];
        if json {
            args.extend(["-o", "json"]);
        }
        args.extend(stuck.iter().flat_map(|s| ["--set", *s]));
        kgf_up(&args)
    };

    let out = with("up", false);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.lines()
            .any(|l| l.contains("component/kserve ") && l.contains("failed")),
        "{all}"
    );
    assert!(
        all.contains("pod kgf-c-kserve/kserve-controller-manager-"),
        "the diagnosis names the pod: {all}"
    );
    assert!(all.contains("Unschedulable"), "and its reason: {all}");
    assert!(
        all.contains("event Warning FailedScheduling"),
        "and its events: {all}"
    );
    assert!(
        all.lines()
            .any(|l| l.contains("component/kserve-runtimes") && l.contains("not attempted")),
        "{all}"
    );
    for name in [
        "cert-manager",
        "gpu-operator",
        "kubeflow-pipelines",
        "kuberay",
        "kserve-crd",
        "minio",
        "prometheus",
    ] {
        assert!(
            all.lines()
                .any(|l| l.contains(&format!("component/{name} ")) && l.contains("applied")),
            "{name} converged beside the failure: {all}"
        );
    }

    // `verify` names what is wrong with it.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let sets: Vec<String> = stuck.iter().map(|s| s.to_string()).collect();
    let kserve = component(&resolved(&sets), "kserve");
    let err = rt
        .block_on(async { components::verify(&bed.kube().await, &kserve, false).await })
        .unwrap_err();
    assert!(
        err.message
            .contains("Deployment kgf-c-kserve/kserve-controller-manager"),
        "{}",
        err.message
    );
    assert!(
        err.diagnosis
            .as_deref()
            .unwrap_or("")
            .contains("Unschedulable"),
        "{err:?}"
    );

    // The next up retries only what is not converged, and changes nothing outside it.
    let mark = bed.audit_mark();
    let out = with("up", true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let ev = events(&out);
    let applied: Vec<&str> = ev
        .iter()
        .filter(|e| e["phase"] == "apply")
        .map(|e| e["step"].as_str().unwrap())
        .collect();
    assert_eq!(applied, ["component/kserve"], "{ev:#?}");
    assert_eq!(
        done_status(&ev, "component/kserve").as_deref(),
        Some("failed")
    );
    assert_eq!(
        done_status(&ev, "component/kserve-runtimes").as_deref(),
        Some("skipped")
    );
    for name in [
        "cert-manager",
        "gpu-operator",
        "kubeflow-pipelines",
        "kuberay",
        "kserve-crd",
        "minio",
        "prometheus",
    ] {
        assert_eq!(
            done_status(&ev, &format!("component/{name}")).as_deref(),
            Some("converged")
        );
    }
    let outside: Vec<_> = my_mutations(&bed, &mark)
        .into_iter()
        .filter(|m| {
            !m.uri.contains("/namespaces/kgf-c-kserve/")
                && !m.uri.contains("/namespaces/kgf-c-system/")
        })
        .collect();
    assert!(
        outside.is_empty(),
        "the retry touched other components: {outside:#?}"
    );

    // With the cause fixed, the next up finishes it and what waited on it.
    let out = kgf_up(&["up", "--profile", &profile(), "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let ev = events(&out);
    assert_eq!(
        done_status(&ev, "component/kserve").as_deref(),
        Some("applied")
    );
    assert_eq!(
        done_status(&ev, "component/kserve-runtimes").as_deref(),
        Some("applied")
    );
    assert_eq!(
        done_status(&ev, "component/minio").as_deref(),
        Some("converged")
    );
    down();
    assert_eq!(leftovers(&bed), before);
}

#[test]
fn health_checks_pass_on_the_installed_fixtures_and_probe_what_the_bed_can_answer() {
    let _one = INSTALLS.lock().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    down();
    let out = kgf_up(&["up", "--profile", &profile()]);
    assert!(out.status.success(), "{}", text(&out));
    let all = resolved(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kube = rt.block_on(bed.kube());
    let verify = |name: &str, pods_run: bool| {
        rt.block_on(components::verify(&kube, &component(&all, name), pods_run))
    };

    // Simulated (sim provider): workloads and CRDs only, with the skipped probe named.
    for (name, says) in [
        (
            "cert-manager",
            "Deployments cert-manager, cainjector and webhook Available",
        ),
        ("kubeflow-pipelines", "workflow controller Available"),
        (
            "kuberay",
            "Deployment kuberay-operator Available, Ray CRDs Established",
        ),
        ("kserve-crd", "CRDs inferenceservices.serving.kserve.io"),
        (
            "kserve",
            "webhook Service kserve-webhook-server-service has 1 ready endpoint(s)",
        ),
        ("kserve-runtimes", "2 ClusterServingRuntimes"),
        ("minio", "Deployment minio Available"),
        (
            "prometheus",
            "Deployment kube-prometheus-stack-operator Available; CRDs prometheuses",
        ),
        (
            "gpu-operator",
            "ClusterPolicy readiness (its operands never run) skipped: simulated",
        ),
    ] {
        let line = verify(name, false).unwrap_or_else(|e| panic!("{name}: {e:?}"));
        assert!(line.contains(says), "{name}: {line}");
    }

    // Probes as on a real cluster, where the bed can answer them. The fixture has no webhook, so
    // the API server itself accepts the dry-run Certificate, and stores nothing.
    let mark = bed.audit_mark();
    let line = verify("cert-manager", true).unwrap();
    assert!(line.contains("accepted a dry-run Certificate"), "{line}");
    assert!(
        bed.kubectl(&[
            "-n",
            "kgf-c-cert-manager",
            "get",
            "certificates",
            "-o",
            "name"
        ])
        .is_empty()
    );
    let stored: Vec<_> = my_mutations(&bed, &mark)
        .into_iter()
        .filter(|m| !m.uri.contains("dryRun=All"))
        .collect();
    assert!(stored.is_empty(), "{stored:#?}");

    // The ClusterPolicy is ready only once its status says so (the real operator sets it).
    let err = verify("gpu-operator", true).unwrap_err();
    assert!(
        err.message
            .contains("ClusterPolicy cluster-policy is `unknown`, not `ready`"),
        "{}",
        err.message
    );
    bed.kubectl(&[
        "patch",
        "clusterpolicy",
        "cluster-policy",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"state":"ready"}}"#,
    ]);
    assert!(
        verify("gpu-operator", true)
            .unwrap()
            .contains("ClusterPolicy cluster-policy is ready")
    );

    // The RayCluster probe: created, waited ready (the bed has no operator: this thread plays its
    // part once the probe exists), then removed.
    let playing_operator = std::thread::spawn(|| {
        let bed = support::bed();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let out = bed.tool(
                "kubectl",
                &[
                    "-n",
                    "kgf-c-kuberay",
                    "patch",
                    "raycluster",
                    "kgf-up-verify",
                    "--subresource=status",
                    "--type=merge",
                    "-p",
                    r#"{"status":{"state":"ready"}}"#,
                ],
            );
            if out.status.success() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    let line = verify("kuberay", true).unwrap();
    assert!(playing_operator.join().unwrap());
    assert!(
        line.contains("a one-worker RayCluster became ready"),
        "{line}"
    );
    assert!(
        bed.kubectl(&["-n", "kgf-c-kuberay", "get", "rayclusters", "-o", "name"])
            .is_empty(),
        "the probe is removed"
    );

    // KServe's webhook certificate: Ready only once cert-manager says so (none runs on the bed).
    let err = verify("kserve", true).unwrap_err();
    assert!(
        err.message
            .contains("Certificate kgf-c-kserve/serving-cert is not Ready"),
        "{}",
        err.message
    );
    bed.kubectl(&[
        "-n",
        "kgf-c-kserve",
        "patch",
        "certificate",
        "serving-cert",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    assert!(
        verify("kserve", true)
            .unwrap()
            .ends_with("Certificate serving-cert Ready")
    );

    // The pipelines API: the bed cannot proxy to a pod that runs no container, so the probe must
    // fail and say which URL did not answer.
    let err = verify("kubeflow-pipelines", true).unwrap_err();
    assert!(
        err.message.contains(
            "/api/v1/namespaces/kgf-c-kubeflow/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz"
        ),
        "{}",
        err.message
    );
    down();
}

/// A chart upgrade upgrades the CRDs of its `crds/`, which helm alone never does: kgf-up
/// server-side applies them (forced: helm created them) before `helm upgrade --skip-crds`.
#[test]
fn a_chart_upgrade_upgrades_the_crds_helm_would_leave_alone() {
    let _one = INSTALLS.lock().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let v2 = dir.path().join("kuberay-operator");
    copy_dir(&fixture("components/kuberay-operator"), &v2);
    let chart = v2.join("Chart.yaml");
    let text_of = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    std::fs::write(
        &chart,
        text_of(&chart).replace("version: 0.1.0", "version: 0.2.0"),
    )
    .unwrap();
    // v2 of the CRD shows a column that v1 lacks.
    let crd = v2.join("crds/ray.io_rayclusters.yaml");
    std::fs::write(
        &crd,
        text_of(&crd).replace(
            "      subresources: {status: {}}",
            "      subresources: {status: {}}\n      additionalPrinterColumns:\n        \
             - {name: State, type: string, jsonPath: .status.state}",
        ),
    )
    .unwrap();
    assert!(text_of(&crd).contains("additionalPrinterColumns"));

    let profile = dir.path().join("profile.yaml");
    let write_profile = |chart: &std::path::Path| {
        std::fs::write(
            &profile,
            format!(
                "name: kgf-u\ncluster: {{provider: existing}}\n\
                 settings: {{timeout: 60s, namespace: kgf-u-system}}\n\
                 components:\n  kuberay:\n    source: {{chart: {{path: {}}}}}\n    namespace: kgf-u-kuberay\n\
                 validation: {{min_gpu_nodes: 0}}\n",
                chart.display()
            ),
        )
        .unwrap();
    };
    let profile_arg = profile.to_str().unwrap().to_string();
    let columns = || {
        bed.kubectl(&[
            "get",
            "crd",
            "rayclusters.ray.io",
            "-o",
            "jsonpath={.spec.versions[0].additionalPrinterColumns[*].name}",
        ])
    };

    write_profile(&fixture("components/kuberay-operator"));
    let out = kgf_up(&["up", "--profile", &profile_arg]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(columns(), "", "v1 of the CRD");

    write_profile(&v2);
    let out = kgf_up(&["up", "--profile", &profile_arg, "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        done_status(&events(&out), "component/kuberay").as_deref(),
        Some("applied")
    );
    assert_eq!(columns(), "State", "the upgrade brought v2 of the CRD");
    let managers = bed.kubectl(&[
        "get",
        "crd",
        "rayclusters.ray.io",
        "-o",
        "jsonpath={.metadata.managedFields[*].manager}",
    ]);
    assert!(managers.contains("kgf-up"), "{managers}");
    let history = bed.tool(
        "helm",
        &[
            "history",
            "kuberay-operator",
            "-n",
            "kgf-u-kuberay",
            "-o",
            "json",
        ],
    );
    let history: Vec<serde_json::Value> = serde_json::from_slice(&history.stdout).unwrap();
    assert_eq!(history.last().unwrap()["chart"], "kuberay-operator-0.2.0");

    let out = kgf_up(&[
        "down",
        "--profile",
        &profile_arg,
        "--non-interactive",
        "--yes",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        bed.tool("kubectl", &["get", "crd", "rayclusters.ray.io"])
            .status
            .code()
            != Some(0),
        "down removed the CRD kgf-up created"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn the_minio_root_secret_is_made_once_never_shown_and_reused() {
    let _one = INSTALLS.lock().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    let ns = "kgf-c-secret-test";
    let _ = bed.tool("kubectl", &["delete", "ns", ns, "--wait=true"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kube = rt.block_on(bed.kube());

    rt.block_on(minio::ensure_root_secret(&kube, ns)).unwrap();
    // kubectl decodes the value itself; the test never prints it.
    let read = |key: &str| {
        bed.kubectl(&[
            "-n",
            ns,
            "get",
            "secret",
            "minio-root",
            "-o",
            &format!("go-template={{{{index .data \"{key}\" | base64decode}}}}"),
        ])
    };
    let password = read("rootPassword");
    assert_eq!(read("rootUser"), "kgf-admin");
    assert_eq!(password.len(), 32);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));

    // A second call reads, finds it, and changes nothing.
    let mark = bed.audit_mark();
    rt.block_on(minio::ensure_root_secret(&kube, ns)).unwrap();
    let mutations = my_mutations(&bed, &mark);
    assert!(mutations.is_empty(), "{mutations:#?}");
    assert_eq!(read("rootPassword"), password, "the password is reused");

    // One that lacks a key is reported, never overwritten.
    bed.kubectl(&[
        "-n",
        ns,
        "patch",
        "secret",
        "minio-root",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/data/rootPassword"}]"#,
    ]);
    let err = rt
        .block_on(minio::ensure_root_secret(&kube, ns))
        .unwrap_err();
    assert!(
        err.message.contains("lacks rootPassword"),
        "{}",
        err.message
    );
    assert!(err.fix.unwrap().contains("delete secret minio-root"));
    bed.kubectl(&["delete", "ns", ns, "--wait=false"]);
}
