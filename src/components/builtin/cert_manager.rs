//! cert-manager: the jetstack chart with its CRDs; healthy when its three Deployments are Available
//! and, where pods run, its webhook accepts a dry-run Certificate.

use kube::api::{DynamicObject, PostParams};
use serde_json::json;

use super::{BuiltIn, helm};
use crate::components::Component;
use crate::components::health::{PROBE, deployments_available, dynamic_api, fullname, simulated};
use crate::kube::{FIELD_MANAGER, Kube};
use crate::profile::{ComponentSpec, Provider};
use crate::step::StepError;

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: "cert-manager",
    defaults,
    manifests: &[],
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(_provider: Provider) -> ComponentSpec {
    ComponentSpec {
        source: helm("https://charts.jetstack.io", "cert-manager", "v1.21.2"),
        namespace: Some("cert-manager".into()),
        values: json!({"crds": {"enabled": true}}),
        ..Default::default()
    }
}

async fn verify(kube: &Kube, c: &Component, pods_run: bool) -> Result<String, StepError> {
    let base = fullname(&c.release, "cert-manager", 63);
    let names = [
        base.clone(),
        format!("{base}-cainjector"),
        format!("{base}-webhook"),
    ];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    deployments_available(kube, c, &names).await?;
    if !pods_run {
        return Ok(simulated(
            "Deployments cert-manager, cainjector and webhook Available",
            "the webhook probe (a dry-run Certificate)",
        ));
    }
    dry_run_certificate(kube, c).await?;
    Ok(format!(
        "Deployments {} Available; the webhook accepted a dry-run Certificate",
        names.join(", ")
    ))
}

/// A server-side dry-run create of a Certificate: cert-manager's webhook must validate it, and
/// nothing is stored.
async fn dry_run_certificate(kube: &Kube, c: &Component) -> Result<(), StepError> {
    let api = dynamic_api(
        kube,
        "cert-manager.io",
        "v1",
        "Certificate",
        "certificates",
        Some(&c.namespace),
    );
    let cert: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": PROBE, "namespace": c.namespace},
        "spec": {
            "secretName": PROBE,
            "dnsNames": [format!("{PROBE}.{}.svc", c.namespace)],
            "issuerRef": {"name": PROBE, "kind": "Issuer"},
        },
    }))
    .expect("a Certificate object");
    let params = PostParams {
        dry_run: true,
        field_manager: Some(FIELD_MANAGER.into()),
    };
    api.create(&params, &cert).await.map_err(|e| {
        StepError::new(format!(
            "{}: its webhook refused a dry-run Certificate: {e}",
            c.name
        ))
        .with_fix(format!(
            "the webhook may still be starting (its \"connection refused\" heals in a minute): run \
             `kgf-up verify` again; otherwise see `kubectl -n {} logs deploy/{}-webhook`",
            c.namespace,
            fullname(&c.release, "cert-manager", 63)
        ))
    })?;
    Ok(())
}
