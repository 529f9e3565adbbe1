//! The pipeline deployment: upload, runs and errors of the Kubeflow Pipelines client and the
//! service-proxy route against the bed's real API server. (The step image's build and push run
//! with the real docker: tests/images.rs.)
//!
//! The Kubeflow Pipelines API server here is a STAND-IN (tests/fixtures/kfp/kfp_standin.py,
//! started per test on a loopback port): the real one cannot be built in this project's
//! environment (scripts/kfp-server says why). Its shapes come from the published kfp-server-api
//! models.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use kgf_up::exec::Exec;
use kgf_up::fix::Fix;
use kgf_up::pipeline::deploy::{self, Change, Found, RunRequest};
use kgf_up::pipeline::kfp::{self, KfpClient, KfpError, Polling, RunState};
use kgf_up::pipeline::spec::{self, RenderedSpec};
use serde_json::{Map, Value, json};

/// One stand-in server on a free loopback port, stopped on drop.
struct StandIn {
    child: Child,
    url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl StandIn {
    fn start() -> StandIn {
        let out = Command::new(support::repo().join("scripts/kfp-server"))
            .arg("python")
            .output()
            .expect("scripts/kfp-server runs");
        assert!(
            out.status.success(),
            "scripts/kfp-server python: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let python = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let log = dir.path().join("requests.jsonl");
        let child = Command::new(python)
            .arg(support::fixture("kfp/kfp_standin.py"))
            .args(["--port", "0", "--port-file"])
            .arg(&port_file)
            .arg("--log")
            .arg(&log)
            .spawn()
            .expect("the stand-in starts");
        let mut standin = StandIn {
            child,
            url: String::new(),
            log,
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                standin.url = format!("http://127.0.0.1:{port}");
                return standin;
            }
            assert!(
                standin.child.try_wait().unwrap().is_none(),
                "the stand-in exited"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the stand-in did not start within 10s");
    }

    fn client(&self) -> KfpClient {
        KfpClient::direct(&self.url).unwrap()
    }

    /// The requests received so far, as (method, path).
    fn requests(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                (
                    v["method"].as_str().unwrap().to_string(),
                    v["path"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    }

    fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| m == method && p == path)
            .count()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ir() -> String {
    std::fs::read_to_string(support::fixture("kfp/tiny-pipeline.yaml")).unwrap()
}

fn rendered(image: &str) -> RenderedSpec {
    spec::with_image(&ir(), image).unwrap()
}

fn fast() -> Polling {
    Polling {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(100),
        timeout: Duration::from_secs(30),
    }
}

const UPLOAD: &str = "/apis/v2beta1/pipelines/upload";
const UPLOAD_VERSION: &str = "/apis/v2beta1/pipelines/upload_version";

#[tokio::test]
async fn upload_is_idempotent_and_only_a_changed_spec_adds_a_version() {
    let server = StandIn::start();
    let kfp = server.client();
    let health = kfp.healthz().await.unwrap();
    assert!(!health.multi_user);

    let v1 = rendered("localhost:5001/kgf-step:0.1.0-aaaaaaaaaaaa");
    assert_eq!(
        deploy::find(&kfp, "kgf-tiny", None, &v1).await.unwrap(),
        Found::NoPipeline
    );
    let first = deploy::upload(&kfp, "kgf-tiny", "tiny test pipeline", None, &v1)
        .await
        .unwrap();
    assert_eq!(first.change, Change::CreatedPipeline);
    assert_eq!(first.version_name, "kgf-tiny");

    let again = deploy::upload(&kfp, "kgf-tiny", "tiny test pipeline", None, &v1)
        .await
        .unwrap();
    assert_eq!(again.change, Change::Unchanged);
    assert_eq!(again.version_id, first.version_id);
    assert_eq!(server.count("POST", UPLOAD), 1, "{:?}", server.requests());
    assert_eq!(server.count("POST", UPLOAD_VERSION), 0);

    let v2 = rendered("localhost:5001/kgf-step:0.1.0-bbbbbbbbbbbb");
    let second = deploy::upload(&kfp, "kgf-tiny", "tiny test pipeline", None, &v2)
        .await
        .unwrap();
    assert_eq!(second.change, Change::AddedVersion);
    assert_eq!(second.pipeline_id, first.pipeline_id);
    assert_eq!(
        second.version_name,
        format!("kgf-tiny-{}", &v2.sha256[..12])
    );
    assert_ne!(second.version_id, first.version_id);
    assert_eq!(server.count("POST", UPLOAD_VERSION), 1);

    // Going back to the first spec finds its version instead of uploading it again.
    let back = deploy::upload(&kfp, "kgf-tiny", "tiny test pipeline", None, &v1)
        .await
        .unwrap();
    assert_eq!(
        (back.change, back.version_id.as_str()),
        (Change::Unchanged, first.version_id.as_str())
    );
    let versions = kfp.versions(&first.pipeline_id).await.unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        server.count("POST", UPLOAD) + server.count("POST", UPLOAD_VERSION),
        2
    );
}

#[tokio::test]
async fn versions_are_read_across_pages() {
    let server = StandIn::start();
    let kfp = server.client();
    let tags: Vec<String> = (0..103).map(|i| format!("r/kgf-step:{i}")).collect();
    let mut last = None;
    for tag in &tags {
        last = Some(
            deploy::upload(&kfp, "kgf-tiny", "d", None, &rendered(tag))
                .await
                .unwrap(),
        );
    }
    let last = last.unwrap();
    assert_eq!(kfp.versions(&last.pipeline_id).await.unwrap().len(), 103);
    // The first spec sits on the second page (newest first, 100 a page): still found.
    let first = deploy::upload(&kfp, "kgf-tiny", "d", None, &rendered(&tags[0]))
        .await
        .unwrap();
    assert_eq!(first.change, Change::Unchanged);
    assert_eq!(first.version_name, "kgf-tiny");
}

#[tokio::test]
async fn a_run_is_created_in_its_experiment_and_followed_to_success() {
    let server = StandIn::start();
    let kfp = server.client();
    let spec = rendered("localhost:5001/kgf-step:0.1.0-cccccccccccc");
    let uploaded = deploy::upload(&kfp, "kgf-tiny", "d", None, &spec)
        .await
        .unwrap();

    let mut parameters = Map::new();
    parameters.insert("epochs".into(), json!(2));
    parameters.insert("seed".into(), json!(11));
    let mut seen = Vec::new();
    let run = deploy::run(
        &kfp,
        &uploaded,
        RunRequest {
            experiment: "gene-fusion",
            display_name: "kgf-tiny-1",
            namespace: None,
            parameters,
            pipeline_root: Some("minio://mlpipeline/v2/artifacts".into()),
            polling: fast(),
        },
        |r| seen.push(r.state),
    )
    .await
    .unwrap();
    assert_eq!(run.state, RunState::Succeeded);
    assert_eq!(seen.first(), Some(&RunState::Pending));
    assert!(seen.contains(&RunState::Running), "{seen:?}");
    let names: Vec<&str> = run
        .run_details
        .task_details
        .iter()
        .map(|t| t.display_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["dataset", "train-gc", "test-gc", "train-fc", "test-fc"]
    );
    assert!(
        run.run_details
            .task_details
            .iter()
            .all(|t| t.state == RunState::Succeeded && !t.pod_name.is_empty())
    );
    let table = kfp::render_tasks(&run);
    assert!(table.contains("SUCCEEDED"), "{table}");

    // A second run reuses the experiment.
    deploy::run(
        &kfp,
        &uploaded,
        RunRequest {
            experiment: "gene-fusion",
            display_name: "kgf-tiny-2",
            namespace: None,
            parameters: Map::new(),
            pipeline_root: None,
            polling: fast(),
        },
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(server.count("POST", "/apis/v2beta1/experiments"), 1);
    assert_eq!(server.count("POST", "/apis/v2beta1/runs"), 2);
}

#[tokio::test]
async fn a_failed_step_fails_the_run_with_the_step_and_the_fix() {
    let server = StandIn::start();
    let kfp = server.client();
    // Uploaded without substituting the image: the steps cannot pull `kgf-step:dev`.
    let spec = RenderedSpec::new(ir());
    let uploaded = deploy::upload(&kfp, "kgf-tiny", "d", None, &spec)
        .await
        .unwrap();
    let err = deploy::run(
        &kfp,
        &uploaded,
        RunRequest {
            experiment: "gene-fusion",
            display_name: "broken",
            namespace: None,
            parameters: Map::new(),
            pipeline_root: None,
            polling: fast(),
        },
        |_| {},
    )
    .await
    .unwrap_err();
    let KfpError::RunFailed { state, message, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(*state, RunState::Failed);
    assert!(
        message.contains("step dataset failed: ErrImagePull"),
        "{message}"
    );
    assert!(
        err.fix()
            .unwrap_or_default()
            .contains("kubectl -n kubeflow get pods"),
        "{}",
        err.fix().unwrap_or_default()
    );
}

#[tokio::test]
async fn the_servers_refusals_carry_its_message() {
    let server = StandIn::start();
    let kfp = server.client();
    let uploaded = deploy::upload(&kfp, "kgf-tiny", "d", None, &rendered("r/kgf-step:1"))
        .await
        .unwrap();
    let mut parameters = Map::new();
    parameters.insert("learning_rate".into(), json!(0.1));
    let err = deploy::run(
        &kfp,
        &uploaded,
        RunRequest {
            experiment: "gene-fusion",
            display_name: "bad-params",
            namespace: None,
            parameters,
            pipeline_root: None,
            polling: fast(),
        },
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, KfpError::Api { status: 400, message, .. } if message == "Unrecognized input parameter: learning_rate"),
        "{err:?}"
    );

    // The upload handler's own error format (a duplicate pipeline name) is read too.
    let err = kfp
        .upload(
            "kgf-tiny",
            "d",
            None,
            rendered("r/kgf-step:1").yaml.as_bytes(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, KfpError::Api { status: 409, message, .. } if message.contains("Failed to create a pipeline")),
        "{err:?}"
    );
    assert!(kfp.pipeline_by_name("nope", None).await.unwrap().is_none());
}

#[tokio::test]
async fn an_unreachable_server_is_named_with_the_fix() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let err = KfpClient::direct(&url)
        .unwrap()
        .healthz()
        .await
        .unwrap_err();
    assert!(matches!(err, KfpError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");
    assert!(
        err.fix()
            .unwrap_or_default()
            .contains("port-forward svc/ml-pipeline"),
        "{}",
        err.fix().unwrap_or_default()
    );

    // Following a run through an outage: a few retries, then the same error.
    let started = std::time::Instant::now();
    let err = KfpClient::direct(&url)
        .unwrap()
        .follow("r1", fast(), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, KfpError::Unreachable { .. }), "{err:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(20 + 40 + 80 + 100),
        "gave up without retrying"
    );

    let err = KfpClient::direct("ftp://example").err().unwrap();
    assert!(matches!(err, KfpError::BadUrl { .. }), "{err:?}");
}

/// The bed's kubeconfig as a kube config.
async fn bed_config() -> kube::Config {
    let bed = support::bed();
    let kubeconfig = kube::config::Kubeconfig::read_from(&bed.kubeconfig).unwrap();
    kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_service_proxy_route_reaches_the_bed_api_server() {
    let bed = support::bed();
    let config = bed_config().await;
    let cluster_url = config.cluster_url.to_string();
    // Own namespace, so the test neither needs nor disturbs a real `kubeflow` namespace; named
    // per run, since a deleted namespace lingers while the bed's namespace controller empties it.
    let namespace: &str = &format!("kgf-kfp-proxy-{}", std::process::id());
    let proxy = KfpClient::via_service_proxy(config, namespace, "ml-pipeline", 8888).unwrap();
    assert_eq!(
        proxy.url(),
        format!(
            "{}/api/v1/namespaces/{namespace}/services/ml-pipeline:8888/proxy",
            cluster_url.trim_end_matches('/')
        )
    );

    let started = std::time::Instant::now();
    let err = proxy.healthz().await.unwrap_err();
    assert!(matches!(err, KfpError::NotInstalled { .. }), "{err:?}");
    assert!(err.to_string().contains("ml-pipeline"), "{err}");
    assert!(
        err.fix().unwrap_or_default().contains("kgf-up up"),
        "{}",
        err.fix().unwrap_or_default()
    );

    // A Service without endpoints: the API server routes the request to it and answers for it.
    bed.kubectl(&["create", "namespace", namespace]);
    bed.apply_in(
        namespace,
        "apiVersion: v1\nkind: Service\nmetadata: {name: ml-pipeline}\nspec:\n  ports:\n  - {name: http, port: 8888}\n  selector: {app: ml-pipeline}\n",
    );
    // The proxy may resolve the Service from the API server's watch cache: allow it a moment.
    let mut err = proxy.healthz().await.unwrap_err();
    for _ in 0..50 {
        if !matches!(err, KfpError::NotInstalled { .. }) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        err = proxy.healthz().await.unwrap_err();
    }
    bed.kubectl(&["delete", "namespace", namespace, "--wait=false"]);
    let KfpError::NotReady { message, url } = &err else {
        panic!("{err:?}")
    };
    assert!(
        message.contains("no endpoints available for service"),
        "{message}"
    );
    // Reported at once, not after kube's built-in retries of 503 (minutes).
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(url.ends_with("/proxy/apis/v2beta1/healthz"), "{url}");
    assert!(
        err.fix()
            .unwrap_or_default()
            .contains("kubectl -n kubeflow get pods"),
        "{}",
        err.fix().unwrap_or_default()
    );

    // A user without `services/proxy` rights (impersonated: the bed's kubeconfig is an admin's).
    let mut config = bed_config().await;
    config.auth_info.impersonate = Some("system:serviceaccount:default:kgf-nobody".into());
    let denied = KfpClient::via_service_proxy(config, namespace, "ml-pipeline", 8888).unwrap();
    let err = denied.healthz().await.unwrap_err();
    assert!(matches!(err, KfpError::Forbidden { .. }), "{err:?}");
    assert!(err.to_string().contains("forbidden"), "{err}");
    assert!(
        err.fix().unwrap_or_default().contains("services/proxy"),
        "{}",
        err.fix().unwrap_or_default()
    );

    // The audit log shows the request on the service proxy subresource.
    let audit = std::fs::read_to_string(&bed.audit_log).unwrap();
    assert!(
        audit.contains(&format!(
            "/api/v1/namespaces/{namespace}/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz"
        )),
        "no proxy request in the audit log"
    );
}

fn new_ctx(dir: &Path) -> kgf_up::step::Ctx {
    kgf_up::step::Ctx::new(
        Exec::new(),
        dir.to_path_buf(),
        Duration::from_secs(20),
        "kgf-system".into(),
    )
}

#[tokio::test]
async fn the_upload_step_observes_applies_and_converges() {
    use kgf_up::pipeline::step::{Endpoint, UploadStep};
    use kgf_up::step::{State, Step};
    let server = StandIn::start();
    let dir = tempfile::tempdir().unwrap();
    let ctx = new_ctx(dir.path());
    let step = UploadStep::new(
        "kgf-tiny",
        "d",
        rendered("r/kgf-step:1"),
        Endpoint::Direct(server.url.clone()),
    );
    assert_eq!(step.id().as_str(), "pipeline/upload");
    let seen = step.observe(&ctx).await.unwrap();
    assert_eq!(seen.state, State::Missing, "{}", seen.reason);
    step.apply(&ctx, &seen).await.unwrap();
    step.wait(&ctx).await.unwrap();
    let again = step.observe(&ctx).await.unwrap();
    assert_eq!(again.state, State::Converged, "{}", again.reason);
    assert!(
        again.reason.contains("version kgf-tiny"),
        "{}",
        again.reason
    );

    let changed = UploadStep::new(
        "kgf-tiny",
        "d",
        rendered("r/kgf-step:2"),
        Endpoint::Direct(server.url.clone()),
    );
    let drift = changed.observe(&ctx).await.unwrap();
    assert_eq!(drift.state, State::Drifted, "{}", drift.reason);
    // A dry run changes nothing.
    let dry = kgf_up::step::Ctx::new(
        Exec::with_gate(kgf_up::gate::Gate::record()),
        dir.path().to_path_buf(),
        Duration::from_secs(20),
        "kgf-system".into(),
    );
    changed.apply(&dry, &drift).await.unwrap();
    assert_eq!(changed.observe(&ctx).await.unwrap().state, State::Drifted);
    changed.apply(&ctx, &drift).await.unwrap();
    assert_eq!(changed.observe(&ctx).await.unwrap().state, State::Converged);
    assert_eq!(server.count("POST", UPLOAD_VERSION), 1);

    // Through the cluster, before any cluster is known: the step says so and how to fix it.
    let proxied = UploadStep::new(
        "kgf-tiny",
        "d",
        rendered("r/kgf-step:1"),
        Endpoint::default(),
    );
    let err = proxied.observe(&ctx).await.unwrap_err();
    assert_eq!(err.message, "no cluster is known yet");
}
