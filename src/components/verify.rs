//! Whether a component works, by its own definition (`kgf-up verify`, and the helm step's wait):
//! a built-in's checks, or every Deployment in a custom component's namespace Available.

use super::component::Component;
use super::{builtin, health};
use crate::kube::Kube;
use crate::step::StepError;

/// Checks that `component` works; `pods_run` is false on the `sim` provider, whose pods never run
/// a container, so probes that need a serving pod are skipped there with a "simulated" note.
pub async fn verify(
    kube: &Kube,
    component: &Component,
    pods_run: bool,
) -> Result<String, StepError> {
    match builtin::find(&component.name) {
        Some(b) => (b.verify)(kube, component, pods_run).await,
        None => {
            let n = health::all_deployments_available(kube, component).await?;
            Ok(format!(
                "all {n} Deployments in {} Available",
                component.namespace
            ))
        }
    }
}
