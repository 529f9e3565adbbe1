//! A client for the Kubeflow Pipelines v2beta1 REST API: health, pipelines and their versions,
//! experiments, runs.
//!
//! It reaches the API server either through the Kubernetes API server's service proxy
//! (`/api/v1/namespaces/kubeflow/services/ml-pipeline:8888/proxy/...`, so no port-forward is
//! needed and the kubeconfig's credentials apply) or at a direct URL (a port-forward, an ingress,
//! a test server). Both go through a `kube::Client`, which speaks plain HTTP as well as TLS.
//! Request and response shapes follow the v2beta1 protos of Kubeflow Pipelines 2.17: field names
//! in snake_case, unpopulated fields omitted, unknown request fields rejected by the server.
//! This module knows the API; deciding what to upload or run is `deploy`'s job.

use std::fmt;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use kube::client::Body;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::fix::Fix;

/// Where the Kubeflow Pipelines API server of a standalone install lives.
pub const NAMESPACE: &str = "kubeflow";
pub const SERVICE: &str = "ml-pipeline";
pub const PORT: u16 = 8888;

#[derive(Debug, thiserror::Error)]
pub enum KfpError {
    #[error("cannot reach the Kubeflow Pipelines API at {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("`{url}` is not a usable Kubeflow Pipelines URL: {cause}")]
    BadUrl { url: String, cause: String },
    #[error(
        "the Kubernetes API server has no Service {namespace}/{service} to proxy to ({url}): {message}"
    )]
    NotInstalled {
        url: String,
        namespace: String,
        service: String,
        message: String,
    },
    #[error("Kubeflow Pipelines is installed but its API server is not serving ({url}): {message}")]
    NotReady { url: String, message: String },
    #[error("the Kubernetes API server refused the proxy request to {url}: {message}")]
    Forbidden { url: String, message: String },
    #[error("Kubeflow Pipelines at {url} refused to {action}: HTTP {status}: {message}")]
    Api {
        url: String,
        action: String,
        status: u16,
        message: String,
    },
    #[error("unexpected answer from {url} to {action}: {cause}")]
    BadResponse {
        url: String,
        action: String,
        cause: String,
    },
    #[error("run {run_id} ended {state}: {message}")]
    RunFailed {
        run_id: String,
        state: RunState,
        message: String,
    },
    #[error("run {run_id} did not finish within {}s (last state {state})", after.as_secs())]
    RunTimedOut {
        run_id: String,
        state: RunState,
        after: Duration,
    },
}

/// How many reads of a run in a row may fail transiently before [`KfpClient::follow`] gives up.
const FOLLOW_ATTEMPTS: u32 = 5;

impl KfpError {
    /// Errors that heal by themselves: the server is restarting, not there yet, or overloaded.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            KfpError::Unreachable { .. }
                | KfpError::NotReady { .. }
                | KfpError::Api { status: 500.., .. }
        )
    }
}

