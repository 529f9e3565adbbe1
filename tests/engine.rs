//! The engine end to end on the test bed: the real `kgf-up` binary installs a fixture
//! kustomization (CRD + custom resource + operator) and a fixture helm chart with real kustomize
//! and helm; a second `up` makes no mutating request; `down` leaves the bed as it was; a step that
//! never gets ready fails with a diagnosis while independent steps converge; an `up` killed at
//! any point is finished by the next one; a terminating namespace is waited out; one `up` or
//! `down` at a time.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Bed, bed, fixture, kgf_up_cmd as kgf_up, text};

/// The tests share the fixture's cluster-scoped CRD, so one runs at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `kgf-up down` for a profile when dropped, so a failed assertion leaves nothing behind
/// for the next test.
struct DownOnDrop(PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = kgf_up(&[
            "down",
            "--profile",
            self.0.to_str().unwrap(),
            "--non-interactive",
            "--yes",
        ])
        .output();
    }
}

/// A copy of the test bed profile with its own names, so tests can run side by side.
fn profile(dir: &Path, tag: &str, extra_components: &str) -> PathBuf {
    let path = dir.join("profile.yaml");
    let yaml = format!(
        "name: kgf-{tag}\ncluster: {{provider: existing}}\n\
         settings: {{timeout: 60s, namespace: kgf-{tag}-system}}\n\
         components:\n  \
           gadgets:\n    source: {{kustomize: {{paths: [{gadgets}]}}}}\n    namespace: kgf-{tag}-gadgets\n  \
           hello:\n    source: {{chart: {{path: {chart}}}}}\n    namespace: kgf-{tag}-hello\n    needs: [gadgets]\n\
         {extra_components}\
         validation: {{min_gpu_nodes: 1, cuda_smoke: false}}\n",
        gadgets = fixture("engine/kustomization").display(),
        chart = fixture("testbed/chart").display(),
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// What exists on the bed, by kind and name, for the kinds kgf-up's fixtures create.
fn objects(bed: &Bed) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for kind in [
        "namespaces",
        "customresourcedefinitions",
        "deployments",
        "serviceaccounts",
        "configmaps",
        "secrets",
        "services",
    ] {
        let out = bed.kubectl(&[
            "get",
            kind,
            "-A",
            "-o",
            "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
        ]);
        for line in out.lines() {
            // Other tests' namespaces come and go while this test runs.
            if line.contains("kgf-x-") || line.contains("kgf-k") || line.contains("kgf-n") {
                continue;
            }
            set.insert(format!("{kind} {line}"));
        }
    }
    set
}

#[test]
fn up_installs_a_second_up_changes_nothing_and_down_restores_the_bed() {
    let _serial = serial();
    let bed = bed();
    let path = fixture("profiles/testbed.yaml");
    let _down = DownOnDrop(path.clone());
    let profile = path.to_str().unwrap();
    let before = objects(&bed);

    let out = kgf_up(&["up", "--profile", profile]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("component/gadgets"), "{}", text(&out));
    // The custom resource could only be applied after its CRD was Established.
    let replicas = bed.kubectl(&[
        "-n",
        "kgf-gadgets",
        "get",
        "gadgets.fixture.kgf-up.test",
        "default-gadget",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "2");
    let ready = bed.kubectl(&[
        "-n",
        "kgf-hello",
        "get",
        "deployment",
        "hello",
        "-o",
        "jsonpath={.status.readyReplicas}",
    ]);
    assert_eq!(ready, "2", "the profile's values reached the chart");

    let mark = bed.audit_mark();
    let out = kgf_up(&["up", "--profile", profile]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no changes"), "{}", text(&out));
    let mutations = bed.mutations_since(&mark, &["kgf-up", "Helm", "helm", "kubectl"]);
    assert!(
        mutations.is_empty(),
        "the second up mutated: {mutations:#?}"
    );

    let out = kgf_up(&["status", "--profile", profile]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for step in [
        "cluster",
        "component/gadgets",
        "component/hello",
        "validate/gpu-allocatable",
    ] {
        assert!(
            text(&out)
                .lines()
                .any(|l| l.contains(step) && l.contains("converged")),
            "{}",
            text(&out)
        );
    }

    let out = kgf_up(&["verify", "--profile", profile]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out)
            .lines()
            .any(|l| l.contains("validate/gpu-allocatable") && l.contains("kgf-gpu-0=1")),
        "{}",
        text(&out)
    );

    let out = kgf_up(&["down", "--profile", profile, "--non-interactive", "--yes"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        objects(&bed),
        before,
        "down leaves the bed as it was before up"
    );
}

/// Regression (issue 24): on a profile without Kubeflow Pipelines, Grafana or an object store,
/// `status` printed "Where things are:" with nothing under it, and `verify` of a profile without
/// GPU checks ended "no changes: all 0 steps are converged".
#[test]
fn status_printed_an_empty_where_things_are_and_verify_said_all_0_steps() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = profile(dir.path(), "w", "");
    let _down = DownOnDrop(path.clone());
    let p = path.to_str().unwrap();
    let no_gpu = "validation.min_gpu_nodes=0";
    let out = kgf_up(&["up", "--profile", p, "--set", no_gpu])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let out = kgf_up(&["status", "--profile", p, "--set", no_gpu])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("Where things are"), "{}", text(&out));

    let out = kgf_up(&["verify", "--profile", p, "--set", no_gpu])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("all 0 steps"), "{}", text(&out));
    assert!(
        text(&out).contains("no GPU checks (validation.min_gpu_nodes is 0)"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_component_that_never_gets_ready_fails_with_a_diagnosis_and_the_rest_converge() {
    let _serial = serial();
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(
        dir.path(),
        "n",
        &format!(
            "  stuck:\n    source: {{kustomize: {{paths: [{}]}}}}\n    namespace: kgf-n-stuck\n    timeout: 15s\n  \
               after-stuck:\n    source: {{chart: {{path: {}}}}}\n    namespace: kgf-n-after\n    needs: [stuck]\n",
            fixture("engine/never-ready").display(),
            fixture("testbed/chart").display()
        ),
    );
    let started = Instant::now();
    let out = kgf_up(&["up", "--profile", profile.to_str().unwrap()])
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "failed within its deadline"
    );
    assert!(
        all.contains("timed out after 15s waiting for Deployment kgf-n-stuck/stuck"),
        "{all}"
    );
    assert!(
        all.contains("pod kgf-n-stuck/stuck-"),
        "the diagnosis names the pod: {all}"
    );
    assert!(all.contains("Unschedulable"), "and its reason: {all}");
    assert!(
        all.contains("event Warning FailedScheduling"),
        "and its events: {all}"
    );
    assert!(
        all.contains("component/after-stuck") && all.contains("not attempted"),
        "{all}"
    );
    assert!(
        all.lines()
            .any(|l| l.contains("component/hello") && l.contains("applied")),
        "independent branches finish: {all}"
    );

    // The next up retries only what is not converged.
    let out = kgf_up(&["up", "--profile", profile.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is a JSON event"))
        .collect();
    let status_of = |step: &str| {
        events
            .iter()
            .filter(|e| e["step"] == step && e["phase"] == "done")
            .map(|e| e["status"].as_str().unwrap().to_string())
            .next_back()
    };
    assert_eq!(status_of("component/hello").as_deref(), Some("converged"));
    assert_eq!(status_of("component/stuck").as_deref(), Some("failed"));
    for e in &events {
        for key in ["step", "phase", "status", "elapsed", "message"] {
            assert!(e.get(key).is_some(), "event without {key}: {e}");
        }
    }
    let out = kgf_up(&[
        "down",
        "--profile",
        profile.to_str().unwrap(),
        "--non-interactive",
        "--yes",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let namespaces = bed.kubectl(&["get", "ns", "-o", "name"]);
    assert!(!namespaces.contains("kgf-n-"), "{namespaces}");
}

/// Starts `up` in its own process group, waits until `ready` says so, then SIGKILLs the group
/// (kgf-up and any helm it started), as a power cut or `kill -9` would. False when `up` ended
/// (or `ready` never came) before the kill: then nothing was interrupted.
fn kill_up_when(profile: &Path, ready: impl Fn() -> bool) -> bool {
    let mut child = kgf_up(&["up", "--profile", profile.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut came = ready();
    while !came && Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
        came = ready();
    }
    let running = came && child.try_wait().unwrap().is_none();
    // `-s KILL --`: procps-ng 4.0.2's kill keeps only the first digit of the group in
    // `-KILL -12345` (strace of `kill -KILL -555`: `kill(-5, SIGKILL)`), and a group "-1" is
    // every process the user may signal: as root, the developer's shell and this test run.
    let _ = Command::new("kill")
        .args(["-s", "KILL", "--", &format!("-{}", child.id())])
        .status();
    let _ = child.wait();
    running
}

fn helm_running() -> bool {
    Command::new("pgrep")
        .args(["-f", "helm3? upgrade --install hello .*kgf-k"])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false)
}

#[test]
fn an_up_killed_at_any_point_is_finished_by_the_next_up() {
    let _serial = serial();
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(dir.path(), "k", "");
    let _down = DownOnDrop(profile.clone());
    type Ready = Box<dyn Fn() -> bool>;
    let points: [(&str, Ready); 4] = [
        ("at once", Box::new(|| true)),
        (
            "while applying the kustomization",
            Box::new(|| {
                support::bed()
                    .kubectl(&["get", "crd", "-o", "name"])
                    .contains("gadgets.fixture")
            }),
        ),
        ("during the helm step", Box::new(helm_running)),
        (
            "after the helm step",
            Box::new(|| {
                support::bed()
                    .tool(
                        "kubectl",
                        &["-n", "kgf-k-hello", "get", "deployment", "hello"],
                    )
                    .status
                    .success()
            }),
        ),
    ];
    for (when, ready) in points {
        assert!(
            kill_up_when(&profile, ready),
            "up was not running when killed {when}: the kill point was never reached"
        );
        let out = kgf_up(&["up", "--profile", profile.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "up after a kill {when}: {}",
            text(&out)
        );
        let releases = String::from_utf8_lossy(
            &bed.tool("helm", &["list", "-a", "-n", "kgf-k-hello", "-o", "json"])
                .stdout,
        )
        .to_string();
        let releases: Vec<serde_json::Value> = serde_json::from_str(&releases).unwrap();
        assert_eq!(
            releases.len(),
            1,
            "one release after a kill {when}: {releases:?}"
        );
        assert_eq!(releases[0]["status"], "deployed", "after a kill {when}");
        let deployments = bed.kubectl(&["-n", "kgf-k-gadgets", "get", "deployments", "-o", "name"]);
        assert_eq!(
            deployments.trim(),
            "deployment.apps/gadget-operator",
            "no duplicates after a kill {when}"
        );
        let out = kgf_up(&["up", "--profile", profile.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            text(&out).contains("no changes"),
            "converged after a kill {when}: {}",
            text(&out)
        );
        // Start the next kill point from nothing, so each one interrupts a first install.
        let out = kgf_up(&[
            "down",
            "--profile",
            profile.to_str().unwrap(),
            "--non-interactive",
            "--yes",
        ])
        .output()
        .unwrap();
        assert!(
            out.status.success(),
            "down after a kill {when}: {}",
            text(&out)
        );
    }
}

#[test]
fn non_interactive_never_reads_stdin() {
    // `down` would ask for confirmation; with --non-interactive it must not, even with a stdin
    // that stays open and says nothing: without --yes it refuses at once (exit 2).
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(dir.path(), "x-stdin", "");
    let mut child = kgf_up(&[
        "down",
        "--profile",
        profile.to_str().unwrap(),
        "--non-interactive",
    ])
    .env_remove("CI")
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "kgf-up waited for input");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = stdin.write_all(b"n\n");
    assert_eq!(child.wait().unwrap().code(), Some(2));
}

fn lease(bed: &Bed, namespace: &str, holder: &str) {
    // MicroTime: exactly six fractional digits.
    let now = String::from_utf8(
        Command::new("date")
            .args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let now = now.trim();
    bed.apply(&format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n---\n\
         apiVersion: coordination.k8s.io/v1\nkind: Lease\n\
         metadata: {{name: kgf-up-lock, namespace: {namespace}}}\n\
         spec: {{holderIdentity: \"{holder}\", leaseDurationSeconds: 60, renewTime: \"{now}\"}}\n"
    ));
}

#[test]
fn one_up_at_a_time_and_a_dead_holder_is_taken_over() {
    let _serial = serial();
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("profile.yaml");
    std::fs::write(
        &path,
        format!(
            "name: kgf-l\ncluster: {{provider: existing}}\n\
             settings: {{timeout: 30s, namespace: kgf-l-system}}\n\
             components:\n  cm:\n    source: {{kustomize: {{paths: [{}]}}}}\n    namespace: kgf-l-cm\n\
             validation: {{min_gpu_nodes: 0}}\n",
            fixture("testbed/kustomization").display()
        ),
    )
    .unwrap();
    let _down = DownOnDrop(path.clone());
    let profile = path.to_str().unwrap();

    // Another machine's kgf-up holds a fresh lock: this one changes nothing and says who.
    lease(&bed, "kgf-l-system", "ci@another-machine pid 1");
    let out = kgf_up(&["up", "--profile", profile]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("another kgf-up (ci@another-machine pid 1) is changing this cluster"),
        "{}",
        text(&out)
    );
    assert!(
        bed.tool("kubectl", &["get", "namespace", "kgf-l-cm"])
            .status
            .code()
            != Some(0),
        "nothing was applied"
    );

    // A kgf-up of this machine that is gone (killed) is taken over at once, and the lock is
    // given back at the end of the run.
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    lease(
        &bed,
        "kgf-l-system",
        &format!("root@{} pid {}", host.trim(), u32::MAX),
    );
    let out = kgf_up(&["up", "--profile", profile]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let leases = bed.kubectl(&["-n", "kgf-l-system", "get", "leases", "-o", "name"]);
    assert!(leases.trim().is_empty(), "the lock was released: {leases}");

    // `down` waits its turn too: it removes nothing while another kgf-up holds the lock.
    lease(&bed, "kgf-l-system", "ci@another-machine pid 1");
    let out = kgf_up(&["down", "--profile", profile, "--non-interactive", "--yes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("another kgf-up (ci@another-machine pid 1) is changing this cluster"),
        "{}",
        text(&out)
    );
    assert_eq!(
        bed.kubectl(&["get", "namespace", "kgf-l-cm", "-o", "name"])
            .trim(),
        "namespace/kgf-l-cm",
        "nothing was removed"
    );
    bed.kubectl(&["-n", "kgf-l-system", "delete", "lease", "kgf-up-lock"]);
}

/// A namespace still terminating (a `down` just now, a user's delete) is waited out, then made
/// anew and recorded as kgf-up's: helm alone fails there ("is being terminated").
#[test]
fn a_terminating_namespace_is_waited_out_then_created_and_owned() {
    let _serial = serial();
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let path = profile(dir.path(), "t", "");
    let _down = DownOnDrop(path.clone());
    // A finalizer on an object inside keeps the namespace terminating until this test lets go.
    bed.apply(
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: kgf-t-hello}\n---\n\
         apiVersion: v1\nkind: ConfigMap\n\
         metadata: {name: hold, namespace: kgf-t-hello, finalizers: [kgf.test/hold]}\n",
    );
    bed.kubectl(&["delete", "namespace", "kgf-t-hello", "--wait=false"]);
    assert_eq!(
        bed.kubectl(&[
            "get",
            "namespace",
            "kgf-t-hello",
            "-o",
            "jsonpath={.status.phase}"
        ]),
        "Terminating"
    );

    let up = kgf_up(&["up", "--profile", path.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let releases = bed.tool("helm", &["list", "-n", "kgf-t-hello", "-q"]);
    assert!(
        String::from_utf8_lossy(&releases.stdout).trim().is_empty(),
        "nothing is installed while the namespace terminates"
    );
    bed.kubectl(&[
        "-n",
        "kgf-t-hello",
        "patch",
        "configmap",
        "hold",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    let out = up.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // The namespace is kgf-up's now, so down removes it.
    let out = kgf_up(&[
        "down",
        "--profile",
        path.to_str().unwrap(),
        "--non-interactive",
        "--yes",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        bed.tool("kubectl", &["get", "namespace", "kgf-t-hello"])
            .status
            .code()
            != Some(0),
        "down removed the namespace kgf-up created"
    );
}
