//! The step that installs one component: observe compares the cluster with the inventory and the
//! desired content hash, apply installs (helm) or server-side applies (kustomize), wait checks
//! readiness and, on timeout, diagnoses the component's namespace.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};
use sha2::{Digest, Sha256};

use super::{Component, local_path};
use crate::exec::Cmd;
use crate::helm::{ChartSource, Helm, HelmVersion, Release};
use crate::inventory::{self, Record, RecordState};
use crate::kube::{Conflicts, Kube, ObjectRef, parse_manifests};
use crate::profile::{Source, Tools};
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};

pub struct ComponentStep {
    pub component: Component,
    pub tools: Tools,
    pub base_dir: PathBuf,
    /// The cluster's steps that must be done before anything is installed on it.
    pub cluster_ready: Vec<StepId>,
    /// Values the cluster step found out during this run (rke2's containerd and drivers for the
    /// GPU operator), merged under the component's own: the profile still wins.
    detected: Option<DetectValues>,
    /// Whether the cluster's pods run (not on `sim`): only then does cert-manager's CA injector
    /// fill webhooks' CAs, so only then is that waited for.
    pub pods_run: bool,
    /// A rewrite of the rendered kustomize objects before they are applied (the object store's
    /// wiring of Kubeflow Pipelines); its result is what the content hash covers.
    transform: Option<Transform>,
    rendered: Mutex<Option<Rendered>>,
}

/// An annotation a transform puts on objects whose fields kgf-up takes over from any other field
/// manager (a stale `kfp-launcher` someone else made in a namespace that runs pipelines).
pub const TAKE_OVER: &str = "kgf-up.io/take-over";

/// Rewrites rendered objects; may read the cluster (a Secret's keys).
pub type Transform = std::sync::Arc<
    dyn for<'a> Fn(&'a Ctx, Vec<DynamicObject>) -> BoxFuture<'a, StepResult<Vec<DynamicObject>>>
        + Send
        + Sync,
>;

/// Values found during the run; `None` when there is nothing to add.
pub type DetectValues =
    std::sync::Arc<dyn Fn() -> StepResult<Option<serde_json::Value>> + Send + Sync>;

#[derive(Clone)]
struct Rendered {
    objects: Vec<DynamicObject>,
    hash: String,
}

fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl ComponentStep {
    pub fn new(
        component: Component,
        tools: Tools,
        base_dir: PathBuf,
        cluster_ready: Vec<StepId>,
    ) -> Self {
        ComponentStep {
            component,
            tools,
            base_dir,
            cluster_ready,
            detected: None,
            pods_run: true,
            transform: None,
            rendered: Mutex::new(None),
        }
    }

    pub fn with_transform(mut self, transform: Transform) -> Self {
        self.transform = Some(transform);
        self
    }

    pub fn with_detected_values(mut self, detect: DetectValues) -> Self {
        self.detected = Some(detect);
        self
    }

    /// The helm values of this run: what was detected, with the component's values over it.
    fn values(&self) -> StepResult<serde_json::Value> {
        let own = &self.component.values;
        match self.detected.as_ref().map(|d| d()).transpose()?.flatten() {
            Some(mut detected) => {
                super::deep_merge(&mut detected, own);
                Ok(detected)
            }
            None => Ok(own.clone()),
        }
    }

    fn is_helm(&self) -> bool {
        !matches!(self.component.source, Source::Kustomize { .. })
    }

    fn version(&self) -> String {
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

    /// The hash that decides whether a helm release must be upgraded: source, version, values.
    fn helm_hash(&self) -> StepResult<String> {
        let c = &self.component;
        let manifests: Vec<&str> = c.manifests.iter().map(|m| m.yaml).collect();
        Ok(sha256(
            serde_json::json!({
                "source": c.source.describe(), "values": self.values()?, "manifests": manifests
            })
            .to_string()
            .as_bytes(),
        ))
    }

    async fn helm(&self, ctx: &Ctx) -> StepResult<Helm> {
        Helm::detect(ctx.exec.clone(), &self.tools.helm, ctx.kubeconfig()?)
            .await
            .map_err(StepError::from)
    }

    fn chart(&self) -> ChartSource {
        super::chart_source(&self.component.source, &self.base_dir)
            .expect("kustomize sources are not helm releases")
    }

    fn release(&self, ctx: &Ctx) -> StepResult<Release> {
        Ok(self.release_with(
            self.values()?,
            ctx.work_dir
                .join(format!("{}-values.json", self.component.name)),
        ))
    }

    /// The release as kgf-up installs it: the chart's `crds/` are applied by kgf-up first.
    fn release_with(&self, values: serde_json::Value, values_file: impl Into<PathBuf>) -> Release {
        let c = &self.component;
        let mut release = Release::new(
            &c.release,
            &c.namespace,
            self.chart(),
            values,
            values_file,
            c.timeout,
        );
        release.skip_crds = true;
        release
    }

    /// Renders the kustomizations (read-only: `kustomize build`), once per run.
    async fn render(&self, ctx: &Ctx) -> StepResult<Rendered> {
        if let Some(r) = self.rendered.lock().expect("not poisoned").clone() {
            return Ok(r);
        }
        let Source::Kustomize { paths } = &self.component.source else {
            unreachable!("render is for kustomize sources")
        };
        let mut yaml = String::new();
        for path in paths {
            let target = local_path(&self.base_dir, path);
            let out = ctx
                .exec
                .run_async(
                    Cmd::new(&self.tools.kustomize)
                        .args(["build", &target])
                        .timeout(Duration::from_secs(300)),
                )
                .await
                .map_err(|e| {
                    StepError::context(format!("rendering {target}"), e).with_fix(
                        "check the path or URL and its ?ref=, and that kustomize 5.x is installed",
                    )
                })?;
            yaml.push_str(&out.stdout);
            yaml.push_str("\n---\n");
        }
        // kgf-up's own manifests ride with the rendered objects: applied, recorded, compared
        // and removed with them.
        for m in &self.component.manifests {
            yaml.push_str(m.yaml);
            yaml.push_str("\n---\n");
        }
        let objects = parse_manifests(
            &yaml,
            &format!("kustomize build of {}", self.component.name),
        )
        .map_err(|e| StepError::context("reading the rendered manifests", e))?;
        let rendered = match &self.transform {
            None => Rendered {
                objects,
                hash: sha256(yaml.as_bytes()),
            },
            Some(transform) => {
                let objects = transform(ctx, objects).await?;
                let text = serde_json::to_string(&objects).expect("objects serialize");
                Rendered {
                    objects,
                    hash: sha256(text.as_bytes()),
                }
            }
        };
        *self.rendered.lock().expect("not poisoned") = Some(rendered.clone());
        Ok(rendered)
    }

    /// helm compares the deployed release (status, chart, version, values) with the profile;
    /// the inventory says whether kgf-up finished recording it.
    async fn observe_helm(&self, ctx: &Ctx) -> StepResult<Observation> {
        let helm = self.helm(ctx).await?;
        let seen = helm
            .observe(&self.release(ctx)?)
            .await
            .map_err(StepError::from)?;
        if !seen.is_converged() {
            return Ok(seen);
        }
        let record = match ctx.inventory().await?.get(&self.id()) {
            None => {
                return Ok(Observation::drifted(
                    "the release is deployed but not in kgf-up's inventory",
                ));
            }
            Some(r) if r.state != RecordState::Done => {
                return Ok(Observation::drifted(
                    "an earlier up stopped before this release was recorded",
                ));
            }
            Some(r) => r.clone(),
        };
        if record.hash != self.helm_hash()? {
            return Ok(Observation::drifted(
                "the chart, its values or kgf-up's own manifests changed since the last install",
            ));
        }
        let kube = ctx.kube().await?;
        for r in intended_refs(&self.own_manifests()?, &self.component.namespace) {
            if !kube
                .exists(&r)
                .await
                .map_err(|e| StepError::context("reading the cluster", e))?
            {
                return Ok(Observation::drifted(format!("{r} was deleted")));
            }
        }
        Ok(seen)
    }

    async fn observe_kustomize(&self, ctx: &Ctx) -> StepResult<Observation> {
        let rendered = self.render(ctx).await?;
        let kube = ctx.kube().await?;
        let record = ctx.inventory().await?.get(&self.id());
        let Some(record) = record else {
            return Ok(Observation::missing(format!(
                "{} objects to apply",
                rendered.objects.len()
            )));
        };
        if record.state != RecordState::Done {
            return Ok(Observation::drifted("an earlier up stopped while applying"));
        }
        if record.hash != rendered.hash {
            return Ok(Observation::drifted(
                "the rendered manifests changed since the last apply",
            ));
        }
        // A volume claim kept from an earlier apply (no longer rendered) may go away: not drift.
        let intended = intended_refs(&rendered.objects, &self.component.namespace);
        for r in &record.objects {
            if !intended.iter().any(|i| same_object(i, r)) {
                continue;
            }
            if !kube
                .exists(r)
                .await
                .map_err(|e| StepError::context("reading the cluster", e))?
            {
                return Ok(Observation::drifted(format!("{r} was deleted")));
            }
        }
        Ok(Observation::converged(format!(
            "{} objects applied, manifests unchanged",
            record.objects.len()
        )))
    }

    fn record(
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
            release: self
                .is_helm()
                .then(|| format!("{}/{}", self.component.namespace, self.component.release)),
            created_namespaces,
            time: inventory::now(),
        }
    }

    async fn write(&self, ctx: &Ctx, record: &Record) -> StepResult<()> {
        inventory::write(ctx.kube().await?, &ctx.namespace, &self.id(), record)
            .await
            .map_err(|e| StepError::context("recording the step in the inventory", e))
    }

    /// Namespaces kgf-up creates are recorded so `down` removes them; pre-existing ones are not.
    /// A namespace still terminating (an earlier `down`, or a user's delete) is waited out first:
    /// nothing can be created in it, and once gone it is kgf-up's to create.
    async fn namespace_created(&self, ctx: &Ctx, kube: &Kube) -> StepResult<Vec<String>> {
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

    async fn crd_names(kube: &Kube) -> StepResult<Vec<String>> {
        let api: Api<CustomResourceDefinition> = Api::all(kube.client());
        Ok(api
            .list(&ListParams::default())
            .await
            .map_err(|e| StepError::context("listing CRDs", e))?
            .items
            .iter()
            .map(|c| c.name_any())
            .collect())
    }

    /// The chart's `crds/`, parsed.
    async fn chart_crds(&self, helm: &Helm) -> StepResult<Vec<DynamicObject>> {
        let yaml = helm
            .chart_crds(&self.chart())
            .await
            .map_err(StepError::from)?;
        parse_manifests(&yaml, &format!("the CRDs of chart {}", self.chart()))
            .map_err(|e| StepError::context("reading the chart's crds/", e))
    }

    /// kgf-up's own manifests for this component, parsed.
    fn own_manifests(&self) -> StepResult<Vec<DynamicObject>> {
        let mut objects = Vec::new();
        for m in &self.component.manifests {
            objects.extend(
                parse_manifests(m.yaml, m.path)
                    .map_err(|e| StepError::context("reading kgf-up's own manifests", e))?,
            );
        }
        Ok(objects)
    }

    async fn apply_helm(&self, ctx: &Ctx) -> StepResult<()> {
        let c = &self.component;
        let kube = ctx.kube().await?;
        let helm = self.helm(ctx).await?;
        let created = self.namespace_created(ctx, kube).await?;
        let mut objects = ctx
            .inventory()
            .await?
            .get(&self.id())
            .map(|r| r.objects.clone())
            .unwrap_or_default();
        if c.name == "minio" {
            // Root credentials: generated once into a Secret, never printed, reused later.
            super::secrets::ensure_minio_root(kube, &c.namespace).await?;
            let secret = ObjectRef {
                api_version: "v1".into(),
                kind: "Secret".into(),
                namespace: Some(c.namespace.clone()),
                name: "minio-root".into(),
            };
            if !objects.contains(&secret) {
                objects.push(secret);
            }
        }
        // helm creates a chart's crds/ on first install only and never upgrades or removes them,
        // so kgf-up applies them itself on every install and upgrade. The ones about to be created
        // are recorded first, so `down` removes them even after an interrupted run; the ones that
        // were there before (a user's, an older install's) are upgraded but never removed.
        let crds = self.chart_crds(&helm).await?;
        let existing = Self::crd_names(kube).await?;
        for crd in &crds {
            let r = ObjectRef::crd(&crd.name_any());
            if !existing.contains(&r.name) && !objects.contains(&r) {
                objects.push(r);
            }
        }
        let own = self.own_manifests()?;
        let intended = intended_refs(&own, &c.namespace);
        for r in &intended {
            if !objects.contains(r) {
                objects.push(r.clone());
            }
        }
        self.write(
            ctx,
            &self.record(
                RecordState::Applying,
                self.helm_hash()?,
                objects.clone(),
                created.clone(),
            ),
        )
        .await?;
        kube.apply(&crds, &c.namespace, c.timeout, Conflicts::TakeOver)
            .await
            .map_err(|e| StepError::context(format!("applying the CRDs of {}", c.name), e))?;
        // install() first recovers a release an interrupted helm left pending.
        if let Err(e) = helm.install(&self.release(ctx)?).await {
            let diagnosis = kube.diagnose(&c.namespace).await;
            return Err(StepError::from(e).with_diagnosis(diagnosis));
        }
        let applied = kube
            .apply(&own, &c.namespace, c.timeout, Conflicts::Refuse)
            .await
            .map_err(|e| {
                StepError::context(format!("applying kgf-up's manifests for {}", c.name), e)
            })?;
        objects.retain(|r| !intended.contains(r));
        objects.extend(
            applied
                .into_iter()
                .filter(|r| !objects.contains(r))
                .collect::<Vec<_>>(),
        );
        self.write(
            ctx,
            &self.record(RecordState::Done, self.helm_hash()?, objects, created),
        )
        .await
    }

    async fn apply_kustomize(&self, ctx: &Ctx) -> StepResult<()> {
        let c = &self.component;
        let rendered = self.render(ctx).await?;
        let kube = ctx.kube().await?;
        let created = self.namespace_created(ctx, kube).await?;
        // Recorded before applying, by name, so an interrupted apply can still be cleaned up;
        // objects of the last apply that are no longer rendered stay recorded until removed.
        let intended = intended_refs(&rendered.objects, &c.namespace);
        let previous = ctx
            .inventory()
            .await?
            .get(&self.id())
            .map(|r| r.objects.clone())
            .unwrap_or_default();
        let (stale, kept) = stale_objects(&previous, &intended);
        let mut recorded = intended.clone();
        recorded.extend(stale.iter().chain(&kept).cloned());
        self.write(
            ctx,
            &self.record(
                RecordState::Applying,
                rendered.hash.clone(),
                recorded,
                created.clone(),
            ),
        )
        .await?;
        let mut objects = rendered.objects.clone();
        if created.contains(&c.namespace)
            && !objects.iter().any(|o| {
                o.types.as_ref().map(|t| t.kind.as_str()) == Some("Namespace")
                    && o.name_any() == c.namespace
            })
        {
            let ns: DynamicObject = serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": c.namespace}
            }))
            .expect("a namespace object");
            objects.insert(0, ns);
            objects = {
                let yaml = objects
                    .iter()
                    .map(|o| serde_json::to_string(o).expect("serializes"))
                    .collect::<Vec<_>>()
                    .join("\n---\n");
                parse_manifests(&yaml, "namespaced manifests").expect("re-parses what it wrote")
            };
        }
        let (taken, objects): (Vec<_>, Vec<_>) = objects
            .into_iter()
            .partition(|o| o.annotations().contains_key(TAKE_OVER));
        let mut applied = kube
            .apply(&objects, &c.namespace, c.timeout, Conflicts::Refuse)
            .await
            .map_err(|e| StepError::context(format!("applying {}", c.name), e))?;
        applied.extend(
            kube.apply(&taken, &c.namespace, c.timeout, Conflicts::TakeOver)
                .await
                .map_err(|e| StepError::context(format!("applying {}", c.name), e))?,
        );
        for r in &stale {
            tracing::info!(object = %r, "no longer rendered: removing it");
            kube.delete(r, c.timeout)
                .await
                .map_err(|e| StepError::context(format!("removing {r}, no longer rendered"), e))?;
        }
        applied.extend(
            kept.into_iter()
                .filter(|r| !applied.contains(r))
                .collect::<Vec<_>>(),
        );
        // Still `applying`: the record turns `done` only once every object is ready (wait).
        self.write(
            ctx,
            &self.record(
                RecordState::Applying,
                rendered.hash.clone(),
                applied,
                created,
            ),
        )
        .await
    }

    async fn wait_healthy(&self, ctx: &Ctx) -> StepResult<()> {
        let kube = ctx.kube().await?;
        let deadline = tokio::time::Instant::now() + self.component.timeout;
        loop {
            match super::health::verify(kube, &self.component, false).await {
                Ok(_) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(component = %self.component.name, error = %e.message, "not healthy yet")
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if self.pods_run {
            self.wait_webhook_cas(kube, deadline).await?;
        }
        Ok(())
    }

    /// Waits until every webhook configuration of the release that asks cert-manager for its CA
    /// has it: before that the API server refuses whatever the webhook validates (KServe's
    /// runtimes, say), though the webhook's Service already has endpoints.
    async fn wait_webhook_cas(
        &self,
        kube: &Kube,
        deadline: tokio::time::Instant,
    ) -> StepResult<()> {
        let c = &self.component;
        let webhooks = release_webhooks(kube, &c.release, &c.namespace)
            .await
            .map_err(|e| StepError::context(format!("listing the webhooks of {}", c.name), e))?;
        for r in &webhooks {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            kube.wait_ready(r, left).await.map_err(|e| {
                StepError::context(format!("waiting for {}", c.name), e).with_fix(
                    "cert-manager's CA injector fills the caBundle: check `kubectl -n cert-manager \
                     logs deploy/cert-manager-cainjector` and the Certificate the webhook's \
                     `cert-manager.io/inject-ca-from` annotation names",
                )
            })?;
        }
        Ok(())
    }

    /// Waits for every object of the latest record by its kind's readiness rule, then marks the
    /// record done: a component that never got ready is applied and waited for again next time.
    async fn wait_recorded(&self, ctx: &Ctx, kube: &Kube) -> StepResult<()> {
        let c = &self.component;
        let mut record = fresh_record(kube, &ctx.namespace, &self.id()).await?;
        let started = tokio::time::Instant::now();
        for r in &record.objects {
            let left = c.timeout.saturating_sub(started.elapsed());
            if let Err(e) = kube.wait_ready(r, left).await {
                let ns = r.namespace.clone().unwrap_or_else(|| c.namespace.clone());
                return Err(StepError::context(format!("waiting for {}", c.name), e)
                    .with_fix("see the pods below; fix the cause and run `kgf-up up` again")
                    .with_diagnosis(kube.diagnose(&ns).await));
            }
        }
        record.state = RecordState::Done;
        record.time = inventory::now();
        self.write(ctx, &record).await
    }
}

/// The webhook configurations helm made for `release` in `namespace` (by helm's own ownership
/// annotations, which every object of a release carries).
async fn release_webhooks(
    kube: &Kube,
    release: &str,
    namespace: &str,
) -> Result<Vec<ObjectRef>, kube::Error> {
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    fn owned<K: kube::Resource>(o: &K, release: &str, namespace: &str) -> bool {
        let a = o.meta().annotations.as_ref();
        let get = |k: &str| a.and_then(|a| a.get(k)).map(String::as_str);
        get("meta.helm.sh/release-name") == Some(release)
            && get("meta.helm.sh/release-namespace") == Some(namespace)
    }
    let webhook = |kind: &str, name: String| ObjectRef {
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: kind.into(),
        namespace: None,
        name,
    };
    let mut refs = Vec::new();
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(kube.client());
    for w in validating.list(&ListParams::default()).await?.items {
        if owned(&w, release, namespace) {
            refs.push(webhook("ValidatingWebhookConfiguration", w.name_any()));
        }
    }
    let mutating: Api<MutatingWebhookConfiguration> = Api::all(kube.client());
    for w in mutating.list(&ListParams::default()).await?.items {
        if owned(&w, release, namespace) {
            refs.push(webhook("MutatingWebhookConfiguration", w.name_any()));
        }
    }
    Ok(refs)
}

/// The references objects will have once applied, known before applying (namespace defaulted,
/// even for cluster-scoped kinds: the apply's own references replace these).
fn intended_refs(objects: &[DynamicObject], namespace: &str) -> Vec<ObjectRef> {
    objects
        .iter()
        .map(|o| {
            let t = o.types.as_ref().expect("parsed objects have types");
            ObjectRef {
                api_version: t.api_version.clone(),
                kind: t.kind.clone(),
                namespace: o
                    .metadata
                    .namespace
                    .clone()
                    .or_else(|| Some(namespace.to_string())),
                name: o.name_any(),
            }
        })
        .collect()
}

/// Objects of the last apply that this one no longer renders: removed (`stale`), except volume
/// claims (`kept`), whose data stays until `down` (a store switched away from keeps its data).
fn stale_objects(
    previous: &[ObjectRef],
    intended: &[ObjectRef],
) -> (Vec<ObjectRef>, Vec<ObjectRef>) {
    previous
        .iter()
        .filter(|r| !intended.iter().any(|i| same_object(i, r)))
        .cloned()
        .partition(|r| r.kind != "PersistentVolumeClaim")
}

/// `intended` defaults every namespace, `recorded` (from the apply) has none for cluster-scoped
/// kinds: a recorded object without one matches by kind and name.
fn same_object(intended: &ObjectRef, recorded: &ObjectRef) -> bool {
    intended.kind == recorded.kind
        && intended.name == recorded.name
        && (recorded.namespace.is_none() || intended.namespace == recorded.namespace)
}

/// The record written during this run (the run's inventory snapshot predates it).
async fn fresh_record(kube: &Kube, namespace: &str, id: &StepId) -> StepResult<Record> {
    inventory::Inventory::read(kube, namespace)
        .await
        .map_err(|e| StepError::context("reading the inventory", e))?
        .get(id)
        .cloned()
        .ok_or_else(|| StepError::new(format!("{id} has no inventory record after applying")))
}

impl Step for ComponentStep {
    fn id(&self) -> StepId {
        StepId::new("component", &self.component.name)
    }

    fn needs(&self) -> Vec<StepId> {
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

    fn describe(&self) -> Description {
        let c = &self.component;
        let commands = if self.is_helm() {
            // The command as helm 3 would get it; plan runs nothing, not even `helm version`.
            let kubeconfig = crate::step::Kubeconfig {
                path: "<kubeconfig>".into(),
                context: None,
            };
            let version = HelmVersion {
                major: 3,
                minor: 22,
                patch: 0,
            };
            let helm = Helm::new(
                crate::exec::Exec::dry_run(),
                &self.tools.helm,
                version,
                &kubeconfig,
            );
            // Values detected during the run (rke2's GPU hosts) are not known to `plan`.
            let release = self.release_with(
                c.values.clone(),
                format!("<work dir>/{}-values.json", c.name),
            );
            vec![
                format!(
                    "{} | server-side apply --force-conflicts",
                    helm.show_crds_cmd(&self.chart()).display()
                ),
                helm.upgrade_cmd(&release).display(),
            ]
            .into_iter()
            .chain(
                c.manifests
                    .iter()
                    .map(|m| format!("server-side apply {} (built into kgf-up)", m.path)),
            )
            .collect()
        } else {
            let Source::Kustomize { paths } = &c.source else {
                unreachable!()
            };
            paths
                .iter()
                .map(|p| {
                    format!(
                        "{} build {} | server-side apply (CRDs first)",
                        self.tools.kustomize, p
                    )
                })
                .collect()
        };
        Description {
            source: c.source.describe(),
            commands,
            objects: vec![format!("namespace {}", c.namespace)],
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

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        async move {
            if self.is_helm() {
                self.observe_helm(ctx).await
            } else {
                self.observe_kustomize(ctx).await
            }
        }
        .boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx, _: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if self.is_helm() {
                self.apply_helm(ctx).await
            } else {
                self.apply_kustomize(ctx).await
            }
        }
        .boxed()
    }

    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move {
            if self.is_helm() {
                // helm --wait waited for the release's workloads; what it cannot see (a webhook
                // Service with ready endpoints, CRDs Established) is waited for here, so the
                // components that need this one do not meet "connection refused".
                self.wait_healthy(ctx).await
            } else {
                self.wait_recorded(ctx, ctx.kube().await?).await
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;

    #[test]
    fn objects_no_longer_rendered_are_removed_but_volume_claims_kept() {
        let r = |kind: &str, ns: Option<&str>, name: &str| ObjectRef {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: ns.map(str::to_string),
            name: name.into(),
        };
        let previous = vec![
            r("Deployment", Some("kf"), "seaweedfs"),
            r("PersistentVolumeClaim", Some("kf"), "seaweedfs-pvc"),
            r("ConfigMap", Some("kf"), "kfp-launcher"),
            r("ConfigMap", Some("team"), "kfp-launcher"),
            // Cluster-scoped: recorded without a namespace, intended with the default one.
            r("CustomResourceDefinition", None, "workflows.argoproj.io"),
        ];
        let intended = vec![
            r("ConfigMap", Some("kf"), "kfp-launcher"),
            r(
                "CustomResourceDefinition",
                Some("kf"),
                "workflows.argoproj.io",
            ),
        ];
        let (stale, kept) = stale_objects(&previous, &intended);
        assert_eq!(
            stale,
            [
                r("Deployment", Some("kf"), "seaweedfs"),
                r("ConfigMap", Some("team"), "kfp-launcher")
            ]
        );
        assert_eq!(
            kept,
            [r("PersistentVolumeClaim", Some("kf"), "seaweedfs-pvc")]
        );
    }

    #[test]
    fn detected_values_go_under_the_components_own() {
        let component = Component {
            name: "gpu-operator".into(),
            source: Source::Chart { path: "x".into() },
            namespace: "gpu-operator".into(),
            release: "gpu-operator".into(),
            needs: Vec::new(),
            values: json!({"driver": {"enabled": true}, "toolkit": {"version": "pinned"}}),
            timeout: Duration::from_secs(1),
            manifests: Vec::new(),
        };
        let plain = ComponentStep::new(component.clone(), Tools::default(), PathBuf::new(), vec![]);
        assert_eq!(plain.values().unwrap(), component.values);
        let detected = ComponentStep::new(component, Tools::default(), PathBuf::new(), vec![])
            .with_detected_values(Arc::new(|| {
                Ok(Some(
                    json!({"driver": {"enabled": false}, "toolkit": {"enabled": true}}),
                ))
            }));
        assert_eq!(
            detected.values().unwrap(),
            json!({"driver": {"enabled": true}, "toolkit": {"enabled": true, "version": "pinned"}}),
            "the profile's driver.enabled wins over the detected one"
        );
    }
}