impl Fix for KfpError {
    fn fix(&self) -> Option<String> {
        Some(match self {
            KfpError::Unreachable { .. } => "check that the address is right and the server is up: \
                 through the cluster, `kubectl -n kubeflow get svc ml-pipeline` and your kubeconfig; \
                 with a port-forward, `kubectl -n kubeflow port-forward svc/ml-pipeline 8888:8888`"
                .into(),
            KfpError::BadUrl { .. } => {
                "give the URL as http://HOST:PORT or https://HOST:PORT/PATH".into()
            }
            KfpError::NotInstalled { namespace, .. } => format!(
                "install Kubeflow Pipelines with `kgf-up up` (component kubeflow-pipelines), or check \
                 that the kubeconfig points at the right cluster and Kubeflow Pipelines is in namespace {namespace}"
            ),
            KfpError::NotReady { .. } => "wait for the pods (`kubectl -n kubeflow get pods`: expect a few \
                 minutes of restarts while MySQL and the metadata service start), then retry"
                .into(),
            KfpError::Forbidden { .. } => "the kubeconfig's user needs `get` and `create` on \
                 `services/proxy` in namespace kubeflow; or forward a port \
                 (`kubectl -n kubeflow port-forward svc/ml-pipeline 8888:8888`) and \
                 `--set pipeline.kfp_url=http://127.0.0.1:8888`"
                .into(),
            KfpError::Api { status: 409, .. } => {
                "a resource of that name exists already: retry, kgf-up will find it".into()
            }
            KfpError::Api { status: 400, .. } => {
                "the request was invalid: check the pipeline spec and the run parameters".into()
            }
            KfpError::Api { .. } | KfpError::BadResponse { .. } => {
                "check the ml-pipeline pod's logs: `kubectl -n kubeflow logs deploy/ml-pipeline`".into()
            }
            KfpError::RunFailed { run_id, .. } => format!(
                "see the failed steps above; `kubectl -n kubeflow get pods -l pipeline/runid={run_id}` \
                 and their logs, or the run in the Kubeflow Pipelines UI"
            ),
            KfpError::RunTimedOut { .. } => {
                "the run goes on in the cluster (kgf-up follows a run for at most 3 hours): follow it \
                 in the Kubeflow Pipelines UI (`kubectl -n kubeflow port-forward svc/ml-pipeline-ui \
                 8080:80`, then http://127.0.0.1:8080)"
                    .into()
            }
        })
    }
}

/// A run's state (`RuntimeState` in the v2beta1 API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RunState {
    #[default]
    RuntimeStateUnspecified,
    Pending,
    Running,
    Succeeded,
    Skipped,
    Failed,
    Canceling,
    Canceled,
    Paused,
}

