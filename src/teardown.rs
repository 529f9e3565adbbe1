//! `down`: removes exactly what the inventory records, in reverse plan order (helm releases with
//! the CRDs they kept, objects kgf-up applied or whose CRDs a chart brought, namespaces kgf-up
//! created), and nothing a user made. It must not guess: what is not recorded stays.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::Api;

use crate::helm::Helm;
use crate::inventory::{self, Inventory};
use crate::kube::{Kube, ObjectRef};
use crate::plan::Plan;
use crate::step::{Ctx, StepError, StepId};
use crate::ui::Ui;

/// Removes every recorded step; returns how many.
pub async fn remove_recorded(plan: &Plan, ctx: &Ctx, ui: &Ui) -> Result<usize, StepError> {
    let kube = ctx.kube().await?;
    let inventory = Inventory::read(kube, &ctx.namespace)
        .await
        .map_err(|e| StepError::context("reading the inventory", e))?;
    if !inventory.records.is_empty() {
        // Not while an `up` changes the same cluster.
        ctx.lock_for_change().await?;
    }
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
            let kept = helm
                .manifest_crds(name, namespace)
                .await
                .map_err(|e| StepError::context(format!("reading release {release}"), e))?;
            // An absent release is fine: down may be finishing an earlier, interrupted down.
            helm.uninstall(name, namespace, deadline)
                .await
                .map_err(|e| StepError::context(format!("uninstalling {release}"), e))?;
            remove_kept_crds(kube, &kept, name, namespace, deadline).await?;
        }
        for r in record.objects.iter().rev() {
            kube.delete(r, deadline)
                .await
                .map_err(|e| StepError::context(format!("removing {r}"), e))?;
        }
        for ns in &record.created_namespaces {
            let r = ObjectRef::namespace(ns);
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
    // kgf-up's own namespace goes last, with the inventory and the lock in it.
    ctx.release_lock().await;
    let own = ObjectRef::namespace(&ctx.namespace);
    kube.delete(&own, deadline)
        .await
        .map_err(|e| StepError::context(format!("removing namespace {}", ctx.namespace), e))?;
    Ok(removed)
}

/// CRDs that a chart templates with `helm.sh/resource-policy: keep` (cert-manager's
/// `crds.keep`) outlive `helm uninstall`. Those still annotated as this release's were created
/// by it (helm refuses to adopt an object without those annotations), so `down` removes them.
async fn remove_kept_crds(
    kube: &Kube,
    names: &[String],
    release: &str,
    namespace: &str,
    deadline: Duration,
) -> Result<(), StepError> {
    let api: Api<CustomResourceDefinition> = Api::all(kube.client());
    for name in names {
        let Some(crd) = api
            .get_opt(name)
            .await
            .map_err(|e| StepError::context(format!("reading CRD {name}"), e))?
        else {
            continue;
        };
        let annotations = crd.annotations();
        let ours = annotations
            .get("meta.helm.sh/release-name")
            .map(String::as_str)
            == Some(release)
            && annotations
                .get("meta.helm.sh/release-namespace")
                .map(String::as_str)
                == Some(namespace);
        if ours {
            let r = ObjectRef::crd(name);
            kube.delete(&r, deadline)
                .await
                .map_err(|e| StepError::context(format!("removing {r}"), e))?;
        }
    }
    Ok(())
}
