//! The built-in components, one file each: its pinned source, namespace and order, its values per

//! provider, kgf-up's own manifests and extras that come with it, and its health check for
//! `kgf-up verify`. Pins are checked against upstream release notes; docs/versions.md lists
//! them.

pub mod cert_manager;
pub mod gpu_operator;
pub mod kserve;
pub mod kserve_crd;
pub mod kserve_runtimes;
pub mod kubeflow_pipelines;
pub mod kuberay;
pub mod minio;
pub mod prometheus;

use futures::future::BoxFuture;

use super::{Component, Manifest};
use crate::kube::{Kube, ObjectRef};
use crate::profile::{ComponentSpec, Provider, Source};
use crate::step::StepError;

/// A component's own definition of working: a "healthy because…" line, or the error with the
/// fix. The flag is false where pods never run (`sim`): probes that need a serving pod are skipped.
pub type Verify =
    for<'a> fn(&'a Kube, &'a Component, bool) -> BoxFuture<'a, Result<String, StepError>>;

/// Makes objects before the release is installed; returns them so they are recorded as the
/// component's and `down` removes them.
pub type BeforeInstall =
    for<'a> fn(&'a Kube, &'a Component) -> BoxFuture<'a, Result<Vec<ObjectRef>, StepError>>;

/// What kgf-up knows about one built-in component.
pub struct BuiltIn {
    pub name: &'static str,
    /// Its defaults on a provider; a profile entry overrides any field.
    pub defaults: fn(Provider) -> ComponentSpec,
    /// kgf-up's own manifests, applied into the component's namespace after its release.
    pub manifests: &'static [Manifest],
    pub verify: Verify,
    /// MinIO's root Secret.
    pub before_install: Option<BeforeInstall>,
}

/// Every built-in component, in the order the built-in profiles list them.
pub const ALL: &[BuiltIn] = &[
    cert_manager::BUILT_IN,
    gpu_operator::BUILT_IN,
    kubeflow_pipelines::BUILT_IN,
    kuberay::BUILT_IN,
    kserve_crd::BUILT_IN,
    kserve::BUILT_IN,
    kserve_runtimes::BUILT_IN,
    minio::BUILT_IN,
    prometheus::BUILT_IN,
];

/// The built-in component called `name`, or `None` for a custom component.
pub fn find(name: &str) -> Option<&'static BuiltIn> {
    ALL.iter().find(|b| b.name == name)
}

pub fn is_built_in(name: &str) -> bool {
    find(name).is_some()
}

pub fn names() -> Vec<&'static str> {
    ALL.iter().map(|b| b.name).collect()
}

fn helm(repo: &str, chart: &str, version: &str) -> Option<Source> {
    Some(Source::Helm {
        repo: repo.into(),
        chart: chart.into(),
        version: version.into(),
    })
}

fn oci(reference: &str, version: &str) -> Option<Source> {
    Some(Source::Oci {
        reference: reference.into(),
        version: version.into(),
    })
}

fn needs(names: &[&str]) -> Option<Vec<String>> {
    Some(names.iter().map(|s| s.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_built_in_has_one_name_a_pinned_source_and_a_namespace_on_every_provider() {
        let mut names = names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "a name is used twice");
        for b in ALL {
            for provider in [
                Provider::Kind,
                Provider::Rke2,
                Provider::Sim,
                Provider::Existing,
            ] {
                let spec = (b.defaults)(provider);
                let version = match spec.source {
                    Some(Source::Helm { version, .. } | Source::Oci { version, .. }) => version,
                    Some(Source::Kustomize { paths }) => paths[0].clone(),
                    other => panic!("{}: no pinned source: {other:?}", b.name),
                };
                assert!(!version.is_empty(), "{}", b.name);
                assert!(spec.namespace.is_some(), "{} has no namespace", b.name);
            }
        }
    }
}
