//! KServe in Standard (raw Deployment) mode, after cert-manager and its CRDs; healthy when the
//! controller is Available, its webhook Service has ready endpoints and, where pods run, the
//! webhook's serving Certificate is Ready.

use serde_json::json;

use super::{BuiltIn, needs, oci};
use crate::components::Component;
use crate::components::health::{
    deployments_available, dynamic_api, read_error, ready_endpoints, simulated,
};
use crate::kube::Kube;
use crate::kube::ready::condition_true;
use crate::profile::{ComponentSpec, Provider};
use crate::step::StepError;

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: "kserve",
    defaults,
    manifests: &[],
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(_provider: Provider) -> ComponentSpec {
    ComponentSpec {
        source: oci("oci://ghcr.io/kserve/charts/kserve-resources", "v0.20.0"),
        namespace: Some("kserve".into()),
        needs: needs(&["cert-manager", "kserve-crd"]),
        values: json!({"kserve": {"controller": {"deploymentMode": "Standard"}}}),
        ..Default::default()
    }
}

async fn verify(kube: &Kube, c: &Component, pods_run: bool) -> Result<String, StepError> {
    let ns = c.namespace.as_str();
    deployments_available(kube, c, &["kserve-controller-manager"]).await?;
    let service = "kserve-webhook-server-service";
    let ready = ready_endpoints(kube, ns, service).await?;
    if ready == 0 {
        return Err(StepError::new(format!(
            "{}: Service {ns}/{service} has no ready endpoints, so the API server cannot \
             call KServe's webhook",
            c.name
        ))
        .with_fix(format!(
            "check the controller's pods: `kubectl -n {ns} get pods -l control-plane=kserve-controller-manager`"
        ))
        .with_diagnosis(kube.diagnose(ns).await));
    }
    let checked = format!(
        "Deployment kserve-controller-manager Available; webhook Service {service} has {ready} ready endpoint(s)"
    );
    if !pods_run {
        return Ok(simulated(
            &checked,
            "its Certificate (cert-manager issues none)",
        ));
    }
    kserve_certificate_ready(kube, c).await?;
    Ok(format!("{checked}; Certificate serving-cert Ready"))
}

/// The webhook's serving certificate (cert-manager `Certificate serving-cert`) must be Ready, or the
/// API server cannot verify the webhook's TLS.
async fn kserve_certificate_ready(kube: &Kube, c: &Component) -> Result<(), StepError> {
    let api = dynamic_api(
        kube,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
        Some(&c.namespace),
    );
    let cert = api
        .get_opt("serving-cert")
        .await
        .map_err(|e| read_error(c, "Certificate serving-cert", e))?;
    let ready = cert
        .as_ref()
        .and_then(|o| o.data.get("status"))
        .is_some_and(|s| condition_true(s, "Ready"));
    if ready {
        return Ok(());
    }
    Err(StepError::new(format!(
        "{}: Certificate {}/serving-cert is {}, so the webhook has no TLS certificate",
        c.name,
        c.namespace,
        if cert.is_some() { "not Ready" } else { "absent" }
    ))
    .with_fix(format!(
        "check cert-manager (`kgf-up verify` on it) and `kubectl -n {} describe certificate serving-cert`",
        c.namespace
    )))
}
