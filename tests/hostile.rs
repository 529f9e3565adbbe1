//! Hostile input and unattended runs: every broken profile or flag in `tests/hostile/` exits 2 in
//! under a second with its file:line:col, no panic and no secret; destruction needs consent;
//! secrets stay out of every output and log; logs never collide; a closed pipe is not an error.
//!
//! Nothing here needs a cluster (`tests/consent.rs` checks a refused `down` on the test bed).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Every secret in the corpus contains this; no output or log may.
const MARKER: &str = "SECRET-MARKER";

/// Library jargon that must never reach a user.
const JARGON: &[&str] = &[
    "invalid u32",
    "invalid u64",
    "invalid usize",
    "expected mapping start",
    "expected end of mapping",
    "DuplicateKeyPolicy",
    "budget breached",
    "Budget",
    "struct ",
    "enum ",
    "panicked",
    "RUST_BACKTRACE",
];

fn corpus() -> PathBuf {
    support::repo().join("tests/hostile")
}

/// Runs `cmd`, killing it after `limit`; returns the output and how long it ran.
fn run_bounded(mut cmd: Command, limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kgf-up starts");
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().unwrap();
    (out, started.elapsed())
}

/// Every log file under `state`, concatenated.
fn logs(state: &Path) -> String {
    let dir = state.join("kgf-up/logs");
    let mut text = String::new();
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    text
}

#[derive(serde::Deserialize)]
struct Case {
    name: String,
    profile: Option<String>,
    args: Vec<String>,
    expect: Vec<String>,
    at: Option<String>,
}

#[test]
fn every_hostile_input_exits_2_quickly_located_and_without_secrets() {
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(corpus().join("cases.json")).unwrap())
            .unwrap();
    assert!(cases.len() >= 100, "{} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let state = tempfile::tempdir().unwrap();
        let mut cmd = support::kgf_up_in(state.path());
        cmd.args(&case.args);
        let shown = case.profile.as_ref().map(|p| format!("tests/hostile/{p}"));
        if let Some(p) = &shown {
            cmd.args(["--profile", p]);
        }
        // The first run pays for loading the binary from disk; the bound is for kgf-up's work.
        let (out, took) = run_bounded(cmd, Duration::from_secs(10));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut wrong = Vec::new();
        if out.status.code() != Some(2) {
            wrong.push(format!("exit {:?}, not 2", out.status.code()));
        }
        if took > Duration::from_secs(1) {
            wrong.push(format!("took {took:?}"));
        }
        for e in &case.expect {
            if !stderr.contains(e.as_str()) {
                wrong.push(format!("no {e:?}"));
            }
        }
        if let (Some(at), Some(p)) = (&case.at, &shown) {
            let located = format!("{p}:{at}: ");
            if !stderr.contains(&located) {
                wrong.push(format!("not located at {located}"));
            }
        }
        if !["fix:", "tip:", "Usage:", "try '--help'"]
            .iter()
            .any(|f| stderr.contains(f))
        {
            wrong.push("no fix".into());
        }
        for j in JARGON {
            if stderr.contains(j) {
                wrong.push(format!("jargon {j:?}"));
            }
        }
        let log = logs(state.path());
        if stdout.contains(MARKER) || stderr.contains(MARKER) || log.contains(MARKER) {
            wrong.push("a secret was shown".into());
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}\n{stderr}", case.name, wrong.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn a_profile_over_the_size_limit_is_refused_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.yaml");
    let mut f = std::fs::File::create(&path).unwrap();
    writeln!(
        f,
        "name: t\ncluster: {{provider: existing}}\ndescription: |"
    )
    .unwrap();
    let line = format!("  {}\n", "x".repeat(1000));
    for _ in 0..1100 {
        f.write_all(line.as_bytes()).unwrap();
    }
    drop(f);
    let mut cmd = support::kgf_up_in(dir.path());
    cmd.args(["plan", "--profile", path.to_str().unwrap()]);
    let (out, took) = run_bounded(cmd, Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("larger than 1024 KiB"), "{stderr}");
    assert!(took < Duration::from_secs(1), "{took:?}");
}

