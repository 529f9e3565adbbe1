//! Server-side apply through the gate, with a server-side dry run and a field-by-field diff when
//! the gate records (`plan`).

use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};

use super::diff::object_diff;
use super::object::{as_value, written_ref};
use super::{Kube, KubeError, ObjectRef};
use crate::gate::Change;

/// The field manager of every server-side apply kgf-up makes.
pub const FIELD_MANAGER: &str = "kgf-up";

/// What server-side apply does with fields another field manager set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conflicts {
    /// Fail with a conflict: someone else owns the field.
    Refuse,
    /// Take the fields over (`force`): for a chart's CRDs, which helm created and never
    /// upgrades, so kgf-up does.
    TakeOver,
}

impl Kube {
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
}
