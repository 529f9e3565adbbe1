//! KServe's CRDs, a chart of their own so that they are installed (and upgraded) before KServe.

use super::{BuiltIn, oci};
use crate::components::Component;
use crate::components::health::crds_established;
use crate::kube::Kube;
use crate::profile::{ComponentSpec, Provider};
use crate::step::StepError;

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: "kserve-crd",
    defaults,
    manifests: &[],
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(_provider: Provider) -> ComponentSpec {
    ComponentSpec {
        source: oci("oci://ghcr.io/kserve/charts/kserve-crd", "v0.20.0"),
        namespace: Some("kserve".into()),
        ..Default::default()
    }
}

async fn verify(kube: &Kube, c: &Component, _pods_run: bool) -> Result<String, StepError> {
    let crds = [
        "inferenceservices.serving.kserve.io",
        "servingruntimes.serving.kserve.io",
        "clusterservingruntimes.serving.kserve.io",
    ];
    crds_established(kube, c, &crds).await?;
    Ok(format!("CRDs {} Established", crds.join(", ")))
}
