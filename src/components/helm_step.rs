//! The step that installs a component from a chart: observe compares the release's record (chart,
//! version, status, values) with the profile and the inventory; apply applies the chart's CRDs,
//! installs or upgrades the release (recovering one an interrupted helm left stuck) and applies
//! kgf-up's own manifests; wait checks the component's health and its webhooks' CAs.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, ListParams};

use super::builtin;
use super::component::{chart_source, deep_merge};
use super::step::{Common, DetectValues, intended_refs, sha256};
use crate::gate::Change;
use crate::helm::{ChartSource, Helm, HelmVersion, Release, records};
use crate::inventory::RecordState;
use crate::kube::{Conflicts, Kube, ObjectRef, parse_manifests};
use crate::profile::Source;
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};
use crate::wait::{self, Seen, Stop};

pub struct HelmStep {
    common: Common,
    /// Values the cluster step found out during this run (rke2's containerd and drivers for the
    /// GPU operator), merged under the component's own: the profile still wins.
    detected: Option<DetectValues>,
}

impl HelmStep {
    pub fn new(common: Common, detected: Option<DetectValues>) -> Self {
        HelmStep { common, detected }
    }

    /// The helm values of this run: what was detected, with the component's values over it.
    fn values(&self) -> StepResult<serde_json::Value> {
        let own = &self.common.component.values;
        match self.detected.as_ref().map(|d| d()).transpose()?.flatten() {
            Some(mut detected) => {
                deep_merge(&mut detected, own);
                Ok(detected)
            }
            None => Ok(own.clone()),
        }
    }

    /// The hash that decides whether a helm release must be upgraded: source, version, values.
    fn helm_hash(&self) -> StepResult<String> {
        let c = &self.common.component;
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
        Helm::detect(ctx.exec.clone(), &self.common.tools.helm, ctx.kubeconfig()?)
            .await
            .map_err(StepError::from)
    }

    fn chart(&self) -> ChartSource {
        chart_source(&self.common.component.source, &self.common.base_dir)
            .expect("kustomize sources are not helm releases")
    }

    fn release(&self, ctx: &Ctx) -> StepResult<Release> {
        Ok(self.release_with(
            self.values()?,
            ctx.work_dir
                .join(format!("{}-values.json", self.common.component.name)),
        ))
    }

