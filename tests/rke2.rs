//! The rke2 provider against real sshd hosts: network namespaces made by `scripts/testhosts`, each
//! with its own sshd and host key, checked strictly. rke2 itself cannot run here (no internet, no
//! systemd in a namespace), so each host has the named stand-in installer and systemctl from
//! `tests/support/rke2_standin/`, which record what they were asked and "join" kwok Nodes to the
//! test bed.
//!
//! Run inside the bed, as root: `scripts/testbed run -- cargo test --test rke2`.

mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kgf_up::cluster::rke2::{self, Rke2Plan, Rke2Spec};
use kgf_up::exec::Exec;
use kgf_up::step::{Ctx, DynStep, Observation, State};

/// The hosts are shared machinery: one test at a time.
static HOSTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

/// Everything kgf-up logs (debug level, the run log's content), from all threads.
fn log() -> Arc<Mutex<Vec<u8>>> {
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || LogWriter(writer.clone()))
            .init();
        buf
    })
    .clone()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);
impl Write for LogWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Hosts {
    dir: PathBuf,
}

impl Hosts {
    /// Fresh hosts kgf-host-1..n (any earlier ones are removed first).
    fn up(n: usize) -> Hosts {
        let _ = support::bed();
        // Not under /tmp: sshd refuses authorized keys below a world-writable directory.
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/root".into());
        let dir = home.join(".cache/kgf-up/testhosts-rke2-test");
        let out = Command::new(support::repo().join("scripts/testhosts"))
            .args(["up", &n.to_string()])
            .env("KGF_TESTHOSTS_DIR", &dir)
            .output()
            .expect("scripts/testhosts runs");
        assert!(
            out.status.success(),
            "scripts/testhosts up failed (needs root, openssh-server, socat, sudo):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Hosts { dir }
    }

    fn addr(i: usize) -> String {
        format!("198.18.0.{}", 4 * i - 2)
    }

    fn file(&self, i: usize, rel: &str) -> PathBuf {
        self.dir.join(format!("hosts/{i}")).join(rel)
    }

    fn read(&self, i: usize, rel: &str) -> String {
        std::fs::read_to_string(self.file(i, rel)).unwrap_or_default()
    }

    /// A host's recorded stand-in calls: (timestamp ns, line).
    fn records(&self, i: usize, log: &str) -> Vec<(u128, String)> {
        self.read(i, &format!("kgf-standin/{log}"))
            .lines()
            .map(|l| {
                let (t, rest) = l.split_once(' ').unwrap();
                (t.parse().unwrap(), rest.to_string())
            })
            .collect()
    }

    /// The stand-in systemctl calls that change something (facts only ask `is-enabled`/`is-active`).
    fn service_changes(&self, i: usize) -> Vec<(u128, String)> {
        self.records(i, "systemctl.log")
            .into_iter()
            .filter(|(_, l)| !l.starts_with("is-"))
            .collect()
    }

    fn testhosts(&self, args: &[&str]) {
        let ok = Command::new(support::repo().join("scripts/testhosts"))
            .args(args)
            .env("KGF_TESTHOSTS_DIR", &self.dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "scripts/testhosts {args:?}");
    }

    fn spec(&self, n: usize) -> Rke2Spec {
        let mut yaml = format!(
            "name: gpu-lab
install_script: {}
ssh: {{known_hosts: {}}}
parallelism: 2
hosts:
",
            support::repo()
                .join("tests/support/rke2_standin/install.sh")
                .display(),
            self.dir.join("known_hosts").display()
        );
        for i in 1..=n {
            let (role, extra) = match i {
                1 => ("server", ""),
                2 => ("agent", ", gpu: true, labels: {pool: gpu}"),
                _ => ("agent", ", gpu: false"),
            };
            yaml.push_str(&format!(
                "  - {{address: {}, user: root, key: {}, role: {role}{extra}}}\n",
                Self::addr(i),
                self.dir.join("id_ed25519").display()
            ));
        }
        serde_saphyr::from_str(&yaml).unwrap()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        // The stand-in's Nodes live in the shared bed: leave it as it was.
        let names: Vec<String> = (1..=9).map(|i| format!("kgf-host-{i}")).collect();
        let mut args = vec!["delete", "node", "--ignore-not-found"];
        args.extend(names.iter().map(String::as_str));
        let _ = support::bed().tool("kubectl", &args);
        let _ = Command::new(support::repo().join("scripts/testhosts"))
            .arg("down")
            .env("KGF_TESTHOSTS_DIR", &self.dir)
            .status();
    }
}

fn ctx(work: &Path) -> Ctx {
    Ctx::new(
        Exec::new(),
        work.to_path_buf(),
        Duration::from_secs(60),
        "kgf-system".into(),
    )
}

/// What the engine does with steps, in plan order: observe, apply when not converged, wait.
/// Stops at the first error and returns what each step observed until then.
async fn run(steps: &[DynStep], ctx: &Ctx) -> Result<Vec<(String, Observation)>, String> {
    let mut seen = Vec::new();
    for step in steps {
        let obs = step.observe(ctx).await.map_err(|e| render(step, e))?;
        if !obs.is_converged() {
            step.apply(ctx, &obs).await.map_err(|e| render(step, e))?;
            step.wait(ctx).await.map_err(|e| render(step, e))?;
        }
        seen.push((step.id().to_string(), obs));
    }
    Ok(seen)
}

fn render(step: &DynStep, e: kgf_up::step::StepError) -> String {
    format!(
        "{}: {} (fix: {})",
        step.id(),
        e.message,
        e.fix.unwrap_or_default()
    )
}

/// Samples every process's command line until stopped (sshd's children on the hosts included:
/// network namespaces share the PID namespace).
struct ArgvSampler {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<BTreeSet<String>>,
}

impl ArgvSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut seen = BTreeSet::new();
            while !flag.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                    if let Ok(raw) = std::fs::read(entry.path().join("cmdline"))
                        && !raw.is_empty()
                    {
                        seen.insert(String::from_utf8_lossy(&raw).replace('\0', " "));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seen
        });
        ArgvSampler { stop, handle }
    }

    fn finish(self) -> BTreeSet<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap()
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rke2_installs_server_then_agents_moves_the_token_unseen_and_reruns_without_changes() {
    let _one = HOSTS.lock().await;
    let log = log();
    let hosts = Hosts::up(3);
    let bed = support::bed();
    let work = tempfile::tempdir().unwrap();
    let ctx = ctx(work.path());

    let user_kubeconfig = work.path().join("user-kubeconfig");
    std::fs::write(
        &user_kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: mine, cluster: {server: 'https://mine:6443'}}]\n\
         users: []\ncontexts: [{name: mine, context: {cluster: mine, user: mine}}]\ncurrent-context: mine\n",
    )
    .unwrap();
    let mut spec = hosts.spec(3);
    spec.merge_into = Some(user_kubeconfig.clone());
    let password_file = work.path().join("registry-password");
    std::fs::write(&password_file, "registry-pass-5f1c2e\n").unwrap();
    spec.registries = serde_saphyr::from_str(&format!(
        "[{{registry: docker.io, endpoints: ['https://mirror.test:5000'], \
         auth: {{username: puller, password: {{file: {}}}}}}}]",
        password_file.display()
    ))
    .unwrap();
    let plan = Rke2Plan::new(spec.clone(), &ctx.exec).unwrap();
    let steps = plan.steps(&[]);
    let sampler = ArgvSampler::start();
    let started = std::time::Instant::now();
    let first = run(&steps, &ctx).await;
    eprintln!(
        "first run (3 hosts): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let argv = sampler.finish();
    let first = first.unwrap();
    assert_eq!(
        first[0].1.state,
        State::Converged,
        "facts: {:?}",
        first[0].1
    );
    assert!(first[0].1.reason.contains("kgf-host-3"), "{:?}", first[0].1);
    for (id, obs) in &first[1..5] {
        assert_eq!(obs.state, State::Missing, "{id} on a bare host: {obs:?}");
    }

    // Order: the server is installed and started before either agent.
    let server_install = hosts.records(1, "install.log")[0].0;
    let server_start = hosts.service_changes(1)[0].clone();
    assert_eq!(server_start.1, "enable --now rke2-server");
    for i in [2, 3] {
        let install = hosts.records(i, "install.log");
        let start = hosts.service_changes(i);
        assert_eq!(install.len(), 1, "host {i} installed once: {install:?}");
        assert!(
            install[0].0 > server_start.0,
            "agent {i} installed before the server started"
        );
        assert_eq!(start[0].1, "enable --now rke2-agent");
        assert!(
            install[0]
                .1
                .contains("uid=0 type=agent version=v1.36.3+rke2r1"),
            "{}",
            install[0].1
        );
    }
    assert!(server_install < server_start.0);
    assert!(
        hosts.records(1, "install.log")[0]
            .1
            .contains("uid=0 type=server version=v1.36.3+rke2r1 channel= artifact_path="),
        "{:?}",
        hosts.records(1, "install.log")
    );

    // Config contents and modes.
    let token = hosts
        .read(1, "root/var-lib-rancher/rke2/server/node-token")
        .trim()
        .to_string();
    assert!(
        token.starts_with("K10") && token.len() > 40,
        "stand-in token {token:?}"
    );
    let config = |i| -> serde_json::Value {
        serde_saphyr::from_str(&hosts.read(i, "root/etc-rancher/rke2/config.yaml")).unwrap()
    };
    assert_eq!(
        config(1),
        serde_json::json!({"write-kubeconfig-mode": "0600", "tls-san": ["198.18.0.2"]})
    );
    for i in [2, 3] {
        assert_eq!(config(i)["server"], "https://198.18.0.2:9345");
        assert_eq!(config(i)["token"], token.as_str());
        assert_eq!(
            mode(&hosts.file(i, "root/etc-rancher/rke2/config.yaml")),
            0o600
        );
    }
    assert_eq!(
        mode(&hosts.file(1, "root/etc-rancher/rke2/config.yaml")),
        0o600
    );
    assert_eq!(
        config(2)["node-label"],
        serde_json::json!(["pool=gpu", "nvidia.com/gpu.present=true"])
    );
    assert!(config(3).get("node-label").is_none());

    // The token went nowhere but stdin: no process's argv, not the log, not the installer's record.
    assert!(
        argv.iter()
            .any(|c| c.contains("ssh") && c.contains("/dev/stdin /etc/rancher/rke2/config.yaml")),
        "the sampler saw the uploads ({} command lines)",
        argv.len()
    );
    let leaked: Vec<&String> = argv.iter().filter(|c| c.contains(&token)).collect();
    assert!(leaked.is_empty(), "token in argv: {leaked:?}");
    let logged = String::from_utf8_lossy(&log.lock().unwrap()).to_string();
    assert!(
        logged.contains("enable --now rke2-agent"),
        "the log has the run's commands"
    );
    assert!(!logged.contains(&token), "token in the log");
    assert!(!hosts.read(2, "kgf-standin/install.log").contains(&token));
    for i in 1..=3 {
        let registries = hosts.file(i, "root/etc-rancher/rke2/registries.yaml");
        assert_eq!(mode(&registries), 0o600);
        let r: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(registries).unwrap()).unwrap();
        assert_eq!(
            r["configs"]["mirror.test:5000"]["auth"]["password"],
            "registry-pass-5f1c2e"
        );
    }
    assert!(
        !logged.contains("registry-pass-5f1c2e"),
        "registry password in the log"
    );
    assert!(
        !argv.iter().any(|c| c.contains("registry-pass-5f1c2e")),
        "registry password in argv"
    );

    // The kubeconfig: fetched, rewritten to the first server, 0600, and it works.
    let kc_path = work.path().join("rke2-gpu-lab.kubeconfig");
    assert_eq!(mode(&kc_path), 0o600);
    let kc: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&kc_path).unwrap()).unwrap();
    assert_eq!(kc["current-context"], "gpu-lab");
    assert_eq!(
        kc["clusters"][0]["cluster"]["server"],
        "https://198.18.0.2:6443"
    );
    assert_eq!(ctx.kubeconfig.get().unwrap().path, kc_path);
    let merged: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&user_kubeconfig).unwrap()).unwrap();
    assert_eq!(merged["current-context"], "gpu-lab");
    assert_eq!(
        merged["clusters"][0]["name"], "mine",
        "the user's own entries are kept"
    );
    assert_eq!(
        merged["clusters"][1]["cluster"]["server"],
        "https://198.18.0.2:6443"
    );
    assert_eq!(mode(&user_kubeconfig), 0o600);
    let client_key = kc["users"][0]["user"]["client-key-data"].as_str().unwrap();
    assert!(
        !logged.contains(client_key),
        "the kubeconfig's client key in the log"
    );
    let nodes = bed.kubectl(&[
        "--kubeconfig",
        kc_path.to_str().unwrap(),
        "get",
        "nodes",
        "-l",
        "nvidia.com/gpu.present=true",
        "-o",
        "name",
    ]);
    assert!(nodes.contains("node/kgf-host-2"), "{nodes}");

    // GPU operator values from the detected containerd (the stand-in's reports 2.1.5), as the
    // gpu-operator component gets them.
    let gpu = plan.gpu_hosts().expect("host 2 has gpu: true");
    assert_eq!(gpu.containerd_major, Some(2));
    let values = plan
        .gpu_operator_values()
        .unwrap()
        .expect("host 2 has gpu: true");
    assert_eq!(
        values["toolkit"]["env"][0]["value"],
        "/run/k3s/containerd/containerd.sock"
    );
    assert_eq!(
        values["driver"]["enabled"], true,
        "no host has an NVIDIA driver here"
    );

    // A second run (a new kgf-up process: a new plan) changes nothing.
    let config_mtime = std::fs::metadata(hosts.file(2, "root/etc-rancher/rke2/config.yaml"))
        .unwrap()
        .modified()
        .unwrap();
    let ctx2 = self::ctx(work.path());
    let plan2 = Rke2Plan::new(spec.clone(), &ctx2.exec).unwrap();
    let started = std::time::Instant::now();
    let second = run(&plan2.steps(&[]), &ctx2).await.unwrap();
    eprintln!(
        "re-run, no changes (3 hosts): {:.1}s",
        started.elapsed().as_secs_f64()
    );
    for (id, obs) in &second {
        assert_eq!(obs.state, State::Converged, "{id} on re-run: {obs:?}");
    }
    for i in 1..=3 {
        assert_eq!(
            hosts.records(i, "install.log").len(),
            1,
            "host {i} not re-installed"
        );
        assert_eq!(
            hosts.service_changes(i).len(),
            1,
            "host {i} service not touched"
        );
        assert!(
            !hosts.file(i, "root/run-lock/kgf-up-rke2").exists(),
            "host {i} lock released"
        );
    }
    assert_eq!(
        std::fs::metadata(hosts.file(2, "root/etc-rancher/rke2/config.yaml"))
            .unwrap()
            .modified()
            .unwrap(),
        config_mtime
    );

    // `plan` with the hosts answering (the gate records instead of changing): a label added to
    // host 3 and a new registry password are shown as the files `up` would write, the join token
    // named and the password redacted, and nothing on any host changes.
    std::fs::write(&password_file, "registry-pass-new-77ab\n").unwrap();
    let mut relabelled = spec.clone();
    relabelled.hosts[2]
        .labels
        .insert("pool".into(), "cpu".into());
    let planning = Ctx::new(
        Exec::with_gate(kgf_up::gate::Gate::record()),
        work.path().to_path_buf(),
        Duration::from_secs(60),
        "kgf-system".into(),
    );
    let plan3 = Rke2Plan::new(relabelled, &planning.exec).unwrap();
    let mut recorded = Vec::new();
    for step in plan3.steps(&[]) {
        let seen = step
            .observe(&planning)
            .await
            .unwrap_or_else(|e| panic!("{}", render(&step, e)));
        if !seen.is_converged() {
            step.apply(&planning, &seen)
                .await
                .unwrap_or_else(|e| panic!("{}", render(&step, e)));
            recorded.extend(planning.gate().take());
        }
    }
    plan3.close().await;
    let shown: Vec<String> = recorded
        .iter()
        .filter(|c| !c.bookkeeping)
        .map(|c| format!("{}\n{}", c.summary, c.detail.join("\n")))
        .collect();
    let all = shown.join("\n---\n");
    let config3 = shown
        .iter()
        .find(|c| c.starts_with("write /etc/rancher/rke2/config.yaml on 198.18.0.10 "))
        .unwrap_or_else(|| panic!("no config.yaml for host 3 in the plan:\n{all}"));
    assert!(
        config3.contains("server: https://198.18.0.2:9345"),
        "{config3}"
    );
    assert!(
        config3.contains("<redacted: node-token of 198.18.0.2>"),
        "{config3}"
    );
    assert!(config3.contains("pool=cpu"), "{config3}");
    assert!(
        !shown.iter().any(
            |c| c.starts_with("write /etc/rancher/rke2/config.yaml on 198.18.0.2 ")
                || c.starts_with("write /etc/rancher/rke2/config.yaml on 198.18.0.6 ")
        ),
        "unchanged hosts' config.yaml in the plan:\n{all}"
    );
    for addr in ["198.18.0.2", "198.18.0.6", "198.18.0.10"] {
        let registries = shown
            .iter()
            .find(|c| {
                c.starts_with(&format!(
                    "write /etc/rancher/rke2/registries.yaml on {addr} "
                ))
            })
            .unwrap_or_else(|| panic!("no registries.yaml for {addr} in the plan:\n{all}"));
        assert!(registries.contains("password: ***"), "{registries}");
    }
    assert!(
        all.contains("systemctl restart rke2-agent"),
        "the agents' restart is planned:\n{all}"
    );
    assert!(
        !all.contains("registry-pass-new-77ab"),
        "password in the plan"
    );
    assert!(!all.contains(&token), "join token in the plan");
    assert!(
        hosts
            .read(3, "root/etc-rancher/rke2/registries.yaml")
            .contains("registry-pass-5f1c2e"),
        "plan wrote registries.yaml"
    );
    assert!(
        !hosts
            .read(3, "root/etc-rancher/rke2/config.yaml")
            .contains("pool=cpu"),
        "plan wrote config.yaml"
    );
    for i in 1..=3 {
        assert_eq!(
            hosts.service_changes(i).len(),
            1,
            "plan touched host {i}'s service"
        );
    }
    std::fs::write(&password_file, "registry-pass-5f1c2e\n").unwrap();

    // Host 3 runs another rke2 version: reported and left alone, upgraded only when allowed.
    std::fs::write(
        hosts.file(3, "root/usr-local-bin/rke2"),
        "#!/bin/sh\necho 'rke2 version v1.35.7+rke2r1 (stand-in)'\n",
    )
    .unwrap();
    let err = run(
        &Rke2Plan::new(spec.clone(), &ctx2.exec).unwrap().steps(&[]),
        &ctx2,
    )
    .await
    .unwrap_err();
    assert!(
        err.contains("198.18.0.10: runs rke2 v1.35.7+rke2r1, the profile wants v1.36.3+rke2r1; kgf-up does not upgrade"),
        "{err}"
    );
    assert_eq!(
        hosts.records(3, "install.log").len(),
        1,
        "not upgraded silently"
    );
    let mut upgrade = spec.clone();
    upgrade.upgrade = true;
    let upgraded = run(
        &Rke2Plan::new(upgrade, &ctx2.exec).unwrap().steps(&[]),
        &ctx2,
    )
    .await
    .unwrap();
    let agent3 = upgraded
        .iter()
        .find(|(id, _)| id == "rke2/agent/198.18.0.10")
        .unwrap();
    assert_eq!(agent3.1.state, State::Missing, "{:?}", agent3.1);
    assert_eq!(
        hosts.records(3, "install.log").len(),
        2,
        "upgrade re-ran the installer"
    );
    assert_eq!(
        hosts.records(2, "install.log").len(),
        1,
        "other hosts untouched"
    );

    // down: agents first, then the server.
    let outcomes = plan2.down(&ctx2).await;
    assert!(rke2::down_error(&outcomes).is_none(), "{outcomes:?}");
    let uninstalled = |i| {
        hosts
            .records(i, "install.log")
            .into_iter()
            .find(|(_, l)| l == "uninstall")
            .unwrap_or_else(|| panic!("host {i} not uninstalled"))
            .0
    };
    assert!(uninstalled(2) < uninstalled(1) && uninstalled(3) < uninstalled(1));
    assert!(!hosts.file(1, "root/etc-rancher/rke2/config.yaml").exists());
    assert!(!kc_path.exists());
    plan2.close().await;
    plan.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_host_that_is_down_is_named_while_the_others_are_reported_and_nothing_changes() {
    let _one = HOSTS.lock().await;
    let hosts = Hosts::up(3);
    hosts.testhosts(&["stop", "3"]);
    let work = tempfile::tempdir().unwrap();
    let ctx = ctx(work.path());
    let plan = Rke2Plan::new(hosts.spec(3), &ctx.exec).unwrap();
    let err = run(&plan.steps(&[]), &ctx).await.unwrap_err();
    assert!(
        err.starts_with("rke2/facts: 1 of 3 hosts cannot be installed on"),
        "{err}"
    );
    assert!(
        err.contains("198.18.0.10: cannot reach its SSH server"),
        "{err}"
    );
    assert!(err.contains("ready: 198.18.0.2 (kgf-host-1"), "{err}");
    assert!(err.contains("198.18.0.6 (kgf-host-2"), "{err}");
    assert!(err.contains("check that 198.18.0.10 is up"), "{err}");
    for i in 1..=2 {
        assert!(
            hosts.read(i, "kgf-standin/install.log").is_empty(),
            "host {i} was changed"
        );
    }
    plan.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_host_key_and_another_runs_lock_stop_kgf_up() {
    let _one = HOSTS.lock().await;
    let hosts = Hosts::up(2);
    let work = tempfile::tempdir().unwrap();
    let ctx = ctx(work.path());

    // known_hosts says 198.18.0.2 has host 2's key: a mismatch, refused under strict checking.
    let known = std::fs::read_to_string(hosts.dir.join("known_hosts")).unwrap();
    let key2 = known.lines().nth(1).unwrap().split_once(' ').unwrap().1;
    let forged = hosts.dir.join("forged_known_hosts");
    std::fs::write(&forged, format!("198.18.0.2 {key2}\n198.18.0.6 {key2}\n")).unwrap();
    let mut spec = hosts.spec(2);
    spec.ssh.known_hosts = Some(forged);
    let plan = Rke2Plan::new(spec, &ctx.exec).unwrap();
    let err = run(&plan.steps(&[]), &ctx).await.unwrap_err();
    assert!(
        err.contains("198.18.0.2: its SSH host key is not trusted: the host key has CHANGED"),
        "{err}"
    );
    assert!(err.contains("ready: 198.18.0.6 (kgf-host-2"), "{err}");
    plan.close().await;

    // Another run holds host 2: facts name it and its owner, and no host is changed.
    let lock = hosts.file(2, "root/run-lock/kgf-up-rke2");
    std::fs::create_dir_all(&lock).unwrap();
    std::fs::write(lock.join("owner"), "kgf-up on elsewhere pid 4242 since 1\n").unwrap();
    let plan = Rke2Plan::new(hosts.spec(2), &ctx.exec).unwrap();
    let err = run(&plan.steps(&[]), &ctx).await.unwrap_err();
    assert!(
        err.contains(
            "198.18.0.6: being changed by another kgf-up run (kgf-up on elsewhere pid 4242 since 1)"
        ),
        "{err}"
    );
    assert!(
        err.contains("ssh 198.18.0.6 sudo rm -r /run/lock/kgf-up-rke2"),
        "{err}"
    );
    for i in 1..=2 {
        assert!(
            hosts.read(i, "kgf-standin/install.log").is_empty(),
            "host {i} was changed"
        );
    }

    // The other run took the lock after facts were read: the host step, which changes a host only
    // under its lock, installs the server and leaves the locked agent alone.
    let err = run(&plan.steps(&[])[1..], &ctx).await.unwrap_err();
    assert!(
        err.starts_with("rke2/agent/198.18.0.6: installing rke2 agent on 198.18.0.6: 198.18.0.6: being changed by another kgf-up run (kgf-up on elsewhere pid 4242 since 1)"),
        "{err}"
    );
    assert_eq!(
        hosts.records(1, "install.log").len(),
        1,
        "the server was installed"
    );
    assert!(
        !hosts.file(1, "root/run-lock/kgf-up-rke2").exists(),
        "the server's lock was released"
    );
    assert!(
        hosts.read(2, "kgf-standin/install.log").is_empty(),
        "the locked host was not touched"
    );
    assert!(
        lock.join("owner").exists(),
        "another run's lock is never removed"
    );
    plan.close().await;
}
