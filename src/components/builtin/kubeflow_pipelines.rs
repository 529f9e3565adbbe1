//! Kubeflow Pipelines: upstream's kustomizations (cluster-scoped resources, then the platform-agnostic
//! install), the deployer's RBAC that comes with it, and its health: the API, UI, metadata and
//! workflow controller Available and, where pods run, the API's healthz.

use super::BuiltIn;
use crate::components::health::{deployments_available, simulated};
use crate::components::{Component, Manifest};
use crate::kube::Kube;
use crate::profile::{ComponentSpec, Provider, Source};
use crate::step::StepError;

/// The deploy step's rights and the served model's ServiceAccount, in KFP's namespace (where the
/// pipeline's steps run and the InferenceService is made).
const MANIFESTS: &[Manifest] = &[Manifest {
    path: "manifests/pipeline/deployer-rbac.yaml",
    yaml: include_str!("../../../manifests/pipeline/deployer-rbac.yaml"),
}];

pub const BUILT_IN: BuiltIn = BuiltIn {
    name: "kubeflow-pipelines",
    defaults,
    manifests: MANIFESTS,
    verify: |kube, c, pods_run| Box::pin(verify(kube, c, pods_run)),
    before_install: None,
};

fn defaults(_provider: Provider) -> ComponentSpec {
    ComponentSpec {
        source: Some(Source::Kustomize {
            paths: vec![
                "github.com/kubeflow/pipelines/manifests/kustomize/cluster-scoped-resources?ref=2.17.1".into(),
                "github.com/kubeflow/pipelines/manifests/kustomize/env/platform-agnostic?ref=2.17.1".into(),
            ],
        }),
        namespace: Some("kubeflow".into()),
        ..Default::default()
    }
}

async fn verify(kube: &Kube, c: &Component, pods_run: bool) -> Result<String, StepError> {
    let names = [
        "ml-pipeline",
        "ml-pipeline-ui",
        "metadata-grpc-deployment",
        "workflow-controller",
    ];
    deployments_available(kube, c, &names).await?;
    if !pods_run {
        return Ok(simulated(
            "Deployments ml-pipeline, ml-pipeline-ui, metadata and workflow controller \
             Available",
            "the API's /apis/v2beta1/healthz",
        ));
    }
    let version = kfp_healthz(kube, c).await?;
    Ok(format!(
        "Deployments Available; the pipelines API answers /apis/v2beta1/healthz ({version})"
    ))
}

/// The service-proxy path of the pipelines API's health endpoint.
pub fn kfp_healthz_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz")
}

/// `GET /apis/v2beta1/healthz` through the API server's service proxy; returns the tag it reports.
async fn kfp_healthz(kube: &Kube, c: &Component) -> Result<String, StepError> {
    let path = kfp_healthz_path(&c.namespace);
    let request = http::Request::get(&path)
        .body(Vec::new())
        .expect("a valid request");
    let body = kube.proxy_client().request_text(request).await.map_err(|e| {
        StepError::new(format!(
            "{}: the pipelines API did not answer {path}: {e}",
            c.name
        ))
        .with_fix(format!(
            "upstream expects a few minutes of restarts while MySQL and the metadata service start; \
             run `kgf-up verify` again, or see `kubectl -n {} logs deploy/ml-pipeline`",
            c.namespace
        ))
    })?;
    Ok(healthz_tag(&body))
}

/// The release tag in a healthz answer (`{"commit_sha": …, "tag_name": "2.17.0", …}`).
pub fn healthz_tag(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("tag_name").and_then(|t| t.as_str()).map(String::from))
        .map(|t| format!("tag {t}"))
        .unwrap_or_else(|| "no tag reported".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kfp_health_path_goes_through_the_service_proxy_of_its_namespace() {
        assert_eq!(
            kfp_healthz_path("kubeflow"),
            "/api/v1/namespaces/kubeflow/services/ml-pipeline:8888/proxy/apis/v2beta1/healthz"
        );
        assert_eq!(
            healthz_tag(r#"{"commit_sha":"abc","tag_name":"2.17.0","multi_user":false}"#),
            "tag 2.17.0"
        );
        assert_eq!(healthz_tag("ok"), "no tag reported");
    }
}