    /// The release as kgf-up installs it: the chart's `crds/` are applied by kgf-up first.
    fn release_with(&self, values: serde_json::Value, values_file: impl Into<PathBuf>) -> Release {
        let c = &self.common.component;
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

    /// helm compares the deployed release (status, chart, version, values) with the profile;
    /// the inventory says whether kgf-up finished recording it.
    async fn observe_helm(&self, ctx: &Ctx) -> StepResult<Observation> {
        let helm = self.helm(ctx).await?;
        let kube = ctx.kube().await?;
        let seen = Observation::from(
            helm.observe(&self.release(ctx)?, kube.client())
                .await
                .map_err(StepError::from)?,
        );
        if !seen.is_converged() {
            return Ok(seen);
        }
        let record = match ctx.inventory().await?.get(&self.common.id()) {
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
        for r in intended_refs(&self.own_manifests()?, &self.common.component.namespace) {
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
        for m in &self.common.component.manifests {
            objects.extend(
                parse_manifests(m.yaml, m.path)
                    .map_err(|e| StepError::context("reading kgf-up's own manifests", e))?,
            );
        }
        Ok(objects)
    }

    async fn apply_helm(&self, ctx: &Ctx) -> StepResult<()> {
        let c = &self.common.component;
        let kube = ctx.kube().await?;
        let helm = self.helm(ctx).await?;
        let created = self.common.namespace_created(ctx, kube).await?;
        let mut objects = ctx
            .inventory()
            .await?
            .get(&self.common.id())
            .map(|r| r.objects.clone())
            .unwrap_or_default();
        if let Some(before) = builtin::find(&c.name).and_then(|b| b.before_install) {
            for made in before(kube, c).await? {
                if !objects.contains(&made) {
                    objects.push(made);
                }
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
        self.common
            .write(
                ctx,
                &self.common.record(
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
        let release = self.release(ctx)?;
        let stored = records::latest(kube.client(), &c.release, &c.namespace)
            .await
            .map_err(StepError::from)?;
        let change = release_change(&release, &self.common.component.source, stored.as_ref());
        if let Err(e) = ctx.gate().change(change, helm.install(&release)).await {
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
        self.common
            .write(
                ctx,
                &self
                    .common
                    .record(RecordState::Done, self.helm_hash()?, objects, created),
            )
            .await
    }

    async fn wait_healthy(&self, ctx: &Ctx) -> StepResult<()> {
        let kube = ctx.kube().await?;
        let deadline = tokio::time::Instant::now() + self.common.component.timeout;
        // Not healthy yet is the health check's error; the last one is the reason on timeout.
        let last = Mutex::new(None);
        let healthy = wait::until(
            self.common.component.timeout,
            Duration::from_secs(2),
            || async {
                match super::verify::verify(kube, &self.common.component, false).await {
                    Ok(_) => Ok::<_, StepError>(Seen::Ready(())),
                    Err(e) => {
                        let message = e.message.clone();
                        *last.lock().expect("not poisoned") = Some(e);
                        Ok(Seen::Not(message))
                    }
                }
            },
        );
        if let Err(Stop::TimedOut { .. } | Stop::Failed(_)) = healthy.await {
            let last = last.into_inner().expect("not poisoned");
            return Err(last.unwrap_or_else(|| StepError::new("the health check never ran")));
        }
        if self.common.pods_run {
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
        let c = &self.common.component;
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
}

/// What installing or upgrading `release` changes: the chart and version, and every values key
/// that differs from the deployed revision's (all of them for a first install).
fn release_change(release: &Release, source: &Source, stored: Option<&records::Stored>) -> Change {
    let empty = serde_json::json!({});
    let (summary, deployed) = match stored {
        None => (
            format!(
                "install helm release {} from {}",
                release.id(),
                source.describe()
            ),
            &empty,
        ),
        Some(s) => (
            format!(
                "upgrade helm release {} (revision {}, {} {}, {}) to {}",
                release.id(),
                s.latest.revision,
                s.latest.chart,
                s.latest.version,
                s.latest.status,
                source.describe()
            ),
            &s.values,
        ),
    };
    let changes = crate::helm::value_changes(deployed, &release.values);
    let detail = if changes.is_empty() {
        vec!["values: unchanged".to_string()]
    } else {
        std::iter::once("values:".to_string())
            .chain(changes.into_iter().map(|c| format!("  {c}")))
            .collect()
    };
    Change::new(summary).with_detail(detail)
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

impl Step for HelmStep {
    fn id(&self) -> StepId {
        self.common.id()
    }

    fn needs(&self) -> Vec<StepId> {
        self.common.needs()
    }

    fn describe(&self) -> Description {
        let c = &self.common.component;
        let commands = {
            // The command as helm 3 would get it; plan runs nothing, not even `helm version`.
            let kubeconfig = crate::kube::Kubeconfig {
                path: "<kubeconfig>".into(),
                context: None,
            };
            let version = HelmVersion {
                major: 3,
                minor: 22,
                patch: 0,
            };
            let helm = Helm::new(
                crate::exec::Exec::new(),
                &self.common.tools.helm,
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
        };
        // The values file as the offline plan shows it: the profile's values (what the run
        // detects, rke2's GPU hosts, is not known without the hosts).
        let files = vec![crate::step::ShownFile {
            path: format!("<work dir>/{}-values.json", c.name),
            content: serde_json::to_string_pretty(&c.values).expect("values serialize"),
        }];
        self.common.description(commands, files)
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        self.observe_helm(ctx).boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx, _: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        self.apply_helm(ctx).boxed()
    }

    /// helm --wait waited for the release's workloads; what it cannot see (a webhook Service with
    /// ready endpoints, CRDs Established) is waited for here, so the components that need this
    /// one do not meet "connection refused".
    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        self.wait_healthy(ctx).boxed()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::components::Component;
    use crate::profile::Tools;

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
        let plain = HelmStep::new(
            Common::new(
                component.clone(),
                Tools::default(),
                PathBuf::new(),
                vec![],
                true,
            ),
            None,
        );
        assert_eq!(plain.values().unwrap(), component.values);
        let detected = HelmStep::new(
            Common::new(component, Tools::default(), PathBuf::new(), vec![], true),
            Some(Arc::new(|| {
                Ok(Some(
                    json!({"driver": {"enabled": false}, "toolkit": {"enabled": true}}),
                ))
            })),
        );
        assert_eq!(
            detected.values().unwrap(),
            json!({"driver": {"enabled": true}, "toolkit": {"enabled": true, "version": "pinned"}}),
            "the profile's driver.enabled wins over the detected one"
        );
    }
}
