//! The step that applies a kustomization: observe compares the rendered manifests' hash and the
//! objects the inventory lists with the cluster; apply server-side applies them (CRDs first) and
//! removes what is no longer rendered; wait checks every object by its kind's readiness.

use std::sync::Mutex;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::ResourceExt;
use kube::api::DynamicObject;

use super::component::local_path;
use super::step::{Common, TAKE_OVER, Transform, fresh_record, intended_refs, same_object, sha256};
use crate::inventory::{self, RecordState};
use crate::kube::{Conflicts, Kube, ObjectRef, parse_manifests};
use crate::kustomize::{Kustomize, Target};
use crate::profile::Source;
use crate::step::{Ctx, Description, Observation, Step, StepError, StepId, StepResult};

pub struct KustomizeStep {
    common: Common,
    /// A rewrite of the rendered objects before they are applied (the object store's wiring of
    /// Kubeflow Pipelines); its result is what the content hash covers.
    transform: Option<Transform>,
    rendered: Mutex<Option<Rendered>>,
}

#[derive(Clone)]
struct Rendered {
    objects: Vec<DynamicObject>,
    hash: String,
}

impl KustomizeStep {
    pub fn new(common: Common, transform: Option<Transform>) -> Self {
        KustomizeStep {
            common,
            transform,
            rendered: Mutex::new(None),
        }
    }

    /// Renders the kustomizations (read-only: `kustomize build`), once per run.
    async fn render(&self, ctx: &Ctx) -> StepResult<Rendered> {
        if let Some(r) = self.rendered.lock().expect("not poisoned").clone() {
            return Ok(r);
        }
        let Source::Kustomize { paths } = &self.common.component.source else {
            unreachable!("render is for kustomize sources")
        };
        let kustomize = Kustomize::with_programs(
            ctx.exec.clone(),
            &self.common.tools.kustomize,
            &self.common.tools.kubectl,
        );
        let mut yaml = String::new();
        for path in paths {
            let target = Target::parse(&local_path(&self.common.base_dir, path));
            yaml.push_str(&kustomize.build(&target).await?);
            yaml.push_str("\n---\n");
        }
        // kgf-up's own manifests ride with the rendered objects: applied, recorded, compared
        // and removed with them.
        for m in &self.common.component.manifests {
            yaml.push_str(m.yaml);
            yaml.push_str("\n---\n");
        }
        let objects = parse_manifests(
            &yaml,
            &format!("kustomize build of {}", self.common.component.name),
        )
        .map_err(|e| StepError::context("reading the rendered manifests", e))?;
        let rendered = match &self.transform {
            None => Rendered {
                objects,
                hash: sha256(yaml.as_bytes()),
            },
            Some(transform) => {
                let objects = (transform.rewrite)(ctx, objects).await?;
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

    async fn observe_kustomize(&self, ctx: &Ctx) -> StepResult<Observation> {
        let rendered = self.render(ctx).await?;
        let kube = ctx.kube().await?;
        let record = ctx.inventory().await?.get(&self.common.id());
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
        let intended = intended_refs(&rendered.objects, &self.common.component.namespace);
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

    async fn apply_kustomize(&self, ctx: &Ctx) -> StepResult<()> {
        let c = &self.common.component;
        let rendered = self.render(ctx).await?;
        let kube = ctx.kube().await?;
        let created = self.common.namespace_created(ctx, kube).await?;
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
        // Recorded before applying, by name, so an interrupted apply can still be cleaned up;
        // objects of the last apply that are no longer rendered stay recorded until removed.
        // The namespace kgf-up creates is one of them: were it left out, it would count as no
        // longer rendered and be removed with everything in it.
        let intended = intended_refs(&objects, &c.namespace);
        let previous = ctx
            .inventory()
            .await?
            .get(&self.common.id())
            .map(|r| r.objects.clone())
            .unwrap_or_default();
        let (stale, kept) = stale_objects(&previous, &intended);
        let mut recorded = intended.clone();
        recorded.extend(stale.iter().chain(&kept).cloned());
        self.common
            .write(
                ctx,
                &self.common.record(
                    RecordState::Applying,
                    rendered.hash.clone(),
                    recorded,
                    created.clone(),
                ),
            )
            .await?;
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
        self.common
            .write(
                ctx,
                &self.common.record(
                    RecordState::Applying,
                    rendered.hash.clone(),
                    applied,
                    created,
                ),
            )
            .await
    }

    /// Waits for every object of the latest record by its kind's readiness rule, then marks the
    /// record done: a component that never got ready is applied and waited for again next time.
    async fn wait_recorded(&self, ctx: &Ctx, kube: &Kube) -> StepResult<()> {
        let c = &self.common.component;
        let mut record = fresh_record(kube, &ctx.namespace, &self.common.id()).await?;
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
        self.common.write(ctx, &record).await
    }
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

impl Step for KustomizeStep {
    fn id(&self) -> StepId {
        self.common.id()
    }

    fn needs(&self) -> Vec<StepId> {
        self.common.needs()
    }

    fn describe(&self) -> Description {
        let c = &self.common.component;
        let commands = {
            let Source::Kustomize { paths } = &c.source else {
                unreachable!()
            };
            paths
                .iter()
                .map(|p| {
                    format!(
                        "{} build {} | server-side apply (CRDs first)",
                        self.common.tools.kustomize, p
                    )
                })
                .collect()
        };
        let mut description = self.common.description(commands, Vec::new());
        // What kgf-up writes into the rendered manifests (the object store's wiring), so that an
        // offline plan shows it beside the two commands.
        if let Some(t) = &self.transform {
            description.objects.extend(t.changes.iter().cloned());
        }
        description
    }

    fn observe<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<Observation>> {
        self.observe_kustomize(ctx).boxed()
    }

    fn apply<'a>(&'a self, ctx: &'a Ctx, _: &'a Observation) -> BoxFuture<'a, StepResult<()>> {
        self.apply_kustomize(ctx).boxed()
    }

    fn wait<'a>(&'a self, ctx: &'a Ctx) -> BoxFuture<'a, StepResult<()>> {
        async move { self.wait_recorded(ctx, ctx.kube().await?).await }.boxed()
    }
}

#[cfg(test)]
mod tests {
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
}
