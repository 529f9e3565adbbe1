//! What the two component steps share: the component, where its sources are, what it needs, and
//! its inventory record (written before a change and again when it is done, so an interrupted
//! `up` is finished by the next one and `down` removes exactly what was made).
//! The helm step installs charts, the kustomize step applies kustomizations; both stand on this.

use std::path::PathBuf;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DynamicObject};
use sha2::{Digest, Sha256};

use super::component::Component;
use crate::inventory::{self, Record, RecordState};
use crate::kube::{Kube, ObjectRef, written_ref};
use crate::profile::{Source, Tools};
use crate::step::{Ctx, Description, StepError, StepId, StepResult};

/// An annotation a transform puts on objects whose fields kgf-up takes over from any other field
/// manager (a stale `kfp-launcher` someone else made in a namespace that runs pipelines).
pub const TAKE_OVER: &str = "kgf-up.io/take-over";

/// What kgf-up changes in a kustomization's rendered objects before applying them.
#[derive(Clone)]
pub struct Transform {
    pub rewrite: Rewrite,
    /// What the rewrite changes, one line per object, for `plan` (offline too); no secret values.
    pub changes: Vec<String>,
}

/// Rewrites rendered objects; may read the cluster (a Secret's keys).
pub type Rewrite = Arc<
    dyn for<'a> Fn(&'a Ctx, Vec<DynamicObject>) -> BoxFuture<'a, StepResult<Vec<DynamicObject>>>
        + Send
        + Sync,
>;

/// Values found during the run; `None` when there is nothing to add.
pub type DetectValues = Arc<dyn Fn() -> StepResult<Option<serde_json::Value>> + Send + Sync>;

pub struct Common {
    pub component: Component,
    pub tools: Tools,
    pub base_dir: PathBuf,
    /// The cluster's steps that must be done before anything is installed on it.
    pub cluster_ready: Vec<StepId>,
    /// Whether the cluster's pods run (not on `sim`): only then does cert-manager's CA injector
    /// fill webhooks' CAs, so only then is that waited for.
    pub pods_run: bool,
}

pub(super) fn sha256(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

impl Common {
    pub fn new(
        component: Component,
        tools: Tools,
        base_dir: PathBuf,
        cluster_ready: Vec<StepId>,
        pods_run: bool,
    ) -> Self {
        Common {
            component,
            tools,
            base_dir,
            cluster_ready,
            pods_run,
        }
    }

    pub(super) fn id(&self) -> StepId {
        StepId::new("component", &self.component.name)
    }

    pub(super) fn needs(&self) -> Vec<StepId> {
        self.cluster_ready
            .iter()
            .cloned()
            .chain(
                self.component
                    .needs
                    .iter()
                    .map(|n| StepId::new("component", n)),
            )
            .collect()
    }

    /// What `plan` shows for the component offline, with the step's own commands and files.
    pub(super) fn description(
        &self,
        commands: Vec<String>,
        files: Vec<crate::step::ShownFile>,
    ) -> Description {
        let c = &self.component;
        Description {
            source: c.source.describe(),
            commands,
            objects: vec![format!("namespace {}", c.namespace)],
            files,
            component: Some(serde_json::json!({
                "name": c.name,
                "source": c.source,
                "namespace": c.namespace,
                "release": c.release,
                "needs": c.needs,
                "values": c.values,
                "timeout_s": c.timeout.as_secs(),
                "base_dir": self.base_dir,
            })),
        }
    }

    pub(super) fn version(&self) -> String {
        match &self.component.source {
            Source::Helm { version, .. } | Source::Oci { version, .. } => version.clone(),
            Source::Chart { .. } => "local".into(),
            Source::Kustomize { paths } => paths
                .iter()
                .filter_map(|p| p.split_once("?ref=").map(|(_, r)| r.to_string()))
                .next()
                .unwrap_or_else(|| "local".into()),
        }
    }

    pub(super) fn record(
        &self,
        state: RecordState,
        hash: String,
        objects: Vec<ObjectRef>,
        created_namespaces: Vec<String>,
    ) -> Record {
        Record {
            state,
            source: self.component.source.describe(),
            version: self.version(),
            hash,
            objects,
            // A kustomization has no helm release.
            release: (!matches!(self.component.source, Source::Kustomize { .. }))
                .then(|| format!("{}/{}", self.component.namespace, self.component.release)),
            created_namespaces,
            time: inventory::now(),
        }
    }

    pub(super) async fn write(&self, ctx: &Ctx, record: &Record) -> StepResult<()> {
        inventory::write(ctx.kube().await?, &ctx.namespace, &self.id(), record)
            .await
            .map_err(|e| StepError::context("recording the step in the inventory", e))
    }

    /// Namespaces kgf-up creates are recorded so `down` removes them; pre-existing ones are not.
    /// A namespace still terminating (an earlier `down`, or a user's delete) is waited out first:
    /// nothing can be created in it, and once gone it is kgf-up's to create.
    pub(super) async fn namespace_created(
        &self,
        ctx: &Ctx,
        kube: &Kube,
    ) -> StepResult<Vec<String>> {
        let ns = &self.component.namespace;
        let previous = ctx
            .inventory()
            .await?
            .get(&self.id())
            .map(|r| r.created_namespaces.clone())
            .unwrap_or_default();
        if previous.contains(ns) {
            return Ok(previous);
        }
        let api: Api<Namespace> = Api::all(kube.client());
        let found = api
            .get_opt(ns)
            .await
            .map_err(|e| StepError::context(format!("reading namespace {ns}"), e))?;
        let exists = match found {
            Some(n) if n.metadata.deletion_timestamp.is_some() => {
                tracing::info!(namespace = %ns, "waiting for the terminating namespace to go");
                let r = ObjectRef::namespace(ns);
                kube.wait_deleted(&r, self.component.timeout)
                    .await
                    .map_err(|e| {
                        StepError::context(format!("namespace {ns} is being deleted"), e).with_fix(
                            format!("see what holds it: kubectl get namespace {ns} -o yaml (status.conditions); then run `kgf-up up` again"),
                        )
                    })?;
                false
            }
            found => found.is_some(),
        };
        Ok(if exists { previous } else { vec![ns.clone()] })
    }
}

/// The references objects will have once applied, known before applying (namespace defaulted,
/// even for cluster-scoped kinds: the apply's own references replace these).
pub(super) fn intended_refs(objects: &[DynamicObject], namespace: &str) -> Vec<ObjectRef> {
    objects.iter().map(|o| written_ref(o, namespace)).collect()
}

/// `intended` defaults every namespace, `recorded` (from the apply) has none for cluster-scoped
/// kinds: a recorded object without one matches by kind and name.
pub(super) fn same_object(intended: &ObjectRef, recorded: &ObjectRef) -> bool {
    intended.kind == recorded.kind
        && intended.name == recorded.name
        && (recorded.namespace.is_none() || intended.namespace == recorded.namespace)
}

/// The record written during this run (the run's inventory snapshot predates it).
pub(super) async fn fresh_record(kube: &Kube, namespace: &str, id: &StepId) -> StepResult<Record> {
    inventory::Inventory::read(kube, namespace)
        .await
        .map_err(|e| StepError::context("reading the inventory", e))?
        .get(id)
        .cloned()
        .ok_or_else(|| StepError::new(format!("{id} has no inventory record after applying")))
}
