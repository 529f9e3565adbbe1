//! The Kubernetes API: a client from a kubeconfig, server-side apply of multi-document YAML (CRDs
//! first and waited Established, then namespaces, then the rest), waits built on watches, and the
//! diagnosis printed when a wait times out.
//!
//! Every write passes the [`Gate`]: [`Kube::apply`] and [`Kube::delete`] here, other writes
//! (inventory, lock, Jobs, nodes) through [`Kube::gate`]. When the gate records (`plan`), apply
//! asks the API server for a server-side dry run instead and records what would change, field by
//! field. This module must not decide what to apply.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Scope};
use kube::runtime::wait::{Condition, await_condition, conditions};
use kube::{Client, Config, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::gate::{Change, Gate};

/// Where the cluster's API is: a kubeconfig file and the context to use in it.
#[derive(Clone, Debug)]
pub struct Kubeconfig {
    pub path: PathBuf,
    pub context: Option<String>,
}

/// The field manager of every server-side apply kgf-up makes.
pub const FIELD_MANAGER: &str = "kgf-up";

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("cannot read kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("cannot reach the Kubernetes API at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("{what}: {message}")]
    Manifest { what: String, message: String },
    #[error(
        "the cluster does not serve {kind} ({api_version}); the component that provides this kind must be installed first"
    )]
    UnknownKind { api_version: String, kind: String },
    #[error("{action} {object}: {source}")]
    Api {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "timed out after {}s waiting for {object} to be {condition}; last seen: {last}",
        waited.as_secs_f64().ceil()
    )]
    Timeout {
        object: String,
        condition: String,
        waited: Duration,
        last: String,
    },
}

/// What server-side apply does with fields another field manager set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflicts {
    /// Fail with a conflict: someone else owns the field.
    Refuse,
    /// Take the fields over (`force`): for a chart's CRDs, which helm created and never
    /// upgrades, so kgf-up does.
    TakeOver,
}

/// A reference to one object, as kgf-up records it in the inventory.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {ns}/{}", self.kind, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

impl ObjectRef {
    /// A namespace, a CRD: kinds that live outside namespaces.
    fn cluster_scoped(api_version: &str, kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
        }
    }

    pub fn namespace(name: &str) -> ObjectRef {
        ObjectRef::cluster_scoped("v1", "Namespace", name)
    }

    pub fn crd(name: &str) -> ObjectRef {
        ObjectRef::cluster_scoped("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    }

    fn gvk(&self) -> GroupVersionKind {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g.to_string(), v.to_string()),
            None => (String::new(), self.api_version.clone()),
        };
        GroupVersionKind::gvk(&group, &version, &self.kind)
    }
}

