//! Bad input never panics and never touches a cluster: each broken profile or flag below exits 2
//! with the file, line and column (where one exists), what was wrong, and a fix.

use std::process::Command;

const GOOD: &str = "name: t\ncluster:\n  provider: existing\n";

struct Case {
    what: &'static str,
    profile: Option<&'static str>,
    args: &'static [&'static str],
    expect: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        what: "unknown top-level key",
        profile: Some("nmae: t\ncluster: {provider: existing}\n"),
        args: &[],
        expect: &[
            ":1:1: unknown field `nmae`",
            "fix: did you mean the key `name`?",
        ],
    },
    Case {
        what: "unknown nested key",
        profile: Some("name: t\ncluster: {provider: existing}\nsettings:\n  concurency: 2\n"),
        args: &[],
        expect: &[
            ":4:3: unknown field `concurency`",
            "did you mean the key `concurrency`?",
        ],
    },
    Case {
        what: "wrong type",
        profile: Some("name: t\ncluster: {provider: existing}\nsettings:\n  concurrency: many\n"),
        args: &[],
        expect: &[":4:16:"],
    },
    Case {
        what: "bad YAML",
        profile: Some("name: [t\ncluster: {provider: existing}\n"),
        args: &[],
        expect: &["profile.yaml:"],
    },
    Case {
        what: "unknown provider",
        profile: Some("name: t\ncluster:\n  provider: kinf\n"),
        args: &[],
        expect: &[
            ":3:13: unknown variant `kinf`",
            "did you mean the value `kind`?",
        ],
    },
    Case {
        what: "missing cluster",
        profile: Some("name: t\n"),
        args: &[],
        expect: &["missing field `cluster`"],
    },
    Case {
        what: "invalid name",
        profile: Some("name: Kgf_Up\ncluster: {provider: existing}\n"),
        args: &[],
        expect: &[
            "name `Kgf_Up` is not a valid cluster name",
            "fix: use lowercase",
        ],
    },
    Case {
        what: "component without source",
        profile: Some("name: t\ncluster: {provider: existing}\ncomponents:\n  mine: {}\n"),
        args: &[],
        expect: &[
            "component `mine` has no source",
            "fix: add components.mine.source",
        ],
    },
    Case {
        what: "need of an unknown component",
        profile: Some(
            "name: t\ncluster: {provider: existing}\ncomponents:\n  a: {source: {chart: {path: x}}, needs: [b]}\n",
        ),
        args: &[],
        expect: &["component `a` needs `b`", "fix: fix the name in `needs`"],
    },
    Case {
        what: "needs in a cycle",
        profile: Some(
            "name: t\ncluster: {provider: existing}\ncomponents:\n  a: {source: {chart: {path: .}}, needs: [b]}\n  b: {source: {chart: {path: .}}, needs: [a]}\n",
        ),
        args: &[],
        expect: &[
            ":4:43: the components' needs form a cycle: a → b → a",
            "fix: remove `b` from components.a.needs",
        ],
    },
    Case {
        what: "bad duration",
        profile: Some("name: t\ncluster: {provider: existing}\nsettings: {timeout: soon}\n"),
        args: &[],
        expect: &[":3:21:", "is not a duration like 90s"],
    },
    Case {
        what: "unknown source kind",
        profile: Some(
            "name: t\ncluster: {provider: existing}\ncomponents:\n  a:\n    source: {hlem: {repo: r}}\n",
        ),
        args: &[],
        expect: &[
            ":5:14: unknown variant `hlem`",
            "did you mean the value `helm`?",
        ],
    },
    Case {
        what: "helm source without version",
        profile: Some(
            "name: t\ncluster: {provider: existing}\ncomponents:\n  a:\n    source:\n      helm: {repo: r, chart: c}\n",
        ),
        args: &[],
        expect: &["missing field `version`"],
    },
    Case {
        what: "negative GPU count",
        profile: Some(
            "name: t\ncluster:\n  provider: sim\n  sim:\n    nodes: [{name: n, gpus: -1}]\n",
        ),
        args: &[],
        expect: &[":5:29: expected a whole number from 0 to 4294967295"],
    },
    Case {
        what: "zero concurrency",
        profile: Some("name: t\ncluster: {provider: existing}\nsettings: {concurrency: 0}\n"),
        args: &[],
        expect: &["settings.concurrency is 0", "fix: set it to 1 or more"],
    },
    Case {
        what: "components as a list",
        profile: Some("name: t\ncluster: {provider: existing}\ncomponents: [a, b]\n"),
        args: &[],
        expect: &[":3:13:"],
    },
    Case {
        what: "empty file",
        profile: Some(""),
        args: &[],
        expect: &["profile.yaml:"],
    },
    Case {
        what: "--set of an unknown key",
        profile: Some(GOOD),
        args: &["--set", "settings.concurency=2"],
        expect: &[
            "--set settings.concurency=2",
            "did you mean the key `concurrency`?",
        ],
    },
    Case {
        what: "--set without =",
        profile: Some(GOOD),
        args: &["--set", "settings.concurrency"],
        expect: &["expected key.path=value", "fix: for example"],
    },
    Case {
        what: "--set with the wrong type",
        profile: Some(GOOD),
        args: &["--set", "settings.concurrency=abc"],
        expect: &["--set settings.concurrency=abc:", "expected a whole number"],
    },
    Case {
        what: "--set with an empty key",
        profile: Some(GOOD),
        args: &["--set", "settings..concurrency=2"],
        expect: &["has an empty key", "fix: keys are separated by single dots"],
    },
    Case {
        what: "--set into a scalar",
        profile: Some(GOOD),
        args: &["--set", "name.first=x"],
        expect: &["`name` is a string, not a mapping"],
    },
    Case {
        what: "unknown profile name",
        profile: None,
        args: &["--profile", "kindgpu"],
        expect: &["unknown profile `kindgpu`", "fix: use a built-in profile"],
    },
    Case {
        what: "missing profile file",
        profile: None,
        args: &["--profile", "/nonexistent/kgf.yaml"],
        expect: &[
            "cannot read profile /nonexistent/kgf.yaml",
            "fix: check the path",
        ],
    },
    Case {
        what: "misspelled flag",
        profile: None,
        args: &["--profle", "sim"],
        expect: &["unexpected argument '--profle'", "tip:"],
    },
    Case {
        what: "bad --output",
        profile: None,
        args: &["--output", "yaml"],
        expect: &["invalid value 'yaml' for '--output"],
    },
    Case {
        what: "bad --timeout",
        profile: None,
        args: &["--timeout", "5x"],
        expect: &["is not a duration like 90s"],
    },
];

