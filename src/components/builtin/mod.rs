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

mod kit;

pub use kit::{BeforeInstall, BuiltIn, Verify};
// The shorthands the definitions are written in (`super::helm` in each of them).
use kit::{helm, needs, oci};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Provider, Source};

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