/// Parses multi-document YAML into objects, ordered for applying: CRDs, namespaces, the rest
/// (declared order kept within each group). Empty documents and `List` wrappers are handled.
pub fn parse_manifests(yaml: &str, what: &str) -> Result<Vec<DynamicObject>, KubeError> {
    let docs = yaml_documents(yaml).map_err(|e| KubeError::Manifest {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    let mut objects = Vec::new();
    for doc in docs {
        if doc.is_null() {
            continue;
        }
        let items = if doc.get("kind").and_then(|k| k.as_str()) == Some("List") {
            doc.get("items")
                .and_then(|i| i.as_array())
                .cloned()
                .unwrap_or_default()
        } else {
            vec![doc]
        };
        for item in items {
            let obj: DynamicObject =
                serde_json::from_value(item).map_err(|e| KubeError::Manifest {
                    what: what.to_string(),
                    message: format!("not a Kubernetes object: {e}"),
                })?;
            if obj.types.is_none() || obj.metadata.name.is_none() {
                return Err(KubeError::Manifest {
                    what: what.to_string(),
                    message: "an object lacks apiVersion, kind or metadata.name".into(),
                });
            }
            objects.push(obj);
        }
    }
    objects.sort_by_key(|o| match kind_of(o) {
        "CustomResourceDefinition" => 0,
        "Namespace" => 1,
        _ => 2,
    });
    Ok(objects)
}

/// The documents of multi-document YAML that a chart or kustomization rendered. The parser's
/// default limits are meant for small untrusted files; real CRDs (kube-prometheus-stack's, Argo's)
/// run to megabytes of schema, so the node and event limits are raised, the depth limit kept.
pub fn yaml_documents(yaml: &str) -> Result<Vec<serde_json::Value>, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 64_000_000;
    budget.max_events = 256_000_000;
    budget.max_documents = 1_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_multiple_with_options(yaml, options)
}

fn kind_of(obj: &DynamicObject) -> &str {
    obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("")
}

/// The client configuration of a kubeconfig's context (for clients that need their own
/// settings, such as the Kubeflow Pipelines client reached through the service proxy).
pub async fn config(kubeconfig: &Kubeconfig) -> Result<Config, KubeError> {
    let path = kubeconfig.path.display().to_string();
    let unusable = |message: String| KubeError::Kubeconfig {
        path: path.clone(),
        message,
    };
    let file = kube::config::Kubeconfig::read_from(&kubeconfig.path)
        .map_err(|e| unusable(e.to_string()))?;
    let options = kube::config::KubeConfigOptions {
        context: kubeconfig.context.clone(),
        ..Default::default()
    };
    Config::from_custom_kubeconfig(file, &options)
        .await
        .map_err(|e| unusable(e.to_string()))
}

/// A connected client plus a cache of resolved kinds.
#[derive(Clone)]
pub struct Kube {
    client: Client,
    /// The same, without kube's built-in retries, which retry a 503 for minutes: through the
    /// service proxy a 503 is the answer (no ready pod behind the Service) and must be heard.
    proxy: Client,
    url: String,
    kinds: std::sync::Arc<Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>>,
    gate: Gate,
}

impl Kube {
    /// Connects with the kubeconfig's context; checks the API answers. Every write passes `gate`.
    pub async fn connect(kubeconfig: &Kubeconfig, gate: Gate) -> Result<Kube, KubeError> {
        let mut config = config(kubeconfig).await?;
        config.headers.push((
            http::header::USER_AGENT,
            http::HeaderValue::from_static(concat!("kgf-up/", env!("CARGO_PKG_VERSION"))),
        ));
        let url = config.cluster_url.to_string();
        let unreachable = |e: kube::Error| KubeError::Unreachable {
            url: url.clone(),
            message: e.to_string(),
        };
        let mut once = config.clone();
        once.default_retry = false;
        let proxy = Client::try_from(once).map_err(unreachable)?;
        let client = Client::try_from(config).map_err(unreachable)?;
        client
            .apiserver_version()
            .await
            .map_err(|e| KubeError::Unreachable {
                url: url.clone(),
                message: e.to_string(),
            })?;
        Ok(Kube {
            client,
            proxy,
            url,
            kinds: Default::default(),
            gate,
        })
    }

    /// The gate every write to this cluster passes.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The client for requests through the API server's service proxy (no retries).
    pub fn proxy_client(&self) -> Client {
        self.proxy.clone()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Resolves a kind through discovery (cached; a miss asks the server again, so kinds of CRDs
    /// applied earlier in this run are found).
    async fn resolve(&self, r: &ObjectRef) -> Result<(ApiResource, ApiCapabilities), KubeError> {
        let gvk = r.gvk();
        if let Some(hit) = self.kinds.lock().await.get(&gvk) {
            return Ok(hit.clone());
        }
        match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => {
                self.kinds.lock().await.insert(gvk, found.clone());
                Ok(found)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Err(KubeError::UnknownKind {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
            }),
            Err(kube::Error::Discovery(_)) => Err(KubeError::UnknownKind {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
            }),
            Err(source) => Err(KubeError::Api {
                action: "discovering",
                object: format!("{} {}", r.api_version, r.kind),
                source,
            }),
        }
    }

    async fn api_for(
        &self,
        r: &ObjectRef,
    ) -> Result<(Api<DynamicObject>, Option<String>), KubeError> {
        let (ar, caps) = self.resolve(r).await?;
        Ok(match caps.scope {
            Scope::Namespaced => {
                let ns = r.namespace.clone().unwrap_or_else(|| "default".into());
                (
                    Api::namespaced_with(self.client.clone(), &ns, &ar),
                    Some(ns),
                )
            }
            Scope::Cluster => (Api::all_with(self.client.clone(), &ar), None),
        })
    }

    /// The reference an object will have once applied (namespace defaulted for namespaced kinds).
    pub async fn reference(
        &self,
        obj: &DynamicObject,
        default_namespace: &str,
    ) -> Result<ObjectRef, KubeError> {
        let mut r = written_ref(obj, default_namespace);
        let (_, caps) = self.resolve(&r).await?;
        if caps.scope == Scope::Cluster {
            r.namespace = None;
        }
        Ok(r)
    }

    /// Server-side applies `objects` in order (as [`parse_manifests`] sorted them); each CRD is
    /// waited Established before anything after it, so custom resources of it resolve. When the
    /// gate records, each object is dry-run instead and only the ones that would change are
    /// recorded, with their differences.
    pub async fn apply(
        &self,
        objects: &[DynamicObject],
        default_namespace: &str,
        deadline: Duration,
        conflicts: Conflicts,
    ) -> Result<Vec<ObjectRef>, KubeError> {
        let params = match conflicts {
            Conflicts::Refuse => PatchParams::apply(FIELD_MANAGER),
            Conflicts::TakeOver => PatchParams::apply(FIELD_MANAGER).force(),
        };
        let mut applied = Vec::with_capacity(objects.len());
        for obj in objects {
            let r = match self.reference(obj, default_namespace).await {
                // A custom resource whose CRD this plan would create first.
                Err(KubeError::UnknownKind { .. }) if self.gate.recording() => {
                    let r = written_ref(obj, default_namespace);
                    self.gate.change_now(
                        Change::new(format!("create {r}"))
                            .with_detail(["(its kind is served once the CRDs before it exist)"]),
                        || Ok::<_, KubeError>(()),
                    )?;
                    applied.push(r);
                    continue;
                }
                r => r?,
            };
            let (api, ns) = self.api_for(&r).await?;
            let mut body = obj.clone();
            body.metadata.namespace = ns;
            body.metadata.resource_version = None;
            let change = if self.gate.recording() {
                match self.preview(&api, &r, &body, &params).await? {
                    Some(change) => change,
                    None => {
                        applied.push(r);
                        continue;
                    }
                }
            } else {
                Change::new(format!("server-side apply {r}"))
            };
            let done = self
                .gate
                .change(change, api.patch(&r.name, &params, &Patch::Apply(&body)))
                .await
                .map_err(|source| KubeError::Api {
                    action: "applying",
                    object: r.to_string(),
                    source,
                })?;
            if done.is_some() && r.kind == "CustomResourceDefinition" {
                self.wait_ready(&r, deadline).await?;
            }
            applied.push(r);
        }
        Ok(applied)
    }

    /// What applying `body` would change, by a server-side dry run compared with the live
    /// object: `None` when nothing would.
    async fn preview(
        &self,
        api: &Api<DynamicObject>,
        r: &ObjectRef,
        body: &DynamicObject,
        params: &PatchParams,
    ) -> Result<Option<Change>, KubeError> {
        let failed = |action| {
            move |source| KubeError::Api {
                action,
                object: r.to_string(),
                source,
            }
        };
        // A new object's namespace may be one this plan would create: only a live object is
        // dry-run (a dry run in a missing namespace is refused).
        let Some(live) = api.get_opt(&r.name).await.map_err(failed("reading"))? else {
            return Ok(Some(Change::new(format!("create {r}"))));
        };
        let mut dry = params.clone();
        dry.dry_run = true;
        let after = api
            .patch(&r.name, &dry, &Patch::Apply(body))
            .await
            .map_err(failed("dry-running the apply of"))?;
        let secret = r.kind == "Secret";
        let lines = object_diff(&as_value(&live), &as_value(&after), secret);
        Ok((!lines.is_empty()).then(|| Change::new(format!("patch {r}")).with_detail(lines)))
    }
    /// Whether the object exists (a read).
    pub async fn exists(&self, r: &ObjectRef) -> Result<bool, KubeError> {
        let (api, _) = match self.api_for(r).await {
            Ok(a) => a,
            Err(KubeError::UnknownKind { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        api.get_opt(&r.name)
            .await
            .map(|o| o.is_some())
            .map_err(|source| KubeError::Api {
                action: "reading",
                object: r.to_string(),
                source,
            })
    }

    /// Deletes the object (foreground) and waits until it is gone; absent is fine.
    pub async fn delete(&self, r: &ObjectRef, deadline: Duration) -> Result<(), KubeError> {
        let (api, _) = match self.api_for(r).await {
            Ok(a) => a,
            Err(KubeError::UnknownKind { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let uid = match api.get_opt(&r.name).await {
            Ok(Some(obj)) => obj.metadata.uid.unwrap_or_default(),
            Ok(None) => return Ok(()),
            Err(source) => {
                return Err(KubeError::Api {
                    action: "reading",
                    object: r.to_string(),
                    source,
                });
            }
        };
        let deleted = self
            .gate
            .change(
                Change::new(format!("delete {r}")),
                api.delete(&r.name, &DeleteParams::foreground()),
            )
            .await;
        match deleted {
            Ok(Some(_)) => {}
            Ok(None) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => return Ok(()),
            Err(source) => {
                return Err(KubeError::Api {
                    action: "deleting",
                    object: r.to_string(),
                    source,
                });
            }
        }
        Self::gone(api, r, &uid, deadline).await
    }

    /// Waits until an object being deleted (a namespace still terminating) is gone; absent is
    /// fine. Sends no delete of its own.
    pub async fn wait_deleted(&self, r: &ObjectRef, deadline: Duration) -> Result<(), KubeError> {
        let (api, _) = match self.api_for(r).await {
            Ok(a) => a,
            Err(KubeError::UnknownKind { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match api.get_opt(&r.name).await {
            Ok(Some(obj)) => {
                let uid = obj.metadata.uid.unwrap_or_default();
                Self::gone(api, r, &uid, deadline).await
            }
            Ok(None) => Ok(()),
            Err(source) => Err(KubeError::Api {
                action: "reading",
                object: r.to_string(),
                source,
            }),
        }
    }

    async fn gone(
        api: Api<DynamicObject>,
        r: &ObjectRef,
        uid: &str,
        deadline: Duration,
    ) -> Result<(), KubeError> {
        let gone = await_condition(api, &r.name, conditions::is_deleted(uid));
        match tokio::time::timeout(deadline, gone).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(KubeError::Api {
                action: "waiting for deletion of",
                object: r.to_string(),
                source: kube::Error::Service(Box::new(e)),
            }),
            Err(_) => Err(KubeError::Timeout {
                object: r.to_string(),
                condition: "deleted".into(),
                waited: deadline,
                last: "still present (finalizers?)".into(),
            }),
        }
    }

    /// Waits until the object is ready by its kind's rule: Deployment Available, StatefulSet and
    /// DaemonSet rolled out, Job complete, CRD Established, a webhook configuration that asks
    /// cert-manager for its CA with the CA injected; other kinds only need to exist.
    pub async fn wait_ready(&self, r: &ObjectRef, deadline: Duration) -> Result<(), KubeError> {
        let ns = r.namespace.clone().unwrap_or_default();
        let c = self.client.clone();
        match r.kind.as_str() {
            "CustomResourceDefinition" => {
                self.watch(
                    Api::<CustomResourceDefinition>::all(c),
                    r,
                    "Established",
                    conditions::is_crd_established(),
                    deadline,
                )
                .await
            }
            "Deployment" => {
                self.watch(
                    Api::<Deployment>::namespaced(c, &ns),
                    r,
                    "Available with every replica updated",
                    deployment_ready,
                    deadline,
                )
                .await
            }
            "StatefulSet" => {
                self.watch(
                    Api::<StatefulSet>::namespaced(c, &ns),
                    r,
                    "rolled out",
                    statefulset_ready,
                    deadline,
                )
                .await
            }
            "DaemonSet" => {
                self.watch(
                    Api::<DaemonSet>::namespaced(c, &ns),
                    r,
                    "rolled out on every node",
                    daemonset_ready,
                    deadline,
                )
                .await
            }
            "Job" => {
                self.watch(
                    Api::<Job>::namespaced(c, &ns),
                    r,
                    "Complete",
                    conditions::is_job_completed(),
                    deadline,
                )
                .await
            }
            "ValidatingWebhookConfiguration" => {
                self.watch(
                    Api::<ValidatingWebhookConfiguration>::all(c),
                    r,
                    CA_INJECTED,
                    |o: Option<&ValidatingWebhookConfiguration>| {
                        o.is_some_and(|w| webhook_ca_injected(&as_value(w)))
                    },
                    deadline,
                )
                .await
            }
            "MutatingWebhookConfiguration" => {
                self.watch(
                    Api::<MutatingWebhookConfiguration>::all(c),
                    r,
                    CA_INJECTED,
                    |o: Option<&MutatingWebhookConfiguration>| {
                        o.is_some_and(|w| webhook_ca_injected(&as_value(w)))
                    },
                    deadline,
                )
                .await
            }
            _ => Ok(()),
        }
    }

    async fn watch<K>(
        &self,
        api: Api<K>,
        r: &ObjectRef,
        condition: &str,
        cond: impl Condition<K>,
        deadline: Duration,
    ) -> Result<(), KubeError>
    where
        K: Resource
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Serialize
            + Send
            + Sync
            + 'static,
    {
        let waiting = await_condition(api.clone(), &r.name, cond);
        match tokio::time::timeout(deadline, waiting).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(KubeError::Api {
                action: "watching",
                object: r.to_string(),
                source: kube::Error::Service(Box::new(e)),
            }),
            Err(_) => {
                let last = match api.get_opt(&r.name).await {
                    Ok(Some(obj)) => last_seen(&as_value(&obj)),
                    Ok(None) => "absent".into(),
                    Err(e) => format!("unreadable: {e}"),
                };
                Err(KubeError::Timeout {
                    object: r.to_string(),
                    condition: condition.to_string(),
                    waited: deadline,
                    last,
                })
            }
        }
    }

    /// What a user needs when a wait fails: every pod in `namespace` that is not ready, with its
    /// phase and reason, the last events about it, and its containers' last log lines where the
    /// API can give them.
    pub async fn diagnose(&self, namespace: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let Ok(list) = pods.list(&ListParams::default()).await else {
            return format!("(could not list pods in {namespace})");
        };
        let mut all_events = events
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        all_events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
        let mut out = String::new();
        for pod in list.items.iter().filter(|p| !pod_ready(p)) {
            let name = pod.name_any();
            let status = pod.status.clone().unwrap_or_default();
            let waiting: Vec<String> = status
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| {
                    let w = c.state.as_ref()?.waiting.as_ref()?;
                    Some(format!(
                        "{}: {} {}",
                        c.name,
                        w.reason.clone().unwrap_or_default(),
                        w.message.clone().unwrap_or_default()
                    ))
                })
                .collect();
            let conditions: Vec<String> = status
                .conditions
                .iter()
                .flatten()
                .filter(|c| c.status != "True")
                .map(|c| {
                    format!(
                        "{}={} {} {}",
                        c.type_,
                        c.status,
                        c.reason.clone().unwrap_or_default(),
                        c.message.clone().unwrap_or_default()
                    )
                    .trim_end()
                    .to_string()
                })
                .collect();
            out.push_str(&format!(
                "pod {namespace}/{name}: phase {}",
                status.phase.clone().unwrap_or_else(|| "Unknown".into())
            ));
            for line in conditions.iter().chain(waiting.iter()) {
                out.push_str(&format!("\n    {line}"));
            }
            let mine: Vec<&Event> = all_events
                .iter()
                .filter(|e| e.involved_object.name.as_deref() == Some(name.as_str()))
                .collect();
            for e in mine.iter().rev().take(5).rev() {
                out.push_str(&format!(
                    "\n    event {} {}: {}",
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default().trim()
                ));
            }
            for c in pod.spec.iter().flat_map(|s| s.containers.iter()) {
                let params = LogParams {
                    container: Some(c.name.clone()),
                    tail_lines: Some(10),
                    ..Default::default()
                };
                match tokio::time::timeout(Duration::from_secs(5), pods.logs(&name, &params)).await
                {
                    Ok(Ok(log)) if !log.trim().is_empty() => {
                        out.push_str(&format!("\n    log {}:", c.name));
                        for l in log.lines() {
                            out.push_str(&format!("\n      {l}"));
                        }
                    }
                    _ => out.push_str(&format!("\n    log {}: not available from the API", c.name)),
                }
            }
            out.push('\n');
        }
        if out.is_empty() {
            out = format!("every pod in {namespace} is ready");
        }
        out.trim_end().to_string()
    }
}

const CA_INJECTED: &str = "caBundle injected into every webhook (cert-manager's CA injector)";

/// The annotations that ask cert-manager's CA injector to fill a webhook's `caBundle`.
const INJECT_CA: &[&str] = &[
    "cert-manager.io/inject-ca-from",
    "cert-manager.io/inject-ca-from-secret",
    "cert-manager.io/inject-apiserver-ca",
];

fn as_value<T: Serialize>(obj: &T) -> serde_json::Value {
    serde_json::to_value(obj).unwrap_or_default()
}

/// An object's reference as written, the namespace defaulted even for a cluster-scoped kind
/// (known before its kind is resolved; [`Kube::reference`] drops it where the kind has none).
pub fn written_ref(obj: &DynamicObject, default_namespace: &str) -> ObjectRef {
    let t = obj.types.as_ref().expect("parse_manifests checked types");
    ObjectRef {
        api_version: t.api_version.clone(),
        kind: t.kind.clone(),
        namespace: obj
            .metadata
            .namespace
            .clone()
            .or_else(|| Some(default_namespace.to_string())),
        name: obj.name_any(),
    }
}

/// The fields that differ between the live object and the dry run's result, one line each as
/// `path: old → new`, leaving out what the server keeps for itself (resourceVersion, managed
/// fields, status). A Secret's values are never shown, only which keys change.
pub fn object_diff(
    live: &serde_json::Value,
    after: &serde_json::Value,
    secret: bool,
) -> Vec<String> {
    fn strip(v: &serde_json::Value) -> serde_json::Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("status");
            if let Some(m) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                for k in [
                    "managedFields",
                    "resourceVersion",
                    "generation",
                    "uid",
                    "creationTimestamp",
                ] {
                    m.remove(k);
                }
            }
        }
        v
    }
    let mut lines = Vec::new();
    diff_into("", &strip(live), &strip(after), secret, &mut lines);
    lines
}

fn diff_into(
    path: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
    secret: bool,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    if old == new {
        return;
    }
    if let (Value::Object(a), Value::Object(b)) = (old, new) {
        let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
        for k in keys {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            diff_into(
                &at,
                a.get(k).unwrap_or(&Value::Null),
                b.get(k).unwrap_or(&Value::Null),
                secret,
                out,
            );
        }
        return;
    }
    let hidden = secret && (path.starts_with("data.") || path.starts_with("stringData."));
    let show = |v: &Value| match v {
        Value::Null => "(none)".to_string(),
        _ if hidden => "<redacted>".to_string(),
        v => {
            let text = v.to_string();
            if text.chars().count() > 120 {
                format!("{}…", text.chars().take(117).collect::<String>())
            } else {
                text
            }
        }
    };
    out.push(format!("{path}: {} → {}", show(old), show(new)));
}

/// Whether a webhook configuration can be called: one that asks cert-manager for its CA has it
/// in every webhook's `clientConfig.caBundle`. Until then the API server cannot verify the
/// webhook's certificate and refuses every object the webhook validates ("x509: certificate
/// signed by unknown authority"), even though its Service already has endpoints.
pub fn webhook_ca_injected(config: &serde_json::Value) -> bool {
    let asks = config
        .pointer("/metadata/annotations")
        .and_then(|a| a.as_object())
        .is_some_and(|a| INJECT_CA.iter().any(|k| a.contains_key(*k)));
    if !asks {
        return true;
    }
    config
        .get("webhooks")
        .and_then(|w| w.as_array())
        .is_some_and(|hooks| {
            hooks.iter().all(|h| {
                h.pointer("/clientConfig/caBundle")
                    .and_then(|b| b.as_str())
                    .is_some_and(|b| !b.is_empty())
            })
        })
}

/// What a timed-out wait last saw: the webhooks still without a CA, or the status in one line.
fn last_seen(obj: &serde_json::Value) -> String {
    if let Some(hooks) = obj.get("webhooks").and_then(|w| w.as_array()) {
        let empty: Vec<&str> = hooks
            .iter()
            .filter(|h| {
                h.pointer("/clientConfig/caBundle")
                    .and_then(|b| b.as_str())
                    .is_none_or(str::is_empty)
            })
            .filter_map(|h| h.get("name").and_then(|n| n.as_str()))
            .collect();
        return format!("caBundle empty on {}", empty.join(", "));
    }
    obj.get("status")
        .map(summarize_status)
        .unwrap_or_else(|| "no status".into())
}

/// A status in one line: its conditions that are not True (type=status reason: message), or
/// the whole status when it has no conditions.
fn summarize_status(status: &serde_json::Value) -> String {
    let Some(conditions) = status.get("conditions").and_then(|c| c.as_array()) else {
        return status.to_string();
    };
    let s = |c: &serde_json::Value, k: &str| {
        c.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string()
    };
    let failing: Vec<String> = conditions
        .iter()
        .filter(|c| s(c, "status") != "True")
        .map(|c| {
            format!(
                "{}={} {}: {}",
                s(c, "type"),
                s(c, "status"),
                s(c, "reason"),
                s(c, "message")
            )
        })
        .collect();
    if failing.is_empty() {
        status.to_string()
    } else {
        failing.join("; ")
    }
}

/// Ready or finished: a completed pod of a Job is fine.
fn pod_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    if status.phase.as_deref() == Some("Succeeded") {
        return true;
    }
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn deployment_ready(obj: Option<&Deployment>) -> bool {
    let Some(d) = obj else { return false };
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    let available = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Available" && c.status == "True");
    available
        && status.observed_generation >= d.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= want
        && status.available_replicas.unwrap_or(0) >= want
}

fn statefulset_ready(obj: Option<&StatefulSet>) -> bool {
    let Some(s) = obj else { return false };
    let (Some(spec), Some(status)) = (&s.spec, &s.status) else {
        return false;
    };
    let want = spec.replicas.unwrap_or(1);
    status.observed_generation >= s.metadata.generation
        && status.ready_replicas.unwrap_or(0) >= want
        && status.updated_replicas.unwrap_or(0) >= want
}

fn daemonset_ready(obj: Option<&DaemonSet>) -> bool {
    let Some(d) = obj else { return false };
    let Some(status) = &d.status else {
        return false;
    };
    status.observed_generation >= d.metadata.generation
        && status.updated_number_scheduled.unwrap_or(0) >= status.desired_number_scheduled
        && status.number_ready >= status.desired_number_scheduled
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_diff_names_each_changed_field_and_hides_what_the_server_keeps() {
        let live = serde_json::json!({
            "metadata": {"name": "x", "resourceVersion": "1", "managedFields": [1],
                         "labels": {"a": "1"}},
            "spec": {"replicas": 2, "template": {"image": "i:1"}},
            "status": {"ready": 1},
        });
        let after = serde_json::json!({
            "metadata": {"name": "x", "resourceVersion": "2", "managedFields": [2],
                         "labels": {"a": "1", "b": "2"}},
            "spec": {"replicas": 3, "template": {"image": "i:1"}},
            "status": {"ready": 0},
        });
        assert_eq!(
            object_diff(&live, &after, false),
            ["metadata.labels.b: (none) → \"2\"", "spec.replicas: 2 → 3"]
        );
        assert!(object_diff(&live, &live, false).is_empty());
        let secret = |v: &str| serde_json::json!({"data": {"password": v}});
        assert_eq!(
            object_diff(&secret("b2xk"), &secret("bmV3"), true),
            ["data.password: <redacted> → <redacted>"]
        );
    }

    #[test]
    fn a_webhook_that_asks_for_its_ca_is_ready_only_once_every_webhook_has_it() {
        let config = |annotated: bool, bundles: &[&str]| {
            let hooks: Vec<serde_json::Value> = bundles
                .iter()
                .enumerate()
                .map(|(i, b)| serde_json::json!({"name": format!("h{i}.example.com"), "clientConfig": {"caBundle": b}}))
                .collect();
            let annotations = if annotated {
                serde_json::json!({"cert-manager.io/inject-ca-from": "kserve/serving-cert"})
            } else {
                serde_json::json!({})
            };
            serde_json::json!({"metadata": {"name": "w", "annotations": annotations}, "webhooks": hooks})
        };
        assert!(!webhook_ca_injected(&config(true, &["", ""])));
        assert!(!webhook_ca_injected(&config(true, &["Q0E=", ""])));
        assert!(webhook_ca_injected(&config(true, &["Q0E=", "Q0E="])));
        // A webhook that asks nobody for a CA (a chart that sets caBundle itself) only needs to exist.
        assert!(webhook_ca_injected(&config(false, &[""])));
        assert_eq!(
            last_seen(&config(true, &["Q0E=", ""])),
            "caBundle empty on h1.example.com"
        );
    }

    /// kube-prometheus-stack's and Argo's CRDs run to megabytes of schema: far more nodes than a
    /// YAML parser's default budget for untrusted input allows.
    #[test]
    fn megabytes_of_crd_schema_parse() {
        let mut yaml = [
            "apiVersion: apiextensions.k8s.io/v1",
            "kind: CustomResourceDefinition",
            "metadata: {name: bigs.example.com}",
            "spec:",
            "  group: example.com",
            "  versions:",
            "  - name: v1",
            "    schema:",
            "      openAPIV3Schema:",
            "        type: object",
            "        properties:\n",
        ]
        .join("\n");
        for i in 0..60_000 {
            yaml.push_str(&format!(
                "          field{i}:\n            description: field {i} of a large schema\n            type: string\n"
            ));
        }
        let objects = parse_manifests(&yaml, "big").unwrap();
        assert_eq!(objects.len(), 1);
    }

    #[test]
    fn manifests_are_ordered_crds_then_namespaces_then_the_rest() {
        let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: x}\n---\n\
                    apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n\
                    ---\n\
                    apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: ws.t.io}\n";
        let objs = parse_manifests(yaml, "test").unwrap();
        let kinds: Vec<&str> = objs.iter().map(kind_of).collect();
        assert_eq!(
            kinds,
            ["CustomResourceDefinition", "Namespace", "ConfigMap"]
        );
    }

    #[test]
    fn a_document_without_a_name_is_an_error_naming_the_source() {
        let err = parse_manifests("apiVersion: v1\nkind: ConfigMap\n", "kustomize x").unwrap_err();
        assert!(err.to_string().starts_with("kustomize x: "), "{err}");
    }
}
