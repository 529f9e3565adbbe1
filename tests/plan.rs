//! `plan` on the test bed is `up` with the gate recording: it observes every step and lists what
//! `up` would change, and makes no mutating request (the audit log is read to prove it; server-side
//! dry runs do not count). Converged: "no changes". A value set with `--set`: that key, old → new,
//! and then `up` changes that release and nothing else. An object a component owns deleted: named.
//! Every fixture profile planned on a bed where nothing is installed: no mutation either.

mod support;

use std::path::{Path, PathBuf};

use support::{AuditMark, Bed, bed, fixture, kgf_up, text};

const AGENTS: &[&str] = &["kgf-up", "Helm", "helm", "kubectl"];

/// The tests share the fixture's cluster-scoped CRD, so one runs at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A copy of the test bed profile with its own names.
fn profile(dir: &Path, tag: &str) -> PathBuf {
    let path = dir.join("profile.yaml");
    let yaml = format!(
        "name: kgf-{tag}\ncluster: {{provider: existing}}\n\
         settings: {{timeout: 60s, namespace: kgf-{tag}-system}}\n\
         components:\n  \
           gadgets:\n    source: {{kustomize: {{paths: [{gadgets}]}}}}\n    namespace: kgf-{tag}-gadgets\n  \
           hello:\n    source: {{chart: {{path: {chart}}}}}\n    namespace: kgf-{tag}-hello\n    needs: [gadgets]\n    values: {{replicas: 2}}\n\
         validation: {{min_gpu_nodes: 1, cuda_smoke: false}}\n",
        gadgets = fixture("engine/kustomization").display(),
        chart = fixture("testbed/chart").display(),
    );
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Removes what the profile installed when dropped, even after a failed assertion.
struct DownOnDrop(PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = kgf_up(&["down", "--profile", self.0.to_str().unwrap(), "--yes"]);
    }
}

/// `kgf-up ARGS`, which must exit with `code`; its output.
fn run(args: &[&str], code: i32) -> String {
    let out = kgf_up(args);
    assert_eq!(out.status.code(), Some(code), "{args:?}:\n{}", text(&out));
    text(&out)
}

/// The mutating requests since `mark`, as lines for a failure message.
fn mutations(bed: &Bed, mark: &AuditMark) -> Vec<String> {
    // Audit events land a moment after the request.
    std::thread::sleep(std::time::Duration::from_millis(300));
    bed.mutations_since(mark, AGENTS)
        .iter()
        .map(|m| format!("{} {} ({})", m.verb, m.uri, m.user_agent))
        .collect()
}

#[test]
fn plan_tells_what_up_would_change_and_changes_nothing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    let dir = tempfile::tempdir().unwrap();
    let profile = profile(dir.path(), "p");
    let p = profile.to_str().unwrap();
    let _down = DownOnDrop(profile.clone());

    // Before anything is installed: every component would be created; nothing is.
    let mark = bed.audit_mark();
    let before = run(&["plan", "--profile", p, "--exit-code"], 4);
    assert!(
        before.contains("install helm release kgf-p-hello/hello"),
        "{before}"
    );
    assert!(before.contains("replicas: (unset) → 2"), "{before}");
    assert!(
        before.contains("create Deployment kgf-p-gadgets/gadget-operator"),
        "{before}"
    );
    assert_eq!(
        mutations(&bed, &mark),
        Vec::<String>::new(),
        "plan on an empty bed wrote"
    );

    run(&["up", "--profile", p], 0);

    // Converged: no changes, exit 0 even with --exit-code, and not one write.
    let mark = bed.audit_mark();
    let converged = run(&["plan", "--profile", p, "--exit-code"], 0);
    assert!(converged.contains("No changes"), "{converged}");
    assert_eq!(
        mutations(&bed, &mark),
        Vec::<String>::new(),
        "plan of a converged cluster wrote"
    );

    // One value changed: that key, old → new; nothing else would change, nothing is written.
    let set = "components.hello.values.replicas=3";
    let mark = bed.audit_mark();
    let changed = run(&["plan", "--profile", p, "--set", set, "--exit-code"], 4);
    assert!(changed.contains("replicas: 2 → 3"), "{changed}");
    assert!(
        changed.contains("1 of 4 steps would change (component/hello)"),
        "{changed}"
    );
    assert_eq!(
        mutations(&bed, &mark),
        Vec::<String>::new(),
        "plan --set wrote"
    );

    // `up` with the value changes that release, and only it.
    let mark = bed.audit_mark();
    run(&["up", "--profile", p, "--set", set], 0);
    let written = mutations(&bed, &mark);
    assert!(
        written
            .iter()
            .any(|m| m.contains("/namespaces/kgf-p-hello/")),
        "up changed the release: {written:?}"
    );
    assert!(
        !written.iter().any(|m| m.contains("kgf-p-gadgets")),
        "up touched nothing of the other component: {written:?}"
    );
    let replicas = bed.kubectl(&[
        "-n",
        "kgf-p-hello",
        "get",
        "deployment",
        "hello",
        "-o",
        "jsonpath={.spec.replicas}",
    ]);
    assert_eq!(replicas, "3");
    let after = run(&["plan", "--profile", p, "--set", set], 0);
    assert!(after.contains("No changes"), "{after}");

    // An object a component owns, deleted: plan names it, and does not bring it back.
    bed.kubectl(&[
        "-n",
        "kgf-p-gadgets",
        "delete",
        "deployment",
        "gadget-operator",
    ]);
    let mark = bed.audit_mark();
    let deleted = run(&["plan", "--profile", p, "--set", set], 0);
    assert!(
        deleted.contains("Deployment kgf-p-gadgets/gadget-operator was deleted")
            && deleted.contains("create Deployment kgf-p-gadgets/gadget-operator"),
        "{deleted}"
    );
    assert!(
        !deleted.contains("delete Namespace"),
        "the namespace kgf-up made is its own, not stale: {deleted}"
    );
    assert_eq!(
        mutations(&bed, &mark),
        Vec::<String>::new(),
        "plan after a delete wrote"
    );
    run(&["up", "--profile", p, "--set", set], 0);
    bed.kubectl(&[
        "-n",
        "kgf-p-gadgets",
        "get",
        "deployment",
        "gadget-operator",
    ]);
}

#[test]
fn plan_json_is_one_object_per_line_and_every_fixture_profile_plans_without_writing() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let bed = bed();
    for rel in ["profiles/testbed.yaml", "profiles/testbed-all.yaml"] {
        let path = fixture(rel);
        let mark = bed.audit_mark();
        let out = kgf_up(&["plan", "--profile", path.to_str().unwrap(), "-o", "json"]);
        assert_eq!(out.status.code(), Some(0), "{rel}:\n{}", text(&out));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{rel}: not JSON ({e}): {l}"))
            })
            .collect();
        assert!(lines[0]["resolved"].is_object(), "{rel}: {}", lines[0]);
        let summary = &lines.last().unwrap()["summary"];
        assert_eq!(
            summary["changes_pending"], true,
            "{rel}: nothing is installed"
        );
        for step in &lines[1..lines.len() - 1] {
            let status = step["status"].as_str().unwrap_or_default();
            assert!(["no-change", "changes"].contains(&status), "{rel}: {step}");
        }
        assert_eq!(
            mutations(&bed, &mark),
            Vec::<String>::new(),
            "{rel}: plan wrote"
        );
    }
}
