//! `down`: removes exactly what the inventory records, in reverse plan order (helm releases,
//! objects kgf-up applied or whose CRDs a chart brought, namespaces kgf-up created), and nothing
//! a user made. It must not guess: what is not recorded stays.

use std::time::Duration;

use crate::helm::Helm;
use crate::inventory::{self, Inventory};
use crate::kube::ObjectRef;
use crate::plan::Plan;
use crate::step::{Ctx, StepError, StepId};
use crate::ui::Ui;

/// Removes every recorded step; returns how many.
pub async fn remove_recorded(plan: &Plan, ctx: &Ctx, ui: &Ui) -> Result<usize, StepError> {
    let kube = ctx.kube().await?;
    let inventory = Inventory::read(kube, &ctx.namespace)
        .await
        .map_err(|e| StepError::context("reading the inventory", e))?;
    let planned: Vec<StepId> = plan.levels.iter().flatten().cloned().collect();
    // Records of steps no longer in the profile first, then the plan's steps last-level first.
    let mut order: Vec<String> = inventory
        .records
        .keys()
        .filter(|k| {
            !planned
                .iter()
                .any(|id| id.as_str().replace('/', ".") == **k)
        })
        .cloned()
        .collect();
    order.extend(planned.iter().rev().map(|id| id.as_str().replace('/', ".")));
    let deadline = Duration::from_secs(300);
    let mut removed = 0;
    for key in order {
        let Some(record) = inventory.records.get(&key) else {
            continue;
        };
        if let Some(release) = &record.release {
            let (namespace, name) = release.split_once('/').unwrap_or(("default", release));
            let helm = Helm::detect(ctx.exec.clone(), &plan.helm, ctx.kubeconfig()?)
                .await
                .map_err(StepError::from)?;
            // An absent release is fine: down may be finishing an earlier, interrupted down.
            helm.uninstall(name, namespace, deadline)
                .await
                .map_err(|e| StepError::context(format!("uninstalling {release}"), e))?;
        }
        for r in record.objects.iter().rev() {
            kube.delete(r, deadline)
                .await
                .map_err(|e| StepError::context(format!("removing {r}"), e))?;
        }
        for ns in &record.created_namespaces {
            let r = ObjectRef {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: ns.clone(),
            };
            kube.delete(&r, deadline)
                .await
                .map_err(|e| StepError::context(format!("removing namespace {ns}"), e))?;
        }
        let id = StepId::new(&key.replacen('.', "/", 1), "");
        inventory::remove(kube, &ctx.namespace, &id)
            .await
            .map_err(|e| StepError::context("updating the inventory", e))?;
        ui.note(&format!("removed {}", key.replacen('.', "/", 1)));
        removed += 1;
    }
    // kgf-up's own namespace goes last, with the inventory in it.
    let own = ObjectRef {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: ctx.namespace.clone(),
    };
    kube.delete(&own, deadline)
        .await
        .map_err(|e| StepError::context(format!("removing namespace {}", ctx.namespace), e))?;
    Ok(removed)
}
