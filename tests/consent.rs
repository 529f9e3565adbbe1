//! A `down` refused for want of consent sends nothing to the cluster (the test bed's audit log
//! shows no change), and the same command with `--yes` does remove what kgf-up recorded.

mod support;

use std::time::Duration;

#[test]
fn down_without_consent_changes_nothing_on_the_cluster() {
    let bed = support::bed();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.yaml");
    std::fs::write(
        &profile,
        format!(
            "name: hostile-down\ncluster:\n  provider: existing\n  existing: {{kubeconfig: {}}}\nsettings: {{namespace: kgf-hostile-system}}\n",
            bed.kubeconfig.display()
        ),
    )
    .unwrap();
    bed.kubectl(&["create", "namespace", "kgf-hostile-system"]);
    let mark = bed.audit_mark();
    let out = support::kgf_up_in(dir.path())
        .args(["down", "--profile", profile.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Audit events land a moment after the request.
    std::thread::sleep(Duration::from_secs(2));
    let agents = &["kgf-up", "kube-rs", "Helm", "helm", "kubectl"];
    let changed = bed.mutations_since(&mark, agents);
    assert!(changed.is_empty(), "a refused down changed: {changed:?}");
    assert!(
        bed.kubectl(&["get", "namespace", "kgf-hostile-system", "-o", "name"])
            .contains("kgf-hostile-system")
    );

    let out = support::kgf_up_in(dir.path())
        .args(["down", "--profile", profile.to_str().unwrap(), "--yes"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_secs(2));
    let changed = bed.mutations_since(&mark, agents);
    assert!(
        changed
            .iter()
            .any(|e| e.verb == "delete" && e.name == "kgf-hostile-system"),
        "the consented down removes kgf-up's namespace: {changed:?}"
    );
}
