//! KServe's ClusterServingRuntimes (the chart renders none unless asked); healthy when at least
//! one exists.

use kube::api::ListParams;
use serde_json::json;

use super::{BuiltIn, needs, oci};
use crate::components::Component;
use crate::components::health::{dynamic_api, read_error};
use crate::kube::Kube;
use crate::profile::{ComponentSpec, Provider};
use crate::step::StepError;

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: "kserve-runtimes",
    defaults,
    manifests: &[],
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(_provider: Provider) -> ComponentSpec {
    ComponentSpec {
        source: oci(
            "oci://ghcr.io/kserve/charts/kserve-runtime-configs",
            "v0.20.0",
        ),
        namespace: Some("kserve".into()),
        needs: needs(&["kserve"]),
        // The chart's default renders no runtime at all.
        values: json!({"kserve": {"servingruntime": {"enabled": true}}}),
        ..Default::default()
    }
}

async fn verify(kube: &Kube, c: &Component, _pods_run: bool) -> Result<String, StepError> {
    let api = dynamic_api(
        kube,
        "serving.kserve.io",
        "v1alpha1",
        "ClusterServingRuntime",
        "clusterservingruntimes",
        None,
    );
    let runtimes = api
        .list(&ListParams::default())
        .await
        .map_err(|e| read_error(c, "ClusterServingRuntimes", e))?;
    if runtimes.items.is_empty() {
        return Err(
            StepError::new(format!("{}: no ClusterServingRuntime exists", c.name))
                .with_fix("run `kgf-up up` again to reinstall the runtime configs"),
        );
    }
    Ok(format!("{} ClusterServingRuntimes", runtimes.items.len()))
}
