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

#[test]
fn built_in_profiles_plan_without_touching_anything() {
    // The built-in rke2 profile has no hosts: it says so and how to add them.
    let out = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
        .args(["plan", "--profile", "rke2"])
        .env("CI", "true")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cluster.rke2.hosts is empty"), "{stderr}");
    for profile in ["sim", "kind-gpu", "tests/fixtures/rke2/profile.yaml"] {
        let out = Command::new(env!("CARGO_BIN_EXE_kgf-up"))
            .args(["plan", "--profile", profile, "-o", "json"])
            .env("CI", "true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{profile}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let steps: Vec<&str> = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        // The cluster comes first: kind checks the host (preflight) before it.
        let first = if profile == "kind-gpu" {
            "preflight"
        } else {
            steps[0]
        };
        assert_eq!(steps[0], first, "{profile}");
        assert!(
            steps
                .iter()
                .any(|s| s.ends_with("cluster") || s.starts_with("rke2/")),
            "{profile}: {steps:?}"
        );
        assert!(
            steps.contains(&"component/cert-manager"),
            "{profile}: {steps:?}"
        );
        assert!(plan["resolved"]["name"].is_string());
    }
}