impl RunState {
    /// A state the run will not leave by itself.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Skipped | RunState::Failed | RunState::Canceled
        )
    }

    pub fn is_success(self) -> bool {
        matches!(self, RunState::Succeeded | RunState::Skipped)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RunState::RuntimeStateUnspecified => "UNSPECIFIED",
            RunState::Pending => "PENDING",
            RunState::Running => "RUNNING",
            RunState::Succeeded => "SUCCEEDED",
            RunState::Skipped => "SKIPPED",
            RunState::Failed => "FAILED",
            RunState::Canceling => "CANCELING",
            RunState::Canceled => "CANCELED",
            RunState::Paused => "PAUSED",
        })
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Healthz {
    pub commit_sha: String,
    pub tag_name: String,
    pub multi_user: bool,
    pub pipeline_store: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pipeline {
    pub pipeline_id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct PipelineVersion {
    pub pipeline_id: String,
    pub pipeline_version_id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub created_at: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct VersionPage {
    pipeline_versions: Vec<PipelineVersion>,
    next_page_token: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Experiment {
    pub experiment_id: String,
    pub display_name: String,
    pub namespace: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct ExperimentPage {
    experiments: Vec<Experiment>,
}

/// `google.rpc.Status` as the API embeds it in runs and tasks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RpcStatus {
    pub code: i32,
    pub message: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Run {
    pub run_id: String,
    pub display_name: String,
    pub experiment_id: String,
    pub state: RunState,
    pub error: Option<RpcStatus>,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
    pub run_details: RunDetails,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunDetails {
    pub task_details: Vec<TaskDetail>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct TaskDetail {
    pub task_id: String,
    pub display_name: String,
    pub state: RunState,
    pub pod_name: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub error: Option<RpcStatus>,
}

/// A run to create: which pipeline version, in which experiment, with which parameters.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub display_name: String,
    pub experiment_id: String,
    pub pipeline_id: String,
    pub pipeline_version_id: String,
    pub parameters: Map<String, Value>,
    /// Where the run's artifacts go (`s3://bucket/prefix`, `minio://...`); the server's default when unset.
    pub pipeline_root: Option<String>,
}

impl NewRun {
    /// The `Run` message, with only the fields the API accepts on create.
    fn body(&self) -> Value {
        let mut runtime_config = Map::new();
        if !self.parameters.is_empty() {
            runtime_config.insert("parameters".into(), Value::Object(self.parameters.clone()));
        }
        if let Some(root) = &self.pipeline_root {
            runtime_config.insert("pipeline_root".into(), Value::String(root.clone()));
        }
        json!({
            "display_name": self.display_name,
            "experiment_id": self.experiment_id,
            "pipeline_version_reference": {
                "pipeline_id": self.pipeline_id,
                "pipeline_version_id": self.pipeline_version_id,
            },
            "runtime_config": runtime_config,
        })
    }
}

/// How [`KfpClient::follow`] polls: from `initial` doubling up to `max`, for at most `timeout`.
#[derive(Clone, Copy, Debug)]
pub struct Polling {
    pub initial: Duration,
    pub max: Duration,
    pub timeout: Duration,
}

impl Default for Polling {
    fn default() -> Self {
        Polling {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(20),
            timeout: Duration::from_secs(3 * 3600),
        }
    }
}

/// The route to the API server.
#[derive(Clone, Debug)]
enum Route {
    /// Through the Kubernetes API server's service proxy.
    ServiceProxy {
        namespace: String,
        service: String,
    },
    Direct,
}

/// A Kubeflow Pipelines v2beta1 client.
#[derive(Clone)]
pub struct KfpClient {
    http: kube::Client,
    /// Path prepended to every `/apis/v2beta1/...` path.
    prefix: String,
    /// The base as a user would type it, for messages.
    shown: String,
    route: Route,
}

impl KfpClient {
    /// Through the Kubernetes API server's service proxy, with the kubeconfig's `config`.
    pub fn via_service_proxy(
        config: kube::Config,
        namespace: &str,
        service: &str,
        port: u16,
    ) -> Result<Self, KfpError> {
        let prefix = service_proxy_prefix(namespace, service, port);
        let shown = format!(
            "{}{prefix}",
            config.cluster_url.to_string().trim_end_matches('/')
        );
        Ok(KfpClient {
            http: client(config, &shown)?,
            shown,
            prefix,
            route: Route::ServiceProxy {
                namespace: namespace.into(),
                service: service.into(),
            },
        })
    }

    /// At a direct URL, e.g. `http://127.0.0.1:8888` from a port-forward.
    pub fn direct(url: &str) -> Result<Self, KfpError> {
        let bad = |cause: String| KfpError::BadUrl {
            url: url.into(),
            cause,
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(e.to_string()))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(bad(
                "it needs an http:// or https:// scheme and a host".into()
            ));
        }
        let mut config = kube::Config::new(uri);
        config.connect_timeout = Some(Duration::from_secs(10));
        config.read_timeout = Some(Duration::from_secs(120));
        Ok(KfpClient {
            http: client(config, url)?,
            prefix: String::new(),
            shown: url.trim_end_matches('/').into(),
            route: Route::Direct,
        })
    }

    /// The API's base URL as shown in messages.
    pub fn url(&self) -> &str {
        &self.shown
    }

    pub async fn healthz(&self) -> Result<Healthz, KfpError> {
        self.get("check health", "/apis/v2beta1/healthz").await
    }

    /// The pipeline called `name`, if there is one. Without multi-user mode the server ignores the
    /// namespace; with it, the namespace is required.
    pub async fn pipeline_by_name(
        &self,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<Option<Pipeline>, KfpError> {
        let mut path = format!("/apis/v2beta1/pipelines/names/{}", encode(name));
        if let Some(ns) = namespace {
            path.push_str(&format!("?namespace={}", encode(ns)));
        }
        match self.get("look up the pipeline", &path).await {
            Ok(p) => Ok(Some(p)),
            Err(KfpError::Api { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates a pipeline and its first version (named like the pipeline) from a spec file.
    pub async fn upload(
        &self,
        name: &str,
        description: &str,
        namespace: Option<&str>,
        spec: &[u8],
    ) -> Result<Pipeline, KfpError> {
        let mut query = vec![
            ("name", name),
            ("display_name", name),
            ("description", description),
        ];
        if let Some(ns) = namespace {
            query.push(("namespace", ns));
        }
        let path = format!("/apis/v2beta1/pipelines/upload?{}", query_string(&query));
        self.multipart("upload the pipeline", &path, &format!("{name}.yaml"), spec)
            .await
    }

    /// Adds a version to a pipeline. Version names are unique within a pipeline (409 otherwise).
    pub async fn upload_version(
        &self,
        pipeline_id: &str,
        name: &str,
        description: &str,
        spec: &[u8],
    ) -> Result<PipelineVersion, KfpError> {
        let query = [
            ("pipelineid", pipeline_id),
            ("name", name),
            ("display_name", name),
            ("description", description),
        ];
        let path = format!(
            "/apis/v2beta1/pipelines/upload_version?{}",
            query_string(&query)
        );
        self.multipart(
            "upload a pipeline version",
            &path,
            &format!("{name}.yaml"),
            spec,
        )
        .await
    }

    /// Every version of a pipeline, newest first.
    pub async fn versions(&self, pipeline_id: &str) -> Result<Vec<PipelineVersion>, KfpError> {
        let mut all = Vec::new();
        let mut token = String::new();
        loop {
            let mut query = vec![("page_size", "100"), ("sort_by", "created_at desc")];
            if !token.is_empty() {
                query.push(("page_token", token.as_str()));
            }
            let path = format!(
                "/apis/v2beta1/pipelines/{}/versions?{}",
                encode(pipeline_id),
                query_string(&query)
            );
            let page: VersionPage = self.get("list pipeline versions", &path).await?;
            all.extend(page.pipeline_versions);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// The experiment with this display name, created when missing. Names are unique per
    /// namespace, so a concurrent creator makes ours fail with 409: then it is looked up again.
    pub async fn experiment(
        &self,
        name: &str,
        description: &str,
        namespace: Option<&str>,
    ) -> Result<Experiment, KfpError> {
        if let Some(e) = self.find_experiment(name, namespace).await? {
            return Ok(e);
        }
        let mut body = json!({"display_name": name, "description": description});
        if let Some(ns) = namespace {
            body["namespace"] = Value::String(ns.into());
        }
        match self
            .send_json(
                "create the experiment",
                Method::POST,
                "/apis/v2beta1/experiments",
                &body,
            )
            .await
        {
            Err(KfpError::Api { status: 409, .. }) => {
                self.find_experiment(name, namespace).await?.ok_or_else(|| {
                    self.bad_response(
                        "create the experiment",
                        "409 on create, yet no experiment of that name",
                    )
                })
            }
            other => other,
        }
    }

    async fn find_experiment(
        &self,
        name: &str,
        namespace: Option<&str>,
    ) -> Result<Option<Experiment>, KfpError> {
        let filter = json!({"predicates": [
            {"key": "display_name", "operation": "EQUALS", "string_value": name}
        ]})
        .to_string();
        let mut query = vec![("filter", filter.as_str()), ("page_size", "1")];
        if let Some(ns) = namespace {
            query.push(("namespace", ns));
        }
        let path = format!("/apis/v2beta1/experiments?{}", query_string(&query));
        let page: ExperimentPage = self.get("look up the experiment", &path).await?;
        Ok(page
            .experiments
            .into_iter()
            .find(|e| e.display_name == name))
    }

    pub async fn create_run(&self, run: &NewRun) -> Result<Run, KfpError> {
        self.send_json(
            "create the run",
            Method::POST,
            "/apis/v2beta1/runs",
            &run.body(),
        )
        .await
    }

    pub async fn run(&self, run_id: &str) -> Result<Run, KfpError> {
        self.get(
            "read the run",
            &format!("/apis/v2beta1/runs/{}", encode(run_id)),
        )
        .await
    }

    /// Polls the run until it ends, calling `seen` whenever its state or a task's state changed.
    /// Ok only when it succeeded (or was skipped); a failed or canceled run is [`KfpError::RunFailed`].
    pub async fn follow(
        &self,
        run_id: &str,
        polling: Polling,
        mut seen: impl FnMut(&Run),
    ) -> Result<Run, KfpError> {
        let started = tokio::time::Instant::now();
        let mut delay = polling.initial;
        let mut last: Option<Vec<(String, RunState)>> = None;
        let mut failures = 0;
        loop {
            let run = match self.run(run_id).await {
                Ok(run) => {
                    failures = 0;
                    run
                }
                // A run lasts hours; one dropped connection or API restart must not end the watch.
                Err(e) if e.is_transient() && failures + 1 < FOLLOW_ATTEMPTS => {
                    failures += 1;
                    tracing::warn!(target: "kfp", error = %e, "reading the run failed, retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(polling.max);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let states = state_key(&run);
            if last.as_ref() != Some(&states) {
                seen(&run);
                last = Some(states);
            }
            if run.state.is_terminal() {
                if run.state.is_success() {
                    return Ok(run);
                }
                return Err(KfpError::RunFailed {
                    run_id: run_id.into(),
                    state: run.state,
                    message: failure_message(&run),
                });
            }
            if started.elapsed() + delay > polling.timeout {
                return Err(KfpError::RunTimedOut {
                    run_id: run_id.into(),
                    state: run.state,
                    after: polling.timeout,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(polling.max);
        }
    }

    async fn get<T: DeserializeOwned>(&self, action: &str, path: &str) -> Result<T, KfpError> {
        let request = self.request(Method::GET, path, None)?;
        self.exchange(action, request).await
    }

    async fn send_json<T: DeserializeOwned>(
        &self,
        action: &str,
        method: Method,
        path: &str,
        body: &Value,
    ) -> Result<T, KfpError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value serializes");
        let request = self.request(method, path, Some(("application/json".into(), bytes)))?;
        self.exchange(action, request).await
    }

    async fn multipart<T: DeserializeOwned>(
        &self,
        action: &str,
        path: &str,
        filename: &str,
        file: &[u8],
    ) -> Result<T, KfpError> {
        let (content_type, body) = multipart_body("uploadfile", filename, file);
        let request = self.request(Method::POST, path, Some((content_type, body)))?;
        self.exchange(action, request).await
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<(String, Vec<u8>)>,
    ) -> Result<Request<Vec<u8>>, KfpError> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.prefix))
            .header(http::header::ACCEPT, "application/json");
        let bytes = match body {
            Some((content_type, bytes)) => {
                builder = builder.header(http::header::CONTENT_TYPE, content_type);
                bytes
            }
            None => Vec::new(),
        };
        builder.body(bytes).map_err(|e| KfpError::BadUrl {
            url: format!("{}{path}", self.shown),
            cause: e.to_string(),
        })
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        action: &str,
        request: Request<Vec<u8>>,
    ) -> Result<T, KfpError> {
        let url = format!(
            "{}{}",
            self.shown,
            &request.uri().to_string()[self.prefix.len()..]
        );
        tracing::debug!(target: "kfp", %url, method = %request.method(), "request");
        let response =
            self.http
                .send(request.map(Body::from))
                .await
                .map_err(|e| KfpError::Unreachable {
                    url: self.shown.clone(),
                    cause: crate::fix::chain(&e),
                })?;
        let status = response.status();
        let body =
            response
                .into_body()
                .collect_bytes()
                .await
                .map_err(|e| KfpError::Unreachable {
                    url: self.shown.clone(),
                    cause: crate::fix::chain(&e),
                })?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|e| KfpError::BadResponse {
                url,
                action: action.into(),
                cause: format!("{e}: {}", snippet(&body)),
            });
        }
        Err(self.classify(action, url, status, &body))
    }

    /// Tells the Kubernetes API server's own refusals (no Service, no endpoints, RBAC) apart
    /// from Kubeflow Pipelines' errors, which the proxy passes through unchanged.
    fn classify(&self, action: &str, url: String, status: StatusCode, body: &[u8]) -> KfpError {
        let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        if let (Route::ServiceProxy { namespace, service }, Some("Status")) =
            (&self.route, parsed["kind"].as_str())
        {
            let message = parsed["message"].as_str().unwrap_or_default().to_string();
            let reason = parsed["reason"].as_str().unwrap_or_default();
            let details_kind = parsed["details"]["kind"].as_str().unwrap_or_default();
            match (status, reason) {
                (StatusCode::NOT_FOUND, "NotFound") if details_kind == "services" => {
                    return KfpError::NotInstalled {
                        url,
                        namespace: namespace.clone(),
                        service: service.clone(),
                        message,
                    };
                }
                (StatusCode::SERVICE_UNAVAILABLE, _) => {
                    return KfpError::NotReady { url, message };
                }
                (StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED, _) => {
                    return KfpError::Forbidden { url, message };
                }
                _ => {}
            }
        }
        // grpc-gateway errors carry `message`; the upload handler's carry `error_message`.
        let message = ["message", "error_message", "error"]
            .iter()
            .find_map(|k| parsed[k].as_str().filter(|s| !s.is_empty()))
            .map(str::to_string)
            .unwrap_or_else(|| snippet(body));
        KfpError::Api {
            url,
            action: action.into(),
            status: status.as_u16(),
            message,
        }
    }

    fn bad_response(&self, action: &str, cause: &str) -> KfpError {
        KfpError::BadResponse {
            url: self.shown.clone(),
            action: action.into(),
            cause: cause.into(),
        }
    }
}

/// A client without kube's built-in retries: they retry 503 for minutes, and the service proxy
/// answers 503 for as long as Kubeflow Pipelines has no ready pod, which the caller must hear
/// about at once (its wait has its own deadline and diagnosis).
fn client(mut config: kube::Config, shown: &str) -> Result<kube::Client, KfpError> {
    config.default_retry = false;
    kube::Client::try_from(config).map_err(|e| KfpError::BadUrl {
        url: shown.into(),
        cause: crate::fix::chain(&e),
    })
}

/// `/api/v1/namespaces/NS/services/NAME:PORT/proxy`: the service proxy's path for one port.
pub fn service_proxy_prefix(namespace: &str, service: &str, port: u16) -> String {
    format!("/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy")
}

fn state_key(run: &Run) -> Vec<(String, RunState)> {
    let mut key = vec![(String::new(), run.state)];
    key.extend(
        run.run_details
            .task_details
            .iter()
            .map(|t| (t.display_name.clone(), t.state)),
    );
    key
}

/// The run's error, else the failed tasks' errors.
fn failure_message(run: &Run) -> String {
    let mut parts: Vec<String> = run
        .error
        .iter()
        .filter(|e| !e.message.is_empty())
        .map(|e| e.message.clone())
        .collect();
    for task in &run.run_details.task_details {
        if task.state == RunState::Failed {
            let why = task
                .error
                .as_ref()
                .map(|e| e.message.as_str())
                .filter(|m| !m.is_empty())
                .unwrap_or("no message");
            parts.push(format!("step {} failed: {why}", task.display_name));
        }
    }
    if parts.is_empty() {
        "the server gave no reason".into()
    } else {
        parts.join("; ")
    }
}

/// The run's tasks as a table: name, state, pod. Sorted by name for a stable display.
pub fn render_tasks(run: &Run) -> String {
    let mut tasks: Vec<&TaskDetail> = run.run_details.task_details.iter().collect();
    tasks.sort_by(|a, b| a.display_name.cmp(&b.display_name));
    let width = tasks
        .iter()
        .map(|t| t.display_name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut out = format!("run {} {}\n", run.run_id, run.state);
    for t in tasks {
        out.push_str(&format!(
            "  {:<width$}  {:<9}  {}\n",
            t.display_name,
            t.state.to_string(),
            t.pod_name
        ));
    }
    out
}

/// A multipart/form-data body with one file field. The boundary is derived from the content's
/// hash, so it cannot occur in the content by accident.
fn multipart_body(field: &str, filename: &str, file: &[u8]) -> (String, Vec<u8>) {
    use sha2::{Digest, Sha256};
    let boundary = format!("kgf-up-{}", &hex(&Sha256::digest(file))[..32]);
    let mut body = Vec::with_capacity(file.len() + 256);
    body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    body.extend_from_slice(
        format!(
            "Content-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn query_string(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.len() > 300 {
        let end = (0..=300)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}...", &text[..end])
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_string(&[
                ("name", "gene fusion/v1"),
                ("description", "a&b=c\nsha256:ab")
            ]),
            "name=gene%20fusion%2Fv1&description=a%26b%3Dc%0Asha256%3Aab"
        );
    }

    #[test]
    fn the_service_proxy_path_names_namespace_service_and_port() {
        assert_eq!(
            service_proxy_prefix(NAMESPACE, SERVICE, PORT),
            "/api/v1/namespaces/kubeflow/services/ml-pipeline:8888/proxy"
        );
    }

    #[test]
    fn multipart_body_has_one_file_part_with_the_field_name() {
        let (ctype, body) = multipart_body("uploadfile", "p.yaml", b"pipelineInfo: {}\n");
        let boundary = ctype
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"uploadfile\"; filename=\"p.yaml\""));
        assert!(text.contains("\r\n\r\npipelineInfo: {}\n\r\n"));
        assert!(text.ends_with(&format!("\r\n--{boundary}--\r\n")));
    }

    #[test]
    fn run_body_carries_reference_parameters_and_root_only() {
        let mut parameters = Map::new();
        parameters.insert("epochs".into(), json!(3));
        let run = NewRun {
            display_name: "r".into(),
            experiment_id: "e".into(),
            pipeline_id: "p".into(),
            pipeline_version_id: "v".into(),
            parameters,
            pipeline_root: Some("minio://mlpipeline/v2/artifacts".into()),
        };
        assert_eq!(
            run.body(),
            json!({
                "display_name": "r", "experiment_id": "e",
                "pipeline_version_reference": {"pipeline_id": "p", "pipeline_version_id": "v"},
                "runtime_config": {"parameters": {"epochs": 3}, "pipeline_root": "minio://mlpipeline/v2/artifacts"}
            })
        );
    }

    #[test]
    fn states_parse_from_the_api_names_and_only_four_are_terminal() {
        let run: Run = serde_json::from_str(
            r#"{"run_id":"r1","state":"CANCELING","run_details":{"task_details":[
                {"display_name":"dataset","state":"SUCCEEDED"},{"display_name":"train-gc","state":"FAILED",
                 "error":{"code":2,"message":"OOMKilled"}}]}}"#,
        )
        .unwrap();
        assert_eq!(run.state, RunState::Canceling);
        assert!(!run.state.is_terminal());
        let terminal: Vec<RunState> = [
            "PENDING",
            "RUNNING",
            "SUCCEEDED",
            "SKIPPED",
            "FAILED",
            "CANCELING",
            "CANCELED",
            "PAUSED",
        ]
        .iter()
        .map(|s| serde_json::from_value::<RunState>(json!(s)).unwrap())
        .filter(|s| s.is_terminal())
        .collect();
        assert_eq!(
            terminal,
            [
                RunState::Succeeded,
                RunState::Skipped,
                RunState::Failed,
                RunState::Canceled
            ]
        );
        assert_eq!(failure_message(&run), "step train-gc failed: OOMKilled");
        let table = render_tasks(&run);
        assert!(table.contains("dataset   SUCCEEDED"), "{table}");
        assert!(table.contains("train-gc  FAILED"), "{table}");
    }
}