/// A directory on PATH whose `kind` and `docker` only record that they were called (and `kind`
/// fails with `stderr` when given), ahead of the real PATH.
fn recording_path(dir: &Path, kind_stderr: Option<&str>) -> (String, PathBuf) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let called = dir.join("called");
    let fail = kind_stderr
        .map(|e| format!("echo '{e}' >&2; exit 1"))
        .unwrap_or_default();
    for tool in ["kind", "docker"] {
        let script = format!(
            "#!/bin/sh\necho \"{tool} $*\" >> '{}'\n{}\n",
            called.display(),
            if tool == "kind" { &fail } else { "" }
        );
        let path = bin.join(tool);
        std::fs::write(&path, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    (path, called)
}

#[test]
fn down_without_consent_refuses_with_the_command_and_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (path, called) = recording_path(dir.path(), None);
    for stdin_closed_and_piped in [false, true] {
        // `kgf-up down 2>&1 | tee log` in cron: no terminal anywhere, no --yes.
        let mut cmd = support::kgf_up_in(dir.path());
        cmd.args([
            "down",
            "--profile",
            "kind-gpu",
            "--set",
            "components.minio.values.rootPassword=SECRET-MARKER-argv",
        ])
        .env("PATH", &path);
        if stdin_closed_and_piped {
            cmd.env_remove("CI");
        }
        let (out, _) = run_bounded(cmd, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains("deletes the kind cluster `kgf`") && stderr.contains("needs consent"),
            "{stderr}"
        );
        assert!(
            stderr.contains(
                "run `kgf-up down --profile kind-gpu --set components.minio.values.rootPassword=*** --yes`"
            ),
            "the exact command, its secret redacted: {stderr}"
        );
        assert!(!called.exists(), "kind or docker was run");
        assert!(!logs(dir.path()).contains(MARKER));
    }
    // With --yes the same command goes ahead.
    let mut cmd = support::kgf_up_in(dir.path());
    cmd.args(["down", "--profile", "kind-gpu", "--yes"])
        .env("PATH", &path);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = std::fs::read_to_string(&called).unwrap();
    assert!(calls.contains("kind delete cluster --name kgf"), "{calls}");
}

#[test]
fn consent_for_a_command_line_that_is_not_utf8_gives_the_command_not_a_panic() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (path, called) = recording_path(dir.path(), None);
    // A log file named in another encoding (Latin-1 `é`): a valid path, not valid UTF-8.
    let mut log = dir.path().as_os_str().as_bytes().to_vec();
    log.extend_from_slice(b"/caf\xe9.log");
    let mut cmd = support::kgf_up_in(dir.path());
    cmd.args(["down", "--profile", "kind-gpu", "--log-file"])
        .arg(std::ffi::OsStr::from_bytes(&log))
        .env("PATH", &path);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("caf\\xe9.log' --yes`"),
        "the argument quoted byte for byte: {stderr}"
    );
    assert!(!called.exists(), "nothing ran before consent");
}

#[test]
fn a_failed_down_prints_its_cause_on_screen_and_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = recording_path(
        dir.path(),
        Some("ERROR: failed to delete cluster: docker is not running"),
    );
    let mut cmd = support::kgf_up_in(dir.path());
    cmd.args(["down", "--profile", "kind-gpu", "--yes"])
        .env("PATH", &path);
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("running kind delete cluster --name kgf")
            && stderr.contains("docker is not running"),
        "{stderr}"
    );
    assert!(logs(dir.path()).contains("docker is not running"));
}

#[test]
fn doctor_fix_and_recreate_need_consent_too() {
    let dir = tempfile::tempdir().unwrap();
    let (path, called) = recording_path(dir.path(), None);
    for args in [
        &["doctor", "--fix", "--profile", "kind-gpu"][..],
        &[
            "up",
            "--profile",
            "kind-gpu",
            "--set",
            "cluster.kind.recreate=true",
        ],
    ] {
        let mut cmd = support::kgf_up_in(dir.path());
        cmd.args(args).env("PATH", &path);
        let (out, _) = run_bounded(cmd, Duration::from_secs(30));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("--yes`"), "{stderr}");
    }
    assert!(!called.exists(), "nothing ran before consent");
}

