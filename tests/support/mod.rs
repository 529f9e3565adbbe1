//! Test support: the test bed's kubeconfig and binaries, kubectl, and audit-log counting.
//!
//! Integration tests run inside the bed's network namespace (`scripts/testbed test` or
//! `scripts/testbed run -- cargo test`), which sets `KUBECONFIG`, `KGF_TESTBED_BIN` and
//! `KGF_TESTBED_AUDIT_LOG`. A test that needs the bed calls [`bed`], which fails with the fix when
//! the test is run outside it.
#![allow(dead_code)] // each test binary uses a different part of this module

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The running test bed, as the environment describes it.
pub struct Bed {
    pub kubeconfig: PathBuf,
    pub bin: PathBuf,
    pub audit_log: PathBuf,
}

pub fn bed() -> Bed {
    let var = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                panic!(
                    "{name} is not set: run the tests inside the test bed, e.g. \
                 `scripts/testbed test` or `scripts/testbed run -- cargo test`"
                )
            })
    };
    Bed {
        kubeconfig: var("KUBECONFIG"),
        bin: var("KGF_TESTBED_BIN"),
        audit_log: var("KGF_TESTBED_AUDIT_LOG"),
    }
}

/// The real-node bed (scripts/nodebed), as the environment describes it: Debian's dockerd in the
/// bed's namespace, the kind node image it made, and the subnets kind clusters use there (inside
/// 198.18.0.0/15, the bed's network rule).
pub struct NodeBed {
    pub docker_host: String,
    pub node_image: String,
    pub pod_subnet: String,
    pub service_subnet: String,
}

/// The real-node bed; fails with the fix when the tests run outside it or its dockerd is down.
pub fn node_bed() -> NodeBed {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run the tests inside the test bed, e.g. \
                 `scripts/testbed test` or `scripts/testbed run -- cargo test`"
            )
        })
    };
    let bed = NodeBed {
        docker_host: var("DOCKER_HOST"),
        node_image: var("KGF_NODEBED_IMAGE"),
        pod_subnet: var("KGF_NODEBED_POD_SUBNET"),
        service_subnet: var("KGF_NODEBED_SERVICE_SUBNET"),
    };
    let version = bed.docker(&["version", "--format", "{{.Server.Version}}"]);
    assert!(
        version.status.success(),
        "the real-node bed's dockerd does not answer on {}: {} (start it: scripts/testbed up)",
        bed.docker_host,
        text(&version)
    );
    bed
}

impl NodeBed {
    /// Runs the docker CLI the bed puts first on PATH (Debian's), whatever the exit status.
    pub fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(args)
            .env("DOCKER_HOST", &self.docker_host)
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker: {e}"))
    }

    /// Runs docker and returns stdout; panics with its output when it fails.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {} failed: {}",
            args.join(" "),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The repository root (where `scripts/` and `tests/fixtures/` are).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the kgf-up binary as CI does (no terminal, `CI=true`) with the bed's binaries first on
/// PATH, and waits for it.
pub fn kgf_up(args: &[&str]) -> Output {
    kgf_up_cmd(args).output().unwrap()
}

/// The command [`kgf_up`] runs, to start it some other way.
pub fn kgf_up_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kgf-up"));
    cmd.args(args)
        .env(
            "PATH",
            format!(
                "{}:{}",
                bed().bin.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env("CI", "true")
        .stdin(Stdio::null());
    cmd
}

/// kgf-up as it runs unattended, with a private state directory (its logs land there): `CI=true`,
/// no terminal, no `KGF_PROFILE` from the caller's environment, the repository as the working
/// directory. Needs no bed.
pub fn kgf_up_in(state: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kgf-up"));
    cmd.current_dir(repo())
        .env("CI", "true")
        .env("XDG_STATE_HOME", state)
        .env_remove("KGF_PROFILE")
        .stdin(Stdio::null());
    cmd
}

/// A finished command's stdout and stderr, for assertions and their messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn fixture(rel: &str) -> PathBuf {
    repo().join("tests/fixtures").join(rel)
}

impl Bed {
    /// Runs a bed binary (`kubectl`, `helm3`, ...) and returns its output, whatever the exit status.
    pub fn tool(&self, program: &str, args: &[&str]) -> Output {
        Command::new(self.bin.join(program))
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
    }

    /// Runs kubectl and returns stdout; panics with stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        let out = self.tool("kubectl", args);
        assert!(
            out.status.success(),
            "kubectl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies YAML from a string with kubectl.
    pub fn apply(&self, yaml: &str) {
        self.apply_args(yaml, &[]);
    }

    /// Applies YAML into `namespace`.
    pub fn apply_in(&self, namespace: &str, yaml: &str) {
        self.apply_args(yaml, &["-n", namespace]);
    }

    fn apply_args(&self, yaml: &str, extra: &[&str]) {
        let mut child = Command::new(self.bin.join("kubectl"))
            .args(["apply", "-f", "-"])
            .args(extra)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// An API client of the bed whose writes go through (a wet gate).
    pub async fn kube(&self) -> kgf_up::kube::Kube {
        kgf_up::kube::Kube::connect(
            &kgf_up::kube::Kubeconfig {
                path: self.kubeconfig.clone(),
                context: None,
            },
            kgf_up::gate::Gate::wet(),
        )
        .await
        .expect("the bed's API answers")
    }

    /// A point in the audit log; requests after it are counted by [`Bed::mutations_since`].
    pub fn audit_mark(&self) -> AuditMark {
        AuditMark(
            std::fs::metadata(&self.audit_log)
                .map(|m| m.len())
                .unwrap_or(0),
        )
    }

    /// Mutating requests (create, update, patch, delete, deletecollection) logged after `mark`
    /// whose user agent starts with one of `agents` (e.g. "kgf-up", "Helm", "kubectl"). The bed's
    /// own controllers and kwok mutate all the time; they are not counted.
    pub fn mutations_since(&self, mark: &AuditMark, agents: &[&str]) -> Vec<AuditEvent> {
        read_audit(&self.audit_log, mark.0)
            .into_iter()
            .filter(|e| e.is_mutation() && agents.iter().any(|a| e.user_agent.starts_with(a)))
            .collect()
    }
}

#[derive(Clone, Copy, Debug)]
pub struct AuditMark(u64);

/// The parts of an audit event the tests look at.
#[derive(Clone, Debug)]
pub struct AuditEvent {
    pub verb: String,
    pub uri: String,
    pub user: String,
    pub user_agent: String,
    pub resource: String,
    pub name: String,
}

impl AuditEvent {
    /// A request that changes what the API server stores: a server-side dry run does not.
    pub fn is_mutation(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && !self.uri.contains("dryRun=")
    }
}

fn read_audit(path: &Path, from: u64) -> Vec<AuditEvent> {
    let mut file = std::fs::File::open(path)
        .unwrap_or_else(|e| panic!("cannot read the audit log {}: {e}", path.display()));
    file.seek(SeekFrom::Start(from)).unwrap();
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .map(|v| {
            let s = |p: &str| {
                v.pointer(p)
                    .and_then(|x| x.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            AuditEvent {
                verb: s("/verb"),
                uri: s("/requestURI"),
                user: s("/user/username"),
                user_agent: s("/userAgent"),
                resource: s("/objectRef/resource"),
                name: s("/objectRef/name"),
            }
        })
        .collect()
}