#[test]
fn every_broken_profile_or_flag_exits_2_with_a_located_error_and_a_fix() {
    let dir = tempfile::tempdir().unwrap();
    assert!(CASES.len() >= 20);
    let mut failures = Vec::new();
    for case in CASES {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kgf-up"));
        cmd.arg("plan").env("CI", "true").env_remove("KGF_PROFILE");
        if let Some(yaml) = case.profile {
            let path = dir.path().join("profile.yaml");
            std::fs::write(&path, yaml).unwrap();
            cmd.args(["--profile", path.to_str().unwrap()]);
        }
        cmd.args(case.args);
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let missing: Vec<&&str> = case
            .expect
            .iter()
            .filter(|e| !stderr.contains(**e))
            .collect();
        if out.status.code() != Some(2) || !missing.is_empty() || stderr.contains("panicked") {
            failures.push(format!(
                "{}: exit {:?}, missing {missing:?} in:\n{stderr}",
                case.what,
                out.status.code()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn help_and_version_need_no_profile_or_cluster() {
    for args in [
        &["--help"][..],
        &["--version"],
        &["up", "--help"],
        &["completions", "bash"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
            .args(args)
            .env("KGF_PROFILE", "/nonexistent.yaml")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty());
    }
    let help = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains("Exit codes:") && help.contains("130"),
        "{help}"
    );
}

/// `plan --offline` of a profile, as JSON lines: the profile line, then one line per step.
fn offline_plan(profile: &str, sets: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kgf-up"));
    cmd.args(["plan", "--offline", "--profile", profile, "-o", "json"])
        .env("CI", "true");
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{profile}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
        })
        .collect()
}

/// The files a step of an offline plan would write, as `(path, content)`.
fn files(lines: &[serde_json::Value], step: &str) -> Vec<(String, String)> {
    let line = lines
        .iter()
        .find(|l| l["step"] == step)
        .unwrap_or_else(|| panic!("no step {step}"));
    line["description"]["files"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|f| {
                    (
                        f["path"].as_str().unwrap().to_string(),
                        f["content"].as_str().unwrap().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn built_in_profiles_plan_offline_with_their_own_sections_only() {
    // The built-in rke2 profile has no hosts: it says so and how to add them.
    let out = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
        .args(["plan", "--offline", "--profile", "rke2"])
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cluster.rke2.hosts is empty"), "{stderr}");
    for (profile, first, provider) in [
        ("sim", "cluster", "sim"),
        // kind checks the host before the cluster.
        ("kind-gpu", "preflight", "kind"),
        ("tests/fixtures/rke2/profile.yaml", "rke2/facts", "rke2"),
    ] {
        let lines = offline_plan(profile, &[]);
        let resolved = &lines[0]["resolved"];
        assert!(resolved["name"].is_string(), "{profile}: {}", lines[0]);
        let mut sections: Vec<&String> = resolved["cluster"].as_object().unwrap().keys().collect();
        sections.sort();
        let mut wanted = ["provider", provider];
        wanted.sort();
        assert_eq!(sections, wanted, "{profile}: only its own cluster section");
        let steps: Vec<&str> = lines[1..lines.len() - 1]
            .iter()
            .map(|l| l["step"].as_str().unwrap())
            .collect();
        assert_eq!(steps[0], first, "{profile}: {steps:?}");
        assert!(
            steps.contains(&"component/cert-manager"),
            "{profile}: {steps:?}"
        );
        assert!(
            lines[1..lines.len() - 1]
                .iter()
                .all(|l| l["status"] == "offline"),
            "{profile}"
        );
        assert_eq!(lines.last().unwrap()["summary"]["changes_pending"], true);
        // Every helm release shows the values file it would be installed with.
        let (path, values) = &files(&lines, "component/cert-manager")[0];
        assert!(path.ends_with("cert-manager-values.json"), "{path}");
        assert!(values.contains("\"crds\""), "{values}");
    }
    let smoke = offline_plan("sim", &["validation.cuda_smoke=true"]);
    let objects = smoke
        .iter()
        .find(|l| l["step"] == "validate/cuda-smoke")
        .map(|l| l["description"]["objects"].to_string())
        .unwrap_or_default();
    assert!(
        objects.contains("Job kgf-system/kgf-cuda-smoke"),
        "the smoke Job's namespace is filled in: {objects}"
    );
}

#[test]
fn plan_offline_kind_gpu_shows_how_kubeflow_pipelines_is_wired_to_the_object_store() {
    let lines = offline_plan("kind-gpu", &[]);
    let kfp = lines
        .iter()
        .find(|l| l["step"] == "component/kubeflow-pipelines")
        .expect("the kind-gpu profile installs Kubeflow Pipelines");
    let objects: Vec<&str> = kfp["description"]["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    let line = |start: &str| {
        objects
            .iter()
            .find(|o| o.starts_with(start))
            .unwrap_or_else(|| panic!("no {start}: {objects:#?}"))
            .to_string()
    };
    let launcher = line("ConfigMap kubeflow/kfp-launcher");
    assert!(
        launcher.contains("defaultPipelineRoot=s3://pipelines/v2/artifacts"),
        "{launcher}"
    );
    assert!(
        launcher.contains("\"endpoint\":\"minio.minio.svc.cluster.local:9000\"")
            && launcher.contains("\"forcePathStyle\":true")
            && launcher.contains("\"secretName\":\"mlpipeline-minio-artifact\""),
        "{launcher}"
    );
    let secret = line("Secret kubeflow/mlpipeline-minio-artifact");
    assert!(
        secret.contains("from MinIO's root Secret minio/"),
        "where the keys come from, never the keys: {secret}"
    );
    assert!(line("Deployment kubeflow/ml-pipeline").contains("OBJECTSTORECONFIG_HOST=minio."));
    assert!(
        line("ConfigMap kubeflow/workflow-controller-configmap")
            .contains("artifactRepository.s3.bucket=\"pipelines\"")
    );
    assert!(line("no bundled SeaweedFS").contains("the store is kgf-up's MinIO"));
    // The same, as a person reads it.
    let out = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
        .args(["plan", "--offline", "--profile", "kind-gpu"])
        .env("CI", "true")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("applies ConfigMap kubeflow/kfp-launcher (kgf-up's, replacing any other): defaultPipelineRoot=s3://"),
        "{text}"
    );
}

#[test]
fn plan_with_a_kubeconfig_or_context_that_is_not_there_is_bad_input_not_an_offline_plan() {
    let profile = "tests/fixtures/profiles/testbed.yaml";
    for (flags, said) in [
        (
            &["--kubeconfig", "/nonexistent"][..],
            "--kubeconfig /nonexistent: no such file",
        ),
        (
            &[
                "--kubeconfig",
                "tests/hostile/kubeconfig-two-contexts.yaml",
                "--context",
                "does-not-exist",
            ],
            "--context does-not-exist: kubeconfig tests/hostile/kubeconfig-two-contexts.yaml has no such context (it has: a, b)",
        ),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
            .args(["plan", "--profile", profile])
            .args(flags)
            .env("CI", "true")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(said), "{stderr}");
        assert!(stderr.contains("fix: "), "{stderr}");
        assert!(
            out.stdout.is_empty(),
            "no plan: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn the_kind_plan_shows_the_kind_config_it_would_create() {
    let lines = offline_plan("kind-gpu", &["cluster.kind.gpus.count=2"]);
    let (path, config) = &files(&lines, "kind/cluster")[0];
    assert!(path.ends_with("kind-kgf.yaml"), "{path}");
    assert!(config.starts_with("# Rendered by kgf-up"), "{config}");
    assert!(
        config.contains("containerPath: /var/run/nvidia-container-devices/"),
        "{config}"
    );
}

#[test]
fn the_rke2_plan_shows_each_hosts_config_with_the_token_redacted() {
    let lines = offline_plan("tests/fixtures/rke2/profile.yaml", &[]);
    let (path, config) = &files(&lines, "rke2/agent/192.0.2.11")[0];
    assert_eq!(
        path,
        "/etc/rancher/rke2/config.yaml on 192.0.2.11 (mode 0600)"
    );
    assert!(
        config.contains("server: https://192.0.2.10:9345"),
        "{config}"
    );
    assert!(
        config.contains("token: \"<redacted: node-token of 192.0.2.10>\""),
        "{config}"
    );
    let (_, first) = &files(&lines, "rke2/server/192.0.2.10")[0];
    assert!(
        !first.contains("token"),
        "the first server joins nobody: {first}"
    );
    let install = lines
        .iter()
        .find(|l| l["step"] == "rke2/agent/192.0.2.11")
        .unwrap()["description"]["commands"]
        .to_string();
    assert!(install.contains("INSTALL_RKE2_VERSION=v1."), "{install}");
}

#[test]
fn plan_exit_code_keeps_2_for_bad_input() {
    let out = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
        .args(["plan", "--exit-code", "--offline", "--profile", "sim"])
        .args(["--set", "settings.concurrency=0"])
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("settings.concurrency"), "{stderr}");
    let pending = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
        .args(["plan", "--exit-code", "--offline", "--profile", "sim"])
        .env("CI", "true")
        .output()
        .unwrap();
    assert_eq!(
        pending.status.code(),
        Some(4),
        "an offline plan always has changes pending"
    );
}