#[test]
fn inline_and_set_secrets_stay_out_of_plan_errors_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("p.yaml");
    std::fs::write(
        &profile,
        "name: t\ncluster:\n  provider: existing\n  existing: {kubeconfig: /nonexistent/kubeconfig}\ncomponents:\n  minio:\n    values:\n      rootPassword: SECRET-MARKER-inline\n      auth: {token: SECRET-MARKER-token, accessKey: SECRET-MARKER-ak}\n",
    )
    .unwrap();
    let set = "--set=components.minio.values.secretKey=SECRET-MARKER-set";
    let p = profile.to_str().unwrap();
    // Successful plans (text and json), a failing verb (no cluster), and bad input.
    for (args, code) in [
        (vec!["plan", "--profile", p, set], 0),
        (vec!["plan", "--profile", p, set, "-o", "json"], 0),
        (vec!["status", "--profile", p, set], 1),
        (vec!["up", "--profile", p, set], 1),
        (vec!["verify", "--profile", p, set], 1),
        (
            vec![
                "plan",
                "--profile",
                p,
                set,
                "--set",
                "settings.concurrency=x",
            ],
            2,
        ),
        (vec!["down", "--profile", p, set], 2),
    ] {
        let state = tempfile::tempdir().unwrap();
        let mut cmd = support::kgf_up_in(state.path());
        cmd.args(&args);
        let (out, _) = run_bounded(cmd, Duration::from_secs(60));
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let code_seen = out.status.code();
        assert!(
            code_seen == Some(code) || (code == 1 && code_seen == Some(3)),
            "{args:?}: exit {code_seen:?}\n{all}"
        );
        assert!(!all.contains(MARKER), "{args:?} showed a secret:\n{all}");
        assert!(
            !logs(state.path()).contains(MARKER),
            "{args:?} logged a secret"
        );
        if args[0] == "plan" && code == 0 {
            assert!(
                all.contains("***"),
                "the values are shown, redacted:\n{all}"
            );
        }
    }
}

#[test]
fn two_runs_in_the_same_second_keep_two_logs() {
    let state = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            support::kgf_up_in(state.path())
                .args(["plan", "--profile", "sim"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let logs: Vec<PathBuf> = std::fs::read_dir(state.path().join("kgf-up/logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 2, "{logs:?}");

    // A --log-file given twice is appended to, never truncated.
    let log = state.path().join("mine.log");
    for _ in 0..2 {
        let out = support::kgf_up_in(state.path())
            .args([
                "plan",
                "--profile",
                "sim",
                "--set",
                "settings.concurrency=0",
            ])
            .arg("--log-file")
            .arg(&log)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("settings.concurrency is 0").count(),
        2,
        "both runs' errors are in the log:\n{text}"
    );
}

/// Runs kgf-up with `args` twice: reading its stdout, and with stdout closed before it writes
/// (`| head -0`). Returns both outputs.
fn with_and_without_a_reader(state: &Path, args: &[&str]) -> (Output, Output) {
    let read = support::kgf_up_in(state).args(args).output().unwrap();
    let mut child = support::kgf_up_in(state)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    (read, child.wait_with_output().unwrap())
}

#[test]
fn a_closed_pipe_ends_every_printing_verb_quietly() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    // An existing cluster whose kubeconfig is not there: every verb that needs the cluster fails
    // at once, touching nothing.
    let absent = dir.join("absent.yaml");
    std::fs::write(
        &absent,
        "name: t\ncluster:\n  provider: existing\n  existing: {kubeconfig: /nonexistent/kubeconfig}\n",
    )
    .unwrap();
    // A packaged chart is vendored by copying it: vendor prints without helm or a network.
    std::fs::write(dir.join("c-0.1.0.tgz"), b"not read, only copied").unwrap();
    let packaged = dir.join("packaged.yaml");
    std::fs::write(
        &packaged,
        "name: t\ncluster: {provider: existing}\ncomponents:\n  c: {source: {chart: {path: c-0.1.0.tgz}}, namespace: c}\n",
    )
    .unwrap();
    let (absent, packaged) = (absent.to_str().unwrap(), packaged.to_str().unwrap());
    let vendored = dir.join("vendored");
    let vendored = vendored.to_str().unwrap();
    // Every verb; those that print on stdout must end quietly with 0 when nobody reads it.
    let printing: &[&[&str]] = &[
        &["plan", "--profile", "sim"],
        &["plan", "--profile", "sim", "--output", "json"],
        &["status", "--profile", "sim"],
        &["vendor", "--profile", packaged, "--out", vendored],
        &[
            "vendor",
            "--profile",
            packaged,
            "--out",
            vendored,
            "-o",
            "json",
        ],
        &["doctor", "--profile", "kind-gpu"],
        &["completions", "bash"],
        &["pipeline", "spec", "--profile", "sim"],
    ];
    let others: &[&[&str]] = &[
        &["up", "--profile", absent],
        &["up", "--profile", absent, "--output", "json"],
        &["verify", "--profile", absent],
        &["down", "--profile", absent, "--yes"],
        &["doctor", "--profile", absent],
        &["pipeline", "upload", "--profile", absent],
    ];
    for (args, prints) in printing
        .iter()
        .map(|a| (a, true))
        .chain(others.iter().map(|a| (a, false)))
    {
        let (read, closed) = with_and_without_a_reader(dir, args);
        let stderr = String::from_utf8_lossy(&closed.stderr);
        for bad in ["panicked", "Broken pipe", "os error 32"] {
            assert!(!stderr.contains(bad), "{args:?} said {bad}: {stderr}");
        }
        if prints {
            assert!(
                !read.stdout.is_empty(),
                "{args:?} printed nothing on stdout"
            );
            assert_eq!(closed.status.code(), Some(0), "{args:?}: {stderr}");
            assert!(stderr.trim().is_empty(), "{args:?} said: {stderr}");
        } else {
            // Nothing for the closed pipe to cut short: the verb ends as it does with a reader.
            assert_eq!(
                closed.status.code(),
                read.status.code(),
                "{args:?}: {stderr}"
            );
        }
    }
}

#[test]
fn a_profile_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let state = tempfile::tempdir().unwrap();
    let fifo = state.path().join("profile.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    for (path, what) in [
        (
            fifo.to_str().unwrap(),
            "it is a FIFO (a named pipe), not a file",
        ),
        ("/dev/zero", "it is a device, not a file"),
    ] {
        let mut cmd = support::kgf_up_in(state.path());
        cmd.args(["plan", "--profile", path]);
        // Before the fix this waited for a writer forever (or read /dev/zero up to the limit).
        let (out, took) = run_bounded(cmd, Duration::from_secs(10));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot read profile {path}: {what}")),
            "{stderr}"
        );
        assert!(stderr.contains("fix: "), "{stderr}");
        assert!(took < Duration::from_secs(2), "{path}: {took:?}");
    }
}

#[test]
fn up_on_a_machine_without_a_gpu_says_once_what_failed_and_offers_sim() {
    let state = tempfile::tempdir().unwrap();
    // No docker and no nvidia-smi on this PATH: the kind-gpu preflight fails.
    let (out, took) = run_bounded(
        {
            let mut cmd = support::kgf_up_in(state.path());
            cmd.env("PATH", "/usr/bin:/bin");
            cmd
        },
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("not ready for a GPU kind cluster"),
        "{stderr}"
    );
    assert!(stderr.contains("docker"), "{stderr}");
    assert_eq!(stderr.matches("--profile sim").count(), 1, "{stderr}");
    assert!(
        stderr.contains("it needs kwokctl and helm"),
        "what sim needs, checked: {stderr}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    // And sim itself checks its tools before it starts.
    let mut cmd = support::kgf_up_in(state.path());
    cmd.args(["up", "--profile", "sim"])
        .env("PATH", "/nonexistent");
    let (out, _) = run_bounded(cmd, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("the sim profile needs kwokctl and helm")
            && stderr.contains("`kwokctl` is not on PATH")
            && stderr.contains("`helm` is not on PATH"),
        "{stderr}"
    );
}

/// Issue 24, item 4: `kgf-up` with no arguments on a machine whose Docker works but that has no
/// GPU offers the `kind` profile (the whole platform on Docker), not `sim`, whose tools a newcomer
/// does not have. STAND-IN: `docker` answers `docker info` with a reachable daemon.
#[test]
fn up_on_a_docker_host_without_a_gpu_offers_the_kind_profile() {
    let state = tempfile::tempdir().unwrap();
    let bin = state.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let info = std::fs::read_to_string(
        support::repo().join("tests/fixtures/kind/preflight/docker-info-nvidia.json"),
    )
    .unwrap()
    .replace(
        "\"DefaultRuntime\":\"nvidia\"",
        "\"DefaultRuntime\":\"runc\"",
    );
    std::fs::write(bin.join("docker-info.json"), info).unwrap();
    let docker = bin.join("docker");
    std::fs::write(
        &docker,
        format!(
            "#!/bin/sh\n[ \"$1\" = info ] && exec cat '{}'\nexit 1\n",
            bin.join("docker-info.json").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (out, _) = run_bounded(
        {
            let mut cmd = support::kgf_up_in(state.path());
            cmd.env("PATH", format!("{}:/usr/bin:/bin", bin.display()));
            cmd
        },
        Duration::from_secs(60),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("not ready for a GPU kind cluster"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("`kgf-up --profile kind`").count(),
        1,
        "{stderr}"
    );
    assert!(!stderr.contains("--profile sim"), "{stderr}");
    assert!(
        stderr.contains("it needs the fixes above for kind"),
        "what the kind profile still needs here: {stderr}"
    );
}

mod loader {
    //! The profile loader over the whole schema: the built-in profiles, each value replaced by
    //! hostile ones (huge numbers, wrong types, odd strings, nested junk, removed keys), written
    //! as YAML and as JSON, loaded and planned: errors are fine, panics are not.

    use proptest::prelude::*;
    use serde_json::{Value, json};

    /// Every key of the schema, so that junk mappings also hit real fields.
    const KEYS: &[&str] = &[
        "name",
        "description",
        "cluster",
        "provider",
        "kind",
        "rke2",
        "sim",
        "existing",
        "nodes",
        "gpus",
        "cpu",
        "memory",
        "workers",
        "count",
        "layout",
        "explicit",
        "one-worker",
        "worker-per-gpu",
        "registry",
        "toolkit",
        "apt",
        "debs",
        "recreate",
        "hosts",
        "address",
        "role",
        "server",
        "agent",
        "port",
        "key",
        "labels",
        "taints",
        "gpu",
        "version",
        "channel",
        "tls_san",
        "registries",
        "endpoints",
        "auth",
        "password",
        "env",
        "file",
        "proxy",
        "install_script",
        "ssh",
        "parallelism",
        "settings",
        "concurrency",
        "timeout",
        "namespace",
        "components",
        "source",
        "helm",
        "oci",
        "chart",
        "kustomize",
        "paths",
        "repo",
        "reference",
        "path",
        "needs",
        "values",
        "release",
        "enabled",
        "validation",
        "min_gpu_nodes",
        "cuda_smoke",
        "time_slicing",
        "replicas",
        "mig",
        "strategy",
        "pipeline",
        "tools",
        "kwokctl",
        "cert-manager",
        "minio",
        "kserve",
        "gpu-operator",
    ];

    fn scalar() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(|n| json!(n)),
            any::<i64>().prop_map(|n| json!(n)),
            Just(json!(u32::MAX)),
            Just(json!(u64::MAX)),
            Just(json!(0)),
            Just(json!(4_000_000_000u64)),
            Just(json!(1.5)),
            prop::sample::select(KEYS).prop_map(|k| json!(k)),
            "[a-zA-Z0-9 ._:/@^~*<>=|+-]{0,24}".prop_map(Value::String),
            "\\PC{0,12}".prop_map(Value::String),
            Just(json!("5124095576030432h")),
            Just(json!("oci://r/c:1")),
            Just(json!("^1.2")),
        ]
    }

    fn junk() -> impl Strategy<Value = Value> {
        scalar().prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..6).prop_map(
                    |m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                ),
            ]
        })
    }

    /// Every path (as indices into maps and lists) of `v`.
    fn paths(v: &Value, here: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(here.clone());
        match v {
            Value::Object(m) => {
                for (k, c) in m {
                    let mut p = here.clone();
                    p.push(k.clone());
                    paths(c, p, out);
                }
            }
            Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let mut p = here.clone();
                    p.push(i.to_string());
                    paths(c, p, out);
                }
            }
            _ => {}
        }
    }

    fn at<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Value {
        path.iter().fold(v, |v, k| match v {
            Value::Object(m) => m.get_mut(k).expect("a path of this tree"),
            Value::Array(a) => &mut a[k.parse::<usize>().unwrap()],
            _ => unreachable!("paths end at scalars"),
        })
    }

    fn bases() -> Vec<Value> {
        [
            "kind-gpu",
            "sim",
            "tests/fixtures/profiles/testbed-all.yaml",
            "tests/fixtures/rke2/profile.yaml",
        ]
        .iter()
        .map(|p| {
            let dir = super::support::repo();
            let path = if p.contains('/') {
                dir.join(p).display().to_string()
            } else {
                p.to_string()
            };
            serde_json::to_value(kgf_up::load::load(&path, &[]).unwrap().profile).unwrap()
        })
        .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        #[test]
        fn mutated_profiles_load_and_plan_without_panicking(
            base in 0usize..4,
            edits in prop::collection::vec((any::<prop::sample::Index>(), junk(), any::<bool>()), 1..4),
            as_yaml in any::<bool>(),
            gpus in 0u32..9,
        ) {
            let mut tree = bases()[base].clone();
            for (index, value, remove) in edits {
                let mut all = Vec::new();
                paths(&tree, Vec::new(), &mut all);
                let path = index.get(&all).clone();
                match (remove, path.split_last()) {
                    (true, Some((last, parent))) => match at(&mut tree, parent) {
                        Value::Object(m) => { m.remove(last); }
                        Value::Array(a) => { a.remove(last.parse::<usize>().unwrap()); }
                        _ => {}
                    },
                    _ => *at(&mut tree, &path) = value,
                }
            }
            let text = if as_yaml {
                serde_saphyr::to_string(&tree).unwrap_or_default()
            } else {
                tree.to_string()
            };
            let base_dir = super::support::repo().join("tests/fixtures/profiles");
            if let Ok(loaded) = kgf_up::load::from_text(&text, "fuzz.yaml".into(), &[], base_dir) {
                let facts = kgf_up::cluster::Facts { gpus };
                let _ = kgf_up::plan::build(
                    &loaded,
                    &kgf_up::cluster::Overrides::default(),
                    &facts,
                    &kgf_up::exec::Exec::with_gate(kgf_up::gate::Gate::record()),
                );
            }
        }

        #[test]
        fn arbitrary_set_expressions_on_a_built_in_profile_never_panic(
            sets in prop::collection::vec(
                (prop::collection::vec(prop::sample::select(KEYS), 1..5), junk()),
                1..4,
            ),
        ) {
            let sets: Vec<String> = sets
                .into_iter()
                .map(|(keys, v)| format!("{}={}", keys.join("."), v))
                .collect();
            let _ = kgf_up::load::load("sim", &sets);
        }
    }
}
